"""The lookup of the shared folder (utils/shared.py): ``../shared`` beside the checkout, else ``shared/`` inside it
(what a copy of the tree sent to a GPU machine carries), one function for the tests and the gpu-check."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO, require_shared

from benchmarks.checks import gpu_check_commands
from utils.shared import shared_candidates, shared_dir

PROBE = '''
def test_probe(abu_dir, release_dir, golden):
    assert (abu_dir / "abu-airport-1.mat").is_file() and (release_dir / "had100-50bands").is_dir() and golden
'''


def test_beside_wins_then_inside_then_the_missing_beside(tmp_path):
    repo = tmp_path / "checkout"
    repo.mkdir()
    assert shared_dir(repo) == tmp_path / "shared"  # neither: the first place, which callers name as missing
    (repo / "shared").mkdir()
    assert shared_dir(repo) == repo / "shared"
    (tmp_path / "shared").mkdir()
    assert shared_dir(repo) == tmp_path / "shared"
    assert shared_candidates(repo) == [tmp_path / "shared", repo / "shared"]


def test_the_gpu_check_and_the_tests_look_in_the_same_place():
    import conftest

    assert gpu_check_commands.SHARED == conftest.SHARED == shared_dir(REPO)


def test_a_checkout_with_shared_inside_runs_the_tests_that_need_it(tmp_path):
    """A copy of the tracked tree with ``shared/`` inside and no ``../shared`` beside it (a GPU machine's copy):
    the fixtures of the data find it, so a test that needs the scenes, weights and golden tensors runs."""
    shared = require_shared()
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()  # what a device machine gets
    for name in files:
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    (checkout / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    (checkout / "tests" / "test_probe_shared.py").write_text(PROBE)
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a skip, not a failure, is what went wrong before
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/test_probe_shared.py"], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=300)
    summary = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and any(line.startswith("1 passed") for line in summary), proc.stdout[-2000:]
    assert "skipped" not in proc.stdout
