"""GRX speed: the vectorised torch GRX against a straightforward per-pixel loop of the same formula.

    python benchmarks/bench_grx.py [--repeat 5] [--device cpu]

Prints seconds per cube for both, the ratio (measured in the same run), and the largest score
difference, on 64 x 64 x {50, 100, 200} (HAD100 tiles) and 100 x 100 x 200 (an ABU scene).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import bench_device, bench_parser, best_seconds  # noqa: E402
from utils.rx import grx  # noqa: E402

SHAPES = [(50, 64, 64), (100, 64, 64), (200, 64, 64), (200, 100, 100)]


def grx_loop(cube: np.ndarray) -> np.ndarray:
    """Baseline: the SPEC sec. 4 formula one pixel at a time (statistics accumulated pixel by pixel too)."""
    b, h, w = cube.shape
    c = (cube - cube.min()) / (cube.max() - cube.min())
    pixels = [c[:, i, j] for i in range(h) for j in range(w)]
    mu = np.zeros(b)
    for x in pixels:
        mu += x
    mu /= len(pixels)
    cov = np.zeros((b, b))
    for x in pixels:
        d = x - mu
        cov += np.outer(d, d)
    precision = np.linalg.pinv(cov / (len(pixels) - 1))
    scores = np.empty(len(pixels))
    for i, x in enumerate(pixels):
        d = x - mu
        scores[i] = d @ precision @ d
    return scores.reshape(h, w)


def main() -> None:
    args = bench_parser(__doc__, repeat=5).parse_args()
    device, header = bench_device(args)
    print(header)
    print(f"{'cube (B x H x W)':>18}  {'loop s':>8}  {'GRX s':>8}  {'speed-up':>8}  {'max |diff| / max':>16}")
    for shape in SHAPES:
        cube = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        x = torch.from_numpy(cube).to(device)
        grx(x)  # warm-up
        t_vec = best_seconds(lambda: grx(x), args.repeat, device)
        t_loop = best_seconds(lambda: grx_loop(cube.astype(np.float64)), max(1, args.repeat // 2))
        ref, ours = grx_loop(cube.astype(np.float64)), grx(x).cpu().numpy()
        diff = np.abs(ref - ours).max() / ref.max()
        print(f"{' x '.join(map(str, shape)):>18}  {t_loop:8.4f}  {t_vec:8.4f}  {t_loop / t_vec:7.1f}x  {diff:16.1e}")


if __name__ == "__main__":
    main()
