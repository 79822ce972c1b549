"""GRX: golden tensors, exact properties, and agreement with a per-pixel reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import RELEASE_KEYS

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
