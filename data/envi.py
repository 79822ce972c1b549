"""ENVI scenes: a ``.hdr`` text header plus a binary image (BSQ, BIL or BIP), read with the ``spectral``
package (Spectral Python), as a third single-scene format beside ``.mat`` and ``.npy``.

This module only opens ENVI files; data/scene.py builds the scene from them (it imports this module, never
the other way round). The ground truth is looked for beside the header, in this order:

    <stem>.png                    a mask image as for .npy scenes (green channel 255 = anomaly; grey: 255)
    <stem>_gt.hdr, <stem>_mask.hdr, <stem>_map.hdr
                                  a one-band ENVI image, nonzero = anomaly
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data.preprocess import DataError
from utils.errors import describe

if TYPE_CHECKING:
    from data.georef import GeoRef

MASK_SUFFIXES = ("_gt", "_mask", "_map")


#: ENVI ``data type`` codes and their numpy types (spectral's table; the codes spectral can read).
DATA_TYPES = {"1": "u1", "2": "i2", "3": "i4", "4": "f4", "5": "f8", "6": "c8", "9": "c16", "12": "u2", "13": "u4",
              "14": "i8", "15": "u8"}
#: Interleaves as spectral tells them apart (it reads any other spelling, "Bil" say, as BSQ).
INTERLEAVES = ("bsq", "bil", "bip", "BSQ", "BIL", "BIP")


def _whole(path: Path, header: dict, field: str, least: int, default: str | None = None) -> int:
    """Header ``field`` as a whole number of at least ``least``; :class:`DataError` naming the field if not."""
    value = header.get(field, default)
    text = " ".join(value) if isinstance(value, list) else str(value).strip()
    if value is None or not text.lstrip("+").isdigit() or int(text) < least:
        shown = "missing" if value is None else f"= {text}"
        raise DataError(f"{path}: ENVI header field '{field}' {shown}: must be a whole number, {least} or more")
    return int(text)


def check_header(path: Path, header: dict) -> tuple[tuple[int, int, int], int, np.dtype]:
    """Refuse (:class:`DataError`, naming the field) an ENVI header that spectral would read wrongly or not at
    all: ``byte order`` other than 0 or 1 (spectral swaps the bytes for anything but the machine's order), an
    unknown ``data type`` or ``interleave``, sizes below 1, a negative ``header offset``. Returns the shape
    ``(lines, samples, bands)``, the offset and the item type, for :func:`check_size`."""
    shape = tuple(_whole(path, header, f, 1) for f in ("lines", "samples", "bands"))
    offset = _whole(path, header, "header offset", 0, default="0")
    order = str(header.get("byte order", "missing")).strip()
    if order not in ("0", "1"):
        raise DataError(f"{path}: ENVI header field 'byte order' = {order}: must be 0 (little-endian) or "
                        "1 (big-endian)")
    code = str(header.get("data type", "missing")).strip()
    if code not in DATA_TYPES:
        raise DataError(f"{path}: ENVI header field 'data type' = {code}: not a known ENVI data type (one of "
                        f"{', '.join(DATA_TYPES)})")
    interleave = str(header.get("interleave", "missing")).strip()
    if interleave not in INTERLEAVES:
        raise DataError(f"{path}: ENVI header field 'interleave' = {interleave}: must be bsq, bil or bip")
    return shape, offset, np.dtype(DATA_TYPES[code])


def check_size(path: Path, image_file: str, shape: tuple[int, int, int], offset: int, dtype: np.dtype) -> None:
    """The image file must hold exactly ``header offset`` bytes and then ``lines x samples x bands`` values of
    the ``data type``: a size that does not match means a wrong field, whose numbers would be wrong."""
    size = os.path.getsize(image_file)
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if offset >= size:
        raise DataError(f"{path}: ENVI header field 'header offset' = {offset} lies outside the image file "
                        f"{image_file} ({size} bytes)")
    if size != need:
        lines, samples, bands = shape
        raise DataError(f"{path}: the image file {image_file} has {size} bytes but the header needs {need} "
                        f"({lines} lines x {samples} samples x {bands} bands of {dtype.itemsize} bytes + "
                        f"header offset {offset}): check 'lines', 'samples', 'bands', 'data type', 'header offset'")


def open_envi(path: Path, mmap: bool = True) -> np.ndarray:
    """The ENVI image of header ``path`` as an ``(H, W, B)`` array (a one-band image gives B = 1).

    The header fields it relies on are checked first (:func:`check_header`, :func:`check_size`). Memory-mapped
    (read-only, in band-interleaved-by-pixel view whatever the file's interleave) where spectral can map the
    file, else read whole.
    """
    try:
        from spectral.io import envi
    except ImportError:  # pragma: no cover - spectral is in requirements.txt
        raise DataError(f"{path}: reading ENVI files needs the 'spectral' package (pip install spectral)") from None
    try:
        with warnings.catch_warnings():  # spectral warns of NaN and odd header names: check_cube says what matters
            warnings.simplefilter("ignore")
            header = envi.read_envi_header(str(path))
            shape, offset, dtype = check_header(path, header)
            image = envi.open(str(path))
            check_size(path, image.filename, shape, offset, dtype)
            cube = None
            if mmap:
                try:
                    cube = image.open_memmap(interleave="bip", writable=False)
                except Exception:  # a layout spectral cannot map: read it whole
                    cube = None
            if cube is None:
                cube = np.asarray(image.load())
    except DataError:
        raise
    except Exception as err:  # spectral raises many kinds (EnviException, KeyError, numpy errors, ...)
        raise DataError(f"{path}: not a readable ENVI header + image ({describe(err)})") from None
    return cube if cube.ndim == 3 else cube[:, :, None]


def envi_mask_path(path: Path) -> Path | None:
    """The ground-truth file beside ENVI header ``path``, or None."""
    for candidate in [path.with_suffix(".png")] + [path.with_name(path.stem + s + ".hdr") for s in MASK_SUFFIXES]:
        if candidate.is_file():
            return candidate
    return None


def read_envi_mask(path: Path) -> np.ndarray:
    """A one-band ENVI image as an ``(H, W)`` bool mask (nonzero = anomaly)."""
    m = open_envi(path, mmap=False)
    if m.shape[2] != 1:
        raise DataError(f"{path}: a mask must have one band, this one has {m.shape[2]}")
    return m[:, :, 0] != 0


def envi_georef(path: Path) -> "GeoRef | None":
    """The georeference of ENVI header ``path`` from its ``map info`` (and ``coordinate system string``), or
    None where it has none.

    Read through GDAL's ENVI driver (rasterio), so that the pixel origin, the UTM zones, the datums and the
    ``rotation=`` of ``map info`` mean here what they mean in QGIS and every GDAL tool. A header that GDAL
    cannot read gives None (the scene is scored all the same, its detections in pixels only).
    """
    from data.georef import GeoRef

    if "map info" not in path.read_text(errors="replace"):  # most scenes: no GDAL needed
        return None
    try:
        import rasterio
        from spectral.io import envi

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image_file = envi.open(str(path)).filename
            with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(image_file) as ds:  # no .aux.xml beside it
                transform, crs = ds.transform, ds.crs
    except Exception:  # rasterio's many errors (driver, header): no georeference rather than no scene
        return None
    if transform.is_identity and crs is None:
        return None
    return GeoRef(crs.to_string() if crs is not None else None, tuple(float(v) for v in transform.to_gdal()))
