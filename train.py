"""Train FERD by reverse distillation and write the FEN that test.py runs (docs: README "Training").

    python train.py --input_channel 50                          # the paper's setting (HAD100 AVIRIS-NG)
    python train.py --teacher random --epochs 5 --eval_scenes 4 # a short run on the synthetic set
    python train.py --train_scenes a.mat b.mat --test_scenes c.mat --select val --img_size 32 --patch_stride 16
    torchrun --nproc_per_node=4 train.py --input_channel 100    # DistributedDataParallel (NCCL / gloo)
    python train.py --input_channel 50 --resume                 # continue SAVE_DIR/last_50bands.pt

Writes, atomically after every epoch, under --save_dir:
  fen_{N}bands.pt    the selected FEN (+ its ZCL) (test.py --weights PATH), recording how it was selected
  last_{N}bands.pt   the full training state for --resume
  auc_{N}bands.csv   one row per epoch: loss terms, FEN+GRX mAUC (test and/or val), seconds, per-scene AUCs
  loss_{N}bands.png  the three loss terms and the mAUCs per epoch
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from data.had100 import had100_train_files, read_had100
from data.patches import (PatchDataset, anomaly_pool, load_patches, make_real_val_scenes_from, make_val_scenes,
                          make_val_scenes_from, scene_patches, split_files)
from data.preprocess import preprocess
from data.scene import Scene, read_scene
from data.synthetic import DEFAULT_ROOT as SYNTHETIC_ROOT
from data.synthetic import choose_dataset, ensure_synthetic
from detectors.rx import grx
from evaluation.metrics import roc_auc
from evaluation.report import fmt
from model.fen import FEN
from model.ferd import FERD
from model.losses import W_REC, W_SIM, W_ZC, FERDLoss
from model.teacher import fingerprint
from utils.cli import OneLineParser, add_run_options, check_writable, fail, restore_ctrl_c
from utils.device import AMP_DTYPES
from utils.dist import Dist
from utils.errors import FerdError
from utils.io import drop_stale_temporaries, save_text, save_torch
from weights.files import load_tensors
from weights.imagenet import apply_teacher_state, teacher_state
from weights.release import load_fen, save_fen

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT / "data" / "HAD100Dataset"
STATE_FORMAT = "ferd-train/1"
#: Options a resumed run must share with the run that wrote the state (``--epochs`` may grow).
RESUME_KEYS = ("input_channel", "start_channel", "img_size", "patch_stride", "sensor", "train_scenes", "teacher",
               "teacher_fingerprint", "hidden", "batch_size", "lr", "betas", "seed", "w_sim", "w_rec", "w_zc",
               "double_sigmoid", "select", "val_fraction", "train_patches", "init_fen")
#: Known only once the data is read and the model built: checked in the second pass.
LATE_KEYS = ("hidden", "teacher_fingerprint", "train_patches")
SELECTION = {"test": "best FEN+GRX mAUC on the TEST set (quirk 4, the paper's selection)",
             "last": "last epoch", "val": "best FEN+GRX mAUC on held-out backgrounds with implanted anomalies",
             "val_real": "best FEN+GRX mAUC on held-out backgrounds with implanted real anomaly spectra"}
#: Selections that hold training files (scenes) out to build validation scenes.
VAL_SELECTIONS = ("val", "val_real")


class TrainingError(FerdError):
    """Training cannot go on (NaN loss, unusable resume file); the message says why and what was kept."""


class Diverged(TrainingError):
    """NaN or Inf in the loss, the weights, the buffers or the optimiser state: the training diverged."""


class Interrupted(Exception):
    """Ctrl-C: the message says which epoch is saved."""


# ----------------------------------------------------------------------------------------------- options

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="train.py", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data_path", type=Path, default=None,
                   help=f"HAD100-layout folder (default {DEFAULT_DATA.relative_to(ROOT)}, else the synthetic "
                        f"set in {SYNTHETIC_ROOT.relative_to(ROOT)})")
    d.add_argument("--train_scenes", type=Path, nargs="+", default=None, metavar="FILE",
                   help="train on these scenes instead of a HAD100 folder (.mat, .npy + .png mask, ENVI .hdr, as "
                        "test.py --scenes); patches touching a labelled anomaly are dropped")
    d.add_argument("--test_scenes", type=Path, nargs="+", default=None, metavar="FILE",
                   help="scenes of the per-epoch FEN+GRX evaluation (default: the HAD100 folder's test set)")
    d.add_argument("--sensor", choices=["aviris_ng", "aviris", "all"], default="aviris_ng", help="training patches")
    d.add_argument("--input_channel", type=int, default=50, help="number of bands B (50, 100, 200 in the paper)")
    d.add_argument("--start_channel", type=int, default=0, help="first band used")
    d.add_argument("--img_size", type=int, default=64, help="training patch side; files and scenes are cut into it")
    d.add_argument("--patch_stride", type=int, default=None,
                   help="step between patches (default: --img_size, non-overlapping)")
    m = p.add_argument_group("model and loss")
    m.add_argument("--teacher", default="imagenet",
                   help="'imagenet' (torchvision IMAGENET1K_V1), 'random' (seeded), or a state-dict file "
                        "(full torchvision wide_resnet101_2, or the authors' layer1-only enc.pt)")
    m.add_argument("--init_fen", default=None, metavar="WEIGHTS",
                   help="start the CWL, teacher layer1 and FPL from this FEN (a release name such as had100, a "
                        "checkpoint or a folder of the authors' files, as test.py --weights): fine-tuning; the "
                        "MFFM, decoder, reconstruction CWL and ZCL start from their initialisation")
    m.add_argument("--download_teacher", action=argparse.BooleanOptionalAction, default=True,
                   help="let torchvision download the ImageNet file if it is not cached")
    m.add_argument("--w_sim", type=float, default=W_SIM, help="weight of the feature-similarity loss")
    m.add_argument("--w_rec", type=float, default=W_REC, help="weight of the reconstruction loss")
    m.add_argument("--w_zc", type=float, default=W_ZC, help="weight of the zero-centering loss")
    m.add_argument("--double_sigmoid", action=argparse.BooleanOptionalAction, default=True,
                   help="quirk 1: BCE-with-logits on the ZCL's sigmoid output, as the authors (--no-: plain BCE)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=60)
    o.add_argument("--max_steps", type=int, default=0,
                   help="stop after this many optimiser steps in all (0: no limit); the last epoch may be partial")
    o.add_argument("--batch_size", type=int, default=16, help="global batch, split over torchrun's processes")
    o.add_argument("--lr", type=float, default=0.005, help="Adam learning rate")
    o.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.999), metavar=("B1", "B2"), help="Adam betas")
    o.add_argument("--seed", type=int, default=10, help="seeds Python's random, numpy, torch and CUDA")
    o.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=False,
                   help="cuDNN deterministic, no cuDNN benchmark, deterministic algorithms where they exist "
                        "(bit-reproducible GPU runs, slower)")
    o.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                   help="automatic mixed precision (CUDA only)")
    o.add_argument("--amp_dtype", choices=sorted(AMP_DTYPES), default="bf16", help="fp16 adds a gradient scaler")
    o.add_argument("--num_workers", type=int, default=0, help="DataLoader workers (patches are in memory)")
    s = p.add_argument_group("selection, evaluation, checkpoints")
    s.add_argument("--select", choices=["test", "last", *VAL_SELECTIONS], default="test",
                   help="which epoch's FEN is saved: best test mAUC (quirk 4, the paper's), the last, or best mAUC "
                        "on held-out training backgrounds with implanted anomalies: synthetic materials (val) or "
                        "the labelled anomaly spectra of --train_scenes (val_real); both are logged when possible")
    s.add_argument("--val_fraction", type=float, default=0.1,
                   help="training files (scenes) held out by --select val/val_real")
    s.add_argument("--eval_test", action=argparse.BooleanOptionalAction, default=True,
                   help="FEN+GRX on the test set each epoch (required by --select test)")
    s.add_argument("--eval_scenes", type=int, default=0, help="evaluate only the first N test scenes (0: all)")
    s.add_argument("--save_dir", type=Path, default=ROOT / "checkpoints")
    s.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="continue from PATH (default SAVE_DIR/last_{N}bands.pt)")
    add_run_options(s)
    args = p.parse_args(argv)
    args.betas = tuple(args.betas)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks of the options alone (before any file is read): one-line errors through ``p.error``, in the
    form ``--option value: what is allowed``."""
    for name, least in (("batch_size", 1), ("epochs", 1), ("input_channel", 1), ("start_channel", 0),
                        ("max_steps", 0), ("eval_scenes", 0), ("num_workers", 0), ("img_size", 8)):
        if getattr(args, name) < least:
            p.error(f"--{name} {getattr(args, name)}: must be {least} or more")
    if args.patch_stride is not None and args.patch_stride < 1:
        p.error(f"--patch_stride {args.patch_stride}: must be 1 or more")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        p.error(f"--lr {args.lr}: must be a positive number")
    for name in ("w_sim", "w_rec", "w_zc"):
        w = getattr(args, name)
        if not (math.isfinite(w) and w >= 0):
            p.error(f"--{name} {w}: must be a finite number, 0 or more")
    if not all(0 <= b < 1 for b in args.betas):
        p.error(f"--betas {args.betas[0]} {args.betas[1]}: each must lie in [0, 1)")
    if not 0 < args.val_fraction < 1:
        p.error(f"--val_fraction {args.val_fraction}: must lie between 0 and 1 (both excluded)")
    if args.train_scenes and args.data_path is not None:
        p.error("--train_scenes and --data_path: give one source of training data")
    has_test = args.test_scenes or not args.train_scenes
    if args.select == "test" and not (args.eval_test and has_test):
        p.error("--select test needs a test set to evaluate each epoch: "
                + ("give --test_scenes, " if not has_test else "drop --no-eval_test, ") + "or pick --select val/last")
    if args.select == "val_real" and not args.train_scenes:
        p.error("--select val_real needs --train_scenes with labelled anomalies (their spectra are implanted); "
                "HAD100's training files have none: use --select val")


def check_outputs(args: argparse.Namespace) -> None:
    """Before any work: the save folder and each file train.py writes there can be written."""
    check_writable(args.save_dir, "--save_dir", folder=True)
    for kind, suffix in (("fen", "pt"), ("last", "pt"), ("auc", "csv"), ("loss", "png")):
        check_writable(args.save_dir / f"{kind}_{args.input_channel}bands.{suffix}", "--save_dir", folder=False)


# ----------------------------------------------------------------------------------------------- processes

def log(msg: str, d: Dist) -> None:
    if d.is_main:
        print(msg, file=sys.stderr, flush=True)


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


# ----------------------------------------------------------------------------------------------- data

EvalCube = tuple[str, torch.Tensor, np.ndarray]


@dataclass
class TrainData:
    """Training patches ``(N, B, size, size)``, where they came from, and the per-epoch evaluation sets."""

    patches: torch.Tensor
    sources: int
    description: str
    test: list[EvalCube]
    val: list[EvalCube]
    dropped: int = 0
    val_real: list[EvalCube] = field(default_factory=list)


def eval_cubes(scenes: list[Scene], args: argparse.Namespace) -> list[EvalCube]:
    """The evaluation scenes preprocessed like the training data. Quirk 8, *not* reproduced: the authors'
    per-epoch evaluation always takes bands [0, B) whatever the start band; here it takes the bands that
    training uses, [start, start + B), as test.py does (the same at the default --start_channel 0)."""
    return [(s.name, preprocess(s.cube, args.input_channel, args.start_channel, s.label), s.mask)
            for s in scenes]


def data_root(args: argparse.Namespace, d: Dist) -> tuple[Path, str]:
    root, description, note = choose_dataset(args.data_path, DEFAULT_DATA)
    if note:
        log(note, d)
        if d.is_main:
            ensure_synthetic(root)
        d.barrier()
    return root, description


def test_scenes(args: argparse.Namespace, root: Path | None, d: Dist) -> list[Scene]:
    """The per-epoch test set: --test_scenes, else the HAD100 folder's; first --eval_scenes of them."""
    if not (args.eval_test and d.is_main) or (root is None and not args.test_scenes):
        return []
    scenes = [read_scene(p) for p in args.test_scenes] if args.test_scenes else read_had100(root)
    return scenes[: args.eval_scenes] if args.eval_scenes > 0 else scenes


def had100_data(args: argparse.Namespace, d: Dist) -> TrainData:
    """Patches of a HAD100-layout folder's training files; val scenes from held-out files."""
    root, source = data_root(args, d)
    files = had100_train_files(root, args.sensor)
    val: list[Scene] = []
    if args.select in VAL_SELECTIONS:
        files, val_files = split_files(files, args.val_fraction, args.seed)
        val = make_val_scenes(val_files, args.input_channel, args.start_channel, args.seed)
    patches = load_patches(files, args.input_channel, args.start_channel, args.img_size, args.patch_stride)
    return TrainData(patches, len(files), f"{len(files)} files ({source}, {args.sensor})",
                     eval_cubes(test_scenes(args, root, d), args), eval_cubes(val, args) if d.is_main else [])


def scene_data(args: argparse.Namespace, d: Dist) -> TrainData:
    """Patches of --train_scenes that touch no labelled anomaly; val scenes from held-out scenes' patches."""
    every = [read_scene(p) for p in args.train_scenes]
    scenes, val, val_real = every, [], []
    if args.select in VAL_SELECTIONS:
        scenes, held_out = split_files(every, args.val_fraction, args.seed)
        val = make_val_scenes_from(held_out, args.input_channel, args.start_channel, args.img_size, args.seed)
        pool = anomaly_pool(every, args.input_channel, args.start_channel)
        if len(pool) or args.select == "val_real":  # both signals logged whenever there are spectra to implant
            val_real = make_real_val_scenes_from(held_out, pool, args.input_channel, args.start_channel,
                                                 args.img_size, args.seed)
    patches, dropped = scene_patches(scenes, args.input_channel, args.start_channel, args.img_size,
                                     args.patch_stride)
    names = ", ".join(s.name for s in scenes)
    main = d.is_main
    return TrainData(patches, len(scenes), f"{len(scenes)} scenes ({names})",
                     eval_cubes(test_scenes(args, None, d), args), eval_cubes(val, args) if main else [], dropped,
                     eval_cubes(val_real, args) if main else [])


@torch.no_grad()
def evaluate(fen: FEN | None, cubes: list[EvalCube], device: torch.device) -> tuple[float, dict[str, float | None]]:
    """FEN+GRX (plain GRX with ``fen=None``): mean ROC AUC over ``cubes`` (scenes whose AUC is undefined
    are left out; NaN if none is defined) and each scene's."""
    aucs = {}
    for name, x, mask in cubes:
        x = x.to(device)
        if fen is not None:
            x = fen.enhance(x, normalize=False)
            if not torch.isfinite(x).all():  # finite but huge weights: GRX would blame the data
                raise Diverged(f"the FEN's output on test scene {name} has NaN or Inf values")
        scores = grx(x)
        aucs[name] = roc_auc(scores.cpu().numpy(), mask)
    defined = [a for a in aucs.values() if a is not None]
    return (float(np.mean(defined)) if defined else float("nan")), aucs


# ----------------------------------------------------------------------------------------------- resume

def run_config(args: argparse.Namespace, fen_config: dict, fp: str | None, n_patches: int | None) -> dict:
    """What the training state must agree on to be resumed (:data:`RESUME_KEYS`), plus the rest for the record."""
    cfg = {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, list) else v)
           for k, v in vars(args).items()}
    cfg["betas"] = list(args.betas)
    cfg.update(hidden=fen_config.get("hidden"), teacher_fingerprint=fp, train_patches=n_patches)
    return cfg


def check_resume(state: dict, cfg: dict, path: Path, late: bool) -> None:
    """Refuse a state written with other settings, naming every difference (options first, then, with
    ``late``, what depends on the data and the teacher's weights)."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path}: not a training state of train.py (format tag '{STATE_FORMAT}' missing)")
    old = state["config"]
    keys = LATE_KEYS if late else [k for k in RESUME_KEYS if k not in LATE_KEYS]
    names = {"teacher_fingerprint": "teacher weights (fingerprint)", "train_patches": "number of training patches",
             "hidden": "FPL width"}
    diffs = [f"{names.get(k, '--' + k)} {old.get(k)!r} there, {cfg[k]!r} here" for k in keys if old.get(k) != cfg[k]]
    if diffs:
        raise TrainingError(f"{path} was written by another configuration: " + "; ".join(diffs))


def open_resume(args: argparse.Namespace, last_path: Path) -> tuple[dict | None, Path | None]:
    """The training state to resume from, memory-mapped and checked against the options, before any data
    is read: a mismatch is refused at once."""
    if args.resume is None:
        return None, None
    path = last_path if args.resume == "auto" else Path(args.resume)
    if not path.is_file():
        raise TrainingError(f"--resume: {path} not found")
    state = load_tensors(path, TrainingError, "so it is not a training state of train.py (--resume takes the "
                         "last_<N>bands.pt that train.py writes)", mmap=True)
    check_resume(state, run_config(args, {}, None, None), path, late=False)
    return state, path


# ----------------------------------------------------------------------------------------------- the run

@dataclass
class Progress:
    """Where the run stands: the last finished epoch, steps so far, per-epoch rows, the selected epoch."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "score": None})
    saved_epoch: int = 0  # the epoch of the training state on disk


@dataclass
class Trainer:
    """Everything one run needs, built once by :func:`build_trainer`."""

    args: argparse.Namespace
    d: Dist
    data: TrainData
    ferd: FERD
    net: torch.nn.Module
    loss_fn: FERDLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    sampler: DistributedSampler
    loader: DataLoader
    cfg: dict
    teacher_msg: str
    save_dir: Path

    def path(self, kind: str, suffix: str = "pt") -> Path:
        return self.save_dir / f"{kind}_{self.args.input_channel}bands.{suffix}"


def init_from_fen(ferd: FERD, fen: FEN, spec: str) -> str:
    """Copy ``fen``'s CWL, layer1 and FPL into ``ferd`` (the teacher's layer1 is the FEN's: frozen, as ever);
    returns the log phrase."""
    if fen.config != ferd.config:
        raise TrainingError(f"--init_fen {spec}: a FEN of {fen.config}, this network is {ferd.config}")
    ferd.cwl.load_state_dict(fen.cwl.state_dict())
    ferd.teacher.layer1.load_state_dict(fen.layer1.state_dict())
    ferd.sfam.fpl.load_state_dict(fen.fpl.state_dict())
    return f"CWL, layer1 and FPL from {spec} (fine-tuning)"


def build_trainer(args: argparse.Namespace, d: Dist) -> Trainer:
    """Teacher weights and data first (a missing file is reported before any model is built), then the
    model, loss, optimiser and loader."""
    t_state, t_source = teacher_state(args.teacher, args.download_teacher)
    data = scene_data(args, d) if args.train_scenes else had100_data(args, d)
    seed_everything(args.seed, args.deterministic)
    ferd = FERD(args.input_channel)
    teacher_msg = apply_teacher_state(ferd.teacher, t_state, t_source, args.seed)
    if args.init_fen:
        teacher_msg += "; " + init_from_fen(ferd, load_fen(args.init_fen, args.input_channel), args.init_fen)
    cfg = run_config(args, ferd.config, fingerprint(ferd.teacher), len(data.patches))
    ferd.to(d.device)
    amp_dtype = AMP_DTYPES[args.amp_dtype] if args.amp else None
    net = DistributedDataParallel(ferd, device_ids=[d.device.index] if d.device.type == "cuda" else None) \
        if d.world > 1 else ferd
    dataset = PatchDataset(data.patches)
    sampler = DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size // d.world, sampler=sampler,
                        num_workers=args.num_workers, pin_memory=d.device.type == "cuda")
    return Trainer(args, d, data, ferd, net, FERDLoss(args.w_sim, args.w_rec, args.w_zc, args.double_sigmoid),
                   torch.optim.Adam(ferd.trainable(), lr=args.lr, betas=args.betas),
                   torch.amp.GradScaler(d.device.type, enabled=amp_dtype == torch.float16), amp_dtype,
                   sampler, loader, cfg, teacher_msg, args.save_dir)


def restore(tr: Trainer, state: dict, path: Path) -> Progress:
    """Weights, optimiser, scaler, random states and progress of a training state."""
    check_resume(state, tr.cfg, path, late=True)
    missing, unexpected = tr.ferd.load_state_dict(state["model"], strict=False)  # the teacher is not stored
    if unexpected or any(not k.startswith("teacher.") for k in missing):
        raise TrainingError(f"{path}: model tensors do not match this network "
                            f"(unexpected {unexpected[:3]}, missing {[k for k in missing if 'teacher.' not in k][:3]})")
    tr.optimizer.load_state_dict(state["optimizer"])
    tr.scaler.load_state_dict(state["scaler"])
    set_rng_states(state["rng"], tr.d.device)
    log(f"resumed from {path}: epoch {state['epoch']} done, step {state['step']}", tr.d)
    return Progress(state["epoch"], state["step"], state["history"], state["best"], state["epoch"])


def amp_context(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def train_step(net: torch.nn.Module, loss_fn: FERDLoss, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, x: torch.Tensor, amp_dtype: torch.dtype | None,
               d: Dist | None = None) -> tuple[float, dict[str, float]]:
    """One optimiser step on batch ``x`` ``(N, B, H, W)``; returns the (process-averaged) loss and its terms,
    computed before the step. Pinned to the authors' step by tests/test_train_golden.py.

    A non-finite loss raises :class:`TrainingError` *before* the weights change, on every process
    alike (the loss is averaged over processes first).
    """
    optimizer.zero_grad(set_to_none=True)
    with amp_context(x.device, amp_dtype):
        out = net(x)
    loss, terms = loss_fn(out, x)
    values = torch.stack([loss.detach(), *(t.detach() for t in terms.values())])
    if d is not None:
        values = d.mean(values)
    values = values.tolist()
    if not math.isfinite(values[0]):
        raise TrainingError(f"loss is {values[0]}")
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return values[0], dict(zip(terms, values[1:]))


def run_epoch(tr: Trainer, epoch: int, progress: Progress) -> dict[str, float]:
    """One pass over the shuffled patches (or up to --max_steps); returns the mean loss and terms."""
    args, d = tr.args, tr.d
    tr.sampler.set_epoch(epoch)
    tr.ferd.train()
    sums, n = {"loss": 0.0, "sim": 0.0, "rec": 0.0, "zc": 0.0}, 0
    bar = tqdm(tr.loader, desc=f"epoch {epoch}/{args.epochs}", unit="step", leave=False, file=sys.stderr,
               disable=not (args.progress and d.is_main))
    for x in bar:
        progress.step += 1
        try:
            loss, terms = train_step(tr.net, tr.loss_fn, tr.optimizer, tr.scaler, x.to(d.device, non_blocking=True),
                                     tr.amp_dtype, d)
        except TrainingError as err:
            raise diverged(tr, f"{err} at step {progress.step}", epoch, progress) from None
        for k, v in (("loss", loss), *terms.items()):
            sums[k] += v
        n += 1
        bar.set_postfix(loss=f"{loss:.4f}")
        if args.max_steps and progress.step >= args.max_steps:
            break
    return {k: v / max(n, 1) for k, v in sums.items()}


def diverged(tr: Trainer, what: str, epoch: int, progress: Progress) -> Diverged:
    """The one line of a diverged run: what was not finite, where, what to do, and what is kept on disk."""
    kept = (f"the last good checkpoint is {tr.path('last')} (epoch {progress.saved_epoch})"
            if progress.saved_epoch else "no checkpoint was written yet")
    return Diverged(f"training diverged: {what} (epoch {epoch}): lower --lr (now {tr.args.lr:g}); stopped; {kept}")


def state_tensors(tr: Trainer) -> list[tuple[str, torch.Tensor]]:
    """Every floating tensor a checkpoint stores: trainable weights, buffers (BatchNorm statistics) and the
    optimiser's moments (the frozen teacher is not stored)."""
    named = [(k, v) for k, v in tr.ferd.state_dict().items() if not k.startswith("teacher.")]
    names = {id(p): k for k, p in tr.ferd.named_parameters()}
    for p, st in tr.optimizer.state.items():
        named += [(f"{names.get(id(p), '?')} (optimiser {k})", v) for k, v in st.items() if torch.is_tensor(v)]
    return [(k, v) for k, v in named if v.is_floating_point()]


def check_finite(tr: Trainer, epoch: int, progress: Progress) -> None:
    """Raise :class:`Diverged` if a tensor that the epoch's checkpoints would store has a NaN or Inf, before
    anything of the epoch is evaluated or written (so no non-finite tensor reaches a checkpoint). Every
    process checks its own and they agree on the outcome (buffers may differ between processes)."""
    named = state_tensors(tr)
    with torch.no_grad():
        ok = torch.stack([torch.isfinite(v).all() for _, v in named])
        any_bad = tr.d.mean((~ok).any().to(torch.float32).reshape(1))
    if float(any_bad) == 0:
        return
    bad = [k for (k, _), good in zip(named, ok.tolist()) if not good]
    listed = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    what = f"NaN or Inf in {listed}" if bad else "NaN or Inf in another process's weights or buffers"
    raise diverged(tr, f"{what} after step {progress.step}", epoch, progress)


def defined(v: float | None) -> bool:
    return v is not None and not math.isnan(v)


def improves(select: str, score: float | None, best: dict) -> bool:
    """Whether this epoch's FEN replaces the selected one. An undefined score (no scene with both classes)
    never wins over a defined one; while no epoch has had a defined score, the latest epoch is held."""
    if select == "last":
        return True
    if not defined(best["score"]):
        return True
    return defined(score) and score > best["score"]


def end_epoch(tr: Trainer, epoch: int, means: dict[str, float], t0: float, train_seconds: float,
              progress: Progress) -> None:
    """Evaluate the FEN, select, and write the FEN (if selected), the training state, the AUC table and
    the loss plot, each atomically; print the epoch's line."""
    args = tr.args
    fen = tr.ferd.fen()
    try:
        test_m, test_aucs = evaluate(fen, tr.data.test, tr.d.device) if tr.data.test else (None, {})
        val_m, _ = evaluate(fen, tr.data.val, tr.d.device) if tr.data.val else (None, {})
        val_real_m, _ = evaluate(fen, tr.data.val_real, tr.d.device) if tr.data.val_real else (None, {})
    except Diverged as err:
        raise diverged(tr, f"{err} after step {progress.step}", epoch, progress) from None
    score = {"test": test_m, "val": val_m, "val_real": val_real_m, "last": float(epoch)}[args.select]
    selected = improves(args.select, score, progress.best)
    if selected:
        progress.best = {"epoch": epoch, "score": score}
        for r in progress.history:
            r["selected"] = False
        save_fen(fen.cpu(), tr.path("fen"), zcl=tr.ferd.sfam.zcl, select=args.select,
                 selection=SELECTION[args.select], epoch=epoch, step=progress.step, score=score, test_mAUC=test_m,
                 val_mAUC=val_m, val_real_mAUC=val_real_m, teacher=args.teacher, teacher_note=tr.teacher_msg,
                 input_channel=args.input_channel, start_channel=args.start_channel, img_size=args.img_size, sensor=args.sensor, seed=args.seed,
                 data=tr.data.description)
    progress.history.append({"epoch": epoch, "step": progress.step, **means, "test_mAUC": test_m,
                             "val_mAUC": val_m, "val_real_mAUC": val_real_m, "seconds": time.perf_counter() - t0,
                             "selected": selected, "test_aucs": test_aucs})
    save_torch({"format": STATE_FORMAT, "config": tr.cfg, "epoch": epoch, "step": progress.step,
                "model": {k: v.detach().cpu() for k, v in tr.ferd.state_dict().items() if not k.startswith("teacher.")},
                "optimizer": tr.optimizer.state_dict(), "scaler": tr.scaler.state_dict(),
                "rng": rng_states(tr.d.device), "best": progress.best, "history": progress.history}, tr.path("last"))
    progress.saved_epoch = epoch  # on disk now: a Ctrl-C from here on (plot, barrier) must say so
    save_text(auc_table(progress.history, [n for n, _, _ in tr.data.test]), tr.path("auc", "csv"))
    from evaluation.plots import plot_training  # matplotlib only once there is something to draw

    plot_training(progress.history, tr.path("loss", "png"), SELECTION[args.select])
    print(epoch_line(args, epoch, progress, means, train_seconds), flush=True)


def epoch_line(args: argparse.Namespace, epoch: int, progress: Progress, means: dict[str, float],
               train_seconds: float) -> str:
    row, best = progress.history[-1], progress.best
    label = {"test": "best test mAUC (selected on the test set, quirk 4)", "val": "best val mAUC",
             "val_real": "best val_real mAUC", "last": "selected: last epoch"}[args.select]
    if args.select == "last":
        best_txt = label
    elif not defined(best["score"]):
        best_txt = f"{label} - (no epoch has had a defined score yet: holding epoch {best['epoch']})"
    else:
        best_txt = f"{label} {fmt(best['score'])} @ epoch {best['epoch']}"
    real_txt = f"  val_real mAUC {fmt(row['val_real_mAUC'])}" if row.get("val_real_mAUC") is not None else ""
    return (f"epoch {epoch}/{args.epochs}  step {progress.step}  loss {means['loss']:.4f} (sim {means['sim']:.4f} "
            f"rec {means['rec']:.6f} zc {means['zc']:.4f})  test mAUC {fmt(row['test_mAUC'])}  "
            f"val mAUC {fmt(row['val_mAUC'])}{real_txt}  {best_txt}  train {train_seconds:.1f} s, total {row['seconds']:.1f} s")


def auc_table(history: list[dict], scene_names: list[str]) -> str:
    cols = ["epoch", "step", "loss", "sim", "rec", "zc", "test_mAUC", "val_mAUC", "val_real_mAUC", "seconds",
            "selected"]
    lines = [",".join(cols + [f"test:{n}" for n in scene_names])]
    for row in history:
        vals = [str(row["epoch"]), str(row["step"])] + [fmt(row.get(k), 6) for k in cols[2:9]]
        vals += [fmt(row["seconds"], 2), "*" if row["selected"] else ""]
        vals += [fmt(row["test_aucs"].get(n), 6) for n in scene_names]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def describe(tr: Trainer) -> str:
    """The run's first log line: data, evaluation sets, teacher, device, selection."""
    a, data, d = tr.args, tr.data, tr.d
    dropped = f", {data.dropped} patches touching a labelled anomaly dropped" if a.train_scenes else ""
    stride = f" every {a.patch_stride} px" if a.patch_stride else ""
    return (f"{len(data.patches)} training patches {a.img_size}x{a.img_size}{stride} from {data.description}"
            f"{dropped}, bands [{a.start_channel}, {a.start_channel + a.input_channel}); {len(data.test)} test "
            f"scenes, {len(data.val)} val scenes; {tr.teacher_msg}; device {d.device}"
            f"{f' x {d.world} processes' if d.world > 1 else ''}; select: {SELECTION[a.select]}")


def train(args: argparse.Namespace, d: Dist) -> dict:
    """The whole run; returns the final training state summary (best epoch, score, history)."""
    if args.amp and d.device.type != "cuda":
        raise TrainingError("--amp needs a CUDA device (this run is on the CPU)")
    if args.batch_size % d.world:
        raise TrainingError(f"--batch_size {args.batch_size} does not split over {d.world} processes")
    check_outputs(args)
    state, resume_path = open_resume(args, args.save_dir / f"last_{args.input_channel}bands.pt")
    tr = build_trainer(args, d)
    progress = restore(tr, state, resume_path) if state is not None else Progress()
    if d.is_main:
        drop_stale_temporaries(tr.save_dir, ("fen_*", "last_*", "auc_*", "loss_*"))
    log(describe(tr), d)
    if d.is_main and (tr.data.test or tr.data.val):  # the reference the FEN has to beat
        plain = {k: evaluate(None, c, d.device)[0] for k, c in (("test", tr.data.test), ("val", tr.data.val),
                                                                     ("val_real", tr.data.val_real)) if c}
        log("GRX without the FEN: " + ", ".join(f"{k} mAUC {v:.4f}" for k, v in plain.items()), d)
    if progress.epoch >= args.epochs or (args.max_steps and progress.step >= args.max_steps):
        log(f"nothing to train: epoch {progress.epoch} of --epochs {args.epochs} (step {progress.step}) is "
            "already done", d)
    try:
        for epoch in range(progress.epoch + 1, args.epochs + 1):
            if args.max_steps and progress.step >= args.max_steps:
                break
            t0 = time.perf_counter()
            means = run_epoch(tr, epoch, progress)
            check_finite(tr, epoch, progress)
            if d.is_main:
                end_epoch(tr, epoch, means, t0, time.perf_counter() - t0, progress)
            d.barrier()
            progress.epoch = progress.saved_epoch = epoch
    except KeyboardInterrupt:
        kept = (f"{tr.path('last')} holds epoch {progress.saved_epoch}: continue with --resume"
                if progress.saved_epoch else "nothing was saved yet")
        raise Interrupted(f"interrupted in epoch {progress.epoch + 1} (step {progress.step}); {kept}") from None
    if d.is_main and progress.best["epoch"] is not None:
        if not defined(progress.best["score"]) and args.select != "last":
            log(f"no epoch had a defined {args.select} mAUC (no scene with both anomaly and background pixels): "
                f"{tr.path('fen')} holds the latest epoch, {progress.best['epoch']}", d)
        log(f"wrote {tr.path('fen')} (epoch {progress.best['epoch']}, {SELECTION[args.select]}) and "
            f"{tr.path('last')}", d)
    return {"best": progress.best, "history": progress.history, "step": progress.step}


def main(argv: list[str] | None = None) -> int:
    restore_ctrl_c()
    try:
        args = parse_args(argv)
    except SystemExit as done:  # --help, or an option error already printed as one line
        return int(done.code or 0)
    d = None
    try:
        d = Dist(args.device)
        train(args, d)
    except FerdError as err:
        return fail("train.py", str(err))
    except Interrupted as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 130
    finally:
        if d is not None:
            d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
