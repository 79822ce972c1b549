"""FERD, the full reverse-distillation network of training (method sec. 1-3).

    x --CWL--> teacher layers 1-3 (frozen) --[f1, f2, f3]--> MFFM --> decoder --[g1, g2, g3]
    reconstruction = crop(reconstruction CWL(g1))
    p = SFAM(crop f1, crop g1) = ZCL(|FPL(crop f1) - FPL(crop g1)|)

Only CWL, teacher layer1 and FPL survive into the FEN that inference uses (:meth:`FERD.fen`).
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from model.cwl import CWL, CWL_PAD
from model.init import xavier_
from model.decoder import Decoder
from model.fen import FEN, fen_config
from model.mffm import MFFM
from model.sfam import FPL, ZCL, fpl_hidden
from model.teacher import Teacher

#: Three stride-2 stages: the padded side must be a multiple of this (method sec. 2).
SIZE_MULTIPLE = 8


def extra_pad(side: int, pad: int = CWL_PAD) -> int:
    """Rows (or columns) to add at the bottom (right) so that ``side + 2 pad + extra`` divides by 8."""
    return -(side + 2 * pad) % SIZE_MULTIPLE


class SFAM(nn.Module):
    """Spectral feature alignment module: the FPL (one set of weights) projects both the teacher's
    and the decoder's 256-channel feature to B bands; the ZCL maps their absolute difference to the
    probability map p ``(N, 1, H, W)`` that the zero-centering loss pushes to 0."""

    def __init__(self, bands: int, hidden: int | None = None) -> None:
        super().__init__()
        self.fpl = FPL(bands, hidden=hidden)
        self.zcl = ZCL(bands)

    def forward(self, f1: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
        return self.zcl(torch.abs(self.fpl(f1) - self.fpl(g1)))


class FERDOutput(NamedTuple):
    """Everything the loss needs: teacher features ``f`` = [f1, f2, f3], decoder features ``g`` =
    [g1, g2, g3] (same shapes pairwise), the reconstruction ``(N, B, H, W)`` and the ZCL map
    ``p`` ``(N, 1, H, W)``."""

    f: list[torch.Tensor]
    g: list[torch.Tensor]
    reconstruction: torch.Tensor
    p: torch.Tensor


class FERD(nn.Module):
    """The trainable network plus its frozen teacher. ``forward``: ``(N, B, H, W) -> FERDOutput``.

    H and W need not be multiples of 8: the input is reflect-padded on the bottom/right so that
    ``H + 8 + extra`` is, and every output is cropped back to H x W (method sec. 2).
    """

    def __init__(self, bands: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = fpl_hidden(bands) if hidden is None else hidden
        self.cwl = CWL(bands)
        self.teacher = Teacher()
        self.mffm = MFFM()
        self.decoder = Decoder()
        self.rec_cwl = xavier_(nn.Conv2d(256, bands, kernel_size=1, bias=False))  # reconstruction CWL
        self.sfam = SFAM(bands, hidden=hidden)

    @property
    def config(self) -> dict:
        """Everything needed to rebuild the network: ``FERD(**ferd.config)``; also the FEN's config."""
        return fen_config(self.cwl, self.sfam.fpl)

    def trainable(self) -> list[nn.Parameter]:
        """CWL, MFFM, decoder, reconstruction CWL, FPL, ZCL: everything but the teacher."""
        return [p for n, p in self.named_parameters() if not n.startswith("teacher.")]

    def student_state(self) -> dict[str, torch.Tensor]:
        """What a training checkpoint keeps of the network: the state dict (weights and BatchNorm statistics)
        of everything but the frozen teacher, which is rebuilt from its own file."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def forward(self, x: torch.Tensor) -> FERDOutput:
        h, w = x.shape[-2:]
        eh, ew = extra_pad(h), extra_pad(w)
        if eh or ew:
            x = F.pad(x, (0, ew, 0, eh), mode="reflect")
        f = self.teacher(self.cwl(x))
        g = self.decoder(self.mffm(f))

        def crop_hw(t: torch.Tensor) -> torch.Tensor:  # the CWL's padding and the extra rows/columns
            return t[..., CWL_PAD : CWL_PAD + h, CWL_PAD : CWL_PAD + w]

        f1, g1 = crop_hw(f[0]), crop_hw(g[0])
        return FERDOutput(f, g, crop_hw(self.rec_cwl(g[0])), self.sfam(f1, g1))

    def fen(self) -> FEN:
        """A stand-alone FEN holding *copies* of this network's CWL, teacher layer1 and FPL (eval mode,
        on the same device): later training steps do not change it."""
        fen = FEN(**self.config)
        fen.cwl = copy.deepcopy(self.cwl)
        fen.layer1 = copy.deepcopy(self.teacher.layer1)
        fen.fpl = copy.deepcopy(self.sfam.fpl)
        fen.layer1.requires_grad_(False)
        return fen.eval()
