"""The FEN against the authors' golden tensors, and its structural properties."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import RELEASE_KEYS
from torchvision.models.resnet import Bottleneck, ResNet

from detectors.rx import grx
from model.fen import FEN, unit_norm
from model.teacher import wide_layer1
from weights.release import load_fen


#: float32's machine epsilon: the FEN runs in float32, as the authors' did.
EPS32 = float(np.finfo(np.float32).eps)
#: How far the enhanced cube may be from the authors' tensor, in units of ``EPS32 * max|golden|``. An error bound:
#: each output value is a float32 sum of 9 x 256 = 2304 products (the FPL's 3 x 3 convolution over layer1's
#: 256 channels), each input already rounded; a reordered sum (another CPU's kernels, another blocking) moves by
#: about sqrt(2304) = 48 eps of the magnitudes it sums, and the unit norm (quirk 7) divides all of them alike.
#: Measured on an AMD EPYC (2026-12-05): 4.3 / 3.5 / 4.9 / 5.2 for had100-50 / -100 / -200 and aviris-200, i.e.
#: 4e-9 to 1.5e-8 absolute on values of at most 0.01-0.03. The old bound, 1e-5 absolute, was 300 to 1000 times
#: the largest value's float32 spacing and let a wrong cube through; this one is about 2e-7 absolute.
ENHANCED_ULPS = 64


def assert_matches_golden_cube(enhanced: np.ndarray, golden_cube: np.ndarray) -> None:
    """``enhanced`` equals the authors' ``golden_cube`` to ``ENHANCED_ULPS * EPS32 * max|golden_cube|``."""
    assert enhanced.shape == golden_cube.shape and enhanced.dtype == golden_cube.dtype == np.float32
    bound = ENHANCED_ULPS * EPS32 * float(np.abs(golden_cube).max())
    worst = float(np.abs(enhanced - golden_cube).max())
    assert worst <= bound, f"enhanced cube {worst:.3g} from the golden one, more than {bound:.3g}"


@pytest.mark.parametrize("name,bands", list(RELEASE_KEYS))
def test_enhanced_matches_golden(name, bands, release_dir, golden):
    key = RELEASE_KEYS[(name, bands)]
    fen = load_fen(name, bands, release_dir)
    x = torch.from_numpy(golden[f"{key}/input"])
    enhanced = fen.enhance(x, layout="bhw").numpy()  # quirk 7 on: unit Frobenius norm, as the authors' tensor
    assert enhanced.shape == (bands, 32, 32)
    assert_matches_golden_cube(enhanced, golden[f"{key}/enhanced"])


def test_quirk7_unit_norm_is_a_pure_scale(release_dir, golden):
    """Quirk 7: the authors' enhanced cube is (x + FEN(x)) / ||x + FEN(x)||_F; GRX does not see the scale.

    Each value of the normed cube is its raw value times one float32 reciprocal: at most one rounding apart
    (eps / 2 relative; measured 5.9e-8 = eps / 2 on had100-50). The norms of the two, both summed in float32
    in the same order, agree to a few eps (measured 6e-8). GRX of the two is another matter: the inverse
    covariance amplifies those roundings by its condition number (5.6e7 here), so no a-priori bound falls
    below 1; measured 4.6e-5 relative at worst (1.4e-5 of the peak). rtol 2e-4 leaves room for other CPUs'
    kernels, while a GRX that saw the scale (1 / 1688 here; a ridge or a cutoff in absolute units) would be
    off by order 1.
    """
    fen = load_fen("had100", 50, release_dir)
    x = torch.from_numpy(golden["had100-50/input"])
    raw, normed = fen.enhance(x, normalize=False, layout="bhw"), fen.enhance(x, layout="bhw")
    assert normed.norm().item() == pytest.approx(1.0, abs=4 * EPS32)
    ratio = normed.double() / raw.double()  # float64: the ratio itself adds no rounding
    assert ((ratio - ratio.mean()).abs().max() / ratio.mean()).item() <= EPS32
    assert ratio.mean().item() == pytest.approx(1 / raw.double().norm().item(), rel=64 * EPS32)
    np.testing.assert_allclose(grx(normed, layout="bhw"), grx(raw, layout="bhw"), rtol=2e-4, atol=0)


def test_quirk5_fen_output_is_nonnegative(release_dir, golden):
    fen = load_fen("had100", 100, release_dir)
    out = fen(torch.from_numpy(golden["had100-100/input"])[None])
    assert out.min().item() >= 0.0 and out.max().item() > 0.0


def test_layer1_is_torchvision_wide_resnet101_2_layer1():
    """Same module tree and parameter shapes as torchvision's own wide_resnet101_2 layer1."""
    reference = ResNet(Bottleneck, [3, 4, 23, 3], width_per_group=128).layer1
    ours = wide_layer1()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert [type(m) for m in ours.modules()] == [type(m) for m in reference.modules()]


@pytest.mark.parametrize("h,w", [(64, 64), (37, 53), (9, 100)])
def test_any_size_and_batch_equals_single(h, w):
    torch.manual_seed(0)
    fen = FEN(12).eval()
    x = torch.rand(3, 12, h, w) * 0.2 - 0.1
    batch = fen.enhance(x, layout="bhw")
    assert batch.shape == (3, 12, h, w)
    for i in range(3):
        torch.testing.assert_close(fen.enhance(x[i], layout="bhw"), batch[i], rtol=1e-5, atol=1e-7)


def test_layer1_stays_frozen_in_train_mode():
    fen = FEN(8).train()
    assert not fen.layer1.training and all(not p.requires_grad for p in fen.layer1.parameters())
    assert fen.cwl.training and fen.fpl.training


def test_config_rebuilds_the_module():
    fen = FEN(150)
    assert fen.config == {"bands": 150, "hidden": 256}
    assert FEN(**fen.config).state_dict().keys() == fen.state_dict().keys()
    assert FEN(100).config["hidden"] == 128  # method sec. 1: h = 256 if B > 128 else 128


def test_unit_norm_per_sample():
    x = torch.randn(4, 3, 5, 5)
    n = unit_norm(x).flatten(1).norm(dim=1)
    torch.testing.assert_close(n, torch.ones(4))
