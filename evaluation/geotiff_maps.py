"""GeoTIFF score maps (``test.py --save_geotiff``, on by default for GeoTIFF inputs): each detector's map of a
scene as a one-band float32 GeoTIFF ``SAVE_DIR/geotiff/<scene>_<detector>.tif`` with the input's CRS,
geotransform and nodata value (NaN where the input declares none), so that it overlays the scene in QGIS.
The twin of ``--save_envi``. rasterio is imported only when a map is written (data/geotiff.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data.geotiff import SUFFIXES
from data.scene import Scene
from evaluation.export import ExportError, detector_tag


def is_geotiff(source: str) -> bool:
    return Path(source).suffix.lower() in SUFFIXES


def wants_geotiff(option: bool | None, scene: Scene) -> bool:
    """``--save_geotiff``: True writes every scene's maps, False none, None (the default) those of GeoTIFF inputs."""
    return is_geotiff(scene.source) if option is None else bool(option)


def check_geotiff_option(option: bool | None, scenes: list[Scene]) -> None:
    """Before any work: ``save_geotiff=True`` needs scenes that say where they lie (a georeference)."""
    if option:
        for s in scenes:
            if s.georef is None:
                raise ExportError(f"save_geotiff=True: {s.label} has no georeference (CRS and transform) to "
                                  "give its maps; give GeoTIFF scenes or save_geotiff=False")


def write_geotiff_maps(scene: Scene, maps: dict[str, np.ndarray], save_dir: Path,
                       provenance: dict | None = None) -> list[Path]:
    """Every map of ``scene`` as ``save_dir/geotiff/<scene>_<detector>.tif``, ``provenance`` (what produced
    it: evaluation/provenance.py) as JSON in its ``ferd_provenance`` tag; returns the paths written."""
    from data.geotiff import write_geotiff_map

    nodata = float("nan") if scene.nodata is None else float(scene.nodata)
    written = []
    for name, scores in maps.items():
        path = save_dir / "geotiff" / f"{scene.name}_{detector_tag(name)}.tif"
        tags = {} if provenance is None else {"ferd_provenance": json.dumps(provenance)}
        write_geotiff_map(path, scores, scene.georef, nodata, f"{name} anomaly scores of {scene.name}", tags)
        written.append(path)
    return written
