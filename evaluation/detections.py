"""Detections: what a score map finds, as objects a user (or a GIS) can go and look at.

A score map ``(H, W)`` is thresholded by a rule (:class:`DetectionRule`), the pixels above the threshold are
grouped into connected objects (8-connectivity, ``scipy.ndimage.label``), and each object is described by its
rank (1 = highest peak score), its centroid (row, col: continuous pixel indices, the centre of pixel ``(r, c)``
at ``(r, c)``), its pixel count, and its peak and mean score; where the scene has a georeference
(:class:`data.georef.GeoRef`) the centroid's map coordinates too.

Threshold rules:

* **top fraction** (the default, :data:`DEFAULT_TOP_FRACTION` = 0.1 % of the scene's pixels): the empirical
  quantile of the scene's own scores. FEN+X maps and most detectors have no null distribution to set a
  false-alarm rate from, so the rule says how much of the scene to look at, not how sure a detection is.
  0.1 % lies below the labelled anomaly fraction of 13 of the 14 ABU scenes (0.08 % to 2.7 %, median 0.77 %):
  what is flagged is the strongest part of the scene's responses;
* **chi-square false-alarm rate** (GRX only): GRX's scores are squared Mahalanobis distances, chi-square with
  B degrees of freedom (B bands) for Gaussian background pixels, so a false-alarm rate ``pfa`` sets the
  threshold ``chi2.isf(pfa, B)``. Real backgrounds are heavier-tailed than Gaussian: the rate is nominal.

Files (:func:`write_detections`), per scene and detector in ``<save_dir>/detections/``:

* ``<scene>_<detector>.csv`` always: ``rank,row,col,pixels,peak_score,mean_score,x,y,crs,threshold,rule``
  (``x, y, crs`` empty for a scene without a georeference; ``crs`` names the scene's coordinate reference
  system, an ``EPSG:n`` code or WKT, in every row);
* ``<scene>_<detector>.geojson`` where the scene is georeferenced with a known CRS: a FeatureCollection of
  points in WGS 84 longitude/latitude, as RFC 7946 requires (reprojected from the scene's CRS with
  ``rasterio.warp.transform``); QGIS, GDAL and web maps open it as it is.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from data.georef import GeoRef
from utils.errors import FerdError
from utils.io import save_json, save_text

#: The default rule: flag the top 0.1 % of a scene's scores (see the module docstring for why).
DEFAULT_TOP_FRACTION = 0.001
#: Decimals of longitude/latitude in the GeoJSON (1e-7 degrees: about 1 cm).
LONLAT_DECIMALS = 7
#: 8-connectivity: diagonal neighbours belong to one object (a target rarely aligns with the pixel grid).
CONNECTIVITY = np.ones((3, 3), dtype=bool)


class DetectionError(FerdError, ValueError):
    """A threshold rule that cannot be used (one line, ``name=value`` style)."""


@dataclass(frozen=True)
class DetectionRule:
    """How a map is thresholded: the top ``top_fraction`` of its pixels, or, for GRX with ``pfa`` set, the
    chi-square false-alarm rate ``pfa`` (other detectors keep the top fraction)."""

    top_fraction: float = DEFAULT_TOP_FRACTION
    pfa: float | None = None
    #: the detectors whose scores are squared Mahalanobis distances (``Detector.chi_square``): the chi-square
    #: rule applies to them alone
    chi2_detectors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.top_fraction, (int, float)) and 0 < self.top_fraction <= 1):
            raise DetectionError(f"detect_fraction={self.top_fraction}: must lie in (0, 1]")
        if self.pfa is not None and not 0 < self.pfa < 1:
            raise DetectionError(f"detect_pfa={self.pfa}: must lie between 0 and 1 (both excluded)")

    def uses_chi2(self, detector: str) -> bool:
        return self.pfa is not None and detector in self.chi2_detectors

    def threshold(self, scores: np.ndarray, detector: str, bands: int) -> float:
        """The score at and above which pixels of ``scores`` (any shape) are flagged."""
        if self.uses_chi2(detector):
            from scipy.stats import chi2

            return float(chi2.isf(self.pfa, bands))
        return top_fraction_threshold(scores, self.top_fraction)

    def describe(self, detector: str, bands: int) -> str:
        """The rule in words, for the CSV and the log: ``top 0.1% of pixels`` or ``chi2 pfa=1e-04, 50 dof``."""
        if self.uses_chi2(detector):
            return f"chi-square false-alarm rate {self.pfa:g} ({bands} degrees of freedom)"
        return f"top {100 * self.top_fraction:g}% of the scene's pixels"


def top_fraction_threshold(scores: np.ndarray, fraction: float) -> float:
    """The ``k``-th highest score, ``k = ceil(fraction * N)`` (at least 1): the empirical ``1 - fraction``
    quantile; pixels tied with it are flagged too. A map constant to within rounding flags nothing (inf)."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    finite = flat[np.isfinite(flat)]
    if not finite.size:
        return math.inf
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo <= 1e-6 * max(abs(lo), abs(hi)):  # a flat map (evaluation.report.FLAT_RTOL): nothing stands out
        return math.inf
    k = max(1, math.ceil(fraction * finite.size - 1e-9))  # 0.001 * 3000 is 3.0000000000000004
    return float(np.partition(finite, finite.size - k)[finite.size - k])


@dataclass
class Detection:
    """One connected object above the threshold. ``row, col``: centroid in continuous pixel indices; ``x, y``:
    the centroid in the scene's map coordinates (None without a georeference); ``lon, lat``: in WGS 84 (None
    where the scene's CRS is unknown)."""

    rank: int
    row: float
    col: float
    pixels: int
    peak_score: float
    mean_score: float
    x: float | None = None
    y: float | None = None
    lon: float | None = None
    lat: float | None = None


def find_objects(scores: np.ndarray, threshold: float) -> list[Detection]:
    """The connected objects of ``scores >= threshold`` in a ``(H, W)`` map, ranked by peak score (highest
    first; ties: larger objects first, then in raster order)."""
    from scipy import ndimage  # here, not at the top: pipeline.settings (every --help) imports this module

    s = np.asarray(scores, dtype=np.float64)
    labels, n = ndimage.label(np.isfinite(s) & (s >= threshold), structure=CONNECTIVITY)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=n + 1)[1:]
    rows, cols = np.indices(s.shape)
    row_c = np.bincount(flat, weights=rows.ravel(), minlength=n + 1)[1:] / pixels
    col_c = np.bincount(flat, weights=cols.ravel(), minlength=n + 1)[1:] / pixels
    peak = ndimage.maximum(s, labels, index)
    mean = np.bincount(flat, weights=np.where(labels > 0, s, 0).ravel(), minlength=n + 1)[1:] / pixels
    order = sorted(range(n), key=lambda i: (-peak[i], -pixels[i], row_c[i], col_c[i]))
    return [Detection(rank, float(row_c[i]), float(col_c[i]), int(pixels[i]), float(peak[i]), float(mean[i]))
            for rank, i in enumerate(order, start=1)]


def locate(detections: list[Detection], georef: GeoRef | None, latlon: PixelLatLon | None = None
           ) -> list[Detection]:
    """Fill each detection's map ``x, y`` (pixel centre: ``+ 0.5``) and, where the CRS is known, its WGS 84
    ``lon, lat``; a scene without a map grid but with per-pixel locations (``latlon``) gets the ``lat, lon`` of
    the pixel under each centroid. In place, returned for chaining."""
    if georef is None and latlon is not None and detections:
        found = latlon(np.array([int(d.row) for d in detections]), np.array([int(d.col) for d in detections]))
        for d, lat, lon in zip(detections, *(found or ((), ()))):
            d.lat, d.lon = float(lat), float(lon)
    if georef is None or not detections:
        return detections
    rows = np.array([d.row for d in detections]) + 0.5
    cols = np.array([d.col for d in detections]) + 0.5
    xs, ys = georef.to_map(rows, cols)
    lonlat = to_wgs84(georef.crs, xs, ys) if georef.crs else None
    for i, d in enumerate(detections):
        d.x, d.y = float(xs[i]), float(ys[i])
        if lonlat is not None:
            d.lon, d.lat = lonlat[0][i], lonlat[1][i]
    return detections


def to_wgs84(crs: str, xs: np.ndarray, ys: np.ndarray) -> tuple[list[float], list[float]]:
    """Map coordinates in ``crs`` as WGS 84 longitudes and latitudes (degrees), through rasterio (PROJ)."""
    from rasterio.warp import transform

    lon, lat = transform(crs, "EPSG:4326", list(map(float, xs)), list(map(float, ys)))
    return [float(v) for v in lon], [float(v) for v in lat]


CSV_FIELDS = ("rank", "row", "col", "pixels", "peak_score", "mean_score", "x", "y", "crs", "threshold", "rule", "lon",
              "lat")
#: Latitude and longitude of pixels ``(rows, cols)`` (integer arrays), or None: a scene in sensor geometry
#: whose file gives a per-pixel location (EMIT's ``location`` group, data.netcdf.pixel_latlon).
PixelLatLon = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]


def _cell(v: float | None, digits: int = 6) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def detections_csv(detections: list[Detection], georef: GeoRef | None, threshold: float, rule: str) -> str:
    """The CSV of one scene and detector (:data:`CSV_FIELDS`); map coordinates with 3 decimals of the map unit
    (a projected CRS: mm), 9 for degrees."""
    crs = "" if georef is None else (georef.crs or "unknown (the file's own map units)")
    geographic = georef is not None and georef.crs is not None and _is_geographic(georef.crs)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_FIELDS)
    for d in detections:
        digits = 9 if geographic else 3
        out.writerow([d.rank, _cell(d.row, 3), _cell(d.col, 3), d.pixels, _cell(d.peak_score), _cell(d.mean_score),
                      _cell(d.x, digits), _cell(d.y, digits), crs, _cell(threshold), rule,
                      _cell(d.lon, LONLAT_DECIMALS), _cell(d.lat, LONLAT_DECIMALS)])
    return buf.getvalue()


def _is_geographic(crs: str) -> bool:
    from rasterio.crs import CRS

    try:
        return bool(CRS.from_user_input(crs).is_geographic)
    except Exception:  # an unreadable CRS: treat as projected (the CSV keeps more digits than needed, no harm)
        return False


def detections_geojson(detections: list[Detection], scene: str, detector: str, provenance: dict | None = None) -> dict:
    """An RFC 7946 FeatureCollection of the detections as WGS 84 points ``[lon, lat]`` (no ``crs`` member:
    RFC 7946 fixes WGS 84); each feature's properties hold the CSV's columns; ``provenance`` (what produced
    them: evaluation/provenance.py) a foreign member, which GIS tools ignore."""
    features = []
    for d in detections:
        if d.lon is None:
            continue
        props = {k: v for k, v in asdict(d).items() if k not in ("lon", "lat")}
        features.append({"type": "Feature",
                         "geometry": {"type": "Point", "coordinates": [round(d.lon, LONLAT_DECIMALS),
                                                                       round(d.lat, LONLAT_DECIMALS)]},
                         "properties": {"scene": scene, "detector": detector, **props}})
    out = {"type": "FeatureCollection", "name": f"{scene}_{detector}", "features": features}
    return out if provenance is None else {**out, "provenance": provenance}


def detector_tag(name: str) -> str:
    """A detector name as it appears in file names: ``FEN+GRX`` -> ``FEN_GRX`` (as evaluation/export.py)."""
    return name.replace("+", "_")


def scene_detections(maps: dict[str, np.ndarray], rule: DetectionRule, bands: int, georef: GeoRef | None,
                     latlon: PixelLatLon | None = None) -> dict[str, tuple[float, list[Detection]]]:
    """Every detector's threshold and located detections of one scene's ``(H, W)`` maps."""
    out = {}
    for name, scores in maps.items():
        t = rule.threshold(scores, name, bands)
        out[name] = (t, locate(find_objects(scores, t), georef, latlon))
    return out


def write_detections(save_dir: Path, scene: str, maps: dict[str, np.ndarray], rule: DetectionRule, bands: int,
                     georef: GeoRef | None, latlon: PixelLatLon | None = None,
                     provenance: dict | None = None) -> dict[str, int]:
    """Write ``save_dir/<scene>_<detector>.csv`` (and ``.geojson`` where the detections have WGS 84
    coordinates: the scene's CRS is known, or its file gives per-pixel locations) for every detector's map;
    returns the number of detections per detector."""
    counts = {}
    for name, (t, found) in scene_detections(maps, rule, bands, georef, latlon).items():
        stem = f"{scene}_{detector_tag(name)}"
        save_text(detections_csv(found, georef, t, rule.describe(name, bands)), save_dir / f"{stem}.csv")
        if (georef is not None and georef.crs) or (latlon is not None and any(d.lon is not None for d in found)):
            save_json(detections_geojson(found, scene, name, provenance), save_dir / f"{stem}.geojson")
        counts[name] = len(found)
    return counts


def format_detection_table(rows: list[tuple[str, int, dict[str, int]]], detectors: list[str]) -> str:
    """Per unlabelled scene: its pixels scored and its detections per detector (``rows``: name, pixels,
    counts)."""
    from evaluation.report import render

    head = ["scene", "pixels"] + [f"detections {d}" for d in detectors]
    body = [[name, str(pixels)] + [str(counts.get(d, 0)) for d in detectors] for name, pixels, counts in rows]
    lines = render(head, body, [])
    return "\n".join(lines[:-1] if body else lines)  # no closing rule: there is no footer row
