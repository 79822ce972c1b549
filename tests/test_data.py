"""Preprocessing, the scene and HAD100 readers, the synthetic set, and their errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from conftest import RELEASE_KEYS, interrupt_after_open
from PIL import Image

from data.had100 import read_had100
from data.preprocess import DataError, preprocess
from data.scene import read_scene
from data.synthetic import ensure_synthetic, generate, mask_png
from detectors.rx import grx
from evaluation.metrics import roc_auc


# ---- preprocessing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bands", [50, 100, 200])
def test_preprocess_matches_golden_input(bands, abu_dir, golden):
    """method sec. 5: first B bands, one global min/max, scaled to [-0.1, 0.1], B x H x W float32."""
    scene = read_scene(abu_dir / "abu-airport-1.mat")
    key = RELEASE_KEYS[("had100", bands)]
    x = preprocess(scene.cube[10:42, 20:52], bands)
    assert x.dtype == torch.float32 and x.shape == (bands, 32, 32)
    np.testing.assert_array_equal(x.numpy(), golden[f"{key}/input"])


def test_preprocess_band_window():
    """Bands [start, start + N) only, and min/max taken over those bands alone."""
    cube = np.zeros((1, 2, 6))
    cube[0, 0] = [100, 100, 100, 2, 4, 100]
    cube[0, 1] = [-50, -50, -50, 3, 6, -50]
    x = preprocess(cube, bands=2, start=3)
    assert x.shape == (2, 1, 2)
    # min 2, max 6 over bands 3-4:  ((v - 2) / 4 * 2 - 1) * 0.1
    np.testing.assert_allclose(x[:, 0, :].numpy(), [[-0.1, -0.05], [0.0, 0.1]], atol=1e-7)


@pytest.mark.parametrize("cube,match", [
    (np.ones((4, 4, 5)), "constant"),
    (np.where(np.eye(4)[:, :, None] > 0, np.nan, 1.0) * np.ones((4, 4, 5)), "NaN/Inf"),
    (np.full((4, 4, 5), np.inf), "NaN/Inf"),
    (np.random.default_rng(0).normal(size=(4, 4, 3)), "3 bands, fewer than"),
    (np.zeros((4, 5)), "H x W x B"),
])
def test_preprocess_refuses_bad_cubes(cube, match):
    with pytest.raises(DataError, match=match):
        preprocess(cube, bands=5, name="scene.npy")


# ---- single scenes ---------------------------------------------------------------------------------
def test_read_abu_mat(abu_dir):
    s = read_scene(abu_dir / "abu-airport-1.mat")
    assert s.name == "abu-airport-1" and s.cube.shape == (100, 100, 205) and s.mask.dtype == bool
    assert int(s.mask.sum()) == 144


def _cube(h=6, w=7, b=5, seed=0):
    return np.random.default_rng(seed).integers(0, 1000, size=(h, w, b)).astype(np.int16)


def test_read_mat_v73_via_h5py(tmp_path):
    import h5py

    cube, mask = _cube(), np.eye(6, 7, dtype=np.uint8)
    path = tmp_path / "scene73.mat"
    # as MATLAB's save -v7.3 writes it: a 512-byte text header, then HDF5 with column-major arrays
    with h5py.File(path, "w", userblock_size=512) as fh:
        fh["hsi"] = cube.T
        fh["gt"] = mask.T
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sat Nov 28 2026 HDF5 schema 1.00 .")
    s = read_scene(path)
    np.testing.assert_array_equal(s.cube, cube)
    np.testing.assert_array_equal(s.mask, mask > 0)


def test_read_mat_keys_guessed_and_overridden(tmp_path):
    cube, mask = _cube(), np.eye(6, 7)
    path = tmp_path / "odd.mat"
    scipy.io.savemat(path, {"radiance": cube, "truth": mask, "other": cube[:, :, :2]})
    with pytest.raises(DataError, match=r"cannot tell which key.*radiance \(6, 7, 5\).*data_key=<key>"):
        read_scene(path)
    s = read_scene(path, data_key="radiance", gt_key="truth")
    assert s.cube.shape == (6, 7, 5) and s.mask.sum() == 6
    with pytest.raises(DataError, match="no key data_key='nope'.*radiance"):
        read_scene(path, data_key="nope", gt_key="truth")


def test_read_npy_with_png_mask(tmp_path):
    cube, mask = _cube(), np.zeros((6, 7), bool)
    mask[2, 3] = True
    np.save(tmp_path / "s.npy", cube)
    mask_png(mask).save(tmp_path / "s.png")
    s = read_scene(tmp_path / "s.npy")
    np.testing.assert_array_equal(s.mask, mask)


def test_scene_errors(tmp_path):
    np.save(tmp_path / "lonely.npy", _cube())
    assert read_scene(tmp_path / "lonely.npy").mask is None  # no mask beside it: an unlabelled scene
    np.save(tmp_path / "small.npy", _cube())
    mask_png(np.zeros((5, 7), bool)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="mask is 5 x 7 but the cube is 6 x 7"):
        read_scene(tmp_path / "small.npy")
    with pytest.raises(DataError, match="no such file"):
        read_scene(tmp_path / "missing.mat")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown scene format"):
        read_scene(tmp_path / "x.txt")
    (tmp_path / "bad.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="bad.mat: not a readable .mat"):
        read_scene(tmp_path / "bad.mat")


# ---- HAD100 layout ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_had100(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("had") / "set", n_train=2, n_test=3, size=16, bands=12)


def test_synthetic_layout_and_masks(tiny_had100):
    root = tiny_had100
    assert sorted(p.name for p in (root / "test" / "aviris_ng").iterdir())[0] == "synthetic_test_0000.npy"
    assert len(list((root / "train" / "aviris_ng").glob("*.npy"))) == 2
    png = np.asarray(Image.open(root / "ground_truth" / "aviris_ng" / "synthetic_test_0000.png"))
    assert png.shape == (16, 16, 3) and png.dtype == np.uint8
    scenes = read_had100(root)
    assert [s.cube.shape for s in scenes] == [(16, 16, 12)] * 3
    assert all(s.mask.any() and not s.mask.all() for s in scenes)


def test_synthetic_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", n_train=1, n_test=1, size=16, bands=8)
    b = generate(tmp_path / "b", n_train=1, n_test=1, size=16, bands=8)
    for rel in ("test/aviris_ng/synthetic_test_0000.npy", "train/aviris_ng/synthetic_train_0000.npy"):
        np.testing.assert_array_equal(np.load(a / rel), np.load(b / rel))


def test_default_synthetic_set_is_hard_for_grx():
    """The embedded default: HAD100 shapes, and GRX is clearly imperfect on it (mean AUC well below 1)."""
    scenes = read_had100(ensure_synthetic())
    assert len(scenes) == 10 and scenes[0].cube.shape == (64, 64, 276)
    aucs = [roc_auc(grx(preprocess(s.cube, 50), layout="bhw").numpy(), s.mask) for s in scenes]
    assert 0.6 < np.mean(aucs) < 0.95


def test_had100_errors(tmp_path, tiny_had100):
    import shutil

    with pytest.raises(DataError, match="dataset folder not found"):
        read_had100(tmp_path / "nowhere")
    (tmp_path / "empty" / "test" / "aviris_ng").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no .npy files"):
        read_had100(tmp_path / "empty")
    root = tmp_path / "copy"
    shutil.copytree(tiny_had100, root)
    (root / "ground_truth" / "aviris_ng" / "synthetic_test_0001.png").unlink()
    with pytest.raises(DataError, match="synthetic_test_0001.npy: no ground-truth mask"):
        read_had100(root)
    mask_png(np.zeros((16, 16), bool)).save(root / "ground_truth" / "aviris_ng" / "synthetic_test_0001.png")
    mask_png(np.zeros((16, 16), bool)).save(root / "ground_truth" / "aviris_ng" / "stray.png")
    with pytest.raises(DataError, match="mask\\(s\\) without a test cube: stray"):
        read_had100(root)


def test_atomic_writes_leave_no_temp_and_normal_permissions(tmp_path):
    import os

    from utils.io import save_json

    save_json({"a": 1}, tmp_path / "x.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_ctrl_c_the_moment_the_temporary_exists_leaves_nothing_behind(tmp_path, monkeypatch):
    """A SIGINT that the OS hands to another thread is not held back by the main thread's signal mask: the
    KeyboardInterrupt can land right after the temporary file is created, before its creator returns."""
    from utils.io import save_json

    (tmp_path / "x.json").write_text("old")
    interrupt_after_open(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save_json({"a": 1}, tmp_path / "x.json")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"] and (tmp_path / "x.json").read_text() == "old"
