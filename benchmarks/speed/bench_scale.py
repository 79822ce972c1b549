"""Cost against scene size: seconds per megapixel and peak memory of each detector, from 256 x 256 to
2048 x 2048 x 200 bands, with ``spectral.rx`` (Spectral Python) beside GRX on the same cubes.

    python benchmarks/speed/bench_scale.py [--sides 256 512 1024 2048] [--detectors GRX FEN+GRX SLRX FEN+SLRX]
                                     [--spectral_max 1024] [--dir /tmp/ferd-scale] [--plot docs/scale.png]
    python benchmarks/speed/bench_scale.py --make_only --sides 2048 --dir /tmp/big   # just write the cube

Each cube is a synthetic ``.npy`` (+ ``.png`` mask) written block by block into ``--dir`` (a temporary
folder by default, deleted at the end; never the repository): 8 endmember spectra mixed per pixel, 1 %
noise, and 3 x 3 px targets half made of a spectrum no mixture of the eight gives. Each detector then runs in its own ``test.py`` process
(``--scenes cube.npy --detectors NAME``, released had100 weights from ``$FERD_WEIGHTS_DIR``), so that its
peak resident memory (``os.wait4``) is its own; the seconds are those test.py reports for the detector
(the FEN included in ``FEN+``), and ``wall`` is the whole process (start-up, the streaming min/max pass,
reading). ``spectral.rx`` runs in a process of its own too, on the preprocessed cube in memory.

Prints one row per cube and detector and writes a log-log plot of seconds against megapixels.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

SPECTRAL_SNIPPET = """
import sys, time, numpy as np, spectral
cube = np.load(sys.argv[1], mmap_mode="r")
lo, hi = float(cube.min()), float(cube.max())
x = (((cube.astype(np.float64) - lo) / (hi - lo) * 2 - 1) * 0.1).astype(np.float32)  # as test.py preprocesses
start = time.perf_counter()
spectral.rx(x)
print(time.perf_counter() - start)
"""


def make_cube(folder: Path, side: int, bands: int = 200, seed: int = 0, rows_per_block: int = 64) -> Path:
    """Write ``folder/scene_<side>.npy`` (float32, ``side x side x bands``) and its ``.png`` mask, in blocks
    of rows (memory: a block, whatever the side)."""
    from numpy.lib.format import open_memmap

    from data.synthetic import mask_png

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"scene_{side}.npy"
    rng = np.random.default_rng(seed)
    spectra = rng.random((8, bands)).cumsum(axis=1).astype(np.float32)  # background endmembers
    wave = np.linspace(0, 1, bands, dtype=np.float32)
    target = spectra.mean(axis=0) * (1 + 0.3 * np.sin(6 * np.pi * wave))  # a shape no mixture of them has
    mask = np.zeros((side, side), bool)
    targets = rng.integers(4, side - 4, size=(max(4, side * side // 16384), 2))
    for r, c in targets:
        mask[r - 1: r + 2, c - 1: c + 2] = True
    out = open_memmap(path, mode="w+", dtype=np.float32, shape=(side, side, bands))
    for r0 in range(0, side, rows_per_block):
        r1 = min(side, r0 + rows_per_block)
        block_rng = np.random.default_rng([seed, r0])
        ab = block_rng.dirichlet(np.ones(8), size=(r1 - r0) * side).astype(np.float32)
        block = (ab @ spectra).reshape(r1 - r0, side, bands)
        hit = mask[r0:r1]
        block[hit] = 0.5 * block[hit] + 0.5 * target
        block += block_rng.normal(scale=0.01 * spectra.mean(), size=block.shape).astype(np.float32)
        out[r0:r1] = block
    out.flush()
    del out
    mask_png(mask).save(path.with_suffix(".png"))
    return path


def peak_rss(cmd: list[str]) -> tuple[str, float, int]:
    """Run ``cmd``; its stdout, wall seconds, and its own peak RSS in bytes (``os.wait4`` reaps the child
    with its resource usage; ``subprocess.run`` would reap it without)."""
    import threading

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    streams = {"out": "", "err": ""}

    def drain(name: str, stream) -> None:
        streams[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{streams['err'][-2000:]}")
    return streams["out"], wall, usage.ru_maxrss * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--bands", type=int, default=200)
    p.add_argument("--detectors", nargs="+", default=["GRX", "FEN+GRX", "SLRX", "FEN+SLRX"])
    p.add_argument("--spectral_max", type=int, default=1024, help="largest side spectral.rx runs on")
    p.add_argument("--dir", type=Path, default=None, help="where the cubes go (default: a temporary folder)")
    p.add_argument("--keep", action=argparse.BooleanOptionalAction, default=False, help="keep the cubes")
    p.add_argument("--make_only", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--plot", type=Path, default=REPO / "docs" / "scale.png")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more test.py options, at the end")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="ferd-scale-"))
    if args.make_only:
        for side in args.sides:
            print(make_cube(folder, side, args.bands))
        return
    rows = []
    try:
        print(f"{'cube':>18}  {'detector':>12}  {'s':>8}  {'s / Mpx':>8}  {'wall s':>7}  {'peak RSS':>9}")
        for side in args.sides:
            path = make_cube(folder, side, args.bands)
            mpx = side * side / 1e6
            runs = [(d, [sys.executable, str(REPO / "test.py"), "--scenes", str(path), "--input_channel",
                         str(args.bands), "--detectors", d, "--json", str(folder / "r.json"), "--save_dir",
                         str(folder / "res"), "--no-save_scores", "--no-progress", *args.extra])
                    for d in args.detectors]
            if side <= args.spectral_max:
                runs.append(("spectral.rx", [sys.executable, "-c", SPECTRAL_SNIPPET, str(path)]))
            for name, cmd in runs:
                out, wall, rss = peak_rss(cmd)
                seconds = (float(out.strip().splitlines()[-1]) if name == "spectral.rx"
                           else json.loads((folder / "r.json").read_text())["scenes"][0]["seconds"][name])
                rows.append({"side": side, "bands": args.bands, "detector": name, "seconds": seconds,
                             "seconds_per_mpx": seconds / mpx, "wall": wall, "peak_rss": rss})
                label = f"{side} x {side} x {args.bands}"
                print(f"{label:>18}  {name:>12}  {seconds:8.2f}  {seconds / mpx:8.2f}  {wall:7.1f}  "
                      f"{rss / 2**30:6.2f} GiB", flush=True)
            if not args.keep:
                path.unlink()
                path.with_suffix(".png").unlink()
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    for det in dict.fromkeys(r["detector"] for r in rows):
        mine = [r for r in rows if r["detector"] == det]
        if len(mine) > 1:
            print(f"{det}: s/Mpx at {mine[-1]['side']}^2 is {mine[-1]['seconds_per_mpx'] / mine[0]['seconds_per_mpx']:.2f}x "
                  f"that at {mine[0]['side']}^2")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")


def plot(rows: list[dict], path: Path) -> None:
    """Log-log seconds against megapixels, one line per detector, a dotted line of slope 1 for reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for det in dict.fromkeys(r["detector"] for r in rows):
        mine = [r for r in rows if r["detector"] == det]
        ax.plot([r["side"] ** 2 / 1e6 for r in mine], [r["seconds"] for r in mine], marker="o", label=det,
                ls="--" if det == "spectral.rx" else "-")
    mpx = sorted({r["side"] ** 2 / 1e6 for r in rows})
    first = min((r for r in rows if r["detector"] == "GRX"), key=lambda r: r["side"], default=None)
    if first is not None and len(mpx) > 1:
        ax.plot(mpx, [first["seconds"] * m / mpx[0] for m in mpx], ls=":", color="grey", label="linear (GRX)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scene size (megapixels, 200 bands)")
    ax.set_ylabel("seconds (test.py, per detector)")
    ax.set_title("cost against scene size (2 CPU cores)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")


if __name__ == "__main__":
    main()
