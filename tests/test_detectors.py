"""One object per detector (detectors/base.py, registry.py): the path test.py runs is the path tests run, no
code outside a detector's file and the registry names a detector, and CRD (added as one file and one registry
line) matches the per-pixel definition through test.py itself."""
from __future__ import annotations

import ast

import numpy as np
import pytest
import torch
from conftest import REPO
from helpers import base_detector, pipeline_on

from data.preprocess import preprocess
from data.scene import read_scene
from detectors.crd import crd
from detectors.lrx import lrx
from detectors.reference import crd_per_pixel
from detectors.registry import DETECTORS, FEN_PREFIX, DetectorOptions
from detectors.rx import grx
from detectors.slrx import slrx
from evaluation.metrics import roc_auc
from pipeline.plan import TilePlan
from pipeline.sources import SceneCube

NAMES = {n for base in DETECTORS for n in (base, FEN_PREFIX + base)}
OPTIONS = DetectorOptions(block_size=4, lrx_inner=3, lrx_outer=9, crd_inner=1, crd_outer=5)
FUNCTIONS = {"GRX": lambda c: grx(c, layout="bhw"), "SLRX": lambda c: slrx(c, block_size=4, layout="bhw"),
             "LRX": lambda c: lrx(c, 3, 9, layout="bhw"), "CRD": lambda c: crd(c, 1, 5, layout="bhw")}


def name_constants(path) -> list[tuple[int, str]]:
    """String constants of ``path`` that are a detector's name (``"LRX"``, ``"FEN+CRD"``): comparisons, keys."""
    return [(n.lineno, n.value) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and n.value in NAMES]


@pytest.mark.parametrize("place", ["pipeline", "evaluation", "test.py"])
def test_no_code_outside_the_detectors_names_one(place):
    paths = [REPO / place] if place.endswith(".py") else sorted((REPO / place).glob("*.py"))
    found = [f"{p.relative_to(REPO)}:{line}: {name!r}" for p in paths for line, name in name_constants(p)]
    assert not found, "detector names outside detectors/: " + ", ".join(found)


def test_every_detector_is_registered_by_its_own_name():
    assert list(DETECTORS) == ["GRX", "SLRX", "LRX", "CRD"]
    assert all(name == det.name for name, det in DETECTORS.items())


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_the_object_test_py_runs_gives_the_module_function(name):
    """base_detector (the tests' way in) is the object's score, through a reader as in pipeline/: the same
    numbers as the detector's plain function."""
    cube = torch.from_numpy(np.random.default_rng(3).random((7, 22, 19), dtype=np.float32))
    got = base_detector(name, OPTIONS)(cube)
    assert torch.equal(got, DETECTORS[name].score(cube, OPTIONS))
    torch.testing.assert_close(got, FUNCTIONS[name](cube), rtol=1e-12, atol=0)


@pytest.mark.parametrize("border,sum_to_one", [("periodic", True), ("mirror", False)])
def test_crd_in_strips_equals_crd_whole(abu_dir, border, sum_to_one):
    """CRD through the pipeline in strips of 7 rows with periodic or mirrored context, from a file-backed cube,
    against the whole cube at once."""
    scene = read_scene(abu_dir / "abu-airport-2.mat")
    cube = np.ascontiguousarray(scene.cube[20:60, 10:46, :12])
    source = SceneCube(cube, 12, 0, "crop")
    source.check()
    options = DetectorOptions(crd_inner=3, crd_outer=7, crd_border=border, crd_sum_to_one=sum_to_one)
    plan = TilePlan(0, False, False, 0, 0, strips={"CRD": 7})
    strips = next(pipeline_on(plan, ["CRD"], None, options, torch.device("cpu")).run([source])).maps["CRD"]
    whole = crd(preprocess(cube, 12), 3, 7, border=border, sum_to_one=sum_to_one, layout="bhw").numpy()
    np.testing.assert_allclose(strips, whole, rtol=1e-12, atol=0)


def test_crd_through_test_py_matches_the_per_pixel_definition(test_cli, abu_dir, release_dir, tmp_path, capsys):
    """The issue's command; the saved CRD map against detectors.reference.crd_per_pixel (the formula pixel by
    pixel, periodic borders by index) on the whole scene."""
    scene_path = abu_dir / "abu-airport-1.mat"
    assert test_cli.main(["--scenes", str(scene_path), "--input_channel", "50", "--detectors", "CRD", "FEN+CRD",
                          "--crd_inner", "3", "--crd_outer", "11", "--crd_lambda", "1e-6", "--no-progress",
                          "--weights_dir", str(release_dir), "--save_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("abu-airport-1"))
    auc_crd, auc_fen_crd = map(float, row.split()[1:3])
    saved = np.load(tmp_path / "scores" / "abu-airport-1.npz")
    scene = read_scene(scene_path)
    oracle = crd_per_pixel(preprocess(scene.cube, 50).numpy().astype(np.float64), 3, 11, 1e-6)
    # the oracle's N x N normal equations are nearly singular at lam 1e-6: on a crop of this scene it is 6e-6
    # off a 50-digit solution, the detector 3e-7 (tests/test_crd.py). Agreement to 1e-6 of the peak (seen:
    # 19 of 10000 pixels beyond 1e-7, at most 2.6e-9 apart), and the same AUC
    np.testing.assert_allclose(saved["CRD"], oracle, rtol=1e-6, atol=1e-6 * np.abs(oracle).max())
    assert auc_crd == round(roc_auc(oracle, scene.mask), 4) and auc_fen_crd > auc_crd


def test_func_crd_through_test_py(test_cli, abu_dir, release_dir, tmp_path, capsys):
    """Issue 34's command, mirrored borders and no row of ones (func_CRD.m), FEN+CRD with the same options: the
    AUC (tests/test_crd.py), and the saved map against the per-pixel oracle on its first 12 rows (those with
    mirrored context, the copies of a pixel in its own background included)."""
    from test_crd import AIRPORT_1_FUNC_CRD_AUC

    scene_path = abu_dir / "abu-airport-1.mat"
    assert test_cli.main(["--scenes", str(scene_path), "--input_channel", "50", "--detectors", "CRD", "FEN+CRD",
                          "--crd_border", "mirror", "--no-crd_sum_to_one", "--no-progress",
                          "--weights_dir", str(release_dir), "--save_dir", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("abu-airport-1"))
    auc_crd, auc_fen_crd = map(float, row.split()[1:3])
    saved = np.load(tmp_path / "scores" / "abu-airport-1.npz")
    scene = read_scene(scene_path)
    x = preprocess(scene.cube, 50)
    oracle = crd_per_pixel(x.numpy().astype(np.float64), rows=12, border="mirror", sum_to_one=False)[:12]
    # the detector is 1e-5 off at worst here, the oracle 1e-8 (tests/test_crd.py, the crop test)
    np.testing.assert_allclose(saved["CRD"][:12], oracle, rtol=1e-4, atol=1e-5 * np.abs(oracle).max())
    assert auc_crd == AIRPORT_1_FUNC_CRD_AUC
    # FEN+CRD took the same options: func_CRD.m's CRD of x + FEN(x), not the periodic one
    from weights.release import load_fen

    with torch.no_grad():
        enhanced = load_fen("had100", 50, release_dir).enhance(x, normalize=False, layout="bhw")
    mirror = crd(enhanced, border="mirror", sum_to_one=False, layout="bhw").numpy()
    periodic = crd(enhanced, layout="bhw").numpy()
    peak = saved["FEN+CRD"].max()
    # the pipeline's FEN runs apart from this one (float32 rounding), which CRD's ill-conditioned systems amplify
    np.testing.assert_allclose(saved["FEN+CRD"], mirror, rtol=0, atol=1e-3 * peak)
    assert auc_fen_crd == round(roc_auc(mirror, scene.mask), 4)
    assert np.abs(saved["FEN+CRD"] - periodic).max() > 1e-2 * peak


@pytest.mark.parametrize("flags, says", [
    (["--crd_border", "wrap"], "argument --crd_border: invalid choice: 'wrap'"),
    (["--crd_inner", "4"], "--crd_inner 4: windows must be odd"),
    (["--crd_outer", "101"], "--crd_outer 101 is larger than the 100 x 100 scene: use --crd_outer 99 or less"),
    (["--crd_inner", "11", "--crd_outer", "11"], "--crd_inner 11 must be smaller than --crd_outer 11"),
    (["--crd_lambda", "-1"], "--crd_lambda -1.0"),
])
def test_crd_options_are_one_line_naming_the_flag(test_cli, abu_dir, tmp_path, capsys, flags, says):
    code = test_cli.main(["--scenes", str(abu_dir / "abu-airport-1.mat"), "--input_channel", "10", "--detectors",
                          "CRD", "--no-progress", "--save_dir", str(tmp_path), *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0], lines
