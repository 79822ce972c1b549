"""GeoTIFF scenes (data/geotiff.py) and maps (evaluation/geotiff_maps.py): the four real EnMAP L2A tiles read
window by window with their CRS, transform, nodata and band metadata; test.py on a tile without a mask; its
maps as GeoTIFFs carrying the input's georeference; the EnMAP detector gap refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED, require_shared
from data.scene import read_scene

ENMAP = SHARED / "data" / "enmap"


@pytest.fixture(scope="module")
def tile():
    return require_shared(ENMAP / "enmap_potsdam_tile_96_0.tif")


def test_reads_an_enmap_tile_with_its_metadata(tile):
    import rasterio

    scene = read_scene(tile)
    assert scene.cube.shape == (32, 32, 224) and scene.cube.dtype == np.float32
    assert scene.georef.crs == "EPSG:32633"
    assert scene.georef.transform == (365055.0, 30.0, 0.0, 5809965.0, 0.0, -30.0)
    assert scene.nodata == -32768.0
    assert scene.wavelengths[0] == pytest.approx(418.24) and len(scene.wavelengths) == 224
    assert scene.fwhm[0] == pytest.approx(6.99561)
    assert list(np.flatnonzero(scene.bbl == 0)) == list(range(129, 135))
    assert scene.mask is None and not scene.labelled   # no mask beside it: unlabelled
    with rasterio.open(tile) as ds:
        whole = np.moveaxis(ds.read(), 0, -1)
    np.testing.assert_array_equal(np.asarray(scene.cube), whole)
    np.testing.assert_array_equal(scene.cube[3:11, 5:30:3, 100:140], whole[3:11, 5:30:3, 100:140])
    np.testing.assert_array_equal(scene.cube[4, :, 7], whole[4, :, 7])
    assert (whole[:, :, 129:135] == -32768).all()     # the EnMAP detector gap


def test_test_py_on_a_tile_without_mask_writes_georeferenced_maps(test_cli, tile, release_dir, tmp_path, capsys,
                                                                  monkeypatch):
    import rasterio

    monkeypatch.setenv("FERD_WEIGHTS_DIR", str(release_dir))
    rc = test_cli.main(["--scenes", str(tile), "--input_channel", "50", "--detectors", "GRX", "FEN+GRX",
                        "--save_dir", str(tmp_path), "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "bands [0, 50) = 418.24-679.485 nm" in err
    with rasterio.open(tile) as src:
        crs, transform = src.crs, src.transform
    for name in ("GRX", "FEN_GRX"):
        with rasterio.open(tmp_path / "geotiff" / f"{tile.stem}_{name}.tif") as ds:
            assert (ds.crs, ds.transform, ds.nodata, ds.count, ds.shape) == (crs, transform, -32768.0, 1, (32, 32))
            maps = np.load(tmp_path / "scores" / f"{tile.stem}.npz")
            np.testing.assert_array_equal(ds.read(1), maps[name.replace("_", "+")].astype(np.float32))
            assert json.loads(ds.tags()["ferd_provenance"])["scenes"] == {tile.stem: str(tile.resolve())}
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["scenes"] == []  # unlabelled: no AUC row; its pixels and detections instead
    [scene] = result["unlabelled"]
    assert scene["wavelength_range_nm"] == [418.24, 679.485] and scene["pixels"] == 32 * 32
    assert set(scene["detections"]) == {"GRX", "FEN+GRX"}
    # detections carry map coordinates inside the tile (its CRS: UTM 33N)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "detections" / f"{tile.stem}_GRX.csv")))
    assert rows, "no detection written"
    x0, y0 = transform.c, transform.f
    for row in rows:
        assert x0 <= float(row["x"]) <= x0 + 32 * 30 and y0 - 32 * 30 <= float(row["y"]) <= y0
    found = json.loads((tmp_path / "detections" / f"{tile.stem}_FEN_GRX.geojson").read_text())
    assert found["provenance"]["weights"] == "had100" and found["provenance"]["bands"] == [0, 50]


def test_the_enmap_gap_is_refused_in_one_line(test_cli, tile, tmp_path, capsys):
    rc = test_cli.main(["--scenes", str(tile), "--input_channel", "50", "--start_channel", "100", "--detectors",
                        "GRX", "--save_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1] == (f"test.py: error: {tile}: bands 129-134 (from 0) are marked bad in the file's bad band "
                       "list (bbl), inside the bands used [100, 150): use --start_channel 79")
    assert not (tmp_path / "auc.csv").exists()


def test_nodata_pixels_are_the_input_nodata_in_geotiff_and_envi_maps(test_cli, tmp_path, capsys):
    import rasterio
    from rasterio.transform import Affine
    from spectral.io import envi

    from data.synthetic import mask_png

    rng = np.random.default_rng(0)
    cube = rng.normal(size=(20, 18, 6)).astype(np.float32)
    cube[2:5, 3:7] = -5.0
    mask = np.zeros((20, 18), bool)
    mask[10:12, 9] = True
    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", height=20, width=18, count=6, dtype="float32",
                       nodata=-5.0, crs="EPSG:4326", transform=Affine(0.1, 0.0, 10.0, 0.0, -0.1, 50.0)) as ds:
        ds.write(np.moveaxis(cube, -1, 0))
    mask_png(mask).save(tmp_path / "s.png")
    envi.save_image(str(tmp_path / "e.hdr"), cube, ext=".img",
                    metadata={"data ignore value": -5.0, "map info": "{UTM, 1, 1, 500000, 5800000, 30, 30, 33, North, WGS-84}"})
    mask_png(mask).save(tmp_path / "e.png")
    rc = test_cli.main(["--scenes", str(tmp_path / "s.tif"), str(tmp_path / "e.hdr"), "--input_channel", "6",
                        "--detectors", "GRX", "--save_dir", str(tmp_path / "out"), "--save_geotiff"])
    err = capsys.readouterr().err
    assert rc == 0, err  # the ENVI scene's map info is a georeference too: its GeoTIFF maps are written
    with rasterio.open(tmp_path / "out" / "geotiff" / "e_GRX.tif") as ds:
        assert ds.crs.to_epsg() == 32633 and ds.transform.c == 500000 and ds.nodata == -5.0
    np.save(tmp_path / "n.npy", cube)
    mask_png(mask).save(tmp_path / "n.png")
    rc = test_cli.main(["--scenes", str(tmp_path / "n.npy"), "--input_channel", "6", "--detectors", "GRX",
                        "--save_dir", str(tmp_path / "out"), "--save_geotiff"])
    err = capsys.readouterr().err
    assert rc == 2 and "n.npy has no georeference" in err     # --save_geotiff asked for a scene without one
    rc = test_cli.main(["--scenes", str(tmp_path / "s.tif"), "--input_channel", "6", "--detectors", "GRX",
                        "--save_dir", str(tmp_path / "out"), "--plots"])   # nodata left out of the curves too
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out" / "plots").iterdir()) == [
        "s_boxes.png", "s_maps.png", "s_roc.png", "s_roc3d.png"]
    err = capsys.readouterr().err
    assert "s.tif: 12 of 360 pixels are nodata in the bands used and left out (0 of them" in err
    with rasterio.open(tmp_path / "out" / "geotiff" / "s_GRX.tif") as ds:
        m = ds.read(1)
        assert ds.nodata == -5.0 and (m[2:5, 3:7] == -5.0).all() and (m[6:] != -5.0).all()
    rc = test_cli.main(["--scenes", str(tmp_path / "e.hdr"), "--input_channel", "6", "--detectors", "GRX",
                        "--save_dir", str(tmp_path / "out2"), "--save_envi"])
    assert rc == 0
    header = envi.read_envi_header(str(tmp_path / "out2" / "envi" / "e_GRX.hdr"))
    assert float(header["data ignore value"]) == -5.0
    img = np.asarray(envi.open(str(tmp_path / "out2" / "envi" / "e_GRX.hdr")).load())[:, :, 0]
    assert (img[2:5, 3:7] == -5.0).all() and np.isfinite(img).all()
    scores = np.load(tmp_path / "out2" / "scores" / "e.npz")["GRX"]
    assert np.isnan(scores[2:5, 3:7]).all() and np.isfinite(scores[6:]).all()


def test_a_geotiff_streams_in_windows_and_tiles_as_an_array_does(tmp_path, monkeypatch):
    """A GeoTIFF with holes read one row per scan block and scored in small strips from temporary files gives
    the maps of the same cube held in memory."""
    import rasterio
    import torch
    from rasterio.transform import Affine

    import pipeline.sources as sources
    from detectors.registry import DEFAULT_OPTIONS, DetectorOptions
    from pipeline.plan import TilePlan
    from pipeline.run import Pipeline
    from helpers import pipeline_on

    rng = np.random.default_rng(3)
    cube = rng.normal(size=(40, 36, 6)).astype(np.float32)
    cube[10:14, 5:30] = -7.0
    cube[30, 2, 4] = -7.0
    with rasterio.open(tmp_path / "big.tif", "w", driver="GTiff", height=40, width=36, count=6, dtype="float32",
                       nodata=-7.0, transform=Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5800000.0)) as ds:
        ds.write(np.moveaxis(cube, -1, 0))
    scene = read_scene(tmp_path / "big.tif")
    options = DetectorOptions(**{**DEFAULT_OPTIONS.asdict(), "block_size": 4, "lrx_outer": 9,
                                           "crd_outer": 7})
    names = ["GRX", "SLRX", "LRX", "CRD"]
    whole = sources.SceneCube(cube, 6, 0, "array", -7.0)
    whole.check()
    want = next(Pipeline(names, None, options, torch.device("cpu")).run([whole])).maps
    monkeypatch.setattr(sources, "SCAN_BYTES", 8 * 36 * 6)            # one row per scan block
    streamed = sources.SceneCube(scene.cube, 6, 0, "tif", scene.nodata)
    streamed.check()
    plan = TilePlan(fen_tile=0, input_in_memory=False, enhanced_in_memory=False, budget=1 << 20, working=0,
                    strips={"SLRX": 2, "LRX": 5, "CRD": 6})
    got = next(pipeline_on(plan, names, None, options, torch.device("cpu")).run([streamed])).maps
    np.testing.assert_array_equal(streamed.valid, whole.valid)
    for name in names:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
