"""SLRX speed: the vectorised torch SLRX against a straightforward per-pixel implementation of method sec. 4.

    python benchmarks/bench_slrx.py [--repeat 3] [--device cpu] [--threads N]

Prints, in one run, the seconds per 100 x 100 x 200 cube (an ABU scene; block_num 25 -> 8 x 8 px blocks)
of both, the speed-up, and the largest score difference; then the same for HAD100-sized 64 x 64 tiles.
Times are the fastest of ``--repeat`` runs (the least disturbed by other work on the machine), on random data (SLRX's cost does not depend on the values).
The authors' code takes about 1.3 s per 100 x 100 x 200 scene on the project's CPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import bench_device, bench_parser, best_seconds  # noqa: E402
from detectors.slrx import DEFAULT_BLOCK_NUM, RIDGE, slrx  # noqa: E402

SHAPES = [(200, 100, 100), (50, 64, 64), (200, 64, 64)]


def _minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


def _stats(pixels: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ``inv(unbiased covariance + ridge I)`` of ``(N, B)`` pixels."""
    mu = pixels.mean(axis=0)
    cov = np.cov(pixels, rowvar=False, ddof=1) + ridge * np.eye(pixels.shape[1])
    return mu, np.linalg.inv(cov)


def slrx_per_pixel(cube: np.ndarray, block_size: int, ridge: float = RIDGE) -> np.ndarray:
    """Baseline SLRX of a ``(B, H, W)`` float64 cube: block statistics block by block, distances pixel by pixel.

    Written straight from method sec. 4 with numpy and no vectorisation over blocks or pixels; it is the
    reference the tests compare :func:`detectors.slrx.slrx` with.
    """
    b, h, w = cube.shape
    x = _minmax(cube).transpose(1, 2, 0)                    # (H, W, B)
    s = block_size
    origins_r, origins_c = range(0, h, s), range(0, w, s)
    mu_f, p_f = _stats(x.reshape(-1, b), ridge)
    d = {k: np.zeros((h, w)) for k in ("block", "sur", "full")}
    for r0 in origins_r:
        for c0 in origins_c:
            own = x[r0:r0 + s, c0:c0 + s].reshape(-1, b)
            mu_b, p_b = _stats(own, ridge)
            sur = [x[r0 + dr * s:r0 + dr * s + s, c0 + dc * s:c0 + dc * s + s].reshape(-1, b)
                   for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                   if (dr, dc) != (0, 0) and 0 <= r0 + dr * s < h and 0 <= c0 + dc * s < w]
            mu_s, p_s = _stats(np.concatenate(sur), ridge) if sur else (None, None)
            for i in range(r0, min(r0 + s, h)):
                for j in range(c0, min(c0 + s, w)):
                    v = x[i, j]
                    d["block"][i, j] = np.sqrt((v - mu_b) @ p_b @ (v - mu_b))
                    d["sur"][i, j] = np.sqrt((v - mu_s) @ p_s @ (v - mu_s)) if sur else 0.0
                    d["full"][i, j] = np.sqrt((v - mu_f) @ p_f @ (v - mu_f))
    return _minmax(d["block"]) * _minmax(d["sur"]) * _minmax(d["full"])


def main() -> None:
    p = bench_parser(__doc__, repeat=3)
    p.add_argument("--block_num", type=int, default=DEFAULT_BLOCK_NUM)
    args = p.parse_args()
    device, header = bench_device(args)
    print(f"{header}, block_num {args.block_num}")
    print(f"{'cube (B x H x W)':>18}  {'block':>5}  {'per-pixel s':>11}  {'SLRX s':>8}  {'speed-up':>8}  "
          f"{'max |diff|':>10}")
    for shape in SHAPES:
        cube = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        x = torch.from_numpy(cube).to(device)
        size = shape[0] // args.block_num
        ours = slrx(x, args.block_num).cpu().numpy()  # warm-up, and the values compared
        t_vec = best_seconds(lambda: slrx(x, args.block_num), args.repeat, device)
        t_loop = best_seconds(lambda: slrx_per_pixel(cube.astype(np.float64), size), args.repeat)
        diff = np.abs(slrx_per_pixel(cube.astype(np.float64), size) - ours).max()
        print(f"{' x '.join(map(str, shape)):>18}  {size:>3}px  {t_loop:11.4f}  {t_vec:8.4f}  "
              f"{t_loop / t_vec:7.1f}x  {diff:10.1e}")


if __name__ == "__main__":
    main()
