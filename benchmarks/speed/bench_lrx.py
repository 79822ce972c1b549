"""LRX speed: the vectorised torch LRX against a straightforward per-pixel loop of the same formula
(``detectors.reference.lrx_per_pixel``).

    python benchmarks/speed/bench_lrx.py [--repeat 3] [--device cpu] [--threads N] [--loop_rows 4] [--full]

Prints, in one run, the seconds per 100 x 100 x 200 cube (an ABU scene) with windows 5 / 21 for both,
the speed-up, and the largest relative score difference; then the same for a HAD100 64 x 64 x 50 tile.
The per-pixel loop costs about 6 ms a pixel (a minute per ABU scene), so by default it is timed on the
first ``--loop_rows`` rows and scaled to the whole scene (its cost per pixel does not depend on where the
pixel is: every window is full, borders are mirrored); ``--full`` times it on the whole scene.
Times are the fastest of ``--repeat`` runs (the least disturbed by other work on the machine).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.speed.timing import (  # noqa: E402
    bench_device, bench_parser, best_seconds, random_cubes, scores_and_seconds)
from detectors.lrx import DEFAULT_INNER, DEFAULT_OUTER, lrx  # noqa: E402
from detectors.reference import lrx_per_pixel  # noqa: E402

SHAPES = [(200, 100, 100), (50, 64, 64)]


def main() -> None:
    p = bench_parser(__doc__, repeat=3)
    p.add_argument("--inner", type=int, default=DEFAULT_INNER)
    p.add_argument("--outer", type=int, default=DEFAULT_OUTER)
    p.add_argument("--loop_rows", type=int, default=4, help="rows the per-pixel loop is timed on")
    p.add_argument("--full", action="store_true", help="time the per-pixel loop on whole scenes")
    args, device, header = bench_device(p)
    print(f"{header}, windows {args.inner} / {args.outer}")
    print(f"{'cube (B x H x W)':>18}  {'per-pixel s':>11}  {'(timed on)':>10}  {'LRX s':>8}  {'speed-up':>8}  "
          f"{'max rel diff':>12}")
    for shape, cube, x in random_cubes(SHAPES, device):
        ours, t_vec = scores_and_seconds(lambda c: lrx(c, args.inner, args.outer, layout="bhw"), x, args.repeat, device)
        rows = shape[1] if args.full else min(args.loop_rows, shape[1])
        c64 = cube.astype(np.float64)
        t_loop = best_seconds(lambda: lrx_per_pixel(c64, args.inner, args.outer, rows=rows),
                              max(1, args.repeat // 2)) * shape[1] / rows
        ref = lrx_per_pixel(c64, args.inner, args.outer, rows=rows)[:rows]
        diff = np.abs(ref - ours[:rows]).max() / np.abs(ref).max()
        print(f"{' x '.join(map(str, shape)):>18}  {t_loop:11.3f}  {f'{rows} rows':>10}  {t_vec:8.3f}  "
              f"{t_loop / t_vec:7.1f}x  {diff:12.1e}")


if __name__ == "__main__":
    main()
