"""Scenes of any size through the FEN and the detectors in bounded memory: the one place test.py calls.

A scene goes through three pieces, each small:

* a **source** (:class:`SceneSource`): the raw ``(H, W, bands)`` cube as the reader left it -- a numpy
  array, a memory-mapped ``.npy`` or ENVI file, or a lazily read MATLAB v7.3 dataset (data/scene.py) --
  seen as the preprocessed float32 cube of SPEC sec. 5, block by block. The global min and max of the
  bands used come from one streaming pass (:meth:`SceneSource.check`), and every block is scaled with
  the arithmetic of ``data.preprocess.preprocess``, so a block equals the same part of the whole cube
  bit for bit;
* a **tile plan** (:class:`TilePlan`, :func:`plan_scene`): FEN tiles, SLRX and LRX strips, and whether the
  preprocessed and enhanced cubes are held in memory or in a temporary file, from the memory budget
  (:func:`memory_budget`: a quarter of the available memory, at most 4 GiB, or ``--max_memory_gb``);
* **runners**: the FEN over the tiles (:func:`enhance_tiles`, or several small scenes in one batch,
  :func:`enhance_batch`) into a :class:`StoredCube`, and each detector over a cube through the readers
  its own file defines (GRX: pixels in fixed chunks, utils/rx.py; SLRX: tiles of blocks with one block
  of context, utils/slrx.py; LRX: strips of rows with half its window of context, utils/lrx.py).

Results do not depend on the tiling. The FEN sees each tile with :data:`model.fen.FEN_HALO` px of real
context (the scene's pixels inside it, the CWL's reflect padding at the scene border), which is exactly
what the whole scene gives it; GRX's chunks are fixed by the band count alone; SLRX tiles carry their
neighbouring blocks, LRX strips their window. tests/test_tiling.py checks it on real scenes.

Memory-mapped files: pages a process has read stay in its resident set until the mapping goes, so after
each block :func:`release_pages` tells the kernel they are not needed (``MADV_DONTNEED``): they stay in
the page cache, and the process's peak stays at what the plan holds.
"""
from __future__ import annotations

import mmap
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from data.preprocess import INPUT_SCALE, DataError, check_cube, check_dtype, check_options
from model.fen import FEN, FEN_HALO, fold_batchnorm, fused_forward_window
from utils.detectors import (FEN_PREFIX, DetectorOptions, available_memory, base_name, needs_fen)
from utils.device import sync
from utils.errors import DetectorError
from utils.lrx import check_windows, lrx_memory_bytes, lrx_mirrored
from utils.rx import PixelReader, chunk_pixels, grx_scores, rx_statistics
from utils.slrx import (TILE_COLUMNS, BlockReader, combine_maps, resolve_block_size, slrx_maps_streamed,
                        slrx_memory_bytes)

#: Default memory budget: this fraction of the available memory ...
BUDGET_FRACTION = 0.25
#: ... and at most this much (larger tiles and strips buy no speed: they only leave the caches).
BUDGET_CAP = 4 << 30
#: Core side of a FEN tile (px) when the budget allows it: the window's activations (256 channels of
#: 134 x 134 px, 18 MB) stay in the last-level cache; larger tiles ran no faster (benchmarks/bench_fen.py).
FEN_TILE = 128
#: Smallest FEN tile core (px): see :func:`tile_edges`.
FEN_MIN_TILE = 16
#: Same-size single-tile scenes (HAD100's 64 x 64 patches) go through the FEN this many at a time.
FEN_BATCH = 16
#: Rows of the raw cube per block of the streaming min/max pass (and of other plain reads).
SCAN_BYTES = 64 << 20


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


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Indices of ``numpy.pad(mode="reflect")`` (the edge not repeated; ``torch``'s reflect padding too):
    ``-1 -> 1``, ``size -> size - 2``. Valid for overhangs shorter than ``size``."""
    index = np.abs(index)
    return np.where(index >= size, 2 * (size - 1) - index, index)


class SceneSource:
    """The preprocessed cube of a scene, ``(H, W, bands)`` float32, read block by block from the raw cube.

    ``raw``: anything indexable as ``raw[r0:r1, c0:c1, b0:b1]`` -> numpy array with ``shape``, ``ndim``
    and ``dtype`` (a numpy array or memmap, a spectral ENVI memmap, data.scene's MATLAB v7.3 reader).
    """

    def __init__(self, raw: object, bands: int, start: int = 0, name: str = "scene") -> None:
        self.raw, self.bands, self.start, self.name = raw, bands, start, name
        self.lo: float | None = None
        self.hi: float | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return int(self.raw.shape[0]), int(self.raw.shape[1]), self.bands

    @property
    def nbytes(self) -> int:
        """Bytes of the whole preprocessed (float32) cube."""
        h, w, b = self.shape
        return 4 * h * w * b

    def _rows_per_scan(self) -> int:
        w = self.raw.shape[1] if self.raw.ndim >= 2 else 1
        return max(1, SCAN_BYTES // max(1, 8 * w * self.bands))

    def check(self) -> None:
        """Refuse (:class:`DataError`) a cube that preprocessing cannot use, and keep its min and max.

        A cube that fits in one scan block is checked by ``data.preprocess.check_cube`` as it is; a larger
        one in a streaming pass (shape, bands, NaN/Inf, constant, range), with the same messages.
        """
        raw = self.raw
        if raw.ndim != 3 or raw.shape[0] <= self._rows_per_scan():
            check_cube(np.asarray(raw), self.name, self.bands, self.start)
            sel = np.asarray(raw[:, :, self.start: self.start + self.bands])
            self.lo, self.hi = float(sel.min()), float(sel.max())
            return
        self._check_layout()
        lo, hi, bad = np.inf, -np.inf, 0
        step = self._rows_per_scan()
        for r0 in range(0, raw.shape[0], step):
            view = raw[r0: r0 + step, :, self.start: self.start + self.bands]
            sel = np.asarray(view)
            if sel.dtype.kind == "f":
                finite = np.isfinite(sel)
                if not finite.all():
                    bad += int((~finite).sum())
                    continue
            lo, hi = min(lo, float(sel.min())), max(hi, float(sel.max()))
            release_pages(raw, view if isinstance(view, np.ndarray) else None)
        if bad:
            raise DataError(f"{self.name}: {bad} NaN/Inf values in the bands used; replace them (e.g. by "
                            "interpolation) or choose other bands")
        if not hi > lo:
            raise DataError(f"{self.name}: the cube is constant in the bands used (min == max == {lo:g}), "
                            "nothing to detect")
        if not np.isfinite(hi - lo):
            raise DataError(f"{self.name}: values from {lo:g} to {hi:g} span more than float64 can hold; "
                            "rescale the cube")
        self.lo, self.hi = lo, hi

    def _check_layout(self) -> None:
        """What ``check_cube`` checks before the values, for a cube too large to hand it whole."""
        check_options(self.bands, self.start)
        check_dtype(self.raw, self.name)
        h, w, have = self.raw.shape
        if h < 1 or w < 1:
            raise DataError(f"{self.name}: the cube is {h} x {w} pixels: empty")
        if have < self.start + self.bands:
            hint = (f"use --input_channel {have - self.start} or less" if have > self.start
                    else f"--start_channel must be below {have}")
            raise DataError(f"{self.name}: has {have} bands, fewer than --start_channel {self.start} + "
                            f"--input_channel {self.bands}; {hint}")

    def block(self, r0: int, r1: int, c0: int = 0, c1: int | None = None) -> np.ndarray:
        """Preprocessed rows ``[r0, r1)`` and columns ``[c0, c1)``: ``(r1 - r0, c1 - c0, bands)`` float32."""
        if self.lo is None:
            self.check()
        view = self.raw[r0:r1, c0:c1, self.start: self.start + self.bands]
        raw = np.asarray(view)
        # the arithmetic of data.preprocess.preprocess, operation by operation in float64 (so the same float32
        # values), in torch for its threads: ((x - lo) / (hi - lo) * 2 - 1) * INPUT_SCALE
        x = torch.from_numpy(raw.astype(np.float64))  # any numeric dtype (uint16 DNs, bool, ...), exactly
        x.sub_(self.lo).div_(self.hi - self.lo).mul_(2).sub_(1).mul_(INPUT_SCALE)
        release_pages(self.raw, view if isinstance(view, np.ndarray) else None)
        return x.to(torch.float32).numpy()

    def tensor(self) -> torch.Tensor:
        """The whole preprocessed cube as ``(bands, H, W)`` float32 (as ``data.preprocess.preprocess``)."""
        h = self.shape[0]
        return torch.from_numpy(np.ascontiguousarray(self.block(0, h).transpose(2, 0, 1)))


class StoredCube:
    """An ``(H, W, B)`` float32 cube held in memory, or in a temporary file (memory-mapped, deleted when
    the object goes) when the plan has no room for it. Same :meth:`block` as :class:`SceneSource`."""

    def __init__(self, shape: tuple[int, int, int], in_memory: bool = True, directory: str | None = None) -> None:
        self.shape = shape
        self.in_memory = in_memory
        if in_memory:
            self.array = np.empty(shape, dtype=np.float32)
        else:
            fd, path = tempfile.mkstemp(prefix="ferd-cube-", suffix=".f32", dir=directory)
            os.close(fd)
            try:
                self.array = np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
            finally:
                os.unlink(path)  # the mapping keeps the data; nothing is left behind, even after a crash

    @classmethod
    def of(cls, source: SceneSource, in_memory: bool = True) -> "StoredCube":
        """The preprocessed cube of ``source``, stored."""
        cube = cls(source.shape, in_memory)
        h, w, b = source.shape
        step = max(1, SCAN_BYTES // (8 * w * b))
        for r0 in range(0, h, step):
            cube.write(r0, 0, source.block(r0, min(h, r0 + step)))
        return cube

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def block(self, r0: int, r1: int, c0: int = 0, c1: int | None = None) -> np.ndarray:
        view = self.array[r0:r1, c0:c1]
        if self.in_memory:
            return view
        out = np.array(view)
        release_pages(self.array, view)
        return out

    def write(self, r0: int, c0: int, values: np.ndarray) -> None:
        view = self.array[r0: r0 + values.shape[0], c0: c0 + values.shape[1]]
        view[...] = values
        if not self.in_memory:
            release_pages(self.array, view)

    def tensor(self) -> torch.Tensor:
        """``(B, H, W)`` float32 view (a copy when file-backed)."""
        return torch.from_numpy(self.block(0, self.shape[0])).permute(2, 0, 1)


Cube = SceneSource | StoredCube


def pixel_reader(cube: Cube, device: torch.device) -> PixelReader:
    """Pixels ``[i0, i1)`` (row-major order) of ``cube`` as an ``(n, B)`` float64 tensor on ``device``."""
    h, w, b = cube.shape

    def read(i0: int, i1: int) -> torch.Tensor:
        r0, r1 = i0 // w, -(-i1 // w)
        rows = cube.block(r0, r1).reshape(-1, b)[i0 - r0 * w: i1 - r0 * w]
        return torch.from_numpy(rows).to(device=device, dtype=torch.float64)

    return read


def block_reader(cube: Cube, device: torch.device) -> BlockReader:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of ``cube`` as a float32 tensor on ``device``."""
    return lambda r0, r1, c0, c1: torch.from_numpy(cube.block(r0, r1, c0, c1)).to(device)


def reflected_window(cube: Cube, r0: int, r1: int, c0: int, c1: int, halo: int) -> np.ndarray:
    """Rows ``[r0 - halo, r1 + halo)`` and columns ``[c0 - halo, c1 + halo)`` of ``cube``, reflected at the
    scene border as the CWL's padding: ``(r1 - r0 + 2 halo, c1 - c0 + 2 halo, B)`` float32."""
    h, w, _ = cube.shape
    rows = reflect_index(np.arange(r0 - halo, r1 + halo), h)
    cols = reflect_index(np.arange(c0 - halo, c1 + halo), w)
    lo_r, lo_c = int(rows.min()), int(cols.min())
    part = cube.block(lo_r, int(rows.max()) + 1, lo_c, int(cols.max()) + 1)
    return part[rows - lo_r][:, cols - lo_c]


# --- the plan ---------------------------------------------------------------------------------------------

def fen_window_bytes(side_h: int, side_w: int, bands: int, hidden: int = 256, batch: int = 1) -> int:
    """Rough peak bytes of one FEN forward on a window (float32): the input, the CWL's 64 channels, a
    Bottleneck's 256-channel input, output and residual and its two 128-channel maps, the FPL's hidden
    maps and output, with 1.5x for the convolution library's scratch."""
    px = batch * (side_h + 2 * FEN_HALO) * (side_w + 2 * FEN_HALO)
    return int(1.5 * 4 * px * (2 * bands + 64 + 3 * 256 + 2 * 128 + hidden))


@dataclass(frozen=True)
class TilePlan:
    """How one scene is cut: FEN tile side (px), SLRX strip height (block rows), LRX strip height (rows;
    0: detector not run), and which cubes are held in memory (else in a temporary file)."""

    fen_tile: int
    slrx_strip: int
    lrx_strip: int
    input_in_memory: bool
    enhanced_in_memory: bool
    budget: int
    working: int

    def describe(self, shape: tuple[int, int, int]) -> str:
        h, w, _ = shape
        parts = []
        if self.fen_tile:
            parts.append(f"FEN {'whole' if self.fen_tile >= max(h, w) else f'in {self.fen_tile} px tiles'}")
        if self.slrx_strip:
            parts.append(f"SLRX in strips of {self.slrx_strip} block rows")
        if self.lrx_strip:
            parts.append(f"LRX in strips of {self.lrx_strip} rows")
        parts.append(f"preprocessed cube {'in memory' if self.input_in_memory else 'in a temporary file'}")
        if self.fen_tile:
            parts.append(f"enhanced cube {'in memory' if self.enhanced_in_memory else 'in a temporary file'}")
        return ", ".join(parts) + f" (budget {self.budget / 2**30:.1f} GiB)"


def _largest(fits, top: int) -> int:
    """The largest ``n`` in ``1..top`` with ``fits(n)`` (``fits`` true up to some ``n``, false above); 1 if none."""
    lo, hi = 1, top
    if fits(hi):
        return hi
    while hi - lo > 1:  # fits(lo) or lo == 1; not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def working_sets(shape: tuple[int, int, int], detectors: list[str], options: DetectorOptions, limit: int,
                 fen_hidden: int = 256) -> tuple[dict[str, int], dict[str, int]]:
    """Tile sizes (``fen``: px, ``slrx``: block rows, ``lrx``: rows) whose working sets fit ``limit`` bytes
    where possible (else the smallest), and those working sets in bytes."""
    h, w, b = shape
    bases = {base_name(n) for n in detectors}
    sizes, needs = {"fen": 0, "slrx": 0, "lrx": 0}, {"grx": 3 * 8 * chunk_pixels(b) * b}
    if needs_fen(detectors):
        workers = torch.get_num_threads()  # tiles in flight at once on the CPU (run_parallel)
        fen_bytes = lambda t: workers * fen_window_bytes(min(h, t), min(w, t), b, fen_hidden)
        sizes["fen"] = max(FEN_MIN_TILE, _largest(lambda t: fen_bytes(t) <= limit, min(max(h, w), FEN_TILE)))
        needs["fen"] = fen_bytes(sizes["fen"])
    if "SLRX" in bases:
        size = resolve_block_size(b, h, w, options.block_num, options.block_size)
        tile_w = min(w, (TILE_COLUMNS + 2) * size)  # SLRX tiles: 32 block columns and their context
        slrx_bytes = lambda k: slrx_memory_bytes(b, min(h, (k + 2) * size), tile_w, size)
        sizes["slrx"] = _largest(lambda k: slrx_bytes(k) <= limit, -(-h // size))
        needs["slrx"] = slrx_bytes(sizes["slrx"])
    if "LRX" in bases:
        r = options.lrx_outer // 2
        lrx_bytes = lambda k: lrx_memory_bytes(b, min(h, k), w, options.lrx_inner, options.lrx_outer)
        sizes["lrx"] = _largest(lambda k: lrx_bytes(k) <= limit, h)
        sizes["lrx"] = max(sizes["lrx"], min(h, r + 1))  # a strip shorter than the window gains nothing
        needs["lrx"] = lrx_bytes(sizes["lrx"])
    return sizes, needs


def plan_scene(shape: tuple[int, int, int], detectors: list[str], options: DetectorOptions, budget: int,
               fen_hidden: int = 256) -> TilePlan:
    """The tile plan of an ``(H, W, B)`` scene within ``budget`` bytes: tiles and strips whose working sets
    fit half of it (an SLRX strip carries a block row of context above and below: taller strips waste
    less), then the enhanced cube and the preprocessed input in memory if the rest has room.
    :class:`DetectorError` (with the estimate) if even the smallest tiles do not fit."""
    h, w, b = shape
    cube = 4 * h * w * b
    bases = {base_name(n) for n in detectors}
    maps = 8 * h * w * (len(detectors) + (3 if "SLRX" in bases else 0) + 1)
    sizes, needs = working_sets(shape, detectors, options, budget // 2, fen_hidden)
    working = max(needs.values()) + maps
    if working > budget:
        what = {"grx": "GRX", "fen": "the FEN (one tile)", "slrx": "SLRX (one strip of block rows)",
                "lrx": "LRX (one strip of rows)"}[max(needs, key=needs.get)]
        raise DetectorError(f"{h} x {w} x {b} cube: {what} and the score maps need about {working / 2**30:.1f} "
                            f"GiB but the memory budget is {budget / 2**30:.1f} GiB: raise --max_memory_gb, "
                            "use fewer bands (--input_channel) or another --device")
    room = budget - working
    enhanced_in_memory = needs_fen(detectors) and cube <= room
    room -= cube if enhanced_in_memory else 0
    return TilePlan(sizes["fen"], sizes["slrx"], sizes["lrx"], cube <= room, enhanced_in_memory, budget, working)


def smallest_working_set(shape: tuple[int, int, int], detectors: list[str], options: DetectorOptions) -> int:
    """Bytes the smallest tiles need (for utils.detectors.check_memory: what tiling cannot reduce)."""
    h, w, _ = shape
    maps = 8 * h * w * (len(detectors) + 4)
    return max(working_sets(shape, detectors, options, 0)[1].values()) + maps


# --- the FEN over tiles -----------------------------------------------------------------------------------

def prepare_fen(fen: FEN) -> FEN:
    """``fen`` for inference here: eval mode, weights in channels-last layout (the tiles are channels-last,
    so the convolution library does not reorder them: measured 1.2-1.8x, benchmarks/bench_fen.py)."""
    return fen.eval().to(memory_format=torch.channels_last)


@torch.no_grad()
def _enhance_windows(fen: FEN, windows: np.ndarray, device: torch.device) -> np.ndarray:
    """``(N, h + 2 halo, w + 2 halo, B)`` windows -> ``(N, h, w, B)`` cores of ``x + FEN(x)``, float32.

    ``(N, H, W, B)`` memory is the channels-last layout of ``(N, B, H, W)``: no copy either way.
    """
    x = torch.from_numpy(windows).to(device).permute(0, 3, 1, 2)
    core = x[:, :, FEN_HALO:-FEN_HALO, FEN_HALO:-FEN_HALO]
    out = (core + fused_forward_window(fen, x, FEN_HALO)).permute(0, 2, 3, 1)
    return out.cpu().numpy()


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
    thread (measured on the 2 shared cores: 100 x 100 x 200, 0.48 s split, 0.15 s side by side). The
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


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool kept for the process: its threads keep their one-thread torch setting between calls."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="fen-tile")
    return _POOLS[workers]


def _on_one_thread(job) -> None:
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)  # this thread's OpenMP and MKL pools
    job()


def enhance_tiles(fen: FEN, source: Cube, store: StoredCube, tile: int, device: torch.device) -> None:
    """``x + FEN(x)`` of the whole scene into ``store``, tile by tile (a scene of one tile is cut in as many
    row bands as there are workers, if they stay :data:`FEN_MIN_TILE` px or more)."""
    h, w, _ = source.shape
    rows, cols = tile_edges(h, tile), tile_edges(w, tile)
    workers = fen_workers(device)
    if (len(rows) - 1) * (len(cols) - 1) < workers and h >= workers * FEN_MIN_TILE:
        rows, cols = tile_edges(h, -(-h // workers)), [0, w]

    def job(r0: int, r1: int, c0: int, c1: int):
        def run() -> None:
            window = reflected_window(source, r0, r1, c0, c1, FEN_HALO)
            store.write(r0, c0, _enhance_windows(fen, window[None], device)[0])
        return run

    run_parallel([job(r0, r1, c0, c1) for r0, r1 in zip(rows[:-1], rows[1:]) for c0, c1 in zip(cols[:-1], cols[1:])],
                 device)


def enhance_batch(fen: FEN, sources: list[Cube], device: torch.device) -> list[StoredCube]:
    """``x + FEN(x)`` of several same-size scenes, each one tile: one forward pass per worker, on its share
    of the scenes (one scene alone: :func:`enhance_tiles`)."""
    stores = [StoredCube(s.shape) for s in sources]
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
            for store, out in zip(stores[i0:i1], _enhance_windows(fen, windows, device)):
                store.write(0, 0, out)
        return run

    run_parallel([job(i0, i1) for i0, i1 in zip(edges[:-1], edges[1:])], device)
    return stores


# --- the detectors over a cube ----------------------------------------------------------------------------

def run_detector(base: str, cube: Cube, plan: TilePlan, options: DetectorOptions,
                 device: torch.device) -> torch.Tensor:
    """Scores ``(H, W)`` float64 of base detector ``base`` (GRX, SLRX, LRX) on ``cube``."""
    h, w, b = cube.shape
    if base == "GRX":
        return grx_scores(pixel_reader(cube, device), h * w, b, device).reshape(h, w)
    if base == "SLRX":
        size = resolve_block_size(b, h, w, options.block_num, options.block_size)
        maps = slrx_maps_streamed(block_reader(cube, device), pixel_reader(cube, device), (h, w, b), size,
                                  plan.slrx_strip, device=device)
        return combine_maps(maps)
    if base == "LRX":
        check_windows(options.lrx_inner, options.lrx_outer, h, w)
        stats = rx_statistics(pixel_reader(cube, device), h * w, b, device)  # span and centre of the scene
        r, span = options.lrx_outer // 2, stats.span()
        scores = torch.empty(h, w, dtype=torch.float64, device=device)
        for r0 in range(0, h, plan.lrx_strip):
            r1 = min(h, r0 + plan.lrx_strip)
            window = torch.from_numpy(reflected_window(cube, r0, r1, 0, w, r)).to(device, torch.float64)
            scores[r0:r1] = lrx_mirrored(window.sub_(stats.mean), span, options.lrx_inner, options.lrx_outer)
        return scores
    raise DetectorError(f"unknown detector {base}")


@dataclass
class SceneRun:
    """One scene's score maps ``(H, W)`` float64 by detector name, seconds by detector (FEN time included
    in the ``FEN+`` ones), the FEN's own seconds, and the plan used."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    fen_seconds: float = 0.0
    plan: TilePlan | None = None


class Pipeline:
    """The FEN and the detectors over scenes of any size: ``for run in Pipeline(...).run(sources): ...``.

    ``sources`` are checked :class:`SceneSource`; same-size scenes that are one FEN tile each go through the
    FEN ``batch`` at a time (their FEN seconds are the batch's, shared equally). ``fold_bn``: run an inference
    copy of the FEN with its BatchNorms folded into the convolutions (model.fen.fold_batchnorm).
    """

    def __init__(self, detectors: list[str], fen: FEN | None, options: DetectorOptions, device: torch.device,
                 max_memory_gb: float | None = None, batch: int = FEN_BATCH, plan: TilePlan | None = None,
                 fold_bn: bool = False) -> None:
        self.detectors, self.options, self.device = detectors, options, device
        self.fen = None
        if fen is not None and needs_fen(detectors):
            self.fen = prepare_fen(fold_batchnorm(fen) if fold_bn else fen)
        self.max_memory_gb = max_memory_gb
        self.batch = max(1, batch)
        self.fixed_plan = plan  # tests and benchmarks: the same tiles for every scene
        self._seen: set[tuple[int, ...]] = set()  # batch shapes the FEN has run once

    def plan(self, shape: tuple[int, int, int]) -> TilePlan:
        if self.fixed_plan is not None:
            return self.fixed_plan
        hidden = self.fen.fpl.conv1.out_channels if self.fen is not None else 256
        return plan_scene(shape, self.detectors, self.options, memory_budget(self.max_memory_gb), hidden)

    def warm_up(self, source: SceneSource) -> None:
        """One small FEN window first, so that the convolution library's one-off set-up stays out of the
        timings."""
        if self.fen is not None:
            h, w, _ = source.shape
            _enhance_windows(self.fen, reflected_window(source, 0, min(h, 16), 0, min(w, 16), FEN_HALO)[None],
                             self.device)

    def _timed(self, fn):
        sync(self.device)
        start = time.perf_counter()
        out = fn()
        sync(self.device)
        return out, time.perf_counter() - start

    def _inputs(self, source: SceneSource, plan: TilePlan) -> Cube:
        """The preprocessed cube, computed once before the timings: in memory, or in a temporary file when
        the plan has no room for it (each detector then reads float32 blocks, not raw ones to scale again)."""
        return StoredCube.of(source, plan.input_in_memory)

    def run(self, sources: list[SceneSource]) -> Iterator[SceneRun]:
        """One :class:`SceneRun` per source, in order."""
        i = 0
        while i < len(sources):
            plan = self.plan(sources[i].shape)
            group = [sources[i]]
            single_tile = plan.fen_tile >= max(sources[i].shape[:2]) and plan.input_in_memory
            while (self.fen is not None and single_tile and len(group) < self.batch and i + len(group) < len(sources)
                   and sources[i + len(group)].shape == sources[i].shape):
                group.append(sources[i + len(group)])
            inputs = [self._inputs(s, plan) for s in group]
            enhanced, fen_seconds = [None] * len(group), 0.0
            if self.fen is not None:
                if len(group) > 1 or single_tile:
                    if (len(group), *inputs[0].shape) not in self._seen:  # a new shape: its one-off set-up
                        enhance_batch(self.fen, inputs, self.device)      # (kernel choice, primitives) untimed
                        self._seen.add((len(group), *inputs[0].shape))
                    enhanced, t = self._timed(lambda: enhance_batch(self.fen, inputs, self.device))
                    fen_seconds = t / len(group)
                else:
                    store = StoredCube(inputs[0].shape, plan.enhanced_in_memory)
                    _, fen_seconds = self._timed(
                        lambda: enhance_tiles(self.fen, inputs[0], store, plan.fen_tile, self.device))
                    enhanced = [store]
            for cube, stored in zip(inputs, enhanced):
                yield self._detect(cube, stored, plan, fen_seconds)
            i += len(group)

    def _detect(self, cube: Cube, enhanced: StoredCube | None, plan: TilePlan, fen_seconds: float) -> SceneRun:
        run = SceneRun(fen_seconds=fen_seconds, plan=plan)
        for name in self.detectors:
            fen_used = name.startswith(FEN_PREFIX)
            target = enhanced if fen_used else cube
            scores, t = self._timed(lambda: run_detector(base_name(name), target, plan, self.options, self.device))
            run.maps[name] = scores.cpu().numpy()
            run.seconds[name] = t + (fen_seconds if fen_used else 0.0)
        return run
