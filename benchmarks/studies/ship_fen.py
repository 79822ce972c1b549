"""The recipes tried by benchmarks/studies/abu_transfer.py, as one table; the chosen FEN shipped with its model card.

    python benchmarks/studies/ship_fen.py --table                       # every OUT/abu_transfer_*.json, one row each
    python benchmarks/studies/ship_fen.py --ship abu10 --recipe cpu_long  # copy its FEN into weights/shipped/, write the card

``--ship NAME`` copies ``OUT/<recipe>/fen_50bands.pt`` (a train.py checkpoint: FEN, ZCL, the run's metadata) to
``weights/shipped/NAME-50bands.pt``, prints the SHA-256 to put into ``weights.release.SHIPPED``, and writes
``docs/model_card_NAME.md`` from the recipe's JSON (data, bands, options, selection, the airport table, the
command that reproduces it). Which recipe to ship is chosen on validation alone (docs/training.md).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.studies.abu_transfer import BANDS, SEED, TRAIN, render  # noqa: E402
from utils.io import atomic_path, save_text  # noqa: E402
from weights.files import sha256  # noqa: E402
from weights.release import SHIPPED_DIR  # noqa: E402

OUT = ROOT / "results" / "abu_transfer"
RELEASED, TRAINED = "FEN+GRX released had100-50", "FEN+GRX trained here"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help="abu_transfer.py's --out")
    p.add_argument("--table", action="store_true", help="print the table of every recipe run so far")
    p.add_argument("--ship", metavar="NAME", help="ship the FEN of --recipe under this name")
    p.add_argument("--recipe", help="the tag of the run to ship (cpu, cpu_finetune, cpu_long, ...)")
    p.add_argument("--why", default=None,
                   help="the model card's reason for this recipe, needed when its validation score is not the "
                        "highest of the runs (say what chose it)")
    args = p.parse_args(argv)
    if args.ship and not args.recipe:
        p.error("--ship needs --recipe")
    if not (args.table or args.ship):
        p.error("give --table or --ship NAME --recipe TAG")
    return args


def tag_of(result: dict) -> str:
    """abu_transfer.py's tag of a run: ``setting[_recipe][_seedN]`` (runs before ``--seed`` used seed 10)."""
    tag = result["setting"] if result.get("recipe", "base") == "base" else f"{result['setting']}_{result['recipe']}"
    seed = result.get("seed", SEED)
    return tag if seed == SEED else f"{tag}_seed{seed}"


def options_text(result: dict) -> str:
    """The train.py options of a run as train.py reads them (a repeated option: its last value), without the
    data and file paths."""
    opts, skip = result["train_options"], {"--train_scenes", "--test_scenes", "--teacher", "--save_dir"}
    values: dict[str, list[str]] = {}
    for item in opts:
        if item.startswith("--"):
            flag = item
            values[flag] = []
        else:
            values[flag].append(item)
    return " ".join(" ".join([f, *v]) for f, v in values.items() if f not in skip)


def recipe_table(results: list[dict]) -> str:
    lines = ["| recipe | train.py options | minutes | selected epoch (step) | selected on | score | airport mAUC |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["selected"]
        how = s.get("select", "val")
        lines.append(f"| {tag_of(r)} | `{options_text(r)}` | {r['minutes']:.1f} | {s['epoch']} ({s['step']}) | {how} | "
                     f"{s.get('score', s.get('val_mAUC')):.4f} | {r['mean_auc'][TRAINED]:.4f} |")
    if results:
        r = results[0]
        lines.append(f"| GRX alone / the release | | | | | | {r['mean_auc']['GRX']:.4f} / {r['mean_auc'][RELEASED]:.4f} |")
    return "\n".join(lines)


TOP_BY_VALIDATION = ("Why this one: of the recipes tried (docs/training.md, section 2), its validation score was the "
                     "highest; the airports played no part in the choice.")


#: Where each part of a shipped FEN comes from and under which terms it is used (issue 33).
TERMS = """## Terms

A shipped FEN holds two kinds of tensors, from two sources:

| part | tensors | from | terms |
|---|---|---|---|
| layer1 (the teacher's first stage, frozen) | 60 | torchvision's ImageNet weights of `wide_resnet101_2` (`IMAGENET1K_V1`), as the FERD authors' code takes them; here read from the authors' released `had100-50bands/enc.pt`, and equal, tensor for tensor, to the `enc.pt` of all four of their releases (`tests/test_shipped.py`). Training never changes it | torchvision is BSD-3-Clause; its documentation says that pre-trained weights may carry terms of the data they were trained on (ImageNet: non-commercial research and education) and leaves it to the user to decide whether they may use them. Passed on here unchanged, under those terms |
| CWL, FPL and the ZCL | the rest | trained by this project (`train.py`) on the ABU-folder scenes, from a seeded random start | this project's MIT licence (LICENSE). The scenes themselves come with no stated licence (github.com/jiojio0505/OT-AD @ `dd4a58097f`; ABU: Kang et al., IEEE TGRS 2017): they were used for research, as the literature uses them, and are not redistributed |

The FERD authors' own released weights (`had100`, `aviris`) are not part of this file or of the repository:
they are downloaded from their repository and used under its terms. Whoever uses this FEN beyond research
should check the ImageNet terms of its layer1 and the status of the ABU scenes for their use."""


def card(name: str, result: dict, digest: str, why: str = TOP_BY_VALIDATION) -> str:
    """The model card of a shipped FEN, from its recipe's JSON."""
    tag, s = tag_of(result), result["selected"]
    beats = result["mean_auc"][TRAINED] > result["mean_auc"][RELEASED]
    seed_option = "" if result.get("seed", SEED) == SEED else f" --seed {result['seed']}"
    return f"""# Model card: `{name}` (FEN, {BANDS} bands)

`python test.py --weights {name} --input_channel {BANDS}` loads it (weights/shipped/{name}-{BANDS}bands.pt, SHA-256
`{digest}`).

- **What**: the FEN of FERD (CWL + the teacher's layer1 + FPL, with the ZCL of the same epoch, so
  `python -m weights export` writes the authors' three files), trained by this project's train.py.
- **Data**: the ten ABU-folder scenes that are not airports ({', '.join(TRAIN)}), first {BANDS} bands, each
  preprocessed as one image, cut into patches; patches touching a labelled anomaly dropped; one scene held out
  for validation by `--val_fraction 0.1`. No airport scene is trained on or looked at before the table below.
- **Teacher**: layer1 from the released `had100-50bands/enc.pt` (ImageNet's layer1); layers 2-3 random
  (torchvision's ImageNet file cannot be downloaded where this was trained).
- **Recipe** `{tag}`: `{options_text(result)}`; {result['minutes']:.1f} minutes on {result['device']} (AMD EPYC, 2
  cores; other jobs shared the cores for part of the run).
- **Selection**: {s.get('select', 'val')}: the epoch with the best FEN+GRX mAUC on held-out backgrounds with
  implanted anomalies (docs/training.md): epoch {s['epoch']}, step {s['step']}, score {s.get('score', 0):.4f}.

Airports (never trained on), ROC AUC of GRX on x and on x + FEN(x):

{render(result['auc'])}

{why}

Its mean is {'above' if beats else 'not above'} the authors' release's on these scenes ({result['mean_auc'][TRAINED]:.4f}
against {result['mean_auc'][RELEASED]:.4f}); what that difference means against the spread over seeds: docs/training.md,
section 5.

Reproduce (about the minutes above on a 2-core CPU):

```bash
FERD_WEIGHTS_DIR=../shared/ferd-release python benchmarks/studies/abu_transfer.py --recipe {result.get('recipe', 'base')}{seed_option}
python benchmarks/studies/ship_fen.py --ship {name} --recipe {tag}
```

{TERMS}
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = [json.loads(p.read_text()) for p in sorted(args.out.glob("abu_transfer_*.json"))]
    if args.table:
        print(recipe_table(results))
    if args.ship:
        result = next((r for r in results if tag_of(r) == args.recipe), None)
        if result is None:
            print(f"ship_fen.py: error: no {args.out}/abu_transfer_{args.recipe}.json", file=sys.stderr)
            return 2
        best = max(results, key=lambda r: r["selected"].get("score") or 0)
        if args.why is None and best is not result:
            print(f"ship_fen.py: error: {args.recipe}'s validation score is not the highest ({tag_of(best)}'s is): "
                  "say what chose it with --why", file=sys.stderr)
            return 2
        target = SHIPPED_DIR / f"{args.ship}-{BANDS}bands.pt"
        with atomic_path(target) as tmp:
            shutil.copyfile(args.out / args.recipe / f"fen_{BANDS}bands.pt", tmp)
        digest = sha256(target)
        save_text(card(args.ship, result, digest, args.why or TOP_BY_VALIDATION), ROOT / "docs" / f"model_card_{args.ship}.md")
        print(f"{target}: sha256 {digest}; put it into weights.release.SHIPPED['{args.ship}'][{BANDS}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
