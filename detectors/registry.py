"""The detectors test.py offers: the list of :class:`detectors.base.Detector` objects, their ``FEN+``
variants, the options of all of them (:data:`DetectorOptions`), and the checks and memory estimates of a
name such as ``FEN+LRX``.

A detector maps a preprocessed ``(B, H, W)`` tensor to an ``(H, W)`` score map on the same device.
``FEN+X`` first enhances the cube with the FEN (method sec. 4: ``x + FEN(x)``), then runs ``X`` on it.

    GRX   global RX (detectors/rx.py)
    SLRX  the authors' simplified local RX, blocks of B // block_num px (detectors/slrx.py, quirk 6)
    LRX   dual-window local RX, inner guard / outer background window (detectors/lrx.py)
    CRD   collaborative representation, inner guard / outer dictionary window (detectors/crd.py)

Adding a detector: its file defines the object, and one line below lists it.
"""
from __future__ import annotations

from dataclasses import field, make_dataclass
from functools import partial
from typing import Callable

import torch

from detectors.base import Detector
from detectors.crd import CRD
from detectors.lrx import LRX
from detectors.rx import GRX
from detectors.slrx import SLRX
from model.cwl import CWL_PAD
from utils.errors import DetectorError

#: Every base detector by name, in the order tables and plans list them.
DETECTORS: dict[str, Detector] = {d.name: d for d in (GRX, SLRX, LRX, CRD)}
FEN_PREFIX = "FEN+"
#: What test.py runs without --detectors.
DEFAULT_DETECTORS = [GRX.name, FEN_PREFIX + GRX.name]
#: Headroom on the memory estimates (allocator slack, temporaries the estimate leaves out).
MEMORY_MARGIN = 1.25

#: The options of every detector (test.py's flags of the same names), with their defaults.
DetectorOptions = make_dataclass(
    "DetectorOptions", [(o.name, o.type | None, field(default=o.default)) for d in DETECTORS.values() for o in d.options],
    frozen=True)
DetectorOptions.__doc__ = "The options of every detector, by name: " + ", ".join(
    o.name for d in DETECTORS.values() for o in d.options) + "."
DEFAULT_OPTIONS = DetectorOptions()


def detector_names() -> list[str]:
    """Every valid ``--detectors`` value: each base detector, and each with ``FEN+`` in front."""
    return [n for base in DETECTORS for n in (base, FEN_PREFIX + base)]


def needs_fen(names: list[str]) -> bool:
    return any(n.startswith(FEN_PREFIX) for n in names)


def base_name(name: str) -> str:
    return name.removeprefix(FEN_PREFIX)


def detector(name: str) -> Detector:
    """The detector object of ``name`` (``FEN+`` or not)."""
    return DETECTORS[base_name(name)]


def base_detector(name: str, options=DEFAULT_OPTIONS) -> Callable[[torch.Tensor], torch.Tensor]:
    """The base detector ``name`` (no ``FEN+``) with ``options`` bound: the object's :meth:`Detector.score`,
    the path test.py runs."""
    return partial(detector(name).score, options=options)


def check_detector(name: str, shape: tuple[int, int, int], options=DEFAULT_OPTIONS) -> None:
    """Raise DetectorError (naming a value that works) if detector ``name`` cannot run on a ``(B, H, W)`` cube."""
    b, h, w = shape
    base = base_name(name)
    if name.startswith(FEN_PREFIX) and min(h, w) <= CWL_PAD:
        raise DetectorError(f"the scene is {h} x {w} pixels; the FEN needs at least {CWL_PAD + 1} x {CWL_PAD + 1} "
                            f"(it mirrors {CWL_PAD} px at each border): use {base} without FEN+ on such a scene")
    if h * w < 2:  # every detector estimates statistics (a covariance, a range) from the scene's pixels
        raise DetectorError(f"the scene is {h} x {w} pixel: {base} needs at least 2 pixels")
    detector(name).check(shape, options)


def memory_estimate(name: str, shape: tuple[int, int, int], options=DEFAULT_OPTIONS,
                    device: torch.device | str = "cpu") -> int:
    """Rough peak bytes detector ``name`` needs on a ``(B, H, W)`` cube (after :func:`check_detector`)."""
    b, h, w = shape
    need = detector(name).memory_bytes(shape, options, device)
    if name.startswith(FEN_PREFIX):
        # FEN activations (float32): CWL 64 + layer1 256 channels and its bottleneck's 128-wide inner
        # maps, on the 4 px padded image; plus the enhanced cube
        need += 4 * ((h + 8) * (w + 8) * (64 + 4 * 256 + 3 * 128) + 2 * b * h * w)
    return need
