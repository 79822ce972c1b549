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
