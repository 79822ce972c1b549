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
import sys
from pathlib import Path

from training.settings import AMP_NAMES, SELECTIONS, SENSORS, TrainSettings
from utils.cli import (DefaultsHelpFormatter, OneLineParser, add_band_options, add_data_path, add_run_options,
                       flag_text, script_main)
from utils.dist import Dist
from utils.settings import SettingsError, field_defaults


#: Every default of the flags: the settings' own (one place).
DEFAULTS = field_defaults(TrainSettings)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="train.py", description=__doc__.split("\n\n")[0],
                      formatter_class=DefaultsHelpFormatter)
    d = p.add_argument_group("data")
    add_data_path(d)
    d.add_argument("--train_scenes", type=Path, nargs="+", default=DEFAULTS.train_scenes, metavar="FILE",
                   help="train on these scenes instead of a HAD100 folder (as test.py --scenes); patches touching "
                        "a labelled anomaly are dropped; a scene without a mask is all background (so it must be)")
    d.add_argument("--val_scenes", type=Path, nargs="+", default=DEFAULTS.val_scenes, metavar="FILE",
                   help="validation scenes (with --train_scenes) instead of a --val_fraction of them; the default "
                        "--select is then val")
    d.add_argument("--test_scenes", type=Path, nargs="+", default=DEFAULTS.test_scenes, metavar="FILE",
                   help="scenes of the per-epoch FEN+GRX evaluation (default: the HAD100 folder's test set)")
    d.add_argument("--sensor", choices=SENSORS, default=DEFAULTS.sensor, help="training patches")
    add_band_options(d, DEFAULTS)
    d.add_argument("--img_size", type=int, default=DEFAULTS.img_size,
                   help="training patch side; files and scenes are cut into it")
    d.add_argument("--patch_stride", type=int, default=DEFAULTS.patch_stride,
                   help="step between patches (default: --img_size, non-overlapping)")
    m = p.add_argument_group("model and loss")
    m.add_argument("--teacher", default=DEFAULTS.teacher,
                   help="'imagenet' (torchvision IMAGENET1K_V1), 'random' (seeded), or a state-dict file "
                        "(full torchvision wide_resnet101_2, or the authors' layer1-only enc.pt); default imagenet "
                        "(with --train_scenes: random where imagenet is neither cached nor downloadable)")
    m.add_argument("--init_fen", default=DEFAULTS.init_fen, metavar="WEIGHTS",
                   help="start the CWL, teacher layer1 and FPL from this FEN (a release name such as had100, a "
                        "checkpoint or a folder of the authors' files, as test.py --weights): fine-tuning; the "
                        "MFFM, decoder, reconstruction CWL and ZCL start from their initialisation")
    m.add_argument("--download_teacher", action=argparse.BooleanOptionalAction, default=DEFAULTS.download_teacher,
                   help="let torchvision download the ImageNet file if it is not cached")
    m.add_argument("--w_sim", type=float, default=DEFAULTS.w_sim, help="weight of the feature-similarity loss")
    m.add_argument("--w_rec", type=float, default=DEFAULTS.w_rec, help="weight of the reconstruction loss")
    m.add_argument("--w_zc", type=float, default=DEFAULTS.w_zc, help="weight of the zero-centering loss")
    m.add_argument("--double_sigmoid", action=argparse.BooleanOptionalAction, default=DEFAULTS.double_sigmoid,
                   help="quirk 1: BCE-with-logits on the ZCL's sigmoid output, as the authors (--no-: plain BCE)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="passes over the training patches")
    o.add_argument("--max_steps", type=int, default=DEFAULTS.max_steps,
                   help="stop after this many optimiser steps in all (0: no limit); the last epoch may be partial")
    o.add_argument("--batch_size", type=int, default=DEFAULTS.batch_size,
                   help="global batch, split over torchrun's processes")
    o.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate")
    o.add_argument("--betas", type=float, nargs=2, default=DEFAULTS.betas, metavar=("B1", "B2"), help="Adam betas")
    o.add_argument("--fused_adam", action=argparse.BooleanOptionalAction, default=DEFAULTS.fused_adam,
                   help="Adam's fused kernel: the same update in one pass over the weights (docs/training.md, "
                        "section 3); --no-: torch's per-tensor Adam, the authors'")
    o.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seeds Python's random, numpy, torch and CUDA")
    o.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=DEFAULTS.deterministic,
                   help="cuDNN deterministic, no cuDNN benchmark, deterministic algorithms where they exist "
                        "(bit-reproducible GPU runs, slower)")
    o.add_argument("--amp", action=argparse.BooleanOptionalAction, default=DEFAULTS.amp,
                   help="automatic mixed precision (CUDA only)")
    o.add_argument("--amp_dtype", choices=AMP_NAMES, default=DEFAULTS.amp_dtype, help="fp16 adds a gradient scaler")
    o.add_argument("--num_workers", type=int, default=DEFAULTS.num_workers,
                   help="DataLoader workers (patches are in memory)")
    s = p.add_argument_group("selection, evaluation, checkpoints")
    s.add_argument("--select", choices=SELECTIONS, default=DEFAULTS.select,
                   help="which epoch's FEN is saved (default: test where there is a test set, else val with "
                        "--val_scenes, else last): best test mAUC (quirk 4, the paper's), the last, or best mAUC "
                        "on held-out training backgrounds with implanted anomalies: synthetic materials (val) or "
                        "the labelled anomaly spectra of --train_scenes (val_real), or the held-out scenes' own "
                        "labelled anomalies (val_scene); all are logged when possible")
    s.add_argument("--val_fraction", type=float, default=DEFAULTS.val_fraction,
                   help="training files (scenes) held out by --select val/val_real/val_scene (0: none)")
    s.add_argument("--eval_test", action=argparse.BooleanOptionalAction, default=DEFAULTS.eval_test,
                   help="FEN+GRX on the test set each epoch (required by --select test)")
    s.add_argument("--eval_scenes", type=int, default=DEFAULTS.eval_scenes,
                   help="evaluate only the first N test scenes (0: all)")
    s.add_argument("--save_dir", type=Path, default=DEFAULTS.save_dir,
                   help="where fen_{N}bands.pt, last_{N}bands.pt, auc_{N}bands.csv and loss_{N}bands.png go")
    s.add_argument("--resume", nargs="?", const="auto", default=DEFAULTS.resume, metavar="PATH",
                   help="continue from PATH (default SAVE_DIR/last_{N}bands.pt)")
    s.add_argument("--save_last", action=argparse.BooleanOptionalAction, default=DEFAULTS.save_last,
                   help="write the resume state SAVE_DIR/last_{N}bands.pt each epoch (about 1 GB at 50 bands)")
    add_run_options(s, DEFAULTS)
    return p


def parse_args(argv: list[str] | None = None) -> TrainSettings:
    """The flags as the library's settings; a bad one, or two that do not go together, is one line through
    ``p.error`` (exit code 2), before any file is read."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        return TrainSettings.from_options(vars(args))
    except SettingsError as err:
        p.error(flag_text(str(err), p))


def run(settings: TrainSettings, d: Dist | None = None) -> object:
    """The run itself (training/run.py), imported only once the flags are parsed: ``--help`` and an option
    error cost no more than importing torch (torchvision, sklearn and scipy load with the run)."""
    from training.run import train

    return train(settings, d)


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser(), parse_args, run, argv, "interrupted")


if __name__ == "__main__":
    sys.exit(main())
