"""CRD, the collaborative representation detector (W. Li and Q. Du, "Collaborative representation for
hyperspectral anomaly detection", IEEE TGRS 53(3), 2015), as either of the two widely used MATLAB codes
computes it.

For every pixel y (B values) of a cube min-maxed to [0, 1] (one global min and max, as every detector
here): X (B x N) is the background, the ``outer`` x ``outer`` window centred on y minus the ``inner`` x
``inner`` guard window (N = outer^2 - inner^2); with ``sum_to_one`` both are augmented with a row of ones
(the soft sum-to-one constraint), ``X_a = [X; 1]``, ``y_a = [y; 1]`` (else ``X_a = X``, ``y_a = y``), and
``Gamma = diag(||x_i - y||)`` (on the B bands), and

    alpha = (X_a^T X_a + lam Gamma^T Gamma)^-1 X_a^T y_a,    score = ||y - X alpha||.

The two codes, and the options that reproduce each (test.py: ``--crd_border``, ``--crd_sum_to_one``):

* **Li and Du's code** (the defaults, ``border="periodic", sum_to_one=True``): the row of ones, and
  **periodic** borders: the code tiles the image 3 x 3 and takes its windows from the tiling, so the
  background of pixel (i, j) holds rows ``(i + di) mod H`` and columns ``(j + dj) mod W`` -- a quirk of the
  original that is kept on purpose (LRX mirrors instead).
* **Zephyr Hou's func_CRD.m** (of his public 2S-GLRT and CRDBPSW code, copied into many comparison studies;
  ``border="mirror", sum_to_one=False``): no row of ones, and **mirrored** borders: the image surrounded by
  flipped copies of itself (:func:`mirror_pad`; the pixel beyond the edge repeats the edge), and
  ``pinv`` in place of the inverse. A background can then hold the same spectrum twice, and, within the
  outer window's reach of the border, the pixel itself (windows 3 / 11: the pixels 1 and 2 px from the
  border); such a pixel fits exactly and scores 0 (below). The system is singular only where such a copy of
  y appears twice (or ``lam = 0``); there the pseudo-inverse is taken, as that code does (the minimum-norm
  solution: all of them give the same ``X alpha``). Elsewhere ``pinv`` equals the inverse, computed here as
  for the periodic code. On abu-airport-1 (first 50 bands, windows 3 / 11, lam 1e-6) this gives AUC 0.8185
  (0.8895 with the defaults); issue 34 quoted 0.8168, which is ``pinv(M) * X' * y`` evaluated literally in
  numpy: forming ``pinv(M)`` of a matrix of condition about 1e13 and multiplying moves some scores by up to
  21x (against a 40-digit solution), and the AUC of such literal evaluations ranges 0.8127 to 0.8168 with
  the order of the products and the SVD used. The mirror brings a pixel's nearest neighbours (inside its
  guard window) back into its background, which makes the systems worse conditioned: this code's scores
  are within 1e-5 (relative) of a 40-digit solution there, against 3e-7 with periodic borders (below).

The score is *not* invariant to a shift or a scaling of the min-maxed values: the row of ones is not
scaled with the data (the sum-to-one constraint is a penalty, not exact), and lam weighs distances in the
data's units. A shift changes the scores slightly (about 1e-6 relative on a random cube: the fit is nearly
exact, so the weights nearly sum to one anyway), a scale about proportionally. So the min-max matters, and
strips of a scene take the whole scene's ``lo`` and ``span`` (:func:`crd_window`), not a centre as LRX.
Without the row of ones the scores scale exactly with the values, but a shift still changes them.
Any affine change of the raw cube (``a x + b``, ``a > 0``) leaves the scores unchanged.

Vectorised: the background windows of a block of pixels are gathered at once (``unfold`` views of the padded
cube, then the background mask), and their systems are solved together, one batched Cholesky per block (blocks
sized by :data:`CPU_CHUNK_BYTES`, on a GPU :func:`utils.memory.chunk_bytes`), float64 throughout. The pixels are stored
pixel-major with the 1 of ``X_a`` appended (``K = B + 1`` values; ``K = B`` without the row of ones), so one
gather of flat offsets gives a block's ``X_a`` ``(P, N, K)``. On the CPU every torch call runs on one thread
and the blocks run side by side on ``torch.get_num_threads()`` worker threads: the calls are small, and
splitting each of them over two threads on 2 cores shared with other work made every parallel section wait for a
descheduled thread (measured, 100 x 100 x 50: 0.8 s with one thread, 3.4 to 7.3 s with two), while whole
blocks need no barrier (abu-airport-1, 200 bands: 7.8 s with one worker, 4.1 s with two). Blocks are
independent, so the scores do not depend on the number of workers.

* when ``K < N`` (more background pixels than bands), the ``K x K`` push-through form.
  With ``W = diag(1 / ||x_i - y||^2)``, ``A = X_a W X_a^T``, the identity
  ``X_a (X_a^T X_a + lam Gamma^2)^-1 X_a^T = A (lam I + A)^-1`` gives the augmented residual directly,
  ``y_a - X_a alpha = lam (lam I + A)^-1 y_a``, whose first B entries are ``y - X alpha``. No
  subtraction cancels, and ``lam I + A`` is as well conditioned as the problem allows: on random cubes it
  agrees with a 50-digit solution to about 1e-14, where the ``N x N`` normal equations (the oracle) are
  off by up to about 1e-8 (with lam = 1e-6 the fit is nearly exact and the ``N x N`` matrix nearly
  singular); on abu-airport-1 (50 bands, whose near-identical neighbours make the problem itself
  ill-conditioned) to about 3e-7, the oracle to 6e-6. It needs every ``||x_i - y|| > 0``, hence the
  next point;
* a pixel with an exact copy of itself in its background scores 0: ``alpha`` = that copy's indicator fits
  ``y_a`` exactly at no penalty (``Gamma`` is 0 there), the exact minimum (both forms);
* otherwise (``K >= N``) the ``N x N`` system as written, ``X_a^T X_a + lam Gamma^2`` (well
  conditioned: more equations than unknowns);
* a system whose Cholesky factorisation fails (singular: ``lam = 0``, or two copies of y in a mirrored
  background) is solved again, for those pixels only, by the pseudo-inverse of the ``N x N`` system, as
  func_CRD.m (``torch.linalg.pinv``, whose default tolerance is MATLAB's: ``N eps`` times the largest
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from detectors.base import CubeReader, Detector, Option, Shape, check_dual_windows, reader_valid, score_in_strips
from detectors.rx import one_thread, rx_statistics, value_range
from utils.cube import bands_first
from utils.errors import DetectorError
from utils.memory import chunk_bytes

DEFAULT_INNER = 3
DEFAULT_OUTER = 11
DEFAULT_LAMBDA = 1e-6
#: The borders: ``periodic`` (Li and Du's code, the 3 x 3 tiling) or ``mirror`` (func_CRD.m, flipped copies).
BORDERS = ("periodic", "mirror")
DEFAULT_BORDER = "periodic"
#: The row of ones (the soft sum-to-one constraint) of Li and Du's code; func_CRD.m solves without it.
DEFAULT_SUM_TO_ONE = True
#: Float64 bytes of one block's working set on the CPU (gathered windows and systems): tens of pixels, to
#: amortise the per-call overhead of the batched calls (measured on 60 x 60 cubes: 4 and 16 MB blocks run
#: alike, 1 MB blocks 1.4x slower at 50 bands and 2.7x at 200).
CPU_CHUNK_BYTES = 16 << 20


def check_crd(inner: int, outer: int, lam: float, height: int, width: int,
              border: str = DEFAULT_BORDER) -> None:
    """Raise DetectorError (one line, naming the parameter and a value that works) if the windows, ``lam``
    or ``border`` do not suit an ``height`` x ``width`` scene."""
    check_dual_windows("CRD", "crd", inner, outer, height, width)
    try:
        value = float(lam)                     # also numpy and 0-d torch numbers
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise DetectorError(f"crd_lambda={lam}: must be a finite number >= 0")
    if border not in BORDERS:
        raise DetectorError(f"crd_border={border}: must be one of {', '.join(BORDERS)}")


def background_mask(inner: int, outer: int) -> torch.Tensor:
    """``(outer, outer)`` bool: True on the background (outer window minus the centred inner one)."""
    r, ri = outer // 2, inner // 2
    mask = torch.ones(outer, outer, dtype=torch.bool)
    mask[r - ri:r + ri + 1, r - ri:r + ri + 1] = False
    return mask


def system_size(bands: int, inner: int, outer: int) -> int:
    """Side of the matrices factorised per pixel: ``B + 1`` (push-through) or ``N`` (as written)."""
    return min(bands + 1, outer * outer - inner * inner)


def chunk_pixels(bands: int, inner: int, outer: int, device: torch.device | str = "cpu") -> int:
    """Pixels per batched solve on ``device``: the gathered windows (three ``N x B`` arrays) and two
    systems (``k x k``) of each pixel fit the budget."""
    budget = chunk_bytes(device, CPU_CHUNK_BYTES)
    n, k = outer * outer - inner * inner, system_size(bands, inner, outer)
    return max(1, budget // (8 * (3 * n * bands + 2 * k * k)))


def crd_memory_bytes(bands: int, height: int, width: int, inner: int = DEFAULT_INNER,
                     outer: int = DEFAULT_OUTER, device: torch.device | str = "cpu") -> int:
    """Rough peak memory of :func:`crd` (or :func:`crd_window` on ``height`` rows) in bytes (float64): the
    padded cube twice (the window and its scaled copy), the working set of one block per worker thread
    (``torch.get_num_threads()`` on the CPU), and the scores."""
    r = outer // 2
    n, k = outer * outer - inner * inner, system_size(bands, inner, outer)
    cube = (height + 2 * r) * (width + 2 * r) * bands
    workers = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    block = workers * chunk_pixels(bands, inner, outer, device) * (3 * n * bands + 2 * k * k)
    return 8 * (2 * cube + block + 2 * height * width)


def periodic_pad(cube: torch.Tensor, r: int) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B, H + 2r, W + 2r)``, wrapped around (row ``i`` of the result is row
    ``(i - r) mod H`` of the cube, columns likewise): the 3 x 3 tiling of the original code."""
    _, h, w = cube.shape
    rows = torch.arange(-r, h + r, device=cube.device) % h
    cols = torch.arange(-r, w + r, device=cube.device) % w
    return cube[:, rows][:, :, cols]


def mirror_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices into ``[0, size)`` of a scene surrounded by flipped copies of itself (the edge repeated, as
    ``numpy.pad(mode="symmetric")``): ``-1 -> 0``, ``-2 -> 1``, ``size -> size - 1``. Valid for overhangs
    up to ``size``."""
    index = torch.where(index < 0, -index - 1, index)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def mirror_pad(cube: torch.Tensor, r: int) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B, H + 2r, W + 2r)`` inside flipped copies of itself: func_CRD.m's 3 x 3 tiling
    of ``Data(:, b:-1:1, :)`` and ``Data(a:-1:1, ...)``, so the pixel beyond the edge repeats the edge
    (LRX's mirror does not repeat it)."""
    _, h, w = cube.shape
    rows = mirror_index(torch.arange(-r, h + r, device=cube.device), h)
    cols = mirror_index(torch.arange(-r, w + r, device=cube.device), w)
    return cube[:, rows][:, :, cols]


def border_pad(cube: torch.Tensor, r: int, border: str = DEFAULT_BORDER) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B, H + 2r, W + 2r)`` with ``border`` (:data:`BORDERS`) context."""
    return periodic_pad(cube, r) if border == "periodic" else mirror_pad(cube, r)


def _residual_push(xa: torch.Tensor, ya: torch.Tensor, d2: torch.Tensor, lam: float, bands: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``y - X alpha`` ``(P, B)`` by the ``K x K`` push-through form (module docstring; ``K = B + 1`` with the
    row of ones, ``B`` without), and the Cholesky info ``(P,)``. ``xa``: ``(P, N, K)`` backgrounds, ``ya``:
    ``(P, K)``, ``d2``: ``(P, N)`` squared distances, all > 0; ``bands``: ``B``."""
    a = torch.matmul(xa.transpose(-1, -2), xa / d2[..., None])            # X_a W X_a^T
    a.diagonal(dim1=-2, dim2=-1).add_(lam)
    factor, info = torch.linalg.cholesky_ex(a)
    z = torch.cholesky_solve(ya[..., None], factor)[..., 0]
    return lam * z[:, :bands], info


def _gram(xa: torch.Tensor, d2: torch.Tensor, lam: float) -> torch.Tensor:
    """``X_a^T X_a + lam Gamma^T Gamma`` ``(P, N, N)``; shapes as :func:`_residual_push`."""
    g = torch.matmul(xa, xa.transpose(-1, -2))                            # X_a^T X_a  (P, N, N)
    g.diagonal(dim1=-2, dim2=-1).add_(lam * d2)                           # + lam Gamma^T Gamma
    return g


def _residual_gram(xa: torch.Tensor, ya: torch.Tensor, d2: torch.Tensor, lam: float, bands: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``y - X alpha`` ``(P, B)`` from the ``N x N`` system as written, and the Cholesky info ``(P,)``;
    shapes as :func:`_residual_push`."""
    factor, info = torch.linalg.cholesky_ex(_gram(xa, d2, lam))
    alpha = torch.cholesky_solve(torch.matmul(xa, ya[..., None]), factor)   # (P, N, 1)
    return ya[:, :bands] - (xa[..., :bands] * alpha).sum(dim=1), info


def _residual_pinv(xa: torch.Tensor, ya: torch.Tensor, d2: torch.Tensor, lam: float, bands: int) -> torch.Tensor:
    """``y - X alpha`` ``(P, B)`` with ``alpha = pinv(X_a^T X_a + lam Gamma^T Gamma) X_a^T y_a``, func_CRD.m's
    pseudo-inverse: singular values below ``N eps`` times the largest dropped (torch's default tolerance,
    MATLAB's too). For the systems that are singular (not positive definite); shapes as :func:`_residual_push`."""
    alpha = torch.matmul(torch.linalg.pinv(_gram(xa, d2, lam)), torch.matmul(xa, ya[..., None]))   # by SVD, as MATLAB
    return ya[:, :bands] - (xa[..., :bands] * alpha).sum(dim=1)


def crd_scores(xa: torch.Tensor, ya: torch.Tensor, lam: float = DEFAULT_LAMBDA,
               sum_to_one: bool = DEFAULT_SUM_TO_ONE, keep: torch.Tensor | None = None) -> torch.Tensor:
    """CRD scores ``(P,)`` of pixels ``ya`` ``(P, K)`` with backgrounds ``xa`` ``(P, N, K)`` (min-maxed, float64;
    with ``sum_to_one`` the last of the ``K = B + 1`` values is the 1 of the augmented ``X_a``, else
    ``K = B``). A system that is not positive definite (``lam = 0``, or a background holding the same
    spectrum twice and, at ``y``'s distance 0, a copy of ``y``) is solved by the pseudo-inverse
    (:func:`_residual_pinv`).

    ``keep`` ``(P, N)`` bool: the background pixels with data. The others' rows of ``xa`` must be all zero
    (the appended 1 too): they then add nothing to ``X_a W X_a^T`` and get ``alpha = 0`` in the ``N x N``
    form, i.e. they are left out of the dictionary exactly (their distance is set to 1, so no false copy)."""
    bands = xa.shape[-1] - int(sum_to_one)
    # ||x_i - y||^2 on the B bands: the appended 1s cancel in the difference
    d2 = torch.linalg.vector_norm(xa - ya[:, None, :], dim=-1).square_()   # (P, N)
    if keep is not None:
        d2 = torch.where(keep, d2, torch.ones_like(d2))
    copy = (d2 == 0).any(dim=1)                # an exact copy in the background: score 0 (docstring)
    d2 = torch.where(copy[:, None], torch.ones_like(d2), d2)   # any positive value: the result is replaced
    push = xa.shape[-1] < xa.shape[1]                          # K < N
    residual, info = (_residual_push if push else _residual_gram)(xa, ya, d2, lam, bands)
    singular = info > 0
    if bool(singular.any()):                   # rare: one host sync per block where a GPU computes
        try:
            residual[singular] = _residual_pinv(xa[singular], ya[singular], d2[singular], lam, bands)
        except torch.linalg.LinAlgError:       # non-finite systems (crd_window on a raw NaN window)
            raise DetectorError("CRD: a background system has no pseudo-inverse (non-finite input?)") from None
    scores = torch.linalg.vector_norm(residual, dim=-1)
    return scores.masked_fill(copy, 0.0)


def _offsets(inner: int, outer: int, padded_width: int, device: torch.device) -> torch.Tensor:
    """``(N,)`` flat offsets, in a row-major padded image ``padded_width`` px wide, from a pixel to its
    background pixels."""
    r = outer // 2
    di, dj = background_mask(inner, outer).nonzero().unbind(1)
    return ((di - r) * padded_width + (dj - r)).to(device)


def crd_window(window: torch.Tensor, lo: float | torch.Tensor, span: float | torch.Tensor,
               inner: int = DEFAULT_INNER, outer: int = DEFAULT_OUTER, lam: float = DEFAULT_LAMBDA,
               chunk: int | None = None, sum_to_one: bool = DEFAULT_SUM_TO_ONE, keep: torch.Tensor | None = None
               ) -> torch.Tensor:
    """CRD scores ``(rows, cols)`` float64 of the interior of ``window`` ``(B, rows + 2r, cols + 2r)``
    (``r = outer // 2``): pixels with ``r`` px of context on every side (at the scene border periodic or
    mirrored, see :func:`border_pad`), raw values, with ``lo`` the whole scene's minimum and ``span`` its
    ``max - min`` (CRD is not shift or scale invariant, so a strip must be scaled as the whole scene).
    ``sum_to_one``: augment with the row of ones (module docstring).

    A strip of rows of the scene with its context gives the same scores as those rows of the whole scene.
    ``chunk``: pixels per batched solve (default: :func:`chunk_pixels`); ``keep``: the window's valid pixels.
    """
    r = outer // 2
    if window.dim() != 3 or min(window.shape[1:]) <= 2 * r:
        raise DetectorError(f"CRD expects a (B, rows + {2 * r}, cols + {2 * r}) window, got {tuple(window.shape)}")
    b, hp, wp = window.shape
    rows, cols = hp - 2 * r, wp - 2 * r
    k = b + int(sum_to_one)
    # pixel-major, min-maxed, with the appended 1 of X_a and y_a: one gather then gives X_a directly
    pixels = window.new_ones(hp, wp, k, dtype=torch.float64)
    pixels[..., :b] = ((window.to(torch.float64) - lo) / span).permute(1, 2, 0)
    pixels = pixels.reshape(hp * wp, k)
    flat_keep = None if keep is None else keep.reshape(-1)
    if flat_keep is not None:  # nodata pixels: zero rows, out of every dictionary (crd_scores)
        pixels.masked_fill_(~flat_keep[:, None], 0.0)
    offsets = _offsets(inner, outer, wp, window.device)
    chunk = chunk or chunk_pixels(b, inner, outer, window.device)
    scores = pixels.new_empty(rows * cols)

    def block(p0: int) -> None:
        """Scores of output pixels ``p0 .. p0 + chunk - 1`` (row-major) into ``scores``."""
        p = torch.arange(p0, min(rows * cols, p0 + chunk), device=window.device)
        centre = (p // cols + r) * wp + p % cols + r                       # flat index in the padded window
        index = (centre[:, None] + offsets).flatten()
        xa = pixels[index].reshape(len(p), len(offsets), k)
        kept = None if flat_keep is None else flat_keep[index].reshape(len(p), len(offsets))
        scores[p0:p0 + len(p)] = crd_scores(xa, pixels[centre], lam, sum_to_one, kept)

    starts = range(0, rows * cols, chunk)
    workers = torch.get_num_threads() if window.device.type == "cpu" else 1
    with one_thread(window.device):  # each block on one CPU thread, blocks side by side (module docstring)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(block, starts))
        else:
            for p0 in starts:
                block(p0)
    return scores.reshape(rows, cols)


def crd(cube: torch.Tensor | np.ndarray, inner: int = DEFAULT_INNER, outer: int = DEFAULT_OUTER,
        lam: float = DEFAULT_LAMBDA, chunk: int | None = None, border: str = DEFAULT_BORDER,
        sum_to_one: bool = DEFAULT_SUM_TO_ONE, *, layout: str = "hwb") -> torch.Tensor | np.ndarray:
    """CRD scores ``(H, W)`` float64 of an H x W x B cube (``layout="bhw"``: B x H x W), a numpy map of a
    numpy array, a tensor on its device of a tensor: min-max over the whole cube, ``border`` context
    (:func:`border_pad`), then :func:`crd_window` on the padded cube. The defaults are Li and Du's code;
    ``border="mirror", sum_to_one=False`` is func_CRD.m (module docstring)."""
    given = bands_first(cube, layout, error=DetectorError)
    x = given.tensor
    check_crd(inner, outer, lam, *x.shape[1:], border)
    lo, span = value_range(x, dims=(0, 1, 2))
    return given.map(crd_window(border_pad(x, outer // 2, border), lo.reshape(()), span.reshape(()), inner, outer,
                                lam, chunk, sum_to_one))


class _MirrorReader:
    """``reader`` (a :class:`detectors.base.CubeReader`) whose windows sit in flipped copies of the scene
    (:func:`mirror_pad`, func_CRD.m's border) rather than in its reflection or its periodic tiling."""

    def __init__(self, reader: CubeReader) -> None:
        self.reader, self.shape, self.device = reader, reader.shape, reader.device

    def window(self, r0: int, r1: int, c0: int, c1: int, halo: int, periodic: bool = False) -> torch.Tensor:
        """Rows ``[r0 - halo, r1 + halo)``, columns ``[c0 - halo, c1 + halo)``: ``(rows, cols, B)`` float32,
        from one block of the scene."""
        h, w, _ = self.shape
        rows = mirror_index(torch.arange(r0 - halo, r1 + halo), h)
        cols = mirror_index(torch.arange(c0 - halo, c1 + halo), w)
        lo_r, lo_c = int(rows.min()), int(cols.min())
        part = self.reader.block(lo_r, int(rows.max()) + 1, lo_c, int(cols.max()) + 1)
        return part[(rows - lo_r).to(part.device)][:, (cols - lo_c).to(part.device)]


class CRDDetector(Detector):
    """CRD as the pipeline runs it: the scene's value range, then strips of rows, each with half the outer
    window of periodic or mirrored context (:func:`crd_window`)."""

    name = "CRD"
    options = (Option("crd_inner", int, DEFAULT_INNER, "CRD inner (guard) window side, odd"),
               Option("crd_outer", int, DEFAULT_OUTER, "CRD outer window side, odd: its ring is the dictionary"),
               Option("crd_lambda", float, DEFAULT_LAMBDA, "CRD regularisation weight lambda, 0 or more"),
               Option("crd_border", str, DEFAULT_BORDER, "CRD context beyond the scene border: periodic (Li and "
                      "Du's code) or mirror (flipped copies, Hou's func_CRD.m)", choices=BORDERS),
               Option("crd_sum_to_one", bool, DEFAULT_SUM_TO_ONE, "CRD dictionary with the row of ones (soft "
                      "sum-to-one, Li and Du's code); --no-crd_sum_to_one solves without it (func_CRD.m)"))
    in_strips = True

    def check(self, shape: Shape, options: Any) -> None:
        check_crd(options.crd_inner, options.crd_outer, options.crd_lambda, shape[0], shape[1], options.crd_border)

    def memory_bytes(self, shape: Shape, options: Any, device: torch.device | str = "cpu") -> int:
        h, w, b = shape
        return crd_memory_bytes(b, h, w, options.crd_inner, options.crd_outer, device)

    def least_strip(self, shape: Shape, options: Any) -> int:
        return min(shape[0], options.crd_outer // 2 + 1)

    def strip_bytes(self, shape: Shape, strip: int, options: Any, device: torch.device | str = "cpu") -> int:
        h, w, b = shape
        return crd_memory_bytes(b, min(h, strip), w, options.crd_inner, options.crd_outer)

    def score_reader(self, reader: CubeReader, strip: int, options: Any) -> torch.Tensor:
        h, w, b = reader.shape
        inner, outer, lam, border = options.crd_inner, options.crd_outer, options.crd_lambda, options.crd_border
        check_crd(inner, outer, lam, h, w, border)
        valid = reader_valid(reader)
        if valid is not None and border != "periodic":
            raise DetectorError(f"crd_border={border!r} on a scene with nodata pixels is not supported yet: its "
                                "flipped-copy context would need its own valid mask; use crd_border='periodic'")
        stats = rx_statistics(reader)  # the scene's min and span
        lo, span = stats.lo, stats.span()
        periodic = border == "periodic"
        return score_in_strips(reader if periodic else _MirrorReader(reader), strip, outer // 2, periodic,
                               lambda window, keep=None: crd_window(window.permute(2, 0, 1), lo, span, inner, outer,
                                                                    lam, sum_to_one=options.crd_sum_to_one,
                                                                    keep=keep))


CRD = CRDDetector()
