"""The student decoder: a mirrored wide ResNet-50-2 (3 stages) that upsamples back (method sec. 1-2).

Torchvision has the Bottleneck but no upsampling variant; :class:`UpBottleneck` is the one block
written here (RD4AD's ``deBottleneck``): the 3x3 conv becomes ConvTranspose2d(k 2, s 2, no bias) and
the shortcut ConvTranspose2d(k 2, s 2, no bias) + BN.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from model.init import init_resnet_
from model.teacher import WIDE_BASE_WIDTH

#: (planes, blocks) of the three decoder stages: outputs 1024, 512, 256 channels.
DECODER_STAGES = ((256, 3), (128, 4), (64, 6))


def deconv2x2(cin: int, cout: int) -> nn.ConvTranspose2d:
    """Kernel-2, stride-2 transposed conv without bias: doubles H and W."""
    return nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2, bias=False)


class UpBottleneck(Bottleneck):
    """Torchvision's wide Bottleneck whose stride-2 form upsamples instead of downsampling.

    ``(N, inplanes, H, W) -> (N, 4 planes, stride H, stride W)``; with ``stride=1`` it is exactly
    torchvision's Bottleneck. The shortcut goes in ``downsample``, the attribute torchvision's
    ``forward`` calls.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, upsample: nn.Module | None = None) -> None:
        super().__init__(inplanes, planes, stride=1, downsample=upsample, base_width=WIDE_BASE_WIDTH)
        if stride == 2:
            width = self.conv2.in_channels
            self.conv2 = deconv2x2(width, width)
        elif stride != 1:
            raise ValueError(f"UpBottleneck: stride must be 1 or 2, got {stride}")


def up_stage(inplanes: int, planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
    """One decoder stage: an upsampling block (shortcut deconv + BN), then ``blocks - 1`` plain ones."""
    out = planes * Bottleneck.expansion
    upsample = None
    if stride != 1 or inplanes != out:
        upsample = nn.Sequential(deconv2x2(inplanes, out) if stride == 2 else nn.Conv2d(inplanes, out, 1, bias=False),
                                 nn.BatchNorm2d(out))
    layers = [UpBottleneck(inplanes, planes, stride, upsample)]
    layers += [UpBottleneck(out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """``(N, 2048, s, s) -> [g1 (256, 8s), g2 (512, 4s), g3 (1024, 2s)]``, ordered like the teacher's."""

    def __init__(self, stages: tuple[tuple[int, int], ...] = DECODER_STAGES) -> None:
        super().__init__()
        inplanes = 2048
        layers = []
        for planes, blocks in stages:
            layers.append(up_stage(inplanes, planes, blocks))
            inplanes = planes * Bottleneck.expansion
        self.layer1, self.layer2, self.layer3 = layers
        init_resnet_(self)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        g3 = self.layer1(z)
        g2 = self.layer2(g3)
        g1 = self.layer3(g2)
        return [g1, g2, g3]
