"""benchmarks/checks/gpu_check.py (``make gpu-check``) without a GPU: it stops at once with one line, every command it
builds parses with its script's own parser, and one failing check does not stop the others."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, load_script
from torch.distributed.run import get_args_parser

from benchmarks.checks import gpu_check, gpu_check_commands
from benchmarks.speed import bench_scale, bench_train
from benchmarks.studies import abu_transfer


def test_without_cuda_it_stops_at_once_with_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "benchmarks/checks/gpu_check.py", "--json", str(tmp_path / "g.json")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["gpu_check.py: error: needs a CUDA GPU, and torch sees none on this "
                                                "machine; run it where one is"]
    assert not (tmp_path / "g.json").exists()


@pytest.mark.parametrize("where", ["PY", "PYTHON"])
def test_make_target_starts_the_checks_with_a_python_that_has_torch(where, tmp_path):
    """``make gpu-check`` on a machine with torch installed and no network: the first of PY and PYTHON (python3)
    that imports torch runs the checks, no pip; here they stop at once (no GPU), which shows they started."""
    pythons = {"PY": str(tmp_path / "no-such-python"), "PYTHON": str(tmp_path / "no-such-python3"), where: sys.executable}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    # --no-print-directory: under `make test` (CI) this make is nested and would print "Entering directory"
    proc = subprocess.run(["make", "--no-print-directory", "gpu-check", *(f"{k}={v}" for k, v in pythons.items())],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[0] == f"{sys.executable} benchmarks/checks/gpu_check.py"
    assert "gpu_check.py: error: needs a CUDA GPU" in proc.stderr and "pip" not in proc.stdout + proc.stderr


def test_make_target_sets_up_the_venv_only_without_torch():
    proc = subprocess.run(["make", "--no-print-directory", "-n", "gpu-check"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    script = proc.stdout
    assert proc.returncode == 0 and ".venv/bin/python python3" in script and 'import torch' in script
    assert 'if [ -z "$py" ]; then' in script and "--no-print-directory setup" in script  # only without torch


def parse(script: str, argv: list[str]) -> None:
    """``argv`` through the parser of ``script``, as the check's process would parse it (exits on an error)."""
    if script == "test.py":
        load_script("test").parse_args(argv)
    elif script == "train.py":
        load_script("train").parse_args(argv)
    elif script == "benchmarks/speed/bench_train.py":
        bench_train.build_parser().parse_args(argv)
    elif script == "benchmarks/studies/abu_transfer.py":
        abu_transfer.parse_args(argv)
    elif script == "benchmarks/speed/bench_scale.py":
        bench_scale.parse_args(argv)
    elif script == "benchmarks/checks/gpu_check.py":
        assert argv[0] == "--child_peak" and argv[2] == "--"
        for run in gpu_check.split_runs(argv[2:]):
            parse("test.py", run)
    else:
        raise AssertionError(f"no parser known for {script}")


def test_every_command_parses(tmp_path):
    abu = REPO.parent / "shared" / "data" / "abu"
    cmds = gpu_check.commands(tmp_path, abu, 60)
    assert {"cuda_tests", "cubes", "scale_2048", "scale_2048_lrx", "transfer", "bench_train_bf16", "reference",
            "ddp_train"} <= set(cmds)
    assert len(gpu_check.split_runs(cmds["reference"][4:])) == 4  # 4 weight sets x 2 scenes = 8 rows, one process
    for name, cmd in cmds.items():
        assert cmd[0] == sys.executable, name
        if cmd[1:3] == ["-m", "pytest"]:
            assert all((REPO / f).is_file() for f in gpu_check.CUDA_TEST_FILES)
            continue
        if cmd[1:3] == ["-m", "torch.distributed.run"]:
            launch = get_args_parser().parse_args(cmd[3:])
            assert launch.nproc_per_node == "2" and launch.standalone
            parse(launch.training_script, launch.training_script_args)
            continue
        parse(cmd[1], cmd[2:])
    ddp = load_script("train").parse_args(cmds["ddp_train"][6:])
    assert ddp.device == "cuda" and ddp.max_steps == 2 and ddp.batch_size % 2 == 0
    torchrun = gpu_check.torchrun_cmd(tmp_path, abu)
    assert torchrun[1:3] == ["-m", "torch.distributed.run"]
    launch = get_args_parser().parse_args(torchrun[3:])
    assert launch.nproc_per_node == "2" and launch.standalone
    parse(launch.training_script, launch.training_script_args)
    one = load_script("test").parse_args(cmds["torchrun_one"][2:])
    two = load_script("test").parse_args(launch.training_script_args)
    assert one.fen_batch == two.fen_batch == 1  # the same FEN batches in one process and in two
    transfer = abu_transfer.parse_args(gpu_check.commands(tmp_path, abu, 12)["transfer"][2:])
    assert abu_transfer.epochs(transfer) == 12 and transfer.setting == "gpu"
    big = bench_train.build_parser().parse_args(cmds["bench_train_fp32"][2:])
    assert (big.batch_size, big.bands, big.img_size) == (16, 50, 64)


def test_the_cuda_tests_are_selected():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *gpu_check.CUDA_TEST_FILES, "-k", "cuda"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert any("test_lrx.py::test_cuda_equals_cpu" in c for c in collected)
    assert any("test_slrx.py::test_cuda_equals_cpu" in c for c in collected)
    assert any("test_tiling.py::test_real_scene_in_small_tiles_on_cuda" in c for c in collected)
    assert any("test_crd.py::test_cuda_equals_cpu" in c for c in collected)


def test_a_failing_check_is_reported_and_the_rest_still_run(tmp_path, monkeypatch, capsys):
    def passes(ctx, cmds):
        return {"x": 1}, "fine"

    def fails(ctx, cmds):
        raise gpu_check.CheckFailed("broken: exit code 1", {"partial": 2})

    def crashes(ctx, cmds):
        raise RuntimeError("unforeseen")

    def skips(ctx, cmds):
        raise gpu_check.SkipCheck("1 CUDA device(s), 2 needed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "fake GPU")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(gpu_check, "CHECKS", [("a", fails), ("b", crashes), ("c", skips), ("d", passes)])
    out = tmp_path / "g.json"
    rc = gpu_check.main(["--json", str(out), "--work", str(tmp_path / "work"), "--budget", "30"])
    assert rc == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:4]] == [["FAIL", "a"], ["FAIL", "b"], ["SKIP", "c"], ["PASS", "d"]]
    assert lines[-1] == "1 passed, 2 failed, 1 skipped"
    report = json.loads(out.read_text())
    assert [report[k]["status"] for k in "abcd"] == ["FAIL", "FAIL", "SKIP", "PASS"]
    assert report["a"]["figures"] == {"partial": 2} and "RuntimeError: unforeseen" in report["b"]["message"]
    assert report["machine"]["figures"]["gpu"] == "fake GPU"
    assert not (tmp_path / "work").exists()  # --work removed without --keep


@pytest.mark.parametrize("step,left,want", [(0.05, 300, 60), (0.05, 100, 18), (0.05, 30, 0)])
def test_transfer_epochs_fit_the_time_left(step, left, want, tmp_path):
    ctx = gpu_check.Context(gpu_check.parse_args([]), tmp_path, tmp_path, 0.0, {})
    ctx.deadline = gpu_check.time.monotonic() + left
    ctx.report["bench_train"] = {"figures": {"fp32": {"s_per_step": step}}}
    assert gpu_check.transfer_epochs(ctx) == want


def test_checkpoints_compare_tensors_not_metadata():
    a = {"state_dict": {"w": torch.ones(2)}, "meta": {"seconds": 1.0}}
    assert gpu_check.tensors_equal(a, {"state_dict": {"w": torch.ones(2)}, "meta": {"seconds": 2.0}})
    assert not gpu_check.tensors_equal(a, {"state_dict": {"w": torch.tensor([1.0, 1.5])}, "meta": {}})


class FakeRuns:
    """Stands in for :meth:`gpu_check.Context.run`: writes what each script would and returns its stdout."""

    def __init__(self, ctx, differ: bool = False):
        self.ctx, self.differ, self.names = ctx, differ, []

    def __call__(self, name, cmd, cap, env=None):
        self.names.append(name)
        if name.startswith("train_"):
            save = gpu_check.Path(cmd[cmd.index("--save_dir") + 1])
            save.mkdir(parents=True)
            w = torch.ones(3) * (2 if self.differ and name == "train_det2" else 1)
            torch.save({"state_dict": {"w": w}, "meta": {"epoch": 2}}, save / "fen_50bands.pt")
            torch.save({"model": {"w": w}, "history": [{"seconds": len(self.names)}]}, save / "last_50bands.pt")
            return ("epoch 1/2  step 2  loss 0.9589 (sim 0.8 rec 0.3 zc 0.7)  test mAUC 0.8\n"
                    "epoch 2/2  step 4  loss 0.4455 (sim 0.3 rec 0.01 zc 0.69)  test mAUC 0.8\n")
        if name.startswith("bench_train_"):
            return ("device H200 | amp off | batch 16 x 50 x 64 x 64 | 0.041 s/step (median of 10, mean 0.042) = "
                    "390.2 patches/s | peak RSS 3000 MiB | peak CUDA allocated 9123 MiB\n")
        if name == "transfer":
            out = gpu_check.Path(cmd[cmd.index("--out") + 1])
            out.mkdir(parents=True)
            (out / "abu_transfer_gpu.json").write_text(json.dumps({"epochs": int(cmd[-1]), "mean_auc": {"GRX": 0.9}}))
            return "setting gpu\n\n| scene | GRX |\n|---|---|\n| **mean** | **0.9000** |\n"
        raise AssertionError(name)


@pytest.mark.parametrize("differ", [False, True])
def test_train_check_reads_losses_and_compares_the_deterministic_runs(differ, tmp_path, monkeypatch):
    ctx = gpu_check.Context(gpu_check.parse_args([]), tmp_path, tmp_path / "logs", 1e12, {})
    monkeypatch.setattr(ctx, "run", FakeRuns(ctx, differ))
    if differ:
        with pytest.raises(gpu_check.CheckFailed, match="the two runs differ"):
            gpu_check.check_train(ctx, gpu_check.commands(tmp_path, tmp_path, 60))
        return
    figures, message = gpu_check.check_train(ctx, gpu_check.commands(tmp_path, tmp_path, 60))
    assert figures["fp32"]["losses"] == [0.9589, 0.4455] and figures["deterministic_identical"] == {
        "fen": True, "last": True}
    assert "deterministic checkpoints identical" in message
    assert not list(tmp_path.glob("train_*/last_*.pt"))  # 1 GB each on the real run: removed


def test_bench_train_and_transfer_checks_read_their_figures(tmp_path, monkeypatch, capsys):
    ctx = gpu_check.Context(gpu_check.parse_args([]), tmp_path, tmp_path / "logs", 0.0, {})
    monkeypatch.setattr(ctx, "run", FakeRuns(ctx))
    ctx.deadline = gpu_check.time.monotonic() + 100
    cmds = gpu_check.commands(tmp_path, tmp_path, 60)
    figures, message = gpu_check.check_bench_train(ctx, cmds)
    assert figures["bf16"] == {"s_per_step": 0.041, "peak_cuda_mib": 9123.0} and "fp32 0.0410 s/step" in message
    ctx.report["bench_train"] = {"figures": figures}
    figures, message = gpu_check.check_transfer(ctx, cmds)
    assert figures["epochs"] == 18 and "cut to 18 of 60 epochs" in message  # (100 - 40) s / (4 x 0.041 + 3) s
    assert "| **mean** | **0.9000** |" in capsys.readouterr().out


def test_caps_fit_the_default_budget_and_the_checks_go_by_value():
    planned = sum(gpu_check.CAPS[run] for runs in gpu_check.RUNS.values() for run in runs)
    assert planned <= gpu_check.BUDGET <= 420 and gpu_check.parse_args([]).budget == gpu_check.BUDGET
    names = [n for n, _ in gpu_check.CHECKS]
    assert names[:3] == ["cuda_tests", "reference", "train"] and names[-1] == "transfer"
    assert list(gpu_check.RUNS) == names  # every check's processes counted


def test_a_check_the_budget_leaves_no_time_for_is_skipped_not_failed(tmp_path, monkeypatch, capsys):
    def slow(ctx, cmds):
        ctx.deadline = gpu_check.time.monotonic() + gpu_check.MIN_START - 1  # as if it took all but a few seconds
        return {}, "fine"

    def late(ctx, cmds):
        raise AssertionError("started with too little time left")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "fake GPU")
    monkeypatch.setattr(gpu_check, "CHECKS", [("a", slow), ("b", late)])
    rc = gpu_check.main(["--json", str(tmp_path / "g.json"), "--work", str(tmp_path / "work")])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and lines[1].startswith("SKIP  b") and "not started: 9 s left of --budget 420 s" in lines[1]
    assert lines[-1] == "1 passed, 0 failed, 1 skipped"


def test_a_process_cut_by_the_budget_is_a_skip_and_one_past_its_cap_a_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check_commands, "MIN_START", 1)
    ctx = gpu_check.Context(gpu_check.parse_args([]), tmp_path, tmp_path / "logs", 0.0, dict(os.environ))
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    ctx.deadline = gpu_check.time.monotonic() + 2
    with pytest.raises(gpu_check.SkipCheck, match="sleepy: cut by the end of --budget after 2 s"):
        ctx.run("sleepy", sleep, 60)
    ctx.deadline = gpu_check.time.monotonic() + 60
    with pytest.raises(gpu_check.CheckFailed, match="sleepy: timed out after 2 s"):
        ctx.run("sleepy", sleep, 2)
    ctx.deadline = gpu_check.time.monotonic() + 0.5
    with pytest.raises(gpu_check.SkipCheck, match="sleepy: not started, 0 s left of --budget"):
        ctx.run("sleepy", sleep, 60)


def test_child_peak_runs_each_option_list():
    assert gpu_check.split_runs(["--", "--a", "1", "--", "--b"]) == [["--a", "1"], ["--b"]]
    assert gpu_check.split_runs(["--a"]) == [["--a"]]


def write_reference_results(work, edge_auc: float) -> None:
    """What the reference process writes: r.json per weight set, every row the reference AUC except had100-200's
    FEN+GRX on abu-airport-2, which is ``edge_auc``."""
    for (weights, bands), rows in gpu_check.REFERENCE_AUCS.items():
        scenes = []
        for scene, (grx, fen) in rows.items():
            if (weights, bands, scene) == ("had100", 200, "abu-airport-2"):
                fen = edge_auc
            scenes.append({"name": scene, "auc": {"GRX": grx, "FEN+GRX": fen}})
        folder = work / f"reference_{weights}_{bands}"
        folder.mkdir(parents=True)
        (folder / "r.json").write_text(json.dumps({"scenes": scenes}))


@pytest.mark.parametrize("auc,passes", [(0.98225, True), (0.982249, True), (0.98224, True), (0.98223, False),
                                        (0.98236, False)])
def test_reference_rows_compare_to_4_decimals_with_the_rounding_edge(auc, passes, tmp_path, monkeypatch):
    """had100-200 abu-airport-2 FEN+GRX is 0.9823 in the reference and 0.982251 on the CPU, a hair above the
    0.98225 edge: another summation order may give 0.982249, which rounds to 0.9822 and still counts."""
    ctx = gpu_check.Context(gpu_check.parse_args([]), tmp_path, tmp_path / "logs", 1e12, {})
    monkeypatch.setattr(ctx, "run", lambda name, cmd, cap, env=None: write_reference_results(tmp_path, auc))
    if not passes:
        with pytest.raises(gpu_check.CheckFailed, match="1 of 8 rows differ: had100-200 abu-airport-2"):
            gpu_check.check_reference(ctx, gpu_check.commands(tmp_path, tmp_path, 60))
        return
    figures, message = gpu_check.check_reference(ctx, gpu_check.commands(tmp_path, tmp_path, 60))
    assert message.startswith("8 of 8 rows equal the reference to 4 decimals on CUDA")
    assert ("at the rounding edge" in message) == (round(auc, 4) != 0.9823)


def test_cuda_tests_quote_the_skip_reasons(tmp_path, monkeypatch):
    ctx = gpu_check.Context(gpu_check.parse_args([]), tmp_path, tmp_path / "logs", 1e12, {})
    out = ("...s\nSKIPPED [1] tests/test_tiling.py:72: /x/shared/data/abu not found: tests of the released weights "
           "need the shared folder\n3 passed, 1 skipped, 40 deselected in 9.1s\n")
    monkeypatch.setattr(ctx, "run", lambda name, cmd, cap, env=None: out)
    with pytest.raises(gpu_check.CheckFailed, match=r"1 skipped.*SKIPPED \[1\] tests/test_tiling.py:72: /x/shared"):
        gpu_check.check_cuda_tests(ctx, gpu_check.commands(tmp_path, tmp_path, 60))


def test_ddp_training_needs_two_gpus_and_says_why(tmp_path, monkeypatch):
    ctx = gpu_check.Context(gpu_check.parse_args([]), tmp_path, tmp_path / "logs", 1e12, {})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(gpu_check.SkipCheck, match="1 CUDA device: NCCL takes one device per process"):
        gpu_check.check_ddp_train(ctx, {})
