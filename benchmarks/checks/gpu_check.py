"""Verify and time everything only a GPU shows, in one go: ``make gpu-check`` (at most 10 minutes on one H200).

    FERD_WEIGHTS_DIR=../shared/ferd-release python benchmarks/checks/gpu_check.py [--budget 420] [--json PATH]

Each check runs in processes of its own, under its own time limit (its cap, or what is left of ``--budget``),
and prints one line: ``PASS``, ``FAIL`` (the script goes on to the next) or ``SKIP`` (does not apply here, or
not started or cut by the end of ``--budget``: the line says which), then its seconds and figures. The last
line counts them: ``N passed, M failed, K skipped``. Every figure goes to ``--json`` (default
results/gpu_check.json), rewritten atomically after each check, so a failed or cut run still leaves a complete
file; each process's output goes to a log beside it (results/gpu_check_logs/).

The checks, in order of value (a GPU may be lent for minutes: what matters most runs first); the caps of their
processes add up to at most the default budget (benchmarks/checks/gpu_check_commands.py ``CAPS``, ``RUNS``):

  cuda_tests     the CUDA-only tests of tests/ (``-k cuda``: LRX, SLRX and CRD against the CPU, the tiled
                 pipeline on CUDA, the float32 flags); none may be skipped (a skip's reason is quoted)
  reference      the 8 released-weight reference rows (4 weight sets x abu-airport-1, -2; GRX and FEN+GRX) on
                 ``--device cuda`` in one process, to 4 decimals (detectors/reference.py REFERENCE_AUCS; an AUC
                 within 1e-5 of the rounding edge counts, as float32 summation order moves the 6th digit)
  train          train.py on a small synthetic set: fp32, ``--amp`` (bf16), and twice ``--deterministic``
                 (the two FEN checkpoints and training states must be identical)
  ddp_train      torchrun train.py, 2 processes on 2 GPUs (NCCL), 2 steps; SKIP on one GPU (NCCL takes one
                 device per process; DDP on gloo is tested on the CPU, tests/test_ddp.py)
  torchrun       torchrun test.py on 2 GPUs (4 ABU scenes) against one process, the FEN batches alike; SKIP
                 with fewer GPUs
  bench_train    benchmarks/speed/bench_train.py on CUDA: seconds per step, batch 16 x 50 x 64 x 64, fp32 and bf16
  scale_512      test.py on a 512 x 512 x 200 synthetic cube, GRX and SLRX with and without the FEN, on the CPU
                 and on CUDA: the same AUCs to 4 decimals
  scale_2048     test.py on a 2048 x 2048 x 200 cube (3.2 GB) on CUDA, every detector (LRX and FEN+LRX in a
                 second process): seconds and peak GPU memory
  transfer       benchmarks/studies/abu_transfer.py --setting gpu (64 x 64 patches, batch 16, 60 epochs) and its
                 airport table, cut to as many epochs as the remaining budget allows (said so)

The synthetic cubes are written by benchmarks/speed/bench_scale.py in the background from the start, into a
temporary ``--work`` folder removed at the end (``--keep`` keeps it). Exit code 0 if nothing failed, 1 if a
check failed, 2 at once on a machine without CUDA.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from detectors.reference import REFERENCE_AUCS  # noqa: E402
from utils.io import save_json  # noqa: E402

from benchmarks.checks.gpu_check_commands import (  # noqa: E402,F401
    BUDGET, CAPS, CUDA_TEST_FILES, EPOCH_OVERHEAD, MIN_START, RUNS, SCALE_512, SHARED, TRANSFER_EPOCHS,
    TRANSFER_STEPS_PER_EPOCH, ALL_DETECTORS, CheckFailed, Context, SkipCheck, commands, kill_group, torchrun_cmd,
    weights_dir)
from benchmarks.checks.gpu_check_train import (check_bench_train, check_ddp_train, check_train,  # noqa: E402,F401
                                        synthetic_set, tensors_equal)
# ----------------------------------------------------------------------------------------------- checks

def results_of(folder: Path) -> dict:
    return json.loads((folder / "r.json").read_text())


def peak_mib(folder: Path) -> float | None:
    path = folder / "peak.json"
    return json.loads(path.read_text()).get("peak_cuda_mib") if path.is_file() else None


def check_cuda_tests(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    out = ctx.run("cuda_tests", cmds["cuda_tests"], CAPS["cuda_tests"])
    lines = out.strip().splitlines()
    summary = lines[-1] if lines else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", summary)}
    if counts.get("skipped") or not counts.get("passed"):
        reasons = [line for line in lines if line.startswith("SKIPPED")]  # -rs: each skip's reason
        raise CheckFailed(f"cuda_tests: {summary}; " + ("; ".join(reasons) or "no test passed"), {"counts": counts})
    return counts, summary


#: How far beyond the 4-decimal rounding interval of a reference figure an AUC may fall and still count: the
#: 6th digit moves with float32 summation order (CPU threads, GPU kernels), and one row (had100-200,
#: abu-airport-2, FEN+GRX 0.982251 on the CPU) sits 1e-6 above the 0.98225 edge.
EDGE = 1e-5


def equals_reference(auc: float, ref: float) -> bool:
    """``auc`` rounds to the 4-decimal ``ref``, or lies within :data:`EDGE` of that rounding interval."""
    return round(auc, 4) == ref or abs(auc - ref) <= 5e-5 + EDGE


def check_reference(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    rows, wrong, edge = [], [], []
    ctx.run("reference", cmds["reference"], CAPS["reference"])
    for (weights, bands), ref in REFERENCE_AUCS.items():
        got = {s["name"]: s["auc"] for s in results_of(ctx.work / f"reference_{weights}_{bands}")["scenes"]}
        for scene, (grx, fen_grx) in ref.items():
            raw = (got[scene]["GRX"], got[scene]["FEN+GRX"])
            ours = tuple(round(v, 4) for v in raw)
            rows.append({"weights": weights, "bands": bands, "scene": scene, "reference": [grx, fen_grx],
                         "cuda": ours, "cuda_raw": list(raw)})
            if not all(equals_reference(v, r) for v, r in zip(raw, (grx, fen_grx))):
                wrong.append(f"{weights}-{bands} {scene}: {ours} != {(grx, fen_grx)}")
            elif ours != (grx, fen_grx):
                edge.append(f"{weights}-{bands} {scene} {raw}")
    if wrong:
        raise CheckFailed(f"reference: {len(wrong)} of {len(rows)} rows differ: " + "; ".join(wrong), {"rows": rows})
    at_edge = f" ({len(edge)} at the rounding edge: {'; '.join(edge)})" if edge else ""
    return {"rows": rows}, f"{len(rows)} of {len(rows)} rows equal the reference to 4 decimals on CUDA{at_edge}"


def wait_for_cubes(ctx: Context) -> None:
    """The background writer of the synthetic cubes, waited for (at most what is left of its cap)."""
    if ctx.cubes is None:
        raise CheckFailed("cubes: the cube writer did not start")
    if ctx.cubes.poll() is None and ctx.left() < MIN_START:
        raise SkipCheck(f"cubes: not ready and {max(0.0, ctx.left()):.0f} s left of --budget")
    limit = ctx.limit(CAPS["cubes"])
    try:
        rc = ctx.cubes.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        kill_group(ctx.cubes)
        if limit < CAPS["cubes"]:
            raise SkipCheck(f"cubes: not ready when --budget ended ({limit:.0f} s waited)") from None
        raise CheckFailed("cubes: bench_scale.py --make_only did not finish in time") from None
    if rc != 0:
        raise CheckFailed(f"cubes: bench_scale.py --make_only exit code {rc} (log {ctx.logs / 'cubes.log'})")


def ran(ctx: Context, name: str, cmd: list[str], failed: list[str], cut: list[str]) -> bool:
    """Run one command of a check that keeps going: whether it ran; if not, its failure goes to ``failed`` or
    its cut (the budget ended) to ``cut``."""
    try:
        ctx.run(name, cmd, CAPS[name])
    except CheckFailed as err:
        failed.append(str(err))
        return False
    except SkipCheck as err:
        cut.append(str(err))
        return False
    return True


def check_scale_512(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    wait_for_cubes(ctx)
    auc: dict[str, dict] = {"cpu": {}, "cuda": {}}
    figures, failed, cut = {"auc": auc, "seconds": {"cpu": {}, "cuda": {}}, "peak_cuda_mib": {}}, [], []
    for name, (folder, kind, _) in SCALE_512.items():
        kind = "cpu" if kind == "cpu" else "cuda"
        if not ran(ctx, name, cmds[name], failed, cut):  # the CPU may not fit its limit: what ran still counts
            continue
        scene = results_of(ctx.work / folder)["scenes"][0]
        auc[kind].update(scene["auc"])
        figures["seconds"][kind].update(scene["seconds"])
        if kind == "cuda":
            figures["peak_cuda_mib"][name] = peak_mib(ctx.work / folder)
    both = [d for d in ALL_DETECTORS if d in auc["cpu"] and d in auc["cuda"]]
    differ = [f"{d} {auc['cuda'][d]} vs {auc['cpu'][d]}" for d in both if not same4(auc["cpu"][d], auc["cuda"][d])]
    if differ:
        failed.insert(0, "CUDA AUCs differ from the CPU's to 4 decimals: " + ", ".join(differ))
    if failed:
        raise CheckFailed(f"scale_512 (compared: {' '.join(both) or 'none'}): " + "; ".join(failed + cut), figures)
    if cut:
        raise SkipCheck(f"scale_512 (compared: {' '.join(both) or 'none'}): " + "; ".join(cut))
    secs = {k: sum(v.values()) for k, v in figures["seconds"].items()}
    return figures, (f"512 x 512 x 200, {len(both)} detectors: CUDA AUCs = CPU AUCs to 4 decimals; detector "
                     f"seconds CUDA {secs['cuda']:.1f}, CPU {secs['cpu']:.1f}")


def same4(a: float | None, b: float | None) -> bool:
    """The same AUC to 4 decimals (or within 1e-5 of a rounding edge)."""
    if a is None or b is None:
        return a is b
    return round(a, 4) == round(b, 4) or abs(a - b) < 1e-5


def check_scale_2048(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    wait_for_cubes(ctx)
    figures, failed, cut = {}, [], []
    for name, folder in (("scale_2048", "s2048"), ("scale_2048_lrx", "s2048_lrx")):
        start = time.monotonic()
        if not ran(ctx, name, cmds[name], failed, cut):  # LRX may not fit its limit: the others still count
            continue
        scene = results_of(ctx.work / folder)["scenes"][0]
        figures[name] = {"auc": scene["auc"], "seconds": scene["seconds"], "wall": time.monotonic() - start,
                         "peak_cuda_mib": peak_mib(ctx.work / folder)}
    if failed:
        raise CheckFailed("scale_2048: " + "; ".join(failed + cut) + f" (done: {sorted(figures)})", figures)
    if cut:
        raise SkipCheck("scale_2048: " + "; ".join(cut) + f" (done: {sorted(figures)})")
    secs = {d: s for f in figures.values() for d, s in f["seconds"].items()}
    peak = max(f["peak_cuda_mib"] or 0 for f in figures.values())
    return figures, ("2048 x 2048 x 200 on CUDA: " + ", ".join(f"{d} {s:.1f} s" for d, s in secs.items())
                     + f"; peak GPU memory {peak / 1024:.1f} GiB")


def check_torchrun(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    import torch

    if torch.cuda.device_count() < 2:
        raise SkipCheck(f"torchrun: {torch.cuda.device_count()} CUDA device(s), 2 needed")
    ctx.run("torchrun_one", cmds["torchrun_one"], CAPS["torchrun"])
    ctx.run("torchrun_two", torchrun_cmd(ctx.work, ctx.args.abu), CAPS["torchrun"])
    one, two = (results_of(ctx.work / f) for f in ("torchrun_one", "torchrun_two"))
    aucs = lambda r: [(s["name"], s["auc"]) for s in r["scenes"]]
    if aucs(one) != aucs(two) or one["mean_auc"] != two["mean_auc"]:
        raise CheckFailed(f"torchrun: 2 GPUs gave {aucs(two)}, one process {aucs(one)}")
    return {"mean_auc": two["mean_auc"]}, ("2 processes on 2 GPUs: the same per-scene and mean AUCs, same order, "
                                           "FEN batches of 1 in both")


def transfer_epochs(ctx: Context) -> int:
    """Epochs of the transfer run that fit in what is left, from bench_train's fp32 step time."""
    step = ctx.report.get("bench_train", {}).get("figures", {}).get("fp32", {}).get("s_per_step", 0.1)
    per_epoch = TRANSFER_STEPS_PER_EPOCH * step + EPOCH_OVERHEAD
    spare = ctx.left() - 40  # start-up, reading the scenes, the final airport table
    return max(0, min(ctx.args.transfer_epochs, TRANSFER_EPOCHS, int(spare / per_epoch)))


def check_transfer(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    epochs = transfer_epochs(ctx)
    if epochs < 1:
        raise SkipCheck(f"transfer: {ctx.left():.0f} s left, not enough for one epoch")
    cmd = commands(ctx.work, ctx.args.abu, epochs)["transfer"]
    out = ctx.run("transfer", cmd, ctx.left() - 3)
    result = json.loads((ctx.work / "transfer" / "abu_transfer_gpu.json").read_text())
    table = out[out.find("| scene"):].strip()
    print(table)
    cut = "" if epochs >= TRANSFER_EPOCHS else f" (cut to {epochs} of {TRANSFER_EPOCHS} epochs to fit the budget)"
    means = ", ".join(f"{k} {v:.4f}" for k, v in result["mean_auc"].items())
    return {**result, "table": table}, f"{epochs} epochs{cut}; airport mean AUC: {means}"


#: In order of value (see RUNS in benchmarks/checks/gpu_check_commands.py, whose caps fit the default budget).
CHECKS: list[tuple[str, Callable[[Context, dict[str, list[str]]], tuple[dict, str]]]] = [
    ("cuda_tests", check_cuda_tests), ("reference", check_reference), ("train", check_train),
    ("ddp_train", check_ddp_train), ("torchrun", check_torchrun), ("bench_train", check_bench_train),
    ("scale_512", check_scale_512), ("scale_2048", check_scale_2048), ("transfer", check_transfer)]


# ----------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds for all checks together")
    p.add_argument("--json", type=Path, default=REPO / "results" / "gpu_check.json", help="every figure, here")
    p.add_argument("--work", type=Path, default=None, help="cubes and results (default: a temporary folder)")
    p.add_argument("--keep", action=argparse.BooleanOptionalAction, default=False, help="keep --work")
    p.add_argument("--abu", type=Path, default=SHARED / "data" / "abu", help="folder of the ABU .mat scenes")
    p.add_argument("--transfer_epochs", type=int, default=TRANSFER_EPOCHS,
                   help="at most this many epochs of the transfer run (fewer if the budget says so)")
    p.add_argument("--only", nargs="+", choices=[n for n, _ in CHECKS], default=None, help="run only these checks")
    args = p.parse_args(argv)
    if args.budget <= 0 or args.transfer_epochs < 1:
        p.error("--budget and --transfer_epochs must be positive")
    return args


def split_runs(argv: list[str]) -> list[list[str]]:
    """``-- A... -- B...`` -> ``[[A...], [B...]]`` (the test.py option lists of ``--child_peak``)."""
    runs: list[list[str]] = []
    for a in argv:
        if a == "--":
            runs.append([])
        elif runs:
            runs[-1].append(a)
        else:
            runs.append([a])
    return runs


def child_peak(argv: list[str]) -> int:
    """``--child_peak PATH -- <test.py options> [-- <test.py options> ...]``: test.py with each list of options in
    turn in this process (one start-up of torch and CUDA), then the peak CUDA memory to PATH; the exit code is
    the first non-zero one (the later runs still run)."""
    import torch

    from utils.cli import load_script

    path = Path(argv[0])
    cli = load_script(REPO / "test.py", "ferd_test_script")
    start = time.monotonic()
    codes = [cli.main(test_args) for test_args in split_runs(argv[1:])]
    rc = next((c for c in codes if c), 0)
    peak = max((torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())), default=0)
    save_json({"rc": rc, "peak_cuda_mib": peak / 2**20, "wall": time.monotonic() - start}, path)
    return rc


def record(ctx: Context, name: str, status: str, seconds: float, message: str, figures: dict) -> None:
    """One check's line on stdout and its entry in the JSON, written again at once."""
    ctx.report[name] = {"status": status, "seconds": round(seconds, 2), "message": message, "figures": figures}
    print(f"{status:4}  {name:<12} {seconds:6.1f} s  {message}", flush=True)
    save_json(ctx.report, ctx.args.json)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child_peak"]:
        return child_peak(argv[1:])
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check.py: error: needs a CUDA GPU, and torch sees none on this machine; run it where one is",
              file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="ferd-gpu-check-"))
    env = {**os.environ, "FERD_WEIGHTS_DIR": str(weights_dir()), "PYTHONUNBUFFERED": "1"}
    logs = args.json.parent / f"{args.json.stem}_logs"  # kept, unlike --work: the FAIL lines point here
    ctx = Context(args, work, logs, time.monotonic() + args.budget, env)
    ctx.report["machine"] = {"figures": {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
                                         "torch": torch.__version__, "budget_s": args.budget, "work": str(work)}}
    cmds = commands(work, args.abu, args.transfer_epochs)
    logs.mkdir(parents=True, exist_ok=True)
    wanted = [(n, f) for n, f in CHECKS if args.only is None or n in args.only]
    if any(n.startswith("scale") for n, _ in wanted):  # CPU work, while the GPU checks run
        with open(logs / "cubes.log", "w") as log:
            ctx.cubes = subprocess.Popen(cmds["cubes"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    try:
        for name, check in wanted:
            start = time.monotonic()
            if ctx.left() < MIN_START:
                record(ctx, name, "SKIP", 0.0, f"not started: {max(0.0, ctx.left()):.0f} s left of --budget "
                       f"{args.budget:g} s", {})
                counts["SKIP"] += 1
                continue
            try:
                figures, message = check(ctx, cmds)
                record(ctx, name, "PASS", time.monotonic() - start, message, figures)
                counts["PASS"] += 1
            except SkipCheck as err:
                record(ctx, name, "SKIP", time.monotonic() - start, str(err), {})
                counts["SKIP"] += 1
            except Exception as err:  # CheckFailed, or anything a check did not foresee: its line, then the next
                counts["FAIL"] += 1
                message = str(err) if isinstance(err, CheckFailed) else f"{type(err).__name__}: {err}"
                record(ctx, name, "FAIL", time.monotonic() - start, " ".join(message.split())[:600],
                       getattr(err, "figures", {}))
    finally:
        if ctx.cubes is not None and ctx.cubes.poll() is None:
            kill_group(ctx.cubes)
            ctx.cubes.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"figures in {args.json}, logs in {logs}")
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
