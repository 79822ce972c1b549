"""ENVI scenes: a ``.hdr`` text header plus a binary image (BSQ, BIL or BIP), read with the ``spectral``
package (Spectral Python), as a third single-scene format beside ``.mat`` and ``.npy``.

The ground truth is looked for beside the header, in this order:

    <stem>.png                    a mask image as for .npy scenes (green channel 255 = anomaly; grey: 255)
    <stem>_gt.hdr, <stem>_mask.hdr, <stem>_map.hdr
                                  a one-band ENVI image, nonzero = anomaly
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from data.preprocess import DataError
from utils.errors import describe

MASK_SUFFIXES = ("_gt", "_mask", "_map")


def _open(path: Path) -> np.ndarray:
    """The ENVI image of header ``path`` as an ``(H, W, B)`` array (a one-band image gives B = 1)."""
    try:
        from spectral.io import envi
    except ImportError:  # pragma: no cover - spectral is in requirements.txt
        raise DataError(f"{path}: reading ENVI files needs the 'spectral' package (pip install spectral)") from None
    try:
        with warnings.catch_warnings():  # spectral warns of NaN and odd header names: check_cube says what matters
            warnings.simplefilter("ignore")
            image = envi.open(str(path))
            cube = np.asarray(image.load())
    except Exception as err:  # spectral raises many kinds (EnviException, KeyError, numpy errors, ...)
        raise DataError(f"{path}: not a readable ENVI header + image ({describe(err)})") from None
    return cube if cube.ndim == 3 else cube[:, :, None]


def envi_mask_path(path: Path) -> Path | None:
    """The ground-truth file beside ENVI header ``path``, or None."""
    for candidate in [path.with_suffix(".png")] + [path.with_name(path.stem + s + ".hdr") for s in MASK_SUFFIXES]:
        if candidate.is_file():
            return candidate
    return None


def read_envi(path: str | Path):
    """Read an ENVI scene (header ``path``) and its mask into a :class:`data.scene.Scene`."""
    from data.scene import Scene, read_png_mask  # here: data.scene dispatches .hdr files to this module

    path = Path(path)
    cube = _open(path)
    mask_path = envi_mask_path(path)
    if mask_path is None:
        names = ", ".join([path.stem + ".png"] + [path.stem + s + ".hdr" for s in MASK_SUFFIXES])
        raise DataError(f"{path}: no ground-truth mask beside it (expected one of {names})")
    if mask_path.suffix.lower() == ".png":
        mask = read_png_mask(mask_path)
    else:
        m = _open(mask_path)
        if m.shape[2] != 1:
            raise DataError(f"{mask_path}: a mask must have one band, this one has {m.shape[2]}")
        mask = m[:, :, 0] != 0
    return Scene(path.stem, cube, mask, str(path))
