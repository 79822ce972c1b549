"""Detector registry for test.py: base detectors on a cube, their ``FEN+`` variants, their options, their
checks and their memory estimates (pipeline/plan.py sizes tiles from them).

A detector maps a preprocessed ``(B, H, W)`` tensor to an ``(H, W)`` score map on the same device.
``FEN+X`` first enhances the cube with the FEN (method sec. 4: ``x + FEN(x)``), then runs ``X`` on it.

    GRX   global RX (detectors/rx.py)
    SLRX  the authors' simplified local RX, blocks of B // block_num px (detectors/slrx.py, quirk 6)
    LRX   dual-window local RX, inner guard / outer background window (detectors/lrx.py)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from detectors.lrx import DEFAULT_INNER, DEFAULT_OUTER, check_windows, lrx, lrx_memory_bytes
from detectors.rx import grx
from detectors.blocks import DEFAULT_BLOCK_NUM, resolve_block_size, slrx_memory_bytes
from detectors.slrx import slrx
from model.cwl import CWL_PAD
from utils.errors import DetectorError

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
    else:  # GRX: float64 copies of the pixels, the covariance and its eigh-based pseudo-inverse
        need = 8 * (4 * h * w * b + 8 * b * b)
    if name.startswith(FEN_PREFIX):
        # FEN activations (float32): CWL 64 + layer1 256 channels and its bottleneck's 128-wide inner
        # maps, on the 4 px padded image; plus the enhanced cube
        need += 4 * ((h + 8) * (w + 8) * (64 + 4 * 256 + 3 * 128) + 2 * b * h * w)
    return need
