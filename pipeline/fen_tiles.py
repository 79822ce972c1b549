"""The FEN over tiles: ``x + FEN(x)`` of a scene tile by tile (each with the FEN's receptive field of
context), or of several small scenes in one batch, tiles side by side on the CPU's cores."""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from model.fen import FEN, FEN_HALO, fused_forward_window
from detectors.base import reflected_window
from pipeline.sources import SceneCube

#: Smallest FEN tile core (px): see :func:`tile_edges`.
FEN_MIN_TILE = 16


def prepare_fen(fen: FEN) -> FEN:
    """``fen`` for inference here: eval mode, weights in channels-last layout (the tiles are channels-last,
    so the convolution library does not reorder them: measured 1.2-1.8x, benchmarks/speed/bench_fen.py)."""
    return fen.eval().to(memory_format=torch.channels_last)


@torch.no_grad()
def enhance_windows(fen: FEN, windows: np.ndarray, device: torch.device, add_input: bool = True) -> np.ndarray:
    """``(N, h + 2 halo, w + 2 halo, B)`` windows -> ``(N, h, w, B)`` cores of ``x + FEN(x)`` (``FEN(x)`` alone
    without ``add_input``), float32.

    ``(N, H, W, B)`` memory is the channels-last layout of ``(N, B, H, W)``: no copy either way.
    """
    x = torch.from_numpy(windows).to(device).permute(0, 3, 1, 2)
    out = fused_forward_window(fen, x, FEN_HALO)
    if add_input:
        out = x[:, :, FEN_HALO:-FEN_HALO, FEN_HALO:-FEN_HALO] + out
    return out.permute(0, 2, 3, 1).cpu().numpy()


def tile_edges(size: int, tile: int) -> list[int]:
    """Edges of ``ceil(size / tile)`` tiles of (nearly) equal length covering ``[0, size)``.

    Equal tiles, not ``tile``-sized ones and a sliver: the convolution library picks other kernels for
    windows a few pixels wide, whose float32 rounding differs (measured: a 4 px last tile moved 409 FEN
    outputs of abu-airport-2 by up to 5e-6 relative; tiles of 16 px or more gave the whole scene's bits).
    """
    count = max(1, -(-size // max(1, tile)))
    return [round(i * size / count) for i in range(count + 1)]


def fen_workers(device: torch.device) -> int:
    """FEN tiles in flight at once: one per torch CPU thread on the CPU, one on a GPU."""
    return torch.get_num_threads() if torch.device(device).type == "cpu" else 1


def run_parallel(jobs: list, device: torch.device) -> None:
    """Run ``jobs`` (callables) on :func:`fen_workers` Python threads, each with one torch thread.

    Tiles side by side rather than each convolution split over the cores: a FEN forward is a chain of
    short operations, and on a busy machine every split operation waits at its end for a descheduled
    thread (measured on 2 cores shared with other work: 100 x 100 x 200, 0.48 s split, 0.15 s side by side). The
    channels-last kernels give the same bits with one thread or two (tests/test_tiling.py).
    """
    workers = fen_workers(device)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    before = torch.get_num_threads()
    try:
        list(_pool(workers).map(_on_one_thread, jobs))
    finally:
        torch.set_num_threads(before)  # the count new threads start with is global: put it back


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool kept for the process: its threads keep their one-thread torch setting between calls."""
    return ThreadPoolExecutor(workers, thread_name_prefix="fen-tile")


def _on_one_thread(job) -> None:
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)  # this thread's OpenMP and MKL pools
    job()


def enhance_tiles(fen: FEN, source: SceneCube, store: SceneCube, tile: int, device: torch.device,
                  add_input: bool = True) -> None:
    """``x + FEN(x)`` (``FEN(x)`` without ``add_input``) of the whole scene into ``store``, tile by tile (a
    scene of one tile is cut in as many row bands as there are workers, if they stay :data:`FEN_MIN_TILE` px
    or more)."""
    h, w, _ = source.shape
    rows, cols = tile_edges(h, tile), tile_edges(w, tile)
    workers = fen_workers(device)
    if (len(rows) - 1) * (len(cols) - 1) < workers and h >= workers * FEN_MIN_TILE:
        rows, cols = tile_edges(h, -(-h // workers)), [0, w]

    def job(r0: int, r1: int, c0: int, c1: int):
        def run() -> None:
            window = reflected_window(source, r0, r1, c0, c1, FEN_HALO)
            store.write(r0, c0, enhance_windows(fen, window[None], device, add_input)[0])
        return run

    run_parallel([job(r0, r1, c0, c1) for r0, r1 in zip(rows[:-1], rows[1:]) for c0, c1 in zip(cols[:-1], cols[1:])],
                 device)


def enhance_batch(fen: FEN, sources: list[SceneCube], device: torch.device) -> list[SceneCube]:
    """``x + FEN(x)`` of several same-size scenes, each one tile: one forward pass per worker, on its share
    of the scenes (one scene alone: :func:`enhance_tiles`)."""
    stores = [SceneCube.empty(s.shape) for s in sources]
    workers = fen_workers(device)
    if len(sources) == 1 or len(sources) < workers:
        for source, store in zip(sources, stores):
            enhance_tiles(fen, source, store, max(source.shape[:2]), device)
        return stores
    h, w, _ = sources[0].shape
    edges = tile_edges(len(sources), -(-len(sources) // workers))

    def job(i0: int, i1: int):
        def run() -> None:
            windows = np.stack([reflected_window(s, 0, h, 0, w, FEN_HALO) for s in sources[i0:i1]])
            for store, out in zip(stores[i0:i1], enhance_windows(fen, windows, device)):
                store.write(0, 0, out)
        return run

    run_parallel([job(i0, i1) for i0, i1 in zip(edges[:-1], edges[1:])], device)
    return stores
