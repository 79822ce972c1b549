"""FEN, the feature enhancement network: the part of FERD kept for inference (SPEC sec. 1 and 4)."""
from __future__ import annotations

import torch
from torch import nn

from model.cwl import CWL, crop
from model.sfam import FPL, fpl_hidden
from model.teacher import wide_layer1


def unit_norm(x: torch.Tensor) -> torch.Tensor:
    """Divide each sample ``(N, ...)`` by its Frobenius norm over all its elements.

    Quirk 8 (found in the authors' golden tensors, not in the paper): their enhanced cube is
    ``(x + FEN(x)) / ||x + FEN(x)||_F``. It is a single positive scale per cube, so every detector
    that min-maxes the cube first (GRX, SLRX, LRX here) gives the same scores with or without it.
    """
    norms = x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    return x / norms.view(-1, *([1] * (x.dim() - 1)))


class FEN(nn.Module):
    """CWL -> teacher layer1 (frozen) -> crop 4 px -> FPL.

    ``forward``: ``(N, B, H, W) -> (N, B, H, W)``, the additive enhancement, >= 0. Stride 1 throughout,
    so any H x W with H, W > 4 (the reflect padding) works.
    """

    def __init__(self, bands: int, hidden: int | None = None) -> None:
        super().__init__()
        self.cwl = CWL(bands)
        self.layer1 = wide_layer1()
        self.fpl = FPL(bands, hidden=hidden if hidden is not None else fpl_hidden(bands))
        self.layer1.requires_grad_(False)
        self.layer1.eval()  # frozen ImageNet layer: its BN uses the stored statistics from construction on

    @property
    def bands(self) -> int:
        return self.cwl.in_bands

    @property
    def config(self) -> dict:
        """Everything needed to rebuild this module: ``FEN(**fen.config)``."""
        return {"bands": self.bands, "hidden": self.fpl.conv1.out_channels}

    def train(self, mode: bool = True) -> "FEN":
        super().train(mode)
        self.layer1.eval()  # frozen teacher: BN always uses the ImageNet running statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fpl(crop(self.layer1(self.cwl(x))))

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The enhanced cube ``x + FEN(x)``, divided by its norm unless ``normalize=False`` (quirk 8).

        Accepts ``(B, H, W)`` or ``(N, B, H, W)`` and returns the same shape.
        """
        single = x.dim() == 3
        xb = x[None] if single else x
        out = xb + self(xb)
        if normalize:
            out = unit_norm(out)
        return out[0] if single else out
