"""LRX, the classic dual-window local RX detector, vectorised with running window sums.

For every pixel x_ij of a cube min-maxed to [0, 1] (one global min and max, as every detector here):
the background is the pixels of the ``outer`` x ``outer`` window centred on it minus those of the
``inner`` x ``inner`` guard window (n = outer^2 - inner^2 pixels), and

    mu = (1/n) sum_bg x,    C = 1/(n-1) sum_bg (x - mu)(x - mu)^T,
    score_ij = (x_ij - mu)^T (C + ridge I)^-1 (x_ij - mu)

(the squared Mahalanobis distance, as GRX). The ridge (default 1e-6, as SLRX) keeps C invertible
when the background has fewer pixels than bands. Borders are mirrored (``numpy.pad(mode="reflect")``,
the edge pixel not repeated), so every pixel has a full window of n pixels; near a border some of them
are mirror copies of nearby pixels (for the pixel i rows from the edge, its own copy sits 2i rows away,
in the background when inner // 2 < 2i <= outer // 2), as in any mirrored-border LRX.

Reference: I. S. Reed and X. Yu, IEEE TASSP 38(10), 1990 (local form as in the HAD100 benchmark,
Li et al., IEEE TGRS 2023, and Kwon & Nasrabadi's dual window).

Vectorised: moving from output row i-1 to row i, the outer window gains padded row i+2r and loses row
i-1, the inner window gains row i+r+ri and loses row i+r-ri-1. Those rows' windows, for all pixels of a
row at once, are ``unfold`` views, so the running sums of x and x x^T (over the background) are updated
with one batched matrix product per row, and each row's covariances are factorised by one batched
Cholesky. Columns are cut into chunks whose ``B x B`` matrices fit in cache (on CPU) or memory (GPU).
The data are centred on the global mean first, so that the running raw sums lose few digits.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from detectors.base import CubeReader, Detector, Option, Shape, check_dual_windows, score_in_strips
from detectors.rx import one_thread, rx_statistics, value_range
from detectors.slrx import RIDGE  # the authors' SLRX ridge (quirk 3), used here for the same reason
from utils.cube import bands_first
from utils.errors import DetectorError
from utils.memory import chunk_bytes

DEFAULT_INNER = 5
DEFAULT_OUTER = 21
#: Per-chunk ``B x B`` working set on CPU: small enough to stay in a core's cache (measured: 4 MB
#: chunks run about 1.7x faster than whole rows of 200-band matrices).
CPU_CHUNK_BYTES = 4 << 20


def check_windows(inner: int, outer: int, height: int, width: int) -> None:
    """Raise DetectorError, naming a value that works, if the windows do not fit an ``height`` x ``width`` scene."""
    check_dual_windows("LRX", "lrx", inner, outer, height, width)


def chunk_width(bands: int, width: int, device: torch.device) -> int:
    """Columns per batched call: ``B x B`` float64 matrices of one chunk fit the device's budget."""
    budget = chunk_bytes(device, CPU_CHUNK_BYTES)
    return max(1, min(width, budget // (8 * bands * bands)))


def lrx_memory_bytes(bands: int, height: int, width: int, inner: int = DEFAULT_INNER,
                     outer: int = DEFAULT_OUTER, device: torch.device | str = "cpu") -> int:
    """Rough peak memory of :func:`lrx` in bytes (float64): the mirrored cube twice, and per chunk the
    running ``B x B`` sums, the factor, and the window views gathered for the update."""
    device = torch.device(device)
    r = outer // 2
    w = chunk_width(bands, width, device)
    cube = (height + 2 * r) * (width + 2 * r) * bands
    return 8 * (3 * cube + 2 * w * bands * bands + 2 * w * bands * (2 * outer + 2 * inner) + 4 * height * width)


def _mirrored_pixels(cube: torch.Tensor, r: int) -> tuple[torch.Tensor, float]:
    """``(B, H, W)`` -> mirrored, globally centred ``(H + 2r, W + 2r, B)`` float64 pixels and the min-max span.

    The spec's min-max to [0, 1] is folded into the ridge (``x' = (x - lo) / span`` scales C by 1/span^2
    and shifts mu with x), so only the span is returned; centring on the global mean costs nothing either.
    """
    x = cube.to(torch.float64)
    _, span = value_range(x, dims=(0, 1, 2))
    x = x - x.mean(dim=(1, 2), keepdim=True)
    padded = torch.nn.functional.pad(x[None], [r, r, r, r], mode="reflect")[0]
    return padded.permute(1, 2, 0).contiguous(), float(span)


def _signs(outer_rows: list[tuple[int, float]], inner_rows: list[tuple[int, float]], outer: int, inner: int,
           like: torch.Tensor) -> torch.Tensor:
    """``(k,)`` sign of each pixel column that :func:`_update` gathers for ``outer_rows`` and ``inner_rows``
    (inner rows with the opposite sign), with ``like``'s dtype and device: built once per pattern, as a tensor
    made from a list is a blocking host-to-GPU copy."""
    signs = [s for _, s in outer_rows for _ in range(outer)] + [-s for _, s in inner_rows for _ in range(inner)]
    return torch.tensor(signs, dtype=like.dtype, device=like.device)


def _update(sum2: torch.Tensor, sum1: torch.Tensor, pixels: torch.Tensor, outer_rows: list[tuple[int, float]],
            inner_rows: list[tuple[int, float]], c0: int, c1: int, r: int, ri: int, outer: int, inner: int,
            signs: torch.Tensor) -> None:
    """Add signed padded rows to the running background sums of ``x x^T`` ``(w, B, B)`` and ``x`` ``(w, B)``.

    Output column ``j`` (``c0 <= j < c1``) sees, in each of ``outer_rows``, the ``outer`` pixels from padded
    column ``j`` on, and in each of ``inner_rows`` the ``inner`` pixels from ``j + r - ri`` on (with the
    opposite sign: the background is outer minus inner; ``signs`` from :func:`_signs` of the same rows' signs).
    Those windows are ``unfold`` views; one concatenation and one batched product ``A_signed A^T`` add them all.
    """
    parts = [pixels[p, c0: c1 + outer - 1].unfold(0, outer, 1) for p, _ in outer_rows]
    parts += [pixels[p, c0 + r - ri: c1 + r - ri + inner - 1].unfold(0, inner, 1) for p, _ in inner_rows]
    a = torch.cat(parts, dim=-1)                                               # (w, B, k)
    signed = a * signs
    sum2.baddbmm_(signed, a.transpose(-1, -2))
    sum1 += signed.sum(dim=-1)


def lrx(cube: torch.Tensor | np.ndarray, inner: int = DEFAULT_INNER, outer: int = DEFAULT_OUTER,
        ridge: float = RIDGE, chunk: int | None = None, *, layout: str = "hwb") -> torch.Tensor | np.ndarray:
    """LRX scores ``(H, W)`` float64 of an H x W x B cube (``layout="bhw"``: B x H x W): a numpy map of a
    numpy array, a tensor on its device of a tensor.

    ``inner``/``outer``: odd window sides (guard and background); ``chunk``: output columns per batched
    call (default: by :func:`chunk_width`).
    """
    given = bands_first(cube, layout, error=DetectorError)
    b, h, w = given.tensor.shape
    check_windows(inner, outer, h, w)
    pixels, span = _mirrored_pixels(given.tensor, outer // 2)
    return given.map(lrx_mirrored(pixels, span, inner, outer, ridge, chunk))


def background_counts(keep: torch.Tensor, inner: int, outer: int) -> torch.Tensor:
    """``(h, w)`` float64: valid pixels in each output pixel's background (outer window minus guard window) of
    the ``(h + 2r, w + 2r)`` bool ``keep`` window (``r = outer // 2``)."""
    k = keep.to(torch.float64)[None, None]
    r, ri = outer // 2, inner // 2
    outer_sum = torch.nn.functional.avg_pool2d(k, outer, stride=1, divisor_override=1)[0, 0]
    inner_sum = torch.nn.functional.avg_pool2d(k[..., r - ri: k.shape[-2] - r + ri, r - ri: k.shape[-1] - r + ri],
                                               inner, stride=1, divisor_override=1)[0, 0]
    return (outer_sum - inner_sum).round_()


def lrx_mirrored(pixels: torch.Tensor, span: float, inner: int = DEFAULT_INNER, outer: int = DEFAULT_OUTER,
                 ridge: float = RIDGE, chunk: int | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
    """LRX scores ``(h, w)`` from ``(h + 2r, w + 2r, B)`` float64 pixels (``r = outer // 2``) that carry
    ``r`` px of context on every side (mirrored at the scene border), centred on the scene's mean, with
    ``span`` the scene's value range (see :func:`_mirrored_pixels`).

    A strip with its context scores as the same rows of the whole scene (pipeline/'s strips). ``keep``
    ``(h + 2r, w + 2r)`` bool: the pixels with data (data/nodata.py). The others are zeroed (after the
    centring: they then add nothing to the running sums) and each pixel's ``n`` is its count of valid
    background pixels; a background of fewer than 2 is scored as if it held 2 (finite, ridge-dominated).
    """
    r, ri = outer // 2, inner // 2
    h, w, b = pixels.shape[0] - 2 * r, pixels.shape[1] - 2 * r, pixels.shape[2]
    if keep is not None:
        pixels = pixels.masked_fill(~keep[..., None], 0.0)
        return _lrx_counted(pixels, background_counts(keep, inner, outer).clamp_min_(2), span, inner, outer,
                            ridge, chunk)
    n = outer * outer - inner * inner
    lam = ridge * span * span * (n - 1)          # ridge on C (raw units) moved onto the scatter
    chunk = chunk or chunk_width(b, w, pixels.device)
    scores = pixels.new_empty(h, w)
    worst = torch.zeros((), dtype=torch.int32, device=pixels.device)   # checked once: no per-row GPU sync
    first_outer, first_inner, first_signs, slide_signs = _row_patterns(outer, inner, pixels)
    for c0 in range(0, w, chunk):
        c1 = min(w, c0 + chunk)
        sum2 = pixels.new_zeros(c1 - c0, b, b)      # running sum over the background of x x^T
        sum1 = pixels.new_zeros(c1 - c0, b)         # ... and of x
        cov = pixels.new_empty(c1 - c0, b, b).transpose(-1, -2)   # column-major: LAPACK's layout
        info = torch.empty(c1 - c0, dtype=torch.int32, device=pixels.device)
        _update(sum2, sum1, pixels, first_outer, first_inner, c0, c1, r, ri, outer, inner, first_signs)
        for i in range(h):
            if i > 0:  # slide both windows down one row
                _update(sum2, sum1, pixels, [(i + 2 * r, 1.0), (i - 1, -1.0)],
                        [(i + r + ri, 1.0), (i + r - ri - 1, -1.0)], c0, c1, r, ri, outer, inner, slide_signs)
            # (n-1) (C + ridge I) = sum2 - sum1 sum1^T / n + lam I, factorised in place; written through
            # the row-major view of the column-major buffer (the matrix is symmetric, so it is the same)
            torch.baddbmm(sum2, sum1[:, :, None], sum1[:, None, :], alpha=-1.0 / n, out=cov.transpose(-1, -2))
            cov.diagonal(dim1=-2, dim2=-1).add_(lam)
            centred = pixels[i + r, c0 + r: c1 + r] - sum1 / n                         # (w, B)
            with one_thread(pixels.device):  # small factorisations: see detectors.slrx.cholesky_in_place
                torch.linalg.cholesky_ex(cov, out=(cov, info))
                y = torch.linalg.solve_triangular(cov, centred[:, :, None], upper=False)
            worst = torch.maximum(worst, info.max())
            scores[i, c0:c1] = y.square().sum(dim=(1, 2)) * (n - 1)
    if int(worst) > 0:
        raise DetectorError("LRX: a background covariance is not positive definite (non-finite input?)")
    return scores


def _row_patterns(outer: int, inner: int, pixels: torch.Tensor) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    """The first row's outer and inner windows and their sign tensors, and those of sliding down one row (the
    entering row added, the leaving one taken off: the same every row), built once per call."""
    r, ri = outer // 2, inner // 2
    first_outer, first_inner = [(p, 1.0) for p in range(outer)], [(p, 1.0) for p in range(r - ri, r + ri + 1)]
    slide = [(0, 1.0), (0, -1.0)]
    return (first_outer, first_inner, _signs(first_outer, first_inner, outer, inner, pixels),
            _signs(slide, slide, outer, inner, pixels))


def _lrx_counted(pixels: torch.Tensor, counts: torch.Tensor, span: float, inner: int, outer: int, ridge: float,
                 chunk: int | None) -> torch.Tensor:
    """:func:`lrx_mirrored` with a background count per pixel ``counts`` ``(h, w)`` (nodata left out)."""
    r, ri = outer // 2, inner // 2
    h, w, b = pixels.shape[0] - 2 * r, pixels.shape[1] - 2 * r, pixels.shape[2]
    chunk = chunk or chunk_width(b, w, pixels.device)
    scores = pixels.new_empty(h, w)
    worst = torch.zeros((), dtype=torch.int32, device=pixels.device)
    first_outer, first_inner, first_signs, slide_signs = _row_patterns(outer, inner, pixels)
    for c0 in range(0, w, chunk):
        c1 = min(w, c0 + chunk)
        sum2 = pixels.new_zeros(c1 - c0, b, b)
        sum1 = pixels.new_zeros(c1 - c0, b)
        eye = torch.eye(b, dtype=pixels.dtype, device=pixels.device)
        _update(sum2, sum1, pixels, first_outer, first_inner, c0, c1, r, ri, outer, inner, first_signs)
        for i in range(h):
            if i > 0:
                _update(sum2, sum1, pixels, [(i + 2 * r, 1.0), (i - 1, -1.0)],
                        [(i + r + ri, 1.0), (i + r - ri - 1, -1.0)], c0, c1, r, ri, outer, inner, slide_signs)
            n = counts[i, c0:c1]                                                         # (w,)
            mean = sum1 / n[:, None]
            cov = sum2 - mean[:, :, None] * sum1[:, None, :] + (ridge * span * span * (n - 1))[:, None, None] * eye
            centred = pixels[i + r, c0 + r: c1 + r] - mean
            with one_thread(pixels.device):
                factor, info = torch.linalg.cholesky_ex(cov)
                y = torch.linalg.solve_triangular(factor, centred[:, :, None], upper=False)
            worst = torch.maximum(worst, info.max())
            scores[i, c0:c1] = y.square().sum(dim=(1, 2)) * (n - 1)
    if int(worst) > 0:
        raise DetectorError("LRX: a background covariance is not positive definite (non-finite input?)")
    return scores


class LRXDetector(Detector):
    """LRX as the pipeline runs it: the scene's span and centre, then strips of rows, each with half the
    outer window of mirrored context (:func:`lrx_mirrored`)."""

    name = "LRX"
    options = (Option("lrx_inner", int, DEFAULT_INNER, "LRX inner (guard) window side, odd"),
               Option("lrx_outer", int, DEFAULT_OUTER, "LRX outer (background) window side, odd"))
    in_strips = True

    def check(self, shape: Shape, options: Any) -> None:
        check_windows(options.lrx_inner, options.lrx_outer, shape[0], shape[1])

    def memory_bytes(self, shape: Shape, options: Any, device: torch.device | str = "cpu") -> int:
        h, w, b = shape
        return lrx_memory_bytes(b, h, w, options.lrx_inner, options.lrx_outer, device)

    def least_strip(self, shape: Shape, options: Any) -> int:
        return min(shape[0], options.lrx_outer // 2 + 1)

    def strip_bytes(self, shape: Shape, strip: int, options: Any, device: torch.device | str = "cpu") -> int:
        h, w, b = shape
        return lrx_memory_bytes(b, min(h, strip), w, options.lrx_inner, options.lrx_outer)

    def score_reader(self, reader: CubeReader, strip: int, options: Any) -> torch.Tensor:
        h, w, b = reader.shape
        inner, outer = options.lrx_inner, options.lrx_outer
        check_windows(inner, outer, h, w)
        stats = rx_statistics(reader)  # span and centre
        span = stats.span()
        return score_in_strips(reader, strip, outer // 2, False, lambda window, keep=None: lrx_mirrored(
            window.to(torch.float64).sub_(stats.mean), span, inner, outer, keep=keep))


LRX = LRXDetector()
