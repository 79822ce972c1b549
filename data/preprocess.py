"""Preprocessing shared by training and testing (method sec. 5)."""
from __future__ import annotations

import numpy as np
import torch

from utils.cube import hwb_array
from utils.errors import FerdError

#: Quirk 2 (method sec. 7): the authors scale every cube to [-0.1, 0.1]; detectors min-max again to [0, 1].
INPUT_SCALE = 0.1


class DataError(FerdError, ValueError):
    """Input data that cannot be used as it is; the message names the file and the problem.

    A :class:`~utils.errors.FerdError` (the scripts print it as one line, exit code 2) and a ValueError, so
    ``except ValueError`` catches it too.
    """


def check_options(bands: int, start: int) -> None:
    """Raise :class:`DataError` naming the parameter if the band window ``[start, start + bands)`` is empty or
    starts before band 0 (test.py and train.py refuse these while parsing; this guards library callers)."""
    if bands < 1:
        raise DataError(f"bands={bands}: must be 1 or more (the number of bands used)")
    if start < 0:
        raise DataError(f"start={start}: must be 0 or more (the first band used, counted from 0)")


def check_dtype(cube: np.ndarray, name: str) -> None:
    """Raise :class:`DataError` unless ``cube`` holds real numbers (bool, integer or floating point)."""
    kind = cube.dtype.kind
    if kind == "c":
        raise DataError(f"{name}: complex values ({cube.dtype}); the detectors need real numbers: "
                        "save the magnitude (np.abs) or the real part")
    if kind not in "biuf":
        raise DataError(f"{name}: values of type {cube.dtype}, not numbers; save the cube as a numeric array")


def check_layout(cube: np.ndarray, name: str, bands: int, start: int = 0) -> None:
    """What :func:`check_cube` checks before reading any value: the options, an H x W x B shape of real
    numbers, not empty, with the bands asked for. ``cube`` needs only ``ndim``, ``shape`` and ``dtype`` (a
    memory map or data.scene's MATLAB v7.3 reader is not read)."""
    check_options(bands, start)
    if cube.ndim != 3:
        raise DataError(f"{name}: expected an H x W x B cube, got shape {cube.shape}")
    check_dtype(cube, name)
    if cube.shape[0] < 1 or cube.shape[1] < 1:
        raise DataError(f"{name}: the cube is {cube.shape[0]} x {cube.shape[1]} pixels: empty")
    have = cube.shape[2]
    if have < start + bands:
        hint = (f"use bands={have - start} or less" if have > start else f"start must be below {have}")
        raise DataError(f"{name}: has {have} bands, fewer than start={start} + bands={bands}; {hint}")


def check_values(name: str, non_finite: int, lo: float, hi: float, constant: str | None = None) -> None:
    """Raise :class:`DataError` unless the bands used hold no NaN/Inf (``non_finite`` of them were counted)
    and their float64 range ``[lo, hi]`` can be scaled (max > min, max - min finite). ``constant``: how
    to show the value of a constant cube (default ``lo``)."""
    if non_finite:
        raise DataError(f"{name}: {non_finite} NaN/Inf values in the bands used; replace them (e.g. by "
                        "interpolation) or choose other bands")
    if not hi > lo:
        raise DataError(f"{name}: the cube is constant in the bands used (min == max == "
                        f"{constant if constant is not None else f'{lo:g}'}), nothing to detect")
    if not np.isfinite(hi - lo):
        raise DataError(f"{name}: values from {lo:g} to {hi:g} span more than float64 can hold; "
                        "rescale the cube")


def check_cube(cube: np.ndarray, name: str, bands: int, start: int = 0) -> tuple[float, float]:
    """Raise :class:`DataError` if ``cube`` (H x W x B) cannot give ``bands`` clean bands from ``start``;
    else return their min and max as :func:`preprocess` sees them (in float64).

    Clean: real numbers, no NaN/Inf, and a range that float64 can hold and scale (max > min, max - min
    finite). Integer, boolean and float16 cubes are fine: :func:`preprocess` converts them to float64.
    """
    check_layout(cube, name, bands, start)
    sel = cube[:, :, start : start + bands]
    finite = np.isfinite(sel) if sel.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        check_values(name, int((~finite).sum()), 0.0, 0.0)
    lo, hi = float(sel.min()), float(sel.max())
    shown = f"{sel.min()}" + (" in float64" if sel.min() != sel.max() else "")
    check_values(name, 0, lo, hi, constant=shown)
    return lo, hi


def scale(raw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values of any real dtype -> float32 ``((x - lo) / (hi - lo) * 2 - 1) * INPUT_SCALE``, computed in
    float64 operation by operation (in torch, for its threads), so that any block of a cube gets exactly
    the values the whole cube gets."""
    x = torch.from_numpy(np.asarray(raw).astype(np.float64))  # uint16 DNs, bool, float16, ...: exactly
    x.sub_(lo).div_(hi - lo).mul_(2).sub_(1).mul_(INPUT_SCALE)
    return x.to(torch.float32).numpy()


def check_mask(cube: np.ndarray, mask: np.ndarray, name: str) -> None:
    """Raise :class:`DataError` unless ``mask`` is H x W for the H x W x B ``cube``; a cube whose last two
    axes match the mask is reported as band-first (B x H x W), with how to fix it."""
    if mask.ndim != 2:
        raise DataError(f"{name}: the mask must be H x W, got shape {mask.shape}")
    if mask.shape == cube.shape[:2]:
        return
    if cube.ndim == 3 and cube.shape[1:] == mask.shape:
        raise DataError(f"{name}: the cube is {' x '.join(map(str, cube.shape))} and its mask "
                        f"{mask.shape[0]} x {mask.shape[1]}: the cube looks band-first (B x H x W, "
                        f"{cube.shape[0]} bands); store it as H x W x B, e.g. "
                        "np.save(path, np.moveaxis(cube, 0, -1))")
    raise DataError(f"{name}: mask is {mask.shape[0]} x {mask.shape[1]} but the cube is "
                    f"{cube.shape[0]} x {cube.shape[1]}")


def preprocess(cube: np.ndarray | torch.Tensor, bands: int, start: int = 0, name: str = "cube", *,
               layout: str = "hwb") -> torch.Tensor:
    """Bands ``[start, start + bands)`` of a raw cube, scaled to [-0.1, 0.1] with one global min and max, as
    a ``(bands, H, W)`` float32 CPU tensor: bands first, the layout of the FEN and of the pipeline (pass it on
    with ``layout="bhw"``).

    ``cube``: H x W x B as ``read_scene`` returns it (a numpy array, a memory map, a lazy MATLAB v7.3 cube:
    only the bands used are read) or a torch tensor; ``layout="bhw"`` for a B x H x W one. ``name``: how
    errors about its values name it (a file, say).
    """
    cube = hwb_array(cube, layout, error=DataError)
    lo, hi = check_cube(cube, name, bands, start)
    x = scale(cube[:, :, start : start + bands], lo, hi)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
