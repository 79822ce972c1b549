"""Evaluate FERD: anomaly detection with and without the FEN on HAD100-layout data or single scenes.

    python test.py --input_channel 50                     # HAD100 (or the synthetic set), had100 weights
    FERD_WEIGHTS_DIR=../shared/ferd-release python test.py --scenes ../shared/data/abu/abu-airport-1.mat \
        --input_channel 200 --weights aviris --detectors GRX FEN+GRX SLRX FEN+SLRX LRX FEN+LRX --plots

Detectors: every one detectors/registry.py lists (``--help`` names them and their options), each also as
FEN+X on the enhanced cube x + FEN(x).

Prints a per-scene table (AUC and seconds for each detector) with the mean row, then the 3D-ROC measures
(AUC(Pd,Pf), AUC(Pd,tau), AUC(Pf,tau), SNPR, adaptive SNPR; evaluation/roc3d.py) per scene and detector.
Writes under ``--save_dir`` the per-scene AUCs (``auc.csv``), the 3D-ROC measures (``roc3d.csv``), the score
maps (``scores/<scene>.npz``) and, with ``--plots``, ``plots/<scene>_maps.png`` and ``plots/<scene>_roc.png``;
with ``--save_mat`` the authors' MATLAB files, with ``--save_envi`` georeferenced ENVI maps (evaluation/export.py),
with ``--save_geotiff`` (on for GeoTIFF scenes) georeferenced GeoTIFF maps (evaluation/geotiff_maps.py).

Scenes without ground truth (no mask beside the file) are scored and mapped, not measured: the tables cover the
labelled scenes and name the others, which get ``detections/<scene>_<detector>.csv`` (and ``.geojson`` where
the scene is georeferenced; evaluation/detections.py) and a table of their pixels and detections.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detectors.registry import all_options, detector_names
from pipeline.settings import EvalSettings
from utils.cli import (DefaultsHelpFormatter, OneLineParser, add_band_options, add_data_path, add_run_options,
                       flag_text, script_main)
from utils.dist import Dist
from utils.settings import SettingsError, field_defaults
from weights.release import ENV_WEIGHTS_DIR


#: Every default of the flags: the settings' own (one place).
DEFAULTS = field_defaults(EvalSettings)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="test.py", description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    data = p.add_argument_group("scenes and bands")
    add_band_options(data, DEFAULTS)
    src = data.add_mutually_exclusive_group()
    add_data_path(src)
    src.add_argument("--scenes", type=Path, nargs="+", metavar="FILE",
                     help="single scenes instead: .mat (cube + mask), .npy with a .png mask of the same stem, "
                          "an ENVI .hdr (+ binary) with a <stem>.png or <stem>_gt.hdr mask, a GeoTIFF .tif "
                          "(<stem>.png or <stem>_gt.tif mask), or a NetCDF4/HDF5 .nc/.h5 (EMIT layout); a scene "
                          "without a mask is scored and its detections written (no AUC)")
    data.add_argument("--data_key", default=DEFAULTS.data_key, help=".mat key (NetCDF variable) of the cube "
                      "(guessed if omitted)")
    data.add_argument("--gt_key", default=DEFAULTS.gt_key, help=".mat key (NetCDF variable) of the mask (guessed "
                      "if omitted)")
    w = p.add_argument_group("weights (for the FEN+ detectors)")
    w.add_argument("--weights", default=DEFAULTS.weights,
                   help="released weights 'had100' (50/100/200 bands) or 'aviris' (200), this project's 'abu10' (50; "
                        "docs/model_card_abu10.md), a train.py checkpoint, or a folder of the authors' files")
    w.add_argument("--weights_dir", default=DEFAULTS.weights_dir,
                   help=f"local copy of the released weights (overrides ${ENV_WEIGHTS_DIR}); no download")
    det = p.add_argument_group("detectors and their options")
    det.add_argument("--detectors", nargs="+", default=DEFAULTS.detectors, choices=detector_names(),
                     metavar="NAME", help=f"any of {' '.join(detector_names())}")
    for o in all_options().values():  # each detector's own options, as its object declares them
        kind = {"action": argparse.BooleanOptionalAction} if o.type is bool else {"type": o.type, "choices": o.choices}
        det.add_argument(f"--{o.name}", default=o.default, help=o.help, **kind)
    out = p.add_argument_group("outputs")
    out.add_argument("--save_dir", type=Path, default=DEFAULTS.save_dir,
                     help="where auc.csv, roc3d.csv and the folders below go")
    out.add_argument("--save_scores", action=argparse.BooleanOptionalAction, default=DEFAULTS.save_scores,
                     help="write each scene's score maps to SAVE_DIR/scores/<scene>.npz")
    out.add_argument("--plots", action=argparse.BooleanOptionalAction, default=DEFAULTS.plots,
                     help="PNGs in SAVE_DIR/plots: per scene the cube, mask and maps (_maps), and for a labelled "
                          "scene the ROC curves (_roc), the separability box plot (_boxes) and the 3D-ROC curve "
                          "(_roc3d); with several labelled scenes, mean_boxes.png")
    out.add_argument("--roc3d_scenes", action=argparse.BooleanOptionalAction, default=DEFAULTS.roc3d_scenes,
                     help="print the 3D-ROC measures of every scene, not only their means (roc3d.csv has them all)")
    out.add_argument("--save_mat", action=argparse.BooleanOptionalAction, default=DEFAULTS.save_mat,
                     help="also write the authors' files to SAVE_DIR: scores[_<detector>].mat, gts.mat, mixfs.mat, "
                          "each_auc[_<detector>].txt, test_list.txt (one set per scene size in mat_<H>x<W>/)")
    out.add_argument("--save_envi", action=argparse.BooleanOptionalAction, default=DEFAULTS.save_envi,
                     help="for ENVI scenes: each score map as a float32 ENVI image with the input's map info, "
                          "in SAVE_DIR/envi/<scene>_<detector>.hdr (FEN+X written FEN_X)")
    out.add_argument("--save_geotiff", action=argparse.BooleanOptionalAction, default=DEFAULTS.save_geotiff,
                     help="each score map as a one-band float32 GeoTIFF with the input's CRS, transform and nodata, "
                          "in SAVE_DIR/geotiff/<scene>_<detector>.tif (default: on for GeoTIFF scenes)")
    out.add_argument("--json", type=Path, default=DEFAULTS.json, help="also write the results as JSON here")
    found = p.add_argument_group("detections (always for unlabelled scenes)")
    found.add_argument("--detect_fraction", type=float, default=DEFAULTS.detect_fraction,
                       help="flag the top fraction of each map's pixels (the empirical quantile of the scene's "
                            "own scores), grouped into connected objects")
    found.add_argument("--detect_pfa", type=float, default=DEFAULTS.detect_pfa,
                       help="GRX only: threshold at this chi-square false-alarm rate on its Mahalanobis distances "
                            "(B degrees of freedom) instead of --detect_fraction")
    found.add_argument("--detect_labelled", action=argparse.BooleanOptionalAction, default=DEFAULTS.detect_labelled,
                       help="write SAVE_DIR/detections/ for labelled scenes too")
    run_ = p.add_argument_group("speed, memory and device")
    run_.add_argument("--max_memory_gb", type=float, default=DEFAULTS.max_memory_gb,
                      help="memory for one scene's cubes, tiles and maps; larger scenes are read memory-mapped and "
                           "cut into tiles (default: a quarter of the available memory, at most 4 GiB)")
    run_.add_argument("--fen_batch", type=int, default=DEFAULTS.fen_batch,
                      help="same-size scenes small enough for one FEN tile (HAD100's 64 x 64) go through the FEN "
                           "this many at a time")
    run_.add_argument("--fold_bn", action=argparse.BooleanOptionalAction, default=DEFAULTS.fold_bn,
                      help="fold the FEN's BatchNorms into its convolutions (about 10%% faster on CPU; float32 "
                           "rounding moves, and one reference AUC sits on a rounding edge: docs/speed.md)")
    add_run_options(run_, DEFAULTS)
    return p


def parse_args(argv: list[str] | None = None) -> EvalSettings:
    """The flags as the library's settings; a bad one is one line through ``p.error`` (exit code 2)."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        return EvalSettings.from_options(vars(args))
    except SettingsError as err:
        p.error(flag_text(str(err), p))


def run(settings: EvalSettings, d: Dist | None = None) -> list:
    """The story of a run: pipeline/evaluate.py (load, check, enhance, detect, score, report), imported only
    once the flags are parsed: ``--help`` and an option error cost no more than importing torch."""
    from pipeline.evaluate import evaluate

    return evaluate(settings, d)


def main(argv: list[str] | None = None) -> int:
    return script_main(build_parser(), parse_args, run, argv,
                       "interrupted; the result files written so far are complete, the rest were not written")


if __name__ == "__main__":
    sys.exit(main())
