"""The training state: seeds and random states, the configuration a resumed run must share, the progress
of a run, and the errors that stop one.

A resumable state (``last_{N}bands.pt``, :data:`STATE_FORMAT`) holds the trainable weights, the optimiser and
gradient scaler, every random state, the progress and the configuration; :func:`open_resume` refuses, before
any data is read, a state written with other options (:data:`RESUME_KEYS`), naming each difference.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.settings import TrainSettings
from utils.errors import FerdError
from weights.files import load_tensors

STATE_FORMAT = "ferd-train/1"
#: Options a resumed run must share with the run that wrote the state (``--epochs`` may grow).
RESUME_KEYS = ("input_channel", "start_channel", "img_size", "patch_stride", "sensor", "train_scenes", "teacher",
               "teacher_fingerprint", "hidden", "batch_size", "lr", "betas", "seed", "w_sim", "w_rec", "w_zc",
               "double_sigmoid", "select", "val_fraction", "train_patches", "init_fen", "amp", "amp_dtype")
#: Known only once the data is read and the model built: checked in the second pass.
LATE_KEYS = ("hidden", "teacher_fingerprint", "train_patches")


class TrainingError(FerdError):
    """Training cannot go on (NaN loss, unusable resume file); the message says why and what was kept."""


class Diverged(TrainingError):
    """NaN or Inf in the loss, the weights, the buffers or the optimiser state: the training diverged."""


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python's ``random``, numpy's global generator, torch and every CUDA device, as the authors do;
    with ``deterministic`` also cuDNN deterministic without benchmark and torch's deterministic algorithms
    where they exist (a warning, not an error, for an op that has none)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_states(device: torch.device) -> dict:
    """Every random state a resumed run restores (numpy's as tensors: training states load weights-only)."""
    key, pos, has_gauss, gauss = np.random.get_state()[1:]
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "gauss": float(gauss)},
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if "python" in states:
        random.setstate(tuple(tuple(v) if isinstance(v, list) else v for v in states["python"]))
    if "numpy" in states:
        n = states["numpy"]
        np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if device.type == "cuda" and states.get("cuda") is not None:
        torch.cuda.set_rng_state(states["cuda"], device)


def run_config(settings: TrainSettings, fen_config: dict, fp: str | None, n_patches: int | None) -> dict:
    """What the training state must agree on to be resumed (:data:`RESUME_KEYS`), plus the rest for the record."""
    cfg = {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, (list, tuple)) else v)
           for k, v in settings.flat().items()}
    cfg["betas"] = list(settings.betas)
    cfg.update(hidden=fen_config.get("hidden"), teacher_fingerprint=fp, train_patches=n_patches)
    return cfg


def resume_value(cfg: dict, key: str) -> object:
    """Setting ``key`` of a run configuration as a resume compares it: ``--amp_dtype`` counts only with ``--amp``
    (an fp16 run's training state holds a gradient scaler, which a run without one cannot load, nor the reverse,
    and the arithmetic differs)."""
    if key == "amp_dtype" and not cfg.get("amp"):
        return None
    return cfg.get(key)


def check_resume(state: dict, cfg: dict, path: Path, late: bool) -> None:
    """Refuse a state written with other settings, naming every difference (options first, then, with
    ``late``, what depends on the data and the teacher's weights)."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path}: not a training state of train.py (format tag '{STATE_FORMAT}' missing)")
    old = state["config"]
    keys = LATE_KEYS if late else [k for k in RESUME_KEYS if k not in LATE_KEYS]
    names = {"teacher_fingerprint": "teacher weights (fingerprint)", "train_patches": "number of training patches",
             "hidden": "FPL width"}
    diffs = [f"{names.get(k, '--' + k)} {resume_value(old, k)!r} there, {resume_value(cfg, k)!r} here" for k in keys
             if resume_value(old, k) != resume_value(cfg, k)]
    if diffs:
        raise TrainingError(f"{path} was written by another configuration: " + "; ".join(diffs))


def open_resume(settings: TrainSettings, last_path: Path) -> tuple[dict | None, Path | None]:
    """The training state to resume from, memory-mapped and checked against the options, before any data
    is read: a mismatch is refused at once."""
    if settings.resume is None:
        return None, None
    path = last_path if settings.resume == "auto" else Path(settings.resume)
    if not path.is_file():
        raise TrainingError(f"resume=...: {path} not found")
    state = load_tensors(path, TrainingError, "so it is not a training state of train.py (resume=... takes the "
                         "last_<N>bands.pt that train.py writes)", mmap=True)
    check_resume(state, run_config(settings, {}, None, None), path, late=False)
    return state, path


@dataclass
class Progress:
    """Where the run stands: the last finished epoch, steps so far, per-epoch rows, the selected epoch."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "score": None})
    saved_epoch: int = 0  # the epoch of the training state on disk

