"""test.py's result files: the checks that every path can be written before any work, each scene's AUC and
3D-ROC measures from its score maps, and auc.csv, roc3d.csv, the --json file and the printed tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from data.scene import Scene
from evaluation.detections import format_detection_table
from evaluation.export import SceneRecord, write_exports
from evaluation.metrics import auc_undefined_reason
from evaluation.report import (SceneResult, degenerate_warning, format_roc3d_table, format_table, roc3d_csv, to_csv,
                               to_json)
from evaluation.roc3d import roc3d
from utils.cli import OutputError, check_writable
from utils.io import drop_stale_temporaries, save_json, save_text

#: The options recorded in the --json file.
JSON_CONFIG = ("input_channel", "start_channel", "weights", "detectors")


class SceneId(NamedTuple):
    """What :func:`check_outputs` needs of a scene, small enough to gather from every process."""

    index: int
    name: str
    source: str
    label: str


def check_outputs(args: argparse.Namespace, scenes: list[SceneId]) -> None:
    """Before any work: every result path can be written, and no two scenes would write the same file."""
    check_writable(args.save_dir, "save_dir", folder=True)
    for sub, wanted in (("scores", args.save_scores), ("plots", args.plots), ("detections", True)):
        if wanted:
            check_writable(args.save_dir / sub, "save_dir", folder=True)
    for name in ("auc.csv", "roc3d.csv"):
        check_writable(args.save_dir / name, "save_dir", folder=False)
    if args.json is not None:
        check_writable(args.json, "json", folder=False)
    if args.save_scores or args.plots or args.save_mat or args.save_envi:
        seen: dict[str, str] = {}
        for s in scenes:
            if s.name in seen:
                raise OutputError(f"{seen[s.name]} and {s.source}: two scenes named '{s.name}' would write the "
                                  f"same result files in {args.save_dir}; rename one (or save_scores=False)")
            seen[s.name] = s.label


def detection_rule_text(args: argparse.Namespace) -> str:
    """test.py's threshold rule in words, for the printed table."""
    text = f"top {100 * args.detect_fraction:g}% of each map's pixels"
    if args.detect_pfa is not None:
        text += f"; GRX: chi-square false-alarm rate {args.detect_pfa:g}"
    return text


def drop_temporaries(args: argparse.Namespace) -> None:
    """Remove what an earlier run killed while writing left (utils.io.atomic_path's ``.<file>.<random>.tmp``)
    in --save_dir, its subfolders (scores/, plots/, envi/, mat_*/) and beside --json."""
    if args.save_dir.is_dir():
        drop_stale_temporaries(args.save_dir, subfolders=True)
    if args.json is not None and args.json.parent.is_dir():
        drop_stale_temporaries(args.json.parent, (args.json.name,))


def evaluate_scene(scene: Scene, maps: dict[str, np.ndarray], seconds: dict[str, float], bands: int) -> SceneResult:
    """AUC, the 3D-ROC measures and seconds of every detector on one scene, from its ``(H, W)`` score maps;
    a warning where they mean nothing (evaluation.report.degenerate_warning). An unlabelled scene gets its
    seconds and pixel count only."""
    pixels = int(scene.cube.shape[0]) * int(scene.cube.shape[1])
    if not scene.labelled:
        return SceneResult(scene.name, seconds={n: seconds[n] for n in maps}, note="no ground truth",
                           labelled=False, pixels=pixels)
    result = SceneResult(scene.name, note=auc_undefined_reason(scene.mask), warning=degenerate_warning(maps, bands),
                         pixels=pixels)
    for name, scores in maps.items():
        result.seconds[name] = seconds[name]
        result.roc3d[name] = roc3d(scores, scene.mask)
        result.auc[name] = result.roc3d[name].auc_pd_pf
    return result


def write_results(args: argparse.Namespace, results: list[SceneResult], records: list[SceneRecord],
                  device: str, options: dict[str, object], pictured: list[tuple] = ()) -> None:
    """auc.csv, the --save_mat files, roc3d.csv and --json (its config: :data:`JSON_CONFIG` and the detector
    ``options``), each atomically; with --plots and several scenes (``pictured``: each scene's ``(mask,
    maps)``) the mean box plot; then the tables on stdout.

    The AUC and 3D-ROC tables and files cover the labelled scenes and name the unlabelled ones left out;
    the unlabelled scenes get a table of their pixels and detections (--save_mat leaves them out: its
    gts.mat needs a mask). A run of unlabelled scenes only prints that table alone."""
    labelled = [r for r in results if r.labelled]
    unlabelled = [r for r in results if not r.labelled]
    save_text(to_csv(labelled, args.detectors), args.save_dir / "auc.csv")
    write_exports([r for r in records if r.mask is not None], args.save_dir, args.detectors, mat=args.save_mat)
    save_text(roc3d_csv(labelled, args.detectors), args.save_dir / "roc3d.csv")
    if args.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k in JSON_CONFIG}
        config.update(options)
        out = to_json(labelled, args.detectors, config=config, device=str(device))
        if unlabelled:
            out["unlabelled"] = [{"name": r.name, "pixels": r.pixels, "detections": r.detections,
                                  "seconds": {d: r.seconds.get(d) for d in args.detectors}} for r in unlabelled]
        save_json(out, args.json)
    if args.plots and len(pictured) > 1:
        from evaluation.had_figures import plot_separability_mean  # matplotlib only when pictures are asked for

        plot_separability_mean(args.save_dir / "plots" / "mean_boxes.png", list(pictured))
    if labelled:
        print(format_table(labelled, args.detectors))
        print()
        print("3D-ROC (Chang 2021; scores min-max normalised; aSNPR: clipped at the median anomaly score)")
        print(format_roc3d_table(labelled, args.detectors, per_scene=args.roc3d_scenes))
    if unlabelled:
        if labelled:
            print(f"left out of the AUC and 3D-ROC tables (no ground truth): {', '.join(r.name for r in unlabelled)}")
            if args.save_mat:
                print("left out of the MATLAB files (gts.mat needs a mask): the same scenes", file=sys.stderr)
            print()
        print(f"unlabelled scenes: detections ({detection_rule_text(args)}) in {args.save_dir / 'detections'}")
        print(format_detection_table([(r.name, r.pixels, r.detections) for r in unlabelled], args.detectors))
    if args.plots:
        print(f"plots: {args.save_dir / 'plots'}", file=sys.stderr)
