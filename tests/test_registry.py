"""A new detector is one file and one registry line: a toy detector, written to a temporary module and
registered from there, runs through test.py with its own flag, in strips the planner chooses, and lands in
the maps and the AUC table like the detectors the project ships. Every list of detector names comes from the
registry (test.py's --help, README's detector list)."""
from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, table_lines
from helpers import pipeline_on

from data.synthetic import mask_png
from detectors.registry import DETECTORS, DetectorOptions, detector_names
from pipeline.plan import plan_scene
from pipeline.sources import SceneCube
from utils.settings import SettingsError

TOY_MODULE = '''
import torch

from detectors.base import CubeReader, Detector, Option, Shape, score_in_strips
from detectors.registry import register


class ToyDetector(Detector):
    """Distance to the scene mean, raised to a power; in strips of rows (no context needed)."""

    name = "TOY"
    options = (Option("toy_power", int, 2, "TOY: the power of the distance", least=1),)
    in_strips = True

    def memory_bytes(self, shape: Shape, options, device="cpu") -> int:
        return 8 * shape[0] * shape[1] * shape[2]

    def strip_bytes(self, shape: Shape, strip: int, options, device="cpu") -> int:
        return 10**7 * max(strip, 1)  # dear rows: the planner must cut a small scene into strips

    def score_reader(self, reader: CubeReader, strip: int, options) -> torch.Tensor:
        h, w, b = reader.shape
        mean = reader.pixels(0, h * w).mean(0).to(torch.float32)
        power = options.toy_power
        return score_in_strips(reader, strip, 0, False, lambda win: (
            ((win - mean) ** 2).sum(-1).to(torch.float64) ** (power / 2)))


TOY = register(ToyDetector())
'''


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy_detector.py"
    path.write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location("toy_detector", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.TOY
    DETECTORS.pop("TOY", None)
    sys.modules.pop("toy_detector", None)


def scene_files(folder, h=24, w=20, b=12):
    rng = np.random.default_rng(3)
    cube = rng.normal(100, 5, (h, w, b)).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[5:7, 4:6] = True
    cube[mask] += 40
    np.save(folder / "toy.npy", cube)
    mask_png(mask).save(folder / "toy.png")
    return folder / "toy.npy", cube, mask


def test_a_registered_detector_runs_through_test_py(toy, test_cli, tmp_path, capsys):
    path, cube, mask = scene_files(tmp_path)
    assert "TOY" in detector_names() and "FEN+TOY" in detector_names()
    out = tmp_path / "out"
    rc = test_cli.main(["--scenes", str(path), "--input_channel", "12", "--detectors", "TOY", "GRX",
                        "--toy_power", "1", "--save_dir", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    header = table_lines(out / "auc.csv")[0]
    assert "TOY" in header and "GRX" in header
    maps = np.load(out / "scores" / "toy.npz")
    x = 0.2 * (cube - cube.min()) / (cube.max() - cube.min()) - 0.1  # preprocess: min-max to [-0.1, 0.1]
    want = np.sqrt(((x - x.reshape(-1, 12).mean(0)) ** 2).sum(-1))
    np.testing.assert_allclose(maps["TOY"], want, rtol=1e-4, atol=1e-6)
    assert re.search(r"^toy\s+1\.0000", printed, re.M)  # the implanted block is the farthest from the mean


def test_the_planner_cuts_a_registered_detector_into_strips(toy):
    cube = np.random.default_rng(3).normal(100, 5, (24, 20, 12)).astype(np.float32)
    plan = plan_scene(cube.shape, ["TOY"], DetectorOptions(), budget=10**8)
    assert 1 <= plan.strips["TOY"] < cube.shape[0]  # from the object's strip_bytes alone
    source = SceneCube(cube, 12, 0, "toy")
    source.check()
    tiled = next(iter(pipeline_on(plan, ["TOY"], None, DetectorOptions(toy_power=3), torch.device("cpu"))
                      .run([source]))).maps["TOY"]
    x = 0.2 * (cube - cube.min()) / (cube.max() - cube.min()) - 0.1
    np.testing.assert_allclose(tiled, np.sqrt(((x - x.reshape(-1, 12).mean(0)) ** 2).sum(-1)) ** 3, rtol=1e-4)


def test_a_registered_detector_option_is_checked_as_a_flag(toy, test_cli, tmp_path, capsys):
    path, _, _ = scene_files(tmp_path)
    assert test_cli.main(["--scenes", str(path), "--detectors", "TOY", "--toy_power", "0"]) == 2
    assert capsys.readouterr().err.strip() == "test.py: error: --toy_power 0: must be 1 or more"
    with pytest.raises(SettingsError, match="toy_power=0: must be 1 or more"):
        DetectorOptions(toy_power=0)


def test_after_removal_the_option_is_gone(toy):
    DETECTORS.pop("TOY")
    with pytest.raises(SettingsError, match="toy_power=2: no detector has this option"):
        DetectorOptions(toy_power=2)


def test_every_registered_detector_is_in_readme_and_help(test_cli):
    readme = (REPO / "README.md").read_text()
    help_text = test_cli.build_parser().format_help()
    for name in DETECTORS:
        assert f"`{name}`" in readme or f" {name} " in readme, f"README does not name detector {name}"
        assert name in help_text
        for o in DETECTORS[name].options:
            assert f"--{o.name}" in help_text and f"`--{o.name}" in readme, f"--{o.name} missing"
