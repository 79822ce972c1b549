"""FENs this project trained and keeps in weights/shipped/ (weights.release.SHIPPED): verified, then loaded."""
from __future__ import annotations

import pytest
import torch

from model.fen import FEN
from weights import release
from weights.files import sha256
from weights.release import WeightsError, load_fen, save_fen


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    torch.manual_seed(3)
    fen = FEN(8)
    save_fen(fen, tmp_path / "mine-8bands.pt", zcl={"weight": torch.zeros(1, 8, 1, 1), "bias": torch.zeros(1)})
    monkeypatch.setattr(release, "SHIPPED_DIR", tmp_path)
    monkeypatch.setitem(release.SHIPPED, "mine", {8: sha256(tmp_path / "mine-8bands.pt")})
    return fen, tmp_path / "mine-8bands.pt"


def test_a_shipped_fen_loads_by_name(shipped):
    fen, _ = shipped
    got = load_fen("mine", 8)
    for k, v in fen.state_dict().items():
        torch.testing.assert_close(got.state_dict()[k], v, rtol=0, atol=0)


def test_a_shipped_fen_is_verified_and_its_bands_checked(shipped):
    _, path = shipped
    with pytest.raises(WeightsError, match="trained for 8 bands, not 50"):
        load_fen("mine", 50)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit of the file changed
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_fen("mine", 8)
    path.unlink()
    with pytest.raises(WeightsError, match="not found"):
        load_fen("mine", 8)
