"""The authors' initialisations (method secs. 1, 3): Xavier-normal for their own 1x1 layers, torchvision's
ResNet scheme (Kaiming-normal) for the MFFM, the decoder and a random teacher."""
from __future__ import annotations

from torch import nn


def xavier_(conv: nn.Conv2d) -> nn.Conv2d:
    """The authors' initialisation of their own 1x1 layers (CWL, reconstruction CWL, FPL, ZCL):
    Xavier-normal weight, zero bias. PyTorch's default would start training from about half that
    weight spread and non-zero biases, i.e. not from the paper's starting point."""
    nn.init.xavier_normal_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def init_resnet_(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan_out) convs, BN weight 1 and bias 0.

    Also used by RD4AD for its bottleneck and decoder; ConvTranspose2d keeps PyTorch's default.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
