"""benchmarks/studies/val_study.py: the rank correlations it reports, and the runs it builds (no training here)."""
from __future__ import annotations

from pathlib import Path

import pytest

import train
from benchmarks.studies import val_study
from conftest import REPO
from benchmarks.studies.abu_transfer import TEST, TRAIN


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
    assert "val_scene" not in c  # runs from before the validation scene's own AUC was logged


def test_val_scene_signal_is_the_validation_scenes_own_auc():
    fold = val_study.FOLDS[2]
    held = [0.90, 0.92, 0.91, 0.95]
    rows = _rows(held, airports=held, val=held, val_real=held, loss=[1.0, 0.9, 0.8, 0.7])
    for r, a in zip(rows, [0.5, 0.7, 0.6, 0.4]):
        r.update({f"test:{n}": str(h) for n, h in zip(fold, [float(r["test:x"])] * 2)})
        r[f"test:{val_study.val_scene(fold)}"] = str(a)
    c = val_study.correlations(rows, fold)["candidates"]["val_scene"]
    assert c["values"] == [0.5, 0.7, 0.6, 0.4] and c["rho_held_out"] == pytest.approx(-0.2)


def test_each_fold_trains_on_the_rest_and_tests_on_its_pair_and_the_airports():
    held_everywhere = [n for fold in val_study.FOLDS for n in fold]
    assert sorted(held_everywhere) == sorted(TRAIN)  # every training scene held out once
    args = val_study.parse_args(["--fold", "1", "--epochs", "3"])
    argv = val_study.train_argv(args, val_study.FOLDS[1], args.out / "f")
    parsed = train.parse_args(argv)
    trained = [p.stem for p in parsed.train_scenes]
    assert set(trained) == set(TRAIN) - set(val_study.FOLDS[1])
    val = val_study.val_scene(val_study.FOLDS[1])
    assert val in TRAIN and val not in val_study.FOLDS[1]
    assert [p.stem for p in parsed.test_scenes] == [*val_study.FOLDS[1], val, *TEST]
    assert parsed.select == "val_real" and parsed.epochs == 3


def test_ship_fen_table_and_card_from_a_recipe_result(tmp_path):
    from benchmarks.studies import ship_fen

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
    assert "`python test.py --weights mine --input_channel 50`" in text and "Its mean is above the authors' release's" in text
    assert "| **mean** | **0.9000** | **0.9600** | **0.9700** |" in text
    assert "python benchmarks/studies/abu_transfer.py --recipe long\n" in text
    assert "## Terms" in text and "wide_resnet101_2" in text and "LICENSE" in text
    seeded = ship_fen.card("mine", {**result, "seed": 11}, "ab" * 32)
    assert "abu_transfer.py --recipe long --seed 11\n" in seeded and "--recipe cpu_long_seed11" in seeded


def test_abu_transfer_seed_names_the_run_unless_it_is_the_recorded_seed():
    from benchmarks.studies import abu_transfer, ship_fen

    for argv, tag in [(["--recipe", "long"], "cpu_long"), (["--recipe", "long", "--seed", "11"], "cpu_long_seed11"),
                      (["--seed", "12"], "cpu_seed12")]:
        args = abu_transfer.parse_args(argv)
        assert abu_transfer.run_tag(args) == tag
        options = abu_transfer.train_argv(args, Path("x"))
        assert options[options.index("--seed") + 1] == str(args.seed)
        assert ship_fen.tag_of({"setting": args.setting, "recipe": args.recipe, "seed": args.seed}) == tag
    assert ship_fen.tag_of({"setting": "cpu", "recipe": "long"}) == "cpu_long"   # JSON written before --seed


def _result(fold, recipe, val_real, held):
    return {"fold": fold, "recipe": recipe, "held_out_mAUC": held, "airport_mAUC": [0.9] * len(held),
            "candidates": {"val_real": {"values": val_real}}}


def test_family_table_compares_recipes_at_their_kept_epochs_on_shared_folds_against_the_release():
    results = [_result(0, "scratch", [0.1, 0.3, 0.2], [0.90, 0.94, 0.99]),  # kept: epoch 2 -> 0.94
               _result(0, "finetune", [0.5, 0.4], [0.95, 0.80]),  # kept: epoch 1 -> 0.95
               _result(1, "scratch", [0.2, 0.2], [0.80, 0.70]),  # ties keep the first: 0.80
               _result(1, "finetune", [0.1, 0.9], [0.60, 0.81]),  # 0.81
               _result(2, "scratch", [0.1], [0.99])]  # fold 2 has no finetune run: left out
    table = val_study.family_table(results, {0: 0.96, 1: 0.70, 2: 0.5})
    assert "folds 0, 1 |" in table
    assert "| finetune | 0.9500 / 0.8100 | 0.8800 |" in table and "| scratch | 0.9400 / 0.8000 | 0.8700 |" in table
    assert "| release (no training) | 0.9600 / 0.7000 | 0.8300 |" in table
    assert table.endswith("Chosen family: finetune (0.8800, above the release's 0.8300 on the same folds).")
    beaten = val_study.family_table(results, {0: 0.99, 1: 0.99})
    assert "not above the release's 0.9900" in beaten


def test_report_means_each_candidate_per_recipe_and_over_all_runs():
    def run(fold, recipe, rho):
        c = {"rho_held_out": rho, "p_held_out": 0.5, "rho_airports": -rho, "p_airports": 0.5, "values": [0.5, 0.6]}
        return {**_result(fold, recipe, [0.5, 0.6], [0.9, 0.95]), "held_out": ["a", "b"], "epochs": 2,
                "candidates": {"val_real": c}}

    text = val_study.report([run(0, "scratch", 0.8), run(0, "finetune", -0.2), run(1, "scratch", 0.4)])
    assert "| mean, scratch | | | 2 runs | val_real | +0.60 | -0.60 |" in text
    assert "| mean, finetune | | | 1 runs | val_real | -0.20 | +0.20 |" in text
    assert "| mean, all | | | 3 runs | val_real | +0.33 | -0.33 |" in text


def test_seed_spread_pairs_and_the_shipping_rule():
    from benchmarks.studies import seed_spread

    got = seed_spread.paired([0.95, 0.97, 0.96, 0.99, 0.985], [0.94, 0.95, 0.965, 0.96, 0.945])
    assert (got["pairs"], got["wins"], got["losses"]) == (5, 4, 1) and got["mean_diff"] == pytest.approx(0.019)
    # one loss, the smallest difference: sign test 2 * 6/32; Wilcoxon (exact) 2 * P(W- <= 1) = 2 * 2/32
    assert got["sign_p"] == pytest.approx(0.375) and got["wilcoxon_p"] == pytest.approx(0.125)
    assert seed_spread.ship_seed({10: 0.04, 11: 0.05, 12: 0.03}) == 11
    assert seed_spread.ship_seed({10: 0.05, 11: 0.05, 12: 0.03}) == 10   # a tie keeps the shipped seed
    assert seed_spread.ship_seed({10: 0.06, 11: 0.05}) == 10


def test_seed_spread_on_abu10_gives_its_model_card_and_its_validation(abu_dir, release_dir, capsys):
    """The shipped seed's row (seed 11, by docs/training.md sec. 5's rule): the model card's airport AUCs, its
    held-out scene, and train.py's GRX val_real baseline (0.8370, its first log line) rebuilt from the seed alone."""
    from benchmarks.studies import seed_spread

    assert seed_spread.main([str(REPO / "weights" / "shipped" / "abu10-50bands.pt"), "--abu", str(abu_dir),
                             "--weights_dir", str(release_dir)]) == 0
    out = capsys.readouterr().out
    assert "| 11 | hydice | 9 (171) | 0.8370 -> 0.9481 (+0.1111; here 0.948" in out
    assert "| 0.9445 | 0.9776 | 0.9642 | 0.9738 | 0.9650 |" in out and "| 0.9456 | 0.9759 | 0.9661 | 0.9721 | 0.9649 |" in out
    assert "over 1 seed: airport mAUC 0.9650 +- n/a" in out and "-> ship seed 11" in out
