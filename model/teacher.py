"""The teacher encoder's blocks: torchvision's wide_resnet101_2 Bottlenecks (method sec. 1-2).

The FEN only needs layer1, so it is built here from torchvision's own ``Bottleneck`` rather than by
instantiating the whole 127M-parameter network; its parameter names match both torchvision's
``wide_resnet101_2().layer1`` and the authors' ``enc.pt`` (minus the ``layer1.`` prefix).
Training needs layers 1-3 (:class:`Teacher`), built the same way (no stem, no layer4, no fc), and
filled by :func:`weights.imagenet.load_teacher` from torchvision's ImageNet file, a local state dict,
or a seed.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

#: wide_resnet101_2: width_per_group = 64 * 2, so every Bottleneck has an inner width of 2 x planes.
WIDE_BASE_WIDTH = 128


def wide_stage(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """One ResNet stage of wide Bottlenecks, as ``torchvision.models.ResNet._make_layer`` builds it.

    Shapes: ``(N, inplanes, H, W) -> (N, 4 planes, H / stride, W / stride)``. torchvision is imported here,
    when a network is built, not when the module is: a script's ``--help`` does not pay for it.
    """
    from torchvision.models.resnet import Bottleneck, conv1x1

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


# --------------------------------------------------------------------------------------------------
# The full teacher of training: wide_resnet101_2's layer1, layer2 and layer3 (method sec. 1-2).
# --------------------------------------------------------------------------------------------------
#: Block counts of wide_resnet101_2's stages; the teacher uses the first three.
TEACHER_BLOCKS = (3, 4, 23)


class Teacher(nn.Module):
    """wide_resnet101_2 layers 1-3, frozen: ``(N, 64, H, W) -> [f1, f2, f3]``.

    f1 ``(N, 256, H, W)``, f2 ``(N, 512, H/2, W/2)``, f3 ``(N, 1024, H/4, W/4)``. Parameter names match
    torchvision's ``wide_resnet101_2().state_dict()`` (``layer1.*``, ``layer2.*``, ``layer3.*``).
    Built with PyTorch's default initialisation; :func:`weights.imagenet.load_teacher` gives it its weights.

    Frozen but differentiable: its parameters never require grad and it always runs in eval mode (BN
    uses the stored running statistics, which never change), while gradients still flow through it to
    the CWL upstream.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = wide_layer1()
        self.layer2 = wide_stage(256, 128, TEACHER_BLOCKS[1], stride=2)
        self.layer3 = wide_stage(512, 256, TEACHER_BLOCKS[2], stride=2)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # frozen: always eval, whatever the caller asks

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3]


def reset_bn_stats_(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()


def fingerprint(module: nn.Module) -> str:
    """A short hash of every tensor of ``module`` (weights and buffers): tells two teachers apart."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]
