"""Device choice, CPU threads, mixed-precision types, timing that is honest on GPUs, and the CPU's name."""
from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from typing import Iterator

import torch

from utils.errors import FerdError


class DeviceError(FerdError, ValueError):
    """A ``--device`` that does not exist on this machine (one line, exit code 2; also a ValueError)."""


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given (``cpu``, ``cuda``, ``cuda:1``), else CUDA when available, else CPU.

    Leaves PyTorch's float32 settings as they are: see :func:`full_fp32` for where they change.
    """
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise DeviceError(f"--device {name}: not a device this program runs on; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def full_fp32(device: torch.device) -> None:
    """Turn TF32 off for convolutions and matrix products on CUDA, for the rest of the process.

    test.py calls it: cuDNN runs float32 convolutions in TF32 by default, which moves FEN outputs by about
    1e-3 and the reference AUCs with them. train.py does not: the authors trained with PyTorch's defaults,
    and training speed is what TF32 is for. No effect on the CPU.
    """
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


#: ``--amp_dtype`` values: the half-precision types of automatic mixed precision (fp16 needs a gradient scaler).
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch CPU threads (float32 summation order, so the last digits, follows it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def warm_up_linalg(device: torch.device) -> None:
    """Create the GPU's cuBLAS and cuSOLVER handles and workspaces now, with tiny float64 problems of the kinds the
    detectors solve (products, eigendecomposition, single and batched Cholesky, triangular and Cholesky solves):
    else the first detector's timed seconds pay for them. Nothing on the CPU."""
    if device.type != "cuda":
        return
    a = torch.eye(4, dtype=torch.float64, device=device) * 2
    batch = a.expand(2, 4, 4).contiguous()
    b = a @ a
    torch.linalg.eigh(b)
    for m in (a, batch):
        factor, _ = torch.linalg.cholesky_ex(m)
        torch.linalg.solve_triangular(factor, m, upper=False)
        torch.cholesky_solve(m, factor)
    sync(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """``with Timer(device) as t: ...`` then ``t.seconds``; waits for queued GPU work at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> "Timer":
        sync(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._start


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (speed-ups differ between an Intel AVX-512 and an AMD AVX2
    machine: every speed figure, and the test suite's header, names it)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
