"""CRD speed: the batched torch CRD (``detectors.crd.crd``) against the per-pixel oracle
(``detectors.reference.crd_per_pixel``) and a straightforward row-vectorised numpy version (below).

    python benchmarks/speed/bench_crd.py [--repeat 2] [--device cpu] [--threads N] [--loop_rows 3] [--scene PATH]

Prints a markdown table of the seconds per 100 x 100 x B scene, windows 3 / 11, lam 1e-6, for B = 50, 100,
200: the first B bands of an ABU scene (abu-airport-1 in ../shared, 205 bands; random if it is missing).
The oracle costs a few ms a pixel (a minute per scene), so it is timed on the first ``--loop_rows`` rows
and scaled to the whole scene (its cost per pixel does not depend on where the pixel is: every window is
full, borders are periodic). The numpy version solves one row's ``N x N`` systems per batched call. Both
numpy versions run with one BLAS thread (on 2 cores shared with other work, more threads only wait for each other).
Times are the fastest of ``--repeat`` runs; the header gives the CPU, torch threads and the load average.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.device import cpu_model  # noqa: E402
from benchmarks.speed.timing import bench_device, bench_parser, best_seconds, scores_and_seconds  # noqa: E402
from detectors.crd import DEFAULT_INNER, DEFAULT_LAMBDA, DEFAULT_OUTER, background_mask, crd  # noqa: E402
from detectors.reference import crd_per_pixel, minmax  # noqa: E402

SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "abu" / "abu-airport-1.mat"
BANDS = [50, 100, 200]


def crd_numpy(cube: np.ndarray, inner: int, outer: int, lam: float, rows: int | None = None) -> np.ndarray:
    """CRD as a straightforward vectorised numpy version: ``(B, H, W)`` -> ``(H, W)``, one image row of
    pixels at a time (gather the row's backgrounds, build and solve its ``N x N`` systems in one batched
    ``np.linalg.solve``). Only the first ``rows`` rows if given (the rest NaN)."""
    b, h, w = cube.shape
    r = outer // 2
    x = np.pad(minmax(cube).transpose(1, 2, 0), ((r, r), (r, r), (0, 0)), mode="wrap")   # periodic
    di, dj = np.nonzero(background_mask(inner, outer).numpy())
    scores = np.full((h, w), np.nan)
    cols = np.arange(w)
    for i in range(h if rows is None else rows):
        bg = x[i + di[None, :], cols[:, None] + dj[None, :]]                 # (W, N, B)
        y = x[i + r, r:r + w]                                                # (W, B)
        d2 = ((bg - y[:, None]) ** 2).sum(-1)                                # (W, N)
        xa = np.concatenate([bg, np.ones(bg.shape[:2] + (1,))], axis=-1)     # (W, N, B + 1)
        ya = np.concatenate([y, np.ones((w, 1))], axis=-1)
        g = xa @ xa.transpose(0, 2, 1)
        g[:, np.arange(len(di)), np.arange(len(di))] += lam * d2
        alpha = np.linalg.solve(g, (xa @ ya[:, :, None]))                    # (W, N, 1)
        scores[i] = np.linalg.norm(y - (bg * alpha).sum(1), axis=-1)
    return scores


def load_cube(bands: int, scene: Path) -> tuple[np.ndarray, str]:
    """First ``bands`` bands of ``scene`` as a ``(B, H, W)`` float32 cube (preprocessed as test.py does), or a
    random 100 x 100 one if the scene is missing or has fewer bands; and what it is."""
    if scene.exists():
        from data.preprocess import preprocess
        from data.scene import read_scene

        s = read_scene(scene)
        if s.cube.shape[2] >= bands:
            return preprocess(s.cube, bands).numpy(), f"{scene.stem}, first {bands} bands"
    return np.random.default_rng(0).normal(size=(bands, 100, 100)).astype(np.float32), "random"


def main() -> None:
    p = bench_parser(__doc__, repeat=2)
    p.add_argument("--loop_rows", type=int, default=3, help="rows the oracle and numpy versions are timed on")
    p.add_argument("--scene", type=Path, default=SCENE)
    args, device, header = bench_device(p)
    inner, outer, lam = DEFAULT_INNER, DEFAULT_OUTER, DEFAULT_LAMBDA
    print(f"{header}; CPU {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} "
          f"(CRD: blocks on {torch.get_num_threads()} worker threads, each call on one); windows {inner} / {outer}, lam {lam}\n")
    print("| cube | B | (a) crd s | (b) oracle s | (c) numpy-vectorised s | oracle / crd | numpy / crd "
          "| max rel diff crd vs oracle |")
    print("|---|---|---|---|---|---|---|---|")
    for bands in BANDS:
        cube, what = load_cube(bands, args.scene)
        c64 = cube.astype(np.float64)
        ours, t_crd = scores_and_seconds(lambda c: crd(c, inner, outer, lam, layout="bhw"),
                                         torch.from_numpy(cube).to(device), args.repeat, device)
        rows, h = min(args.loop_rows, cube.shape[1]), cube.shape[1]
        with threadpool_limits(1):
            t_ref = best_seconds(lambda: crd_per_pixel(c64, inner, outer, lam, rows), args.repeat) * h / rows
            t_np = best_seconds(lambda: crd_numpy(c64, inner, outer, lam, rows), args.repeat) * h / rows
            ref = crd_per_pixel(c64, inner, outer, lam, rows)[:rows]
        diff = np.max(np.abs(ours[:rows] - ref) / np.abs(ref))
        print(f"| {what} | {bands} | {t_crd:.2f} | {t_ref:.1f} (from {rows} rows) | {t_np:.2f} (from {rows} rows) "
              f"| {t_ref / t_crd:.1f}x | {t_np / t_crd:.1f}x | {diff:.1e} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
