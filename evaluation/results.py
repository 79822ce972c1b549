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
    for sub, wanted in (("scores", args.save_scores), ("plots", args.plots)):
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


def drop_temporaries(args: argparse.Namespace) -> None:
    """Remove what an earlier run killed while writing left (utils.io.atomic_path's ``.<file>.<random>.tmp``)
    in --save_dir, its subfolders (scores/, plots/, envi/, mat_*/) and beside --json."""
    if args.save_dir.is_dir():
        drop_stale_temporaries(args.save_dir, subfolders=True)
    if args.json is not None and args.json.parent.is_dir():
        drop_stale_temporaries(args.json.parent, (args.json.name,))


def evaluate_scene(scene: Scene, maps: dict[str, np.ndarray], seconds: dict[str, float], bands: int,
                   valid: np.ndarray | None = None) -> SceneResult:
    """AUC, the 3D-ROC measures and seconds of every detector on one scene, from its ``(H, W)`` score maps;
    a warning where they mean nothing (evaluation.report.degenerate_warning). ``valid`` ``(H, W)`` bool: the
    pixels with data (None: all); the nodata pixels are left out of every measure (data/nodata.py)."""
    mask = scene.mask
    if valid is not None:
        maps, mask = {k: v[valid] for k, v in maps.items()}, mask[valid]
    result = SceneResult(scene.name, note=auc_undefined_reason(mask), warning=degenerate_warning(maps, bands))
    for name, scores in maps.items():
        result.seconds[name] = seconds[name]
        result.roc3d[name] = roc3d(scores, mask)
        result.auc[name] = result.roc3d[name].auc_pd_pf
    return result


def write_results(args: argparse.Namespace, results: list[SceneResult], records: list[SceneRecord],
                  device: str, options: dict[str, object], pictured: list[tuple] = ()) -> None:
    """auc.csv, the --save_mat files, roc3d.csv and --json (its config: :data:`JSON_CONFIG` and the detector
    ``options``), each atomically; with --plots and several scenes (``pictured``: each scene's ``(mask,
    maps)``) the mean box plot; then the tables on stdout."""
    save_text(to_csv(results, args.detectors), args.save_dir / "auc.csv")
    write_exports(records, args.save_dir, args.detectors, mat=args.save_mat)
    save_text(roc3d_csv(results, args.detectors), args.save_dir / "roc3d.csv")
    if args.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k in JSON_CONFIG}
        config.update(options)
        save_json(to_json(results, args.detectors, config=config, device=str(device)), args.json)
    if args.plots and len(pictured) > 1:
        from evaluation.had_figures import plot_separability_mean  # matplotlib only when pictures are asked for

        plot_separability_mean(args.save_dir / "plots" / "mean_boxes.png", list(pictured))
    print(format_table(results, args.detectors))
    print()
    print("3D-ROC (Chang 2021; scores min-max normalised; aSNPR: clipped at the median anomaly score)")
    print(format_roc3d_table(results, args.detectors, per_scene=args.roc3d_scenes))
    if args.plots:
        print(f"plots: {args.save_dir / 'plots'}", file=sys.stderr)
