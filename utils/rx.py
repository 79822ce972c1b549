"""Global RX (GRX): the Reed-Xiaoli Mahalanobis detector over the whole scene (SPEC sec. 4).

For a cube X of B bands and N = H * W pixels, after one global min-max of the cube to [0, 1]:

    mu = (1/N) sum_i x_i,    S = 1/(N-1) sum_i (x_i - mu)(x_i - mu)^T,
    score_i = (x_i - mu)^T S^+ (x_i - mu)

with S^+ the Moore-Penrose pseudo-inverse (quirk 3: the authors use ``pinv``; the squared distance
is returned, no square root). Reference: I. S. Reed and X. Yu, "Adaptive multiple-band CFAR detection
of an optical pattern with unknown spectral distribution", IEEE TASSP 38(10), 1990.

Statistics (:func:`rx_statistics`) are kept apart from scoring (:func:`mahalanobis_sq`) so that
other detectors can reuse either part.
"""
from __future__ import annotations

import torch

#: Relative cut-off for small singular values in the pseudo-inverse, as numpy.linalg.pinv's default.
PINV_RCOND = 1e-15


def value_range(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and span (max - min) of ``x`` over ``dims``, kept as size-1 dims, in float64 (the span of a
    float32 cube exactly, without a float64 copy of the cube).

    A constant input has no range: it raises instead of letting a later division by zero through.
    """
    lo = x.amin(dim=dims, keepdim=True).to(torch.float64)
    span = x.amax(dim=dims, keepdim=True).to(torch.float64) - lo
    if bool((span <= 0).any()):
        raise ValueError("cannot min-max normalise a constant cube (min == max)")
    return lo, span


def minmax(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Min-max ``x`` to [0, 1] over ``dims`` (one min and one max per remaining index)."""
    lo, span = value_range(x, dims)
    return (x - lo) / span


def rx_statistics(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of ``(..., N, B)`` pixels: ``(..., B)`` and ``(..., B, B)``."""
    n = pixels.shape[-2]
    mu = pixels.mean(dim=-2)
    centred = pixels - mu.unsqueeze(-2)
    cov = centred.transpose(-1, -2) @ centred / (n - 1)
    return mu, cov


def mahalanobis_sq(pixels: torch.Tensor, mu: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``(x_i - mu)^T P (x_i - mu)`` for ``(..., N, B)`` pixels, ``(..., B)`` mean, ``(..., B, B)`` P."""
    centred = pixels - mu.unsqueeze(-2)
    return ((centred @ precision) * centred).sum(dim=-1)


def grx(cube: torch.Tensor) -> torch.Tensor:
    """GRX scores of ``(B, H, W)`` or a batch ``(M, B, H, W)``; returns ``(H, W)`` or ``(M, H, W)``.

    Computed in float64 whatever the input dtype: the covariance of a few hundred bands is
    ill-conditioned and float32 loses whole digits of the score.
    """
    single = cube.dim() == 3
    x = (cube[None] if single else cube).to(torch.float64)
    m, b, h, w = x.shape
    x = minmax(x, dims=(1, 2, 3))
    pixels = x.reshape(m, b, h * w).transpose(1, 2)  # (M, N, B)
    mu, cov = rx_statistics(pixels)
    precision = torch.linalg.pinv(cov, rtol=PINV_RCOND, hermitian=False)
    scores = mahalanobis_sq(pixels, mu, precision).reshape(m, h, w)
    return scores[0] if single else scores
