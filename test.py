"""Evaluate FERD: anomaly detection with and without the FEN on HAD100-layout data or single scenes.

    python test.py --input_channel 50                     # HAD100 (or the synthetic set), had100 weights
    FERD_WEIGHTS_DIR=../shared/ferd-release python test.py --scenes ../shared/data/abu/abu-airport-1.mat \
        --input_channel 200 --weights aviris --detectors GRX FEN+GRX SLRX FEN+SLRX LRX FEN+LRX --plots

Detectors: GRX (global RX), SLRX (the authors' simplified local RX: --block_num, --block_size), LRX
(dual-window local RX: --lrx_inner, --lrx_outer), each also as FEN+X on the enhanced cube x + FEN(x).

Prints a per-scene table (AUC and seconds for each detector) with the mean row, then the 3D-ROC measures
(AUC(Pd,Pf), AUC(Pd,tau), AUC(Pf,tau), SNPR, adaptive SNPR; evaluation/roc3d.py) per scene and detector.
Writes under ``--save_dir`` the per-scene AUCs (``auc.csv``), the 3D-ROC measures (``roc3d.csv``), the score
maps (``scores/<scene>.npz``) and, with ``--plots``, ``plots/<scene>_maps.png`` and ``plots/<scene>_roc.png``;
with ``--save_mat`` the authors' MATLAB files, with ``--save_envi`` georeferenced ENVI maps (evaluation/export.py).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from data.had100 import read_had100
from data.scene import Scene, read_scene
from data.synthetic import DEFAULT_ROOT as SYNTHETIC_ROOT
from data.synthetic import choose_dataset, ensure_synthetic
from detectors.lrx import DEFAULT_INNER, DEFAULT_OUTER
from detectors.registry import DetectorOptions, check_detector, detector_names, needs_fen
from detectors.slrx import DEFAULT_BLOCK_NUM
from evaluation.export import SceneRecord, check_envi_sources, write_exports
from evaluation.metrics import auc_undefined_reason
from evaluation.report import (SceneResult, degenerate_warning, format_roc3d_table, format_table, roc3d_csv, to_csv,
                               to_json)
from evaluation.roc3d import roc3d
from pipeline.plan import check_memory, check_temp_space, plan_scene
from pipeline.run import Pipeline, SceneRun
from pipeline.sources import SceneSource
from utils.cli import OneLineParser, OutputError, add_run_options, check_writable, restore_ctrl_c
from utils.device import full_fp32
from utils.dist import Dist, PeerError, launched_rank
from utils.errors import DetectorError, FerdError
from utils.io import drop_stale_temporaries, save_json, save_npz, save_text
from utils.memory import memory_budget
from weights.release import ENV_WEIGHTS_DIR, load_fen

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT / "data" / "HAD100Dataset"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="test.py", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input_channel", type=int, default=50, help="number of bands used (50, 100 or 200 in the paper)")
    p.add_argument("--start_channel", type=int, default=0, help="first band used")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data_path", type=Path, default=None,
                     help=f"HAD100-layout folder (default {DEFAULT_DATA}, "
                          f"else the synthetic set in {SYNTHETIC_ROOT})")
    src.add_argument("--scenes", type=Path, nargs="+", metavar="FILE",
                     help="single scenes instead: .mat (cube + mask), .npy with a .png mask of the same stem, "
                          "or an ENVI .hdr (+ binary) with a <stem>.png or <stem>_gt.hdr mask")
    p.add_argument("--data_key", default=None, help=".mat key of the cube (guessed if omitted)")
    p.add_argument("--gt_key", default=None, help=".mat key of the mask (guessed if omitted)")
    p.add_argument("--weights", default="had100",
                   help="released weights 'had100' (50/100/200 bands) or 'aviris' (200), this project's 'abu10' (50; "
                        "docs/model_card_abu10.md), or a train.py checkpoint")
    p.add_argument("--weights_dir", default=None,
                   help=f"local copy of the released weights (overrides ${ENV_WEIGHTS_DIR}); no download")
    p.add_argument("--detectors", nargs="+", default=["GRX", "FEN+GRX"], choices=detector_names(),
                   metavar="NAME", help=f"any of {' '.join(detector_names())}")
    p.add_argument("--block_num", type=int, default=DEFAULT_BLOCK_NUM,
                   help="SLRX block size = bands // block_num px, as the authors' code (quirk 6: from the band "
                        "count, 8 px for 200 bands)")
    p.add_argument("--block_size", type=int, default=None,
                   help="SLRX block size in pixels (the clean option; overrides --block_num)")
    p.add_argument("--lrx_inner", type=int, default=DEFAULT_INNER, help="LRX inner (guard) window side, odd")
    p.add_argument("--lrx_outer", type=int, default=DEFAULT_OUTER, help="LRX outer (background) window side, odd")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=False,
                   help="save per scene a PNG of the cube, mask and maps, and one of the ROC curves, in SAVE_DIR/plots")
    p.add_argument("--roc3d_scenes", action=argparse.BooleanOptionalAction, default=False,
                   help="print the 3D-ROC measures of every scene, not only their means (roc3d.csv has them all)")
    p.add_argument("--max_memory_gb", type=float, default=None,
                   help="memory for one scene's cubes, tiles and maps; larger scenes are read memory-mapped and "
                        "cut into tiles (default: a quarter of the available memory, at most 4 GiB)")
    p.add_argument("--fen_batch", type=int, default=16,
                   help="same-size scenes small enough for one FEN tile (HAD100's 64 x 64) go through the FEN this "
                        "many at a time")
    p.add_argument("--fold_bn", action=argparse.BooleanOptionalAction, default=False,
                   help="fold the FEN's BatchNorms into its convolutions (about 10%% faster on CPU; float32 rounding "
                        "moves, and one reference AUC sits on a rounding edge: see README, Speed)")
    p.add_argument("--save_dir", type=Path, default=ROOT / "results", help="where auc.csv and scores/ go")
    p.add_argument("--save_scores", action=argparse.BooleanOptionalAction, default=True,
                   help="write each scene's score maps to SAVE_DIR/scores/<scene>.npz")
    p.add_argument("--save_mat", action=argparse.BooleanOptionalAction, default=False,
                   help="also write the authors' files to SAVE_DIR: scores[_<detector>].mat, gts.mat, mixfs.mat, "
                        "each_auc[_<detector>].txt, test_list.txt (one set per scene size in mat_<H>x<W>/)")
    p.add_argument("--save_envi", action=argparse.BooleanOptionalAction, default=False,
                   help="for ENVI scenes: each score map as a float32 ENVI image with the input's map info, "
                        "in SAVE_DIR/envi/<scene>_<detector>.hdr")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    add_run_options(p)
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that are wrong whatever the data: one line via ``parser.error`` (exit code 2)."""
    if args.input_channel < 1:
        parser.error(f"--input_channel {args.input_channel}: must be 1 or more (the number of bands used)")
    if args.start_channel < 0:
        parser.error(f"--start_channel {args.start_channel}: must be 0 or more (the first band used, from 0)")
    if args.block_num < 1:
        parser.error(f"--block_num {args.block_num}: must be 1 or more (SLRX blocks of bands // block_num px)")
    if args.block_size is not None and args.block_size < 1:
        parser.error(f"--block_size {args.block_size}: must be 1 or more pixels")
    if args.max_memory_gb is not None and not args.max_memory_gb > 0:
        parser.error(f"--max_memory_gb {args.max_memory_gb}: must be a positive number of GiB, e.g. 4")
    if args.fen_batch < 1:
        parser.error(f"--fen_batch {args.fen_batch}: must be 1 or more scenes")


def check_outputs(args: argparse.Namespace, scenes: list[SceneId]) -> None:
    """Before any work: every result path can be written, and no two scenes would write the same file."""
    check_writable(args.save_dir, "--save_dir", folder=True)
    for sub, wanted in (("scores", args.save_scores), ("plots", args.plots)):
        if wanted:
            check_writable(args.save_dir / sub, "--save_dir", folder=True)
    for name in ("auc.csv", "roc3d.csv"):
        check_writable(args.save_dir / name, "--save_dir", folder=False)
    if args.json is not None:
        check_writable(args.json, "--json", folder=False)
    if args.save_scores or args.plots or args.save_mat or args.save_envi:
        seen: dict[str, str] = {}
        for s in scenes:
            if s.name in seen:
                raise OutputError(f"{seen[s.name]} and {s.source}: two scenes named '{s.name}' would write the "
                                  f"same result files in {args.save_dir}; rename one (or use --no-save_scores)")
            seen[s.name] = s.label


def drop_temporaries(args: argparse.Namespace) -> None:
    """Remove what an earlier run killed while writing left (utils.io.atomic_path's ``.<file>.<random>.tmp``)
    in --save_dir, its subfolders (scores/, plots/, envi/, mat_*/) and beside --json."""
    if args.save_dir.is_dir():
        drop_stale_temporaries(args.save_dir, subfolders=True)
    if args.json is not None and args.json.parent.is_dir():
        drop_stale_temporaries(args.json.parent, (args.json.name,))


class SceneId(NamedTuple):
    """What :func:`check_outputs` needs of a scene, small enough to gather from every process."""

    index: int
    name: str
    source: str
    label: str


def dataset_root(args: argparse.Namespace, d: Dist) -> tuple[Path | None, str]:
    """The HAD100-layout folder (None for ``--scenes``) and its description; the synthetic set is generated
    by one process while the others wait."""
    if args.scenes:
        return None, f"{len(args.scenes)} scene file(s)"
    root, description, note = choose_dataset(args.data_path, DEFAULT_DATA)
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
    return DetectorOptions(block_num=args.block_num, block_size=args.block_size,
                           lrx_inner=args.lrx_inner, lrx_outer=args.lrx_outer)


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


def evaluate_scene(scene: Scene, run: SceneRun, bands: int) -> SceneResult:
    """AUC, the 3D-ROC measures and seconds of every detector on one scene, from the pipeline's score maps;
    a warning where they mean nothing (evaluation.report.degenerate_warning)."""
    result = SceneResult(scene.name, note=auc_undefined_reason(scene.mask),
                         warning=degenerate_warning(run.maps, bands))
    for name, scores in run.maps.items():
        result.seconds[name] = run.seconds[name]
        result.roc3d[name] = roc3d(scores, scene.mask)
        result.auc[name] = result.roc3d[name].auc_pd_pf
    return result


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
                   pipeline: Pipeline, d: Dist) -> tuple[list[SceneResult], list[SceneRecord]]:
    """This process's scenes through the pipeline: their results, and what --save_mat / --save_envi write
    (evaluation/export.py). Writes each scene's score maps and plots, and at the end its ENVI maps."""
    results, records = [], []
    runs = pipeline.run(sources)
    for scene, src, scene_run in tqdm(zip(scenes, sources, runs), total=len(scenes), desc="scenes", unit="scene",
                                      disable=not (args.progress and d.is_main), file=sys.stderr):
        if not scene_run.plan.input_in_memory or (scene_run.plan.fen_tile and not scene_run.plan.enhanced_in_memory):
            print(f"{scene.name}: {scene_run.plan.describe(src.shape)}", file=sys.stderr)
        result = evaluate_scene(scene, scene_run, src.shape[2])
        maps = scene_run.maps
        results.append(result)
        if args.save_scores:
            save_npz(args.save_dir / "scores" / f"{scene.name}.npz", mask=scene.mask, **maps)
        if args.save_mat or args.save_envi:
            fen_out = pipeline.fen_output(src) if args.save_mat and pipeline.fen is not None else None  # mixfs.mat
            records.append(SceneRecord(scene.name, scene.source, scene.mask, maps, result.auc, fen_out))
        if args.plots:
            from evaluation.plots import plot_scene  # matplotlib only when pictures are asked for

            bands = scene.cube[:, :, args.start_channel: args.start_channel + args.input_channel]
            plot_scene(args.save_dir / "plots", scene.name, bands, scene.mask, maps, result.auc)
    write_exports(records, args.save_dir, args.detectors, envi=args.save_envi)  # each process its own scenes
    return results, records


def in_input_order(parts: list[tuple[list[int], list]]) -> list:
    """The items of every process's ``(indices, items)``, back in input order."""
    pairs = [(i, item) for indices, items in parts for i, item in zip(indices, items)]
    return [item for _, item in sorted(pairs, key=lambda pair: pair[0])]


def write_results(args: argparse.Namespace, results: list[SceneResult], records: list[SceneRecord],
                  device: str) -> None:
    """auc.csv, the --save_mat files, roc3d.csv and --json, each atomically; then the tables on stdout."""
    save_text(to_csv(results, args.detectors), args.save_dir / "auc.csv")
    write_exports(records, args.save_dir, args.detectors, mat=args.save_mat)
    save_text(roc3d_csv(results, args.detectors), args.save_dir / "roc3d.csv")
    if args.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                  if k in ("input_channel", "start_channel", "weights", "detectors", "block_num", "block_size",
                           "lrx_inner", "lrx_outer")}
        save_json(to_json(results, args.detectors, config=config, device=str(device)), args.json)
    print(format_table(results, args.detectors))
    print()
    print("3D-ROC (Chang 2021; scores min-max normalised; aSNPR: clipped at the median anomaly score)")
    print(format_roc3d_table(results, args.detectors, per_scene=args.roc3d_scenes))
    if args.plots:
        print(f"plots: {args.save_dir / 'plots'}", file=sys.stderr)


def run(args: argparse.Namespace, d: Dist | None = None) -> list[SceneResult]:
    """Evaluate every scene; returns the results in input order (under torchrun: on rank 0, which writes the
    result files; [] on the others).

    Under torchrun each process takes its own scenes (:meth:`Dist.shard`) and writes their score maps, plots
    and ENVI maps; rank 0 gathers the rest. An input error on any process stops all of them at the next
    :meth:`Dist.settle`, before auc.csv or any other gathered result file is written.
    """
    d = d if d is not None else Dist(args.device)
    device = d.device
    full_fp32(device)  # the reference AUCs are float32 figures: no TF32 convolutions on CUDA
    root, source = dataset_root(args, d)
    indices, scenes, total = d.settle(lambda: load_shard(args, root, d))
    ids = in_input_order(d.gather((indices, [SceneId(i, s.name, s.source, s.label)
                                             for i, s in zip(indices, scenes)])))
    sources, fen = d.settle(lambda: check_shard(args, scenes, ids, device))
    d.settle(lambda: drop_temporaries(args) if d.is_main else None)  # before any process writes a result
    # the FEN in tiles, the detectors over chunks and strips, memory-mapped input: pipeline/
    pipeline = Pipeline(args.detectors, fen, detector_options(args), device, args.max_memory_gb, args.fen_batch,
                        fold_bn=args.fold_bn)
    if sources:
        pipeline.warm_up(sources[0])
    if d.is_main:
        print(f"{total} scenes from {source}, bands [{args.start_channel}, "
              f"{args.start_channel + args.input_channel}), detectors {' '.join(args.detectors)}, "
              f"weights {args.weights if fen is not None else '-'}, device {device}"
              + (f" x {d.world} processes" if d.world > 1 else ""), file=sys.stderr)
    results, records = d.settle(lambda: evaluate_shard(args, scenes, sources, pipeline, d))
    parts = d.gather_to_main((indices, results, records if args.save_mat else []))
    if not d.is_main:
        return []
    results = in_input_order([(idx, res) for idx, res, _ in parts])
    records = in_input_order([(idx, rec) for idx, _, rec in parts])  # empty unless --save_mat
    write_results(args, results, records, str(device) if d.world == 1 else device.type)
    return results


def main(argv: list[str] | None = None) -> int:
    restore_ctrl_c()
    quiet = launched_rank() != 0  # under torchrun, rank 0 alone prints the errors that every process stops on
    with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
        args = parse_args(argv)
    d = None
    try:
        d = Dist(args.device)
        run(args, d)
    except FerdError as err:  # DataError, WeightsError, DetectorError, ...: the user's input, one line
        if not quiet:
            print(f"test.py: error: {err}", file=sys.stderr)
        if isinstance(err, PeerError):  # raised on every process alike: all leave together, each with code 2
            d.barrier()
        return 2
    except KeyboardInterrupt:  # result files are written atomically: each is complete or untouched
        print("test.py: interrupted; the result files written so far are complete, the rest were not written",
              file=sys.stderr)
        return 130
    finally:
        if d is not None:
            d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
