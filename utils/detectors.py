"""Detector registry for test.py: base detectors on a cube, their ``FEN+`` variants, their options, and
an up-front memory check (which only refuses what tiling, utils/pipeline.py, cannot bring into memory).

A detector maps a preprocessed ``(B, H, W)`` tensor to an ``(H, W)`` score map on the same device.
``FEN+X`` first enhances the cube with the FEN (SPEC sec. 4: ``x + FEN(x)``), then runs ``X`` on it.

    GRX   global RX (utils/rx.py)
    SLRX  the authors' simplified local RX, blocks of B // block_num px (utils/slrx.py, quirk 6)
    LRX   dual-window local RX, inner guard / outer background window (utils/lrx.py)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from model.cwl import CWL_PAD
from model.fen import FEN
from utils.errors import DetectorError
from utils.lrx import DEFAULT_INNER, DEFAULT_OUTER, check_windows, lrx, lrx_memory_bytes
from utils.rx import grx
from utils.slrx import DEFAULT_BLOCK_NUM, resolve_block_size, slrx, slrx_memory_bytes

Detector = Callable[[torch.Tensor], torch.Tensor]

#: Base detectors by name, with their default options. Each works on any device the cube is on.
BASE_DETECTORS: dict[str, Detector] = {"GRX": grx, "SLRX": slrx, "LRX": lrx}
FEN_PREFIX = "FEN+"
#: Headroom on the memory estimates (allocator slack, temporaries the estimate leaves out).
MEMORY_MARGIN = 1.25


@dataclass(frozen=True)
class DetectorOptions:
    """Options of the local detectors (test.py's ``--block_num``, ``--block_size``, ``--lrx_inner``,
    ``--lrx_outer``)."""

    block_num: int = DEFAULT_BLOCK_NUM
    block_size: int | None = None
    lrx_inner: int = DEFAULT_INNER
    lrx_outer: int = DEFAULT_OUTER


DEFAULT_OPTIONS = DetectorOptions()


def detector_names() -> list[str]:
    """Every valid ``--detectors`` value: each base detector, and each with ``FEN+`` in front."""
    return [n for base in BASE_DETECTORS for n in (base, FEN_PREFIX + base)]


def needs_fen(names: list[str]) -> bool:
    return any(n.startswith(FEN_PREFIX) for n in names)


def base_name(name: str) -> str:
    return name.removeprefix(FEN_PREFIX)


def base_detector(name: str, options: DetectorOptions = DEFAULT_OPTIONS) -> Detector:
    """The base detector ``name`` (no ``FEN+``) with ``options`` bound."""
    if name == "SLRX":
        return partial(slrx, block_num=options.block_num, block_size=options.block_size)
    if name == "LRX":
        return partial(lrx, inner=options.lrx_inner, outer=options.lrx_outer)
    return BASE_DETECTORS[name]


def check_detector(name: str, shape: tuple[int, int, int], options: DetectorOptions = DEFAULT_OPTIONS) -> None:
    """Raise DetectorError (naming a value that works) if detector ``name`` cannot run on a ``(B, H, W)`` cube."""
    b, h, w = shape
    base = base_name(name)
    if name.startswith(FEN_PREFIX) and min(h, w) <= CWL_PAD:
        raise DetectorError(f"the scene is {h} x {w} pixels; the FEN needs at least {CWL_PAD + 1} x {CWL_PAD + 1} "
                            f"(it mirrors {CWL_PAD} px at each border): use {base} without FEN+ on such a scene")
    if h * w < 2:  # every detector estimates a covariance (1 / (n - 1)) from the scene's pixels
        raise DetectorError(f"the scene is {h} x {w} pixel: {base} needs at least 2 pixels")
    if base == "SLRX":
        resolve_block_size(b, h, w, options.block_num, options.block_size)
    elif base == "LRX":
        check_windows(options.lrx_inner, options.lrx_outer, h, w)


def memory_estimate(name: str, shape: tuple[int, int, int], options: DetectorOptions = DEFAULT_OPTIONS,
                    device: torch.device | str = "cpu") -> int:
    """Rough peak bytes detector ``name`` needs on a ``(B, H, W)`` cube (after :func:`check_detector`)."""
    b, h, w = shape
    base = base_name(name)
    if base == "SLRX":
        need = slrx_memory_bytes(b, h, w, resolve_block_size(b, h, w, options.block_num, options.block_size))
    elif base == "LRX":
        need = lrx_memory_bytes(b, h, w, options.lrx_inner, options.lrx_outer, device)
    else:  # GRX: float64 copies of the pixels, the covariance and its SVD-based pseudo-inverse
        need = 8 * (4 * h * w * b + 8 * b * b)
    if name.startswith(FEN_PREFIX):
        # FEN activations (float32): CWL 64 + layer1 256 channels and its bottleneck's 128-wide inner
        # maps, on the 4 px padded image; plus the enhanced cube
        need += 4 * ((h + 8) * (w + 8) * (64 + 4 * 256 + 3 * 128) + 2 * b * h * w)
    return need


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes that can still be allocated on ``device``: free GPU memory (plus what torch has cached), or
    the system's available memory (``MemAvailable``; free pages where /proc is missing)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(name: str, shape: tuple[int, int, int], options: DetectorOptions = DEFAULT_OPTIONS,
                 device: torch.device | str = "cpu", scene: str = "scene") -> int:
    """Refuse (DetectorError with the estimate) a detector that would not fit in the memory available now,
    even in the smallest tiles utils/pipeline.py can cut the scene into.

    Returns the whole-scene estimate in bytes (:func:`memory_estimate`); a scene above it runs in tiles.
    """
    need = memory_estimate(name, shape, options, device)
    have = available_memory(device)
    if need * MEMORY_MARGIN > have:
        from utils.pipeline import smallest_working_set  # the pipeline imports this module

        b, h, w = shape
        tiled = smallest_working_set((h, w, b), [name], options)
        if tiled * MEMORY_MARGIN > have:
            raise DetectorError(f"{scene}: detector {name} needs about {_size(tiled * MEMORY_MARGIN)} for a "
                                f"{h} x {w} x {b} cube but only {_size(have)} is available on "
                                f"{torch.device(device)}, even in the smallest tiles: use fewer bands "
                                "(--input_channel), a smaller scene, or another --device")
    return need


def run_detector(name: str, cube: torch.Tensor, fen: FEN | None = None, enhanced: torch.Tensor | None = None,
                 options: DetectorOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """Scores of detector ``name`` on ``cube`` (B, H, W); ``enhanced`` reuses an already enhanced cube."""
    detector = base_detector(base_name(name), options)
    if name.startswith(FEN_PREFIX):
        if enhanced is None:
            if fen is None:
                raise DetectorError(f"detector {name} needs FEN weights")
            enhanced = fen.enhance(cube)
        return detector(enhanced)
    return detector(cube)
