"""Timing helper shared by the benchmark scripts."""
from __future__ import annotations

import time
from typing import Callable

import torch

from utils.device import sync


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
