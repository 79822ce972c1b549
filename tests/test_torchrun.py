"""``torchrun test.py``: 2 CPU processes (gloo) share the scenes and write what one process writes; a bad scene on
one process stops both with one line."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import REPO, run_torchrun, worker_env

from data.synthetic import generate
from evaluation.provenance import read_csv_provenance

OPTIONS = ["--input_channel", "50", "--detectors", "GRX", "FEN+GRX", "--no-progress", "--device", "cpu"]


def launch(args: list[str], processes: int, weights: Path) -> subprocess.CompletedProcess:
    """test.py ``args`` alone (``processes`` 1) or under torchrun on 127.0.0.1, one thread each (2 busy cores)."""
    env = worker_env(FERD_WEIGHTS_DIR=str(weights))
    if processes > 1:
        return run_torchrun(["test.py", *args, *OPTIONS], env, REPO, 240, processes)
    return subprocess.run([sys.executable, "test.py", *args, *OPTIONS], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)


def by_hand(args: list[str], processes: int, weights: Path) -> list[subprocess.CompletedProcess]:
    """test.py ``args`` as ``processes`` processes started as torchrun would (its environment variables), so that
    each one's exit code and output can be checked: torchrun stops the others once one has exited."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = worker_env(FERD_WEIGHTS_DIR=str(weights), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                     WORLD_SIZE=str(processes), LOCAL_WORLD_SIZE=str(processes))
    started = [subprocess.Popen([sys.executable, "test.py", *args, *OPTIONS], cwd=REPO, text=True,
                                env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(processes)]
    done = []
    for p in started:
        out, err = p.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def without_seconds(csv: str) -> list[list[str]]:
    """A result CSV's cells less its last columns of seconds (and its provenance lines: :func:`made_of`)."""
    rows = [line.split(",") for line in csv.splitlines() if not line.startswith("# ")]
    keep = [i for i, name in enumerate(rows[0]) if not name.startswith("seconds")]
    return [[row[i] for i in keep] for row in rows]


def json_without_seconds(path: Path) -> dict:
    out = json.loads(path.read_text())
    for scene in out["scenes"]:
        scene.pop("seconds")
    out["provenance"].pop("created")
    return out


def made_of(provenance: dict) -> dict:
    """A provenance record less its time of writing."""
    return {k: v for k, v in provenance.items() if k != "created"}


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_two_processes_write_what_one_writes(tmp_path, release_dir):
    data = generate(tmp_path / "had", n_train=0, n_test=4, size=24, bands=50)
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        runs[n] = launch(["--data_path", str(data), "--save_dir", str(out), "--json", str(out / "r.json"),
                          "--save_mat", "--plots"], n, release_dir)
        assert runs[n].returncode == 0, runs[n].stderr[-3000:]
    one, two = tmp_path / "p1", tmp_path / "p2"
    assert files(one) == files(two)
    assert "4 scenes from" in runs[2].stderr and "x 2 processes" in runs[2].stderr
    table = lambda out: [line.split()[:3] for line in out.splitlines()]  # scene and the two AUCs, no seconds
    assert table(runs[1].stdout) == table(runs[2].stdout)
    for name in ("auc.csv", "roc3d.csv"):
        assert without_seconds((one / name).read_text()) == without_seconds((two / name).read_text())
        assert made_of(read_csv_provenance(one / name)) == made_of(read_csv_provenance(two / name))
    # the manifest lists the files of both processes
    manifest = [json.loads((out / "run.json").read_text()) for out in (one, two)]
    assert manifest[0]["files"] == manifest[1]["files"] == [f for f in files(one) if f != "run.json"]
    assert len(read_csv_provenance(two / "auc.csv")["scenes"]) == 4
    assert json_without_seconds(one / "r.json") == json_without_seconds(two / "r.json")
    for name in ("each_auc_GRX.txt", "each_auc_FEN_GRX.txt", "test_list.txt"):
        assert (one / name).read_text() == (two / name).read_text()
    for name in ("scores_GRX.mat", "scores_FEN_GRX.mat", "gts.mat", "mixfs.mat"):
        a, b = scipy.io.loadmat(one / name), scipy.io.loadmat(two / name)
        key = next(k for k in a if not k.startswith("__"))
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    for scores in (one / "scores").iterdir():
        with np.load(scores) as a, np.load(two / "scores" / scores.name) as b:
            assert a.files == b.files
            assert made_of(json.loads(str(a["provenance"]))) == made_of(json.loads(str(b["provenance"])))
            for k in a.files:
                if k != "provenance":
                    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_a_bad_scene_on_one_process_stops_both(tmp_path, release_dir):
    data = generate(tmp_path / "had", n_train=0, n_test=4, size=24, bands=50)
    scenes = []
    for k, cube_path in enumerate(sorted((data / "test" / "aviris_ng").glob("*.npy"))):
        cube = np.load(cube_path)
        if k == 1:  # the second scene: rank 1's, under the every-other-scene rule
            cube[3, 4, 5] = np.inf  # NaN would be nodata (left out); Inf is refused
        np.save(tmp_path / cube_path.name, cube)
        png = data / "ground_truth" / "aviris_ng" / f"{cube_path.stem}.png"
        (tmp_path / png.name).write_bytes(png.read_bytes())
        scenes.append(str(tmp_path / cube_path.name))
    out = tmp_path / "res"
    procs = by_hand(["--scenes", *scenes, "--save_dir", str(out), "--json", str(tmp_path / "r.json"), "--save_mat"],
                    2, release_dir)
    assert [p.returncode for p in procs] == [2, 2], procs[0].stderr[-3000:] + procs[1].stderr[-3000:]
    assert procs[0].stderr.strip().splitlines() == [f"test.py: error: {scenes[1]}: 1 NaN/Inf values in the bands "
                                                    "used; replace them (e.g. by interpolation) or choose other bands"]
    assert procs[1].stderr == "" and procs[0].stdout == procs[1].stdout == ""
    assert not (tmp_path / "r.json").exists()
    assert not out.exists() or files(out) == []


LIBRARY_UNDER_TORCHRUN = """
import atexit, os, sys


@atexit.register  # registered first, so it runs last: after the handler that ends the process group
def gloo_threads():
    threads = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    print(os.environ["RANK"], "at exit", " ".join(t for t in threads if "gloo" in t) or "-", flush=True)


from pipeline.evaluate import evaluate
from pipeline.settings import EvalSettings

# the group is made before the FEN imports torchvision, which imports torch._dynamo (training.run imports it too:
# imported after the first call, so that the test sees that case); the second call uses the same group
evaluate(EvalSettings(scenes=sys.argv[1:2], input_channel=50, detectors=["GRX", "FEN+GRX"], weights="had100",
                      save_dir=sys.argv[2], progress=False, device="cpu"))
from training.run import train
from training.settings import TrainSettings

train(TrainSettings(train_scenes=sys.argv[1:2], input_channel=8, img_size=32, patch_stride=32, batch_size=2,
                    max_steps=1, teacher="random", select="last", eval_test=False, save_dir=sys.argv[3],
                    progress=False, device="cpu"))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names are read from Linux's /proc")
def test_the_process_group_and_its_threads_end_with_the_run(tmp_path, release_dir):
    """evaluate() then train() from Python under torchrun, in one process: they share the process group the
    first one made, and it ends at exit before Python shuts down, its gloo threads joined (a gloo thread that
    drops the last gather's tensors during the shutdown is killed asking for the GIL: "terminate called
    without an active exception", SIGABRT; utils.dist.hold_nothing_of_ours). Fails if torch._dynamo is imported
    after the group is made, or if the finished DDP model's reference cycle is not collected before the group
    is destroyed (either keeps the group, and its threads, alive)."""
    np.save(tmp_path / "plain.npy", np.random.default_rng(0).normal(10, 1, (64, 64, 50)).astype(np.float32))
    script = tmp_path / "library.py"
    script.write_text(LIBRARY_UNDER_TORCHRUN)
    env = worker_env(FERD_WEIGHTS_DIR=str(release_dir), PYTHONPATH=str(REPO))
    run = run_torchrun([script, tmp_path / "plain.npy", tmp_path / "res", tmp_path / "fen"], env, tmp_path, 240)
    assert run.returncode == 0, run.stderr[-3000:]
    said = sorted(line for line in run.stdout.splitlines() if line[:2] in ("0 ", "1 "))
    assert said == ["0 at exit -", "1 at exit -"], run.stdout  # no gloo thread left when Python shuts down
    assert (tmp_path / "fen" / "fen_8bands.pt").is_file()


def test_a_torchrun_that_hangs_is_ended_with_its_workers(tmp_path):
    """conftest.run_torchrun on timeout: torchrun and both workers gone (killed at once, torchrun leaves them)."""
    script = tmp_path / "hang.py"
    script.write_text("import os, pathlib, time\n"
                      "pathlib.Path(os.environ['PIDS'], os.environ['RANK']).write_text(str(os.getpid()))\n"
                      "time.sleep(600)\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    env = worker_env(PIDS=str(pids))
    with pytest.raises(subprocess.TimeoutExpired):
        run_torchrun([script], env, tmp_path, timeout=20)
    started = [int(f.read_text()) for f in pids.iterdir()]
    assert len(started) == 2
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
