"""Timing and command-line helpers shared by the benchmark scripts."""
from __future__ import annotations

import argparse
import os
from typing import Callable, Iterator

import numpy as np
import torch

from utils.device import Timer, cpu_model, full_fp32, pick_device

CPU = torch.device("cpu")


def run_seconds(fn: Callable[[], object], repeat: int, device: torch.device | None = None,
                warmup: int = 0) -> list[float]:
    """Wall-clock seconds of each of ``repeat`` runs of ``fn``, after ``warmup`` untimed ones; on CUDA the
    queued work is waited for at both ends (``utils.device.Timer``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeat)):
        with Timer(device or CPU) as t:
            fn()
        times.append(t.seconds)
    return times


def best_seconds(fn: Callable[[], object], repeat: int, device: torch.device | None = None) -> float:
    """Fastest of ``repeat`` wall-clock runs of ``fn`` (the least disturbed by other load on the machine)."""
    return min(run_seconds(fn, repeat, device))


def sgemm_rate(device: torch.device, repeat: int, n: int = 2048) -> float:
    """Best float32 GFLOP/s of ``repeat`` ``n x n`` products: the machine's peer rate for dense float32 work.

    On a CPU the stronger of torch's BLAS and numpy's: on an AMD CPU torch's MKL can trail numpy's
    OpenBLAS, and the peer must be the strongest product this machine has."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    rate = 2 * n ** 3 / best_seconds(lambda: a @ b, repeat, device) / 1e9
    if device.type == "cpu":
        na, nb = a.numpy(), b.numpy()
        na @ nb
        rate = max(rate, 2 * n ** 3 / best_seconds(lambda: na @ nb, repeat, device) / 1e9)
    return rate


def device_name(device: torch.device) -> str:
    """What runs the benchmark: the GPU's name, or the CPU model (``/proc/cpuinfo``), its cores and torch's
    threads (speed-ups differ between an Intel AVX-512 and an AMD AVX2 CPU: every figure names its machine)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def load_note() -> str:
    """The machine's 1-minute load average against its cores: other work shares the cores and moves the times."""
    try:
        return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "load unknown"


def bench_parser(doc: str, repeat: int) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--repeat``, ``--device``, ``--threads``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=repeat, help="timed runs")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p


def bench_device(p: argparse.ArgumentParser, argv: list[str] | None = None, inference: bool = True
                 ) -> tuple[argparse.Namespace, torch.device, str]:
    """Parse the options of ``p`` (a :func:`bench_parser`), apply ``--threads``, pick ``--device``; returns the
    options, the device and the header line naming torch, device and threads. ``inference``: full float32 on
    CUDA (no TF32), as test.py runs; training benchmarks keep PyTorch's defaults, as train.py does."""
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if inference:
        full_fp32(device)
    return args, device, f"torch {torch.__version__}, {device_name(device)} ({device}), {load_note()}"


def random_cubes(shapes: list[tuple[int, int, int]], device: torch.device
                 ) -> Iterator[tuple[tuple[int, int, int], np.ndarray, torch.Tensor]]:
    """For each ``(B, H, W)`` shape: the shape, a standard-normal float32 cube (seed 0) and the same cube as a
    tensor on ``device`` (a detector's cost does not depend on the values)."""
    for shape in shapes:
        cube = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        yield shape, cube, torch.from_numpy(cube).to(device)


def scores_and_seconds(detector: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeat: int,
                       device: torch.device) -> tuple[np.ndarray, float]:
    """``detector(x)`` once (the warm-up, and the scores compared) as numpy, and the fastest of ``repeat``
    timed runs after it."""
    scores = detector(x).cpu().numpy()
    return scores, best_seconds(lambda: detector(x), repeat, device)
