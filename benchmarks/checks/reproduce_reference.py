"""Reproduce the authors' reference AUCs (../shared/reference/README.md) with test.py, as a Markdown table.

    FERD_WEIGHTS_DIR=../shared/ferd-release python benchmarks/checks/reproduce_reference.py [--abu ../shared/data/abu]

Runs test.py on abu-airport-1 and -2 for each released weight set and prints ours beside the reference,
with the seconds per scene that test.py measured (CPU unless --device says otherwise).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from detectors.reference import REFERENCE_AUCS  # noqa: E402  (../shared/reference/README.md)
from utils.cli import load_script  # noqa: E402


def load_test_cli():
    return load_script(REPO / "test.py", "ferd_test_script")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--abu", type=Path, default=REPO.parent / "shared" / "data" / "abu")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    cli = load_test_cli()
    rows, mismatches = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for (weights, bands), ref in REFERENCE_AUCS.items():
            out = Path(tmp) / f"{weights}{bands}.json"
            with contextlib.redirect_stdout(io.StringIO()):  # keep only the summary table
                rc = cli.main(["--scenes", *(str(args.abu / f"{s}.mat") for s in ref), "--input_channel", str(bands),
                               "--weights", weights, "--json", str(out), "--save_dir", tmp, "--no-progress",
                               "--no-save_scores", "--device", args.device])
            if rc != 0:
                return rc
            for scene in json.loads(out.read_text())["scenes"]:
                g, f = scene["auc"]["GRX"], scene["auc"]["FEN+GRX"]
                rg, rf = ref[scene["name"]]
                ok = round(g, 4) == rg and round(f, 4) == rf
                mismatches += not ok
                rows.append(f"| {weights}-{bands}bands | {scene['name']} | {g:.4f} ({rg:.4f}) | {f:.4f} ({rf:.4f}) "
                            f"| {scene['seconds']['GRX']:.3f} | {scene['seconds']['FEN+GRX']:.3f} | "
                            f"{'yes' if ok else 'NO'} |")
    print("| weights | scene | GRX ours (ref) | FEN+GRX ours (ref) | s GRX | s FEN+GRX | 4 decimals |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{len(rows) - mismatches} of {len(rows)} rows match the reference to 4 decimals")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
