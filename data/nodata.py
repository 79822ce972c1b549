"""Nodata: pixels a file marks as holding no data, found, counted, and kept out of every statistic.

A pixel is **nodata** when any of the bands used holds the file's nodata value (GeoTIFF ``nodata``, ENVI
``data ignore value``, NetCDF ``_FillValue``) or NaN: with all of them it has no data at all (a frame
around a rotated swath, a mosaic's hole); with only some (saturation, a detector gap) it is *partial*, masked
the same way and counted apart. Nodata pixels

* enter no statistic: the global min and max of preprocessing, GRX's mean and covariance, the local
  detectors' background windows (detectors/: they read the scene's valid-pixel mask);
* are filled, before the FEN, with the valid pixels' mean spectrum (the rule: a featureless, flat
  background, which the FEN's convolutions see as the inside of a uniform area), and masked again after;
* score NaN in the maps (``.npz``), and the file's nodata value in GeoTIFF and ENVI maps, and are left out of
  AUC, 3D-ROC and the detections.

A band inside the bands used that is nodata in every pixel is refused (data.bands.refuse_bands names a
``start_channel`` that avoids it): it would make every pixel nodata. Inf stays an error: it is an overflow,
not a nodata convention.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from data.bands import refuse_bands
from data.preprocess import DataError
from utils.memory import release_pages

if TYPE_CHECKING:  # annotations only: torch is imported where the tensor is made
    import torch


@dataclass
class NodataScan:
    """One streaming pass over the bands used: ``lo``/``hi`` over the valid pixels, ``valid`` ``(H, W)`` bool
    (None when every pixel is valid), the counts of nodata pixels (``full``: no data in any band used;
    ``partial``: in some), ``inf`` Inf values among valid pixels' bands, and ``mean`` ``(bands,)`` float64,
    the valid pixels' raw mean spectrum (the FEN's fill)."""

    lo: float
    hi: float
    valid: np.ndarray | None
    full: int
    partial: int
    inf: int
    mean: np.ndarray | None

    @property
    def count(self) -> int:
        return self.full + self.partial


def scan_nodata(raw, start: int, bands: int, nodata: float | None, rows: int, name: str) -> NodataScan:
    """Scan rows ``rows`` at a time of ``raw`` (H x W x B, any lazily indexable cube) for nodata; refuse a band
    that is nodata everywhere (with a ``start_channel`` that avoids it) and a scene without a valid pixel. The
    caller checks the range (``data.preprocess.check_values``). A scene without nodata costs one pass with
    the checks of before (finite values, min, max); one with nodata a second pass for the valid mean."""
    h, w = int(raw.shape[0]), int(raw.shape[1])
    valid = np.ones((h, w), dtype=bool)
    band_nodata = np.zeros(bands, dtype=np.int64)
    lo, hi, inf, full = np.inf, -np.inf, 0, 0
    tagged = nodata is not None and not np.isnan(nodata)
    for r0 in range(0, h, rows):
        view = raw[r0: r0 + rows, :, start: start + bands]
        sel = np.asarray(view)
        finite = np.isfinite(sel) if sel.dtype.kind == "f" else None
        all_finite = finite is None or bool(finite.all())
        hole = None if all_finite else np.isnan(sel)                   # (r, W, bands)
        if tagged:
            hole = sel == nodata if hole is None else hole | (sel == nodata)
        good, good_finite = sel, finite
        if hole is not None and hole.any():
            band_nodata += hole.sum(axis=(0, 1))
            any_hole = hole.any(axis=2)
            full += int(hole.all(axis=2).sum())
            valid[r0: r0 + rows] = ~any_hole
            good = sel[~any_hole]
            good_finite = None if finite is None else finite[~any_hole]
        if not all_finite and good_finite is not None and not good_finite.all():   # Inf: an overflow
            inf += int((~good_finite).sum())
            good = good[good_finite.reshape(-1, bands).all(axis=1).reshape(good.shape[:-1])]
        if good.size:
            lo, hi = min(lo, float(good.min())), max(hi, float(good.max()))
        release_pages(raw, view if isinstance(view, np.ndarray) else None)
    empty = [start + int(i) for i in np.flatnonzero(band_nodata == h * w)]
    if empty:
        refuse_bands(name, empty, ("holds no data in any pixel", "hold no data in any pixel"), int(raw.shape[2]),
                     bands, start)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise DataError(f"{name}: every pixel is nodata (NaN or the nodata value {nodata}) in the bands used")
    count = h * w - n_valid
    if count == 0:
        return NodataScan(lo, hi, None, 0, 0, inf, None)
    return NodataScan(lo, hi, valid, full, count - full, inf, valid_mean(raw, start, bands, valid, rows))


def valid_mean(raw, start: int, bands: int, valid: np.ndarray, rows: int) -> np.ndarray:
    """``(bands,)`` float64 mean spectrum of the ``valid`` pixels of ``raw``, read ``rows`` rows at a time."""
    total = np.zeros(bands, dtype=np.float64)
    for r0 in range(0, raw.shape[0], rows):
        view = raw[r0: r0 + rows, :, start: start + bands]
        block = np.asarray(view)[valid[r0: r0 + rows]]
        total += block[np.isfinite(block).all(axis=1)].sum(axis=0, dtype=np.float64) if block.dtype.kind == "f" \
            else block.sum(axis=0, dtype=np.float64)
        release_pages(raw, view if isinstance(view, np.ndarray) else None)
    return total / int(valid.sum())

def preprocess_valid(cube, bands: int, start: int, name: str, nodata: float | None = None,
                     bbl: np.ndarray | None = None) -> tuple["torch.Tensor", np.ndarray | None]:
    """``data.preprocess.preprocess`` of a cube that may hold nodata: ``(bands, H, W)`` float32 scaled with
    the valid pixels' min and max, nodata pixels filled with their mean spectrum, and the ``(H, W)`` valid
    mask (None, and exactly ``preprocess``'s tensor, where every pixel has data). For training patches."""
    import torch

    from data.bands import check_bbl
    from data.preprocess import check_layout, check_values, preprocess, scale

    check_layout(cube, name, bands, start)
    check_bbl(name, bbl, bands, start)
    scan = scan_nodata(cube, start, bands, nodata, max(1, int(cube.shape[0])), name)
    if scan.valid is None:
        return preprocess(cube, bands, start, name), None
    check_values(name, scan.inf, scan.lo, scan.hi)
    x = scale(np.asarray(cube[:, :, start: start + bands]), scan.lo, scan.hi)
    x[~scan.valid] = scale(scan.mean[None, None, :], scan.lo, scan.hi)[0, 0]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), scan.valid
