"""Pictures (evaluation/plots.py) and test.py with the local detectors: --plots, the 3D-ROC outputs, the
detector options and their errors, and the up-front memory refusal."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from data.synthetic import generate
from evaluation.plots import display_scale, false_colour
from conftest import table_lines
from helpers import plot_scene


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("plots") / "had", n_train=0, n_test=2, size=24, bands=60)


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    cube = rng.normal(size=(20, 24, 12))
    mask = np.zeros((20, 24), bool)
    mask[5:7, 9:11] = True
    maps = {"GRX": rng.random((20, 24)), "FEN+GRX": rng.random((20, 24)) + 2 * mask}
    return cube, mask, maps


def test_plot_scene_writes_two_pngs(tmp_path):
    cube, mask, maps = _scene()
    paths = plot_scene(tmp_path / "plots", "demo", cube, mask, maps, {"GRX": 0.51, "FEN+GRX": 1.0})
    assert [p.name for p in paths] == ["demo_maps.png", "demo_roc.png"]
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 200
    assert sorted(x.name for x in (tmp_path / "plots").iterdir()) == ["demo_maps.png", "demo_roc.png"]  # no temp


def test_undefined_roc_still_draws(tmp_path):
    cube, mask, maps = _scene()
    path = plot_scene(tmp_path, "empty", cube, np.zeros_like(mask), maps, {"GRX": None, "FEN+GRX": None})[1]
    assert Image.open(path).format == "PNG"


def test_false_colour_and_display_scale():
    cube, _, _ = _scene()
    rgb = false_colour(cube)
    assert rgb.shape == (20, 24, 3) and rgb.min() >= 0 and rgb.max() <= 1
    s = np.arange(1000.0)
    s[-1] = 1e9  # one extreme pixel must not flatten the rest
    shown = display_scale(s)
    assert shown[0] == 0 and shown[-1] == 1 and 0.4 < shown[500] < 0.6


def test_cli_local_detectors_plots_and_3d_roc(test_cli, tiny_set, tmp_path, capsys):
    save = tmp_path / "res"
    rc = test_cli.main(["--data_path", str(tiny_set), "--input_channel", "50", "--detectors", "GRX", "SLRX", "LRX",
                        "--block_size", "4", "--lrx_inner", "3", "--lrx_outer", "9", "--plots",
                        "--save_dir", str(save), "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "AUC SLRX" in out and "AUC LRX" in out and "3D-ROC" in out and "aSNPR dB" in out
    res = json.loads((tmp_path / "r.json").read_text())
    first = res["scenes"][0]
    assert set(first["roc3d"]) == {"GRX", "SLRX", "LRX"}
    assert first["roc3d"]["LRX"]["auc_pd_pf"] == pytest.approx(first["auc"]["LRX"])
    assert res["config"]["block_size"] == 4 and res["config"]["lrx_outer"] == 9
    assert table_lines(save / "auc.csv")[0] == \
        "scene,auc_GRX,auc_SLRX,auc_LRX,seconds_GRX,seconds_SLRX,seconds_LRX"
    assert len(table_lines(save / "roc3d.csv")) == 1 + 2 * 3
    pngs = sorted(p.name for p in (save / "plots").iterdir())
    assert pngs == ["mean_boxes.png"] + [f"synthetic_test_000{i}_{kind}.png" for i in (0, 1)
                                         for kind in ("boxes", "maps", "roc", "roc3d")]
    from matplotlib.image import imread

    for name in pngs:  # real pictures: readable, of a sensible size
        assert (save / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert min(imread(save / "plots" / name).shape[:2]) > 200


@pytest.mark.parametrize("args,message", [
    (["--detectors", "SLRX", "--block_num", "30"],
     "SLRX: --block_num 30 gives a block size of 50 // 30 = 1 px (quirk 6: from the 50 bands) and on a 24 x 24 "
     "scene blocks of 1 x 1 pixel"),
    (["--detectors", "LRX", "--lrx_outer", "31"], "LRX outer window --lrx_outer 31 is larger than the 24 x 24 scene: "
                                                   "use --lrx_outer 23 or less"),
])
def test_cli_bad_detector_options(args, message, test_cli, tiny_set, tmp_path, capsys):
    rc = test_cli.main(["--data_path", str(tiny_set), "--input_channel", "50", "--save_dir", str(tmp_path),
                        "--no-progress"] + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("test.py: error: ") and message in err[-1]
    assert not (tmp_path / "auc.csv").exists()  # refused before any work


def test_cli_refuses_a_scene_too_big_for_memory(test_cli, tiny_set, tmp_path, monkeypatch, capsys):
    import pipeline.plan as plan

    monkeypatch.setattr(plan, "available_memory", lambda device="cpu": 1 << 20)  # 1 MiB left
    rc = test_cli.main(["--data_path", str(tiny_set), "--input_channel", "50", "--detectors", "LRX",
                        "--save_dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert "detector LRX needs about" in err[-1] and "MiB for a 24 x 24 x 50 cube but only 1 MiB is available on cpu" in err[-1]
    assert not (tmp_path / "auc.csv").exists()


def test_memory_estimates_grow_with_the_scene():
    from detectors.registry import DetectorOptions, memory_estimate
    from pipeline.plan import check_memory

    opts = DetectorOptions()
    for name in ("GRX", "SLRX", "LRX", "FEN+SLRX"):
        small = memory_estimate(name, (100, 100, 200), opts)
        assert 0 < small < memory_estimate(name, (400, 400, 200), opts)
    assert memory_estimate("FEN+LRX", (100, 100, 200), opts) > memory_estimate("LRX", (100, 100, 200), opts)
    assert check_memory("SLRX", (100, 100, 200), opts) == memory_estimate("SLRX", (100, 100, 200), opts)
