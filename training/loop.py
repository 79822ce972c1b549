"""The training loop: the model, loss, optimiser and loader of a run (:class:`Trainer`), one optimiser step
(:func:`train_step`, the function tests/test_train_golden.py pins to the authors' step), one epoch, and the
divergence checks that stop a run before a non-finite tensor reaches a checkpoint.
"""
from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from data.patches import PatchDataset
from model.fen import FEN
from model.ferd import FERD
from model.losses import FERDLoss
from model.teacher import fingerprint
from training.settings import TrainSettings
from training.data import TrainData, had100_data, log, scene_data
from training.state import Diverged, Progress, TrainingError, check_resume, run_config, seed_everything, set_rng_states
from utils.device import AMP_DTYPES
from utils.dist import Dist
from weights.imagenet import apply_teacher_state, teacher_state
from weights.release import load_fen


@dataclass
class Trainer:
    """Everything one run needs, built once by :func:`build_trainer`."""

    settings: TrainSettings
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
        return self.settings.path(kind, suffix)


def init_from_fen(ferd: FERD, fen: FEN, spec: str) -> str:
    """Copy ``fen``'s CWL, layer1 and FPL into ``ferd`` (the teacher's layer1 is the FEN's: frozen, as ever);
    returns the log phrase."""
    if fen.config != ferd.config:
        raise TrainingError(f"init_fen={spec}: a FEN of {fen.config}, this network is {ferd.config}")
    ferd.cwl.load_state_dict(fen.cwl.state_dict())
    ferd.teacher.layer1.load_state_dict(fen.layer1.state_dict())
    ferd.sfam.fpl.load_state_dict(fen.fpl.state_dict())
    return f"CWL, layer1 and FPL from {spec} (fine-tuning)"


def adam(params: list[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Adam:
    """The authors' optimiser, Adam (lr, betas). ``--fused_adam`` runs torch's fused kernel: the same update
    (to rounding: 1e-15 relative in float64), one pass over the 84M trainable weights instead of a dozen
    per-tensor operations, which on a 2-core CPU saves about 0.4 s a step."""
    return torch.optim.Adam(params, lr=settings.lr, betas=settings.betas, fused=settings.fused_adam or None)


def build_trainer(settings: TrainSettings, d: Dist) -> Trainer:
    """Teacher weights and data first (a missing file is reported before any model is built), then the
    model, loss, optimiser and loader."""
    t_state, t_source = teacher_state(settings.teacher, settings.download_teacher)
    data = scene_data(settings, d) if settings.train_scenes else had100_data(settings, d)
    seed_everything(settings.seed, settings.deterministic)
    if d.device.type == "cuda" and not settings.deterministic:
        # the patches are all one size: cuDNN's timed choice of kernels is made once and pays for itself;
        # deterministic=True keeps it off (seed_everything), as its choice may differ run to run
        torch.backends.cudnn.benchmark = True
    ferd = FERD(settings.input_channel)
    teacher_msg = apply_teacher_state(ferd.teacher, t_state, t_source, settings.seed)
    if settings.init_fen:
        teacher_msg += "; " + init_from_fen(ferd, load_fen(settings.init_fen, settings.input_channel), settings.init_fen)
    cfg = run_config(settings, ferd.config, fingerprint(ferd.teacher), len(data.patches))
    ferd.to(d.device)
    amp_dtype = AMP_DTYPES[settings.amp_dtype] if settings.amp else None
    net = DistributedDataParallel(ferd, device_ids=[d.device.index] if d.device.type == "cuda" else None) \
        if d.world > 1 else ferd
    dataset = PatchDataset(data.patches)
    sampler = DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=settings.seed)
    loader = DataLoader(dataset, batch_size=settings.batch_size // d.world, sampler=sampler,
                        num_workers=settings.num_workers, pin_memory=d.device.type == "cuda")
    return Trainer(settings, d, data, ferd, net, FERDLoss(settings.w_sim, settings.w_rec, settings.w_zc, settings.double_sigmoid),
                   adam(ferd.trainable(), settings),
                   torch.amp.GradScaler(d.device.type, enabled=amp_dtype == torch.float16), amp_dtype,
                   sampler, loader, cfg, teacher_msg, settings.save_dir)


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
    alike (the loss is averaged over processes first). The values are read back after the backward pass is
    queued, not between forward and backward: on a GPU that read waits for the forward to finish, and the
    backward's kernels would only start being queued then.
    """
    optimizer.zero_grad(set_to_none=True)
    with amp_context(x.device, amp_dtype):
        out = net(x)
    loss, terms = loss_fn(out, x)
    values = torch.stack([loss.detach(), *(t.detach() for t in terms.values())])
    if d is not None:
        values = d.mean(values)
    scaler.scale(loss).backward()
    values = values.tolist()  # the one wait for the GPU of a step
    if not math.isfinite(values[0]):
        raise TrainingError(f"loss is {values[0]}")
    scaler.step(optimizer)
    scaler.update()
    return values[0], dict(zip(terms, values[1:]))


def run_epoch(tr: Trainer, epoch: int, progress: Progress) -> dict[str, float]:
    """One pass over the shuffled patches (or up to max_steps); returns the mean loss and terms."""
    settings, d = tr.settings, tr.d
    tr.sampler.set_epoch(epoch)
    tr.ferd.train()
    sums, n = {"loss": 0.0, "sim": 0.0, "rec": 0.0, "zc": 0.0}, 0
    bar = tqdm(tr.loader, desc=f"epoch {epoch}/{settings.epochs}", unit="step", leave=False, file=sys.stderr,
               disable=not (settings.progress and d.is_main))
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
        if settings.max_steps and progress.step >= settings.max_steps:
            break
    return {k: v / max(n, 1) for k, v in sums.items()}


def diverged(tr: Trainer, what: str, epoch: int, progress: Progress) -> Diverged:
    """The one line of a diverged run: what was not finite, where, what to do, and what is kept on disk."""
    kept = (f"the last good checkpoint is {tr.path('last')} (epoch {progress.saved_epoch})"
            if progress.saved_epoch else "no checkpoint was written yet")
    return Diverged(f"training diverged: {what} (epoch {epoch}): lower lr=... (now {tr.settings.lr:g}); stopped; {kept}")


#: Optimiser state entries that are counters, not moments: torch's per-tensor Adam (``--no-fused_adam``) keeps
#: ``step`` as a float tensor on the CPU whatever the weights' device, and a count cannot overflow to NaN.
COUNTERS = ("step",)


def state_tensors(tr: Trainer) -> list[tuple[str, torch.Tensor]]:
    """Every floating tensor a checkpoint stores that training can make non-finite: trainable weights, buffers
    (BatchNorm statistics) and the optimiser's moments (the frozen teacher and Adam's step counts left out)."""
    named = list(tr.ferd.student_state().items())
    names = {id(p): k for k, p in tr.ferd.named_parameters()}
    for p, st in tr.optimizer.state.items():
        named += [(f"{names.get(id(p), '?')} (optimiser {k})", v) for k, v in st.items()
                  if torch.is_tensor(v) and k not in COUNTERS]
    return [(k, v) for k, v in named if v.is_floating_point()]


def check_finite(tr: Trainer, epoch: int, progress: Progress) -> None:
    """Raise :class:`Diverged` if a tensor that the epoch's checkpoints would store has a NaN or Inf, before
    anything of the epoch is evaluated or written (so no non-finite tensor reaches a checkpoint). Every
    process checks its own and they agree on the outcome (buffers may differ between processes)."""
    named = state_tensors(tr)
    with torch.no_grad():
        # one flag per tensor, gathered on the run's device (one copy back at the end, not one per tensor)
        ok = torch.stack([torch.isfinite(v).all().to(tr.d.device, non_blocking=True) for _, v in named])
        any_bad = tr.d.mean((~ok).any().to(torch.float32).reshape(1))
    if float(any_bad) == 0:
        return
    bad = [k for (k, _), good in zip(named, ok.tolist()) if not good]
    listed = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    what = f"NaN or Inf in {listed}" if bad else "NaN or Inf in another process's weights or buffers"
    raise diverged(tr, f"{what} after step {progress.step}", epoch, progress)


