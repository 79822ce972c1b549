"""The pieces of benchmarks/checks/gpu_check.py that hold no check: its settings, the commands it runs (each one a
script's own command line, parsed by tests/test_gpu_check.py with that script's parser), and the
:class:`Context` that runs them under a time limit.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from detectors.reference import REFERENCE_AUCS  # noqa: E402

PY = sys.executable
from utils.shared import shared_dir  # noqa: E402

#: ../shared beside the checkout, or a shared/ inside it (where a copy of the tree was sent with one): the tests'
#: lookup (tests/conftest.py), so that the CUDA tests the check runs find the same data.
SHARED = shared_dir(REPO)
ALL_DETECTORS = ["GRX", "FEN+GRX", "SLRX", "FEN+SLRX", "LRX", "FEN+LRX"]
AIRPORTS = ["abu-airport-1", "abu-airport-2", "abu-airport-3", "abu-airport-4"]
CUDA_TEST_FILES = ["tests/test_lrx.py", "tests/test_slrx.py", "tests/test_crd.py", "tests/test_tiling.py",
                   "tests/test_device.py"]
TRANSFER_EPOCHS = 60
DEVICE = "cuda"  # what the checks run on (a module constant, so that their logic can be tried out on a CPU)
#: The default ``--budget`` (s): with the machine's start-up it leaves room for a second run in a GPU loan of
#: 15 minutes.
BUDGET = 420
#: Seconds each process of a check may take at most (the transfer check gets what is left; see ``--budget``).
#: ``cubes`` is written in the background while the others run.
CAPS = {"cubes": 150, "cuda_tests": 70, "reference": 45, "train": 20, "ddp_train": 30, "torchrun": 20,
        "bench_train": 15, "scale_512_cuda": 20, "scale_512_cpu": 40, "scale_2048": 30, "scale_2048_lrx": 30}
#: The processes each check runs, in the order of the checks (by value: the CUDA tests and the reference rows
#: first, the long transfer run last), whose caps add up to at most :data:`BUDGET`.
RUNS = {"cuda_tests": ["cuda_tests"], "reference": ["reference"], "train": ["train"] * 4, "ddp_train": ["ddp_train"],
        "torchrun": ["torchrun"] * 2, "bench_train": ["bench_train"] * 2,
        "scale_512": ["scale_512_cuda", "scale_512_cpu"], "scale_2048": ["scale_2048", "scale_2048_lrx"],
        "transfer": []}
#: The runs of the 512 x 512 comparison, by name: output folder, "cpu" or "gpu" (DEVICE), detectors. LRX (a
#: covariance inverse per pixel, minutes at this size on the CPU) is compared with the CPU on small scenes by the
#: CUDA tests and timed on CUDA at 2048 x 2048.
SCALE_512 = {"scale_512_cuda": ("s512_cuda", "gpu", ALL_DETECTORS[:4]),
             "scale_512_cpu": ("s512_cpu", "cpu", ALL_DETECTORS[:4])}
#: Seconds a check (or one of its processes) needs at least to be started: with less left of ``--budget`` it is
#: reported SKIP (not started), not FAIL.
MIN_START = 10
#: Seconds one transfer epoch is assumed to cost beyond its steps (evaluation, the 1 GB training state, the plot).
EPOCH_OVERHEAD = 3.0
TRANSFER_STEPS_PER_EPOCH = 4  # 56 patches of 64 x 64 every 12 px clear of anomalies, one scene held out, batch 16


class SkipCheck(Exception):
    """A check that does not apply on this machine, or that the budget left no time for; the message says why."""


class CheckFailed(Exception):
    """A check did not pass; the message is its summary line, ``figures`` what it measured before failing."""

    def __init__(self, message: str, figures: dict | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


@dataclass
class Context:
    """Where a run stands: options, work folder, deadline, and every check's record (the JSON)."""

    args: argparse.Namespace
    work: Path
    logs: Path
    deadline: float
    env: dict[str, str]
    report: dict = field(default_factory=dict)
    cubes: subprocess.Popen | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, cap: float) -> float:
        """A process's time limit: its cap, or what is left of the budget (never under a second)."""
        return max(1.0, min(cap, self.left()))

    def run(self, name: str, cmd: list[str], cap: float, env: dict[str, str] | None = None) -> str:
        """Run ``cmd`` from the repository root under a time limit; its output goes to ``<logs>/<name>.log``.
        Returns stdout; raises :class:`CheckFailed` on a non-zero exit code or a timeout within its cap, and
        :class:`SkipCheck` if the budget has too little left to start it or cut it before its cap."""
        if self.left() < MIN_START:
            raise SkipCheck(f"{name}: not started, {max(0.0, self.left()):.0f} s left of --budget")
        timeout = self.limit(cap)
        log = self.logs / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        # a session of its own, so that a timeout ends it whole (torchrun's workers, DataLoader workers)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, err = proc.communicate()
            log.write_text(f"$ {' '.join(cmd)}\n{out}\n{err}")
            if timeout < cap:  # the budget's end, not the check's own limit
                raise SkipCheck(f"{name}: cut by the end of --budget after {timeout:.0f} s (log {log})") from None
            raise CheckFailed(f"{name}: timed out after {timeout:.0f} s (log {log})") from None
        except BaseException:  # Ctrl-C: nothing of the check is left running
            kill_group(proc)
            raise
        log.write_text(f"$ {' '.join(cmd)}\n{out}\n{err}")
        if proc.returncode != 0:
            last = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
            raise CheckFailed(f"{name}: exit code {proc.returncode}: {last[:300]} (log {log})")
        return out


def kill_group(proc: subprocess.Popen) -> None:
    """End ``proc`` and every process it started (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------------------------------- commands

def weights_dir() -> Path:
    return Path(os.environ.get("FERD_WEIGHTS_DIR", SHARED / "ferd-release"))


def peak_cmd(peak: Path, *test_args: list[str]) -> list[str]:
    """test.py with each of ``test_args`` in turn, in one process that then writes its peak CUDA memory to ``peak``
    (``--child_peak``; one start-up of torch and CUDA for them all)."""
    return [PY, "benchmarks/checks/gpu_check.py", "--child_peak", str(peak),
            *(a for args in test_args for a in ("--", *args))]


def eval_options(scenes: list[Path], bands: int, detectors: list[str], device: str, out: Path,
                 *extra: str) -> list[str]:
    """test.py options: ``scenes`` on ``device``, results in ``out`` (``out/r.json``), no score maps."""
    return ["--scenes", *map(str, scenes), "--input_channel", str(bands), "--detectors", *detectors,
            "--device", device, "--json", str(out / "r.json"), "--save_dir", str(out), "--no-save_scores",
            "--no-progress", *extra]


def commands(work: Path, abu: Path, transfer_epochs: int) -> dict[str, list[str]]:
    """Every command the checks run (except torchrun's, :func:`torchrun_cmd`), by name: built in one place so
    that a test can parse each one with its script's own parser."""
    airports = [abu / f"{s}.mat" for s in AIRPORTS[:2]]
    cube = lambda side: work / "cubes" / f"scene_{side}.npy"
    cmds = {"cubes": [PY, "benchmarks/speed/bench_scale.py", "--make_only", "--sides", "512", "2048",
                      "--dir", str(work / "cubes")],
            # -rs: the reason of any skip in the summary (the check fails on a skip and quotes it)
            "cuda_tests": [PY, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TEST_FILES, "-k", "cuda"]}
    cmds["reference"] = peak_cmd(work / "reference" / "peak.json", *(
        eval_options(airports, bands, ["GRX", "FEN+GRX"], DEVICE, work / f"reference_{weights}_{bands}",
                     "--weights", weights) for weights, bands in REFERENCE_AUCS))
    for name, extra in (("fp32", []), ("bf16", ["--amp", "--amp_dtype", "bf16"]), ("det1", ["--deterministic"]),
                        ("det2", ["--deterministic"])):
        cmds[f"train_{name}"] = [PY, "train.py", *train_options(work), *extra, "--save_dir", str(work / f"train_{name}")]
    cmds["ddp_train"] = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
                         *train_options(work), "--max_steps", "2", "--save_dir", str(work / "ddp_train")]
    bench = [PY, "benchmarks/speed/bench_train.py", "--device", DEVICE, "--warmup", "3", "--steps", "10",
             "--batch_size", "16", "--bands", "50", "--img_size", "64"]
    cmds["bench_train_fp32"] = bench
    cmds["bench_train_bf16"] = [*bench, "--amp", "--amp_dtype", "bf16"]
    for name, (folder, kind, detectors) in SCALE_512.items():
        options = eval_options([cube(512)], 200, detectors, DEVICE if kind == "gpu" else "cpu", work / folder)
        cmds[name] = [PY, "test.py", *options] if kind == "cpu" else peak_cmd(work / folder / "peak.json", options)
    big = ("--max_memory_gb", "24")  # a GPU machine's memory: the 3.2 GB cube stays whole where it fits
    cmds["scale_2048"] = peak_cmd(work / "s2048" / "peak.json",
                                  eval_options([cube(2048)], 200, ALL_DETECTORS[:4], DEVICE, work / "s2048", *big))
    cmds["scale_2048_lrx"] = peak_cmd(work / "s2048_lrx" / "peak.json", eval_options(
        [cube(2048)], 200, ALL_DETECTORS[4:], DEVICE, work / "s2048_lrx", *big))
    cmds["torchrun_one"] = [PY, "test.py", *torchrun_options(work / "torchrun_one", abu)]
    cmds["transfer"] = [PY, "benchmarks/studies/abu_transfer.py", "--setting", "gpu", "--device", DEVICE,
                        "--abu", str(abu),
                        "--weights_dir", str(weights_dir()), "--out", str(work / "transfer"),
                        "--epochs", str(transfer_epochs)]
    return cmds


def train_options(work: Path) -> list[str]:
    """train.py options of the training checks: one epoch on the small synthetic set (its 2 test scenes evaluated)."""
    return ["--data_path", str(work / "synthetic"), "--teacher", "random", "--input_channel", "50", "--epochs", "1",
            "--device", DEVICE, "--no-progress"]


def torchrun_options(out: Path, abu: Path) -> list[str]:
    """test.py options of the torchrun comparison: the 4 airport scenes through the FEN one at a time
    (``--fen_batch 1``), so that one process and two run the very same batches (a batch of 4 and two of 2 would
    be other convolution calls, whose float32 rounding may differ)."""
    return eval_options([abu / f"{s}.mat" for s in AIRPORTS], 50, ["GRX", "FEN+GRX"], DEVICE, out, "--fen_batch", "1")


def torchrun_cmd(work: Path, abu: Path) -> list[str]:
    """torchrun test.py on 2 GPUs of this machine (rendezvous on 127.0.0.1), the 4 airport scenes."""
    return [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "test.py",
            *torchrun_options(work / "torchrun_two", abu)]


