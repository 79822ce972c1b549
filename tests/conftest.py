"""Shared fixtures. Tests that need ../shared (real scenes, released weights, golden tensors) fail in CI
when it is missing and skip elsewhere, with the reason."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import utils.cli
from utils.device import cpu_model, torch_threads
from utils.memory import format_bytes
from utils.shared import shared_candidates, shared_dir

REPO = Path(__file__).resolve().parents[1]
#: The data folder: $FERD_DATA_DIR (a folder laid out like ../shared, which an outside user fills with
#: ``python -m data.download abu --dest DIR`` and ``python -m weights fetch DIR/ferd-release``), else ../shared
#: beside the checkout, else shared/ inside it (utils/shared.py: the benchmarks look the same way).
SHARED = shared_dir(REPO)
RELEASE_DIR = SHARED / "ferd-release"
ABU = SHARED / "data" / "abu"
GOLDEN = SHARED / "reference" / "release_golden.npz"

#: (registry name, bands) -> short key used in release_golden.npz
RELEASE_KEYS = {("had100", 50): "had100-50", ("had100", 100): "had100-100",
                ("had100", 200): "had100-200", ("aviris", 200): "aviris-200"}


#: The most disk the suite's temporary files take at once, rounded up: ``benchmarks/checks/suite_disk.py`` measured
#: 2.8 GiB (2026-12-01): test_train.py's shared run keeps its 1 GB training checkpoint while a 2-epoch test
#: rewrites its own, the old and the new one side by side during the atomic rewrite.
SUITE_PEAK_BYTES = 3 << 30


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The machine in one line at the end, also under ``-q`` (the CPU kind decides speed-ups; a disk with
    too little room fails the training tests, and the line says so beside the failures)."""
    where = tempfile.gettempdir()
    free = shutil.disk_usage(where).free
    terminalreporter.write_line(f"machine: {cpu_model()}, {os.cpu_count()} cores; {format_bytes(free, 1)} free "
                                f"in {where} (the suite needs about {format_bytes(SUITE_PEAK_BYTES, 1)})")
    if exitstatus != 0 and free < SUITE_PEAK_BYTES:
        terminalreporter.write_line("note: too little room for the suite's temporary files: failures that say "
                                    "'No space left' or 'disk is full' are the machine's, not the code's")


def require_shared(path: Path = SHARED) -> Path:
    """``path`` if it exists; else fail under CI (it must be there) or skip with the reason."""
    if not path.exists():
        places = " or ".join(str(p) for p in shared_candidates(REPO))
        msg = (f"{path} not found: tests of the released weights and real scenes need the shared folder ({places}); "
               "an outside user sets FERD_DATA_DIR to a folder filled by python -m data.download (README)")
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


def raiser(error: type[BaseException], message: str):
    """A stand-in for a function that must not be reached (or must fail): it raises ``error(message)``."""
    def refuse(*args, **kwargs):
        raise error(message)

    return refuse


def interrupt_after_open(monkeypatch) -> None:
    """Make ``os.open`` create its file and then raise KeyboardInterrupt: a SIGINT that the OS hands to one of
    torch's threads is not held back by the main thread's signal mask, and can land right there."""
    real_open = os.open

    def open_then_interrupt(*args, **kwargs):
        os.close(real_open(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "open", open_then_interrupt)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never touch the network: any download attempt fails loudly."""
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", raiser(AssertionError, "a test tried to use the network"))


@pytest.fixture
def no_sockets(monkeypatch):
    """Stricter than the urlopen guard (torch.hub has its own URL code): no connection at all."""
    import socket

    monkeypatch.setattr(socket.socket, "connect", raiser(AssertionError, "a test tried to open a connection"))


@functools.cache
def load_script(name: str):
    """The repository's script ``name``.py (test.py, train.py, hubconf.py), imported by its path, once a
    session: ``import test`` could find the stdlib package of that name, and a script imported twice would be
    two module objects (monkeypatching one would not reach the other). Tests take test.py and train.py from
    the ``test_cli`` and ``train_cli`` fixtures, which return these same objects."""
    return utils.cli.load_script(REPO / f"{name}.py", f"ferd_{name}_script")


@pytest.fixture(scope="session")
def test_cli():
    """test.py as a module."""
    return load_script("test")


@pytest.fixture(scope="session")
def train_cli():
    """train.py as a module."""
    return load_script("train")


@pytest.fixture(scope="module")
def one_thread():
    """One torch CPU thread for a whole module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    identical arithmetic run to run, and no stalls on a busy shared CPU."""
    with torch_threads(1):
        yield


# ---- hypothesis profiles (tests/test_hostile.py) ------------------------------------------------------
# "ci" (default): few examples, derandomized, so that every run tries the same inputs and stays fast;
# "thorough": many more, freshly drawn each run. Choose with HYPOTHESIS_PROFILE=thorough.
from hypothesis import HealthCheck, settings  # noqa: E402

_HYPOTHESIS_COMMON = dict(deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
#: Examples per property under the "ci" profile; tests.conftest.examples scales other counts by the profile.
CI_EXAMPLES = 25
settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, **_HYPOTHESIS_COMMON)
settings.register_profile("thorough", max_examples=400, **_HYPOTHESIS_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(n: int) -> settings:
    """``settings(max_examples=...)`` for a test that wants ``n`` examples under the ``ci`` profile (25 each by
    default), scaled by the loaded profile: ``thorough`` gives it 16 times as many. A bare ``max_examples=n``
    would pin it whatever the profile."""
    return settings(max_examples=max(1, round(n * settings.default.max_examples / CI_EXAMPLES)))


def table_lines(path) -> list[str]:
    """The lines of a CSV that test.py or train.py wrote, without the ``# key: <JSON>`` provenance lines above
    its header (evaluation/provenance.py)."""
    return [line for line in Path(path).read_text().splitlines() if not line.startswith("# ")]


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a test's CPU process group: torchrun's own variables of an outer run removed, one
    torch thread per process (2 processes on the 2 cores), unbuffered output, gloo on the loopback, no CUDA;
    then ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo",
            "CUDA_VISIBLE_DEVICES": "", **extra}


def run_torchrun(args: list, env: dict, cwd, timeout: float, processes: int = 2) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=<processes> <args>``, its output captured.

    On timeout torchrun is asked to stop (SIGTERM, which it passes on to its workers) before it is killed, then
    :class:`subprocess.TimeoutExpired` is raised: killed at once (``subprocess.run``'s way) it leaves its
    workers, each in a session of its own, running, and a hung pair then loads the rest of the suite."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           *map(str, args)]
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()  # its workers may hold the pipes open: they are not read further
                p.wait()
            raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)
