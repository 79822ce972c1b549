"""SLRX speed: the vectorised torch SLRX against a straightforward per-pixel implementation of method sec. 4
(``detectors.reference.slrx_per_pixel``).

    python benchmarks/speed/bench_slrx.py [--repeat 3] [--device cpu] [--threads N]

Prints, in one run, the seconds per 100 x 100 x 200 cube (an ABU scene; block_num 25 -> 8 x 8 px blocks)
of both, the speed-up, and the largest score difference; then the same for HAD100-sized 64 x 64 tiles.
Times are the fastest of ``--repeat`` runs (the least disturbed by other work on the machine), on random data (SLRX's cost does not depend on the values).
The authors' code takes about 1.3 s per 100 x 100 x 200 scene on the project's CPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.speed.timing import (  # noqa: E402
    bench_device, bench_parser, best_seconds, random_cubes, scores_and_seconds)
from detectors.reference import slrx_per_pixel  # noqa: E402
from detectors.blocks import DEFAULT_BLOCK_NUM  # noqa: E402
from detectors.slrx import slrx  # noqa: E402

SHAPES = [(200, 100, 100), (50, 64, 64), (200, 64, 64)]


def main() -> None:
    p = bench_parser(__doc__, repeat=3)
    p.add_argument("--block_num", type=int, default=DEFAULT_BLOCK_NUM)
    args, device, header = bench_device(p)
    print(f"{header}, block_num {args.block_num}")
    print(f"{'cube (B x H x W)':>18}  {'block':>5}  {'per-pixel s':>11}  {'SLRX s':>8}  {'speed-up':>8}  "
          f"{'max |diff|':>10}")
    for shape, cube, x in random_cubes(SHAPES, device):
        size = shape[0] // args.block_num
        ours, t_vec = scores_and_seconds(lambda c: slrx(c, args.block_num, layout="bhw"), x, args.repeat, device)
        t_loop = best_seconds(lambda: slrx_per_pixel(cube.astype(np.float64), size), args.repeat)
        diff = np.abs(slrx_per_pixel(cube.astype(np.float64), size) - ours).max()
        print(f"{' x '.join(map(str, shape)):>18}  {size:>3}px  {t_loop:11.4f}  {t_vec:8.4f}  "
              f"{t_loop / t_vec:7.1f}x  {diff:10.1e}")


if __name__ == "__main__":
    main()
