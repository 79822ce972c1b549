"""Reference (oracle) implementations of the detectors of method sec. 4, and the reference AUCs.

Each ``*_per_pixel`` function is written straight from docs/method.md sec. 4 in plain numpy, one pixel (and,
for SLRX, one block) at a time, with no vectorisation, no streaming and no algebraic shortcut. They are
**deliberately slow oracles** -- seconds to minutes per scene, never used by test.py or train.py -- kept for
two users: the tests check that the fast torch detectors (detectors/rx.py, slrx.py, lrx.py) equal them, and
the benchmarks time the fast detectors against them. Each takes a ``(B, H, W)`` float64 array and returns
``(H, W)`` float64 scores.
"""
from __future__ import annotations

import numpy as np

from detectors.lrx import DEFAULT_INNER, DEFAULT_OUTER
from detectors.slrx import RIDGE  # the authors' 1e-6 ridge (quirk 3), used by SLRX and LRX alike

#: The authors' AUCs of GRX and FEN+GRX with their released weights on the two ABU airport scenes, from
#: ../shared/reference/README.md: ``{(weights, bands): {scene: (GRX, FEN+GRX)}}``, to 4 decimals.
REFERENCE_AUCS = {
    ("aviris", 200): {"abu-airport-1": (0.8248, 0.9489), "abu-airport-2": (0.8433, 0.9871)},
    ("had100", 200): {"abu-airport-1": (0.8248, 0.9420), "abu-airport-2": (0.8433, 0.9823)},
    ("had100", 100): {"abu-airport-1": (0.8789, 0.9372), "abu-airport-2": (0.8982, 0.9770)},
    ("had100", 50): {"abu-airport-1": (0.8922, 0.9456), "abu-airport-2": (0.9102, 0.9759)},
}

#: The authors' SLRX and FEN+SLRX AUCs (block_num 25) with the aviris-200 weights, from the same table:
#: ``{scene: (SLRX, FEN+SLRX)}``. tests/test_reference_copies.py checks both copies against the file.
REFERENCE_SLRX_AUCS = {"abu-airport-1": (0.9471, 0.9653), "abu-airport-2": (0.9527, 0.9870)}


def minmax(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to [0, 1] by its one minimum and maximum (quirk 2)."""
    return (a - a.min()) / (a.max() - a.min())


def _stats(pixels: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ``inv(unbiased covariance + ridge I)`` of ``(N, B)`` pixels (the plain inverse, quirk 3)."""
    mu = pixels.mean(axis=0)
    cov = np.cov(pixels, rowvar=False, ddof=1) + ridge * np.eye(pixels.shape[1])
    return mu, np.linalg.inv(cov)


def grx_per_pixel(cube: np.ndarray) -> np.ndarray:
    """GRX, method sec. 4, one pixel at a time: a deliberately slow oracle for :func:`detectors.rx.grx`.

    Min-max the cube to [0, 1]; the scene's mean and unbiased covariance, its Moore-Penrose pseudo-inverse
    (quirk 3); each pixel's squared Mahalanobis distance ``(x - mu)^T S+ (x - mu)``.
    """
    b, h, w = cube.shape
    pixels = minmax(cube).reshape(b, -1).T
    mu = pixels.mean(axis=0)
    p = np.linalg.pinv(np.cov(pixels, rowvar=False))
    out = np.empty(h * w)
    for i, x in enumerate(pixels):
        out[i] = (x - mu) @ p @ (x - mu)
    return out.reshape(h, w)


def slrx_per_pixel(cube: np.ndarray, block_size: int, ridge: float = RIDGE) -> np.ndarray:
    """SLRX, method sec. 4, block statistics block by block and distances pixel by pixel: a deliberately slow
    oracle for :func:`detectors.slrx.slrx` (``block_size`` in pixels; quirk 6 is the caller's business).

    Min-max the cube; blocks of side ``block_size`` on a grid of that step; for each pixel the Mahalanobis
    distances (square root; covariance + ridge I, plain inverse) to its own block, to the pooled pixels of the
    up to 8 neighbouring blocks (0 where there is none) and to the whole scene; each map min-maxed to [0, 1],
    the score their product.
    """
    b, h, w = cube.shape
    x = minmax(cube).transpose(1, 2, 0)                    # (H, W, B)
    s = block_size
    mu_f, p_f = _stats(x.reshape(-1, b), ridge)
    d = {k: np.zeros((h, w)) for k in ("block", "sur", "full")}
    for r0 in range(0, h, s):
        for c0 in range(0, w, s):
            own = x[r0:r0 + s, c0:c0 + s].reshape(-1, b)
            mu_b, p_b = _stats(own, ridge)
            sur = [x[r0 + dr * s:r0 + dr * s + s, c0 + dc * s:c0 + dc * s + s].reshape(-1, b)
                   for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                   if (dr, dc) != (0, 0) and 0 <= r0 + dr * s < h and 0 <= c0 + dc * s < w]
            mu_s, p_s = _stats(np.concatenate(sur), ridge) if sur else (None, None)
            for i in range(r0, min(r0 + s, h)):
                for j in range(c0, min(c0 + s, w)):
                    v = x[i, j]
                    d["block"][i, j] = np.sqrt((v - mu_b) @ p_b @ (v - mu_b))
                    d["sur"][i, j] = np.sqrt((v - mu_s) @ p_s @ (v - mu_s)) if sur else 0.0
                    d["full"][i, j] = np.sqrt((v - mu_f) @ p_f @ (v - mu_f))
    return minmax(d["block"]) * minmax(d["sur"]) * minmax(d["full"])


def lrx_per_pixel(cube: np.ndarray, inner: int = DEFAULT_INNER, outer: int = DEFAULT_OUTER,
                  ridge: float = RIDGE, rows: int | None = None) -> np.ndarray:
    """LRX, method sec. 4, one pixel at a time: a deliberately slow oracle for :func:`detectors.lrx.lrx`
    (about 6 ms a pixel at 200 bands and windows 5 / 21). Only the first ``rows`` rows if given (the rest NaN).

    Min-max the cube; mirror the borders (``numpy.pad(mode="reflect")``); for each pixel, gather the outer
    window minus the inner one, take their mean and unbiased covariance (+ ridge I), invert, and score
    ``(x - mu)^T C^-1 (x - mu)``.
    """
    b, h, w = cube.shape
    x = minmax(cube).transpose(1, 2, 0)
    r, ri = outer // 2, inner // 2
    padded = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")
    background = np.ones((outer, outer), bool)
    background[r - ri:r + ri + 1, r - ri:r + ri + 1] = False
    scores = np.full((h, w), np.nan)
    for i in range(h if rows is None else rows):
        for j in range(w):
            mu, p = _stats(padded[i:i + outer, j:j + outer][background], ridge)   # (n, B) background pixels
            d = x[i, j] - mu
            scores[i, j] = d @ p @ d
    return scores


def crd_per_pixel(cube: np.ndarray, inner: int = 3, outer: int = 11, lam: float = 1e-6,
                  rows: int | None = None, border: str = "periodic", sum_to_one: bool = True) -> np.ndarray:
    """CRD (Li & Du, IEEE TGRS 53(3), 2015), one pixel at a time: a deliberately slow oracle for
    :func:`detectors.crd.crd`. Only the first ``rows`` rows if given (the rest NaN).

    Min-max the cube; the background of pixel (i, j) is the outer window minus the inner one, beyond the
    scene border ``periodic`` (Li and Du's MATLAB code takes its windows from a 3 x 3 tiling of the image:
    rows ``(i + di) % H``, columns ``(j + dj) % W``) or ``mirror`` (Hou's func_CRD.m: a 3 x 3 tiling of
    flipped copies, ``numpy.pad(mode="symmetric")``, row -1 is row 0). With ``X`` its ``(B, N)`` pixels, ``y``
    the pixel, ``Gamma = diag(||x_i - y||)``, and with ``sum_to_one`` ``X_a = [X; 1]``, ``y_a = [y; 1]`` (else
    ``X_a = X``, ``y_a = y``): ``alpha = M^-1 X_a^T y_a`` with ``M = X_a^T X_a + lam Gamma^T Gamma``, and score
    ``||y - X alpha||``. With periodic borders the ``N x N`` system is solved (Li and Du's ``inv``); with
    mirrored ones ``alpha = pinv(M) X_a^T y_a`` as func_CRD.m (a pixel's dictionary can hold the same spectrum
    twice, and near the border a copy of the pixel itself (1 and 2 px from it with windows 3 / 11), so ``M``
    can be singular), computed
    as the minimum-norm least-squares solution (``lstsq``, singular values below MATLAB's ``pinv`` tolerance,
    ``N eps`` times the largest, dropped): the same vector, but forming ``pinv(M)`` first and multiplying, at
    ``M``'s condition of about 1e13 at lam 1e-6, is off by up to 21x on some pixels of abu-airport-1 (50
    bands; ``lstsq`` equals a 40-digit solution to 1e-8 at the pixels checked).
    """
    b, h, w = cube.shape
    x = minmax(cube).transpose(1, 2, 0)                    # (H, W, B)
    r, ri = outer // 2, inner // 2
    padded = np.pad(x, ((r, r), (r, r), (0, 0)), mode="wrap" if border == "periodic" else "symmetric")
    offsets = [(di, dj) for di in range(-r, r + 1) for dj in range(-r, r + 1) if max(abs(di), abs(dj)) > ri]
    scores = np.full((h, w), np.nan)
    for i in range(h if rows is None else rows):
        for j in range(w):
            y = x[i, j]
            bg = np.stack([padded[r + i + di, r + j + dj] for di, dj in offsets], axis=1)   # (B, N)
            gamma = np.diag(np.linalg.norm(bg - y[:, None], axis=0))
            xa, ya = (np.vstack([bg, np.ones((1, len(offsets)))]), np.append(y, 1.0)) if sum_to_one else (bg, y)
            m = xa.T @ xa + lam * gamma.T @ gamma
            if border == "periodic":
                alpha = np.linalg.solve(m, xa.T @ ya)
            else:
                alpha = np.linalg.lstsq(m, xa.T @ ya, rcond=None)[0]      # pinv(m) @ xa.T @ ya, accurately
            scores[i, j] = np.linalg.norm(y - bg @ alpha)
    return scores
