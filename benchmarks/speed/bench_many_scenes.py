"""Memory of test.py over many scenes: the peak must not grow with the number of scenes.

    FERD_WEIGHTS_DIR=../shared/ferd-release python benchmarks/speed/bench_many_scenes.py [--counts 40 400] \
        [--size 64] [--bands 60] [--detectors GRX FEN+GRX] [--torchrun]

Writes HAD100-layout folders of ``--counts`` synthetic scenes (data/synthetic.py, ``--size`` px a side,
``--bands`` bands) under a temporary folder (deleted at the end), runs ``test.py --data_path <folder>
--input_channel 50`` on each (scores written, as by default) and samples the anonymous resident memory
(``RssAnon`` of ``/proc/<pid>/status``: what the process itself holds, not the pages of the files it maps)
of the process every 20 ms; with ``--torchrun`` also as 2 CPU processes (gloo), summed over the processes
and their launcher. Prints the peak of each run and its ratio to the first count's, with the CPU model.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from data.synthetic import generate  # noqa: E402
from utils.device import cpu_model  # noqa: E402


def rss_anon(pid: int) -> int:
    """Bytes of anonymous resident memory of process ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from ``/proc/<pid>/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def peak_rss_anon(cmd: list[str], env: dict[str, str], interval: float = 0.02) -> tuple[int, float, str]:
    """Run ``cmd``; the peak of its processes' summed RssAnon, its wall seconds and its stderr's last line."""
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, sum(rss_anon(p) for p in descendants(proc.pid)))
            time.sleep(interval)
        seconds = time.perf_counter() - start
        err.seek(0)
        lines = err.read().strip().splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"bench_many_scenes.py: error: {' '.join(cmd)} exited {proc.returncode}: "
                         f"{lines[-1] if lines else ''}")
    return peak, seconds, lines[-1] if lines else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[40, 400], help="scenes in each folder")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=60)
    p.add_argument("--detectors", nargs="+", default=["GRX", "FEN+GRX"])
    p.add_argument("--torchrun", action="store_true", help="also as 2 CPU processes under torchrun (gloo)")
    args = p.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "", "GLOO_SOCKET_IFNAME": "lo"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    runs = [("1 process", [sys.executable])]
    if args.torchrun:
        runs.append(("torchrun x 2", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                      "--nproc_per_node=2"]))
    print(f"{cpu_model()}, {os.cpu_count()} cores; {args.size} x {args.size} x {args.bands} synthetic scenes, "
          f"test.py --input_channel 50 --detectors {' '.join(args.detectors)}; peak RssAnon sampled every 20 ms")
    print(f"{'run':>14}  {'scenes':>6}  {'wall s':>7}  {'peak RssAnon MiB':>16}  {'vs first':>8}")
    with tempfile.TemporaryDirectory(prefix="ferd-many-") as tmp:
        folders = {n: generate(Path(tmp) / f"had{n}", n_train=0, n_test=n, size=args.size, bands=args.bands)
                   for n in args.counts}
        for label, runner in runs:
            first = None
            for n, folder in folders.items():
                cmd = runner + ["test.py", "--data_path", str(folder), "--input_channel", "50", "--device", "cpu",
                                "--detectors", *args.detectors, "--no-progress", "--save_dir", str(Path(tmp) / "out")]
                if label != "1 process":
                    run_env = {**env, "OMP_NUM_THREADS": "1"}  # each process one core, as tests/test_torchrun.py
                else:
                    run_env = env
                peak, seconds, _ = peak_rss_anon(cmd, run_env)
                first = first or peak
                print(f"{label:>14}  {n:6d}  {seconds:7.1f}  {peak / 2**20:16.0f}  {peak / first:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
