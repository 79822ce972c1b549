"""Train FERD by reverse distillation and write the FEN that test.py runs (docs: README "Training").

    python train.py --input_channel 50                          # the paper's setting (HAD100 AVIRIS-NG)
    python train.py --teacher random --epochs 5 --eval_scenes 4 # a short run on the synthetic set
    python train.py --train_scenes a.mat b.mat --test_scenes c.mat --select val --img_size 32 --patch_stride 16
    python train.py --train_scenes a.npy b.hdr --input_channel 50 --no-save_last  # your own (unlabelled) scenes
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
import sys
import time
from pathlib import Path

from model.losses import W_REC, W_SIM, W_ZC
from training.data import LABELLED_SELECTIONS, VAL_SELECTIONS, log
from training.own_scenes import default_selection, default_teacher, validation_gap
from training.loop import build_trainer, check_finite, restore, run_epoch
from training.record import check_outputs, check_room, describe, end_epoch, log_baseline, log_selected
from training.state import Progress, TrainingError, open_resume
from utils.cli import (OneLineParser, add_band_options, add_data_path, add_run_options, check_least, check_positive,
                       script_main)
from utils.device import AMP_DTYPES
from utils.dist import Dist
from utils.errors import Interrupted
from utils.io import drop_stale_temporaries

ROOT = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="train.py", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    add_data_path(d)
    d.add_argument("--train_scenes", type=Path, nargs="+", default=None, metavar="FILE",
                   help="train on these scenes instead of a HAD100 folder (as test.py --scenes); patches touching "
                        "a labelled anomaly are dropped; a scene without a mask is all background (so it must be)")
    d.add_argument("--val_scenes", type=Path, nargs="+", default=None, metavar="FILE", help="validation scenes "
                   "(with --train_scenes) instead of a --val_fraction of them; the default --select is then val")
    d.add_argument("--test_scenes", type=Path, nargs="+", default=None, metavar="FILE",
                   help="scenes of the per-epoch FEN+GRX evaluation (default: the HAD100 folder's test set)")
    d.add_argument("--sensor", choices=["aviris_ng", "aviris", "all"], default="aviris_ng", help="training patches")
    add_band_options(d)
    d.add_argument("--img_size", type=int, default=64, help="training patch side; files and scenes are cut into it")
    d.add_argument("--patch_stride", type=int, default=None,
                   help="step between patches (default: --img_size, non-overlapping)")
    m = p.add_argument_group("model and loss")
    m.add_argument("--teacher", default=None,
                   help="'imagenet' (torchvision IMAGENET1K_V1), 'random' (seeded), or a state-dict file "
                        "(full torchvision wide_resnet101_2, or the authors' layer1-only enc.pt); default imagenet "
                        "(with --train_scenes: random where imagenet is neither cached nor downloadable)")
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
    o.add_argument("--fused_adam", action=argparse.BooleanOptionalAction, default=True,
                   help="Adam's fused kernel: the same update in one pass over the weights (docs/training.md, "
                        "section 3); --no-: torch's per-tensor Adam, the authors'")
    o.add_argument("--seed", type=int, default=10, help="seeds Python's random, numpy, torch and CUDA")
    o.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=False,
                   help="cuDNN deterministic, no cuDNN benchmark, deterministic algorithms where they exist "
                        "(bit-reproducible GPU runs, slower)")
    o.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                   help="automatic mixed precision (CUDA only)")
    o.add_argument("--amp_dtype", choices=sorted(AMP_DTYPES), default="bf16", help="fp16 adds a gradient scaler")
    o.add_argument("--num_workers", type=int, default=0, help="DataLoader workers (patches are in memory)")
    s = p.add_argument_group("selection, evaluation, checkpoints")
    s.add_argument("--select", choices=["test", "last", *VAL_SELECTIONS], default=None,
                   help="which epoch's FEN is saved (default: test where there is a test set, else val with "
                        "--val_scenes, else last): best test mAUC (quirk 4, the paper's), the last, or best mAUC "
                        "on held-out training backgrounds with implanted anomalies: synthetic materials (val) or "
                        "the labelled anomaly spectra of --train_scenes (val_real), or the held-out scenes' own "
                        "labelled anomalies (val_scene); all are logged when possible")
    s.add_argument("--val_fraction", type=float, default=0.1,
                   help="training files (scenes) held out by --select val/val_real/val_scene (0: none)")
    s.add_argument("--eval_test", action=argparse.BooleanOptionalAction, default=True,
                   help="FEN+GRX on the test set each epoch (required by --select test)")
    s.add_argument("--eval_scenes", type=int, default=0, help="evaluate only the first N test scenes (0: all)")
    s.add_argument("--save_dir", type=Path, default=ROOT / "checkpoints")
    s.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="continue from PATH (default SAVE_DIR/last_{N}bands.pt)")
    s.add_argument("--save_last", action=argparse.BooleanOptionalAction, default=True,
                   help="write the resume state SAVE_DIR/last_{N}bands.pt each epoch (about 1 GB at 50 bands)")
    add_run_options(s)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    args.betas = tuple(args.betas)
    check_args(p, args)
    return args



def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks of the options alone (before any file is read): one line through ``p.error``."""
    check_least(p, args)
    check_positive(p, args, "lr")
    for name in ("w_sim", "w_rec", "w_zc"):
        if not (math.isfinite(w := getattr(args, name)) and w >= 0):
            p.error(f"--{name} {w}: must be a finite number, 0 or more")
    if not all(0 <= b < 1 for b in args.betas):
        p.error(f"--betas {args.betas[0]} {args.betas[1]}: each must lie in [0, 1)")
    if not 0 <= args.val_fraction < 1:
        p.error(f"--val_fraction {args.val_fraction}: must lie in [0, 1)")
    if args.train_scenes and args.data_path is not None:
        p.error("--train_scenes and --data_path: give one source of training data")
    if args.val_scenes and not args.train_scenes:
        p.error("--val_scenes goes with --train_scenes (a HAD100 folder holds out a --val_fraction of its files)")
    has_test = args.test_scenes or not args.train_scenes
    args.select, args.select_note = default_selection(args.select, bool(has_test and args.eval_test),
                                                      bool(args.val_scenes), bool(args.train_scenes))
    if why := validation_gap(args.select, args.val_fraction, bool(args.val_scenes)):
        p.error(why)
    if args.select == "test" and not (args.eval_test and has_test):
        p.error("--select test needs a test set to evaluate each epoch: "
                + ("give --test_scenes, " if not has_test else "drop --no-eval_test, ") + "or pick --select val/last")
    if args.select in LABELLED_SELECTIONS and not args.train_scenes:
        p.error(f"--select {args.select} needs --train_scenes with labelled anomalies (implanted, or scored, "
                "in the held-out scenes); HAD100's training files have none: use --select val")


def train(args: argparse.Namespace, d: Dist) -> dict:
    """The whole run; returns its summary (the selected epoch and score, the history, the steps)."""
    if args.amp and d.device.type != "cuda":
        raise TrainingError("--amp needs a CUDA device (this run is on the CPU)")
    if args.batch_size % d.world:
        raise TrainingError(f"--batch_size {args.batch_size} does not split over {d.world} processes")
    args.teacher, note = default_teacher(args.teacher, bool(args.train_scenes), args.download_teacher)
    for line in filter(None, (note, args.select_note)):  # what the defaults chose, one line each
        log(line, d)
    check_outputs(args)
    state, resume_path = open_resume(args, args.save_dir / f"last_{args.input_channel}bands.pt")
    tr = build_trainer(args, d)
    d.settle(lambda: check_room(tr) if d.is_main else None)  # only the main process writes there
    progress = restore(tr, state, resume_path) if state is not None else Progress()
    if d.is_main:
        drop_stale_temporaries(tr.save_dir, ("fen_*", "last_*", "auc_*", "loss_*"))
    log(describe(tr), d)
    if d.is_main:
        log_baseline(tr)  # GRX without the FEN: what the FEN has to beat
    if progress.epoch >= args.epochs or (args.max_steps and progress.step >= args.max_steps):
        log(f"nothing to train: epoch {progress.epoch} of --epochs {args.epochs} (step {progress.step}) is "
            "already done", d)
    try:
        for epoch in range(progress.epoch + 1, args.epochs + 1):
            if args.max_steps and progress.step >= args.max_steps:
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
                f"{progress.saved_epoch}: continue with --resume" if args.save_last else f"{tr.path('fen')} holds "
                "the selected FEN (no resume state: --no-save_last)")
        raise Interrupted(f"interrupted in epoch {progress.epoch + 1} (step {progress.step}); {kept}") from None
    if d.is_main:
        log_selected(tr, progress)
    return {"best": progress.best, "history": progress.history, "step": progress.step}


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser(), parse_args, train, argv, "interrupted")


if __name__ == "__main__":
    sys.exit(main())
