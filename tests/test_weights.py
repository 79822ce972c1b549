"""The release registry (checksums, cache, download errors) and this project's checkpoint format."""
from __future__ import annotations

import io
import shutil
import urllib.error
import urllib.request

import pytest
import torch

from model.fen import FEN
from utils import weights as W
from utils.weights import WeightsError, load_fen, save_fen


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
    with pytest.raises(WeightsError, match="released for 50, 100, 200 bands, not --input_channel 60"):
        load_fen("had100", 60, release_dir)
    with pytest.raises(WeightsError, match="released for 200 bands, not --input_channel 50"):
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

    def offline(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
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
    torch.testing.assert_close(loaded.enhance(x), fen.eval().enhance(x))
    with pytest.raises(WeightsError, match="take 20 bands but --input_channel is 50"):
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
