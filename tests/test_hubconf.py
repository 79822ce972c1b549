"""hubconf.py through torch.hub itself (source="local"): the released FEN against the golden tensors, the
GRX entry, and no network or trust prompt on the way."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import RELEASE_KEYS, REPO, load_script
from test_fen import assert_matches_golden_cube  # the FEN's golden bound, with its reason

from detectors.rx import grx
from weights.release import WeightsError

pytestmark = pytest.mark.usefixtures("no_sockets")  # torch.hub has URL code of its own


def test_entries_and_dependencies():
    """torch.hub.list has no source="local"; the same checks on the module: public callables, installed deps."""
    hubconf = load_script("hubconf")
    entries = sorted(k for k, v in vars(hubconf).items() if callable(v) and not k.startswith("_")
                     and getattr(v, "__module__", None) == hubconf.__name__)
    assert entries == ["fen", "grx"]
    assert "torch" in hubconf.dependencies
    assert all(importlib.util.find_spec(name) is not None for name in hubconf.dependencies)


def test_fen_matches_golden(release_dir, golden):
    # the default trust_repo ("check") would prompt for a GitHub repo; a prompt under pytest fails on stdin
    fen = torch.hub.load(str(REPO), "fen", source="local", weights="had100", bands=50, weights_dir=release_dir)
    assert not fen.training and fen.bands == 50
    key = RELEASE_KEYS[("had100", 50)]
    enhanced = fen.enhance(torch.from_numpy(golden[f"{key}/input"]), layout="bhw").numpy()
    assert_matches_golden_cube(enhanced, golden[f"{key}/enhanced"])


def test_fen_reads_ferd_weights_dir(release_dir, golden, monkeypatch):
    monkeypatch.setenv("FERD_WEIGHTS_DIR", str(release_dir))
    fen = torch.hub.load(str(REPO), "fen", source="local", weights="aviris", bands=200)
    key = RELEASE_KEYS[("aviris", 200)]
    enhanced = fen.enhance(torch.from_numpy(golden[f"{key}/input"]), layout="bhw").numpy()
    assert_matches_golden_cube(enhanced, golden[f"{key}/enhanced"])


def test_fen_refuses_a_band_count_without_weights(release_dir):
    with pytest.raises(WeightsError, match="released for 200 bands, not bands=50"):
        torch.hub.load(str(REPO), "fen", source="local", weights="aviris", bands=50, weights_dir=release_dir)


def test_grx_entry_is_the_detector(golden):
    detector = torch.hub.load(str(REPO), "grx", source="local")
    assert detector is grx
    key = RELEASE_KEYS[("had100", 50)]
    ref = golden[f"{key}/rx_enhanced"]
    ours = detector(torch.from_numpy(golden[f"{key}/enhanced"]), layout="bhw").numpy()
    assert np.abs(ours - ref).max() <= 1e-3 * ref.max()  # test_rx.py's tolerance
