"""Temporary files of large scenes (issue 21 item 1): the free space of $TMPDIR is checked against the plan
before any work, the space is reserved when the file is made (a full disk is an error, never a SIGBUS), and a
disk that fills while a result is written stops the run with one line and no partial result file."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from conftest import REPO, examples, interrupt_after_open
from helpers import pipeline_on

import pipeline.plan
import pipeline.sources
from data.synthetic import mask_png
from detectors.registry import DetectorOptions
from model.fen import FEN
from pipeline.plan import TilePlan, check_temp_space, plan_scene
from pipeline.sources import SceneCube
from utils.errors import DiskFullError
from utils.io import atomic_path, save_text, save_torch
from weights.release import fen_from_checkpoint

Usage = namedtuple("Usage", "total used free")
SHAPE = (96, 96, 40)  # H x W x B: a 1.4 MiB float32 cube


def free_space(monkeypatch, free: int) -> list[str]:
    """shutil.disk_usage as a file system with ``free`` bytes free; returns the folders it was asked about."""
    asked = []

    def usage(path):
        asked.append(str(path))
        return Usage(1 << 40, (1 << 40) - free, free)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    return asked


@pytest.fixture
def tmpdir_(monkeypatch, tmp_path) -> Path:
    """A temporary folder of its own, as TMPDIR would give (tempfile caches gettempdir(): set it directly)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def tight_gb(shape=SHAPE, detectors=("GRX",)) -> float:
    """A --max_memory_gb that fits the working set but not the preprocessed cube: the cube goes to a file."""
    h, w, b = shape
    probe = plan_scene(shape, list(detectors), DetectorOptions(), 1 << 30)
    budget = probe.working + 4 * h * w * b // 2
    plan = plan_scene(shape, list(detectors), DetectorOptions(), budget)
    assert not plan.input_in_memory and plan.temp_file_bytes(shape) == 4 * h * w * b
    return budget / 2**30


def write_scene(folder: Path, shape=SHAPE) -> Path:
    rng = np.random.default_rng(0)
    cube = rng.normal(100, 5, size=shape).astype(np.float32)
    mask = np.zeros(shape[:2], bool)
    mask[10, 12] = True
    cube[10, 12] += 50
    np.save(folder / "big.npy", cube)
    mask_png(mask).save(folder / "big.png")
    return folder / "big.npy"


def argv(scene: Path, save_dir: Path, *extra: str) -> list[str]:
    return ["--scenes", str(scene), "--input_channel", str(SHAPE[2]), "--detectors", "GRX", "--no-progress",
            "--save_dir", str(save_dir), "--max_memory_gb", f"{tight_gb():.9f}", *extra]


# ---- the check before any work ------------------------------------------------------------------------

def test_test_py_refuses_a_full_tmpdir_before_any_work(test_cli, tmp_path, tmpdir_, monkeypatch, capsys):
    asked = free_space(monkeypatch, 1 << 20)
    monkeypatch.setattr(pipeline.sources, "reserve", lambda *a: pytest.fail("a temporary file was made"))
    scene = write_scene(tmp_path)
    assert test_cli.main(argv(scene, tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0] == (f"test.py: error: {scene}: the 96 x 96 x 40 scene needs 1.4 MiB of temporary files in "
                      f"{tmpdir_} (its cubes do not fit in the memory budget) but only 1.0 MiB is free there: set "
                      "TMPDIR to a folder with more room, or raise --max_memory_gb GiB (the cubes are then held in "
                      "memory)")
    assert asked == [str(tmpdir_)] and not (tmp_path / "r").exists() and not list(tmpdir_.iterdir())


def test_test_py_with_room_runs_through_a_temporary_file_and_leaves_nothing(test_cli, tmp_path, tmpdir_,
                                                                            monkeypatch, capsys):
    reserved = []
    real = pipeline.sources.reserve
    monkeypatch.setattr(pipeline.sources, "reserve", lambda fd, n, d: (reserved.append(n), real(fd, n, d)))
    free_space(monkeypatch, 2 << 20)
    assert test_cli.main(argv(write_scene(tmp_path), tmp_path / "r")) == 0
    assert "preprocessed cube in a temporary file" in capsys.readouterr().err
    assert reserved == [4 * np.prod(SHAPE)] and not list(tmpdir_.iterdir())


def test_a_scene_held_in_memory_needs_no_disk(test_cli, tmp_path, tmpdir_, monkeypatch, capsys):
    """No free byte in $TMPDIR: a scene within the default --max_memory_gb is never asked to reserve one, leaves
    nothing there, and is scored (GRX finds the one planted pixel)."""
    import json

    free_space(monkeypatch, 0)
    monkeypatch.setattr(pipeline.sources, "reserve", lambda *a: pytest.fail("a temporary file was made"))
    out = tmp_path / "r"
    assert test_cli.main(argv(write_scene(tmp_path), out)[:-2] + ["--json", str(out / "r.json")]) == 0
    assert "temporary file" not in capsys.readouterr().err and not list(tmpdir_.iterdir())
    assert json.loads((out / "r.json").read_text())["scenes"][0]["auc"]["GRX"] == 1.0


@examples(12)
@given(h=st.integers(8, 40), w=st.integers(8, 40), b=st.integers(2, 12),
       in_memory=st.booleans(), enhanced_in_memory=st.booleans(), tile=st.sampled_from([8, 16, 64]),
       n=st.integers(1, 3))
def test_temporary_files_never_exceed_the_plan(h, w, b, in_memory, enhanced_in_memory, tile, n):
    """Whatever the plan, the bytes reserved at once in temporary files (scenes one after the other) never
    exceed what TilePlan.temp_file_bytes told the check."""
    plan = TilePlan(tile, in_memory, enhanced_in_memory, 0, 0)
    live, peak = [0], [0]
    real_empty = SceneCube.empty.__func__

    def counting(cls, shape, in_memory=True, directory=None):
        cube = real_empty(cls, shape, in_memory, directory)
        if not in_memory:
            live[0] += 4 * int(np.prod(shape))
            peak[0] = max(peak[0], live[0])
            cube._weakref_guard = _Release(4 * int(np.prod(shape)), live)
        return cube

    rng = np.random.default_rng(h * w * b)
    sources = [SceneCube(rng.normal(size=(h, w, b)).astype(np.float32), b, 0, f"s{k}") for k in range(n)]
    for s in sources:
        s.check()
    torch.manual_seed(0)
    fen = FEN(b, hidden=8).eval()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SceneCube, "empty", classmethod(counting))
        for _ in pipeline_on(plan, ["GRX", "FEN+GRX"], fen, DetectorOptions(), torch.device("cpu")).run(sources):
            pass
    assert peak[0] <= plan.temp_file_bytes((h, w, b))


class _Release:
    """Takes its bytes off the live count when the stored SceneCube holding it goes."""

    def __init__(self, nbytes: int, live: list[int]) -> None:
        self.nbytes, self.live = nbytes, live

    def __del__(self) -> None:
        self.live[0] -= self.nbytes


def test_check_temp_space_counts_the_largest_scene(tmp_path, monkeypatch):
    asked = free_space(monkeypatch, 3 << 20)
    check_temp_space([("a", (10, 10, 10), 2 << 20), ("b", (10, 10, 10), 3 << 20), ("c", (1, 1, 1), 0)],
                     str(tmp_path))
    with pytest.raises(DiskFullError, match=r"^b: the 20 x 30 x 40 scene needs 4.0 MiB of temporary files in "):
        check_temp_space([("a", (10, 10, 10), 2 << 20), ("b", (20, 30, 40), 4 << 20)], str(tmp_path))
    check_temp_space([("a", (10, 10, 10), 0)])  # nothing on disk: no query at all
    assert asked == [str(tmp_path)] * 2


# ---- the reservation --------------------------------------------------------------------------------

def test_reservation_failing_with_enospc_is_one_error_and_leaves_no_file(tmpdir_, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(DiskFullError) as err:
        SceneCube.empty((50, 60, 7), in_memory=False)
    assert str(err.value) == (f"temporary file in {tmpdir_}: no room for the 0.1 MiB of a cube (No space left on "
                              "device): set TMPDIR to a folder with more room, or raise max_memory_gb=<GiB> (the "
                              "cubes are then held in memory)")
    assert not list(tmpdir_.iterdir())


def test_without_fallocate_the_file_is_filled_and_a_full_disk_is_still_an_error(tmpdir_, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    cube = SceneCube.empty((9, 8, 3), in_memory=False)
    values = np.arange(9 * 8 * 3, dtype=np.float32).reshape(9, 8, 3)
    cube.write(0, 0, values)
    np.testing.assert_array_equal(cube.block(0, 9), values)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(DiskFullError, match="no room for"):
        SceneCube.empty((9, 8, 3), in_memory=False)
    monkeypatch.setattr(os, "write", real_write)
    del cube
    assert not list(tmpdir_.iterdir())


def test_real_reservation_allocates_the_blocks(tmpdir_):
    """posix_fallocate on this file system: the blocks exist before the first write (no sparse file)."""
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate here")
    seen = {}
    real = pipeline.sources.reserve

    def spy(fd, n, d):
        real(fd, n, d)
        seen["blocks"] = os.fstat(fd).st_blocks * 512

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline.sources, "reserve", spy)
        SceneCube.empty((64, 64, 16), in_memory=False)
    assert seen["blocks"] >= 4 * 64 * 64 * 16


def test_ctrl_c_the_moment_the_cube_file_exists_leaves_nothing_behind(tmp_path, monkeypatch):
    """The cube's spill file, like every temporary, is named before it is created: a KeyboardInterrupt that
    lands right after the creation (a SIGINT handed to one of torch's threads) leaves no file."""
    interrupt_after_open(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        SceneCube.empty((8, 8, 4), in_memory=False, directory=str(tmp_path))
    monkeypatch.undo()
    assert not list(tmp_path.iterdir())
    cube = SceneCube.empty((8, 8, 4), in_memory=False, directory=str(tmp_path))  # and as it should be: no file either
    assert cube.array.shape == (8, 8, 4) and not list(tmp_path.iterdir())


# ---- a disk that fills while results are written ---------------------------------------------------------

def test_full_disk_while_writing_a_result_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "auc.csv"
    target.write_text("old\n")
    with pytest.raises(DiskFullError, match=rf"^{target}: the disk is full \(No space left on device\) while "):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["auc.csv"]


LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
{code}
"""


def run_limited(code: str, limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python whose files may not grow past ``limit`` bytes (RLIMIT_FSIZE): a real
    failing write() at the OS level, as a full disk gives, without filling the disk of the machine."""
    return subprocess.run([sys.executable, "-c", LIMITED.format(limit=limit, code=code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})


def test_torch_write_that_hits_the_wall_is_one_line_and_keeps_the_old_file(tmp_path):
    """torch.save's C++ writer, stopped by a real failing write(), says only "unexpected pos N vs M" (what a
    full disk gave in CI): save_torch names the file and the cause, keeps the old file, leaves no temporary."""
    target = tmp_path / "last_8bands.pt"
    torch.save({"old": torch.ones(3)}, target)
    before = target.read_bytes()
    code = ("import torch\nfrom utils.io import save_torch\nfrom utils.errors import DiskFullError\n"
            "try:\n    save_torch({'w': torch.zeros(1 << 20)}, 'last_8bands.pt')\n"
            "except DiskFullError as err:\n    print(err)\n")
    done = run_limited(code, 1 << 20, tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert done.stdout.strip() == ("last_8bands.pt: the disk is full (File too large) while writing it; it was "
                                   "left as it was: free space in .")
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last_8bands.pt"]


def test_a_torch_error_that_is_not_about_room_is_not_called_a_full_disk(tmp_path, monkeypatch):
    def failing(obj, f, *a, **k):
        Path(f).write_bytes(b"PK half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # the disk has room: torch's own error, as it is
        save_torch({"x": 1}, tmp_path / "last_8bands.pt")
    assert not list(tmp_path.iterdir())


def test_a_full_file_system_is_a_full_disk_even_if_the_probe_fits(tmp_path, monkeypatch):
    """Less than the probe's 1 MiB left (statvfs) counts as full: the probe may have taken the last bytes."""

    def failing(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    vfs = os.statvfs(tmp_path)
    monkeypatch.setattr(torch, "save", failing)
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result(
        (vfs.f_bsize, 4096, 10, 10, 10, 0, 0, 0, 0, 255)))  # 40 KiB free
    with pytest.raises(DiskFullError, match="last_8bands.pt: the disk is full \\(No space left on device\\)"):
        save_torch({"x": 1}, tmp_path / "last_8bands.pt")
    assert not list(tmp_path.iterdir())


def test_train_py_that_fills_the_disk_ends_in_one_line_and_keeps_what_it_saved(tmp_path):
    """train.py whose 1 GB checkpoint meets a real failing write(): exit code 2, one line naming the file,
    the FEN and the AUC table saved before it intact, no temporary left."""
    from data.synthetic import generate
    from test_train import args

    data = generate(tmp_path / "had", n_train=2, n_test=1, size=16, bands=10)
    save = tmp_path / "ck"
    code = f"import sys, train\nsys.exit(train.main({args(data, save, '--epochs', '1')!r}))"
    done = run_limited(code, 64 << 20, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and lines[-1] == (
        f"train.py: error: {save / 'last_8bands.pt'}: the disk is full (File too large) while writing it; "
        f"it was left as it was: free space in {save}")
    assert not list(save.glob(".*.tmp")) and not (save / "last_8bands.pt").exists()
    assert fen_from_checkpoint(save / "fen_8bands.pt").bands == 8


def test_test_py_disk_full_mid_run_is_one_line_and_no_partial_result(test_cli, tmp_path, monkeypatch, capsys):
    scene = write_scene(tmp_path)

    def full(fh, **arrays):
        fh.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", full)
    assert test_cli.main(argv(scene, tmp_path / "r")[:-2]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        f"test.py: error: {tmp_path / 'r' / 'scores' / 'big.npz'}: the disk is full (No space left on device) "
        "while writing it; it was left as it was")
    assert [p.name for p in (tmp_path / "r").rglob("*")] == ["scores"]
    save_text("x", tmp_path / "ok.txt")  # later writes work as before


# ---- leftovers of a killed test.py, and Ctrl-C (items 4 and 7) ---------------------------------------------

def small_scene(folder: Path) -> Path:
    rng = np.random.default_rng(1)
    np.save(folder / "s.npy", rng.normal(100, 5, (10, 10, 4)).astype(np.float32))
    mask = np.zeros((10, 10), bool)
    mask[3, 4] = True
    mask_png(mask).save(folder / "s.png")
    return folder / "s.npy"


def test_temporaries_of_a_killed_test_py_are_removed_at_the_next_start(test_cli, tmp_path):
    """kill -9 while scores/s.npz is written: the temporary file stays; the next run removes it (and those
    in --save_dir and beside --json), and leaves other hidden files alone."""
    import signal

    scene, save = small_scene(tmp_path), tmp_path / "r"
    argv = ["--scenes", str(scene), "--input_channel", "4", "--detectors", "GRX", "--no-progress",
            "--save_dir", str(save), "--json", str(tmp_path / "j" / "out.json")]
    child = f"""
import os, signal, sys
import numpy as np
def dying(fh, **arrays):  # half a file, then die as with kill -9
    fh.write(b"PK half")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
np.savez_compressed = dying
from utils.cli import load_script
load_script(__import__("pathlib").Path("test.py"), "t").main({argv!r})
"""
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    left = list(save.rglob(".*.tmp"))
    assert [p.parent.name for p in left] == ["scores"]
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / ".out.json.abcd1234.tmp").write_text("{")
    (save / ".auc.csv.zz99zz99.tmp").write_text("half")
    (save / ".keep.tmp").write_text("not ours")
    assert test_cli.main(argv) == 0
    assert sorted(p.name for p in tmp_path.rglob(".*")) == [".keep.tmp"]
    assert (save / "scores" / "s.npz").is_file()


def test_ctrl_c_in_test_py_is_one_line_and_code_130(test_cli, tmp_path, monkeypatch, capsys):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    import pipeline.evaluate

    monkeypatch.setattr(pipeline.evaluate, "save_npz", interrupt)
    scene = small_scene(tmp_path)
    assert test_cli.main(["--scenes", str(scene), "--input_channel", "4", "--detectors", "GRX", "--no-progress",
                          "--save_dir", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("test.py: interrupted;")
    assert not (tmp_path / "r" / "auc.csv").exists() and not list((tmp_path / "r").rglob(".*.tmp"))


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_inside_numpys_zip_writer_is_an_interrupt_not_zipfiles_error(tmp_path, monkeypatch):
    """A Ctrl-C (a real SIGINT) while numpy has a zip member open: unheld, numpy's ``finally`` raised zipfile's
    ValueError instead of the interrupt; save_npz holds it to the end of the write and raises the interrupt,
    leaving no file behind and nothing for the archive's ``__del__`` to complain of."""
    import gc
    import signal
    import zipfile

    from utils.io import save_npz

    opened = zipfile.ZipFile._open_to_write

    def interrupted(self, *args, **kwargs):
        handle = opened(self, *args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # arrives while the member is open: zipfile cannot close the archive
        return handle

    monkeypatch.setattr(zipfile.ZipFile, "_open_to_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_npz(tmp_path / "s.npz", GRX=np.zeros((3, 3)), LRX=np.ones((3, 3)))
    gc.collect()
    assert list(tmp_path.iterdir()) == []
