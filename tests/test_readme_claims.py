"""README claims about whole runs, each checked on real processes: Ctrl-C (a real SIGINT) ends test.py with one
line and exit code 130; a CPU training run is bit-reproducible with the same ``--seed`` in two processes; a bad
scene under ``torchrun`` gives the one line, then torchrun's own report (README says what torchrun adds)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from conftest import REPO, run_torchrun, worker_env

from data.synthetic import generate, mask_png
from weights.release import load_fen

#: One thread per child: the runs stay small on a busy 2-core machine, and arithmetic the same run to run.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}


def test_sigint_to_test_py_ends_with_one_line_and_exit_130(tmp_path):
    """SIGINT from outside (as a terminal's Ctrl-C sends it) while test.py works through its scenes: exit code
    130, one line after the start line, no traceback, and no result table written half."""
    rng = np.random.default_rng(0)
    scenes = []
    for k in range(40):  # LRX on 40 scenes: seconds of work, so the signal lands in the middle of it
        np.save(tmp_path / f"s{k}.npy", rng.random((48, 48, 12), dtype=np.float32))
        mask_png(np.eye(48, dtype=bool)).save(tmp_path / f"s{k}.png")
        scenes.append(str(tmp_path / f"s{k}.npy"))
    out, err_path = tmp_path / "out", tmp_path / "stderr.txt"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "test.py", "--scenes", *scenes, "--input_channel", "12",
                                 "--detectors", "GRX", "LRX", "--lrx_outer", "15", "--no-progress", "--device",
                                 "cpu", "--save_dir", str(out)], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=err_file)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and "scenes from" not in err_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.01)  # the start line: the scenes are read and checked, the work begins
            time.sleep(0.2)
            assert proc.poll() is None, "test.py ended before the signal: " + err_path.read_text()[-2000:]
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = err_path.read_text().strip().splitlines()
    assert proc.returncode == 130, lines
    assert lines[0].startswith("40 scenes from") and lines[1:] == [
        "test.py: interrupted; the result files written so far are complete, the rest were not written"], lines
    assert not (out / "auc.csv").exists() and not list(out.rglob(".*.tmp"))


def train(data: Path, save_dir: Path, seed: int) -> subprocess.Popen:
    """train.py, 1 epoch of 2 steps on the tiny set, started in a process of its own."""
    return subprocess.Popen([sys.executable, "train.py", "--data_path", str(data), "--input_channel", "8",
                             "--img_size", "16", "--batch_size", "2", "--teacher", "random", "--no-progress",
                             "--device", "cpu", "--epochs", "1", "--max_steps", "2", "--select", "last",
                             "--no-eval_test", "--seed", str(seed), "--save_dir", str(save_dir)],
                            cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_cpu_training_is_bit_reproducible_with_the_same_seed(tmp_path):
    """README: "A CPU run is bit-reproducible with the same --seed". Two processes at once, the same seed: the
    saved FEN equal bit for bit, tensor by tensor."""
    data = generate(tmp_path / "had", n_train=4, n_test=1, size=16, bands=10)
    runs = {run: train(data, tmp_path / run, 7) for run in ("a", "b")}
    fens = {}
    for run, proc in runs.items():
        try:
            err = proc.communicate(timeout=300)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-3000:]
        fens[run] = load_fen(str(tmp_path / run / "fen_8bands.pt"), 8).state_dict()
    a, b = fens["a"], fens["b"]
    assert a.keys() == b.keys() and len(a) > 10
    different = [k for k in a if not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]
    assert not different, f"{len(different)} tensors differ between two runs of --seed 7: {different[:5]}"


def test_torchrun_adds_its_report_to_the_one_line(tmp_path, release_dir):
    """README: under torchrun a bad scene gives test.py's one line, then torchrun's own report of a failed child
    (ChildFailedError, naming the rank and its exit code 2), and torchrun exits with 1."""
    data = generate(tmp_path / "had", n_train=0, n_test=2, size=12, bands=8)
    bad = tmp_path / "bad.npy"
    cube = np.load(sorted((data / "test" / "aviris_ng").glob("*.npy"))[0])
    cube[1, 2, 3] = np.inf  # NaN would be nodata (left out); Inf is refused
    np.save(bad, cube)
    mask_png(np.eye(12, dtype=bool)).save(tmp_path / "bad.png")
    done = run_torchrun(["test.py", "--scenes", bad, "--input_channel", "8", "--detectors", "GRX", "--no-progress",
                         "--device", "cpu", "--save_dir", tmp_path / "out"], worker_env(), REPO, 240)
    ours = (f"test.py: error: {bad}: 1 NaN/Inf values in the bands used; replace them (e.g. by interpolation) "
            "or choose other bands")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr[-3000:]
    assert lines.count(ours) == 1 and "Traceback" not in done.stderr.split(ours)[0], done.stderr[-3000:]
    report = done.stderr.split(ours)[1]
    assert "ChildFailedError" in report and "exitcode  : 2" in report, report
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
