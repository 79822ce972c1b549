"""CWL, the channel-wise layer: maps B spectral bands to the 64 channels the ImageNet teacher expects."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.init import xavier_

#: Reflect padding added on every side before the teacher; cropped off again after it (method sec. 1).
CWL_PAD = 4


class CWL(nn.Module):
    """Reflect-pad by ``pad`` px, then a bias-free 1x1 conv ``in_bands -> out_channels``.

    Shapes: ``(N, B, H, W) -> (N, 64, H + 2 pad, W + 2 pad)``.
    """

    def __init__(self, in_bands: int, out_channels: int = 64, pad: int = CWL_PAD) -> None:
        super().__init__()
        self.pad = pad
        self.conv = xavier_(nn.Conv2d(in_bands, out_channels, kernel_size=1, bias=False))

    @property
    def in_bands(self) -> int:
        return self.conv.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))


def crop(x: torch.Tensor, pad: int = CWL_PAD) -> torch.Tensor:
    """Remove ``pad`` px from every side of ``(..., H, W)``: the inverse of the CWL's padding."""
    return x[..., pad : x.shape[-2] - pad, pad : x.shape[-1] - pad]
