"""Global RX (GRX): the Reed-Xiaoli Mahalanobis detector over the whole scene (method sec. 4).

For a cube X of B bands and N = H * W pixels, after one global min-max of the cube to [0, 1]:

    mu = (1/N) sum_i x_i,    S = 1/(N-1) sum_i (x_i - mu)(x_i - mu)^T,
    score_i = (x_i - mu)^T S^+ (x_i - mu)

with S^+ the Moore-Penrose pseudo-inverse (quirk 3: the authors use ``pinv``; the squared distance
is returned, no square root). Reference: I. S. Reed and X. Yu, "Adaptive multiple-band CFAR detection
of an optical pattern with unknown spectral distribution", IEEE TASSP 38(10), 1990.

How it is computed (float64 throughout, whatever the input dtype: the covariance of a few hundred bands
is ill-conditioned, up to 3e10 on real scenes, and float32 loses whole digits of the score):

* pixels go through in chunks of a fixed number of pixels (a few MB: memory stays bounded whatever the
  scene size); :class:`RXStatistics` merges each chunk's mean and scatter (the scatter of the chunk
  centred on its own mean) with the pairwise update of Chan, Golub & LeVeque (1979), as exact as a
  two-pass computation and read in a single pass;
* the min-max of quirk 2 only shifts the pixels (which the centring removes) and divides them by the
  cube's span, so it is applied to the ``B x B`` matrices rather than to the ``N x B`` pixels;
* on the CPU, the two products that cost all the time go to the BLAS scipy ships (OpenBLAS) as the
  products made for them, each half a matrix product's work: the scatter ``X^T X`` as ``dsyrk`` (one
  triangle), and the scores as ``||(x - mu)^T L^-T||^2`` with ``L`` the Cholesky factor of the covariance:
  one triangular product ``dtrmm`` and a sum of squares, instead of ``(x - mu)^T S+ (x - mu)`` with the
  full ``S+``. Chunks go side by side on the cores (one Python thread and one BLAS thread each; each
  thread keeps its own statistics, merged in a fixed order, so the result does not depend on timing).
  The factor is more accurate than the pseudo-inverse it replaces (Cholesky is backward stable; ``S+``
  from ``eigh`` carries an error of about ``eps * cond``); where the covariance is singular by the pinv's
  cut-off (``rcond * largest`` eigenvalue, numpy's default), or too close to it for Cholesky, the scores
  use the eigenvectors of the kept eigenvalues, exactly ``S+``;
* on a GPU, torch's products: the scatter over the band blocks on and below the diagonal, the scores
  ``((X - mu) S+) * (X - mu)`` summed over the block triangle of ``S+`` (see :func:`scores_`), with ``S+``
  from ``eigh`` (symmetric positive semi-definite: its singular values are its eigenvalues).

The same :class:`RXStatistics` and :func:`scores_` serve scenes larger than memory
(pipeline/ feeds them chunks read from a memory-mapped file), so a scene gives the same scores
whether it is held whole or streamed.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from detectors.base import CubeReader, Detector, Shape, reader_valid
from detectors.rx_cpu import PINV_RCOND, Whitening, _blas, cpu_workers, on_workers, syrk_upper_
from utils.cube import bands_first
from utils.device import torch_threads
from utils.errors import DetectorError
from utils.memory import chunk_bytes

#: Float64 bytes of one chunk of pixels on the CPU: small enough to stay in a core's cache between the
#: conversion, the centring and the product that read it (measured: 4-16 MB chunks run 1.2-1.5x faster
#: than whole 100 x 100 x 200 scenes, and 5x faster than whole 1024 x 1024 ones).
CPU_CHUNK_BYTES = 8 << 20


def value_range(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and span (max - min) of ``x`` over ``dims``, kept as size-1 dims, in float64 (the span of a
    float32 cube exactly, without a float64 copy of the cube).

    A constant input has no range: it raises instead of letting a later division by zero through.
    """
    lo = x.amin(dim=dims, keepdim=True).to(torch.float64)
    span = x.amax(dim=dims, keepdim=True).to(torch.float64) - lo
    check_span(span)
    return lo, span


def check_span(span: torch.Tensor) -> None:
    """Raise :class:`DetectorError` unless every ``max - min`` in ``span`` is finite and positive."""
    if not bool(torch.isfinite(span).all()):  # NaN or Inf in the values (a NaN passes the test below)
        raise DetectorError("non-finite values (NaN or Inf) in the cube")
    if bool((span <= 0).any()):
        raise DetectorError("cannot min-max normalise a constant cube (min == max)")


def minmax(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Min-max ``x`` to [0, 1] over ``dims`` (one min and one max per remaining index)."""
    lo, span = value_range(x, dims)
    return (x - lo) / span


def chunk_pixels(bands: int, device: torch.device | str = "cpu") -> int:
    """Pixels per GRX chunk on ``device``: a function of the band count and device only, never of the
    scene or its tiling, so that whole and streamed scenes sum in the same order."""
    budget = chunk_bytes(device, CPU_CHUNK_BYTES)
    return max(256, budget // (8 * bands))


#: Band block of the lower-triangle Gram product (see :func:`add_gram_lower_`).
GRAM_BLOCK = 64


def add_gram_lower_(out: torch.Tensor, pixels: torch.Tensor, block: int = GRAM_BLOCK) -> None:
    """Add the lower block triangle of ``pixels^T pixels`` to ``out`` ``(B, B)``; ``pixels`` is ``(n, B)``.

    A syrk-like product: the Gram matrix is symmetric, so only band blocks on or below the diagonal are
    multiplied (one matrix product per block row, 1/2 + 1/(2k) of the work for k blocks: 0.67 for 200
    bands); :func:`symmetrised` fills the rest once at the end.
    """
    for r0, r1 in band_blocks(pixels.shape[1], block):
        out[r0:r1, :r1].addmm_(pixels[:, r0:r1].T, pixels[:, :r1])


def symmetrised(lower: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose lower triangle is that of ``lower`` (what lies above it is ignored)."""
    return lower.tril() + lower.tril(-1).T


class RXStatistics:
    """Running count, mean, scatter ``sum (x - mu)(x - mu)^T`` and value range of pixels given in chunks.

    ``add`` takes ``(n, B)`` float64 pixels of any memory layout (row-major pixels or a transposed
    band-major block) and centres them in place. Merging a chunk of ``k`` pixels with mean ``m`` and
    own scatter ``C`` into ``n`` pixels with mean ``mu`` (Chan, Golub & LeVeque 1979):

        d = m - mu,    scatter += C + d d^T n k / (n + k),    mu += d k / (n + k).

    Only the lower triangle of the scatter is accumulated (``_lower``; :attr:`scatter` is the whole
    matrix). On the CPU the arithmetic is numpy's and scipy's BLAS on views of the same tensors, so that
    chunks can be added on several threads (:func:`rx_statistics`).
    """

    def __init__(self, bands: int, device: torch.device | str = "cpu") -> None:
        self.n = 0
        self.cpu = torch.device(device).type == "cpu"
        self.mean = torch.zeros(bands, dtype=torch.float64, device=device)
        self._lower = torch.zeros(bands, bands, dtype=torch.float64, device=device)
        self.lo = torch.tensor(float("inf"), dtype=torch.float64, device=device)
        self.hi = torch.tensor(float("-inf"), dtype=torch.float64, device=device)

    def add(self, pixels: torch.Tensor) -> None:
        """Merge ``(k, B)`` float64 ``pixels`` (overwritten: centred on their own mean)."""
        k = pixels.shape[0]
        if k == 0:
            return
        if self.cpu:
            self._add_cpu(pixels.numpy())
            return
        # a full reduction: any order of the elements will do, and the memory order is much faster
        lo, hi = torch.aminmax(pixels.T if pixels.T.is_contiguous() else pixels)
        torch.minimum(self.lo, lo, out=self.lo)
        torch.maximum(self.hi, hi, out=self.hi)
        m = pixels.mean(dim=0)
        pixels -= m
        add_gram_lower_(self._lower, pixels)
        self._merge(k, m, None)

    def _add_cpu(self, pixels: np.ndarray) -> None:
        """:meth:`add` on the CPU: numpy for the passes over the chunk, ``dsyrk`` for its scatter."""
        lo, hi = self.lo.numpy(), self.hi.numpy()
        np.minimum(lo, pixels.min(), out=lo)
        np.maximum(hi, pixels.max(), out=hi)
        m = pixels.mean(axis=0)
        pixels -= m
        # the lower triangle of the C-ordered tensor is the upper one of its Fortran-ordered numpy view
        syrk_upper_(self._lower.numpy().T, pixels)
        self._merge(pixels.shape[0], torch.from_numpy(m), None)

    def _merge(self, k: int, m: torch.Tensor, lower: torch.Tensor | None) -> None:
        """Chan's update with ``k`` pixels of mean ``m``; ``lower``: their scatter (lower triangle), if it is
        not already in ``_lower``."""
        d = m - self.mean
        total = self.n + k
        if lower is not None:
            self._lower += lower
        if self.cpu:  # numpy on views: no torch operation (and its thread pool) on the worker threads
            self._lower.numpy()[...] += np.outer(d.numpy(), d.numpy() * (self.n * k / total))
            self.mean.numpy()[...] += d.numpy() * (k / total)
        else:
            self._lower.addr_(d, d, alpha=self.n * k / total)
            self.mean.add_(d, alpha=k / total)
        self.n = total

    def merge(self, other: "RXStatistics") -> None:
        """Add the pixels ``other`` has seen (the two sets' statistics combined, as if read in one pass)."""
        if other.n == 0:
            return
        torch.minimum(self.lo, other.lo, out=self.lo)
        torch.maximum(self.hi, other.hi, out=self.hi)
        self._merge(other.n, other.mean, other._lower)

    @property
    def scatter(self) -> torch.Tensor:
        """``(B, B)`` ``sum_i (x_i - mu)(x_i - mu)^T``."""
        return symmetrised(self._lower)

    def span(self) -> float:
        """max - min of every value seen; a constant cube has none and raises DetectorError."""
        span = self.hi - self.lo
        check_span(span)
        return float(span)

    def covariance(self) -> tuple[torch.Tensor, float]:
        """``(B, B)`` covariance of the min-maxed pixels (as the spec computes it) and the span."""
        if self.n < 2:
            raise DetectorError("GRX needs at least 2 pixels")
        span = self.span()
        return self.scatter / ((self.n - 1) * span * span), span

    def precision(self) -> torch.Tensor:
        """``(B, B)``: the ``S+`` of the min-maxed pixels, divided by ``span^2`` so that it applies to the
        raw centred pixels: ``(x - mu)^T P (x - mu)`` is the score of the spec."""
        cov, span = self.covariance()
        return pinv_psd(cov) / (span * span)


@contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Run a small LAPACK call on one CPU thread.

    A ``B x B`` eigendecomposition is a long chain of short parallel sections; with two threads on a
    busy machine every barrier waits for a descheduled thread (measured on 2 cores shared with other work: 2 ms
    typical but up to 3.6 s for a 200 x 200 ``eigh`` with 2 threads, at most 23 ms with one).
    """
    with torch_threads(1 if device.type == "cpu" else torch.get_num_threads()):
        yield


def pinv_psd(sym: torch.Tensor, rcond: float = PINV_RCOND) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of a symmetric positive semi-definite ``(B, B)`` matrix, from ``eigh``.

    Eigenvalues at or below ``rcond`` times the largest (in magnitude) are treated as zero, as
    ``numpy.linalg.pinv`` does with singular values (for such a matrix they are the same numbers).
    """
    with one_thread(sym.device):
        vals, vecs = torch.linalg.eigh(sym)
    keep = vals.abs() > rcond * vals.abs().max()
    inv = torch.where(keep, 1.0 / torch.where(keep, vals, torch.ones_like(vals)), torch.zeros_like(vals))
    return (vecs * inv) @ vecs.T


def band_blocks(bands: int, block: int = GRAM_BLOCK) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: about ``block`` bands each, the split :func:`add_gram_lower_` uses."""
    k = max(1, round(bands / block))
    edges = [round(bands * i / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def folded_precision(precision: torch.Tensor, block: int = GRAM_BLOCK) -> torch.Tensor:
    """``P`` with its blocks above the block diagonal doubled and those below zeroed, for :func:`scores_`.

    As ``P`` is symmetric, ``z^T P z = sum_I z_I^T (P_II z_I + 2 sum_{J<I} P_JI^T ... )``: only the block
    upper triangle (diagonal blocks once, the others twice) is needed, a syrk-like saving of a third of the
    work for 200 bands.
    """
    folded = torch.zeros_like(precision)
    for r0, r1 in band_blocks(precision.shape[0], block):
        folded[r0:r1, r0:r1] = precision[r0:r1, r0:r1]
        folded[:r0, r0:r1] = 2 * precision[:r0, r0:r1]
    return folded


def scores_(pixels: torch.Tensor, mu: torch.Tensor, folded: torch.Tensor, block: int = GRAM_BLOCK) -> torch.Tensor:
    """GRX scores ``(n,)`` of ``(n, B)`` float64 ``pixels`` (overwritten: centred in place), mean ``mu``
    ``(B,)`` and ``folded`` = :func:`folded_precision` of ``P``.

    ``((X - mu) P) * (X - mu)`` summed over bands, with each band block's product limited to the bands
    at or before it (see :func:`folded_precision`).
    """
    pixels -= mu
    product = torch.empty_like(pixels, memory_format=torch.contiguous_format)
    for r0, r1 in band_blocks(pixels.shape[1], block):
        torch.mm(pixels[:, :r1], folded[:r1, r0:r1], out=product[:, r0:r1])
    return product.mul_(pixels).sum(dim=1)


def chunk_starts(n_pixels: int, bands: int, device: torch.device | str = "cpu") -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: the chunks of :func:`chunk_pixels` pixels a scene is read in."""
    size = chunk_pixels(bands, device)
    return [(start, min(n_pixels, start + size)) for start in range(0, n_pixels, size)]


def rx_statistics(reader: CubeReader) -> RXStatistics:
    """Mean, scatter and value range of the pixels of the cube ``reader`` reads, in chunks of
    :func:`chunk_pixels` (on the CPU, on :func:`cpu_workers` threads: each its own statistics, merged in
    worker order); of its valid pixels only where it has a mask (nodata: data/nodata.py)."""
    h, w, bands = reader.shape
    n_pixels, device, valid, read = h * w, reader.device, reader_valid(reader), reader.pixels
    chunks = chunk_starts(n_pixels, bands, device)
    keep = None if valid is None else torch.from_numpy(np.ascontiguousarray(valid).reshape(-1)).to(device)

    def add(stats: RXStatistics, start: int, stop: int) -> None:
        chunk = read(start, stop)
        stats.add(chunk if keep is None else chunk[keep[start:stop]])

    if torch.device(device).type != "cpu":
        stats = RXStatistics(bands, device)
        for start, stop in chunks:
            add(stats, start, stop)
        return stats
    parts = [RXStatistics(bands, device) for _ in range(cpu_workers(len(chunks)))]

    def job(worker: int, workers: int) -> None:
        for start, stop in chunks[worker::workers]:
            add(parts[worker], start, stop)

    on_workers(job, len(chunks))
    for part in parts[1:]:
        parts[0].merge(part)
    return parts[0]


def grx_scores(reader: CubeReader) -> torch.Tensor:
    """GRX scores ``(H * W,)`` float64 of the pixels of the cube ``reader`` reads, in row-major order (two
    passes: statistics, scores); the statistics of its valid pixels only where it has a mask (the others'
    scores are the caller's to mask)."""
    stats = rx_statistics(reader)
    h, w, bands = reader.shape
    n_pixels, device, read = h * w, reader.device, reader.pixels
    chunks = chunk_starts(n_pixels, bands, device)
    if torch.device(device).type == "cpu":
        cov, span = stats.covariance()
        with _blas().limit(limits=1):  # a chain of short LAPACK calls (see one_thread)
            whitening = Whitening(cov.numpy(), span)
        mean = stats.mean.numpy()
        scores = torch.empty(n_pixels, dtype=torch.float64)
        out = scores.numpy()

        def job(worker: int, workers: int) -> None:
            for start, stop in chunks[worker::workers]:
                z = read(start, stop).numpy()
                z -= mean
                out[start:stop] = whitening.scores(z)

        on_workers(job, len(chunks))
        return scores
    folded = folded_precision(stats.precision())
    scores = torch.empty(n_pixels, dtype=torch.float64, device=device)
    for start, stop in chunks:
        scores[start:stop] = scores_(read(start, stop), stats.mean, folded)
    return scores


def grx(cube: torch.Tensor | np.ndarray, *, layout: str = "hwb") -> torch.Tensor | np.ndarray:
    """GRX scores ``(H, W)`` float64 of an H x W x B cube, or ``(M, H, W)`` of a batch ``(M, H, W, B)``.

    ``layout="bhw"``: the cube is B x H x W (a batch ``(M, B, H, W)``), as the library's tensors. A numpy
    array gives a numpy map, a tensor a tensor on its device; each cube of a batch has its own statistics.
    """
    given = bands_first(cube, layout, batch=True, error=DetectorError)
    batch = given.tensor if given.tensor.dim() == 4 else given.tensor[None]
    m, b, h, w = batch.shape
    # each cube's (H, W, B) view of its bands-first memory: the reader reads its pixels band-major
    scores = torch.stack([grx_scores(CubeReader(c.permute(1, 2, 0))) for c in batch])
    return given.map(scores.reshape(m, h, w) if given.tensor.dim() == 4 else scores.reshape(h, w))


class GRXDetector(Detector):
    """GRX as the pipeline runs it: the scene's statistics over chunks of pixels, then the scores (two
    passes of :func:`grx_scores`); no strips, its working set is fixed by the band count (and the number of
    chunks read side by side)."""

    name = "GRX"
    chi_square = True

    def memory_bytes(self, shape: Shape, options: object, device: torch.device | str = "cpu") -> int:
        h, w, b = shape  # float64 copies of the pixels, the covariance and its eigh-based pseudo-inverse
        return 8 * (4 * h * w * b + 8 * b * b)

    def strip_bytes(self, shape: Shape, strip: int, options: object, device: torch.device | str = "cpu") -> int:
        # float64 chunks (the read, its product in place): on the CPU one per worker thread side by side, on
        # a GPU one at a time
        workers = max(1, torch.get_num_threads()) if torch.device(device).type == "cpu" else 1
        return 3 * 8 * chunk_pixels(shape[2]) * shape[2] * workers

    def score_reader(self, reader: CubeReader, strip: int, options: object) -> torch.Tensor:
        h, w, _ = reader.shape
        return grx_scores(reader).reshape(h, w)


GRX = GRXDetector()
