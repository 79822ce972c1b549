"""Evaluate FERD: anomaly detection with and without the FEN on HAD100-layout data or single scenes.

    python test.py --input_channel 50                     # HAD100 (or the synthetic set), had100 weights
    FERD_WEIGHTS_DIR=../shared/ferd-release python test.py --scenes ../shared/data/abu/abu-airport-1.mat \
        --input_channel 200 --weights aviris --json out.json

Prints a per-scene table (AUC and seconds for each detector) with the mean row, and writes the
per-scene AUCs (``auc.csv``) and score maps (``scores/<scene>.npz``) under ``--save_dir``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import DataError, Scene, preprocess, read_had100, read_scene
from data.preprocess import check_cube
from data.synthetic import DEFAULT_ROOT as SYNTHETIC_ROOT, ensure_synthetic
from model.fen import FEN
from utils.detectors import FEN_PREFIX, detector_names, needs_fen, run_detector
from utils.device import Timer, pick_device
from utils.io import save_json, save_npz, save_text
from utils.metrics import auc_undefined_reason, roc_auc
from utils.report import SceneResult, format_table, to_csv, to_json
from utils.weights import ENV_WEIGHTS_DIR, WeightsError, load_fen

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT / "data" / "HAD100Dataset"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input_channel", type=int, default=50, help="number of bands used (50, 100 or 200 in the paper)")
    p.add_argument("--start_channel", type=int, default=0, help="first band used")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data_path", type=Path, default=None,
                     help=f"HAD100-layout folder (default {DEFAULT_DATA}, "
                          f"else the synthetic set in {SYNTHETIC_ROOT})")
    src.add_argument("--scenes", type=Path, nargs="+", metavar="FILE",
                     help="single scenes instead: .mat (cube + mask), or .npy with a .png mask of the same stem")
    p.add_argument("--data_key", default=None, help=".mat key of the cube (guessed if omitted)")
    p.add_argument("--gt_key", default=None, help=".mat key of the mask (guessed if omitted)")
    p.add_argument("--weights", default="had100",
                   help="released weights 'had100' (50/100/200 bands) or 'aviris' (200), or a train.py checkpoint")
    p.add_argument("--weights_dir", default=None,
                   help=f"local copy of the released weights (overrides ${ENV_WEIGHTS_DIR}); no download")
    p.add_argument("--detectors", nargs="+", default=["GRX", "FEN+GRX"], choices=detector_names(),
                   metavar="NAME", help=f"any of {' '.join(detector_names())}")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--save_dir", type=Path, default=ROOT / "results", help="where auc.csv and scores/ go")
    p.add_argument("--save_scores", action=argparse.BooleanOptionalAction, default=True,
                   help="write each scene's score maps to SAVE_DIR/scores/<scene>.npz")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    return p.parse_args(argv)


def load_scenes(args: argparse.Namespace) -> tuple[list[Scene], str]:
    """The scenes to evaluate and a one-line description of where they came from."""
    if args.scenes:
        return [read_scene(p, args.data_key, args.gt_key) for p in args.scenes], f"{len(args.scenes)} scene file(s)"
    if args.data_path is not None:
        return read_had100(args.data_path), str(args.data_path)
    if DEFAULT_DATA.is_dir():
        return read_had100(DEFAULT_DATA), str(DEFAULT_DATA)
    print(f"note: no --data_path and no {DEFAULT_DATA}: using the synthetic HAD100-format set "
          f"in {SYNTHETIC_ROOT} (generated on first use)", file=sys.stderr)
    return read_had100(ensure_synthetic(SYNTHETIC_ROOT)), "synthetic"


def evaluate_scene(scene: Scene, x: torch.Tensor, detectors: list[str], fen: FEN | None,
                   device: torch.device) -> tuple[SceneResult, dict[str, np.ndarray]]:
    """AUC, seconds and score map of every detector on one preprocessed cube ``x`` (B, H, W)."""
    result = SceneResult(scene.name, note=auc_undefined_reason(scene.mask))
    enhanced, fen_seconds = None, 0.0
    if fen is not None:
        with torch.no_grad(), Timer(device) as t:
            # Quirk 8 (the unit-norm scale of the enhanced cube) is left out here: every detector
            # min-maxes its input, so it would only add a float32 rounding step.
            enhanced = fen.enhance(x, normalize=False)
        fen_seconds = t.seconds
    maps = {}
    for name in detectors:
        with Timer(device) as t:
            scores = run_detector(name, x, enhanced=enhanced)
        maps[name] = scores.cpu().numpy()
        result.seconds[name] = t.seconds + (fen_seconds if name.startswith(FEN_PREFIX) else 0.0)
        result.auc[name] = roc_auc(maps[name], scene.mask)
    return result, maps


def run(args: argparse.Namespace) -> list[SceneResult]:
    device = pick_device(args.device)
    scenes, source = load_scenes(args)
    for s in scenes:  # fail before any work if one scene cannot be used
        check_cube(s.cube, s.source or s.name, args.input_channel, args.start_channel)
    fen = None
    if needs_fen(args.detectors):
        fen = load_fen(args.weights, args.input_channel, args.weights_dir).to(device)
        with torch.no_grad():  # first call pays one-off kernel set-up; keep it out of the timings
            fen(preprocess(scenes[0].cube, args.input_channel, args.start_channel)[None, :, :16, :16].to(device))
    print(f"{len(scenes)} scenes from {source}, bands [{args.start_channel}, "
          f"{args.start_channel + args.input_channel}), detectors {' '.join(args.detectors)}, "
          f"weights {args.weights if fen is not None else '-'}, device {device}", file=sys.stderr)
    results = []
    for scene in tqdm(scenes, desc="scenes", unit="scene", disable=not args.progress, file=sys.stderr):
        x = preprocess(scene.cube, args.input_channel, args.start_channel, scene.source or scene.name).to(device)
        result, maps = evaluate_scene(scene, x, args.detectors, fen, device)
        results.append(result)
        if args.save_scores:
            save_npz(args.save_dir / "scores" / f"{scene.name}.npz", mask=scene.mask, **maps)
    save_text(to_csv(results, args.detectors), args.save_dir / "auc.csv")
    if args.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                  if k in ("input_channel", "start_channel", "weights", "detectors")}
        save_json(to_json(results, args.detectors, config=config, device=str(device)), args.json)
    print(format_table(results, args.detectors))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (DataError, WeightsError, ValueError) as err:
        print(f"test.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
