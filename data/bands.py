"""What a file says about its bands: wavelengths (nm), widths, the bad band list and the nodata value, read
from ENVI headers (GeoTIFF: data/geotiff.py, NetCDF: data/netcdf.py); and the checks and messages built on
them: bands that cannot be used, the wavelength range of the bands used, and how far a scene's bands lie from
the bands a FEN was trained on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.preprocess import DataError

#: A scene's band centres further than this (nm, median over the bands used) from a FEN's training bands get
#: a warning: about two AVIRIS-NG band widths (5 nm); sensors differ by a few nm for the "same" band.
WAVELENGTH_TOLERANCE_NM = 10.0


def _numbers(value: object) -> np.ndarray | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).strip().strip("{}").split(",")
    try:
        return np.array([float(str(v).strip()) for v in items if str(v).strip()], dtype=np.float64)
    except ValueError:
        return None


def envi_band_facts(path: Path, bands: int) -> dict[str, object]:
    """``wavelengths`` (nm), ``fwhm``, ``bbl`` and ``nodata`` (``data ignore value``) of an ENVI header, each
    None where the header does not give it (or gives a list of another length than ``bands``)."""
    from spectral.io import envi

    header = envi.read_envi_header(str(path))
    units = str(header.get("wavelength units", "")).strip().lower()
    out: dict[str, object] = {}
    for field, key in (("wavelength", "wavelengths"), ("fwhm", "fwhm"), ("bbl", "bbl")):
        values = _numbers(header.get(field))
        out[key] = values if values is not None and len(values) == bands else None
    for key in ("wavelengths", "fwhm"):
        v = out[key]
        if v is not None and (units.startswith("micro") or (not units and v.max() < 100)):
            out[key] = v * 1000.0
    ignore = _numbers(header.get("data ignore value"))
    out["nodata"] = float(ignore[0]) if ignore is not None and len(ignore) == 1 else None
    return out


def band_runs(indices: list[int]) -> str:
    """``[129, 130, 131, 140]`` -> ``"129-131, 140"``."""
    parts, run = [], []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
        else:
            if run:
                parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
            run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
    return ", ".join(parts)


def clean_start(bad: list[int], total: int, bands: int, start: int) -> int | None:
    """The start closest to ``start`` whose ``bands`` bands avoid every band in ``bad`` (None if none does)."""
    bad_set = set(bad)
    ok = [s for s in range(0, total - bands + 1) if not bad_set.intersection(range(s, s + bands))]
    return min(ok, key=lambda s: (abs(s - start), s)) if ok else None


def longest_clean_run(bad: list[int], total: int) -> tuple[int, int]:
    """``(start, length)`` of the longest run of bands free of ``bad``."""
    best, s = (0, 0), 0
    for edge in sorted(set(bad)) + [total]:
        if edge - s > best[1]:
            best = (s, edge - s)
        s = edge + 1
    return best


def refuse_bands(name: str, bad: list[int], why: tuple[str, str], total: int, bands: int, start: int) -> None:
    """Raise :class:`DataError`: the bands ``bad`` (from 0) inside ``[start, start + bands)`` cannot be used
    (``why``: the reason for one band and for several); the message names a ``start_channel`` that avoids
    them, or the longest clean run."""
    where = f"inside the bands used [{start}, {start + bands})"
    fix = clean_start(bad, total, bands, start)
    if fix is not None:
        hint = f"use start_channel={fix}"
    else:
        run_start, run = longest_clean_run(bad, total)
        hint = (f"no {bands} contiguous bands of the {total} avoid them (the longest clean run is {run} bands "
                f"from {run_start}): use input_channel={run} or less")
    what = f"band {bad[0]}" if len(bad) == 1 else f"bands {band_runs(bad)}"
    raise DataError(f"{name}: {what} (from 0) {why[len(bad) > 1]}, {where}: {hint}")


def check_bbl(name: str, bbl: np.ndarray | None, bands: int, start: int) -> None:
    """Refuse bands marked bad (0) in the bad band list ``bbl`` inside the bands used."""
    if bbl is None:
        return
    bad = [int(i) for i in np.flatnonzero(np.asarray(bbl) == 0)]
    inside = [i for i in bad if start <= i < start + bands]
    if inside:
        refuse_bands(name, bad, ("is marked bad in the file's bad band list (bbl)",
                                 "are marked bad in the file's bad band list (bbl)"), len(bbl), bands, start)


def wavelength_range(wavelengths: np.ndarray | None, bands: int, start: int) -> tuple[float, float] | None:
    """``(first, last)`` wavelength (nm) of the bands used, or None where unknown."""
    if wavelengths is None or len(wavelengths) < start + bands:
        return None
    used = np.asarray(wavelengths[start: start + bands], dtype=np.float64)
    return float(used.min()), float(used.max())


def wavelength_gap(scene: np.ndarray | None, trained: np.ndarray | None) -> float | None:
    """Median distance (nm) between a scene's band centres and a FEN's training band centres, band for band
    (the FEN's channel ``i`` is the scene's band used ``i``); None where either is unknown or they differ in
    length."""
    if scene is None or trained is None or len(scene) != len(trained):
        return None
    return float(np.median(np.abs(np.asarray(scene, dtype=np.float64) - np.asarray(trained, dtype=np.float64))))


def wavelength_warning(name: str, scene: np.ndarray | None, trained: np.ndarray | None,
                       weights: str) -> str | None:
    """One line when a scene's bands lie more than :data:`WAVELENGTH_TOLERANCE_NM` from the FEN's, else None."""
    gap = wavelength_gap(scene, trained)
    if gap is None or gap <= WAVELENGTH_TOLERANCE_NM:
        return None
    return (f"warning: {name}: its bands lie {gap:.0f} nm (median) from those the FEN of '{weights}' was trained "
            f"on ({trained[0]:.0f}-{trained[-1]:.0f} nm, scene {scene[0]:.0f}-{scene[-1]:.0f} nm); "
            "the FEN's enhancement may not carry over")


def training_wavelengths(scenes: list, bands: int, start: int, tolerance: float = 1.0) -> np.ndarray | None:
    """The centre wavelengths (nm) of the bands ``[start, start + bands)`` shared by every training scene
    (objects with a ``wavelengths`` attribute): their mean where all scenes give them and agree to within
    ``tolerance`` nm band for band, else None (a FEN trained on mixed or unknown bands records none)."""
    used = []
    for s in scenes:
        w = getattr(s, "wavelengths", None)
        if w is None or len(w) < start + bands:
            return None
        used.append(np.asarray(w[start: start + bands], dtype=np.float64))
    if not used or np.ptp(np.stack(used), axis=0).max() > tolerance:
        return None
    return np.stack(used).mean(axis=0)
