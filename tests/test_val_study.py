"""benchmarks/val_study.py: the rank correlations it reports, and the runs it builds (no training here)."""
from __future__ import annotations

import pytest

import train
from benchmarks import val_study
from benchmarks.abu_transfer import TEST, TRAIN


def _rows(held, airports, val, val_real, loss):
    names = ["x", "y"]
    return [{"val_mAUC": str(v), "val_real_mAUC": str(r), "loss": str(lo),
             **{f"test:{n}": str(h) for n in names}, **{f"test:{n}": str(a) for n in TEST}}
            for h, a, v, r, lo in zip(held, airports, val, val_real, loss)]


def test_correlations_are_spearman_over_epochs():
    held = [0.90, 0.92, 0.91, 0.95]
    rows = _rows(held, airports=[1 - h for h in held], val=held, val_real=[-h for h in held], loss=[1.0, 0.8, 0.9, 0.5])
    out = val_study.correlations(rows, ("x", "y"))
    c = out["candidates"]
    assert out["epochs"] == 4 and out["held_out_mAUC"] == pytest.approx(held)
    assert c["val"]["rho_held_out"] == pytest.approx(1.0) and c["val"]["rho_airports"] == pytest.approx(-1.0)
    assert c["val_real"]["rho_held_out"] == pytest.approx(-1.0)  # the reverse order
    assert c["-loss"]["values"] == [-1.0, -0.8, -0.9, -0.5] and c["-loss"]["rho_held_out"] == pytest.approx(1.0)


def test_each_fold_trains_on_the_rest_and_tests_on_its_pair_and_the_airports():
    held_everywhere = [n for fold in val_study.FOLDS for n in fold]
    assert sorted(held_everywhere) == sorted(TRAIN)  # every training scene held out once
    args = val_study.parse_args(["--fold", "1", "--epochs", "3"])
    argv = val_study.train_argv(args, val_study.FOLDS[1], args.out / "f")
    parsed = train.parse_args(argv)
    trained = [p.stem for p in parsed.train_scenes]
    assert set(trained) == set(TRAIN) - set(val_study.FOLDS[1])
    assert [p.stem for p in parsed.test_scenes] == [*val_study.FOLDS[1], *TEST]
    assert parsed.select == "val_real" and parsed.epochs == 3


def test_ship_fen_table_and_card_from_a_recipe_result(tmp_path):
    from benchmarks import ship_fen

    auc = {"GRX": {n: 0.9 for n in TEST}, ship_fen.RELEASED: {n: 0.96 for n in TEST},
           ship_fen.TRAINED: {n: 0.97 for n in TEST}}
    result = {"setting": "cpu", "recipe": "long", "minutes": 41.25, "device": "cpu",
              "train_options": ["--train_scenes", "a.mat", "b.mat", "--input_channel", "50", "--select", "val",
                                "--save_dir", "x", "--epochs", "7", "--select", "val_real", "--epochs", "20"],
              "selected": {"select": "val_real", "epoch": 12, "step": 220, "score": 0.81234},
              "auc": auc, "mean_auc": {k: 0.0 + sum(v.values()) / 4 for k, v in auc.items()}}
    assert ship_fen.options_text(result) == "--input_channel 50 --select val_real --epochs 20"  # as train.py reads
    table = ship_fen.recipe_table([result])
    assert "| cpu_long | `--input_channel 50 --select val_real --epochs 20` | 41.2 | 12 (220) | val_real | 0.8123 | 0.9700 |" \
        in table and "0.9000 / 0.9600" in table
    text = ship_fen.card("mine", result, "ab" * 32)
    assert "`python test.py --weights mine --input_channel 50`" in text and "It beats the authors' release" in text
    assert "| **mean** | **0.9000** | **0.9600** | **0.9700** |" in text
    assert "python benchmarks/abu_transfer.py --recipe long" in text
