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


#: The shipped abu10 FEN on the four airports at 50 bands (docs/model_card_abu10.md; benchmarks/studies/abu_transfer.py
#: --recipe long, then benchmarks/studies/ship_fen.py): FEN+GRX AUC to 4 decimals.
ABU10_AIRPORTS = {"abu-airport-1": 0.9445, "abu-airport-2": 0.9776, "abu-airport-3": 0.9642, "abu-airport-4": 0.9738}


def test_abu10_through_test_py_gives_its_model_card_table(test_cli, abu_dir, tmp_path, capsys):
    scenes = [str(abu_dir / f"{n}.mat") for n in ABU10_AIRPORTS]
    assert test_cli.main(["--scenes", *scenes, "--input_channel", "50", "--weights", "abu10", "--device", "cpu",
                          "--no-progress", "--save_dir", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 0
    import json

    got = {s["name"]: s["auc"] for s in json.loads((tmp_path / "r.json").read_text())["scenes"]}
    assert {n: round(a["FEN+GRX"], 4) for n, a in got.items()} == ABU10_AIRPORTS
    assert "mean (4 scenes)   0.9130       0.9650" in capsys.readouterr().out


def test_abu10_layer1_is_the_authors_enc_pt_in_all_four_releases(release_dir):
    """The model card's terms (issue 33): abu10's layer1 is the frozen ImageNet layer1 the authors ship, the same
    60 tensors in each of their four releases; the rest of the file is this project's."""
    layer1 = load_fen("abu10", 50).layer1.state_dict()
    assert len(layer1) == 60
    for by_bands in release.RELEASES.values():
        for rel in by_bands.values():
            enc = torch.load(release_dir / rel.local_name / "enc.pt", map_location="cpu", weights_only=True)
            enc = {k.removeprefix("layer1."): v for k, v in enc["state_dict"].items()}
            assert enc.keys() == layer1.keys() and all(torch.equal(enc[k], v) for k, v in layer1.items()), rel.local_name
