"""The teacher encoder's blocks: torchvision's wide_resnet101_2 Bottlenecks (SPEC sec. 1-2).

The FEN only needs layer1, so it is built here from torchvision's own ``Bottleneck`` rather than by
instantiating the whole 127M-parameter network; its parameter names match both torchvision's
``wide_resnet101_2().layer1`` and the authors' ``enc.pt`` (minus the ``layer1.`` prefix).
"""
from __future__ import annotations

from torch import nn
from torchvision.models.resnet import Bottleneck, conv1x1

#: wide_resnet101_2: width_per_group = 64 * 2, so every Bottleneck has an inner width of 2 x planes.
WIDE_BASE_WIDTH = 128


def wide_stage(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """One ResNet stage of wide Bottlenecks, as ``torchvision.models.ResNet._make_layer`` builds it.

    Shapes: ``(N, inplanes, H, W) -> (N, 4 planes, H / stride, W / stride)``.
    """
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    layers = [Bottleneck(inplanes, planes, stride, downsample, base_width=WIDE_BASE_WIDTH)]
    layers += [Bottleneck(out, planes, base_width=WIDE_BASE_WIDTH) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def wide_layer1() -> nn.Sequential:
    """wide_resnet101_2's layer1: ``(N, 64, H, W) -> (N, 256, H, W)``, stride 1."""
    return wide_stage(64, 64, blocks=3)
