"""Evaluate FERD: anomaly detection with and without the FEN on HAD100-layout data or single scenes.

    python test.py --input_channel 50                     # HAD100 (or the synthetic set), had100 weights
    FERD_WEIGHTS_DIR=../shared/ferd-release python test.py --scenes ../shared/data/abu/abu-airport-1.mat \
        --input_channel 200 --weights aviris --detectors GRX FEN+GRX SLRX FEN+SLRX LRX FEN+LRX --plots

Detectors (detectors/registry.py): GRX (global RX), SLRX (the authors' simplified local RX: --block_num,
--block_size), LRX (dual-window local RX: --lrx_inner, --lrx_outer), CRD (collaborative representation:
--crd_inner, --crd_outer, --crd_lambda), each also as FEN+X on the enhanced cube x + FEN(x).

Prints a per-scene table (AUC and seconds for each detector) with the mean row, then the 3D-ROC measures
(AUC(Pd,Pf), AUC(Pd,tau), AUC(Pf,tau), SNPR, adaptive SNPR; evaluation/roc3d.py) per scene and detector.
Writes under ``--save_dir`` the per-scene AUCs (``auc.csv``), the 3D-ROC measures (``roc3d.csv``), the score
maps (``scores/<scene>.npz``) and, with ``--plots``, ``plots/<scene>_maps.png`` and ``plots/<scene>_roc.png``;
with ``--save_mat`` the authors' MATLAB files, with ``--save_envi`` georeferenced ENVI maps (evaluation/export.py).

Scenes without ground truth (no mask beside the file) are scored and mapped, not measured: the tables cover the
labelled scenes and name the others, which get ``detections/<scene>_<detector>.csv`` (and ``.geojson`` where
the scene is georeferenced; evaluation/detections.py) and a table of their pixels and detections.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from detectors.registry import DEFAULT_DETECTORS, DETECTORS, detector_names
from evaluation.detections import DEFAULT_TOP_FRACTION
from evaluation.report import SceneResult
from evaluation.results import SceneId, drop_temporaries, write_results
from pipeline.evaluate import check_shard, dataset_root, detector_options, evaluate_shard, in_input_order, load_shard
from pipeline.run import Pipeline
from utils.cli import (DEFAULT_DATA, OneLineParser, add_band_options, add_data_path, add_run_options, check_least,
                       check_positive, script_main)
from utils.device import full_fp32
from utils.dist import Dist
from weights.release import ENV_WEIGHTS_DIR

ROOT = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="test.py", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_band_options(p)
    src = p.add_mutually_exclusive_group()
    add_data_path(src)
    src.add_argument("--scenes", type=Path, nargs="+", metavar="FILE",
                     help="single scenes instead: .mat (cube + mask), .npy with a .png mask of the same stem, "
                          "or an ENVI .hdr (+ binary) with a <stem>.png or <stem>_gt.hdr mask; a scene without a "
                          "mask is scored and its detections written (no AUC)")
    p.add_argument("--data_key", default=None, help=".mat key of the cube (guessed if omitted)")
    p.add_argument("--gt_key", default=None, help=".mat key of the mask (guessed if omitted)")
    p.add_argument("--weights", default="had100",
                   help="released weights 'had100' (50/100/200 bands) or 'aviris' (200), this project's 'abu10' (50; "
                        "docs/model_card_abu10.md), or a train.py checkpoint")
    p.add_argument("--weights_dir", default=None,
                   help=f"local copy of the released weights (overrides ${ENV_WEIGHTS_DIR}); no download")
    p.add_argument("--detectors", nargs="+", default=DEFAULT_DETECTORS, choices=detector_names(),
                   metavar="NAME", help=f"any of {' '.join(detector_names())}")
    for option in (o for det in DETECTORS.values() for o in det.options):  # each detector's own options
        p.add_argument(f"--{option.name}", type=option.type, default=option.default, help=option.help)
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
    p.add_argument("--detect_fraction", type=float, default=DEFAULT_TOP_FRACTION,
                   help="detections: flag the top fraction of each map's pixels (the empirical quantile of the "
                        "scene's own scores), grouped into connected objects")
    p.add_argument("--detect_pfa", type=float, default=None,
                   help="detections of GRX only: threshold at this chi-square false-alarm rate on its Mahalanobis "
                        "distances (B degrees of freedom) instead of --detect_fraction")
    p.add_argument("--detect_labelled", action=argparse.BooleanOptionalAction, default=False,
                   help="write SAVE_DIR/detections/ for labelled scenes too (unlabelled scenes always get them)")
    add_run_options(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, each checked alone (one line through ``p.error``, exit code 2)."""
    p = build_parser()
    args = p.parse_args(argv)
    check_least(p, args)
    check_positive(p, args, "max_memory_gb")
    if not 0 < args.detect_fraction <= 1:
        p.error(f"--detect_fraction {args.detect_fraction}: must lie in (0, 1]")
    if args.detect_pfa is not None and not 0 < args.detect_pfa < 1:
        p.error(f"--detect_pfa {args.detect_pfa}: must lie between 0 and 1 (both excluded)")
    return args



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
    root, source = dataset_root(args, d, DEFAULT_DATA)
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
    results, records, pictured = d.settle(lambda: evaluate_shard(args, scenes, sources, pipeline, d))
    # rank 0 writes what needs every scene: the tables, --save_mat's stacks, --plots' mean box plot
    parts = d.gather_to_main((indices, results, records if args.save_mat else [], pictured))
    if not d.is_main:
        return []
    results = in_input_order([(part[0], part[1]) for part in parts])
    records = in_input_order([(part[0], part[2]) for part in parts])  # empty unless --save_mat
    pictured = in_input_order([(part[0], part[3]) for part in parts])  # empty unless --plots
    write_results(args, results, records, str(device) if d.world == 1 else device.type,
                  asdict(detector_options(args)), pictured)
    return results


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser(), parse_args, run, argv,
                       "interrupted; the result files written so far are complete, the rest were not written")


if __name__ == "__main__":
    sys.exit(main())
