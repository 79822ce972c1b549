"""Validation scenes with real anomaly spectra implanted (train.py --select val_real, data/patches.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from conftest import examples, table_lines
from test_train import write_scene

from data.patches import (REAL_FILL, REAL_MAX_PIXELS, REAL_TARGETS, anomaly_pool, implant_real_anomalies,
                          make_real_val_scenes_from, target_pixels)
from data.preprocess import DataError
from data.scene import Scene


def _scene(rng: np.random.Generator, anomalies: dict[tuple[int, int], np.ndarray], shape=(12, 14, 6),
           loc=50.0, scale=2.0) -> Scene:
    cube = rng.normal(loc, scale, size=shape)
    mask = np.zeros(shape[:2], bool)
    for (r, c), spectrum in anomalies.items():
        cube[r, c] = spectrum
        mask[r, c] = True
    return Scene("s", cube, mask)


def test_pool_is_standard_scores_against_the_scenes_own_background():
    rng = np.random.default_rng(0)
    s = _scene(rng, {(3, 4): np.array([60.0, 44.0, 50.0, 52.0, 61.0, 48.0])})
    bg = s.cube[~s.mask]  # the moments are the background's: the labelled pixel is left out
    z = anomaly_pool([s], bands=4, start=1)
    assert z.shape == (1, 4)
    np.testing.assert_allclose(z[0], (s.cube[3, 4, 1:5] - bg[:, 1:5].mean(0)) / bg[:, 1:5].std(0), rtol=1e-12)
    # a scene without labels (or all labels) adds nothing
    assert anomaly_pool([_scene(rng, {})], 4, 1).shape == (0, 4)


@examples(25)
@given(seed=st.integers(0, 2**31), start=st.integers(0, 2), h=st.integers(3, 20), w=st.integers(3, 20))
def test_implants_touch_only_the_mask_and_the_bands_used(seed, start, h, w):
    rng = np.random.default_rng(seed)
    cube = rng.normal(10, 1, size=(h, w, 7)).astype(np.float32)
    pool = rng.normal(0, 4, size=(5, 4))
    out, mask = implant_real_anomalies(cube, pool, start, np.random.default_rng(seed))
    assert out.dtype == np.float32 and out.shape == cube.shape
    assert 1 <= mask.sum() <= (REAL_TARGETS[1] - 1) * REAL_MAX_PIXELS
    np.testing.assert_array_equal(out[~mask], cube[~mask])  # background pixels bit for bit
    used = slice(start, start + 4)
    np.testing.assert_array_equal(np.delete(out, np.s_[used], axis=2), np.delete(cube, np.s_[used], axis=2))
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())  # away from the border


def test_an_implant_is_the_mixture_of_the_pixel_and_the_transferred_spectrum():
    """One pool spectrum: every implanted pixel is (1 - a) x + a t, t = mean + z std of the background."""
    rng = np.random.default_rng(3)
    cube = rng.normal(20, 3, size=(16, 16, 5))
    z = np.array([[4.0, -3.0, 2.0, 6.0, -5.0]])
    out, mask = implant_real_anomalies(cube, z, 0, np.random.default_rng(7))
    t = cube.reshape(-1, 5).mean(0) + z[0] * cube.reshape(-1, 5).std(0)
    for r, c in zip(*np.nonzero(mask)):
        a = (out[r, c] - cube[r, c]) / (t - cube[r, c])  # the same abundance in every band
        np.testing.assert_allclose(a, a[0], rtol=1e-5)
        assert REAL_FILL[0] - 1e-6 <= a[0] <= REAL_FILL[1] + 1e-6


@given(seed=st.integers(0, 2**31), h=st.integers(3, 30), w=st.integers(3, 30))
def test_targets_are_small_connected_and_inside(seed, h, w):
    px = target_pixels(h, w, np.random.default_rng(seed))
    assert 1 <= len(px) <= REAL_MAX_PIXELS and len(set(px)) == len(px)
    assert all(1 <= r <= max(1, h - 2) and 1 <= c <= max(1, w - 2) for r, c in px)
    assert all(min(abs(r - r2) + abs(c - c2) for r2, c2 in px[:i]) == 1 for i, (r, c) in enumerate(px) if i)


def test_real_val_scenes_are_the_clean_tiles_and_need_spectra():
    rng = np.random.default_rng(1)
    s = _scene(rng, {(2, 2): np.full(6, 90.0)}, shape=(16, 16, 6))
    pool = anomaly_pool([s], 6, 0)
    scenes = make_real_val_scenes_from([s], pool, 6, 0, 8, seed=10)
    assert [v.name for v in scenes] == ["valreal_s_0_8", "valreal_s_8_0", "valreal_s_8_8"]  # (0, 0) has the label
    assert all(v.mask.any() for v in scenes)
    again = make_real_val_scenes_from([s], pool, 6, 0, 8, seed=10)
    assert all(np.array_equal(a.cube, b.cube) for a, b in zip(scenes, again))  # seeded
    with pytest.raises(DataError, match="needs labelled anomalies"):
        make_real_val_scenes_from([s], pool[:0], 6, 0, 8, seed=10)


def test_select_val_real_logs_both_signals_and_records_them(train_cli, tmp_path, capsys):
    rng = np.random.default_rng(0)
    scenes = [write_scene(tmp_path / f"s{k}.npy", rng, a) for k, a in
              enumerate([[(3, 3), (12, 17)], [(20, 5)], [(5, 5), (11, 11)]])]
    argv = ["--train_scenes", *map(str, scenes), "--input_channel", "8", "--img_size", "8", "--patch_stride", "8",
            "--batch_size", "2", "--teacher", "random", "--no-progress", "--select", "val_real",
            "--val_fraction", "0.34", "--epochs", "2", "--max_steps", "2", "--no-eval_test",
            "--save_dir", str(tmp_path / "ck")]
    assert train_cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "GRX without the FEN: val mAUC " in err and ", val_real mAUC " in err
    line = next(x for x in out.splitlines() if x.startswith("epoch 1/2"))
    assert " val mAUC 0." in line and " val_real mAUC 0." in line and "best val_real mAUC" in line
    meta = torch.load(tmp_path / "ck" / "fen_8bands.pt", map_location="cpu", weights_only=True)["meta"]
    assert meta["select"] == "val_real" and meta["score"] == meta["val_real_mAUC"]
    assert 0 <= meta["val_mAUC"] <= 1 and 0 <= meta["val_real_mAUC"] <= 1
    header, row = table_lines(tmp_path / "ck" / "auc_8bands.csv")[:2]
    cols = dict(zip(header.split(","), row.split(",")))
    assert float(cols["val_real_mAUC"]) == pytest.approx(meta["val_real_mAUC"], abs=1e-6)


def test_select_val_real_needs_labelled_training_scenes(train_cli, tmp_path, capsys):
    assert train_cli.main(["--select", "val_real", "--save_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--select val_real needs --train_scenes with labelled anomalies" in err[0]


def test_init_fen_starts_from_the_given_fen(train_cli, tmp_path, capsys):
    """--init_fen: the CWL, layer1 and FPL start as the given FEN's (a 1e-12 learning rate leaves them there)."""
    from model.fen import FEN
    from weights.release import load_fen, save_fen

    rng = np.random.default_rng(0)
    scenes = [write_scene(tmp_path / f"s{k}.npy", rng, [(3, 3)]) for k in range(2)]
    torch.manual_seed(5)
    start = FEN(8)
    save_fen(start, tmp_path / "start.pt")
    argv = ["--train_scenes", *map(str, scenes), "--input_channel", "8", "--img_size", "8", "--batch_size", "2",
            "--teacher", "random", "--no-progress", "--select", "last", "--epochs", "1", "--max_steps", "1",
            "--lr", "1e-12", "--init_fen", str(tmp_path / "start.pt"), "--save_dir", str(tmp_path / "ck")]
    assert train_cli.main(argv) == 0
    assert f"CWL, layer1 and FPL from {tmp_path / 'start.pt'} (fine-tuning)" in capsys.readouterr().err
    got = load_fen(str(tmp_path / "ck" / "fen_8bands.pt"), 8).state_dict()
    for k, v in start.state_dict().items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-9, msg=k)
    assert train_cli.main(set_bands(argv, "10")) == 2  # a FEN of another band count: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "take 8 bands, not --input_channel 10" in err[0]


def set_bands(argv: list[str], bands: str) -> list[str]:
    out = list(argv)
    out[out.index("--input_channel") + 1] = bands
    return out


def test_select_val_scene_scores_the_held_out_scene_on_its_own_labels(train_cli, tmp_path, capsys):
    """--select val_scene: the score is the FEN+GRX AUC of the held-out training scene with its own mask,
    recomputed here from the saved FEN."""
    from data.patches import split_files
    from data.preprocess import preprocess
    from data.scene import read_scene
    from detectors.rx import grx
    from evaluation.metrics import roc_auc
    from weights.release import load_fen

    rng = np.random.default_rng(1)
    targets = [[(3, 3), (12, 17), (20, 20)], [(20, 5), (4, 15), (14, 8)], [(5, 5), (11, 11), (18, 3)]]
    scenes = [write_scene(tmp_path / f"s{k}.npy", rng, a) for k, a in enumerate(targets)]
    for path, spots in zip(scenes, targets):  # faint targets (+6 on a noise of 5), so the AUC is not 1
        cube = np.load(path)
        for r, c in spots:
            cube[r, c] -= 34
        np.save(path, cube)
    argv = ["--train_scenes", *map(str, scenes), "--input_channel", "8", "--img_size", "8", "--patch_stride", "8",
            "--batch_size", "2", "--teacher", "random", "--no-progress", "--select", "val_scene",
            "--val_fraction", "0.34", "--epochs", "2", "--max_steps", "2", "--no-eval_test",
            "--save_dir", str(tmp_path / "ck")]
    assert train_cli.main(argv) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("epoch 1/2"))
    assert " val_real mAUC 0." in line and " val_scene mAUC 0." in line and "best val_scene mAUC" in line
    ck = tmp_path / "ck" / "fen_8bands.pt"
    meta = torch.load(ck, map_location="cpu", weights_only=True)["meta"]
    assert meta["select"] == "val_scene" and meta["score"] == meta["val_scene_mAUC"]
    (held,) = split_files([read_scene(p) for p in scenes], 0.34, 10)[1]
    x = preprocess(held.cube, 8, 0, held.label)
    enhanced = load_fen(str(ck), 8).enhance(x, normalize=False, layout="bhw")
    expected = roc_auc(grx(enhanced, layout="bhw").numpy(), held.mask)
    assert meta["val_scene_mAUC"] == pytest.approx(expected, abs=1e-6)
    plain = roc_auc(grx(x, layout="bhw").numpy(), held.mask)
    assert meta["val_scene_mAUC"] != pytest.approx(plain, abs=1e-9)  # the FEN's map, not plain GRX's


def test_select_val_scene_needs_labelled_training_scenes(train_cli, tmp_path, capsys):
    assert train_cli.main(["--select", "val_scene", "--save_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--select val_scene needs --train_scenes with labelled anomalies" in err[0]
