"""SFAM parts: the feature projection layer (FPL) and the zero-centering layer (ZCL) (method sec. 1)."""
from __future__ import annotations

import torch
from torch import nn

from model.init import xavier_


def fpl_hidden(bands: int) -> int:
    """The FPL's hidden width in the authors' code: 256 for more than 128 bands, else 128."""
    return 256 if bands > 128 else 128


class FPL(nn.Module):
    """Feature projection layer: 1x1 conv 256 -> h, ReLU, 1x1 conv h -> B, ReLU.

    Quirk 5 (method sec. 7): the final ReLU is the authors', so FPL(x) >= 0 everywhere and the FEN can
    only add to the cube. Shapes: ``(N, 256, H, W) -> (N, B, H, W)``.
    """

    def __init__(self, bands: int, in_channels: int = 256, hidden: int | None = None) -> None:
        super().__init__()
        hidden = fpl_hidden(bands) if hidden is None else hidden
        self.conv1 = xavier_(nn.Conv2d(in_channels, hidden, kernel_size=1))
        self.conv2 = xavier_(nn.Conv2d(hidden, bands, kernel_size=1))
        self.relu = nn.ReLU()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(f))))


class ZCL(nn.Module):
    """Zero-centering layer: 1x1 conv B -> 1, then sigmoid. ``(N, B, H, W) -> (N, 1, H, W)``.

    Quirk 1 (method sec. 7): the sigmoid is applied here *and* the authors' loss is BCE-with-logits on
    this output, i.e. sigmoid twice. The training loss keeps that by default.
    """

    def __init__(self, bands: int) -> None:
        super().__init__()
        self.conv = xavier_(nn.Conv2d(bands, 1, kernel_size=1))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(d))
