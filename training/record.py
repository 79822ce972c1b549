"""What a run keeps at the end of each epoch: the FEN+GRX scores, the selected epoch's FEN, the training
state, the AUC table and the loss plot (each written atomically), and the epoch's log line.
"""
from __future__ import annotations

import math
import shutil
import time
from typing import Iterable

import torch

from evaluation.provenance import comment_lines, software
from evaluation.report import fmt
from training.settings import TrainSettings
from training.data import EVAL_SETS, fen_grx_auc, log
from training.loop import Trainer, diverged
from training.own_scenes import patch_note
from training.state import STATE_FORMAT, Diverged, Progress, TrainingError, rng_states
from utils.cli import check_writable
from utils.io import save_text, save_torch
from utils.memory import format_bytes
from weights.release import save_fen

SELECTION = {"test": "best FEN+GRX mAUC on the TEST set (quirk 4, the paper's selection)",
             "last": "last epoch", "val": "best FEN+GRX mAUC on held-out backgrounds with implanted anomalies",
             "val_real": "best FEN+GRX mAUC on held-out backgrounds with implanted real anomaly spectra",
             "val_scene": "best FEN+GRX mAUC of the held-out training scenes, on their own labels"}


OUTPUTS = (("fen", "pt"), ("last", "pt"), ("auc", "csv"), ("loss", "png"))


def check_training_paths(settings: TrainSettings) -> None:
    """Before any work: the save folder and each file a run writes there (:data:`OUTPUTS`) can be written."""
    check_writable(settings.save_dir, "save_dir", folder=True)
    for kind, suffix in OUTPUTS:
        check_writable(settings.path(kind, suffix), "save_dir", folder=False)


def replaced_note(settings: TrainSettings) -> str | None:
    """What a fresh run (not resuming) will replace of an earlier run's files in the save folder, in one line;
    None if the folder holds none of them."""
    old = [p.name for kind, suffix in OUTPUTS if (p := settings.path(kind, suffix)).is_file()]
    if not old:
        return None
    return (f"{settings.save_dir}: this run replaces an earlier run's {', '.join(old)} as its epochs end "
            "(resume=True continues that run instead)")


#: Room kept free beyond the estimate: the AUC table, the loss plot, the checkpoints' pickled metadata.
ROOM_MARGIN = 16 << 20


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def state_bytes(tr: Trainer) -> int:
    """The size of ``last_{N}bands.pt`` to within its metadata: the network but the teacher (weights and
    BatchNorm statistics) and Adam's two moments of every trained parameter, float32 (about 1 GB at 50 bands:
    the MFFM and decoder of wide_resnet101_2's widths)."""
    trained = tensor_bytes(p for g in tr.optimizer.param_groups for p in g["params"])
    return tensor_bytes(tr.ferd.student_state().values()) + 2 * trained


def check_room(tr: Trainer) -> None:
    """Before any epoch: the save folder can take the checkpoints (:class:`TrainingError` otherwise), so
    that a run never trains for an hour only to stop at its first save. Each save writes the new
    ``last_{N}bands.pt`` beside the old one before it replaces it: twice its size in all, once it exists."""
    last = state_bytes(tr) if tr.settings.save_last else 0
    state = last + tensor_bytes([*tr.ferd.fen().state_dict().values(), *tr.ferd.sfam.zcl.state_dict().values()])
    copies = 1 if tr.path("last").exists() else 2  # an existing one already holds its share
    need = copies * state + ROOM_MARGIN
    where = tr.save_dir.resolve()
    while not where.exists():  # made at the first save: its file system is its nearest existing parent's
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < need:
        raise TrainingError(f"{tr.save_dir}: {format_bytes(free, 1)} free, too little for the training state "
                            f"written there each epoch: {tr.path('last').name} takes about "
                            f"{format_bytes(last, 1)}, and each save writes the new one beside the "
                            f"old ({format_bytes(need, 1)} in all); free space or choose another save_dir=...")


def wavelength_list(wavelengths) -> list[float] | None:
    """The training bands' wavelengths (nm) as the checkpoint keeps them (None where unknown)."""
    return None if wavelengths is None else [float(v) for v in wavelengths]


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
    settings = tr.settings
    fen = tr.ferd.fen()
    try:
        scores = {k: fen_grx_auc(fen, c, tr.d.device) if c else (None, {}) for k, c in tr.data.sets().items()}
    except Diverged as err:
        raise diverged(tr, f"{err} after step {progress.step}", epoch, progress) from None
    maucs = {f"{k}_mAUC": m for k, (m, _) in scores.items()}
    score = float(epoch) if settings.select == "last" else maucs[f"{settings.select}_mAUC"]
    selected = improves(settings.select, score, progress.best)
    if selected:
        progress.best = {"epoch": epoch, "score": score}
        for r in progress.history:
            r["selected"] = False
        save_fen(fen.cpu(), tr.path("fen"), zcl=tr.ferd.sfam.zcl, select=settings.select,
                 selection=SELECTION[settings.select], epoch=epoch, step=progress.step, score=score,
                 **maucs, teacher=settings.teacher, teacher_note=tr.teacher_msg,
                 input_channel=settings.input_channel, start_channel=settings.start_channel,
                 img_size=settings.img_size, sensor=settings.sensor, seed=settings.seed,
                 data=tr.data.description, wavelengths=wavelength_list(tr.data.wavelengths), run=tr.cfg,
                 software=software())
    progress.history.append({"epoch": epoch, "step": progress.step, **means, **maucs, "seconds": time.perf_counter() - t0,
                             "selected": selected, "test_aucs": scores["test"][1]})
    if settings.save_last:  # save_last=False: no resume state (about 1 GB at 50 bands), the FEN and tables only
        save_torch({"format": STATE_FORMAT, "config": tr.cfg, "epoch": epoch, "step": progress.step,
                    "model": {k: v.detach().cpu() for k, v in tr.ferd.student_state().items()},
                    "optimizer": tr.optimizer.state_dict(), "scaler": tr.scaler.state_dict(),
                    "rng": rng_states(tr.d.device), "best": progress.best, "history": progress.history},
                   tr.path("last"))
    progress.saved_epoch = epoch  # on disk now: a Ctrl-C from here on (plot, barrier) must say so
    save_text(run_header(tr) + auc_table(progress.history, [n for n, _, _ in tr.data.test]), tr.path("auc", "csv"))
    from evaluation.plots import plot_training  # matplotlib only once there is something to draw

    plot_training(progress.history, tr.path("loss", "png"), SELECTION[settings.select])
    print(epoch_line(settings, epoch, progress, means, train_seconds), flush=True)


def epoch_line(settings: TrainSettings, epoch: int, progress: Progress, means: dict[str, float],
               train_seconds: float) -> str:
    row, best = progress.history[-1], progress.best
    label = {"test": "best test mAUC (selected on the test set, quirk 4)", "last": "selected: last epoch"}.get(
        settings.select, f"best {settings.select} mAUC")
    if settings.select == "last":
        best_txt = label
    elif not defined(best["score"]):
        best_txt = f"{label} - (no epoch has had a defined score yet: holding epoch {best['epoch']})"
    else:
        best_txt = f"{label} {fmt(best['score'])} @ epoch {best['epoch']}"
    real_txt = "".join(f"  {k} mAUC {fmt(row[k + '_mAUC'])}"  # test and val always show; the others when logged
                       for k in EVAL_SETS[2:] if row.get(k + "_mAUC") is not None)
    return (f"epoch {epoch}/{settings.epochs}  step {progress.step}  loss {means['loss']:.4f} (sim {means['sim']:.4f} "
            f"rec {means['rec']:.6f} zc {means['zc']:.4f})  test mAUC {fmt(row['test_mAUC'])}  "
            f"val mAUC {fmt(row['val_mAUC'])}{real_txt}  {best_txt}  train {train_seconds:.1f} s, total {row['seconds']:.1f} s")


def run_header(tr: Trainer) -> str:
    """``# key: <JSON>`` lines above the per-epoch table: every setting with the teacher's fingerprint (the
    run's ``cfg``), the data and the software (as test.py's tables: evaluation/provenance.py)."""
    return comment_lines((("config", tr.cfg), ("data", tr.data.description), ("software", software())))


def auc_table(history: list[dict], scene_names: list[str]) -> str:
    cols = ["epoch", "step", "loss", "sim", "rec", "zc", *(f"{k}_mAUC" for k in EVAL_SETS), "seconds", "selected"]
    lines = [",".join(cols + [f"test:{n}" for n in scene_names])]
    for row in history:
        vals = [str(row["epoch"]), str(row["step"])] + [fmt(row.get(k), 6) for k in cols[2:-2]]
        vals += [fmt(row["seconds"], 2), "*" if row["selected"] else ""]
        vals += [fmt(row["test_aucs"].get(n), 6) for n in scene_names]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def describe(tr: Trainer) -> str:
    """The run's first log line: data, evaluation sets, teacher, device, selection."""
    a, data, d = tr.settings, tr.data, tr.d
    dropped = (f" ({patch_note(data.dropped, len(data.patches), data.unlabelled, data.sources)})"
               if a.train_scenes else "")
    stride = f" every {a.patch_stride} px" if a.patch_stride else ""
    return (f"{len(data.patches)} training patches {a.img_size}x{a.img_size}{stride} from {data.description}"
            f"{dropped}, bands [{a.start_channel}, {a.start_channel + a.input_channel}); {len(data.test)} test "
            f"scenes, {len(data.val)} val scenes; {tr.teacher_msg}; device {d.device}"
            f"{f' x {d.world} processes' if d.world > 1 else ''}; select: {SELECTION[a.select]}")



def log_baseline(tr: Trainer) -> None:
    """GRX without the FEN on each evaluation set: the reference the FEN has to beat."""
    plain = {k: fen_grx_auc(None, c, tr.d.device)[0] for k, c in tr.data.sets().items() if c}
    if plain:
        log("GRX without the FEN: " + ", ".join(f"{k} mAUC {v:.4f}" for k, v in plain.items()), tr.d)


def log_selected(tr: Trainer, progress: Progress) -> None:
    """The run's last line: which epoch the saved FEN is, and where it is."""
    if progress.best["epoch"] is None:
        return
    if not defined(progress.best["score"]) and tr.settings.select != "last":
        log(f"no epoch had a defined {tr.settings.select} mAUC (no scene with both anomaly and background pixels): "
            f"{tr.path('fen')} holds the latest epoch, {progress.best['epoch']}", tr.d)
    also = f" and {tr.path('last')}" if tr.settings.save_last else " (no resume state: save_last=False)"
    log(f"wrote {tr.path('fen')} (epoch {progress.best['epoch']}, {SELECTION[tr.settings.select]}){also}", tr.d)
