"""FEN, the feature enhancement network: the part of FERD kept for inference (method sec. 1 and 4)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model.cwl import CWL, CWL_PAD, crop
from model.sfam import FPL, fpl_hidden
from model.teacher import wide_layer1
from utils.cube import bands_first, shape_text
from utils.errors import CubeError

#: Context, in pixels on every side, that one FEN output pixel depends on: the CWL and the FPL are 1x1
#: convolutions, and layer1's three Bottlenecks hold one 3x3 convolution each (radius 1 each). The CWL's
#: reflect padding (4 px) is wider, so in :meth:`FEN.forward` the zero padding of those 3x3 convolutions
#: never reaches a pixel that the crop keeps: a window with this much real (or reflected) context around a
#: tile gives the tile exactly what the whole scene gives it (:meth:`FEN.forward_window`).
FEN_HALO = 3
#: Smallest height and width :meth:`FEN.enhance` takes: the CWL's reflect padding needs more pixels than it pads.
FEN_MIN_SIDE = CWL_PAD + 1


def unit_norm(x: torch.Tensor) -> torch.Tensor:
    """Divide each sample ``(N, ...)`` by its Frobenius norm over all its elements.

    Quirk 7 (found in the authors' golden tensors, not in the paper): their enhanced cube is
    ``(x + FEN(x)) / ||x + FEN(x)||_F``. It is a single positive scale per cube, so every detector
    that min-maxes the cube first (GRX, SLRX, LRX here) gives the same scores with or without it.
    Quirk 10, *not* reproduced: the authors divide a batch by the norm of the whole batch; here each sample
    by its own (the same for their batch of one scene).
    """
    norms = x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    return x / norms.view(-1, *([1] * (x.dim() - 1)))


def fen_config(cwl: CWL, fpl: FPL) -> dict:
    """The FEN's constructor arguments from its CWL and FPL (the same for a FEN and the FERD it comes from)."""
    return {"bands": cwl.in_bands, "hidden": fpl.conv1.out_channels}


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
        #: ``{path: sha256}`` of the files the weights were read from (weights.release.load_fen; {} if built)
        self.files: dict[str, str] = {}

    @property
    def bands(self) -> int:
        return self.cwl.in_bands

    @property
    def config(self) -> dict:
        """Everything needed to rebuild this module: ``FEN(**fen.config)``."""
        return fen_config(self.cwl, self.fpl)

    def train(self, mode: bool = True) -> "FEN":
        super().train(mode)
        self.layer1.eval()  # frozen teacher: BN always uses the ImageNet running statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fpl(crop(self.layer1(self.cwl(x))))

    def forward_window(self, window: torch.Tensor, halo: int = FEN_HALO) -> torch.Tensor:
        """FEN of the core of ``window`` ``(N, B, h + 2 halo, w + 2 halo) -> (N, B, h, w)``.

        ``window`` holds ``halo`` (>= :data:`FEN_HALO`) px of context around the core: the scene's own
        pixels inside it, and the CWL's reflect padding where the core touches the scene border (see
        pipeline/sources.py). The CWL's 1x1 convolution commutes with that padding, so it is applied to
        the window as it is; layer1's zero padding only reaches the ``halo`` px that the crop removes.
        """
        return self.fpl(crop(self.layer1(self.cwl.conv(window)), halo))

    @torch.no_grad()
    def enhance(self, x: torch.Tensor | np.ndarray, normalize: bool = True, *, layout: str = "hwb"
                ) -> torch.Tensor | np.ndarray:
        """The enhanced cube ``x + FEN(x)``, divided by its norm unless ``normalize=False`` (quirk 7).

        ``x``: an H x W x B cube or a batch ``(N, H, W, B)`` (``layout="bhw"``: ``(B, H, W)`` or
        ``(N, B, H, W)``) of :attr:`bands` bands and at least :data:`FEN_MIN_SIDE` px each way; returns the
        same shape and layout. A tensor must have the FEN's dtype and device (the result is on it); a numpy
        array is converted to them and the result given back as numpy.
        """
        given = bands_first(x, layout, name="x", batch=True, float_dtype=self.cwl.conv.weight.dtype)
        self.check_input(x, given.tensor.shape, layout, given.numpy)
        xb = given.tensor if given.tensor.dim() == 4 else given.tensor[None]
        xb = xb.to(self.cwl.conv.weight.device)
        out = xb + self(xb)
        if normalize:
            out = unit_norm(out)
        return given.cube(out if given.tensor.dim() == 4 else out[0])

    def check_input(self, x: object, bhw: torch.Size, layout: str, numpy: bool) -> None:
        """Raise CubeError (``x.name=value``) unless ``x``, seen bands first as ``bhw``, fits this FEN: its
        bands, :data:`FEN_MIN_SIDE`, and (a tensor) the FEN's dtype and device."""
        b, h, w = bhw[-3:]
        shape, weight = shape_text(x.shape), self.cwl.conv.weight
        if b != self.bands:
            hint = ""
            if layout == "hwb" and bhw[-2] == self.bands:
                hint = " (it looks B x H x W: pass layout='bhw')"
            elif layout == "bhw" and bhw[-1] == self.bands:
                hint = " (it looks H x W x B: leave layout at 'hwb')"
            raise CubeError(f"x.shape={shape}: {b} bands with layout={layout!r}, but this FEN takes "
                            f"{self.bands}{hint}")
        if min(h, w) < FEN_MIN_SIDE:
            raise CubeError(f"x.shape={shape}: {h} x {w} pixels; the FEN needs at least {FEN_MIN_SIDE} x "
                            f"{FEN_MIN_SIDE} (its {CWL_PAD} px reflect padding)")
        if not numpy and x.dtype != weight.dtype:
            raise CubeError(f"x.dtype={x.dtype}: this FEN computes in {weight.dtype}; pass x.to({weight.dtype})")
        if not numpy and x.device != weight.device:
            raise CubeError(f"x.device={x.device}: this FEN is on {weight.device}; pass x.to('{weight.device}')")


def fold_batchnorm(fen: FEN) -> FEN:
    """An inference copy of ``fen`` with every BatchNorm of layer1 folded into the convolution before it
    (``w' = w * g / sqrt(v + eps)``, ``b' = beta - m * g / sqrt(v + eps)``, computed in float64), so that a
    forward pass skips one memory pass per BatchNorm. ``fen`` itself keeps its modules (training needs them).

    The outputs equal the unfolded ones to float32 rounding (the golden tensors to 1e-8), but the rounding
    differs, and one reference figure sits on a rounding edge: FEN+GRX on abu-airport-2 with the had100-200
    weights scores 0.982248 folded and 0.982255 unfolded (test.py's channels-last tiles; 0.982247 with the
    FEN in float64), against the authors' 0.9823. So test.py keeps the BatchNorms unless ``--fold_bn``.
    """
    import copy

    folded = copy.deepcopy(fen).eval()
    folded.batchnorm_folded = True  # read by fused_forward_window
    for block in folded.layer1:
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
            setattr(block, conv_name, _fold(getattr(block, conv_name), getattr(block, bn_name)))
            setattr(block, bn_name, nn.Identity())
        if block.downsample is not None:
            block.downsample = nn.Sequential(_fold(block.downsample[0], block.downsample[1]))
    return folded.requires_grad_(False)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``conv`` followed by ``bn`` (eval mode) as one convolution with a bias."""
    scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, device=conv.weight.device)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias.double() + (bias - bn.running_mean.double()) * scale)
    return fused


def fused_forward_window(fen: FEN, window: torch.Tensor, halo: int = FEN_HALO) -> torch.Tensor:
    """:meth:`FEN.forward_window` of a :func:`fold_batchnorm` FEN with each convolution, its bias, the ReLU
    after it and the residual sum in one oneDNN kernel (``torch.ops.mkldnn._convolution_pointwise``, the
    fused convolutions torch.compile uses on CPUs): no separate pass over the activations for a bias, a
    ReLU or a sum. Same numbers as the folded module's forward, bit for bit (tests/test_tiling.py).

    Falls back to :meth:`FEN.forward_window` off the CPU, without oneDNN, or for an unfolded FEN.
    """
    ops = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
    if (ops is None or window.device.type != "cpu" or not torch.backends.mkldnn.is_available()
            or not getattr(fen, "batchnorm_folded", False)):
        return fen.forward_window(window, halo)

    def conv(x: torch.Tensor, c: nn.Conv2d, act: str = "none") -> torch.Tensor:
        return ops(x, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups, act, [], "")

    y = conv(window, fen.cwl.conv)
    for block in fen.layer1:
        identity = y if block.downsample is None else conv(y, block.downsample[0])
        out = conv(conv(y, block.conv1, "relu"), block.conv2, "relu")
        c = block.conv3  # relu(conv3(out) + identity), torchvision's Bottleneck ending, in one kernel
        y = ops.binary(out, identity, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation),
                       c.groups, "add", 1.0, "relu", [], "")
    y = crop(y, halo)
    return conv(conv(y, fen.fpl.conv1, "relu"), fen.fpl.conv2, "relu")
