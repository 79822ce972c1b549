"""Timing and command-line helpers shared by the benchmark scripts."""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from utils.device import pick_device, sync


def best_seconds(fn: Callable[[], object], repeat: int, device: torch.device | None = None) -> float:
    """Fastest of ``repeat`` wall-clock runs of ``fn`` (the least disturbed by other load on the machine);
    on CUDA the queued work is waited for at both ends."""
    times = []
    for _ in range(max(1, repeat)):
        if device is not None:
            sync(device)
        start = time.perf_counter()
        fn()
        if device is not None:
            sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def bench_parser(doc: str, repeat: int) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--repeat``, ``--device``, ``--threads``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p


def bench_device(args: argparse.Namespace) -> tuple[torch.device, str]:
    """Apply ``--threads``, pick ``--device``; returns it and the header naming torch, device and threads."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    return device, f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads"
