"""torch.hub entry points: the FEN with the authors' released weights, and the GRX detector.

    import torch
    fen = torch.hub.load("<owner>/<repo>", "fen", weights="had100", bands=50)   # or source="local" with a path
    grx = torch.hub.load("<owner>/<repo>", "grx")
    scores = grx(fen.enhance(x))             # x: H x W x 50 preprocessed cube -> (H, W) FEN+GRX scores
    scores = grx(fen.enhance(x, layout="bhw"), layout="bhw")   # the same for a (50, H, W) cube

The weights come through ``weights.release.load_fen``, as in ``test.py``: the same release registry, the SHA-256
check of every file, ``FERD_WEIGHTS_DIR`` (or ``weights_dir``) for a local copy, else the download cache
``checkpoints/release/`` of this repository (for a GitHub load: of torch.hub's copy of it).

On CUDA, cuDNN runs float32 convolutions in TF32 by default, which moves the FEN's outputs by about 1e-3;
test.py turns that off (``utils.device.full_fp32``) for its reference figures, and so can you:
``torch.backends.cudnn.allow_tf32 = False``.
"""
from __future__ import annotations

import os
from typing import Callable

# What the entry points import (torch.hub checks these are installed before calling one).
dependencies = ["torch", "torchvision", "numpy"]


def fen(weights: str = "had100", bands: int = 50, weights_dir: str | os.PathLike | None = None):
    """The FEN (CWL + layer1 + FPL) in eval mode: ``(N, bands, H, W) -> (N, bands, H, W)``, FEN(x) >= 0.

    ``weights``: ``"had100"`` (released for 50, 100, 200 bands), ``"aviris"`` (200) or a ``train.py``
    checkpoint path. ``weights_dir``: a local copy of the release (overrides ``FERD_WEIGHTS_DIR``).
    ``fen.enhance(x)`` gives the authors' enhanced cube ``(x + FEN(x)) / ||x + FEN(x)||`` of an H x W x B cube
    (``layout="bhw"``: B x H x W), in the layout it was given.
    """
    from weights.release import load_fen

    return load_fen(weights, bands, weights_dir)


def grx() -> Callable:
    """The global RX detector ``detectors.rx.grx``: ``(H, W, B) -> (H, W)`` or ``(M, H, W, B) -> (M, H, W)``
    float64 squared Mahalanobis scores (``layout="bhw"``: ``(B, H, W)`` or ``(M, B, H, W)``; numpy or torch)."""
    from detectors.rx import grx as grx_detector

    return grx_detector
