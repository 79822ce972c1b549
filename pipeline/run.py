"""Scenes of any size through the FEN and the detectors in bounded memory: the one place test.py calls.

A scene goes through three pieces, each small:

* a **scene cube** (:class:`SceneCube`): the raw ``(H, W, bands)`` cube as the reader left it -- a numpy
  array, a memory-mapped ``.npy`` or ENVI file, or a lazily read file cube (data/lazy.py) --
  seen as the preprocessed float32 cube of method sec. 5, block by block. The global min and max of the
  bands used come from one streaming pass (:meth:`SceneCube.check`), and every block is scaled with
  the arithmetic of ``data.preprocess.preprocess``, so a block equals the same part of the whole cube
  bit for bit;
* a **tile plan** (:class:`TilePlan`, :func:`plan_scene`): FEN tiles, each detector's strips, and whether the
  preprocessed and enhanced cubes are held in memory or in a temporary file, from the memory budget
  (:func:`utils.memory.memory_budget`: a quarter of the available memory, at most 4 GiB, or ``--max_memory_gb``);
* **runners**: the FEN over the tiles (:func:`enhance_tiles`, or several small scenes in one batch,
  :func:`enhance_batch`) into a stored :class:`SceneCube`, and each detector over a cube through a
  :class:`CubeReader`, in the pieces its own object reads (detectors/base.py: GRX pixels in fixed chunks;
  SLRX tiles of blocks with one block of context; LRX and CRD strips of rows with half their window of
  context, mirrored or periodic).

Results do not depend on the tiling. The FEN sees each tile with :data:`model.fen.FEN_HALO` px of real
context (the scene's pixels inside it, the CWL's reflect padding at the scene border), which is exactly
what the whole scene gives it; GRX's chunks are fixed by the band count alone; SLRX tiles carry their
neighbouring blocks, LRX strips their window. tests/test_tiling.py checks it on real scenes.

Memory-mapped files: pages a process has read stay in its resident set until the mapping goes, so after
each block :func:`utils.memory.release_pages` tells the kernel they are not needed (``MADV_DONTNEED``): they stay in
the page cache, and the process's peak stays at what the plan holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from detectors.registry import FEN_PREFIX, DetectorOptions, detector, needs_fen
from model.fen import FEN, FEN_HALO, fold_batchnorm
from pipeline.fen_tiles import enhance_batch, enhance_tiles, enhance_windows, prepare_fen
from pipeline.plan import TilePlan, plan_scene
from detectors.base import CubeReader, reflected_window
from pipeline.sources import SceneCube
from utils.device import Timer, warm_up_linalg
from utils.memory import memory_budget

#: Same-size single-tile scenes (HAD100's 64 x 64 patches) go through the FEN this many at a time.
FEN_BATCH = 16


def run_detector(name: str, cube: SceneCube, plan: TilePlan, options: DetectorOptions,
                 device: torch.device, valid: np.ndarray | None = None) -> torch.Tensor:
    """Scores ``(H, W)`` float64 of detector ``name`` (its base: ``FEN+`` is the caller's) on ``cube``, in the
    plan's strips for it: the detector object reads the cube through a :class:`CubeReader`. ``valid``: the
    ``(H, W)`` pixels with data (None: all); the others enter no statistic and score NaN."""
    det = detector(name)
    scores = det.score_reader(CubeReader(cube, device, valid), plan.strip(det), options)
    if valid is not None:
        scores[torch.from_numpy(~valid).to(scores.device)] = float("nan")
    return scores


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

    ``sources`` are checked :class:`SceneCube` read through their raw cubes; same-size scenes that are one
    FEN tile each go through the FEN ``batch`` at a time (their FEN seconds are the batch's, shared equally).
    ``fold_bn``: run an inference copy of the FEN with its BatchNorms folded into the convolutions
    (model.fen.fold_batchnorm).
    """

    def __init__(self, detectors: list[str], fen: FEN | None, options: DetectorOptions, device: torch.device,
                 max_memory_gb: float | None = None, batch: int = FEN_BATCH, fold_bn: bool = False) -> None:
        self.detectors, self.options, self.device = detectors, options, device
        self.fen = None
        if fen is not None and needs_fen(detectors):
            self.fen = prepare_fen(fold_batchnorm(fen) if fold_bn else fen)
        self.max_memory_gb = max_memory_gb
        self.batch = max(1, batch)
        self._seen: set[tuple[int, ...]] = set()  # batch shapes the FEN has run once

    def plan(self, shape: tuple[int, int, int]) -> TilePlan:
        """The tile plan of an ``(H, W, B)`` scene within the memory budget (pipeline.plan.plan_scene)."""
        hidden = self.fen.fpl.conv1.out_channels if self.fen is not None else 256
        return plan_scene(shape, self.detectors, self.options, memory_budget(self.max_memory_gb), hidden, self.device)

    def warm_up(self, source: SceneCube) -> None:
        """One small FEN window first, and on a GPU tiny problems for its linear-algebra libraries
        (utils.device.warm_up_linalg), so that the one-off set-ups stay out of the timings."""
        warm_up_linalg(self.device)
        if self.fen is not None:
            h, w, _ = source.shape
            enhance_windows(self.fen, reflected_window(source, 0, min(h, 16), 0, min(w, 16), FEN_HALO)[None],
                             self.device)

    def fen_output(self, source: SceneCube) -> np.ndarray:
        """``FEN(x)`` of a scene as ``(B, H, W)`` float32, in the plan's tiles: for ``--save_mat``'s mixfs.mat.

        One more FEN pass, outside the timings, rather than ``enhanced - x``: the subtraction would add a
        float32 rounding to the authors' raw FPL output. In tiles, so a large scene costs no more memory than
        its score maps; the result itself is held in memory, as the .mat file needs it whole.
        """
        store = SceneCube.empty(source.shape)
        enhance_tiles(self.fen, source, store, self.plan(source.shape).fen_tile, self.device, add_input=False)
        return np.ascontiguousarray(store.array.transpose(2, 0, 1))

    def _timed(self, fn):
        """``fn()`` and its seconds (queued GPU work waited for at both ends: utils.device.Timer)."""
        with Timer(self.device) as t:
            out = fn()
        return out, t.seconds

    def _inputs(self, source: SceneCube, plan: TilePlan) -> SceneCube:
        """The preprocessed cube, computed once before the timings: in memory, or in a temporary file when
        the plan has no room for it (each detector then reads float32 blocks, not raw ones to scale again)."""
        return SceneCube.store(source, plan.input_in_memory)

    def run(self, sources: list[SceneCube]) -> Iterator[SceneRun]:
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
                    store = SceneCube.empty(inputs[0].shape, plan.enhanced_in_memory)
                    _, fen_seconds = self._timed(
                        lambda: enhance_tiles(self.fen, inputs[0], store, plan.fen_tile, self.device))
                    enhanced = [store]
            for cube, stored, source in zip(inputs, enhanced, group):
                yield self._detect(cube, stored, plan, fen_seconds, getattr(source, "valid", None))
            inputs = enhanced = store = cube = stored = None  # their temporary files go before the next scene's
            i += len(group)

    def _detect(self, cube: SceneCube, enhanced: SceneCube | None, plan: TilePlan, fen_seconds: float,
                valid: np.ndarray | None = None) -> SceneRun:
        run = SceneRun(fen_seconds=fen_seconds, plan=plan)
        for name in self.detectors:
            fen_used = name.startswith(FEN_PREFIX)
            target = enhanced if fen_used else cube
            scores, t = self._timed(lambda: run_detector(name, target, plan, self.options, self.device, valid))
            run.maps[name] = scores.cpu().numpy()
            run.seconds[name] = t + (fen_seconds if fen_used else 0.0)
        return run
