"""GRX speed against ``spectral.rx`` (Spectral Python, the field's library) on the same cubes, in one process.

    python benchmarks/speed/bench_grx.py [--repeat 7] [--sizes 100 1024] [--float64_up_to 512] [--device cpu]

For each cube: seconds of ``spectral.rx`` on the ``(H, W, B)`` float32 array a user would hand it (its fastest
input: numpy's float32 products) and on the same array in float64 (up to ``--float64_up_to`` px a side: its
float64 copies of a 1024 x 1024 x 200 cube take about 5 GB), of ``detectors.rx.grx`` (on the ``(B, H, W)``
float32 tensor test.py hands it), both ratios, the largest score difference relative to the largest score
against ``spectral.rx`` in float64 (on float32 input it centres the pixels in float32: 1e-3 of the peak
away), and GRX's rate against the machine's float64 matrix-multiply rate, the physical limit of float64
work: GRX's work counted as ``2 N B^2`` flops (the scatter as one triangle, ``N B^2``, and the scores as one
triangular product, ``N B^2``), the rate the best 2048 x 2048 float64 product of torch's BLAS and numpy's,
sampled in every turn. The CPU model heads the output.

The contenders are timed in turns of ``--repeat`` runs each, three turns, and the fastest run of each is
kept: on a shared machine the load changes from second to second, and taking turns exposes all to the same
load. Not one run each in alternation: each library's idle threads keep spinning for a while after a call
(OpenBLAS about 0.1 s), on the cores the next one then needs. The thread pools are printed (threadpoolctl).

Cubes: abu-airport-1 (100 x 100 x 200, real, preprocessed as test.py does) when ../shared is there, and
synthetic cubes of the other sizes (a low-rank background plus noise: correlated bands, as real scenes).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.speed.timing import bench_device, bench_parser, best_seconds  # noqa: E402
from detectors.rx import grx  # noqa: E402

ABU = Path(__file__).resolve().parents[3] / "shared" / "data" / "abu" / "abu-airport-1.mat"


def synthetic_cube(side: int, bands: int, seed: int = 0) -> np.ndarray:
    """``(side, side, bands)`` float32 in [-0.1, 0.1]: 8 endmember spectra mixed per pixel, plus 1 % noise."""
    rng = np.random.default_rng(seed)
    spectra = rng.random((8, bands), dtype=np.float32).cumsum(axis=1)
    abundances = rng.dirichlet(np.ones(8), size=side * side).astype(np.float32)
    cube = abundances @ spectra
    cube += rng.standard_normal(size=cube.shape, dtype=np.float32) * np.float32(0.01 * float(cube.std()))
    lo, hi = cube.min(), cube.max()
    return (((cube - lo) / (hi - lo) * 2 - 1) * 0.1).reshape(side, side, bands).astype(np.float32)


def real_cube() -> np.ndarray | None:
    """abu-airport-1 preprocessed as test.py does, ``(100, 100, 200)``; None without ../shared."""
    if not ABU.is_file():
        return None
    from data.preprocess import preprocess
    from data.scene import read_scene

    return preprocess(read_scene(ABU).cube, 200).permute(1, 2, 0).contiguous().numpy()


def bench_cube(side: int, bands: int) -> tuple[np.ndarray, str]:
    """The ``(side, side, bands)`` float32 cube of a benchmark row and its name: abu-airport-1 for
    100 x 100 x 200 when ../shared is there, else :func:`synthetic_cube`."""
    hwb = real_cube() if side == 100 and bands == 200 else None
    return (hwb, "abu-airport-1") if hwb is not None else (synthetic_cube(side, bands), "synthetic")


def in_turns(fns: dict[str, callable], repeat: int, device: torch.device, turns: int = 3,
             each_turn: callable = lambda: None) -> dict[str, float]:
    """Fastest run of each function, timed in ``turns`` turns of ``repeat`` runs each (a a a, b b b, a a a, ...);
    ``each_turn`` is called once a turn (a sample of the peer rate)."""
    best = {k: float("inf") for k in fns}
    for _ in range(turns):
        for k, fn in fns.items():
            best[k] = min(best[k], best_seconds(fn, repeat, device))
        each_turn()
    return best


def dgemm_rate(device: torch.device, n: int = 2048) -> float:
    """GFLOP/s of the best of 3 ``n x n`` float64 products of torch's BLAS and (on the CPU) numpy's."""
    a, b = torch.rand(n, n, dtype=torch.float64, device=device), torch.rand(n, n, dtype=torch.float64, device=device)
    fns = [lambda: a @ b]
    if device.type == "cpu":
        na, nb = a.numpy(), b.numpy()
        fns.append(lambda: na @ nb)
    return max(2 * n ** 3 / best_seconds(fn, 3, device) / 1e9 for fn in fns)


def compare(side: int, bands: int, repeat: int, device: torch.device, float64_up_to: int) -> str:
    """One row of the table: ``spectral.rx`` (float32 and float64 input) against GRX on one cube, and GRX's
    rate against the float64 matrix-multiply rate (its copies are freed on return)."""
    import spectral

    hwb, name = bench_cube(side, bands)
    bhw = torch.from_numpy(hwb).permute(2, 0, 1).contiguous().to(device)
    ours = grx(bhw, layout="bhw").cpu().numpy()  # warm-up and the comparison
    hwb64 = hwb.astype(np.float64) if side <= float64_up_to else None
    ref = spectral.rx(hwb64) if hwb64 is not None else None  # spectral centres float32 input in float32
    fns = {"spectral32": lambda: spectral.rx(hwb), "grx": lambda: grx(bhw, layout="bhw")}
    if hwb64 is not None:
        fns["spectral64"] = lambda: spectral.rx(hwb64)
    rates = []
    t = in_turns(fns, repeat if side <= 256 else 1, device, each_turn=lambda: rates.append(dgemm_rate(device)))
    work = 2 * side * side * bands ** 2  # flops of a triangle of the scatter and a triangular product a pixel
    rate, limit = work / t["grx"] / 1e9, max(rates)
    r64 = f"{t['spectral64']:13.4f}  {t['spectral64'] / t['grx']:6.1f}x" if hwb64 is not None else f"{'-':>13}  {'-':>7}"
    diff = f"{np.abs(ours - ref).max() / np.abs(ref).max():10.1e}" if ref is not None else f"{'-':>10}"
    shape = f"{side} x {side} x {bands}"
    return (f"{shape:>18}  {t['spectral32']:13.4f}  {t['spectral32'] / t['grx']:6.1f}x  {r64}  {t['grx']:8.4f}  "
            f"{rate:7.1f}  {limit:7.1f}  {rate / limit:6.0%}  {diff}  ({name})")


def main() -> None:
    p = bench_parser(__doc__, repeat=7)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1024], help="cube sides (x 200 bands)")
    p.add_argument("--bands", type=int, default=200)
    p.add_argument("--float64_up_to", type=int, default=512,
                   help="time spectral.rx on float64 input for cubes up to this side (its copies: 5 GB at 1024)")
    args, device, header = bench_device(p)
    import spectral
    from threadpoolctl import threadpool_info

    print(header + f", spectral {spectral.__version__}")
    for pool in threadpool_info():
        print(f"  thread pool: {pool['internal_api']} ({Path(pool['filepath']).name}), {pool['num_threads']} threads")
    print(f"{'cube (H x W x B)':>18}  {'spectral f32 s':>13}  {'ratio':>7}  {'spectral f64 s':>13}  {'ratio':>7}  "
          f"{'GRX s':>8}  {'GFLOP/s':>7}  {'dgemm':>7}  {'of dgemm':>6}  {'|diff|/max':>10}")
    for side in args.sizes:
        print(compare(side, args.bands, args.repeat, device, args.float64_up_to), flush=True)


if __name__ == "__main__":
    main()
