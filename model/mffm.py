"""MFFM, the multi-scale feature fusion module: RD4AD's one-class bottleneck (OCBE) (method sec. 1-2).

It squeezes the teacher's three feature maps into one compact code that the student decoder must
expand back, so the decoder cannot simply copy what it sees.
"""
from __future__ import annotations

import torch
from torch import nn

from model.init import init_resnet_
from model.teacher import wide_stage

#: Block count of the fusion stage (RD4AD: ``layers=3``).
MFFM_BLOCKS = 3


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv, stride 2, no bias, then BN and ReLU: halves H and W."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class MFFM(nn.Module):
    """``[f1 (256, 8s), f2 (512, 4s), f3 (1024, 2s)] -> (2048, s)`` for spatial side ``s``.

    f1 goes down twice (256 -> 512 -> 1024), f2 once (512 -> 1024); both are concatenated with f3
    (3072 channels) and fused by one stage of wide Bottlenecks (planes 512, inner width 1024,
    output 2048, stride 2 in the first block, shortcut conv1x1 stride 2 + BN).
    """

    def __init__(self, blocks: int = MFFM_BLOCKS) -> None:
        super().__init__()
        self.down1 = nn.Sequential(conv_bn_relu(256, 512), conv_bn_relu(512, 1024))
        self.down2 = conv_bn_relu(512, 1024)
        self.fuse = wide_stage(3 * 1024, 512, blocks, stride=2)
        init_resnet_(self)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = feats
        return self.fuse(torch.cat([self.down1(f1), self.down2(f2), f3], dim=1))
