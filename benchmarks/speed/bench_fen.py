"""FEN speed against the machine's float32 matrix-multiply rate, measured in the same process.

    python benchmarks/speed/bench_fen.py [--sizes 100 1024] [--tiles 64 128 256] [--repeat 3] [--device cpu]

The work of one scene is the FLOPs of the whole-scene FEN forward (CWL on the 4 px reflect-padded cube,
layer1, FPL), counted by ``torch.utils.flop_counter.FlopCounterMode``; the rate is that work divided by
the time of each way of computing the enhanced cube ``x + FEN(x)``:

* ``whole NCHW``: one forward of the whole scene, default memory layout (the path before tiling);
* ``tiles CL``: pipeline/ as test.py runs it -- tiles with 3 px of context, channels-last
  layout, BatchNorm kept (the tiles' overlap is extra work this rate does not count);
* ``tiles CL fused``: the same with the BatchNorms folded into the convolutions (model.fen.fold_batchnorm)
  and each convolution, bias, ReLU and residual sum in one oneDNN kernel (model.fen.fused_forward_window):
  test.py ``--fold_bn``.

The reference rate is the best of the products of two 2048 x 2048 float32 matrices (``torch.mm``, three
after every FEN run), and each way's time the best of ``--repeat`` runs: the machine is shared and its load
changes from second to second, so both are the figures of its quietest moments. Scenes:
abu-airport-1 (100 x 100 x 200, real) when ../shared is there, and synthetic cubes of the other sizes,
with the had100-200 weights (random weights of the same shapes without ../shared).
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.speed.bench_grx import bench_cube  # noqa: E402
from benchmarks.speed.timing import bench_device, bench_parser, best_seconds, sgemm_rate  # noqa: E402
from model.fen import FEN, fold_batchnorm  # noqa: E402
from pipeline.fen_tiles import enhance_tiles, prepare_fen  # noqa: E402
from pipeline.sources import SceneCube  # noqa: E402

RELEASE = Path(__file__).resolve().parents[3] / "shared" / "ferd-release"


def load(bands: int) -> FEN:
    if (RELEASE / f"had100-{bands}bands").is_dir():
        from weights.release import load_fen

        return load_fen("had100", bands, RELEASE)
    torch.manual_seed(0)
    return FEN(bands).eval()


def whole_flops(fen: FEN, bands: int, height: int, width: int) -> int:
    """FLOPs of one whole-scene forward, counted on the meta device (shapes only: no memory, no time)."""
    meta = copy.deepcopy(fen).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, bands, height, width, device="meta"))
    return counter.get_total_flops()


def main() -> None:
    p = bench_parser(__doc__, repeat=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1024])
    p.add_argument("--tiles", type=int, nargs="+", default=[64, 128, 256], help="tile sides tried on big scenes")
    p.add_argument("--bands", type=int, default=200)
    p.add_argument("--whole_limit", type=int, default=256,
                   help="largest side run as one NCHW forward (its activations take ~5 GB at 1024 x 1024)")
    args, device, header = bench_device(p)
    fen = load(args.bands).to(device)
    fast = prepare_fen(load(args.bands)).to(device)
    folded = prepare_fen(fold_batchnorm(load(args.bands))).to(device)
    print(header)
    print(f"{'scene':>22}  {'GFLOP':>6}  {'way':>16}  {'tile':>5}  {'s':>7}  {'GFLOP/s':>7}  {'sgemm GFLOP/s':>13}"
          f"  {'of sgemm':>8}")
    for side in args.sizes:
        hwb, name = bench_cube(side, args.bands)
        cube = SceneCube.empty(hwb.shape)
        cube.write(0, 0, hwb)
        x = torch.from_numpy(hwb).permute(2, 0, 1).contiguous().to(device)
        flops = whole_flops(fen, args.bands, side, side)
        ways = []
        if side <= args.whole_limit:
            ways.append(("whole NCHW", side, lambda: fen(x[None])))
        for tile in ([side] if side <= 256 else args.tiles):
            out = SceneCube.empty(hwb.shape)
            ways.append(("tiles CL", tile, lambda t=tile, o=out: enhance_tiles(fast, cube, o, t, device)))
            ways.append(("tiles CL fused", tile, lambda t=tile, o=out: enhance_tiles(folded, cube, o, t, device)))
        best = {i: float("inf") for i in range(len(ways))}
        rate = 0.0
        with torch.no_grad():
            for _, tile, fn in ways:  # warm-up: one-off kernel set-up per shape
                fn()
            for _ in range(args.repeat):
                for i, (_, _, fn) in enumerate(ways):
                    best[i] = min(best[i], best_seconds(fn, 1, device))
                    rate = max(rate, sgemm_rate(device, 3))  # sampled after every run: the load moves
        for i, (way, tile, _) in enumerate(ways):
            g = flops / best[i] / 1e9
            label = f"{side} x {side} x {args.bands}"
            print(f"{label:>22}  {flops / 1e9:6.1f}  {way:>16}  {tile:5d}  {best[i]:7.3f}  {g:7.1f}  {rate:13.1f}"
                  f"  {100 * g / rate:7.0f}%  ({name})")


if __name__ == "__main__":
    main()
