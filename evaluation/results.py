"""test.py's result files: the checks that every path can be written before any work, each scene's AUC and
3D-ROC measures from its score maps, and auc.csv, roc3d.csv, the --json file and the printed tables.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from data.scene import Scene
from evaluation.detections import format_detection_table
from evaluation.export import SceneRecord, write_exports
from evaluation.metrics import auc_undefined_reason
from evaluation.provenance import Provenance, write_manifest
from evaluation.report import (SceneResult, degenerate_warning, format_roc3d_table, format_table, roc3d_csv, to_csv,
                               to_json)
from evaluation.roc3d import roc3d
from utils.cli import OutputError, check_writable
from utils.io import drop_stale_temporaries, recording_writes, save_json, save_text


class OutputSettings(Protocol):
    """What the result files read of an evaluation's settings (pipeline.settings.EvalSettings)."""

    save_dir: Path
    save_scores: bool
    save_mat: bool
    save_envi: bool
    plots: bool
    roc3d_scenes: bool
    json: Path | None
    detectors: tuple[str, ...]
    detect_fraction: float
    detect_pfa: float | None

    def recorded(self) -> dict[str, object]:
        """The settings the --json file records."""


class SceneId(NamedTuple):
    """What :func:`check_result_paths` needs of a scene, small enough to gather from every process."""

    index: int
    name: str
    source: str
    label: str


def check_result_paths(settings: OutputSettings, scenes: list[SceneId]) -> None:
    """Before any work: every result path can be written, and no two scenes would write the same file."""
    check_writable(settings.save_dir, "save_dir", folder=True)
    for sub, wanted in (("scores", settings.save_scores), ("plots", settings.plots), ("detections", True)):
        if wanted:
            check_writable(settings.save_dir / sub, "save_dir", folder=True)
    for name in ("auc.csv", "roc3d.csv"):
        check_writable(settings.save_dir / name, "save_dir", folder=False)
    if settings.json is not None:
        check_writable(settings.json, "json", folder=False)
    if settings.save_scores or settings.plots or settings.save_mat or settings.save_envi:
        seen: dict[str, str] = {}
        for s in scenes:
            if s.name in seen:
                raise OutputError(f"{seen[s.name]} and {s.source}: two scenes named '{s.name}' would write the "
                                  f"same result files in {settings.save_dir}; rename one (or save_scores=False)")
            seen[s.name] = s.label


def detection_rule_text(settings: OutputSettings) -> str:
    """test.py's threshold rule in words, for the printed table."""
    text = f"top {100 * settings.detect_fraction:g}% of each map's pixels"
    if settings.detect_pfa is not None:
        text += f"; GRX: chi-square false-alarm rate {settings.detect_pfa:g}"
    return text


def drop_temporaries(settings: OutputSettings) -> None:
    """Remove what an earlier run killed while writing left (utils.io.atomic_path's ``.<file>.<random>.tmp``)
    in --save_dir, its subfolders (scores/, plots/, envi/, mat_*/) and beside --json."""
    if settings.save_dir.is_dir():
        drop_stale_temporaries(settings.save_dir, subfolders=True)
    if settings.json is not None and settings.json.parent.is_dir():
        drop_stale_temporaries(settings.json.parent, (settings.json.name,))


def measure_scene(scene: Scene, maps: dict[str, np.ndarray], seconds: dict[str, float], bands: int,
                   valid: np.ndarray | None = None) -> SceneResult:
    """AUC, the 3D-ROC measures and seconds of every detector on one scene, from its ``(H, W)`` score maps;
    a warning where they mean nothing (evaluation.report.degenerate_warning). ``valid`` ``(H, W)`` bool: the
    pixels with data (None: all); the nodata pixels are left out of every measure (data/nodata.py). An
    unlabelled scene gets its seconds and pixel count only."""
    pixels = int(scene.cube.shape[0]) * int(scene.cube.shape[1]) if valid is None else int(valid.sum())
    if not scene.labelled:
        return SceneResult(scene.name, seconds={n: seconds[n] for n in maps}, note="no ground truth",
                           labelled=False, pixels=pixels)
    mask = scene.mask
    if valid is not None:
        maps, mask = {k: v[valid] for k, v in maps.items()}, mask[valid]
    result = SceneResult(scene.name, note=auc_undefined_reason(mask), warning=degenerate_warning(maps, bands),
                         pixels=pixels)
    for name, scores in maps.items():
        result.seconds[name] = seconds[name]
        result.roc3d[name] = roc3d(scores, mask)
        result.auc[name] = result.roc3d[name].auc_pd_pf
    return result


def write_results(settings: OutputSettings, results: list[SceneResult], records: list[SceneRecord], device: str,
                  pictured: list[tuple] = (), provenance: Provenance | None = None,
                  written: list[Path] = ()) -> None:
    """auc.csv, the --save_mat files, roc3d.csv and --json (its config: the settings' ``recorded()``), each
    atomically, each recording ``provenance``; with --plots and several scenes (``pictured``: each scene's
    ``(mask, maps)``) the mean box plot; then ``run.json``, the manifest of these files and the per-scene ones
    (``written``), saying what an earlier run's manifest listed that was replaced or removed; then the tables.

    The AUC and 3D-ROC tables and files cover the labelled scenes and name the unlabelled ones left out;
    the unlabelled scenes get a table of their pixels and detections (--save_mat leaves them out: its
    gts.mat needs a mask). A run of unlabelled scenes only prints that table alone."""
    labelled = [r for r in results if r.labelled]
    unlabelled = [r for r in results if not r.labelled]
    head = "" if provenance is None else provenance.csv_lines()
    with recording_writes() as mine:
        save_text(head + to_csv(labelled, settings.detectors), settings.save_dir / "auc.csv")
        write_exports([r for r in records if r.mask is not None], settings.save_dir, settings.detectors,
                      mat=settings.save_mat)
        save_text(head + roc3d_csv(labelled, settings.detectors), settings.save_dir / "roc3d.csv")
        write_json(settings, labelled, unlabelled, device, provenance)
        if settings.plots and len(pictured) > 1:
            from evaluation.had_figures import plot_separability_mean  # matplotlib only when pictures are asked for

            plot_separability_mean(settings.save_dir / "plots" / "mean_boxes.png", list(pictured))
    if provenance is not None:
        for line in write_manifest(settings.save_dir, provenance, [*written, *mine]):
            print(line, file=sys.stderr)
    print_tables(settings, labelled, unlabelled)


def write_json(settings: OutputSettings, labelled: list[SceneResult], unlabelled: list[SceneResult], device: str,
               provenance: Provenance | None) -> None:
    """The --json file (if asked for): the labelled scenes' results, the unlabelled ones' detections, the
    settings and the provenance."""
    if settings.json is not None:
        out = to_json(labelled, settings.detectors, config=settings.recorded(), device=str(device))
        if provenance is not None:
            out["provenance"] = provenance.as_dict()
        if unlabelled:
            out["unlabelled"] = [{"name": r.name, "pixels": r.pixels, "detections": r.detections,
                                  "seconds": {d: r.seconds.get(d) for d in settings.detectors}, **r.facts}
                                 for r in unlabelled]
        save_json(out, settings.json)


def print_tables(settings: OutputSettings, labelled: list[SceneResult], unlabelled: list[SceneResult]) -> None:
    """The AUC and 3D-ROC tables of the labelled scenes; the pixels and detections of the unlabelled ones."""
    if labelled:
        print(format_table(labelled, settings.detectors))
        print()
        print("3D-ROC (Chang 2021; scores min-max normalised; aSNPR: clipped at the median anomaly score)")
        print(format_roc3d_table(labelled, settings.detectors, per_scene=settings.roc3d_scenes))
    if unlabelled:
        if labelled:
            print(f"left out of the AUC and 3D-ROC tables (no ground truth): {', '.join(r.name for r in unlabelled)}")
            if settings.save_mat:
                print("left out of the MATLAB files (gts.mat needs a mask): the same scenes", file=sys.stderr)
            print()
        print(f"unlabelled scenes: detections ({detection_rule_text(settings)}) in {settings.save_dir / 'detections'}")
        print(format_detection_table([(r.name, r.pixels, r.detections) for r in unlabelled], settings.detectors))
    if settings.plots:
        print(f"plots: {settings.save_dir / 'plots'}", file=sys.stderr)
