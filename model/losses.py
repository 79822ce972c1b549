"""The FERD training objective (method sec. 3): 1.0 L_sim + 0.1 L_rec + 0.1 L_zc."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # an annotation only: model.ferd (and torchvision, through the decoder) stay out of --help
    from model.ferd import FERDOutput

#: The paper's weights of the three terms.
W_SIM, W_REC, W_ZC = 1.0, 0.1, 0.1


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Half-precision activations (AMP) are promoted to float32 for the loss; float32 and float64 stay as they
    are: demoting a float64 network's features would cost the cosine's gradient about 4 digits (its two
    terms nearly cancel over a million elements)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def similarity_loss(f: list[torch.Tensor], g: list[torch.Tensor]) -> torch.Tensor:
    """L_sim: sum over the pairs (f_k, g_k) of the batch mean of ``1 - cosine(flatten f_k, flatten g_k)``,
    each sample's whole feature map flattened to one vector (RD4AD's loss). 0 when g_k = c f_k, c > 0."""
    if len(f) != len(g):
        raise ValueError(f"similarity_loss: {len(f)} teacher features but {len(g)} decoder features")
    total = at_least_fp32(f[0]).new_zeros(())
    for fk, gk in zip(f, g):
        cos = F.cosine_similarity(at_least_fp32(fk.flatten(1)), at_least_fp32(gk.flatten(1)), dim=1)
        total = total + (1 - cos).mean()
    return total


def reconstruction_loss(reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L_rec: mean squared error between the reconstruction and the input."""
    return F.mse_loss(at_least_fp32(reconstruction), at_least_fp32(x))


def zero_centering_loss(p: torch.Tensor, double_sigmoid: bool = True) -> torch.Tensor:
    """L_zc: binary cross-entropy of the ZCL map ``p`` against all zeros (every background pixel normal).

    Quirk 1 (method sec. 7), kept by default (``double_sigmoid=True``): the ZCL already ends in a
    sigmoid and the authors' loss is ``BCEWithLogits`` on its output, so p is squashed twice; the
    loss is ``log(1 + exp(p)) >= log 2`` and never reaches 0. ``double_sigmoid=False`` is the clean
    variant: plain BCE on p.
    """
    p = at_least_fp32(p)
    target = torch.zeros_like(p)
    if double_sigmoid:
        return F.binary_cross_entropy_with_logits(p, target)
    return F.binary_cross_entropy(p, target)


class FERDLoss(nn.Module):
    """``w_sim L_sim + w_rec L_rec + w_zc L_zc``; returns the total and each (unweighted) term."""

    def __init__(self, w_sim: float = W_SIM, w_rec: float = W_REC, w_zc: float = W_ZC,
                 double_sigmoid: bool = True) -> None:
        super().__init__()
        self.w_sim, self.w_rec, self.w_zc = w_sim, w_rec, w_zc
        self.double_sigmoid = double_sigmoid

    def forward(self, out: FERDOutput, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {"sim": similarity_loss(out.f, out.g),
                 "rec": reconstruction_loss(out.reconstruction, x),
                 "zc": zero_centering_loss(out.p, self.double_sigmoid)}
        total = self.w_sim * terms["sim"] + self.w_rec * terms["rec"] + self.w_zc * terms["zc"]
        return total, terms
