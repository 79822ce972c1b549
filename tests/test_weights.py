"""The release registry (checksums, cache, download errors) and this project's checkpoint format."""
from __future__ import annotations

import io
import shutil
import urllib.error
import urllib.request

import pytest
import torch
from conftest import raiser

from model.fen import FEN
from weights import release as W
from weights.__main__ import main as weights_cli
from weights.release import WeightsError, load_fen, save_fen


def test_registry_matches_shared_checksums(release_dir):
    listed = {}
    for line in (release_dir / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split()
        listed[rel] = digest
    ours = {f"{r.local_name}/{f}": d for per in W.RELEASES.values() for r in per.values() for f, d in r.sha256.items()}
    assert ours == listed


def test_release_urls_are_pinned():
    r = W.get_release("aviris", 200)
    assert r.url("pc.pt") == ("https://raw.githubusercontent.com/cristianoKaKa/FERD/"
                              "0e021faf9646a4c95ff975c300d4af9ecd3488b7/Supp_Exp/saved_models/200bands/pc.pt")


@pytest.mark.parametrize("name,bands", [("had100", 50), ("had100", 100), ("had100", 200), ("aviris", 200)])
def test_load_release_from_env_dir(name, bands, release_dir, monkeypatch):
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(release_dir))
    fen = load_fen(name, bands)
    assert fen.bands == bands and not fen.training
    assert fen.config["hidden"] == (256 if bands > 128 else 128)


def test_band_mismatch_is_refused(release_dir):
    with pytest.raises(WeightsError, match="released for 50, 100, 200 bands, not bands=60"):
        load_fen("had100", 60, release_dir)
    with pytest.raises(WeightsError, match="released for 200 bands, not bands=50"):
        load_fen("aviris", 50, release_dir)
    with pytest.raises(WeightsError, match="unknown weights"):
        W.get_release("imagenet", 50)


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_into_cache_verifies_checksum(release_dir, tmp_path, monkeypatch):
    """A good download lands in the cache; later loads read the cache without the network."""
    monkeypatch.delenv(W.ENV_WEIGHTS_DIR, raising=False)
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        rel = url.split("saved_models/")[1]  # e.g. "50bands/pc.pt"
        return _FakeResponse((release_dir / f"had100-{rel}").read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    paths = W.release_files(W.get_release("had100", 50), cache_dir=tmp_path)
    assert len(urls) == 3 and all(p.parent == tmp_path / "had100-50bands" for p in paths.values())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    assert W.release_files(W.get_release("had100", 50), cache_dir=tmp_path) == paths


def test_checksum_mismatch_deletes_the_download(tmp_path, monkeypatch):
    monkeypatch.delenv(W.ENV_WEIGHTS_DIR, raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _FakeResponse(b"corrupt" * 100))
    with pytest.raises(WeightsError, match="checksum mismatch .* deleted and not loaded"):
        W.release_files(W.get_release("had100", 50), cache_dir=tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no partial or temp file left


def test_no_network_and_no_copy_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv(W.ENV_WEIGHTS_DIR, raising=False)

    monkeypatch.setattr(urllib.request, "urlopen",
                        raiser(urllib.error.URLError, "Temporary failure in name resolution"))
    with pytest.raises(WeightsError, match=r"cannot download .*convh.pt .* set FERD_WEIGHTS_DIR=.* or place the file at"):
        W.release_files(W.get_release("had100", 100), cache_dir=tmp_path)


def test_corrupt_local_copy_is_refused(release_dir, tmp_path):
    copy = tmp_path / "ferd-release"
    shutil.copytree(release_dir / "had100-50bands", copy / "had100-50bands")
    (copy / "had100-50bands" / "pc.pt").chmod(0o644)
    with open(copy / "had100-50bands" / "pc.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(WeightsError, match="pc.pt: checksum mismatch .* refusing to load"):
        load_fen("had100", 50, copy)
    with pytest.raises(WeightsError, match="had100-100bands/convh.pt: not found"):
        load_fen("had100", 100, copy)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    fen = FEN(20)
    path = tmp_path / "fen_20bands.pt"
    save_fen(fen, path, select="last", epoch=3)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == W.CHECKPOINT_FORMAT and ckpt["config"] == {"bands": 20, "hidden": 128}
    assert ckpt["meta"] == {"select": "last", "epoch": 3}
    loaded = load_fen(str(path), 20)
    x = torch.rand(20, 9, 9)
    torch.testing.assert_close(loaded.enhance(x, layout="bhw"), fen.eval().enhance(x, layout="bhw"))
    with pytest.raises(WeightsError, match="take 20 bands, not bands=50"):
        load_fen(str(path), 50)


def test_bad_checkpoint_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="junk.pt: not a readable torch checkpoint"):
        load_fen(str(tmp_path / "junk.pt"), 50)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a FEN checkpoint of this project"):
        load_fen(str(tmp_path / "other.pt"), 50)
    with pytest.raises(WeightsError, match="neither a release name .* nor an existing checkpoint"):
        load_fen(str(tmp_path / "missing.pt"), 50)


# ------------------------------------------------------------------ eval mode, ZCL, the authors' format both ways

def no_module_training(fen: torch.nn.Module) -> bool:
    return not any(m.training for m in fen.modules())


def test_every_public_loader_returns_an_inference_ready_fen(release_dir, tmp_path, golden):
    """A FEN's layer1 is in eval mode from construction, and each loader returns the whole FEN in eval mode:
    in training mode layer1's BN would use batch statistics and move the output by up to 10."""
    assert not FEN(50).layer1.training
    paths = W.release_files(W.get_release("had100", 50), release_dir)
    fen, zcl = W.read_authors_files(paths)
    save_fen(fen, tmp_path / "f.pt", zcl=zcl)
    W.export_authors(fen, zcl, tmp_path / "authors")
    loaded = {"fen_from_release": W.fen_from_release(paths), "read_authors_files": fen,
              "fen_from_checkpoint": W.fen_from_checkpoint(tmp_path / "f.pt"),
              "read_checkpoint": W.read_checkpoint(tmp_path / "f.pt")[0],
              "load_fen(release)": load_fen("had100", 50, release_dir),
              "load_fen(checkpoint)": load_fen(str(tmp_path / "f.pt"), 50),
              "load_fen(authors folder)": load_fen(str(tmp_path / "authors"), 50)}
    x = torch.from_numpy(golden["had100-50/input"])
    for name, f in loaded.items():
        assert no_module_training(f), name
        golden_enhanced = torch.from_numpy(golden["had100-50/enhanced"])
        assert torch.allclose(f.enhance(x, layout="bhw"), golden_enhanced, atol=1e-5), name


@pytest.mark.parametrize("name,bands", [("had100", 50), ("had100", 200), ("aviris", 200)])
def test_authors_files_round_trip_through_a_checkpoint(name, bands, release_dir, tmp_path):
    """Released files -> FEN + ZCL -> train.py-format checkpoint -> `python -m weights export` -> the
    same three files: the same keys in the same order, the same tensors (BN counters included)."""
    paths = W.release_files(W.get_release(name, bands), release_dir)
    fen, zcl = W.read_authors_files(paths)
    save_fen(fen, tmp_path / "fen.pt", zcl=zcl, epoch=1)
    assert weights_cli(["export", str(tmp_path / "fen.pt"), str(tmp_path / "out")]) == 0
    for f in W.RELEASE_FILES:
        ref = torch.load(paths[f], map_location="cpu", weights_only=True)
        got = torch.load(tmp_path / "out" / f, map_location="cpu", weights_only=True)
        assert list(got) == ["state_dict"] and list(got["state_dict"]) == list(ref["state_dict"]), f
        for k, v in ref["state_dict"].items():
            assert got["state_dict"][k].dtype == v.dtype and torch.equal(got["state_dict"][k], v), (f, k)


def test_export_refuses_a_checkpoint_without_zcl_and_a_folder_missing_a_file(tmp_path, capsys):
    save_fen(FEN(8), tmp_path / "old.pt")  # as written before the ZCL was kept
    assert weights_cli(["export", str(tmp_path / "old.pt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m weights: error: ") and "written before checkpoints kept the ZCL" in err
    assert "\n" not in err and not (tmp_path / "out").exists()
    assert weights_cli(["export", str(tmp_path / "nope.pt"), str(tmp_path / "out")]) == 2
    assert "nope.pt: no such file" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    torch.save({"state_dict": {}}, tmp_path / "half" / "convh.pt")
    with pytest.raises(WeightsError, match="missing enc.pt, pc.pt"):
        load_fen(str(tmp_path / "half"), 8)
