"""train.py end to end on a tiny synthetic HAD100-layout set (16 x 16 px, 10 bands, CPU, random teacher).

One uninterrupted 3-epoch run (``run_a``) is shared: the loss falls, the checkpoints are written and
test.py evaluates the FEN; an interrupted-and-resumed run must end bit for bit where it ended.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import test as test_cli
import train
from data.patches import VAL_FEATURES, VAL_FILL, VAL_HEIGHT, VAL_MAX_SIDE, make_val_scenes, split_files, tiles
from data.synthetic import generate
from model.losses import FERDLoss
from utils.weights import CHECKPOINT_FORMAT
from conftest import torch_threads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: the arithmetic is then identical run to run, and a busy shared CPU does not stall it."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "had", n_train=4, n_test=2, size=16, bands=10)


def args(data: Path, save_dir: Path, *extra: str) -> list[str]:
    return ["--data_path", str(data), "--input_channel", "8", "--img_size", "16", "--batch_size", "2",
            "--teacher", "random", "--no-progress", "--save_dir", str(save_dir), *extra]


def set_opt(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.fixture(scope="module")
def run_a(data, tmp_path_factory):
    """The uninterrupted reference: 2 epochs of 2 steps, the paper's selection on the test set.
    Returns the save folder, train()'s summary, and what it printed (stdout, stderr)."""
    save_dir = tmp_path_factory.mktemp("run_a")
    result, out, err = {}, io.StringIO(), io.StringIO()
    real_train = train.train

    def keep(a, d):
        result.update(real_train(a, d))
        return result

    train.train = keep
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = train.main(args(data, save_dir, "--epochs", "2"))
    finally:
        train.train = real_train
    assert rc == 0, err.getvalue()
    yield save_dir, result, out.getvalue(), err.getvalue()
    drop_states(save_dir)


def drop_states(folder: Path) -> None:
    """Training states are about 1 GB (Adam moments of 84M parameters): do not leave them in pytest's tmp."""
    for path in folder.rglob("last_*.pt"):
        path.unlink()


@pytest.fixture(autouse=True)
def _drop_states(tmp_path):
    yield
    drop_states(tmp_path)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_end_to_end_loss_falls_checkpoint_written_and_test_py_runs_it(run_a, data, tmp_path, capsys):
    save_dir, result, out, err = run_a
    history = result["history"]
    assert [r["epoch"] for r in history] == [1, 2] and result["step"] == 4
    losses = [r["loss"] for r in history]
    assert losses[-1] < losses[0] and all(np.isfinite(losses))
    assert sorted(p.name for p in save_dir.iterdir()) == ["auc_8bands.csv", "fen_8bands.pt", "last_8bands.pt"]

    # the selected FEN: the epoch of the best test mAUC, labelled as the test-set selection (quirk 4)
    fen = load(save_dir / "fen_8bands.pt")
    best = int(np.argmax([r["test_mAUC"] for r in history])) + 1
    assert fen["format"] == CHECKPOINT_FORMAT and fen["config"] == {"bands": 8, "hidden": 128}
    assert fen["meta"]["select"] == "test" and "TEST set (quirk 4" in fen["meta"]["selection"]
    assert fen["meta"]["epoch"] == best == result["best"]["epoch"]
    table = (save_dir / "auc_8bands.csv").read_text().splitlines()
    assert table[0].startswith("epoch,step,loss,sim,rec,zc,test_mAUC,val_mAUC,seconds,selected,test:synthetic_test_0000")
    assert len(table) == 3 and [line.split(",")[9] for line in table[1:]].count("*") == 1
    assert table[best].split(",")[9] == "*"

    # test.py runs the checkpoint and finds the AUCs the training recorded for that epoch
    results = test_cli.run(test_cli.parse_args(["--data_path", str(data), "--input_channel", "8", "--weights",
                                                str(save_dir / "fen_8bands.pt"), "--no-progress",
                                                "--save_dir", str(tmp_path)]))
    assert (tmp_path / "auc.csv").is_file()
    recorded = history[best - 1]["test_aucs"]
    for r in results:
        assert r.auc["FEN+GRX"] == pytest.approx(recorded[r.name], abs=1e-9)
    assert test_cli.main(["--data_path", str(data), "--input_channel", "8", "--weights",
                          str(save_dir / "fen_8bands.pt"), "--no-progress", "--save_dir", str(tmp_path)]) == 0


def test_log_lines(run_a):
    """One line per epoch with the loss terms, FEN+GRX mAUC and seconds; the quirk-4 selection named."""
    _, result, out, err = run_a
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    for i, (line, row) in enumerate(zip(lines, result["history"]), start=1):
        assert line.startswith(f"epoch {i}/2  step {2 * i}  loss {row['loss']:.4f} (sim {row['sim']:.4f} ")
        assert f"test mAUC {row['test_mAUC']:.4f}" in line and " s, total " in line
        assert "best test mAUC (selected on the test set, quirk 4)" in line
    assert "4 training patches 16x16 from 4 files" in err and "random teacher (torchvision init, seed 10)" in err
    assert "select: best FEN+GRX mAUC on the TEST set (quirk 4" in err and "device cpu" in err


def test_resume_after_kill_equals_uninterrupted(run_a, data, tmp_path, monkeypatch, capsys):
    """Killed at the start of epoch 2, resumed: same weights, optimiser state and losses as run_a."""
    real = train.DistributedSampler.set_epoch

    def kill_at_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        real(self, epoch)

    monkeypatch.setattr(train.DistributedSampler, "set_epoch", kill_at_2)
    with pytest.raises(KeyboardInterrupt):
        train.main(args(data, tmp_path, "--epochs", "2"))
    assert load(tmp_path / "last_8bands.pt")["epoch"] == 1
    monkeypatch.setattr(train.DistributedSampler, "set_epoch", real)
    assert train.main(args(data, tmp_path, "--epochs", "2", "--resume")) == 0
    assert "resumed from" in capsys.readouterr().err

    ref, got = load(run_a[0] / "last_8bands.pt"), load(tmp_path / "last_8bands.pt")
    assert got["epoch"] == ref["epoch"] == 2 and got["step"] == ref["step"] == 4
    assert ref["model"].keys() == got["model"].keys() and len(ref["model"]) > 100
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), k
    for pid, s in ref["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg_sq"], got["optimizer"]["state"][pid]["exp_avg_sq"])
    assert [r["loss"] for r in got["history"]] == [r["loss"] for r in ref["history"]]
    assert load(tmp_path / "fen_8bands.pt")["state_dict"].keys() == load(run_a[0] / "fen_8bands.pt")["state_dict"].keys()
    for k, v in load(run_a[0] / "fen_8bands.pt")["state_dict"].items():
        assert torch.equal(v, load(tmp_path / "fen_8bands.pt")["state_dict"][k])


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(run_a, data, monkeypatch, capsys):
    save_dir = run_a[0]
    files = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in save_dir.iterdir()}

    def nan_loss(self, out, x):
        nan = torch.tensor(float("nan"))
        return nan, {"sim": nan, "rec": nan, "zc": nan}

    monkeypatch.setattr(FERDLoss, "forward", nan_loss)
    assert train.main(args(data, save_dir, "--epochs", "3", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("train.py: error: loss is nan at step 5 (epoch 3); stopped;")
    assert f"last good checkpoint is {save_dir / 'last_8bands.pt'} (epoch 2)" in err
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in save_dir.iterdir()} == files


@pytest.mark.parametrize("extra,message", [
    ({"--img_size": "8"}, "--img_size 16 there, 8 here"),
    ({"--input_channel": "6", "--lr": "0.001"}, "--input_channel 8 there, 6 here; --lr 0.005 there, 0.001 here"),
])
def test_resume_refuses_another_configuration(run_a, data, tmp_path, extra, message, capsys):
    argv = args(data, tmp_path, "--resume", str(run_a[0] / "last_8bands.pt"))
    for flag, value in extra.items():
        argv = set_opt(argv, flag, value)
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train.py: error: ") and "written by another configuration" in err and message in err
    assert "\n" not in err and not any(tmp_path.iterdir())


def test_bad_input_one_line_errors(data, tmp_path, capsys):
    (tmp_path / "empty" / "train" / "aviris_ng").mkdir(parents=True)
    ck = tmp_path / "ck"
    cases = [
        (args(tmp_path / "empty", ck), "holds no .npy files"),
        (args(tmp_path / "none", ck), "train/aviris_ng folder not found"),
        (set_opt(args(data, ck), "--input_channel", "12"), "has 10 bands, fewer than --start_channel 0 + --input_channel 12"),
        (set_opt(args(data, ck), "--start_channel", "4"), "has 10 bands, fewer than --start_channel 4 + --input_channel 8"),
        (args(data, ck, "--sensor", "aviris"), "train/aviris folder not found"),
        (set_opt(args(data, ck), "--img_size", "24"), "smaller than --img_size 24"),
        (args(data, ck, "--amp"), "--amp needs a CUDA device"),
        (args(data, ck, "--resume"), "last_8bands.pt not found"),
        (set_opt(args(data, ck), "--batch_size", "0"), "--batch_size must be positive"),
        (args(data, ck, "--select", "test", "--no-eval_test"), "--select test needs the test evaluation"),
    ]
    for argv, message in cases:
        assert train.main(argv) == 2, message
        err = capsys.readouterr().err.strip()
        assert err.startswith("train.py: error: ") and message in err and "\n" not in err, err
    assert not ck.exists()


def test_imagenet_teacher_offline_fails_at_once(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert train.main(args(data, tmp_path, "--teacher", "imagenet", "--no-download_teacher")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train.py: error: --teacher imagenet: wide_resnet101_2-32ee1156.pth is not cached")
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "wide_resnet101_2-32ee1156.pth") in err
    assert "--teacher random" in err and "\n" not in err


def test_validation_split_and_implanted_anomalies(data):
    files = sorted((data / "train" / "aviris_ng").glob("*.npy"))
    tr, val = split_files(files, 0.25, seed=10)
    assert len(val) == 1 and len(tr) == 3 and not set(tr) & set(val) and split_files(files, 0.25, 10) == (tr, val)
    a = make_val_scenes(val, bands=6, start=2, seed=10)
    b = make_val_scenes(val, bands=6, start=2, seed=10)
    assert len(a) == 1 and np.array_equal(a[0].cube, b[0].cube) and np.array_equal(a[0].mask, b[0].mask)
    original = np.load(val[0])
    cube, mask = a[0].cube, a[0].mask
    assert 2 <= mask.sum() <= 4 * VAL_MAX_SIDE**2 and not mask[0].any() and not mask[:, 0].any()
    assert np.array_equal(np.any(cube != original, axis=2), mask)  # only the blobs changed ...
    assert np.array_equal(cube[:, :, :2], original[:, :, :2]) and np.array_equal(cube[:, :, 8:], original[:, :, 8:])
    # ... by at most fill x height x features of the mean spectrum (sub-pixel, narrow features)
    bound = VAL_FILL[1] * VAL_HEIGHT[1] * VAL_FEATURES[1] * original.mean(axis=(0, 1))
    assert np.all(np.abs(cube - original)[mask] <= bound + 1e-3)
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(2, 5, 7)
    t = tiles(x, 2)
    assert t.shape == (6, 2, 2, 2) and torch.equal(t[4], x[:, 2:4, 2:4])


def test_select_val_with_max_steps(data, tmp_path, capsys):
    """--select val holds a file out, never reads test labels for the choice, and records it."""
    assert train.main(args(data, tmp_path, "--select", "val", "--val_fraction", "0.25", "--no-eval_test",
                           "--epochs", "5", "--max_steps", "1")) == 0
    out, err = capsys.readouterr()
    assert "3 training patches 16x16 from 3 files" in err and "0 test scenes, 1 val scenes" in err
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/5  step 1 ") and "test mAUC -" in lines[0]
    fen = load(tmp_path / "fen_8bands.pt")
    assert fen["meta"]["select"] == "val" and fen["meta"]["test_mAUC"] is None
    assert 0.0 <= fen["meta"]["val_mAUC"] <= 1.0 and fen["meta"]["score"] == fen["meta"]["val_mAUC"]
    state = load(tmp_path / "last_8bands.pt")
    assert state["step"] == 1 and state["config"]["select"] == "val"
