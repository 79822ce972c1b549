"""Shared fixtures. Tests that need ../shared (real scenes, released weights, golden tensors) fail in CI
when it is missing and skip elsewhere, with the reason."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RELEASE_DIR = SHARED / "ferd-release"
ABU = SHARED / "data" / "abu"
GOLDEN = SHARED / "reference" / "release_golden.npz"

#: (registry name, bands) -> short key used in release_golden.npz
RELEASE_KEYS = {("had100", 50): "had100-50", ("had100", 100): "had100-100",
                ("had100", 200): "had100-200", ("aviris", 200): "aviris-200"}


def require_shared(path: Path = SHARED) -> Path:
    """``path`` if it exists; else fail under CI (it must be there) or skip with the reason."""
    if not path.exists():
        msg = f"{path} not found: tests of the released weights and real scenes need ../shared beside the repo"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def release_dir() -> Path:
    return require_shared(RELEASE_DIR)


@pytest.fixture(scope="session")
def abu_dir() -> Path:
    return require_shared(ABU)


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(require_shared(GOLDEN)) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never touch the network: any download attempt fails loudly."""
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def load_script(name: str):
    """Import one of the repository's scripts (test.py, train.py) by path: 'test' is also a stdlib package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"ferd_{name}_script", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def test_cli():
    return load_script("test")


@contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch CPU threads: float32 summation order (and so the last digits) follows it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- hypothesis profiles (tests/test_hostile.py) ------------------------------------------------------
# "ci" (default): few examples, derandomized, so that every run tries the same inputs and stays fast;
# "thorough": many more, freshly drawn each run. Choose with HYPOTHESIS_PROFILE=thorough.
from hypothesis import HealthCheck, settings  # noqa: E402

_HYPOTHESIS_COMMON = dict(deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=25, derandomize=True, **_HYPOTHESIS_COMMON)
settings.register_profile("thorough", max_examples=400, **_HYPOTHESIS_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
