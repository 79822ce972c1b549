"""The tile plan of a scene: FEN tiles, each detector's strips, and which cubes stay in memory, from the
memory budget; and the up-front check that refuses only what even the smallest tiles cannot fit.

The plan asks each detector object (detectors/base.py) for its strips and their working sets; it never
looks at a detector's name."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Mapping

import torch

from detectors.base import Detector
from detectors.registry import (DEFAULT_OPTIONS, DETECTORS, MEMORY_MARGIN, DetectorOptions, detector, memory_estimate,
                                needs_fen)
from detectors.rx import chunk_pixels
from model.fen import FEN_HALO
from pipeline.fen_tiles import FEN_MIN_TILE, fen_workers
from pipeline.sources import TEMP_ADVICE
from utils.errors import DetectorError, DiskFullError
from utils.memory import available_memory, format_bytes

#: Core side of a FEN tile (px) when the budget allows it: the window's activations (256 channels of
#: 134 x 134 px, 18 MB) stay in the last-level cache; larger tiles ran no faster (benchmarks/speed/bench_fen.py).
FEN_TILE = 128


def fen_window_bytes(side_h: int, side_w: int, bands: int, hidden: int = 256, batch: int = 1) -> int:
    """Rough peak bytes of one FEN forward on a window (float32): the input, the CWL's 64 channels, a
    Bottleneck's 256-channel input, output and residual and its two 128-channel maps, the FPL's hidden
    maps and output, with 1.5x for the convolution library's scratch."""
    px = batch * (side_h + 2 * FEN_HALO) * (side_w + 2 * FEN_HALO)
    return int(1.5 * 4 * px * (2 * bands + 64 + 3 * 256 + 2 * 128 + hidden))


@dataclass(frozen=True)
class TilePlan:
    """How one scene is cut: FEN tile side (px), which cubes are held in memory (else in a temporary file),
    and the strip height of each detector that runs in strips, by name (in its own unit,
    ``Detector.strip_unit``; absent or 0: in one piece)."""

    fen_tile: int
    input_in_memory: bool
    enhanced_in_memory: bool
    budget: int
    working: int
    strips: Mapping[str, int] = field(default_factory=dict)

    def strip(self, det: Detector) -> int:
        """``det``'s strip height (0: in one piece, or it reads fixed chunks)."""
        return self.strips.get(det.name, 0) if det.in_strips else 0

    def describe(self, shape: tuple[int, int, int]) -> str:
        h, w, _ = shape
        parts = []
        if self.fen_tile:
            parts.append(f"FEN {'whole' if self.fen_tile >= max(h, w) else f'in {self.fen_tile} px tiles'}")
        parts += [f"{d.name} in strips of {self.strip(d)} {d.strip_unit}" for d in DETECTORS.values() if self.strip(d)]
        parts.append(f"preprocessed cube {'in memory' if self.input_in_memory else 'in a temporary file'}")
        if self.fen_tile:
            parts.append(f"enhanced cube {'in memory' if self.enhanced_in_memory else 'in a temporary file'}")
        return ", ".join(parts) + f" (budget {self.budget / 2**30:.1f} GiB)"


    def temp_file_bytes(self, shape: tuple[int, int, int]) -> int:
        """Bytes of temporary files the pipeline makes for an ``(H, W, B)`` scene under this plan: the
        preprocessed cube unless it is in memory, and the enhanced cube where the FEN runs in tiles into a
        file (pipeline.run: a scene of one tile whose input is in memory is enhanced in memory)."""
        h, w, b = shape
        cube = 4 * h * w * b
        single_tile = self.fen_tile >= max(h, w) and self.input_in_memory
        enhanced_file = self.fen_tile > 0 and not single_tile and not self.enhanced_in_memory
        return cube * ((not self.input_in_memory) + enhanced_file)


def check_temp_space(needs: list[tuple[str, tuple[int, int, int], int]], directory: str | None = None) -> None:
    """Before any work: refuse (:class:`DiskFullError`) a run whose temporary files would not fit in the
    free space of ``directory`` (default: the temporary folder, ``$TMPDIR``). ``needs``: per scene its name,
    ``(H, W, B)`` and temporary bytes (:meth:`TilePlan.temp_file_bytes`); scenes run one after the other,
    so the largest one counts."""
    name, shape, need = max(needs, key=lambda n: n[2], default=("", (0, 0, 0), 0))
    if need == 0:
        return
    directory = directory or tempfile.gettempdir()
    try:
        free = shutil.disk_usage(directory).free
    except OSError:  # a file system that cannot tell: the reservation at creation still refuses a full disk
        return
    if need > free:
        h, w, b = shape
        raise DiskFullError(f"{name}: the {h} x {w} x {b} scene needs {format_bytes(need, 1)} of temporary "
                            f"files in {directory} (its cubes do not fit in the memory budget) but only "
                            f"{format_bytes(free, 1)} is free there: {TEMP_ADVICE}")


def _largest(fits, top: int) -> int:
    """The largest ``n`` in ``1..top`` with ``fits(n)`` (``fits`` true up to some ``n``, false above); 1 if none."""
    lo, hi = 1, top
    if fits(hi):
        return hi
    while hi - lo > 1:  # fits(lo) or lo == 1; not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def bases(detectors: list[str]) -> list[Detector]:
    """The detector objects of ``detectors`` (``FEN+X`` and ``X`` are one), each once, in registry order."""
    wanted = {detector(n) for n in detectors}
    return [d for d in DETECTORS.values() if d in wanted]


def working_sets(shape: tuple[int, int, int], detectors: list[str], options: DetectorOptions, limit: int,
                 fen_hidden: int = 256, device: torch.device | str = "cpu") -> tuple[dict[str, int], dict[str, int]]:
    """Tile sizes (``fen_tile``: px, and each strip detector's strip height by name, in its unit) whose working sets
    fit ``limit`` bytes where possible (else the smallest), and the working sets in bytes, by what needs
    them (``statistics``: the streaming pass over chunks of pixels every detector makes; ``fen``; each
    detector's name). ``device``: where the FEN runs (one tile at a time on a GPU, one per thread on the CPU)."""
    h, w, b = shape
    sizes, needs = {"fen_tile": 0}, {"statistics": 3 * 8 * chunk_pixels(b) * b}
    if needs_fen(detectors):
        workers = fen_workers(device)  # tiles in flight at once (pipeline.fen_tiles.run_parallel)
        fen_bytes = lambda t: workers * fen_window_bytes(min(h, t), min(w, t), b, fen_hidden)
        sizes["fen_tile"] = max(FEN_MIN_TILE, _largest(lambda t: fen_bytes(t) <= limit, min(max(h, w), FEN_TILE)))
        needs["fen"] = fen_bytes(sizes["fen_tile"])
    for det in bases(detectors):
        if not det.in_strips:
            needs[det.name] = det.strip_bytes(shape, 0, options, device)
            continue
        strip_bytes = lambda k: det.strip_bytes(shape, k, options, device)
        k = _largest(lambda k: strip_bytes(k) <= limit, det.strip_units(shape, options))
        sizes[det.name] = max(k, det.least_strip(shape, options))
        needs[det.name] = strip_bytes(sizes[det.name])
    return sizes, needs


def plan_scene(shape: tuple[int, int, int], detectors: list[str], options: DetectorOptions, budget: int,
               fen_hidden: int = 256, device: torch.device | str = "cpu") -> TilePlan:
    """The tile plan of an ``(H, W, B)`` scene within ``budget`` bytes: tiles and strips whose working sets
    fit half of it (an SLRX strip carries a block row of context above and below: taller strips waste
    less), then the enhanced cube and the preprocessed input in memory if the rest has room. ``device``: where
    the FEN runs (:func:`working_sets`). :class:`DetectorError` (with the estimate) if even the smallest tiles
    do not fit."""
    h, w, b = shape
    cube = 4 * h * w * b
    maps = 8 * h * w * (len(detectors) + sum(d.extra_maps for d in bases(detectors)) + 1)
    sizes, needs = working_sets(shape, detectors, options, budget // 2, fen_hidden, device)
    working = max(needs.values()) + maps
    if working > budget:
        what = describe_need(max(needs, key=needs.get))
        raise DetectorError(f"{h} x {w} x {b} cube: {what} and the score maps need about {working / 2**30:.1f} "
                            f"GiB but the memory budget is {budget / 2**30:.1f} GiB: raise max_memory_gb=<GiB>, "
                            "use fewer bands=<B> or another device=<cpu|cuda>")
    room = budget - working
    enhanced_in_memory = needs_fen(detectors) and cube <= room
    room -= cube if enhanced_in_memory else 0
    fen_tile = sizes.pop("fen_tile")
    return TilePlan(fen_tile, input_in_memory=cube <= room, enhanced_in_memory=enhanced_in_memory, budget=budget,
                    working=working, strips=sizes)


def describe_need(key: str) -> str:
    """The phrase of a :func:`working_sets` key in the memory error."""
    if key in DETECTORS:
        det = DETECTORS[key]
        return f"{key} (one strip of {det.strip_unit})" if det.in_strips else key
    return {"fen": "the FEN (one tile)", "statistics": "the scene's statistics"}[key]


def smallest_working_set(shape: tuple[int, int, int], detectors: list[str], options: DetectorOptions,
                         device: torch.device | str = "cpu") -> int:
    """Bytes the smallest tiles need (for :func:`check_memory`: what tiling cannot reduce)."""
    h, w, _ = shape
    maps = 8 * h * w * (len(detectors) + 4)
    return max(working_sets(shape, detectors, options, 0, device=device)[1].values()) + maps


def check_memory(name: str, shape: tuple[int, int, int], options: DetectorOptions = DEFAULT_OPTIONS,
                 device: torch.device | str = "cpu", scene: str = "scene") -> int:
    """Refuse (DetectorError with the estimate) a detector that would not fit in the memory available now,
    even in the smallest tiles this plan can cut the scene into.

    Returns the whole-scene estimate in bytes (:func:`memory_estimate`); a scene above it runs in tiles.
    """
    need = memory_estimate(name, shape, options, device)
    have = available_memory(device)
    if need * MEMORY_MARGIN > have:

        h, w, b = shape
        tiled = smallest_working_set(shape, [name], options, device)
        if tiled * MEMORY_MARGIN > have:
            raise DetectorError(f"{scene}: detector {name} needs about {format_bytes(tiled * MEMORY_MARGIN)} for a "
                                f"{h} x {w} x {b} cube but only {format_bytes(have)} is available on "
                                f"{torch.device(device)}, even in the smallest tiles: use fewer bands=<B>, "
                                "a smaller scene, or another device=<cpu|cuda>")
    return need
