"""What a user with only the repository downloads (issue 33): the ABU scenes (data/download.py) and the
released weights (``python -m weights fetch``), SHA-256 checked and cached; driven from local ``file://``
mirrors, never the network. Then README's Python example runs on the downloaded folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

from data import download as dl
from utils.fetch import sha256
from weights import release

REAL_URLOPEN = urllib.request.urlopen


@pytest.fixture
def local_only(monkeypatch):
    """urlopen for ``file://`` URLs only (conftest forbids it altogether; anything else still fails)."""
    def file_only(url, timeout=None):
        assert url.startswith("file://"), f"a test tried to use the network: {url}"
        return REAL_URLOPEN(url, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", file_only)


@pytest.fixture
def tiny_mirror(tmp_path, monkeypatch) -> Path:
    """A mirror of three small stand-in scenes, registered with their SHA-256 in place of the 14."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = {}
    for i, name in enumerate(["a.mat", "b.mat", "c.mat"]):
        (mirror / name).write_bytes(bytes([i]) * (1000 + i))
        files[name] = sha256(mirror / name)
    monkeypatch.setattr(dl, "ABU_FILES", files)
    return mirror


def test_fetches_verifies_and_caches(tiny_mirror, tmp_path, local_only, capsys):
    dest = tmp_path / "data"
    assert dl.main(["abu", "--dest", str(dest), "--base_url", tiny_mirror.as_uri()]) == 0
    assert "3 ABU scenes verified in " in capsys.readouterr().out
    assert sorted(p.name for p in (dest / "data" / "abu").iterdir()) == ["a.mat", "b.mat", "c.mat"]
    assert (dest / "data" / "abu" / "b.mat").read_bytes() == bytes([1]) * 1001
    assert dl.main(["abu", "--dest", str(dest), "--base_url", "file:///nowhere"]) == 0   # all cached: no fetch
    assert "(0 downloaded, 3 already there)" in capsys.readouterr().out
    (dest / "data" / "abu" / "c.mat").write_bytes(b"damaged")   # fetched again; the other two come from the cache
    assert dl.fetch_abu(dest, tiny_mirror.as_uri())[1] == 1
    assert sha256(dest / "data" / "abu" / "c.mat") == dl.ABU_FILES["c.mat"]


def test_the_folder_is_the_data_dir_variable_by_default(tiny_mirror, tmp_path, local_only, monkeypatch):
    monkeypatch.setenv(dl.ENV_DATA_DIR, str(tmp_path / "mine"))
    paths, fetched = dl.fetch_abu(base_url=tiny_mirror.as_uri())
    assert fetched == 3 and paths[0] == tmp_path / "mine" / "data" / "abu" / "a.mat"
    monkeypatch.delenv(dl.ENV_DATA_DIR)
    assert dl.abu_dir() == REPO / "downloads" / "data" / "abu"


def test_a_wrong_file_is_one_line_and_leaves_nothing(tiny_mirror, tmp_path, local_only, capsys):
    (tiny_mirror / "b.mat").write_bytes(b"not the scene")
    dest = tmp_path / "data"
    assert dl.main(["abu", "--dest", str(dest), "--base_url", tiny_mirror.as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(r"python -m data.download: error: checksum mismatch for file://.*/b.mat: "
                                             r"got sha256 \w{64}, expected \w{64}; the download was deleted", err)
    assert sorted(p.name for p in (dest / "data" / "abu").iterdir()) == ["a.mat"]   # no b.mat, no temporary


def test_an_unreachable_source_says_what_to_do_offline(tiny_mirror, tmp_path, local_only, capsys):
    assert dl.main(["abu", "--dest", str(tmp_path), "--base_url", (tmp_path / "none").as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: cannot download file://" in err and "--base_url a local mirror" in err


def test_the_registry_is_the_scenes_the_project_ran_on(abu_dir, tmp_path, local_only):
    """The 14 SHA-256 of data/download.py are those of ../shared/data/abu (the pinned commit's data/ folder)."""
    paths, fetched = dl.fetch_abu(tmp_path, abu_dir.as_uri())
    assert fetched == 14 and sorted(p.name for p in paths) == sorted(p.name for p in abu_dir.glob("*.mat"))


def release_mirror(release_dir: Path, root: Path) -> str:
    """A ``file://`` stand-in for the authors' repository at the pinned commit, from a local copy."""
    for by_bands in release.RELEASES.values():
        for rel in by_bands.values():
            (root / "c" / rel.upstream_dir).mkdir(parents=True)
            for f in release.RELEASE_FILES:
                os.symlink(release_dir / rel.local_name / f, root / "c" / rel.upstream_dir / f)
    return root.as_uri()


def test_weights_fetch_lays_out_the_release_for_ferd_weights_dir(release_dir, tmp_path, local_only, monkeypatch,
                                                                  capsys):
    monkeypatch.setattr(release, "FERD_REPO_RAW", release_mirror(release_dir, tmp_path / "m"))
    monkeypatch.setattr(release, "FERD_COMMIT", "c")
    from weights.__main__ import main

    assert main(["fetch", str(tmp_path / "w")]) == 0
    assert "12 released files verified" in capsys.readouterr().out
    assert release.fetch_releases(tmp_path / "w")[1] == 0   # cached
    assert release.load_fen("had100", 50, tmp_path / "w").bands == 50


def readme_api_block() -> str:
    text = (REPO / "README.md").read_text()
    return next(b for b in re.findall(r"^```python\n(.*?)^```", text, re.M | re.S) if "read_scene" in b)


def test_readme_example_runs_on_the_downloaded_folder(abu_dir, release_dir, tmp_path, local_only, monkeypatch):
    """The documented steps, from local mirrors: download the scenes and the weights, then README's Python
    example, which names no path outside the repository and the downloaded folder."""
    code = readme_api_block()
    assert "../shared" not in code
    data = tmp_path / "downloads"
    dl.fetch_abu(data, abu_dir.as_uri())
    monkeypatch.setattr(release, "FERD_REPO_RAW", release_mirror(release_dir, tmp_path / "m"))
    monkeypatch.setattr(release, "FERD_COMMIT", "c")
    release.fetch_releases(data / "ferd-release")
    env = {**os.environ, dl.ENV_DATA_DIR: str(data), release.ENV_WEIGHTS_DIR: str(data / "ferd-release"),
           "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FEN+GRX AUC 0.9456" in proc.stdout


def test_the_repository_says_its_licence_and_how_to_cite():
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
    assert "MIT licence ([LICENSE](LICENSE))" in (REPO / "README.md").read_text()
    cff = (REPO / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in cff and "license: MIT" in cff and 'doi: "10.1109/LGRS.2024.3456178"' in cff
    assert "## Terms" in (REPO / "docs" / "model_card_abu10.md").read_text()
