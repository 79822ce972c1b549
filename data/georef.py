"""Where a scene lies on the Earth: its coordinate reference system and the affine map from pixels to it.

One small value object that every reader fills where its format says (ENVI ``map info``, a GeoTIFF's CRS and
geotransform, ...) and every writer of maps and detections reads. The transform is GDAL's geotransform
``(x0, dx, rx, y0, ry, dy)``: the map position of a point at pixel column ``c`` and row ``r`` (both continuous,
``(0, 0)`` the upper-left corner of the upper-left pixel, so a pixel's centre is at ``c + 0.5, r + 0.5``) is::

    x = x0 + c * dx + r * rx
    y = y0 + c * ry + r * dy

``crs`` is whatever the format gives and the reprojection library understands: a WKT string or an
``"EPSG:n"`` code; ``None`` where the file names no system (coordinates are then the file's own map units).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GeoRef:
    """A scene's georeference: ``crs`` (WKT or ``"EPSG:n"``, or None) and GDAL's 6-number ``transform``."""

    crs: str | None
    transform: tuple[float, float, float, float, float, float]

    def to_map(self, row: np.ndarray | float, col: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates ``(x, y)`` of continuous pixel positions (a pixel's centre: ``row + 0.5``)."""
        x0, dx, rx, y0, ry, dy = self.transform
        row, col = np.asarray(row, dtype=np.float64), np.asarray(col, dtype=np.float64)
        return x0 + col * dx + row * rx, y0 + col * ry + row * dy
