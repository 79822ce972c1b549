"""An evaluation, test.py's and the library's (:func:`evaluate`): where the scenes come from, every check
before any work (result paths, scenes, detector options, memory, temporary space, the weights), the loop that
scores each scene and writes its per-scene files, and the result files. Under torchrun each process takes
its share of the scenes.

    from pipeline.evaluate import evaluate
    from pipeline.settings import EvalSettings
    results = evaluate(EvalSettings(scenes=["a.mat"], detectors=["GRX"], save_dir="out"))
    results[0].auc["GRX"]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import had100
from data.bands import wavelength_warning
from data.had100 import read_had100
from data.scene import Scene, read_scene
from data.synthetic import choose_dataset, ensure_synthetic
from detectors.registry import base_name, check_detector, detector, needs_fen
from evaluation.detections import DetectionRule, write_detections
from evaluation.export import SceneRecord, check_envi_sources, write_exports
from evaluation.provenance import Provenance, now, software
from evaluation.geotiff_maps import check_geotiff_option, wants_geotiff, write_geotiff_maps
from evaluation.scene_facts import scene_facts, scene_facts_lines
from evaluation.report import SceneResult
from evaluation.results import SceneId, check_result_paths, drop_temporaries, measure_scene, write_results
from pipeline.plan import check_memory, check_temp_space, plan_scene
from pipeline.run import Pipeline
from pipeline.settings import EvalSettings
from pipeline.sources import SceneCube
from utils.device import full_fp32
from utils.dist import Dist, Share, process_dist
from utils.errors import DetectorError
from utils.io import recording_writes, save_npz
from utils.memory import memory_budget
from weights.release import fen_wavelengths, load_fen


def evaluate(settings: EvalSettings, d: Dist | None = None) -> list[SceneResult]:
    """Evaluate every scene of ``settings``: the scores of each detector, their ROC AUC and 3D-ROC measures and
    seconds, written under ``settings.save_dir`` as test.py writes them (auc.csv, roc3d.csv, scores/, run.json
    and what the settings ask for; each file records its provenance: evaluation/provenance.py); returns one
    :class:`SceneResult` per scene, in input order, its ``scores_file`` the ``.npz`` of its maps (None with
    ``save_scores=False``). Prints the tables on stdout.

    Under torchrun (``d``: the process group; one process without it) each process takes its share of the
    scenes (utils.dist.Share) and writes their maps; rank 0 writes the result files and returns the results
    ([] on the other ranks). An input error on any process stops all of them at the next ``settle``, before
    any result file is written.
    """
    d = d if d is not None else process_dist(settings.device)  # under torchrun: the process's group
    share = Share(d)
    device = d.device
    full_fp32(device)  # the reference AUCs are float32 figures: no TF32 convolutions on CUDA
    root, source = dataset_root(settings, share)
    scenes, total = share.settle(lambda: load_shard(settings, root, share))
    ids = share.everyone([SceneId(i, s.name, s.source, s.label) for i, s in zip(share.indices, scenes)])
    sources, fen = share.settle(lambda: check_shard(settings, scenes, ids, device))
    share.settle(lambda: drop_temporaries(settings) if share.is_main else None)  # before any process writes
    # the FEN in tiles, the detectors over chunks and strips, memory-mapped input: pipeline/
    pipeline = Pipeline(list(settings.detectors), fen, settings.options, device, settings.max_memory_gb,
                        settings.fen_batch, fold_bn=settings.fold_bn)
    if sources:
        pipeline.warm_up(sources[0])
    provenance = run_provenance(settings, fen, ids)
    if share.is_main:
        print(f"{total} scenes from {source}, bands [{settings.start_channel}, "
              f"{settings.start_channel + settings.input_channel}), detectors {' '.join(settings.detectors)}, "
              f"weights {settings.weights if fen is not None else '-'}, device {device}"
              + (f" x {d.world} processes" if d.world > 1 else ""), file=sys.stderr)
    with recording_writes() as written:  # this process's files, for the run's manifest
        results, records, pictured = share.settle(
            lambda: evaluate_shard(settings, scenes, sources, pipeline, provenance, share.is_main))
    # rank 0 writes what needs every scene: the tables, --save_mat's stacks, --plots' mean box plot, run.json
    gathered, files = share.to_main(results, records if settings.save_mat else [], pictured), share.pooled(written)
    if gathered is None:
        return []
    results, records, pictured = gathered
    write_results(settings, results, records, str(device) if d.world == 1 else device.type, pictured,
                  provenance, files)
    return results


def run_provenance(settings: EvalSettings, fen: torch.nn.Module | None, ids: list[SceneId]) -> Provenance:
    """What every output of the run records: bands, weights and their files, each detector's options, the
    scenes' files, the software."""
    start = settings.start_channel
    options = settings.options.asdict()
    return Provenance(bands=(start, start + settings.input_channel),
                      weights=settings.weights if fen is not None else None,
                      weights_files=dict(fen.files) if fen is not None else {},
                      detectors={n: {o.name: options[o.name] for o in detector(n).options}
                                 for n in settings.detectors},
                      scenes={i.name: os.path.abspath(i.source) for i in ids}, software=software(), created=now())


def chi2_detectors(names: tuple[str, ...]) -> tuple[str, ...]:
    """The detectors of ``names`` whose scores the chi-square detection rule applies to (plain, not ``FEN+``)."""
    return tuple(n for n in names if n == base_name(n) and detector(n).chi_square)


def dataset_root(settings: EvalSettings, share: Share) -> tuple[Path | None, str]:
    """The HAD100-layout folder (None for ``--scenes``) and its description; the synthetic set is generated
    by one process while the others wait."""
    if settings.scenes:
        return None, f"{len(settings.scenes)} scene file(s)"
    root, description, note = choose_dataset(settings.data_path, had100.DEFAULT_DATA)
    if note:
        if share.is_main:
            print(note, file=sys.stderr)
        share.settle(lambda: ensure_synthetic(root) if share.is_main else None)
    return root, description


def load_shard(settings: EvalSettings, root: Path | None, share: Share) -> tuple[list[Scene], int]:
    """This process's scenes (all of them without torchrun; their indices: ``share.indices``) and the total.
    ``--scenes`` files are read only by the process that takes them; a HAD100 folder is memory-mapped."""
    if settings.scenes:
        files = settings.scenes
        return [read_scene(files[i], settings.data_key, settings.gt_key) for i in share.take(len(files))], len(files)
    scenes = read_had100(root)
    return [scenes[i] for i in share.take(len(scenes))], len(scenes)


def check_detectors(scenes: list[Scene], settings: EvalSettings, device: torch.device) -> None:
    """Before any work: every detector's options fit every scene, its memory estimate fits the device (in
    tiles if need be), the scene has a tile plan within --max_memory_gb, and the plan's temporary files fit
    in the free space of $TMPDIR."""
    options = settings.options
    budget = memory_budget(settings.max_memory_gb)
    temp_needs = []  # the temporary files of each scene's plan, against the free space of $TMPDIR
    for s in scenes:
        hwb = (s.cube.shape[0], s.cube.shape[1], settings.input_channel)
        for name in settings.detectors:
            try:
                check_detector(name, hwb, options)
            except DetectorError as err:
                raise DetectorError(f"{s.label}: {name}: {err}") from None
            check_memory(name, hwb, options, device, s.label)
        try:
            plan = plan_scene(hwb, settings.detectors, options, budget, device=device)
        except DetectorError as err:
            raise DetectorError(f"{s.label}: {err}") from None
        temp_needs.append((s.label, hwb, plan.temp_file_bytes(hwb)))
    check_temp_space(temp_needs)


def check_shard(settings: EvalSettings, scenes: list[Scene], ids: list[SceneId],
                device: torch.device) -> tuple[list[SceneCube], torch.nn.Module | None]:
    """Every check before any work: result paths (of all scenes, ``ids``), then this process's scenes, detectors
    and exports; returns the scenes' sources and the FEN (None if no detector needs it)."""
    check_result_paths(settings, ids)
    sources = [SceneCube(s.cube, settings.input_channel, settings.start_channel, s.label, s.nodata, s.bbl) for s in scenes]
    for s in sources:  # fail before any work if one scene cannot be used (large cubes: one streaming pass)
        s.check()
    for scene, src in zip(scenes, sources):  # nodata and wavelengths: one line each where the file has them
        for line in scene_facts_lines(scene, src.scan, settings.input_channel, settings.start_channel):
            print(line, file=sys.stderr)
    check_detectors(scenes, settings, device)
    if settings.save_envi:
        check_envi_sources([s.label for s in scenes])
    check_geotiff_option(settings.save_geotiff, scenes)
    fen = None
    if needs_fen(settings.detectors):  # read on every process, even one without scenes: all agree on the weights
        fen = load_fen(settings.weights, settings.input_channel, settings.weights_dir).to(device)
        warn_wavelengths(scenes, settings)
    return sources, fen


def warn_wavelengths(scenes: list[Scene], settings: EvalSettings) -> None:
    """One line per scene whose bands lie far from those the FEN was trained on (where both are known)."""
    trained = fen_wavelengths(settings.weights)
    if trained is None:
        return
    bands = slice(settings.start_channel, settings.start_channel + settings.input_channel)
    for s in scenes:
        used = None if s.wavelengths is None else s.wavelengths[bands]
        line = wavelength_warning(s.label, used, np.asarray(trained), settings.weights)
        if line:
            print(line, file=sys.stderr)


def evaluate_shard(settings: EvalSettings, scenes: list[Scene], sources: list[SceneCube],
                   pipeline: Pipeline, provenance: Provenance,
                   main: bool = True) -> tuple[list[SceneResult], list[SceneRecord], list[tuple]]:
    """This process's scenes through the pipeline: their results, what --save_mat / --save_envi write
    (evaluation/export.py), and with --plots each scene's ``(mask, maps)`` for the mean box plot. Writes each
    scene's score maps and plots, and at the end its ENVI maps."""
    results, records, pictured = [], [], []
    runs = pipeline.run(sources)
    for scene, src, scene_run in tqdm(zip(scenes, sources, runs), total=len(scenes), desc="scenes", unit="scene",
                                      disable=not (settings.progress and main), file=sys.stderr):
        if not scene_run.plan.input_in_memory or (scene_run.plan.fen_tile and not scene_run.plan.enhanced_in_memory):
            print(f"{scene.name}: {scene_run.plan.describe(src.shape)}", file=sys.stderr)
        result = measure_scene(scene, scene_run.maps, scene_run.seconds, src.shape[2], src.valid)
        result.facts = scene_facts(scene, src.scan, settings.input_channel, settings.start_channel)
        maps, mine = scene_run.maps, provenance.of_scene(scene.name)
        results.append(result)
        if settings.save_scores:  # an unlabelled scene's .npz has its maps only
            result.scores_file = settings.save_dir / "scores" / f"{scene.name}.npz"
            save_npz(result.scores_file, **({"mask": scene.mask} if scene.labelled else {}), **maps,
                     provenance=mine.npz_entry())
        if not scene.labelled or settings.detect_labelled:
            rule = DetectionRule(settings.detect_fraction, settings.detect_pfa, chi2_detectors(settings.detectors))
            result.detections = write_detections(settings.save_dir / "detections", scene.name, maps, rule,
                                                 src.shape[2], scene.georef, scene.pixel_latlon, mine.as_dict())
        if settings.save_mat or settings.save_envi:
            fen_out = pipeline.fen_output(src) if settings.save_mat and pipeline.fen is not None else None  # mixfs.mat
            records.append(SceneRecord(scene.name, scene.source, scene.mask, maps, result.auc, fen_out,
                                       nodata=scene.nodata))
        if wants_geotiff(settings.save_geotiff, scene):
            write_geotiff_maps(scene, maps, settings.save_dir, mine.as_dict())
        if settings.plots:
            drawn = draw_scene(settings, scene, maps, result, src.valid)
            if drawn is not None:
                pictured.append(drawn)
    write_exports(records, settings.save_dir, settings.detectors, envi=settings.save_envi)  # each process its own scenes
    return results, records, pictured


def draw_scene(settings: EvalSettings, scene: Scene, maps: dict, result: SceneResult,
               valid: np.ndarray | None = None) -> tuple[np.ndarray, dict] | None:
    """``--plots`` of one scene in SAVE_DIR/plots: the cube, mask and maps, the ROC curves, the separability
    box plot and the 3D-ROC curves (matplotlib is imported only when pictures are asked for). Nodata pixels
    (``valid`` False) are shown at the map's lowest score and left out of the curves and boxes; returns the
    ``(mask, maps)`` of the valid pixels, for the mean box plot."""
    from evaluation.had_figures import plot_roc3d, plot_separability
    from evaluation.plots import plot_maps, plot_roc

    out = settings.save_dir / "plots"
    bands = scene.cube[:, :, settings.start_channel: settings.start_channel + settings.input_channel]
    shown = maps if valid is None else {k: np.where(valid, v, np.nanmin(v)) for k, v in maps.items()}
    plot_maps(out / f"{scene.name}_maps.png", scene.name, bands, scene.mask, shown, result.auc)
    if not scene.labelled:  # the maps only: no ROC, separability or 3D-ROC without ground truth
        return None
    mask, scored = scene.mask, maps
    if valid is not None:
        mask, scored = mask[valid], {k: v[valid] for k, v in maps.items()}
    plot_roc(out / f"{scene.name}_roc.png", scene.name, mask, scored, result.auc)
    plot_separability(out / f"{scene.name}_boxes.png", scene.name, mask, scored)
    plot_roc3d(out / f"{scene.name}_roc3d.png", scene.name, mask, scored, result.roc3d)
    return mask, scored
