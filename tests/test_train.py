"""train.py end to end on a tiny synthetic HAD100-layout set (16 x 16 px, 10 bands, CPU, random teacher).

One uninterrupted 3-epoch run (``run_a``) is shared: the loss falls, the checkpoints are written and
test.py evaluates the FEN; an interrupted-and-resumed run must end bit for bit where it ended.
"""
from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, table_lines
from evaluation.provenance import read_csv_provenance

from data.patches import (VAL_FEATURES, VAL_FILL, VAL_HEIGHT, VAL_MAX_SIDE, cut_patches, make_val_scenes,
                          split_files)
from data.synthetic import generate
from model.losses import FERDLoss
import training.record
import training.state
from torch.utils.data import DistributedSampler
from weights.release import CHECKPOINT_FORMAT

pytestmark = pytest.mark.usefixtures("one_thread")


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
def run_a(train_cli, data, tmp_path_factory):
    """The uninterrupted reference: 2 epochs of 2 steps, the paper's selection on the test set.
    Returns the save folder, train()'s summary, and what it printed (stdout, stderr)."""
    save_dir = tmp_path_factory.mktemp("run_a")
    result, out, err = {}, io.StringIO(), io.StringIO()
    real_run = train_cli.run

    def keep(a, d):
        result.update(vars(real_run(a, d)))  # a TrainResult: fen, last, best, history, step
        return result

    train_cli.run = keep
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = train_cli.main(args(data, save_dir, "--epochs", "2"))
    finally:
        train_cli.run = real_run
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


def test_end_to_end_loss_falls_checkpoint_written_and_test_py_runs_it(test_cli, run_a, data, tmp_path, capsys):
    save_dir, result, out, err = run_a
    history = result["history"]
    assert [r["epoch"] for r in history] == [1, 2] and result["step"] == 4
    losses = [r["loss"] for r in history]
    assert losses[-1] < losses[0] and all(np.isfinite(losses))
    assert sorted(p.name for p in save_dir.iterdir()) == ["auc_8bands.csv", "fen_8bands.pt", "last_8bands.pt",
                                                          "loss_8bands.png"]
    assert (save_dir / "loss_8bands.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the selected FEN: the epoch of the best test mAUC, labelled as the test-set selection (quirk 4)
    fen = load(save_dir / "fen_8bands.pt")
    best = int(np.argmax([r["test_mAUC"] for r in history])) + 1
    assert fen["format"] == CHECKPOINT_FORMAT and fen["config"] == {"bands": 8, "hidden": 128}
    assert fen["zcl"]["weight"].shape == (1, 8, 1, 1) and fen["zcl"]["bias"].shape == (1,)  # for pc.pt
    assert fen["meta"]["select"] == "test" and "TEST set (quirk 4" in fen["meta"]["selection"]
    assert fen["meta"]["epoch"] == best == result["best"]["epoch"]
    table = table_lines(save_dir / "auc_8bands.csv")
    assert table[0].startswith("epoch,step,loss,sim,rec,zc,test_mAUC,val_mAUC,val_real_mAUC,val_scene_mAUC,seconds,selected,test:synthetic_test_0000")
    assert len(table) == 3 and [line.split(",")[11] for line in table[1:]].count("*") == 1
    assert table[best].split(",")[11] == "*"
    # provenance: the table's header lines and the checkpoint carry every setting, the data and the software
    head = read_csv_provenance(save_dir / "auc_8bands.csv")
    assert head["config"]["seed"] == fen["meta"]["seed"] and head["config"]["input_channel"] == 8
    assert head["config"]["teacher_fingerprint"] == fen["meta"]["run"]["teacher_fingerprint"]
    assert head["data"] == fen["meta"]["data"] and head["software"]["torch"] == torch.__version__
    assert fen["meta"]["software"]["torch"] == torch.__version__

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


def test_resume_after_kill_equals_uninterrupted(train_cli, run_a, data, tmp_path, monkeypatch, capsys):
    """Killed at the start of epoch 2, resumed: same weights, optimiser state and losses as run_a."""
    real = DistributedSampler.set_epoch

    def kill_at_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        real(self, epoch)

    monkeypatch.setattr(DistributedSampler, "set_epoch", kill_at_2)
    assert train_cli.main(args(data, tmp_path, "--epochs", "2")) == 130  # Ctrl-C: one line, which epoch is saved
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"train.py: interrupted in epoch 2 (step 2); {tmp_path / 'last_8bands.pt'} holds epoch 1: "
                   "continue with --resume")
    assert load(tmp_path / "last_8bands.pt")["epoch"] == 1
    monkeypatch.setattr(DistributedSampler, "set_epoch", real)
    assert train_cli.main(args(data, tmp_path, "--epochs", "2", "--resume")) == 0
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


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(train_cli, run_a, data, monkeypatch, capsys):
    save_dir = run_a[0]
    files = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in save_dir.iterdir()}

    def nan_loss(self, out, x):
        nan = out.reconstruction.mean() * float("nan")  # in the graph, as a diverging run's loss
        return nan, {"sim": nan, "rec": nan, "zc": nan}

    monkeypatch.setattr(FERDLoss, "forward", nan_loss)
    assert train_cli.main(args(data, save_dir, "--epochs", "3", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("train.py: error: training diverged: loss is nan at step 5 (epoch 3): lower --lr (now "
                          "0.005); stopped;")
    assert f"last good checkpoint is {save_dir / 'last_8bands.pt'} (epoch 2)" in err
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in save_dir.iterdir()} == files


def test_a_save_folder_without_room_for_the_checkpoints_is_refused_before_training(train_cli, run_a, data, tmp_path,
                                                                                   monkeypatch, capsys):
    """The room for the checkpoints is checked before the first step, not found missing after the first
    epoch: the estimate is the size of a real last_8bands.pt (run_a's) to 1 %, a save folder with less than
    two of them free is refused in one line, and nothing is written there."""
    real = (run_a[0] / "last_8bands.pt").stat().st_size
    free = 2 * real - (64 << 20)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 40, (1 << 40) - free, free))
    save = tmp_path / "ck"
    assert train_cli.main(args(data, save, "--epochs", "1")) == 2
    out, err = capsys.readouterr()
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"train.py: error: {save}: {free / 2**30:.1f} GiB free, too little for the training "
                           "state written there each epoch: last_8bands.pt takes about ")
    assert line.endswith("in all); free space or choose another --save_dir") and "epoch 1" not in out
    estimate = float(line.split("takes about ")[1].split(" MiB")[0]) * 2**20
    assert estimate == pytest.approx(real, rel=0.01)
    assert not save.exists()


@pytest.mark.parametrize("extra,message", [
    ({"--img_size": "8"}, "--img_size 16 there, 8 here"),
    ({"--input_channel": "6", "--lr": "0.001"}, "--input_channel 8 there, 6 here; --lr 0.005 there, 0.001 here"),
])
def test_resume_refuses_another_configuration(train_cli, run_a, data, tmp_path, extra, message, capsys):
    argv = args(data, tmp_path, "--resume", str(run_a[0] / "last_8bands.pt"))
    for flag, value in extra.items():
        argv = set_opt(argv, flag, value)
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train.py: error: ") and "written by another configuration" in err and message in err
    assert "\n" not in err and not any(tmp_path.iterdir())


def test_resume_refuses_another_amp_setting(train_cli, run_a, data, tmp_path):
    """A state written without fp16 AMP holds no gradient scaler state: resumed with ``--amp --amp_dtype fp16``
    it reached ``GradScaler.load_state_dict({})``, a raw RuntimeError (on the CPU too). The options are
    compared before anything is built (``--amp`` itself needs CUDA, so the check is called here directly)."""
    with pytest.raises(RuntimeError, match="state dict is empty"):
        torch.amp.GradScaler("cpu", enabled=True).load_state_dict({})
    last = run_a[0] / "last_8bands.pt"
    opts = train_cli.parse_args(args(data, tmp_path, "--resume", str(last), "--amp", "--amp_dtype", "fp16"))
    with pytest.raises(training.state.TrainingError) as err:
        training.state.open_resume(opts, last)
    assert str(err.value) == (f"{last} was written by another configuration: --amp False there, True here; "
                              "--amp_dtype None there, 'fp16' here")
    # without --amp, --amp_dtype is not a setting of the run: no difference
    opts = train_cli.parse_args(args(data, tmp_path, "--resume", str(last), "--amp_dtype", "fp16"))
    assert training.state.open_resume(opts, last)[1] == last


def test_bad_input_one_line_errors(train_cli, data, tmp_path, capsys):
    (tmp_path / "empty" / "train" / "aviris_ng").mkdir(parents=True)
    band_first = tmp_path / "band_first"
    shutil.copytree(data, band_first)
    cube = np.load(band_first / "train" / "aviris_ng" / "synthetic_train_0000.npy")
    np.save(band_first / "train" / "aviris_ng" / "synthetic_train_0000.npy",
            np.moveaxis(np.concatenate([cube, cube], axis=2), -1, 0))  # 20 x 16 x 16
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
        (set_opt(args(data, ck), "--batch_size", "0"), "--batch_size 0: must be 1 or more"),
        (args(data, ck, "--select", "test", "--no-eval_test"), "--select test needs a test set to evaluate each epoch"),
        (args(data, ck, "--train_scenes", str(data / "x.mat")), "--train_scenes and --data_path: give one source"),
        (set_opt(args(data, ck), "--patch_stride", "0"), "--patch_stride 0: must be 1 or more"),
        (set_opt(args(data, ck), "--input_channel", "0"), "--input_channel 0: must be 1 or more"),
        (set_opt(args(data, ck), "--start_channel", "-1"), "--start_channel -1: must be 0 or more"),
        (args(data, ck, "--betas", "0.5", "1.5"), "--betas 0.5 1.5: each must lie in [0, 1)"),
        (args(data, ck, "--resume", str(data / "train" / "aviris_ng" / "synthetic_train_0000.npy")),
         "not a training state of train.py"),
        (args(band_first, ck), "synthetic_train_0000.npy: is 20 x 16 x 16: the background looks band-first"),
        (args(data, ck, "--w_sim", "nan"), "--w_sim nan: must be a finite number, 0 or more"),
        (args(data, ck, "--w_rec", "-1"), "--w_rec -1.0: must be a finite number, 0 or more"),
        (set_opt(args(data, ck), "--save_dir", str(data / "test" / "aviris_ng" / "synthetic_test_0000.npy")),
         "synthetic_test_0000.npy is a file, not a folder"),
    ]
    for argv, message in cases:
        assert train_cli.main(argv) == 2, message
        err = capsys.readouterr().err.strip()
        assert err.startswith("train.py: error: ") and message in err and "\n" not in err, err
    assert not ck.exists()


def test_imagenet_teacher_offline_fails_at_once(train_cli, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert train_cli.main(args(data, tmp_path, "--teacher", "imagenet", "--no-download_teacher")) == 2
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
    t = cut_patches(x, 2)  # non-overlapping, row-major
    assert t.shape == (6, 2, 2, 2) and torch.equal(t[4], x[:, 2:4, 2:4])


def test_select_val_with_max_steps(train_cli, data, tmp_path, capsys):
    """--select val holds a file out, never reads test labels for the choice, and records it."""
    assert train_cli.main(args(data, tmp_path, "--select", "val", "--val_fraction", "0.25", "--no-eval_test",
                               "--epochs", "5", "--max_steps", "1")) == 0
    out, err = capsys.readouterr()
    assert "3 training patches 16x16 from 3 files" in err and "0 test scenes, 1 val scenes" in err
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/5  step 1 ") and "test mAUC n/a" in lines[0]
    fen = load(tmp_path / "fen_8bands.pt")
    assert fen["meta"]["select"] == "val" and fen["meta"]["test_mAUC"] is None
    assert 0.0 <= fen["meta"]["val_mAUC"] <= 1.0 and fen["meta"]["score"] == fen["meta"]["val_mAUC"]
    state = load(tmp_path / "last_8bands.pt")
    assert state["step"] == 1 and state["config"]["select"] == "val"


# ------------------------------------------------------------------------------------------ issue 13 / 9 / 11

def test_an_undefined_score_never_wins_over_a_defined_one(train_cli):
    """The authors start from 0 with a strict comparison; here a NaN (no scene with both classes) is held only
    while no epoch has had a defined score, and never replaces a defined one."""
    nan = float("nan")
    improves = training.record.improves
    assert improves("test", nan, {"epoch": None, "score": None})          # nothing held yet
    assert improves("test", 0.7, {"epoch": 1, "score": nan})              # a real score replaces NaN
    assert not improves("test", nan, {"epoch": 2, "score": 0.7})          # NaN never replaces it
    assert not improves("val", 0.7, {"epoch": 2, "score": 0.7})           # strict, as the authors
    assert improves("val", 0.71, {"epoch": 2, "score": 0.7})
    assert improves("last", nan, {"epoch": 2, "score": 0.7})


def test_seeds_every_generator_and_restores_them(train_cli, monkeypatch):
    import random

    draws = []
    for _ in range(2):
        training.state.seed_everything(3, deterministic=False)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert draws[0] == draws[1]
    states = training.state.rng_states(torch.device("cpu"))
    states = torch.load(_roundtrip(states), weights_only=True)  # what a training state holds, as it is read
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    training.state.set_rng_states(states, torch.device("cpu"))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        training.state.seed_everything(3, deterministic=True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def _roundtrip(obj) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_sigkill_while_writing_a_checkpoint_loses_nothing(train_cli, run_a, data, tmp_path, capsys):
    """A run killed (SIGKILL) in the middle of writing its epoch-2 checkpoint: the epoch-1 files are intact
    and loadable, and --resume then ends bit for bit where the uninterrupted run ended."""
    import os
    import signal
    import subprocess
    import sys

    assert train_cli.main(args(data, tmp_path, "--epochs", "1")) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    child = f"""
import os, signal, sys, torch
real = torch.save
def dying(obj, f, *a, **k):  # write the temporary file half, then die as with kill -9
    real(obj, f, *a, **k)
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) // 2)
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying
import train
train.main({args(data, tmp_path, "--epochs", "2", "--resume")!r})
"""
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert list(tmp_path.glob(".*.tmp")), "the child should have died inside a write"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".tmp")} == before
    assert load(tmp_path / "last_8bands.pt")["epoch"] == 1 and load(tmp_path / "fen_8bands.pt")["meta"]["epoch"] == 1

    assert train_cli.main(args(data, tmp_path, "--epochs", "2", "--resume")) == 0
    assert not list(tmp_path.glob(".*.tmp"))  # the dead run's temporary file is cleaned up
    ref, got = load(run_a[0] / "last_8bands.pt"), load(tmp_path / "last_8bands.pt")
    assert got["epoch"] == 2 and all(torch.equal(v, got["model"][k]) for k, v in ref["model"].items())
    assert [r["loss"] for r in got["history"]] == [r["loss"] for r in ref["history"]]


def write_scene(path: Path, rng: np.random.Generator, anomalies: list[tuple[int, int]], size=(24, 24), bands=10) -> Path:
    """A .npy cube (H x W x B) with a grey PNG mask (255 = anomaly) beside it."""
    from PIL import Image

    cube = rng.normal(100, 5, size=(*size, bands)).astype(np.float32)
    mask = np.zeros(size, dtype=np.uint8)
    for r, c in anomalies:
        cube[r, c] += 40
        mask[r, c] = 255
    np.save(path, cube)
    Image.fromarray(mask).save(path.with_suffix(".png"))
    return path


def touched(mask: np.ndarray, size: int, stride: int) -> int:
    """Patches of the grid that contain an anomaly, counted one by one."""
    h, w = mask.shape
    return sum(bool(mask[r:r + size, c:c + size].any())
               for r in range(0, h - size + 1, stride) for c in range(0, w - size + 1, stride))


def test_train_scenes_patches_mask_exclusion_and_val(train_cli, tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    scenes = [write_scene(tmp_path / f"s{k}.npy", rng, a) for k, a in
              enumerate([[(3, 3), (12, 17)], [(20, 5)], [(0, 0), (23, 23), (11, 11)]])]
    test_scene = write_scene(tmp_path / "t.npy", rng, [(6, 6), (7, 6)])
    argv = ["--train_scenes", *map(str, scenes), "--test_scenes", str(test_scene), "--input_channel", "8",
            "--img_size", "8", "--patch_stride", "4", "--batch_size", "2", "--teacher", "random", "--no-progress",
            "--select", "val", "--val_fraction", "0.34", "--epochs", "2", "--max_steps", "3",
            "--save_dir", str(tmp_path / "ck")]
    assert train_cli.main(argv) == 0
    out, err = capsys.readouterr()
    kept, held = split_files(scenes, 0.34, 10)
    masks = {p: np.asarray(Image.open(p.with_suffix(".png"))) > 0 for p in scenes}
    dropped = sum(touched(masks[p], 8, 4) for p in kept)
    assert dropped > 0
    n = 25 * len(kept) - dropped  # 5 x 5 patch positions per 24 x 24 scene
    names = ", ".join(p.stem for p in kept)
    assert f"{n} training patches 8x8 every 4 px from {len(kept)} scenes ({names}) ({dropped} of {n + dropped} " \
           "patches dropped for touching a labelled anomaly or nodata), bands [0, 8)" in err
    n_val = 9 - touched(masks[held[0]], 8, 8)  # the held-out scene's clean non-overlapping patches
    assert f"1 test scenes, {n_val} val scenes" in err
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2  step 3 ")  # --max_steps ends epoch 1 early
    fen = load(tmp_path / "ck" / "fen_8bands.pt")
    assert fen["meta"]["select"] == "val" and fen["meta"]["data"].startswith(f"{len(kept)} scenes")


def test_train_scenes_without_a_defined_score_says_so(train_cli, tmp_path, capsys):
    """A test set whose only scene has no anomaly: no epoch has a defined test mAUC, and the log says so."""
    rng = np.random.default_rng(1)
    train_scene = write_scene(tmp_path / "a.npy", rng, [(2, 2)])
    blank = write_scene(tmp_path / "blank.npy", rng, [])
    base = ["--train_scenes", str(train_scene), "--input_channel", "8", "--img_size", "8", "--batch_size", "4",
            "--teacher", "random", "--no-progress", "--epochs", "2",
            "--save_dir", str(tmp_path / "ck")]
    assert train_cli.main(base + ["--select", "test"]) == 2  # --select test without a test set
    assert "--select test needs a test set to evaluate each epoch: give --test_scenes" in capsys.readouterr().err
    assert train_cli.main(base + ["--test_scenes", str(blank)]) == 0
    out, err = capsys.readouterr()
    assert "no epoch has had a defined score yet: holding epoch 2" in out
    assert "no epoch had a defined test mAUC (no scene with both anomaly and background pixels)" in err
    assert load(tmp_path / "ck" / "fen_8bands.pt")["meta"]["epoch"] == 2


def test_fused_adam_is_the_authors_adam():
    """--fused_adam (the default) changes how Adam runs, not what it computes: three float64 steps on a FEN
    end where torch's per-tensor Adam (--no-fused_adam, the authors') ends, to rounding."""
    import train
    from model.fen import FEN
    from training.loop import adam

    torch.manual_seed(0)
    x = torch.rand(2, 6, 12, 12, dtype=torch.float64) - 0.5
    starts, ends = [], []
    for flag in ("--fused_adam", "--no-fused_adam"):
        torch.manual_seed(1)
        fen = FEN(6).double()
        params = [p for p in fen.parameters() if p.requires_grad]
        starts.append(torch.cat([p.detach().flatten() for p in params]))  # a copy: cat allocates
        opt = adam(params, train.parse_args([flag]))
        assert bool(opt.defaults["fused"]) == (flag == "--fused_adam")
        for _ in range(3):
            opt.zero_grad()
            fen(x).square().mean().backward()
            opt.step()
        ends.append(torch.cat([p.detach().flatten() for p in params]))
    assert torch.equal(starts[0], starts[1])  # both runs start from the same weights ...
    for start, end in zip(starts, ends):  # ... and each run's steps moved nearly all of them: Adam's step is
        assert start.shape == end.shape   # about lr = 0.005 whatever the gradient's size; 33 of the 34,054
        moved = (end - start).abs() > 1e-3 * 0.005  # (FPL weights behind dead ReLUs) get no gradient at all
        assert moved.double().mean().item() > 0.99
    torch.testing.assert_close(ends[0], ends[1], rtol=1e-12, atol=1e-15)
