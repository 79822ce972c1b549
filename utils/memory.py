"""Memory: what is available on a device, the budget of one scene, and handing back the pages of a
memory-mapped file."""
from __future__ import annotations

import mmap
import os

import numpy as np
import torch

#: Default memory budget: this fraction of the available memory ...
BUDGET_FRACTION = 0.25
#: ... and at most this much (larger tiles and strips buy no speed: they only leave the caches).
BUDGET_CAP = 4 << 30


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes that can still be allocated on ``device``: free GPU memory (plus what torch has cached), or
    the system's available memory (``MemAvailable``; free pages where /proc is missing)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


#: A detector's chunks on a GPU (rx.py, lrx.py, crd.py): large, for few kernel launches, but at most this ...
GPU_CHUNK_CAP = 1 << 30
#: ... and at most this fraction of the GPU's memory (``--max_memory_gb`` bounds host memory, not the GPU's).
GPU_CHUNK_FRACTION = 1 / 32


def chunk_bytes(device: torch.device | str, cpu_bytes: int) -> int:
    """Bytes of one detector chunk on ``device``: ``cpu_bytes`` on the CPU; on a GPU :data:`GPU_CHUNK_CAP`, or
    :data:`GPU_CHUNK_FRACTION` of the card's memory where that is less (256 MiB on an 8 GiB card). A function
    of the device alone, never of the memory free at the moment: a scene's sums keep their order run to run."""
    device = torch.device(device)
    if device.type != "cuda":
        return cpu_bytes
    if not torch.cuda.is_available():  # an estimate for a GPU elsewhere (a plan made on the CPU): the cap
        return GPU_CHUNK_CAP
    total = torch.cuda.get_device_properties(device).total_memory
    return int(min(GPU_CHUNK_CAP, total * GPU_CHUNK_FRACTION))


def format_bytes(n: float, digits: int = 0) -> str:
    """``n`` bytes in GiB (one decimal) from 1 GiB, else in MiB with ``digits`` decimals."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.{digits}f} MiB"


def memory_budget(max_memory_gb: float | None = None) -> int:
    """Bytes the pipeline may hold for one scene: ``--max_memory_gb`` if given, else a quarter of the
    memory available now, at most 4 GiB (the machine is usually shared); never more than 90 % of what
    is available."""
    have = available_memory("cpu")
    if max_memory_gb is not None:
        return int(min(max_memory_gb * 2**30, 0.9 * have))
    return int(min(BUDGET_FRACTION * have, BUDGET_CAP))


def release_pages(array: object, part: np.ndarray | None = None) -> None:
    """Drop the resident pages of the memory map behind ``array`` (if any) from this process
    (``MADV_DONTNEED``): all of them, or those under ``part`` (a view of ``array`` just read or written).
    The data stay in the page cache (read-only file) or the file (shared map).

    A range, not the whole map, after each block: the kernel walks the page tables of the range it is
    given, and a 3.2 GB map walked for every 8 MB chunk cost a GRX pass 5x its time.
    """
    mm = None
    while array is not None and mm is None:
        mm = getattr(array, "_mmap", None)
        array = getattr(array, "base", None)
    if mm is None:
        return
    if part is None:
        mm.madvise(mmap.MADV_DONTNEED)
        return
    start = np.frombuffer(mm, dtype=np.uint8).ctypes.data  # where the map begins in memory
    low, high = np.lib.array_utils.byte_bounds(part)
    first = (low - start) // mmap.PAGESIZE * mmap.PAGESIZE
    last = min(len(mm), -(-(high - start) // mmap.PAGESIZE) * mmap.PAGESIZE)
    if last > first >= 0:
        mm.madvise(mmap.MADV_DONTNEED, first, last - first)
