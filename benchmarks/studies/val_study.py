"""Which validation signal predicts unseen scenes? Leave-two-out runs over the ten ABU-folder training scenes.

    FERD_WEIGHTS_DIR=../shared/ferd-release python benchmarks/studies/val_study.py --fold 0      # one run (CPU setting)
    python benchmarks/studies/val_study.py --report                                              # all folds done so far

Each fold holds two of the ten training scenes of benchmarks/studies/abu_transfer.py out of training altogether
(``FOLDS``) and trains on the other eight with abu_transfer's setting, ``--select val_real`` (which logs
both validation signals each epoch). Per epoch the run's AUC table (train.py's ``auc_{N}bands.csv``) then
holds every candidate signal and the real FEN+GRX AUC of the two held-out scenes (their own labels):

* ``val``: mAUC on held-out backgrounds with implanted synthetic materials (``--select val``);
* ``val_real``: mAUC on held-out backgrounds with the labelled anomaly spectra of the training scenes
  implanted (``--select val_real``);
* ``-loss``: the epoch's mean training loss, negated (lower loss, better FEN?);
* ``val_scene``: the FEN+GRX AUC of the whole validation scene (the training scene held out for ``val``'s
  tiles) with its own labels: no implants, one scene's few anomalies (logged from fold 2 on).

For each candidate: Spearman's rank correlation, over the epochs, with the held-out scenes' mean AUC (the
target a choice may use) and, for the reader only, with the four airports' mean AUC (never used for a
choice). Written to ``OUT/fold<k>.json``; ``--report`` prints the markdown table of docs/training.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

import train  # noqa: E402
from benchmarks.studies.abu_transfer import ABU, BANDS, SETTINGS, TEST, TRAIN  # noqa: E402
from data.patches import split_files  # noqa: E402
from utils.io import save_json  # noqa: E402
from weights.release import ENV_WEIGHTS_DIR  # noqa: E402

#: Held-out pairs, one per fold: every training scene once, each pair from two sensors' scenes.
FOLDS = [("abu-urban-1", "hydice"), ("abu-beach-2", "abu-urban-4"), ("abu-urban-2", "sandiego"),
         ("abu-beach-1", "abu-urban-5"), ("abu-beach-3", "abu-urban-3")]
CANDIDATES = {"val": "val_mAUC", "val_real": "val_real_mAUC", "-loss": "loss", "val_scene": "test:{val_scene}"}
SEED = 10
#: train.py options of each recipe compared on the folds (abu_transfer.py's recipe of the same family):
#: from the released layer1 with layers 2-3 random, or fine-tuning the released FEN.
RECIPES = {"scratch": [], "finetune": ["--init_fen", "had100", "--lr", "0.0001"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fold", type=int, choices=range(len(FOLDS)), help="run this fold")
    p.add_argument("--report", action="store_true", help="print the table of every fold in OUT")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    p.add_argument("--recipe", choices=list(RECIPES), default="scratch", help="train.py options of the run")
    p.add_argument("--epochs", type=int, default=None, help="override the setting's epochs")
    p.add_argument("--max_steps", type=int, default=None, help="override the setting's step budget")
    p.add_argument("--abu", type=Path, default=ABU)
    p.add_argument("--weights_dir", type=Path,
                   default=Path(os.environ.get(ENV_WEIGHTS_DIR, ROOT.parent / "shared" / "ferd-release")))
    p.add_argument("--out", type=Path, default=ROOT / "results" / "val_study")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    if args.fold is None and not args.report:
        p.error("give --fold K or --report")
    return args


def with_option(options: list[str], flag: str, value: int | None) -> list[str]:
    """``options`` with ``flag``'s value replaced by ``value`` (unchanged when ``value`` is None)."""
    if value is None:
        return options
    out = list(options)
    out[out.index(flag) + 1] = str(value)
    return out


def val_scene(held: tuple[str, str]) -> str:
    """The training scene a fold's run holds out for validation (train.py's ``--val_fraction`` split, seed 10):
    its tiles carry the implants of ``val`` and ``val_real``; its own labels give the ``val_scene`` signal."""
    kept = [n for n in TRAIN if n not in held]
    (name,) = split_files(kept, train.build_parser().get_default("val_fraction"), SEED)[1]
    return name


def train_argv(args: argparse.Namespace, held: tuple[str, str], save_dir: Path) -> list[str]:
    options = with_option(with_option(SETTINGS[args.setting], "--epochs", args.epochs), "--max_steps", args.max_steps)
    return ["--train_scenes", *(str(args.abu / f"{n}.mat") for n in TRAIN if n not in held),
            "--test_scenes", *(str(args.abu / f"{n}.mat") for n in (*held, val_scene(held), *TEST)),
            "--input_channel", str(BANDS), "--teacher", str(args.weights_dir / "had100-50bands" / "enc.pt"),
            "--select", "val_real", "--seed", str(SEED), "--save_dir", str(save_dir), "--no-progress",
            *(["--device", args.device] if args.device else []), *options, *RECIPES[args.recipe]]


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def correlations(rows: list[dict[str, str]], held: tuple[str, str]) -> dict:
    """Per candidate, Spearman's rho (and p) over the epochs against the held-out and the airport mean AUC."""
    def col(key: str) -> np.ndarray:
        return np.array([float(r[key]) for r in rows])

    held_auc = np.mean([col(f"test:{n}") for n in held], axis=0)
    airport = np.mean([col(f"test:{n}") for n in TEST], axis=0)
    out = {"epochs": len(rows), "held_out_mAUC": held_auc.tolist(), "airport_mAUC": airport.tolist(),
           "candidates": {}}
    for name, key in CANDIDATES.items():
        key = key.format(val_scene=val_scene(held) if "{" in key else "")
        if key not in rows[0]:  # a log without this signal's column
            continue
        v = col(key) * (-1 if name.startswith("-") else 1)
        rho_h, p_h = spearmanr(v, held_auc)
        rho_a, p_a = spearmanr(v, airport)
        out["candidates"][name] = {"values": v.tolist(), "rho_held_out": float(rho_h), "p_held_out": float(p_h),
                                   "rho_airports": float(rho_a), "p_airports": float(p_a)}
    return out


def run_fold(args: argparse.Namespace) -> int:
    held = FOLDS[args.fold]
    tag = f"fold{args.fold}" + ("" if args.recipe == "scratch" else f"_{args.recipe}")
    save_dir = args.out / tag
    argv = train_argv(args, held, save_dir)
    rc = train.main(argv)
    if rc:
        return rc
    result = {"fold": args.fold, "recipe": args.recipe, "held_out": list(held), "train_options": argv,
              **correlations(read_table(save_dir / f"auc_{BANDS}bands.csv"), held)}
    save_json(result, args.out / f"{tag}.json")
    print(report([result]))
    return 0


def selected(result: dict) -> tuple[int, float, float]:
    """The epoch ``--select val_real`` keeps (the first best), and the held-out and airport mAUC there."""
    values = result["candidates"]["val_real"]["values"]
    i = int(np.argmax(values))
    return i + 1, result["held_out_mAUC"][i], result["airport_mAUC"][i]


def recipe_table(results: list[dict]) -> str:
    """Per fold and recipe: the val_real-selected epoch and the held-out scenes' mAUC there (what a recipe
    choice may use), and the airports' (reader only)."""
    lines = ["| fold | recipe | epoch kept by val_real | val_real | held-out mAUC there | airport mAUC there "
             "(reader only) |", "|---|---|---|---|---|---|"]
    for r in results:
        epoch, held, airport = selected(r)
        val = r["candidates"]["val_real"]["values"][epoch - 1]
        lines.append(f"| {r['fold']} | {r.get('recipe', 'scratch')} | {epoch} | {val:.4f} | {held:.4f} | "
                     f"{airport:.4f} |")
    return "\n".join(lines)


def release_held_out(held: list[str], abu: Path, weights_dir: Path) -> float:
    """The authors' released FEN+GRX mean AUC on a fold's held-out scenes: the bar a trained recipe must pass
    on the same scenes (no training, so the same for every recipe of the fold)."""
    import torch

    from data.scene import read_scene
    from training.data import eval_cubes, fen_grx_auc
    from weights.release import load_fen

    cubes = eval_cubes([read_scene(abu / f"{n}.mat") for n in held], BANDS)
    return fen_grx_auc(load_fen("had100", BANDS, weights_dir), cubes, torch.device("cpu"))[0]


def family_table(results: list[dict], release: dict[int, float]) -> str:
    """The recipe choice: per recipe, the held-out mAUC at its val_real-kept epoch, averaged over the folds
    every recipe has run; the higher mean wins (the rule of docs/training.md, section 2). The release's
    held-out mAUC on the same folds is the bar."""
    by_recipe: dict[str, dict[int, float]] = {}
    for r in results:
        by_recipe.setdefault(r.get("recipe", "scratch"), {})[r["fold"]] = selected(r)[1]
    folds = sorted(set.intersection(*(set(v) for v in by_recipe.values()), set(release)))
    if not folds:
        return "no fold has run every recipe"
    means = {name: float(np.mean([v[k] for k in folds])) for name, v in by_recipe.items()}
    means["release (no training)"] = float(np.mean([release[k] for k in folds]))
    lines = [f"| recipe | held-out mAUC at the kept epoch, folds {', '.join(map(str, folds))} | mean |", "|---|---|---|"]
    for name, m in sorted(means.items(), key=lambda kv: -kv[1]):
        per = [release[k] if name.startswith("release") else by_recipe[name][k] for k in folds]
        lines.append(f"| {name} | {' / '.join(f'{a:.4f}' for a in per)} | {m:.4f} |")
    trained = {k: v for k, v in means.items() if not k.startswith("release")}
    best = max(trained, key=trained.get)
    verdict = "above" if trained[best] > means["release (no training)"] else "not above"
    return "\n".join(lines) + f"\n\nChosen family: {best} ({trained[best]:.4f}, {verdict} the release's " \
        f"{means['release (no training)']:.4f} on the same folds)."


def report(results: list[dict], release: dict[int, float] | None = None) -> str:
    lines = ["| fold | recipe | held out | epochs | candidate | rho with held-out mAUC | rho with airport mAUC "
             "(reader only) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for name, c in r["candidates"].items():
            lines.append(f"| {r['fold']} | {r.get('recipe', 'scratch')} | {', '.join(r['held_out'])} | {r['epochs']} | {name} | "
                         f"{c['rho_held_out']:+.2f} (p {c['p_held_out']:.2f}) | {c['rho_airports']:+.2f} |")
    if len(results) > 1:
        recipes = sorted({r.get("recipe", "scratch") for r in results}, key=list(RECIPES).index)
        groups = [(f"mean, {k}", [r for r in results if r.get("recipe", "scratch") == k]) for k in recipes]
        for label, group in [*groups, ("mean, all", results)] if len(recipes) > 1 else [("mean", results)]:
            for name in CANDIDATES:
                logged = [r["candidates"][name] for r in group if name in r["candidates"]]
                if logged:
                    rho, air = [c["rho_held_out"] for c in logged], [c["rho_airports"] for c in logged]
                    lines.append(f"| {label} | | | {len(logged)} runs | {name} | {np.nanmean(rho):+.2f} | "
                                 f"{np.nanmean(air):+.2f} |")
    text = "\n".join(lines) + "\n\n" + recipe_table(results)
    return text + ("\n\n" + family_table(results, release) if release else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fold is not None:
        return run_fold(args)
    results = [json.loads(p.read_text()) for p in sorted(args.out.glob("fold*.json"))]
    if not results:
        print(f"no fold results in {args.out}")
        return 0
    release = {k: release_held_out(list(FOLDS[k]), args.abu, args.weights_dir) for k in {r["fold"] for r in results}}
    print(report(results, release))
    return 0


if __name__ == "__main__":
    sys.exit(main())
