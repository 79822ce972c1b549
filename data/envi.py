"""ENVI scenes: a ``.hdr`` text header plus a binary image (BSQ, BIL or BIP), read with the ``spectral``
package (Spectral Python), as a third single-scene format beside ``.mat`` and ``.npy``.

This module only opens ENVI files; data/scene.py builds the scene from them (it imports this module, never
the other way round). The ground truth is looked for beside the header, in this order:

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


def open_envi(path: Path, mmap: bool = True) -> np.ndarray:
    """The ENVI image of header ``path`` as an ``(H, W, B)`` array (a one-band image gives B = 1).

    Memory-mapped (read-only, in band-interleaved-by-pixel view whatever the file's interleave) where
    spectral can map the file, else read whole.
    """
    try:
        from spectral.io import envi
    except ImportError:  # pragma: no cover - spectral is in requirements.txt
        raise DataError(f"{path}: reading ENVI files needs the 'spectral' package (pip install spectral)") from None
    try:
        with warnings.catch_warnings():  # spectral warns of NaN and odd header names: check_cube says what matters
            warnings.simplefilter("ignore")
            image = envi.open(str(path))
            cube = None
            if mmap:
                try:
                    cube = image.open_memmap(interleave="bip", writable=False)
                except Exception:  # a layout spectral cannot map (e.g. an odd byte order): read it whole
                    cube = None
            if cube is None:
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


def read_envi_mask(path: Path) -> np.ndarray:
    """A one-band ENVI image as an ``(H, W)`` bool mask (nonzero = anomaly)."""
    m = open_envi(path, mmap=False)
    if m.shape[2] != 1:
        raise DataError(f"{path}: a mask must have one band, this one has {m.shape[2]}")
    return m[:, :, 0] != 0
