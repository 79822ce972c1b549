"""What a run trains and evaluates on: training patches from a HAD100-layout folder or from labelled scenes,
the per-epoch test set, the validation scenes built from held-out training data (``--select val`` /
``val_real``, data/patches.py), and the FEN+GRX score the selection uses (:func:`fen_grx_auc`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from data import had100
from data.bands import training_wavelengths
from data.had100 import had100_train_files, read_had100
from data.patches import (anomaly_pool, load_patches, make_real_val_scenes_from, make_val_scenes,
                          make_val_scenes_from, scene_patches, split_files)
from data.preprocess import DataError, preprocess
from data.scene import Scene, read_scene
from data.synthetic import choose_dataset, ensure_synthetic
from detectors.rx import grx
from evaluation.metrics import roc_auc
from model.fen import FEN
from training.settings import VAL_SELECTIONS, TrainSettings
from training.state import Diverged
from utils.cli import say
from utils.dist import Dist

#: The evaluation sets of a run (:meth:`TrainData.sets`), by the name their score goes by (``<name>_mAUC``
#: in the log line, the checkpoints and the AUC table), in that order.
EVAL_SETS = ("test", *VAL_SELECTIONS)


def log(msg: str, d: Dist) -> None:
    """A progress line on stderr, from the main process only (parameters named as the caller names them:
    utils.cli.say)."""
    if d.is_main:
        print(say(msg), file=sys.stderr, flush=True)


#: A scene of an evaluation set: its name, its preprocessed ``(B, H, W)`` tensor and its ``(H, W)`` mask.
EvalScene = tuple[str, torch.Tensor, np.ndarray]


@dataclass
class TrainData:
    """Training patches ``(N, B, size, size)``, where they came from, and the per-epoch evaluation sets."""

    patches: torch.Tensor
    sources: int
    description: str
    test: list[EvalScene]
    val: list[EvalScene]
    dropped: int = 0
    val_real: list[EvalScene] = field(default_factory=list)
    val_scene: list[EvalScene] = field(default_factory=list)
    wavelengths: np.ndarray | None = None  # the training bands' centres (nm), where every scene gives the same
    unlabelled: int = 0  # training scenes without a mask, taken as all background

    def sets(self) -> dict[str, list[EvalScene]]:
        """Every evaluation set by the name its score goes by (``<name>_mAUC`` in logs and checkpoints)."""
        return {k: getattr(self, k) for k in EVAL_SETS}


def eval_cubes(scenes: list[Scene], bands: int, start: int = 0) -> list[EvalScene]:
    """The evaluation scenes preprocessed like the training data. Quirk 8, *not* reproduced: the authors'
    per-epoch evaluation always takes bands [0, B) whatever the start band; here it takes the bands that
    training uses, [start, start + B), as test.py does (the same at the default --start_channel 0)."""
    return [(s.name, preprocess(s.cube, bands, start, s.label), s.mask)
            for s in scenes]


def data_root(settings: TrainSettings, d: Dist) -> tuple[Path, str]:
    root, description, note = choose_dataset(settings.data_path, had100.DEFAULT_DATA)
    if note:
        log(note, d)
        if d.is_main:
            ensure_synthetic(root)
        d.barrier()
    return root, description


def test_scenes(settings: TrainSettings, root: Path | None, d: Dist) -> list[Scene]:
    """The per-epoch test set: ``test_scenes``, else the HAD100 folder's; the first ``eval_scenes`` of them."""
    if not (settings.eval_test and d.is_main) or (root is None and not settings.test_scenes):
        return []
    scenes = [read_scene(p) for p in settings.test_scenes] if settings.test_scenes else read_had100(root)
    return scenes[: settings.eval_scenes] if settings.eval_scenes > 0 else scenes


def had100_data(settings: TrainSettings, d: Dist) -> TrainData:
    """Patches of a HAD100-layout folder's training files; val scenes from held-out files."""
    root, source = data_root(settings, d)
    files = had100_train_files(root, settings.sensor)
    val: list[Scene] = []
    if settings.select in VAL_SELECTIONS:
        files, val_files = split_files(files, settings.val_fraction, settings.seed)
        val = make_val_scenes(val_files, settings.input_channel, settings.start_channel, settings.seed)
    patches = load_patches(files, settings.input_channel, settings.start_channel, settings.img_size, settings.patch_stride)
    cubes = partial(eval_cubes, bands=settings.input_channel, start=settings.start_channel)
    return TrainData(patches, len(files), f"{len(files)} files ({source}, {settings.sensor})",
                     cubes(test_scenes(settings, root, d)), cubes(val) if d.is_main else [])


def scene_data(settings: TrainSettings, d: Dist) -> TrainData:
    """Patches of ``train_scenes`` that touch no labelled anomaly (an unlabelled scene: all of them); val scenes
    from the patches of held-out scenes (``val_scenes``, else a ``val_fraction`` of ``train_scenes``), and the
    held-out labelled scenes themselves with their labels (val_scene)."""
    every = [read_scene(p) for p in settings.train_scenes]
    given = [read_scene(p) for p in (settings.val_scenes or [])]
    scenes, val, val_real, held_out = every, [], [], []
    bands, start, size, seed = settings.input_channel, settings.start_channel, settings.img_size, settings.seed
    if settings.select in VAL_SELECTIONS or given:  # val_scenes are logged whatever the selection
        if given:
            held_out = given
        else:
            scenes, held_out = split_files(every, settings.val_fraction, seed)
        if settings.select == "val_scene" and not any(s.labelled for s in held_out):
            raise DataError("select='val_scene' scores the held-out scenes on their own labels, and none of "
                            f"{', '.join(s.label for s in held_out)} has a mask: use select='val' (implanted "
                            "anomalies) or 'last'")
        val = make_val_scenes_from(held_out, bands, start, size, seed)
        pool = anomaly_pool(every + given, bands, start)
        if len(pool) or settings.select == "val_real":  # both signals logged whenever there are spectra to implant
            val_real = make_real_val_scenes_from(held_out, pool, bands, start, size, seed)
    patches, dropped = scene_patches(scenes, bands, start, size, settings.patch_stride)
    names = ", ".join(s.name for s in scenes)
    main = d.is_main
    cubes = partial(eval_cubes, bands=bands, start=start)
    labelled_out = [s for s in held_out if s.labelled]  # val_scene scores the held-out scenes' own labels
    return TrainData(patches, len(scenes), f"{len(scenes)} scenes ({names})",
                     cubes(test_scenes(settings, None, d)), cubes(val) if main else [], dropped,
                     cubes(val_real) if main else [], cubes(labelled_out) if main else [],
                     wavelengths=training_wavelengths(scenes, bands, start),
                     unlabelled=sum(not s.labelled for s in scenes))


@torch.no_grad()
def fen_grx_auc(fen: FEN | None, cubes: list[EvalScene], device: torch.device
                ) -> tuple[float, dict[str, float | None]]:
    """FEN+GRX (plain GRX with ``fen=None``): mean ROC AUC over ``cubes`` (scenes whose AUC is undefined
    are left out; NaN if none is defined) and each scene's."""
    aucs = {}
    for name, x, mask in cubes:
        x = x.to(device)
        if fen is not None:
            x = fen.enhance(x, normalize=False, layout="bhw")
            if not torch.isfinite(x).all():  # finite but huge weights: GRX would blame the data
                raise Diverged(f"the FEN's output on test scene {name} has NaN or Inf values")
        scores = grx(x, layout="bhw")
        aucs[name] = roc_auc(scores.cpu().numpy(), mask)
    defined = [a for a in aucs.values() if a is not None]
    return (float(np.mean(defined)) if defined else float("nan")), aucs

