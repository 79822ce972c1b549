"""train.py's faults (issue 21): a diverging run stops with one line naming epoch and step, keeps the last
good checkpoints and never stores a NaN or Inf; SIGINT during a checkpoint write ends the run with code 130,
also where the process inherited SIGINT ignored; stale temporary files are removed at the next start."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, table_lines
from test_train import args  # the tiny training run's options

from data.synthetic import generate
from model.fen import FEN
import training.loop
from training.state import Diverged, Progress
from utils.dist import Dist
from utils.io import drop_stale_temporaries

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "had", n_train=2, n_test=1, size=16, bands=10)


@pytest.fixture
def epoch_1(train_cli, data, tmp_path):
    """A save folder holding epoch 1 (one step), and its files' bytes."""
    assert train_cli.main(args(data, tmp_path, "--epochs", "1")) == 0
    yield tmp_path, {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for p in tmp_path.glob("last_*.pt"):  # about 1 GB of Adam moments: not left in pytest's tmp
        p.unlink()


def poison_after_step(train_cli, monkeypatch, step: int, module_name: str, buffer: str) -> None:
    """After optimiser step ``step``, set ``buffer`` of the FERD submodule ``module_name`` to Inf (as a
    diverging run leaves a BatchNorm's running_var)."""
    real = training.loop.train_step
    count = {"n": 0}

    def step_then_poison(net, *a, **k):
        out = real(net, *a, **k)
        count["n"] += 1
        if count["n"] == step:
            getattr(net.get_submodule(module_name), buffer).fill_(float("inf"))
        return out

    monkeypatch.setattr(training.loop, "train_step", step_then_poison)


def first_bn(train_cli) -> str:
    from model.ferd import FERD

    return next(n for n, m in FERD(8).named_modules() if isinstance(m, torch.nn.BatchNorm2d)
                and not n.startswith("teacher."))


def test_infinite_buffer_stops_naming_epoch_and_step_and_keeps_checkpoints(train_cli, epoch_1, data, monkeypatch,
                                                                           capsys):
    save_dir, before = epoch_1
    name = first_bn(train_cli)
    poison_after_step(train_cli, monkeypatch, 1, name, "running_var")
    assert train_cli.main(args(data, save_dir, "--epochs", "2", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err[-1:]) == 1 and "Traceback" not in "\n".join(err)
    assert err[-1] == (f"train.py: error: training diverged: NaN or Inf in {name}.running_var after step 2 "
                       f"(epoch 2): lower --lr (now 0.005); stopped; the last good checkpoint is "
                       f"{save_dir / 'last_8bands.pt'} (epoch 1)")
    assert {p.name: p.read_bytes() for p in save_dir.iterdir()} == before  # untouched, no temporary left


def test_non_finite_fen_output_is_divergence_not_bad_data(train_cli, data, tmp_path, monkeypatch, capsys):
    """Finite but huge weights (--lr 1e12) make the FEN's output Inf: the line says the training diverged,
    not that the cube has NaN or Inf; nothing is written."""
    monkeypatch.setattr(FEN, "enhance", lambda self, x, normalize=True, **_: torch.full_like(x, float("inf")))
    assert train_cli.main(args(data, tmp_path, "--epochs", "1")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("train.py: error: training diverged: the FEN's output on test scene ")
    assert "has NaN or Inf values after step 1 (epoch 1): lower --lr" in err and "no checkpoint was written" in err
    assert not list(tmp_path.iterdir())


def test_check_finite_covers_optimiser_moments(train_cli, data, tmp_path, monkeypatch, capsys):
    """An Adam moment that overflowed (exp_avg_sq = Inf) would be stored in last_*.pt: refused too."""
    real = training.loop.train_step

    def overflow(net, loss_fn, optimizer, *a, **k):
        out = real(net, loss_fn, optimizer, *a, **k)
        next(iter(optimizer.state.values()))["exp_avg_sq"].fill_(float("inf"))
        return out

    monkeypatch.setattr(training.loop, "train_step", overflow)
    assert train_cli.main(args(data, tmp_path, "--epochs", "1")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "training diverged: NaN or Inf in " in err and "(optimiser exp_avg_sq) after step 1 (epoch 1)" in err
    assert not list(tmp_path.iterdir())


def test_check_finite_with_adam_step_counts_on_another_device(train_cli, data, tmp_path):
    """torch's per-tensor Adam (``--no-fused_adam``) keeps its step counts on the CPU while weights and moments
    are on CUDA: check_finite stacked all of them into one tensor, which fails at the end of the first epoch
    there. Shown on the CPU with the counts moved to the ``meta`` device: the check still runs, and still
    catches an Inf moment."""
    opts = train_cli.parse_args(args(data, tmp_path, "--no-fused_adam"))
    tr = training.loop.build_trainer(opts, Dist(opts.device))
    training.loop.train_step(tr.net, tr.loss_fn, tr.optimizer, tr.scaler, next(iter(tr.loader)), None)
    states = list(tr.optimizer.state.values())
    assert states and all(st["step"].device.type == "cpu" and st["step"].is_floating_point() for st in states)
    for st in states:
        st["step"] = st["step"].to("meta")
    training.loop.check_finite(tr, 1, Progress(step=1))  # all finite: no error
    states[0]["exp_avg_sq"].fill_(float("inf"))
    with pytest.raises(Diverged, match=r"\(optimiser exp_avg_sq\) after step 1 \(epoch 1\)"):
        training.loop.check_finite(tr, 1, Progress(step=1))


def test_stale_temporaries_are_dropped_and_others_kept(tmp_path):
    stale = [tmp_path / ".last_8bands.pt.ab12_xyz.tmp", tmp_path / ".auc.csv.q1w2e3r4.tmp"]
    sub = tmp_path / "scores"
    sub.mkdir()
    stale.append(sub / ".scene.npz.zzzzzzzz.tmp")
    kept = [tmp_path / ".notes.tmp", tmp_path / "last_8bands.pt", tmp_path / ".hidden", sub / "scene.npz"]
    for p in stale + kept:
        p.write_text("x")
    assert drop_stale_temporaries(tmp_path, ("last_*",)) == 1
    assert drop_stale_temporaries(tmp_path, subfolders=True) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


CHILD = """
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell script's background job ('train.py ... &') starts
import train
sys.exit(train.main({argv!r}))
"""


def test_sigint_while_the_checkpoint_is_written_ends_the_run(data, tmp_path):
    """SIGINT at the first sight of the temporary checkpoint file, in a process that inherited SIGINT ignored:
    exit code 130 with one line, and last_8bands.pt is either complete or absent (never partial)."""
    argv = args(data, tmp_path, "--epochs", "6", "--select", "last", "--no-eval_test")
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(argv=argv)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and not list(tmp_path.glob(".last_*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, "the run ended before it wrote a checkpoint"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert lines[-1].startswith("train.py: interrupted in epoch ") and "Traceback" not in err.decode()
    assert not list(tmp_path.glob(".*.tmp"))
    last = tmp_path / "last_8bands.pt"
    if last.exists():  # the write had finished: a complete state of epoch 1
        assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
        last.unlink()
    assert b"epoch 6/6" not in out


def test_ctrl_c_after_the_checkpoint_is_written_names_the_epoch_it_holds(train_cli, data, tmp_path, monkeypatch,
                                                                         capsys):
    """Ctrl-C while the loss plot is drawn, after last_8bands.pt of epoch 1 is on disk: the line says that
    file holds epoch 1 (not 'nothing was saved yet'), and it does."""
    import evaluation.plots

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation.plots, "plot_training", interrupt)
    assert train_cli.main(args(data, tmp_path, "--epochs", "2")) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"train.py: interrupted in epoch 1 (step 1); {tmp_path / 'last_8bands.pt'} holds epoch 1: "
                   "continue with --resume")
    assert torch.load(tmp_path / "last_8bands.pt", map_location="cpu", weights_only=True)["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_eval_scenes_takes_the_first_n_test_scenes(train_cli, data, tmp_path):
    """--eval_scenes N (an int, once iterated like the *_scenes file lists when the config was recorded)."""
    assert train_cli.main(args(data, tmp_path, "--epochs", "1", "--max_steps", "1", "--eval_scenes", "1")) == 0
    header = table_lines(tmp_path / "auc_8bands.csv")[0]
    assert [c for c in header.split(",") if c.startswith("test:")] == ["test:synthetic_test_0000"]
