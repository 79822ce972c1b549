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


@pytest.mark.parametrize("name,bands", list(RELEASE_KEYS))
def test_enhanced_matches_golden(name, bands, release_dir, golden):
    key = RELEASE_KEYS[(name, bands)]
    fen = load_fen(name, bands, release_dir)
    x = torch.from_numpy(golden[f"{key}/input"])
    enhanced = fen.enhance(x, layout="bhw").numpy()  # quirk 7 on: unit Frobenius norm, as the authors' tensor
    assert enhanced.shape == (bands, 32, 32)
    assert np.abs(enhanced - golden[f"{key}/enhanced"]).max() <= 1e-5


def test_quirk8_unit_norm_is_a_pure_scale(release_dir, golden):
    """Quirk 7: the authors' enhanced cube is (x + FEN(x)) / ||x + FEN(x)||_F; GRX does not see the scale."""
    fen = load_fen("had100", 50, release_dir)
    x = torch.from_numpy(golden["had100-50/input"])
    raw, normed = fen.enhance(x, normalize=False, layout="bhw"), fen.enhance(x, layout="bhw")
    assert normed.norm().item() == pytest.approx(1.0, abs=1e-6)
    ratio = normed / raw
    assert ratio.std().item() < 1e-6 * ratio.mean().item()
    plain = grx(raw, layout="bhw")
    np.testing.assert_allclose(grx(normed, layout="bhw"), plain, rtol=1e-3, atol=1e-3 * plain.max().item())


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
