"""The training checks of benchmarks/checks/gpu_check.py (its docstring says what each shows): train.py on CUDA in
float32, bf16 and deterministic mode, DDP training under NCCL, and bench_train's step times."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.checks.gpu_check_commands import CAPS, CheckFailed, Context, SkipCheck  # noqa: E402


def tensors_equal(a: object, b: object) -> bool:
    """Whether two loaded checkpoints hold the same tensors (bit for bit), ignoring their metadata."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in a if k not in ("meta", "history", "config", "rng")]
        return set(keys) <= set(b) and all(tensors_equal(a[k], b[k]) for k in keys)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return True  # numbers and strings: metadata, not weights


def synthetic_set(ctx: Context) -> Path:
    """The small synthetic training set of the training checks (written once)."""
    from data.synthetic import generate

    folder = ctx.work / "synthetic"
    if not folder.is_dir():
        generate(folder, n_train=32, n_test=2, size=64, bands=60)
    return folder


def losses_of(out: str) -> list[float]:
    """The per-epoch losses train.py printed."""
    return [float(v) for v in re.findall(r"^epoch \d+/\d+ +step \d+ +loss ([-\d.naninf]+)", out, re.M)]


def finite(values: list[float]) -> bool:
    return bool(values) and all(v == v and abs(v) != float("inf") for v in values)


def check_train(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    import torch

    synthetic_set(ctx)
    figures, failed, skipped = {}, [], []
    for name in ("fp32", "bf16", "det1", "det2"):
        start = time.monotonic()
        try:
            out = ctx.run(f"train_{name}", cmds[f"train_{name}"], CAPS["train"])
        except CheckFailed as err:
            failed.append(str(err))
            continue
        except SkipCheck as err:
            skipped.append(str(err))
            continue
        losses = losses_of(out)
        figures[name] = {"seconds": time.monotonic() - start, "losses": losses}
        if not finite(losses):
            failed.append(f"train_{name}: losses {losses}")
    if "det1" in figures and "det2" in figures:
        same = {}
        for kind in ("fen", "last"):
            a, b = (torch.load(ctx.work / f"train_{n}" / f"{kind}_50bands.pt", map_location="cpu",
                               weights_only=True) for n in ("det1", "det2"))
            same[kind] = tensors_equal(a, b)
        figures["deterministic_identical"] = same
        if not all(same.values()):
            failed.append(f"train --deterministic: the two runs differ ({same})")
    for n in ("fp32", "bf16", "det1", "det2"):  # the training states are about 1 GB each
        for f in (ctx.work / f"train_{n}").glob("last_*.pt"):
            f.unlink()
    if failed:
        raise CheckFailed("train: " + "; ".join(failed + skipped), figures)
    if skipped:
        raise SkipCheck("train: " + "; ".join(skipped) + f" (done: {sorted(figures)})")
    secs = ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in figures.items() if isinstance(v, dict) and
                     "seconds" in v)
    return figures, f"fp32, bf16 and 2 x deterministic ran ({secs}); deterministic checkpoints identical"


def check_ddp_train(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    """DistributedDataParallel training on GPUs: 2 steps of torchrun train.py under NCCL, one GPU per process."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus < 2:
        raise SkipCheck(f"ddp_train: {gpus} CUDA device: NCCL takes one device per process, and 2 processes on gloo "
                        "would share it; DDP on gloo is tested on the CPU (tests/test_ddp.py)")
    synthetic_set(ctx)
    out = ctx.run("ddp_train", cmds["ddp_train"], CAPS["ddp_train"])
    losses = losses_of(out)
    fen = ctx.work / "ddp_train" / "fen_50bands.pt"
    if not finite(losses) or not fen.is_file():
        raise CheckFailed(f"ddp_train: losses {losses}, FEN checkpoint {'written' if fen.is_file() else 'missing'}")
    for f in (ctx.work / "ddp_train").glob("last_*.pt"):
        f.unlink()
    return {"losses": losses}, f"2 processes on 2 GPUs (NCCL), 2 steps: losses {losses}, one FEN checkpoint"


def check_bench_train(ctx: Context, cmds: dict[str, list[str]]) -> tuple[dict, str]:
    figures = {}
    for kind in ("fp32", "bf16"):
        out = ctx.run(f"bench_train_{kind}", cmds[f"bench_train_{kind}"], CAPS["bench_train"])
        step = re.search(r"([\d.]+) s/step", out)
        mem = re.search(r"peak CUDA allocated (\d+) MiB", out)
        if step is None:
            raise CheckFailed(f"bench_train_{kind}: no 's/step' in its output")
        figures[kind] = {"s_per_step": float(step.group(1)), "peak_cuda_mib": float(mem.group(1)) if mem else None}
    return figures, (f"batch 16 x 50 x 64 x 64: fp32 {figures['fp32']['s_per_step']:.4f} s/step, "
                     f"bf16 {figures['bf16']['s_per_step']:.4f} s/step")
