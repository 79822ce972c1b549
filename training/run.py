"""A training run from start to end, train.py's and the library's (:func:`train`): data, network, epochs,
keep. Every file is written under ``settings.save_dir`` as train.py writes it.

    from training.run import train
    from training.settings import TrainSettings
    kept = train(TrainSettings(train_scenes=["a.mat", "b.mat"], select="last", teacher="random", epochs=2))
    kept.fen   # checkpoints/fen_50bands.pt: test.py --weights, or weights.release.load_fen
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from training.data import log
from training.loop import Trainer, build_trainer, check_finite, restore, run_epoch
from training.own_scenes import default_teacher
from training.record import (check_training_paths, check_room, describe, end_epoch, log_baseline, log_selected,
                             replaced_note)
from training.settings import TrainSettings
from training.state import Progress, TrainingError, open_resume
from utils.dist import Dist, process_dist
from utils.errors import Interrupted
from utils.io import drop_stale_temporaries


@dataclass
class TrainResult:
    """What a run kept: the selected FEN's file (``fen``, None if no epoch ran), the training state
    (``last``), the selected epoch and its score (``best``), one row per epoch (``history``), the steps."""

    fen: Path | None
    last: Path | None
    best: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    step: int = 0


def train(settings: TrainSettings, d: Dist | None = None) -> TrainResult:
    """The whole run (under torchrun ``d`` is the process group; one process without it); returns what it kept."""
    d = d if d is not None else process_dist(settings.device)  # under torchrun: the process's group
    if settings.amp and d.device.type != "cuda":
        raise TrainingError("amp=True needs a CUDA device (this run is on the CPU)")
    if settings.batch_size % d.world:
        raise TrainingError(f"batch_size={settings.batch_size} does not split over {d.world} processes")
    teacher, note = default_teacher(settings.teacher, bool(settings.train_scenes), settings.download_teacher)
    for line in filter(None, (note, settings.select_note)):  # what the defaults chose, one line each
        log(line, d)
    settings = replace(settings, teacher=teacher)
    check_training_paths(settings)
    state, resume_path = open_resume(settings, settings.path("last"))
    if state is None and (note := replaced_note(settings)):
        log(note, d)
    tr = build_trainer(settings, d)
    d.settle(lambda: check_room(tr) if d.is_main else None)  # only the main process writes there
    progress = restore(tr, state, resume_path) if state is not None else Progress()
    if d.is_main:
        drop_stale_temporaries(tr.save_dir, ("fen_*", "last_*", "auc_*", "loss_*"))
    log(describe(tr), d)
    if d.is_main:
        log_baseline(tr)  # GRX without the FEN: what the FEN has to beat
    if progress.epoch >= settings.epochs or (settings.max_steps and progress.step >= settings.max_steps):
        log(f"nothing to train: epoch {progress.epoch} of {settings.epochs} (step {progress.step}) is already "
            "done", d)
    run_epochs(tr, progress)
    if d.is_main:
        log_selected(tr, progress)
    fen = tr.path("fen")
    return TrainResult(fen if fen.is_file() else None, tr.path("last") if tr.path("last").is_file() else None,
                       progress.best, progress.history, progress.step)


def run_epochs(tr: Trainer, progress: Progress) -> None:
    """The epochs still to run; a Ctrl-C says which epoch is on disk."""
    settings, d = tr.settings, tr.d
    try:
        for epoch in range(progress.epoch + 1, settings.epochs + 1):
            if settings.max_steps and progress.step >= settings.max_steps:
                break
            t0 = time.perf_counter()
            means = run_epoch(tr, epoch, progress)
            check_finite(tr, epoch, progress)  # before anything of the epoch is evaluated or saved
            if d.is_main:
                end_epoch(tr, epoch, means, t0, time.perf_counter() - t0, progress)
            d.barrier()
            progress.epoch = progress.saved_epoch = epoch
    except KeyboardInterrupt:
        kept = ("nothing was saved yet" if not progress.saved_epoch else f"{tr.path('last')} holds epoch "
                f"{progress.saved_epoch}: continue with resume=True" if settings.save_last else f"{tr.path('fen')} "
                "holds the selected FEN (no resume state: save_last=False)")
        raise Interrupted(f"interrupted in epoch {progress.epoch + 1} (step {progress.step}); {kept}") from None
