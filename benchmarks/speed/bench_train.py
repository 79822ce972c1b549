"""Seconds per FERD training step and peak memory (method sec. 2-3 network, the paper's batch of 16).

    python benchmarks/speed/bench_train.py                        # CPU or the default GPU, fp32
    python benchmarks/speed/bench_train.py --device cuda --amp    # bf16 autocast on CUDA
    python benchmarks/speed/bench_train.py [--steps 3] [--warmup 1] [--threads N] [--channels_last] [--compile] [--fused]

Each step is :func:`training.loop.train_step` (forward, the three losses, backward, Adam) on random patches
scaled like preprocessed data ([-0.1, 0.1]); the teacher is random (its weights do not change the
cost). ``--warmup`` steps are run first and not timed; ``--steps`` (or ``--repeat``, the other benchmarks'
name) are timed, and their median and mean reported, with the step's FLOPs (counted on the meta device) as
a rate against the machine's float32 matrix product measured in the same process (the peer: a step made
of convolutions cannot beat it by much, so the ratio says how much room there is).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.speed.timing import (  # noqa: E402
    bench_device, bench_parser, device_name, load_note, run_seconds, sgemm_rate)
from model.ferd import FERD  # noqa: E402
from model.losses import FERDLoss  # noqa: E402
from training.loop import train_step  # noqa: E402
from utils.device import AMP_DTYPES  # noqa: E402
from weights.imagenet import load_teacher  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = bench_parser(__doc__, repeat=3)
    p.add_argument("--steps", dest="repeat", metavar="N", type=int, default=argparse.SUPPRESS,
                   help="timed steps (the same as --repeat)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="autocast (CUDA only)")
    p.add_argument("--amp_dtype", choices=sorted(AMP_DTYPES), default="bf16")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--img_size", type=int, default=64)
    p.add_argument("--bands", type=int, default=50)
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=False,
                   help="network and batch in channels-last memory layout")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the network (inductor; the warmup steps include the compilation)")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=False,
                   help="Adam with fused=True (one kernel for every parameter's update)")
    return p


def step_flops(bands: int, batch: int, size: int) -> int:
    """FLOPs of one forward + loss + backward, counted on the meta device (shapes only: no memory, no time)."""
    ferd = FERD(bands).to("meta").train()
    x = torch.empty(batch, bands, size, size, device="meta")
    with FlopCounterMode(display=False) as counter:
        loss, _ = FERDLoss()(ferd(x), x)
        loss.backward()
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> dict:
    p = build_parser()
    args, device, _ = bench_device(p, argv, inference=False)
    if args.amp and device.type != "cuda":
        p.error("--amp needs a CUDA device")
    torch.manual_seed(args.seed)
    ferd = FERD(args.bands)
    load_teacher(ferd.teacher, "random", args.seed)
    ferd.to(device).train()
    if args.channels_last:
        ferd.to(memory_format=torch.channels_last)
    loss_fn = FERDLoss()
    optimizer = torch.optim.Adam(ferd.trainable(), lr=0.005, betas=(0.5, 0.999), fused=args.fused or None)
    net = torch.compile(ferd) if args.compile else ferd
    amp_dtype = AMP_DTYPES[args.amp_dtype] if args.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    x = (torch.rand(args.batch_size, args.bands, args.img_size, args.img_size, device=device) * 0.2 - 0.1)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses = []

    def step() -> None:
        losses.append(train_step(net, loss_fn, optimizer, scaler, x, amp_dtype)[0])

    times = run_seconds(step, args.repeat, device, warmup=args.warmup)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    gflop = step_flops(args.bands, args.batch_size, args.img_size) / 1e9
    peer = sgemm_rate(device, 3)
    res = {"device": device_name(device), "amp": args.amp_dtype if args.amp else "off",
           "batch": args.batch_size, "size": args.img_size, "bands": args.bands,
           "s_per_step": statistics.median(times), "s_per_step_mean": statistics.fmean(times),
           "patches_per_s": args.batch_size / statistics.median(times), "peak_rss_mib": rss_mib,
           "params_total": sum(p.numel() for p in ferd.parameters()),
           "params_trainable": sum(p.numel() for p in ferd.trainable()), "channels_last": args.channels_last,
           "compile": args.compile, "fused": args.fused, "gflop_per_step": gflop, "gflops": gflop / statistics.median(times), "sgemm_gflops": peer,
           "of_sgemm": gflop / statistics.median(times) / peer}
    line = (f"device {res['device']} | amp {res['amp']} | batch {args.batch_size} x {args.bands} x "
            f"{args.img_size} x {args.img_size} | {res['s_per_step']:.3f} s/step (median of {len(times)}, "
            f"mean {res['s_per_step_mean']:.3f}) = {res['patches_per_s']:.1f} patches/s | {gflop:.0f} GFLOP/step = "
            f"{res['gflops']:.0f} GFLOP/s, {100 * res['of_sgemm']:.0f} % of sgemm ({peer:.0f} GFLOP/s) | "
            f"{'channels-last' if args.channels_last else 'contiguous'}{' | compiled' * args.compile}"
            f"{' | fused Adam' * args.fused} | {load_note()} | peak RSS {rss_mib:.0f} MiB")
    if device.type == "cuda":
        res["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        line += f" | peak CUDA allocated {res['peak_cuda_mib']:.0f} MiB"
    print(line)
    print(f"params {res['params_total'] / 1e6:.1f}M ({res['params_trainable'] / 1e6:.1f}M trainable); "
          f"losses {' '.join(f'{v:.4f}' for v in losses)}")
    return res


if __name__ == "__main__":
    main()
