"""Meaningless AUCs said so (issue 21 item 5): a score map constant to within rounding, or a scene with no
more pixels than bands (a singular covariance by construction), gets one warning line under the table; the
AUC stays as computed."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from data.synthetic import mask_png
from evaluation.report import SceneResult, degenerate_warning, format_table, is_flat, to_json


@given(level=st.floats(-1e6, 1e6, allow_nan=False).filter(lambda v: abs(v) > 1e-3),
       rel=st.floats(0, 5e-7), seed=st.integers(0, 100))
def test_maps_within_rounding_of_a_constant_are_flat(level, rel, seed):
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, (6, 7))
    assert is_flat(level + level * rel * noise)


@given(spread=st.floats(1e-4, 10), level=st.floats(-100, 100), seed=st.integers(0, 100))
def test_maps_with_a_real_spread_are_not_flat(spread, level, seed):
    scores = level + np.random.default_rng(seed).uniform(0, 1, (6, 7))
    scores.flat[0], scores.flat[1] = level, level + spread * max(1.0, abs(level))
    assert not is_flat(scores)


def test_warning_text_and_table_line():
    grx = np.full((5, 5), 23.04) + np.linspace(0, 1e-12, 25).reshape(5, 5)
    fen = np.full((5, 5), 1.5, np.float32)
    warning = degenerate_warning({"GRX": grx, "FEN+GRX": fen}, 50)
    assert warning == ("25 pixels for 50 bands: the covariance is singular by construction; GRX, FEN+GRX score "
                       "maps constant to within rounding")
    assert degenerate_warning({"GRX": np.arange(25.0).reshape(5, 5)}, 20) is None
    assert degenerate_warning({"GRX": np.arange(25.0).reshape(5, 5)}, 25).startswith("25 pixels for 25 bands")
    ok = SceneResult("fine", auc={"GRX": 0.9}, seconds={"GRX": 0.1})
    bad = SceneResult("tiny", auc={"GRX": 0.25}, seconds={"GRX": 0.1}, warning=warning)
    lines = format_table([ok, bad], ["GRX"]).splitlines()
    assert "0.2500" in lines[3] and lines[-1] == f"warning: AUCs without meaning (shown as computed): tiny ({warning})"
    assert "warning" not in format_table([ok], ["GRX"])
    assert to_json([ok, bad], ["GRX"])["scenes"][1]["warning"] == warning


def test_test_py_warns_under_the_table_for_a_scene_of_fewer_pixels_than_bands(test_cli, tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "tiny.npy", rng.normal(100, 5, (5, 5, 50)).astype(np.float32))
    np.save(tmp_path / "fine.npy", rng.normal(100, 5, (12, 12, 6)).astype(np.float32))
    mask = np.zeros((5, 5), bool)
    mask[1, 2] = True
    mask_png(mask).save(tmp_path / "tiny.png")
    mask_png(np.pad(mask, ((0, 7), (0, 7)))).save(tmp_path / "fine.png")
    common = ["--detectors", "GRX", "--no-progress", "--save_dir", str(tmp_path / "r")]
    assert test_cli.main(["--scenes", str(tmp_path / "tiny.npy"), "--input_channel", "50", *common]) == 0
    out = capsys.readouterr().out.splitlines()
    table_end = out.index("") if "" in out else len(out)
    assert out[table_end - 1] == ("warning: AUCs without meaning (shown as computed): tiny (25 pixels for 50 bands: "
                                  "the covariance is singular by construction; GRX score map constant to within "
                                  "rounding)")
    assert test_cli.main(["--scenes", str(tmp_path / "fine.npy"), "--input_channel", "6", *common]) == 0
    assert "warning" not in capsys.readouterr().out
