"""What every detector is to the rest of the code: one :class:`Detector` object (its name, its options and
their checks, its memory estimate, the strips it runs in and how it scores a cube), and the
:class:`CubeReader` it reads a cube through.

A detector scores a cube through a reader, never a tensor of the whole scene: ``pipeline/`` gives it a
reader over a scene's memory-mapped or file-backed :class:`pipeline.sources.SceneCube`, :meth:`Detector.score`
one over a tensor. Both run the same code, so the tests run the path test.py runs. Adding a detector is one
file defining its object, and one line in ``detectors/registry.py``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import KW_ONLY, dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from utils.errors import DetectorError

#: A cube's shape as every part of the library sees it: ``(H, W, B)`` (rows, columns, bands), a pixel's
#: spectrum contiguous, as the files, :class:`pipeline.sources.SceneCube` and :class:`CubeReader` hold it.
Shape = tuple[int, int, int]


@dataclass(frozen=True, kw_only=False)
class Option:
    """One option of a detector: ``test.py --<name>`` and the field ``<name>`` of ``DetectorOptions``; a
    ``bool`` one is the flag pair ``--<name>`` / ``--no-<name>``, ``choices`` the values allowed (None: any)."""

    name: str
    type: type
    default: Any
    help: str
    _: KW_ONLY
    least: float | None = None  # the smallest value it takes (the detector's check says more where it needs)
    choices: tuple | None = None  # the values it takes, where they are few


def reader_valid(reader: CubeReader) -> np.ndarray | None:
    """The reader's ``(H, W)`` valid-pixel mask, None when every pixel has data (or the reader has none)."""
    return getattr(reader, "valid", None)


def valid_window(valid: np.ndarray, r0: int, r1: int, c0: int, c1: int, halo: int, periodic: bool,
                 device: torch.device) -> torch.Tensor:
    """The ``(rows + 2 halo, cols + 2 halo)`` bool window of ``valid`` matching :meth:`CubeReader.window`."""
    h, w = valid.shape
    rows, cols = window_index(r0, r1, halo, h, periodic), window_index(c0, c1, halo, w, periodic)
    return torch.from_numpy(np.ascontiguousarray(valid[rows][:, cols])).to(device)


def check_dual_windows(detector: str, prefix: str, inner: int, outer: int, height: int, width: int) -> None:
    """Raise DetectorError, naming a value that works, unless the ``inner`` (guard) and ``outer`` windows of a
    dual-window detector are odd, nested and fit an ``height`` x ``width`` scene. ``prefix`` names the options:
    ``<prefix>_inner``, ``<prefix>_outer`` (LRX and CRD ask the same of their windows)."""
    inner_name, outer_name = f"{prefix}_inner", f"{prefix}_outer"
    for name, v in ((inner_name, inner), (outer_name, outer)):
        if v < 1 or v % 2 == 0:
            raise DetectorError(f"{name}={v}: windows must be odd and positive (centred on the pixel), "
                                f"e.g. {max(1, v + 1 if v % 2 == 0 else 1)}")
    if inner >= outer:
        raise DetectorError(f"{inner_name}={inner} must be smaller than {outer_name}={outer} "
                            f"(use {outer_name}={inner + 2} or more)")
    side = min(height, width)
    if outer > side:
        largest = side if side % 2 else side - 1
        hint = (f"use {outer_name}={largest} or less" if largest > inner
                else f"the scene is too small for {inner_name}={inner}")
        raise DetectorError(f"{detector} outer window {outer_name}={outer} is larger than the {height} x {width} "
                            f"scene: {hint}")


def score_in_strips(reader: CubeReader, strip: int, halo: int, periodic: bool,
                    score_window: Callable[..., torch.Tensor]) -> torch.Tensor:
    """Scores ``(H, W)`` float64 of a window detector: rows in strips of ``strip`` (0: all), each read with
    ``halo`` px of context (mirrored, or wrapped with ``periodic``) and scored by ``score_window``, which maps
    the ``(rows + 2 halo, W + 2 halo, B)`` float32 window to the strip's ``(rows, W)`` scores. Where the
    reader has nodata pixels, ``score_window`` also gets the window's ``(rows + 2 halo, W + 2 halo)`` bool
    valid mask (keyword ``keep``) to leave them out of the backgrounds."""
    h, w, _ = reader.shape
    strip = strip or h
    valid = reader_valid(reader)
    scores = torch.empty(h, w, dtype=torch.float64, device=reader.device)
    for r0 in range(0, h, strip):
        r1 = min(h, r0 + strip)
        window = reader.window(r0, r1, 0, w, halo, periodic)
        if valid is None:
            scores[r0:r1] = score_window(window)
        else:
            scores[r0:r1] = score_window(window, keep=valid_window(valid, r0, r1, 0, w, halo, periodic, reader.device))
    return scores


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Indices of ``numpy.pad(mode="reflect")`` (the edge not repeated; ``torch``'s reflect padding too):
    ``-1 -> 1``, ``size -> size - 2``. Valid for overhangs shorter than ``size``."""
    index = np.abs(index)
    return np.where(index >= size, 2 * (size - 1) - index, index)


def window_index(start: int, stop: int, halo: int, size: int, periodic: bool) -> np.ndarray:
    """Indices of ``[start - halo, stop + halo)`` mirrored (or wrapped) into ``[0, size)``."""
    index = np.arange(start - halo, stop + halo)
    return np.mod(index, size) if periodic else reflect_index(index, size)


def reflected_window(cube: Any, r0: int, r1: int, c0: int, c1: int, halo: int, periodic: bool = False
                     ) -> np.ndarray:
    """Rows ``[r0 - halo, r1 + halo)`` and columns ``[c0 - halo, c1 + halo)`` of an ``(H, W, B)`` ``cube`` read
    by ``cube.block(r0, r1, c0, c1)`` (a numpy array), reflected at the scene border as the CWL's padding (or
    wrapped around it with ``periodic``): ``(r1 - r0 + 2 halo, c1 - c0 + 2 halo, B)``."""
    h, w, _ = cube.shape
    rows = window_index(r0, r1, halo, h, periodic)
    cols = window_index(c0, c1, halo, w, periodic)
    lo_c, hi_c = int(cols.min()), int(cols.max()) + 1
    # wrapped rows come from both ends of the scene: read each run of them, not all the rows between
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1) if periodic else [rows]
    parts = []
    for run in runs:
        lo_r = int(run.min())
        parts.append(cube.block(lo_r, int(run.max()) + 1, lo_c, hi_c)[run - lo_r][:, cols - lo_c])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class CubeReader:
    """What a detector reads a cube through: pixels, blocks, and windows with context beyond the scene border,
    as tensors on :attr:`device`; the cube is ``(H, W, B)``, the library's layout.

    ``cube``: an ``(H, W, B)`` tensor, read on its own device (a bands-first tensor's
    ``x.permute(1, 2, 0)`` view: its pixels are then read band-major, without a transposing copy); or a
    :class:`pipeline.sources.SceneCube` (anything with an ``(H, W, B)`` ``shape`` and ``block(r0, r1, c0, c1)``
    giving a float32 numpy array), read block by block to ``device``. ``valid``: the ``(H, W)`` bool numpy
    mask of the pixels with data (None: all of them; data/nodata.py).
    """

    def __init__(self, cube: Any, device: torch.device | str | None = None, valid: np.ndarray | None = None) -> None:
        self.cube, self.valid = cube, valid
        self.shape: Shape = tuple(int(n) for n in cube.shape)
        self.is_tensor = isinstance(cube, torch.Tensor)
        self.device = cube.device if self.is_tensor else torch.device(device or "cpu")

    def pixels(self, i0: int, i1: int) -> torch.Tensor:
        """Pixels ``[i0, i1)`` in row-major order: ``(n, B)`` float64, a copy the caller may overwrite."""
        _, w, b = self.shape
        if self.is_tensor:
            # copies: the caller centres the pixels in place, and a float64 cube would otherwise be overwritten
            if self.cube.stride(2) != 1:  # bands-first memory: each band's pixels in a row, read as (B, n)
                flat = self.cube.permute(2, 0, 1).reshape(b, -1)
                return flat[:, i0:i1].to(torch.float64, copy=True).T
            return self.cube.reshape(-1, b)[i0:i1].to(torch.float64, copy=True)
        r0, r1 = i0 // w, -(-i1 // w)
        rows = self.cube.block(r0, r1).reshape(-1, b)[i0 - r0 * w: i1 - r0 * w]
        # to the device first, then to float64: in one call the conversion is made on the host, doubling
        # the host memory and the bytes copied to a GPU
        return torch.from_numpy(rows).to(self.device).to(torch.float64)

    def block(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Rows ``[r0, r1)``, columns ``[c0, c1)``: ``(rows, cols, B)`` float32; a float64 tensor's blocks stay
        float64 (``slrx_maps`` keeps the precision it is given)."""
        if self.is_tensor:
            return _floating(self.cube[r0:r1, c0:c1])
        return torch.from_numpy(self.cube.block(r0, r1, c0, c1)).to(self.device)

    def window(self, r0: int, r1: int, c0: int, c1: int, halo: int, periodic: bool = False) -> torch.Tensor:
        """Rows ``[r0 - halo, r1 + halo)`` and columns ``[c0 - halo, c1 + halo)``, mirrored at the scene border
        (the edge pixel not repeated), or wrapped around it with ``periodic``: ``(rows, cols, B)`` float32."""
        if not self.is_tensor:
            return torch.from_numpy(reflected_window(self.cube, r0, r1, c0, c1, halo, periodic)).to(self.device)
        h, w, _ = self.shape
        rows = torch.from_numpy(window_index(r0, r1, halo, h, periodic)).to(self.device)
        cols = torch.from_numpy(window_index(c0, c1, halo, w, periodic)).to(self.device)
        return self.cube[rows][:, cols].to(torch.float32)


def _floating(x: torch.Tensor) -> torch.Tensor:
    """``x`` as it is if float64, else as float32."""
    return x if x.dtype == torch.float64 else x.to(torch.float32)


class Detector(ABC):
    """One anomaly detector: an ``(H, W, B)`` cube read through a :class:`CubeReader` -> ``(H, W)`` float64
    scores, on the reader's device (:meth:`score`: of a bands-first tensor, as ``preprocess`` gives it).

    Class attributes say what the planner and test.py need: ``name``; ``options`` (test.py flags and
    ``DetectorOptions`` fields, with their types, defaults and least values); ``in_strips``, whether it runs
    in strips of rows whose height the planner chooses (else it reads pixels in fixed chunks), and
    ``strip_unit`` (what the height counts); ``extra_maps``, float64 ``(H, W)`` maps it holds beside its
    scores. Nothing else of a detector is named anywhere: the planner, the pipeline and test.py ask the
    object.
    """

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    in_strips: ClassVar[bool] = False
    strip_unit: ClassVar[str] = "rows"
    extra_maps: ClassVar[int] = 0
    #: its scores are squared Mahalanobis distances of the pixels (chi-square with B degrees of freedom under
    #: a Gaussian background): the detections' false-alarm rule applies
    chi_square: ClassVar[bool] = False

    def check(self, shape: Shape, options: Any) -> None:
        """Raise ``DetectorError`` (naming a value that works) if the options do not fit an ``(H, W, B)`` cube."""

    @abstractmethod
    def memory_bytes(self, shape: Shape, options: Any, device: torch.device | str = "cpu") -> int:
        """Rough peak bytes on the whole ``(H, W, B)`` cube at once (after :meth:`check`)."""

    def strip_units(self, shape: Shape, options: Any) -> int:
        """The tallest strip: the whole scene, in :attr:`strip_unit`."""
        return shape[0]

    def least_strip(self, shape: Shape, options: Any) -> int:
        """The shortest strip worth running (a strip shorter than the context it carries gains nothing)."""
        return 1

    @abstractmethod
    def strip_bytes(self, shape: Shape, strip: int, options: Any, device: torch.device | str = "cpu") -> int:
        """Working bytes of one strip of ``strip`` :attr:`strip_unit` (a chunk, without strips), on ``device``
        (what runs side by side differs between the CPU and a GPU)."""

    @abstractmethod
    def score_reader(self, reader: CubeReader, strip: int, options: Any) -> torch.Tensor:
        """Scores ``(H, W)`` float64 of the cube ``reader`` reads, in strips of ``strip`` units (0: whole)."""

    def score(self, cube: torch.Tensor, options: Any) -> torch.Tensor:
        """Scores ``(H, W)`` float64 of a ``(B, H, W)`` tensor, on its device: the path test.py runs, in one
        strip."""
        if cube.dim() != 3:
            raise DetectorError(f"{self.name} expects a (B, H, W) cube, got shape {tuple(cube.shape)}")
        return self.score_reader(CubeReader(cube.permute(1, 2, 0)), 0, options)
