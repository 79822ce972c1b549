"""Train FERD by reverse distillation and write the FEN that test.py runs (SPEC sec. 1-3, 7).

    python train.py --input_channel 50                          # the paper's setting (HAD100 AVIRIS-NG)
    python train.py --teacher random --epochs 5 --eval_scenes 4 # a short run on the synthetic set
    torchrun --nproc_per_node=4 train.py --input_channel 100    # DistributedDataParallel (NCCL / gloo)
    python train.py --input_channel 50 --resume                 # continue SAVE_DIR/last_50bands.pt

Writes, atomically after every epoch, under --save_dir:
  fen_{N}bands.pt    the selected FEN (test.py --weights PATH), recording how it was selected
  last_{N}bands.pt   the full training state for --resume
  auc_{N}bands.csv   one row per epoch: loss terms, FEN+GRX mAUC (test and/or val), seconds, per-scene AUCs
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from data import DataError, Scene, had100_train_files, preprocess, read_had100
from data.patches import PatchDataset, load_patches, make_val_scenes, split_files
from data.synthetic import DEFAULT_ROOT as SYNTHETIC_ROOT, ensure_synthetic
from model.fen import FEN
from model.ferd import FERD
from model.losses import W_REC, W_SIM, W_ZC, FERDLoss
from model.teacher import TeacherError, apply_teacher_state, fingerprint, teacher_state
from utils.device import pick_device
from utils.io import save_text, save_torch
from utils.metrics import roc_auc
from utils.rx import grx
from utils.weights import WeightsError, save_fen

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT / "data" / "HAD100Dataset"
STATE_FORMAT = "ferd-train/1"
#: Options a resumed run must share with the run that wrote the state (``--epochs`` may grow).
RESUME_KEYS = ("input_channel", "start_channel", "img_size", "sensor", "teacher", "teacher_fingerprint", "hidden",
               "batch_size", "lr", "betas", "seed", "w_sim", "w_rec", "w_zc", "double_sigmoid", "select",
               "val_fraction", "train_patches")


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, unusable resume file); the message says why and what was kept."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data_path", type=Path, default=None,
                   help=f"HAD100-layout folder (default {DEFAULT_DATA.relative_to(ROOT)}, else the synthetic "
                        f"set in {SYNTHETIC_ROOT.relative_to(ROOT)})")
    d.add_argument("--sensor", choices=["aviris_ng", "aviris", "all"], default="aviris_ng", help="training patches")
    d.add_argument("--input_channel", type=int, default=50, help="number of bands B (50, 100, 200 in the paper)")
    d.add_argument("--start_channel", type=int, default=0, help="first band used")
    d.add_argument("--img_size", type=int, default=64, help="training patch side; files are cut into tiles of it")
    m = p.add_argument_group("model and loss")
    m.add_argument("--teacher", default="imagenet",
                   help="'imagenet' (torchvision IMAGENET1K_V1), 'random' (seeded), or a state-dict file "
                        "(full torchvision wide_resnet101_2, or the authors' layer1-only enc.pt)")
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
    o.add_argument("--seed", type=int, default=10)
    o.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                   help="automatic mixed precision (CUDA only)")
    o.add_argument("--amp_dtype", choices=["bf16", "fp16"], default="bf16", help="fp16 adds a gradient scaler")
    o.add_argument("--num_workers", type=int, default=0, help="DataLoader workers (patches are in memory)")
    s = p.add_argument_group("selection, evaluation, checkpoints")
    s.add_argument("--select", choices=["test", "last", "val"], default="test",
                   help="which epoch's FEN is saved: best test mAUC (quirk 4, the paper's), the last, or best mAUC "
                        "on held-out training backgrounds with implanted anomalies")
    s.add_argument("--val_fraction", type=float, default=0.1, help="training files held out by --select val")
    s.add_argument("--eval_test", action=argparse.BooleanOptionalAction, default=True,
                   help="FEN+GRX on the test set each epoch (required by --select test)")
    s.add_argument("--eval_scenes", type=int, default=0, help="evaluate only the first N test scenes (0: all)")
    s.add_argument("--save_dir", type=Path, default=ROOT / "checkpoints")
    s.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="continue from PATH (default SAVE_DIR/last_{N}bands.pt)")
    s.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    args = p.parse_args(argv)
    args.betas = tuple(args.betas)
    return args


# ----------------------------------------------------------------------------------------------- set-up

class Dist:
    """The process group, if started by torchrun (``WORLD_SIZE`` > 1); rank 0 evaluates and saves."""

    def __init__(self, device_arg: str | None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world == 1:
            self.device = pick_device(device_arg)
            return
        cpu = pick_device(device_arg).type == "cpu"
        if cpu:
            self.device = torch.device("cpu")
        else:
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        dist.init_process_group("gloo" if cpu else "nccl")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t = t / self.world
        return t

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def log(msg: str, d: Dist) -> None:
    if d.main:
        print(msg, file=sys.stderr, flush=True)


def data_root(args: argparse.Namespace, d: Dist) -> tuple[Path, str]:
    if args.data_path is not None:
        return args.data_path, str(args.data_path)
    if DEFAULT_DATA.is_dir():
        return DEFAULT_DATA, str(DEFAULT_DATA)
    log(f"note: no --data_path and no {DEFAULT_DATA.relative_to(ROOT)}: training on the synthetic HAD100-format "
        f"set in {SYNTHETIC_ROOT.relative_to(ROOT)} (generated on first use)", d)
    if d.main:
        ensure_synthetic(SYNTHETIC_ROOT)
    d.barrier()
    return SYNTHETIC_ROOT, "synthetic"


def eval_cubes(scenes: list[Scene], args: argparse.Namespace) -> list[tuple[str, torch.Tensor, np.ndarray]]:
    return [(s.name, preprocess(s.cube, args.input_channel, args.start_channel, s.source or s.name), s.mask)
            for s in scenes]


@torch.no_grad()
def evaluate(fen: FEN | None, cubes: list[tuple[str, torch.Tensor, np.ndarray]], device: torch.device
             ) -> tuple[float, dict[str, float | None]]:
    """FEN+GRX (plain GRX with ``fen=None``): mean ROC AUC over ``cubes`` (scenes whose AUC is undefined
    are left out) and each scene's."""
    aucs = {}
    for name, x, mask in cubes:
        x = x.to(device)
        scores = grx(fen.enhance(x, normalize=False) if fen is not None else x)
        aucs[name] = roc_auc(scores.cpu().numpy(), mask)
    defined = [a for a in aucs.values() if a is not None]
    return (float(np.mean(defined)) if defined else float("nan")), aucs


def run_config(args: argparse.Namespace, fen_config: dict, fp: str | None, n_patches: int | None) -> dict:
    """What the training state must agree on to be resumed (:data:`RESUME_KEYS`), plus the rest for the record."""
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    cfg["betas"] = list(args.betas)
    cfg.update(hidden=fen_config.get("hidden"), teacher_fingerprint=fp, train_patches=n_patches)
    return cfg


#: Known only once the data is read and the model built: checked in the second pass.
LATE_KEYS = ("hidden", "teacher_fingerprint", "train_patches")


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


# ----------------------------------------------------------------------------------------------- training

def amp_context(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def train_step(net: torch.nn.Module, loss_fn: FERDLoss, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, x: torch.Tensor, amp_dtype: torch.dtype | None,
               d: Dist | None = None) -> tuple[float, dict[str, float]]:
    """One optimiser step on batch ``x``; returns the (process-averaged) loss and its terms.

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


def fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def auc_table(history: list[dict], scene_names: list[str]) -> str:
    cols = ["epoch", "step", "loss", "sim", "rec", "zc", "test_mAUC", "val_mAUC", "seconds", "selected"]
    lines = [",".join(cols + [f"test:{n}" for n in scene_names])]
    for row in history:
        vals = [str(row["epoch"]), str(row["step"])] + [fmt(row[k], 6) for k in cols[2:8]]
        vals += [fmt(row["seconds"], 2), "*" if row["selected"] else ""]
        vals += [fmt(row["test_aucs"].get(n), 6) for n in scene_names]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def train(args: argparse.Namespace, d: Dist) -> dict:
    """The whole run; returns the final training state summary (best epoch, score, history)."""
    if args.amp and d.device.type != "cuda":
        raise ValueError("--amp needs a CUDA device (this run is on the CPU)")
    if args.select == "test" and not args.eval_test:
        raise ValueError("--select test needs the test evaluation (drop --no-eval_test or pick --select last/val)")
    for name in ("batch_size", "epochs", "input_channel"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.batch_size % d.world:
        raise ValueError(f"--batch_size {args.batch_size} does not split over {d.world} processes")
    if args.img_size < 8:
        raise ValueError(f"--img_size must be at least 8, got {args.img_size}")
    bands = args.input_channel
    save_dir = args.save_dir
    fen_path, last_path = save_dir / f"fen_{bands}bands.pt", save_dir / f"last_{bands}bands.pt"
    state = None
    if args.resume is not None:  # memory-mapped: a mismatch is refused before the state is read
        resume_path = last_path if args.resume == "auto" else Path(args.resume)
        if not resume_path.is_file():
            raise TrainingError(f"--resume: {resume_path} not found")
        try:
            state = torch.load(resume_path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            raise TrainingError(f"{resume_path}: not a readable training state ({type(err).__name__}: {err})") from None
        check_resume(state, run_config(args, {}, None, None), resume_path, late=False)

    # 1. teacher weights and data first: a missing file is reported before any model is built
    t_state, t_source = teacher_state(args.teacher, args.download_teacher)
    root, source = data_root(args, d)
    files = had100_train_files(root, args.sensor)
    val_scenes: list[Scene] = []
    if args.select == "val":
        files, val_files = split_files(files, args.val_fraction, args.seed)
        val_scenes = make_val_scenes(val_files, bands, args.start_channel, args.seed)
    patches = load_patches(files, bands, args.start_channel, args.img_size)
    test_cubes = []
    if args.eval_test and d.main:
        scenes = read_had100(root)
        test_cubes = eval_cubes(scenes[: args.eval_scenes] if args.eval_scenes > 0 else scenes, args)
    val_cubes = eval_cubes(val_scenes, args) if d.main else []

    # 2. model, loss, optimiser
    torch.manual_seed(args.seed)
    ferd = FERD(bands)
    teacher_msg = apply_teacher_state(ferd.teacher, t_state, t_source, args.seed)
    fp = fingerprint(ferd.teacher)
    ferd.to(d.device)
    cfg = run_config(args, ferd.config, fp, len(patches))
    loss_fn = FERDLoss(args.w_sim, args.w_rec, args.w_zc, args.double_sigmoid)
    optimizer = torch.optim.Adam(ferd.trainable(), lr=args.lr, betas=args.betas)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.amp_dtype] if args.amp else None
    scaler = torch.amp.GradScaler(d.device.type, enabled=amp_dtype == torch.float16)
    net = DistributedDataParallel(ferd, device_ids=[d.device.index] if d.device.type == "cuda" else None) \
        if d.world > 1 else ferd

    start_epoch, step, history = 0, 0, []
    best = {"epoch": None, "score": None}
    if state is not None:
        check_resume(state, cfg, resume_path, late=True)
        missing, unexpected = ferd.load_state_dict(state["model"], strict=False)  # the teacher is not stored
        if unexpected or any(not k.startswith("teacher.") for k in missing):
            raise TrainingError(f"{resume_path}: model tensors do not match this network "
                                f"(unexpected {unexpected[:3]}, missing {[k for k in missing if 'teacher.' not in k][:3]})")
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if d.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], d.device)
        start_epoch, step, history, best = state["epoch"], state["step"], state["history"], state["best"]
        log(f"resumed from {resume_path}: epoch {start_epoch} done, step {step}", d)

    dataset = PatchDataset(patches)
    sampler = DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size // d.world, sampler=sampler,
                        num_workers=args.num_workers, pin_memory=d.device.type == "cuda")
    selection = {"test": "best FEN+GRX mAUC on the TEST set (quirk 4, the paper's selection)",
                 "last": "last epoch", "val": "best FEN+GRX mAUC on held-out backgrounds with implanted anomalies"}
    log(f"{len(patches)} training patches {args.img_size}x{args.img_size} from {len(files)} files ({source}, "
        f"{args.sensor}), bands [{args.start_channel}, {args.start_channel + bands}); "
        f"{len(test_cubes)} test scenes, {len(val_cubes)} val scenes; {teacher_msg}; device {d.device}"
        f"{f' x {d.world} processes' if d.world > 1 else ''}; select: {selection[args.select]}", d)

    if d.main and (test_cubes or val_cubes):  # the reference the FEN has to beat
        plain = {k: evaluate(None, c, d.device)[0] for k, c in (("test", test_cubes), ("val", val_cubes)) if c}
        log("GRX without the FEN: " + ", ".join(f"{k} mAUC {v:.4f}" for k, v in plain.items()), d)
    if start_epoch >= args.epochs or (args.max_steps and step >= args.max_steps):
        log(f"nothing to train: epoch {start_epoch} of --epochs {args.epochs} (step {step}) is already done", d)
    scene_names = [n for n, _, _ in test_cubes]
    saved_epoch = start_epoch  # the epoch of the training state on disk
    for epoch in range(start_epoch + 1, args.epochs + 1):
        if args.max_steps and step >= args.max_steps:
            break
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        ferd.train()
        sums, n = {"loss": 0.0, "sim": 0.0, "rec": 0.0, "zc": 0.0}, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", unit="step", leave=False, file=sys.stderr,
                   disable=not (args.progress and d.main))
        for x in bar:
            step += 1
            try:
                loss, terms = train_step(net, loss_fn, optimizer, scaler, x.to(d.device, non_blocking=True),
                                         amp_dtype, d)
            except TrainingError as err:
                kept = (f"the last good checkpoint is {last_path} (epoch {saved_epoch})" if saved_epoch
                        else "no checkpoint was written yet")
                raise TrainingError(f"{err} at step {step} (epoch {epoch}); stopped; {kept}") from None
            for k, v in (("loss", loss), *terms.items()):
                sums[k] += v
            n += 1
            bar.set_postfix(loss=f"{loss:.4f}")
            if args.max_steps and step >= args.max_steps:
                break
        means = {k: v / max(n, 1) for k, v in sums.items()}
        train_seconds = time.perf_counter() - t0

        if d.main:
            fen = ferd.fen()
            test_m, test_aucs = evaluate(fen, test_cubes, d.device) if test_cubes else (None, {})
            val_m, _ = evaluate(fen, val_cubes, d.device) if val_cubes else (None, {})
            score = {"test": test_m, "val": val_m, "last": float(epoch)}[args.select]
            improved = args.select == "last" or best["score"] is None or (score is not None and score > best["score"])
            if improved:
                best = {"epoch": epoch, "score": score}
            row = {"epoch": epoch, "step": step, **means, "test_mAUC": test_m, "val_mAUC": val_m,
                   "seconds": time.perf_counter() - t0, "selected": improved, "test_aucs": test_aucs}
            if improved:
                for r in history:
                    r["selected"] = False
                save_fen(fen.cpu(), fen_path, select=args.select, selection=selection[args.select], epoch=epoch,
                         step=step, score=score, test_mAUC=test_m, val_mAUC=val_m, teacher=args.teacher,
                         teacher_note=teacher_msg, input_channel=bands, start_channel=args.start_channel,
                         img_size=args.img_size, sensor=args.sensor, seed=args.seed, data=source)
            history.append(row)
            save_torch({"format": STATE_FORMAT, "config": cfg, "epoch": epoch, "step": step,
                        "model": {k: v.detach().cpu() for k, v in ferd.state_dict().items()
                                  if not k.startswith("teacher.")},
                        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                        "rng": {"torch": torch.get_rng_state(),
                                "cuda": torch.cuda.get_rng_state(d.device) if d.device.type == "cuda" else None},
                        "best": best, "history": history}, last_path)
            save_text(auc_table(history, scene_names), save_dir / f"auc_{bands}bands.csv")
            label = {"test": "best test mAUC (selected on the test set, quirk 4)", "val": "best val mAUC",
                     "last": "selected: last epoch"}[args.select]
            best_txt = f"{label} {fmt(best['score'])} @ epoch {best['epoch']}" if args.select != "last" else label
            print(f"epoch {epoch}/{args.epochs}  step {step}  loss {means['loss']:.4f} (sim {means['sim']:.4f} "
                  f"rec {means['rec']:.6f} zc {means['zc']:.4f})  test mAUC {fmt(test_m)}  val mAUC {fmt(val_m)}  "
                  f"{best_txt}  train {train_seconds:.1f} s, total {row['seconds']:.1f} s", flush=True)
        d.barrier()
        saved_epoch = epoch
    if d.main and best["epoch"] is not None:
        log(f"wrote {fen_path} (epoch {best['epoch']}, {selection[args.select]}) and {last_path}", d)
    return {"best": best, "history": history, "step": step}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    d = None
    try:
        d = Dist(args.device)
        train(args, d)
    except (DataError, TeacherError, WeightsError, TrainingError, ValueError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        if d is not None:
            d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
