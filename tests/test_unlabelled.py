"""Scenes nobody labelled: read without a mask (.npy, ENVI, .mat), scored by test.py (maps, plots, detections;
the AUC tables cover the labelled scenes and name the others), alone and mixed, in one process and under
torchrun; the ENVI scene's map info puts its detections inside the scene."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.io
from conftest import SHARED, require_shared, table_lines
from spectral.io import envi
from test_torchrun import files, launch, without_seconds

from data.preprocess import DataError
from data.scene import read_scene

MAP_INFO = "map info = {UTM, 1.000, 1.000, 512345.500, 4123456.250, 3.5, 3.5, 11, North, WGS-84, units=Meters}"


def _cube(h: int, w: int, b: int = 50, seed: int = 0) -> np.ndarray:
    """A background with one bright 2 x 2 target at rows 3-4, cols 5-6."""
    cube = np.random.default_rng(seed).normal(10, 1, size=(h, w, b)).astype(np.float32)
    cube[3:5, 5:7] += 6
    return cube


def _envi(path, cube, map_info: bool = True):
    envi.save_image(str(path), cube, ext=".img", interleave="bil")
    if map_info:
        with open(path, "a") as fh:
            fh.write(MAP_INFO + "\n")
    return path


@pytest.fixture
def scenes(tmp_path):
    """A labelled .mat, and unlabelled .npy, ENVI (with map info) and .mat (with a wavelengths vector) scenes."""
    d = tmp_path / "in"
    d.mkdir()
    mask = np.zeros((20, 20), bool)
    mask[3:5, 5:7] = True
    scipy.io.savemat(d / "labelled.mat", {"data": _cube(20, 20, seed=1), "map": mask.astype(np.uint8)})
    np.save(d / "plain.npy", _cube(18, 18, seed=2))
    _envi(d / "site.hdr", _cube(16, 20, seed=3))
    scipy.io.savemat(d / "bare.mat", {"hsi_img": _cube(20, 16, seed=4), "wavelengths": np.arange(50.0)[:, None]})
    return {k: str(d / n) for k, n in (("labelled", "labelled.mat"), ("npy", "plain.npy"), ("envi", "site.hdr"),
                                       ("mat", "bare.mat"))}


def test_readers_leave_the_mask_none(scenes):
    for key in ("npy", "envi", "mat"):
        assert read_scene(scenes[key]).mask is None, key
    assert read_scene(scenes["labelled"]).mask.sum() == 4
    georef = read_scene(scenes["envi"]).georef
    assert georef.crs == "EPSG:32611" and georef.transform == (512345.5, 3.5, 0.0, 4123456.25, 0.0, -3.5)


def test_a_mat_vector_is_never_a_mask_and_a_named_key_lists_the_keys(scenes):
    with pytest.raises(DataError, match=r"mask is 50 x 1 but the cube is 20 x 16 \(gt_key='wavelengths', cube "
                                        r"'hsi_img'; keys found: hsi_img 20 x 16 x 50, wavelengths 50 x 1\)"):
        read_scene(scenes["mat"], gt_key="wavelengths")


def test_shared_aviris_background_is_unlabelled():
    path = require_shared(SHARED / "data" / "aviris-background" / "aviris_classic_90x90x224.mat")
    scene = read_scene(path, data_key="hsi_img")
    assert scene.mask is None and scene.cube.shape == (90, 90, 224)


def _rows(path):
    return list(csv.DictReader(path.open()))


def test_npy_without_mask_gives_map_and_detections(test_cli, scenes, tmp_path, capsys):
    out = tmp_path / "res"
    rc = test_cli.main(["--scenes", scenes["npy"], "--input_channel", "50", "--detectors", "GRX",
                        "--save_dir", str(out), "--plots", "--no-progress", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert (out / "plots" / "plain_maps.png").is_file() and not (out / "plots" / "plain_roc.png").exists()
    rows = _rows(out / "detections" / "plain_GRX.csv")
    # 324 pixels, top 0.1 %: the single highest pixel, which lies on the target
    assert len(rows) == 1 and 3 <= float(rows[0]["row"]) <= 4 and 5 <= float(rows[0]["col"]) <= 6
    assert rows[0]["x"] == "" and not list((out / "detections").glob("*.geojson"))
    assert printed.splitlines()[-1].split() == ["plain", "324", "1"] and "AUC" not in printed
    with np.load(out / "scores" / "plain.npz") as z:
        assert z.files == ["GRX", "provenance"]  # no mask: the map and where it came from


def test_envi_map_info_puts_detections_inside_the_scene(test_cli, scenes, tmp_path):
    out = tmp_path / "res"
    rc = test_cli.main(["--scenes", scenes["envi"], "--input_channel", "50", "--detectors", "GRX",
                        "--detect_fraction", "0.02", "--save_dir", str(out), "--no-progress", "--device", "cpu"])
    assert rc == 0
    rows = _rows(out / "detections" / "site_GRX.csv")
    assert rows and {r["crs"] for r in rows} == {"EPSG:32611"}
    for r in rows:  # 16 x 20 pixels of 3.5 m from (512345.5, 4123456.25), y downwards
        assert 512345.5 < float(r["x"]) < 512345.5 + 20 * 3.5 and 4123456.25 - 16 * 3.5 < float(r["y"]) < 4123456.25
    top = rows[0]  # the 2 x 2 target: its centre (4, 6) in pixel centres, map x = x0 + 6 * 3.5
    assert (float(top["row"]), float(top["col"]), int(top["pixels"])) == (3.5, 5.5, 4)
    assert (float(top["x"]), float(top["y"])) == (512345.5 + 6 * 3.5, 4123456.25 - 4 * 3.5)
    gj = json.loads((out / "detections" / "site_GRX.geojson").read_text())
    lon, lat = gj["features"][0]["geometry"]["coordinates"]
    assert -117.0 < lon < -116.8 and 37.2 < lat < 37.3  # UTM 11N, 12 km east of its central meridian


def test_flags_threshold_rule_and_labelled_detections(test_cli, scenes, tmp_path, capsys):
    out = tmp_path / "res"
    rc = test_cli.main(["--scenes", scenes["labelled"], "--input_channel", "50", "--detectors", "GRX",
                        "--detect_labelled", "--detect_pfa", "1e-6", "--save_dir", str(out), "--no-progress",
                        "--device", "cpu"])
    assert rc == 0 and "AUC GRX" in capsys.readouterr().out
    rows = _rows(out / "detections" / "labelled_GRX.csv")
    assert rows[0]["rule"] == "chi-square false-alarm rate 1e-06 (50 degrees of freedom)"
    assert float(rows[0]["threshold"]) == pytest.approx(scipy.stats.chi2.isf(1e-6, 50))
    assert test_cli.main(["--scenes", scenes["labelled"], "--detect_fraction", "0"]) == 2
    assert "--detect_fraction 0.0: must lie in (0, 1]" in capsys.readouterr().err


OPTIONS = ["--input_channel", "50", "--detectors", "GRX", "FEN+GRX", "--no-progress", "--device", "cpu"]


def test_mixed_scenes_alone_and_under_torchrun(scenes, tmp_path, release_dir):
    """Labelled and unlabelled scenes of all three formats: one process and two write the same files and
    print the same tables; the AUC tables hold the labelled scene alone and name the others."""
    order = [scenes[k] for k in ("npy", "labelled", "envi", "mat")]
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        runs[n] = launch(["--scenes", *order, "--save_dir", str(out), "--json", str(out / "r.json"), "--plots"],
                         n, release_dir)
        assert runs[n].returncode == 0, runs[n].stderr[-3000:]
    one, two = tmp_path / "p1", tmp_path / "p2"
    assert files(one) == files(two)
    assert [line.split(",")[0] for line in table_lines(one / "auc.csv")] == ["scene", "labelled"]
    for name in ("auc.csv", "roc3d.csv"):
        assert without_seconds((one / name).read_text()) == without_seconds((two / name).read_text())
    for det in ("GRX", "FEN_GRX"):
        for stem in ("plain", "site", "bare"):
            a, b = _rows(one / "detections" / f"{stem}_{det}.csv"), _rows(two / "detections" / f"{stem}_{det}.csv")
            assert [(r["rank"], r["row"], r["col"], r["pixels"]) for r in a] == \
                   [(r["rank"], r["row"], r["col"], r["pixels"]) for r in b]
    assert (one / "detections" / "site_FEN_GRX.geojson").is_file()
    assert not list((one / "detections").glob("labelled_*"))
    table = lambda out: [line.split()[:3] for line in out.splitlines()]  # no seconds
    assert table(runs[1].stdout) == table(runs[2].stdout)
    detections = lambda out: out[out.index("unlabelled scenes:"):].splitlines()[1:]  # pixels and counts
    assert detections(runs[1].stdout) == detections(runs[2].stdout)
    assert [line.split()[:2] for line in detections(runs[1].stdout)[2:]] == [["plain", "324"], ["site", "320"],
                                                                              ["bare", "320"]]
    assert "left out of the AUC and 3D-ROC tables (no ground truth): plain, site, bare" in runs[1].stdout
    unlabelled = json.loads((one / "r.json").read_text())["unlabelled"]
    assert [(u["name"], u["pixels"]) for u in unlabelled] == [("plain", 324), ("site", 320), ("bare", 320)]


def test_unlabelled_only_under_torchrun(scenes, tmp_path, release_dir):
    out = tmp_path / "res"
    run = launch(["--scenes", scenes["npy"], scenes["mat"], "--save_dir", str(out)], 2, release_dir)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[1].split() == ["scene", "pixels", "detections", "GRX", "detections", "FEN+GRX"]
    assert [line.split()[:2] for line in lines[3:]] == [["plain", "324"], ["bare", "320"]]
    assert sorted(p.name for p in (out / "detections").iterdir()) == [
        "bare_FEN_GRX.csv", "bare_GRX.csv", "plain_FEN_GRX.csv", "plain_GRX.csv"]


def test_train_on_unlabelled_scenes_with_the_defaults(train_cli, tmp_path, capsys, monkeypatch):
    """Two scenes of one's own, no mask, no test set, no ImageNet file and no network: the defaults make a run
    that works (last epoch, random teacher, each said in one line), every patch kept, no resume state."""
    import training.own_scenes as own

    monkeypatch.setattr(own, "imagenet_cache_path", lambda: tmp_path / "no-cache" / "wide_resnet101_2.pth")
    monkeypatch.setattr(own, "_reachable", lambda host, timeout=5.0: False)
    rng = np.random.default_rng(5)
    paths = []
    for k in range(2):
        np.save(tmp_path / f"own{k}.npy", rng.normal(10, 1, size=(24, 16, 8)).astype(np.float32))
        paths.append(str(tmp_path / f"own{k}.npy"))
    save = tmp_path / "ck"
    argv = ["--train_scenes", *paths, "--input_channel", "8", "--img_size", "8", "--batch_size", "2",
            "--epochs", "1", "--max_steps", "1", "--no-progress", "--device", "cpu", "--no-save_last",
            "--save_dir", str(save)]
    assert train_cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "teacher: random (seeded): the ImageNet file is not cached and download.pytorch.org is unreachable" in err
    assert "select: the last epoch (no test set and no --val_scenes" in err
    assert ("12 training patches 8x8 from 2 scenes (own0, own1) (0 of 12 patches dropped for touching a labelled "
            "anomaly or nodata, 2 of 2 scenes unlabelled, taken as all background)") in err
    assert "(no resume state: --no-save_last)" in err
    assert sorted(p.name for p in save.iterdir()) == ["auc_8bands.csv", "fen_8bands.pt", "loss_8bands.png"]
    # explicit validation scenes (unlabelled too: implanted anomalies), none held out of --train_scenes
    np.save(tmp_path / "v.npy", rng.normal(10, 1, size=(16, 16, 8)).astype(np.float32))
    argv2 = [a for a in argv if a != "--no-save_last"] + ["--val_scenes", str(tmp_path / "v.npy"),
                                                           "--val_fraction", "0", "--teacher", "random"]
    assert train_cli.main(argv2) == 0
    err = capsys.readouterr().err
    assert "from 2 scenes (own0, own1)" in err and "0 test scenes, 4 val scenes" in err
    assert "select: best mAUC on the --val_scenes with implanted anomalies" in err
    assert (save / "last_8bands.pt").is_file()
    (save / "last_8bands.pt").unlink()  # large: not left in pytest's tmp
    bad = argv + ["--select", "val", "--val_fraction", "0"]
    assert train_cli.main(bad) == 2
    assert "--select val with --val_fraction 0 holds no scene out: give --val_scenes" in capsys.readouterr().err


def test_a_train_py_file_that_is_not_a_fen_names_the_fen(tmp_path, test_cli, capsys):
    from weights.release import WeightsError, load_fen

    (tmp_path / "last_50bands.pt").write_bytes(b"state")
    with pytest.raises(WeightsError, match=r"last_50bands.pt': train.py's training state \(to resume from\), not a "
                                           r"FEN; the FEN of that run is .*fen_50bands.pt \(not there"):
        load_fen(str(tmp_path / "last_50bands.pt"), 50)
    np.save(tmp_path / "s.npy", _cube(8, 8))
    assert test_cli.main(["--scenes", str(tmp_path / "s.npy"), "--weights", str(tmp_path / "last_50bands.pt"),
                          "--save_dir", str(tmp_path / "r"), "--no-progress"]) == 2
    assert f"the FEN of that run is {tmp_path / 'fen_50bands.pt'}" in capsys.readouterr().err


def test_demo_runs_offline_with_the_shipped_fen(tmp_path, capsys, monkeypatch, release_dir):
    """``make demo`` (demo.py) on a fresh clone without network or FERD_WEIGHTS_DIR: abu10, said in one line;
    with the release at hand: had100, nothing said."""
    import urllib.error
    import urllib.request

    import demo
    import weights.release as release
    from data.synthetic import generate

    monkeypatch.setenv("FERD_WEIGHTS_DIR", str(release_dir))
    assert demo.demo_weights() == ("had100", None)
    monkeypatch.delenv("FERD_WEIGHTS_DIR")
    monkeypatch.setattr(release, "CACHE_DIR", tmp_path / "empty-cache")  # a fresh clone's cache

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    data = generate(tmp_path / "had", n_train=0, n_test=2, size=16, bands=50)
    rc = demo.main(["--data_path", str(data), "--detectors", "GRX", "FEN+GRX", "--save_dir", str(tmp_path / "r"),
                    "--no-progress", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0 and "mean (2 scenes)" in out
    note = [line for line in err.splitlines() if line.startswith("demo: ")]
    assert len(note) == 1 and "cannot download" in note[0] and note[0].endswith(
        "running this project's shipped 50-band FEN instead: --weights abu10 (docs/model_card_abu10.md)")
    assert "weights abu10" in err
