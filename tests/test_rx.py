"""GRX: golden tensors, exact properties, and agreement with a per-pixel reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import RELEASE_KEYS

from detectors.base import CubeReader
from detectors.reference import grx_per_pixel
from detectors.rx import grx, minmax


@pytest.mark.parametrize("key", sorted(set(RELEASE_KEYS.values())))
@pytest.mark.parametrize("which", ["input", "enhanced"])
def test_grx_matches_golden(key, which, golden):
    ref = golden[f"{key}/rx_{which}"]
    ours = grx(torch.from_numpy(golden[f"{key}/{which}"]), layout="bhw").numpy()
    assert ours.shape == ref.shape and ours.dtype == np.float64
    # the crop is small and ill-conditioned (up to 200 bands, 1024 pixels): agreement to 1e-3 of the peak
    assert np.abs(ours - ref).max() <= 1e-3 * ref.max()


def test_grx_equals_per_pixel_reference():
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(7, 9, 11))
    np.testing.assert_allclose(grx(torch.from_numpy(cube), layout="bhw").numpy(), grx_per_pixel(cube), rtol=1e-9,
                               atol=1e-9)


def test_sum_of_scores_is_rank_times_n_minus_1():
    """sum_i (x_i-mu)^T S+ (x_i-mu) = (N-1) trace(S+ S) = (N-1) rank(S), exactly."""
    rng = np.random.default_rng(1)
    full = torch.from_numpy(rng.normal(size=(6, 10, 10)))
    assert grx(full, layout="bhw").sum().item() == pytest.approx(99 * 6, rel=1e-9)
    # rank-deficient: band 5 = band 0 + band 1 (pinv, not inv, makes this work)
    cube = rng.normal(size=(6, 10, 10))
    cube[5] = cube[0] + cube[1]
    assert grx(torch.from_numpy(cube), layout="bhw").sum().item() == pytest.approx(99 * 5, rel=1e-6)


def test_mean_pixel_scores_zero():
    rng = np.random.default_rng(2)
    cube = rng.normal(size=(4, 5, 5))
    # make pixel (0, 0) the mean of the others, so it is also the mean of all 25
    cube[:, 0, 0] = cube.reshape(4, -1)[:, 1:].mean(axis=1)
    assert grx(torch.from_numpy(cube), layout="bhw")[0, 0].item() == pytest.approx(0.0, abs=1e-12)


def test_grx_is_invariant_to_affine_scaling_and_batched():
    rng = np.random.default_rng(3)
    cube = torch.from_numpy(rng.normal(size=(2, 5, 8, 8)))
    single = torch.stack([grx(c, layout="bhw") for c in cube])
    torch.testing.assert_close(grx(cube, layout="bhw"), single)
    torch.testing.assert_close(grx(cube[0] * 37.5 - 4.0, layout="bhw"), single[0])


def test_grx_float32_input_is_scored_in_float64():
    x = torch.rand(5, 6, 6, dtype=torch.float32)
    assert grx(x, layout="bhw").dtype == torch.float64


def test_minmax_refuses_a_constant_cube():
    with pytest.raises(ValueError, match="constant"):
        minmax(torch.ones(1, 3, 4, 4), dims=(1, 2, 3))


def test_auc_undefined_for_one_class_masks():
    from evaluation.metrics import auc_undefined_reason, roc_auc

    scores = np.arange(6.0)
    assert roc_auc(scores, np.zeros(6, bool)) is None and roc_auc(scores, np.ones(6, bool)) is None
    assert auc_undefined_reason(np.zeros(6, bool)) == "mask has no anomaly pixel"
    assert auc_undefined_reason(np.ones(6, bool)) == "mask has no background pixel"
    assert roc_auc(scores, np.array([0, 0, 0, 1, 0, 1], bool)) == pytest.approx(7 / 8)


def whitened_cube(bands: int, side: int, cond: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A ``(B, side, side)`` float64 cube whose covariance has condition number ``cond``, and its exact GRX
    scores: pixels ``Y = X A`` with ``X`` of identity sample covariance (centred, orthonormal columns times
    sqrt(N - 1)), whose scores are ``(N - 1) ||q_i||^2`` whatever ``A`` (RX is affine invariant)."""
    rng = np.random.default_rng(seed)
    n = side * side
    x = rng.normal(size=(n, bands))
    q, _ = np.linalg.qr(x - x.mean(axis=0))
    exact = (n - 1) * (q * q).sum(axis=1)
    u, _ = np.linalg.qr(rng.normal(size=(bands, bands)))
    a = (u * np.geomspace(1.0, cond ** -0.5, bands)) @ u.T  # singular values from 1 down to cond^-1/2
    y = q * (n - 1) ** 0.5 @ a + rng.random(bands)
    return y.T.reshape(bands, side, side).copy(), exact.reshape(side, side)


@pytest.mark.parametrize("cond", [1e2, 1e6, 3e10, 1e13])
def test_grx_accuracy_against_the_condition_number(cond):
    """Float64's own limit: the scatter's smallest eigenvalue carries an error of about ``eps * cond`` of the
    largest, whatever the method. The scores stay within a tenth of that of the peak (measured: 0.02-0.03;
    the pseudo-inverse from eigh, the method before, up to 0.03): 7e-7 at 3e10, the worst real scene
    (docs/results.md), far inside the golden tests' 1e-3."""
    cube, exact = whitened_cube(30, 40, cond)
    ours = grx(torch.from_numpy(cube), layout="bhw").numpy()
    assert np.abs(ours - exact).max() <= max(1e-13, 0.1 * np.finfo(np.float64).eps * cond) * exact.max()


def test_whitening_uses_cholesky_at_full_rank_and_eigenvectors_below_the_cut_off():
    from detectors.rx_cpu import Whitening

    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 6))
    full = Whitening(np.cov(x, rowvar=False), 1.0)
    assert full.upper is not None and full.vectors is None
    cov = np.diag([5.0, 4.0, 3.0, 0.0, 2.0, 1.0])  # rank 5, exactly: pinv drops an eigenvalue
    cov[0, 1] = cov[1, 0] = 1.0
    singular = Whitening(cov, 2.0)
    assert singular.upper is None and singular.vectors.shape == (6, 5)
    z = rng.normal(size=(50, 6))
    np.testing.assert_allclose(singular.scores(z.copy()), np.einsum("ij,jk,ik->i", z, np.linalg.pinv(cov) / 4, z),
                               rtol=1e-10)
    np.testing.assert_allclose(full.scores(z.copy()), np.einsum("ij,jk,ik->i", z, np.linalg.inv(np.cov(x, rowvar=False)), z),
                               rtol=1e-10)


def test_grx_same_scores_for_pixel_major_and_band_major_reads_and_any_thread_count():
    """test.py's streamed path reads row-major pixels, grx() band-major blocks; worker threads each keep their
    own statistics: the scores agree to rounding whatever the layout and the number of threads."""
    from detectors.rx import CPU_CHUNK_BYTES, grx_scores
    from utils.device import torch_threads

    rng = np.random.default_rng(5)
    b, h, w = 12, 150, 100
    cube = torch.from_numpy(rng.normal(size=(b, h, w)))
    hwb = cube.permute(1, 2, 0).contiguous().reshape(-1, b)
    import detectors.rx as rx

    before = rx.CPU_CHUNK_BYTES
    rx.CPU_CHUNK_BYTES = 8 * b * 1000  # 1000-pixel chunks: 15 of them
    try:
        band_major = grx(cube, layout="bhw").reshape(-1)
        pixel_major = grx_scores(CubeReader(hwb.reshape(h, w, b)))  # pixel-major memory: rows of pixels
        with torch_threads(1):
            one = grx(cube, layout="bhw").reshape(-1)
    finally:
        rx.CPU_CHUNK_BYTES = before
    assert CPU_CHUNK_BYTES == before
    ref = torch.from_numpy(grx_per_pixel(cube.numpy()).reshape(-1))
    for got in (band_major, pixel_major, one):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_statistics_merge_equals_one_pass():
    from detectors.rx import RXStatistics

    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.normal(size=(500, 7)) * 3 + 1)
    whole, a, b = RXStatistics(7), RXStatistics(7), RXStatistics(7)
    whole.add(x.clone())
    a.add(x[:123].clone())
    b.add(x[123:].clone())
    a.merge(b)
    assert a.n == 500 and a.span() == pytest.approx(float(x.max() - x.min()))
    torch.testing.assert_close(a.mean, x.mean(dim=0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.scatter, whole.scatter, rtol=1e-12, atol=1e-12)
    centred = x - x.mean(dim=0)
    torch.testing.assert_close(whole.scatter, centred.T @ centred, rtol=1e-12, atol=1e-12)
