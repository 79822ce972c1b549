"""evaluation/export.py and test.py --save_mat / --save_envi: the authors' MATLAB files read back with scipy and
checked against the .npz maps; ENVI score maps read back with spectral, georeferencing included."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from spectral.io import envi

from data.had100 import read_had100
from data.preprocess import preprocess
from data.scene import _load_mat
from data.synthetic import generate
from detectors.rx import grx
from evaluation import export
from evaluation.export import SceneRecord, write_mat
from evaluation.metrics import roc_auc
from weights.release import load_fen

WKT = ('PROJCS["WGS_1984_UTM_Zone_11N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,'
       '298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],'
       'PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],'
       'PARAMETER["Central_Meridian",-117.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],'
       'UNIT["Meter",1.0]]')
GEO_LINES = ["map info = {UTM, 1.000, 1.000, 512345.500, 4123456.250, 3.5000000000e+00, 3.5000000000e+00, 11, "
             "North, WGS-84, units=Meters}",
             f"coordinate system string = {{{WKT}}}",
             "pixel size = {3.5, 3.5, units=Meters}"]


def _mat(path):
    """The variables of a v5 .mat file, without scipy's __header__ entries."""
    return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("export") / "had", n_train=0, n_test=3, size=24, bands=60)


def test_save_mat_writes_the_authors_files(test_cli, tiny_set, release_dir, tmp_path):
    save = tmp_path / "res"
    # --fen_batch 1: the FEN+GRX maps then come from the same FEN path (one scene, one tile) as mixfs.mat, so
    # x + mixfs must give them to rounding on any CPU. With the default batches, the convolution library picks
    # other kernels for a batch of 2 than for 1 (AVX2 machines: the FEN outputs differ in the last bits), and
    # GRX amplifies that by the covariance's condition number (up to 1e7 on these 24 x 24 x 50 scenes): 1.7e-4
    # relative on an AMD EPYC. Batches against single scenes are compared on well-conditioned cubes in
    # tests/test_tiling.py::test_fen_batches_equal_single_scenes.
    rc = test_cli.main(["--data_path", str(tiny_set), "--input_channel", "50", "--weights_dir", str(release_dir),
                        "--save_dir", str(save), "--json", str(tmp_path / "r.json"), "--save_mat", "--no-progress",
                        "--device", "cpu", "--fen_batch", "1"])
    assert rc == 0
    scenes = json.loads((tmp_path / "r.json").read_text())["scenes"]
    names = [s["name"] for s in scenes]
    assert len(names) == 3
    assert (save / "test_list.txt").read_text() == "".join(f"scene{k}:{n}\n" for k, n in enumerate(names, 1))
    npz = [dict(np.load(save / "scores" / f"{n}.npz")) for n in names]

    gt = _mat(save / "gts.mat")
    assert list(gt) == ["gt"] and gt["gt"].dtype == np.float32 and gt["gt"].shape == (3, 1, 24, 24)
    for i in range(3):
        np.testing.assert_array_equal(gt["gt"][i, 0], npz[i]["mask"].astype(np.float32))
    assert 0 < gt["gt"].sum() < gt["gt"].size  # anomalies and background both present

    for det, tag in (("GRX", "GRX"), ("FEN+GRX", "FEN_GRX")):
        result = _mat(save / f"scores_{tag}.mat")
        assert list(result) == ["result"]
        assert result["result"].dtype == np.float64 and result["result"].shape == (3, 24, 24)
        lines = (save / f"each_auc_{tag}.txt").read_text().split("\n")
        assert lines[-1] == "" and len(lines) == 4
        for i, s in enumerate(scenes):
            np.testing.assert_array_equal(result["result"][i], npz[i][det])
            assert lines[i] == f"{s['name']}:{s['auc'][det]} "  # repr of the float, then a space
            assert float(lines[i].split(":")[1]) == roc_auc(result["result"][i], gt["gt"][i, 0] > 0)
    assert not (save / "scores.mat").exists() and not (save / "each_auc.txt").exists()

    # mixfs = FEN(x): the released FEN on the same preprocessed cubes, and x + FEN(x) gives the FEN+GRX maps
    mixfs = _mat(save / "mixfs.mat")
    assert list(mixfs) == ["mixfs"] and mixfs["mixfs"].dtype == np.float32
    assert mixfs["mixfs"].shape == (3, 50, 24, 24)
    assert mixfs["mixfs"].min() >= 0.0 and mixfs["mixfs"].max() > 0.0  # quirk 5: the FPL ends in a ReLU
    fen = load_fen("had100", 50, release_dir)
    for i, scene in enumerate(read_had100(tiny_set)):
        x = preprocess(scene.cube, 50)
        with torch.no_grad():
            np.testing.assert_allclose(mixfs["mixfs"][i], fen(x[None])[0].numpy(), rtol=1e-5, atol=1e-6)
        enhanced_grx = grx(x + torch.from_numpy(mixfs["mixfs"][i]), layout="bhw").numpy()
        np.testing.assert_allclose(enhanced_grx, npz[i]["FEN+GRX"], rtol=1e-6, atol=1e-6 * enhanced_grx.max())


def _records(sizes, detectors=("GRX",), bands=None, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, (h, w) in enumerate(sizes):
        mask = np.zeros((h, w), bool)
        mask[1, 2] = True
        maps = {d: rng.random((h, w)) for d in detectors}
        fen_out = rng.random((bands, h, w)).astype(np.float32) if bands else None
        out.append(SceneRecord(f"s{i}", f"s{i}.mat", mask, maps, {d: roc_auc(maps[d], mask) for d in detectors},
                               fen_out))
    return out


def test_one_detector_keeps_the_authors_names_and_no_fen_no_mixfs(tmp_path):
    records = _records([(5, 6), (5, 6)])
    write_mat(records, tmp_path, ["GRX"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["each_auc.txt", "gts.mat", "scores.mat", "test_list.txt"]
    np.testing.assert_array_equal(_mat(tmp_path / "scores.mat")["result"], np.stack([r.maps["GRX"] for r in records]))


def test_undefined_auc_is_nan(tmp_path):
    records = _records([(4, 4)])
    records[0].auc["GRX"] = None  # what test.py records for a one-class mask
    write_mat(records, tmp_path, ["GRX"])
    assert (tmp_path / "each_auc.txt").read_text() == "s0:nan \n"


def test_one_set_per_scene_size(tmp_path):
    records = _records([(5, 6), (7, 3), (5, 6)], detectors=("GRX", "FEN+SLRX"), bands=4)
    write_mat(records, tmp_path, ["GRX", "FEN+SLRX"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mat_5x6", "mat_7x3"]
    big = tmp_path / "mat_5x6"
    assert (big / "test_list.txt").read_text() == "scene1:s0\nscene2:s2\n"
    assert (tmp_path / "mat_7x3" / "test_list.txt").read_text() == "scene1:s1\n"
    np.testing.assert_array_equal(_mat(big / "scores_FEN_SLRX.mat")["result"],
                                  np.stack([records[0].maps["FEN+SLRX"], records[2].maps["FEN+SLRX"]]))
    assert _mat(big / "mixfs.mat")["mixfs"].shape == (2, 4, 5, 6)
    assert _mat(tmp_path / "mat_7x3" / "gts.mat")["gt"].shape == (1, 1, 7, 3)
    assert (tmp_path / "mat_7x3" / "each_auc_GRX.txt").read_text() == f"s1:{records[1].auc['GRX']} \n"


def test_over_the_v5_limit_writes_matlab_v73(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAT_V5_LIMIT", 100)  # bytes: every variable here is larger
    records = _records([(5, 6), (5, 6)], bands=3)
    write_mat(records, tmp_path, ["GRX"])
    for name, key, want in (("scores.mat", "result", np.stack([r.maps["GRX"] for r in records])),
                            ("mixfs.mat", "mixfs", np.stack([r.fen_out for r in records])),
                            ("gts.mat", "gt", np.stack([r.mask[None] for r in records]).astype(np.float32))):
        path = tmp_path / name
        assert scipy.io.matlab.matfile_version(str(path)) == (2, 0)  # the header says v7.3
        with h5py.File(path, "r") as fh:
            assert fh[key].shape == want.shape[::-1]  # MATLAB's column-major order
            assert fh[key].attrs["MATLAB_class"] == {8: b"double", 4: b"single"}[want.dtype.itemsize]
        got = _load_mat(path)[key]  # this project's v7.3 reader gives back the N x ... x W array
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def _envi_scene(tmp_path):
    rng = np.random.default_rng(1)
    cube = rng.integers(100, 4000, size=(11, 9, 12)).astype(np.int16)
    mask = np.zeros((11, 9), np.uint8)
    mask[3:5, 4] = 1
    hdr = tmp_path / "site.hdr"
    envi.save_image(str(hdr), cube, interleave="bil", ext=".img")
    envi.save_image(str(tmp_path / "site_gt.hdr"), mask, ext=".img")
    with open(hdr, "a") as fh:  # georeferencing as ENVI and GDAL write it
        fh.write("\n".join(GEO_LINES) + "\n")
    return hdr


def test_save_envi_maps_keep_the_georeferencing(test_cli, tmp_path):
    hdr = _envi_scene(tmp_path)
    save = tmp_path / "res"
    rc = test_cli.main(["--scenes", str(hdr), "--input_channel", "12", "--detectors", "GRX", "SLRX",
                        "--block_size", "3", "--save_dir", str(save), "--save_envi", "--no-progress"])
    assert rc == 0
    written = sorted(p.name for p in (save / "envi").iterdir())
    assert written == ["site_GRX.hdr", "site_GRX.img", "site_SLRX.hdr", "site_SLRX.img"]
    source = envi.read_envi_header(str(hdr))
    with np.load(save / "scores" / "site.npz") as z:
        for det in ("GRX", "SLRX"):
            out = save / "envi" / f"site_{det}.hdr"
            image = envi.open(str(out))
            assert image.shape == (11, 9, 1) and np.dtype(image.dtype) == np.float32
            np.testing.assert_array_equal(image.read_band(0), z[det].astype(np.float32))
            meta = envi.read_envi_header(str(out))
            for key in ("map info", "coordinate system string", "pixel size"):
                assert meta[key] == source[key]
            assert meta["band names"] == [det] and meta["data type"] == "4"  # ENVI 4 = float32
            lines = out.read_text().splitlines()
            assert all(line in lines for line in GEO_LINES)  # written as the input spells them, WKT intact


def test_save_envi_refuses_a_scene_without_a_header(test_cli, tmp_path, capsys):
    rng = np.random.default_rng(2)
    mask = np.zeros((8, 8), np.uint8)
    mask[2, 2] = 1
    scipy.io.savemat(tmp_path / "scene.mat", {"data": rng.random((8, 8, 12)), "map": mask})
    rc = test_cli.main(["--scenes", str(tmp_path / "scene.mat"), "--input_channel", "12", "--detectors", "GRX",
                        "--save_dir", str(tmp_path / "res"), "--save_envi", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("test.py: error: --save_envi: ") and "scene.mat is not an ENVI scene" in err[0]
    assert not (tmp_path / "res").exists()  # refused before any work
