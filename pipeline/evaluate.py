"""test.py's scenes through the pipeline, one process's share of them under torchrun: where the scenes come
from, every check before any work (result paths, scenes, detector options, memory, temporary space, the
weights), and the loop that scores each scene and writes its per-scene files.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import torch
from tqdm import tqdm

from data.had100 import read_had100
from data.scene import Scene, read_scene
from data.synthetic import choose_dataset, ensure_synthetic
from detectors.registry import DetectorOptions, check_detector, needs_fen
from evaluation.detections import DetectionRule, write_detections
from evaluation.export import SceneRecord, check_envi_sources, write_exports
from evaluation.report import SceneResult
from evaluation.results import SceneId, check_outputs, evaluate_scene
from pipeline.plan import check_memory, check_temp_space, plan_scene
from pipeline.run import Pipeline
from pipeline.sources import SceneSource
from utils.dist import Dist
from utils.errors import DetectorError
from utils.io import save_npz
from utils.memory import memory_budget
from weights.release import load_fen


def dataset_root(args: argparse.Namespace, d: Dist, default: Path) -> tuple[Path | None, str]:
    """The HAD100-layout folder (None for ``--scenes``) and its description; the synthetic set is generated
    by one process while the others wait."""
    if args.scenes:
        return None, f"{len(args.scenes)} scene file(s)"
    root, description, note = choose_dataset(args.data_path, default)
    if note:
        if d.is_main:
            print(note, file=sys.stderr)
        d.settle(lambda: ensure_synthetic(root) if d.is_main else None)
    return root, description


def load_shard(args: argparse.Namespace, root: Path | None, d: Dist) -> tuple[list[int], list[Scene], int]:
    """This process's scenes (all of them without torchrun), their indices in input order, and the total.
    ``--scenes`` files are read only by the process that takes them; a HAD100 folder is memory-mapped."""
    if args.scenes:
        indices = d.shard(len(args.scenes))
        return indices, [read_scene(args.scenes[i], args.data_key, args.gt_key) for i in indices], len(args.scenes)
    scenes = read_had100(root)
    indices = d.shard(len(scenes))
    return indices, [scenes[i] for i in indices], len(scenes)


def detector_options(args: argparse.Namespace) -> DetectorOptions:
    return DetectorOptions(**{f.name: getattr(args, f.name) for f in fields(DetectorOptions)})


def detection_rule(args: argparse.Namespace) -> DetectionRule:
    """test.py's threshold rule for the detections (--detect_fraction, --detect_pfa)."""
    return DetectionRule(args.detect_fraction, args.detect_pfa)


def check_detectors(scenes: list[Scene], args: argparse.Namespace, device: torch.device) -> None:
    """Before any work: every detector's options fit every scene, its memory estimate fits the device (in
    tiles if need be), the scene has a tile plan within --max_memory_gb, and the plan's temporary files fit
    in the free space of $TMPDIR."""
    options = detector_options(args)
    budget = memory_budget(args.max_memory_gb)
    temp_needs = []  # the temporary files of each scene's plan, against the free space of $TMPDIR
    for s in scenes:
        shape = (args.input_channel, s.cube.shape[0], s.cube.shape[1])
        hwb = (shape[1], shape[2], shape[0])
        for name in args.detectors:
            try:
                check_detector(name, shape, options)
            except DetectorError as err:
                raise DetectorError(f"{s.label}: {name}: {err}") from None
            check_memory(name, shape, options, device, s.label)
        try:
            plan = plan_scene(hwb, args.detectors, options, budget)
        except DetectorError as err:
            raise DetectorError(f"{s.label}: {err}") from None
        temp_needs.append((s.label, hwb, plan.temp_file_bytes(hwb)))
    check_temp_space(temp_needs)


def check_shard(args: argparse.Namespace, scenes: list[Scene], ids: list[SceneId],
                device: torch.device) -> tuple[list[SceneSource], torch.nn.Module | None]:
    """Every check before any work: result paths (of all scenes, ``ids``), then this process's scenes, detectors
    and exports; returns the scenes' sources and the FEN (None if no detector needs it)."""
    check_outputs(args, ids)
    sources = [SceneSource(s.cube, args.input_channel, args.start_channel, s.label) for s in scenes]
    for s in sources:  # fail before any work if one scene cannot be used (large cubes: one streaming pass)
        s.check()
    check_detectors(scenes, args, device)
    if args.save_envi:
        check_envi_sources([s.label for s in scenes])
    fen = None
    if needs_fen(args.detectors):  # read on every process, even one without scenes: all agree on the weights
        fen = load_fen(args.weights, args.input_channel, args.weights_dir).to(device)
    return sources, fen


def evaluate_shard(args: argparse.Namespace, scenes: list[Scene], sources: list[SceneSource],
                   pipeline: Pipeline, d: Dist) -> tuple[list[SceneResult], list[SceneRecord], list[tuple]]:
    """This process's scenes through the pipeline: their results, what --save_mat / --save_envi write
    (evaluation/export.py), and with --plots each scene's ``(mask, maps)`` for the mean box plot. Writes each
    scene's score maps and plots, and at the end its ENVI maps."""
    results, records, pictured = [], [], []
    runs = pipeline.run(sources)
    for scene, src, scene_run in tqdm(zip(scenes, sources, runs), total=len(scenes), desc="scenes", unit="scene",
                                      disable=not (args.progress and d.is_main), file=sys.stderr):
        if not scene_run.plan.input_in_memory or (scene_run.plan.fen_tile and not scene_run.plan.enhanced_in_memory):
            print(f"{scene.name}: {scene_run.plan.describe(src.shape)}", file=sys.stderr)
        result = evaluate_scene(scene, scene_run.maps, scene_run.seconds, src.shape[2])
        maps = scene_run.maps
        results.append(result)
        if args.save_scores:  # an unlabelled scene's .npz has its maps only
            masks = {"mask": scene.mask} if scene.labelled else {}
            save_npz(args.save_dir / "scores" / f"{scene.name}.npz", **masks, **maps)
        if not scene.labelled or args.detect_labelled:
            result.detections = write_detections(args.save_dir / "detections", scene.name, maps, detection_rule(args),
                                                 src.shape[2], scene.georef)
        if args.save_mat or args.save_envi:
            fen_out = pipeline.fen_output(src) if args.save_mat and pipeline.fen is not None else None  # mixfs.mat
            records.append(SceneRecord(scene.name, scene.source, scene.mask, maps, result.auc, fen_out))
        if args.plots:
            draw_scene(args, scene, maps, result)
            if scene.labelled:
                pictured.append((scene.mask, maps))
    write_exports(records, args.save_dir, args.detectors, envi=args.save_envi)  # each process its own scenes
    return results, records, pictured


def draw_scene(args: argparse.Namespace, scene: Scene, maps: dict, result: SceneResult) -> None:
    """``--plots`` of one scene in SAVE_DIR/plots: the cube, mask and maps, the ROC curves, the separability
    box plot and the 3D-ROC curves (matplotlib is imported only when pictures are asked for)."""
    from evaluation.had_figures import plot_roc3d, plot_separability
    from evaluation.plots import plot_scene

    out = args.save_dir / "plots"
    bands = scene.cube[:, :, args.start_channel: args.start_channel + args.input_channel]
    plot_scene(out, scene.name, bands, scene.mask, maps, result.auc)
    if not scene.labelled:  # the maps only: no ROC, separability or 3D-ROC without ground truth
        return
    plot_separability(out / f"{scene.name}_boxes.png", scene.name, scene.mask, maps)
    plot_roc3d(out / f"{scene.name}_roc3d.png", scene.name, scene.mask, maps, result.roc3d)


def in_input_order(parts: list[tuple[list[int], list]]) -> list:
    """The items of every process's ``(indices, items)``, back in input order."""
    pairs = [(i, item) for indices, items in parts for i, item in zip(indices, items)]
    return [item for _, item in sorted(pairs, key=lambda pair: pair[0])]
