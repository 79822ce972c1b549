"""Preprocessing shared by training and testing (SPEC sec. 5)."""
from __future__ import annotations

import numpy as np
import torch

#: Quirk 2 (SPEC sec. 7): the authors scale every cube to [-0.1, 0.1]; detectors min-max again to [0, 1].
INPUT_SCALE = 0.1


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the file and the problem."""


def check_cube(cube: np.ndarray, name: str, bands: int, start: int = 0) -> None:
    """Raise :class:`DataError` if ``cube`` (H x W x B) cannot give ``bands`` clean bands from ``start``."""
    if cube.ndim != 3:
        raise DataError(f"{name}: expected an H x W x B cube, got shape {cube.shape}")
    if cube.shape[2] < start + bands:
        raise DataError(f"{name}: has {cube.shape[2]} bands, fewer than --start_channel {start} + "
                        f"--input_channel {bands}")
    sel = cube[:, :, start : start + bands]
    if not np.isfinite(sel).all():
        bad = int((~np.isfinite(sel)).sum())
        raise DataError(f"{name}: {bad} NaN/Inf values in the bands used")
    if sel.min() == sel.max():
        raise DataError(f"{name}: the cube is constant (min == max == {sel.min()}), nothing to detect")


def preprocess(cube: np.ndarray, bands: int, start: int = 0, name: str = "cube") -> torch.Tensor:
    """Bands ``[start, start + bands)`` of an H x W x B cube, scaled to [-0.1, 0.1] with one global
    min and max, as a ``(bands, H, W)`` float32 tensor.
    """
    check_cube(cube, name, bands, start)
    x = cube[:, :, start : start + bands].astype(np.float64)
    lo, hi = x.min(), x.max()
    x = ((x - lo) / (hi - lo) * 2 - 1) * INPUT_SCALE
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))
