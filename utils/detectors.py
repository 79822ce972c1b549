"""Detector registry for test.py: base detectors on a cube, and their ``FEN+`` variants.

A detector maps a preprocessed ``(B, H, W)`` tensor to an ``(H, W)`` score map. ``FEN+X`` first
enhances the cube with the FEN (SPEC sec. 4), then runs ``X`` on it.
"""
from __future__ import annotations

from typing import Callable

import torch

from model.fen import FEN
from utils.rx import grx

Detector = Callable[[torch.Tensor], torch.Tensor]

#: Base detectors by name. Each works on any device the cube is on.
BASE_DETECTORS: dict[str, Detector] = {"GRX": grx}
FEN_PREFIX = "FEN+"


def detector_names() -> list[str]:
    """Every valid ``--detectors`` value: each base detector, and each with ``FEN+`` in front."""
    return [n for base in BASE_DETECTORS for n in (base, FEN_PREFIX + base)]


def needs_fen(names: list[str]) -> bool:
    return any(n.startswith(FEN_PREFIX) for n in names)


def run_detector(name: str, cube: torch.Tensor, fen: FEN | None = None,
                 enhanced: torch.Tensor | None = None) -> torch.Tensor:
    """Scores of detector ``name`` on ``cube`` (B, H, W); ``enhanced`` reuses an already enhanced cube."""
    if name.startswith(FEN_PREFIX):
        if enhanced is None:
            if fen is None:
                raise ValueError(f"detector {name} needs FEN weights")
            enhanced = fen.enhance(cube)
        return BASE_DETECTORS[name.removeprefix(FEN_PREFIX)](enhanced)
    return BASE_DETECTORS[name](cube)
