"""NetCDF4/HDF5 scenes in EMIT's layout (data/netcdf.py), written here with h5py as EMIT's files are (no real
granule can be had): the cube's axis order from its dimension names, _FillValue as nodata, the band table,
the location group; test.py labelled and not."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from data.netcdf import pixel_latlon
from data.preprocess import DataError
from data.scene import read_scene

H, W, B = 14, 12, 8


def emit_file(path, band_first=False, gt=True, fill=-9999.0):
    """A small EMIT-like L1B file: ``radiance`` (downtrack, crosstrack, bands) with netCDF dimension scales."""
    rng = np.random.default_rng(0)
    cube = rng.normal(10.0, 1.0, size=(H, W, B)).astype(np.float32)
    cube[9:12, 7:10] += 8.0                       # an anomaly
    cube[0:2, 0:4] = fill                         # nodata (rotated-swath corner)
    cube[5, 5, 3] = fill                          # partial nodata
    mask = np.zeros((H, W), bool)
    mask[9:12, 7:10] = True
    with h5py.File(path, "w") as f:
        for name, n in (("downtrack", H), ("crosstrack", W), ("bands", B)):
            f.create_dataset(name, data=np.arange(n, dtype=np.float32)).make_scale(name)
        data = np.moveaxis(cube, -1, 0) if band_first else cube
        dims = ("bands", "downtrack", "crosstrack") if band_first else ("downtrack", "crosstrack", "bands")
        ds = f.create_dataset("radiance", data=data, fillvalue=fill)
        ds.attrs["_FillValue"] = np.float32(fill)
        for i, name in enumerate(dims):
            ds.dims[i].attach_scale(f[name])
        g = f.create_group("sensor_band_parameters")
        g["wavelengths"] = np.linspace(0.4, 0.9, B).astype(np.float32)
        g["wavelengths"].attrs["units"] = "micrometers"
        g["fwhm"] = np.full(B, 8.5, np.float32)
        g["good_wavelengths"] = np.ones(B, np.uint8)
        loc = f.create_group("location")
        loc["lat"] = np.linspace(34.0, 34.1, H * W).reshape(H, W)
        loc["lon"] = np.linspace(-118.0, -117.9, H * W).reshape(H, W)
        if gt:
            f["gt"] = mask.astype(np.uint8)
    return cube, mask


@pytest.mark.parametrize("band_first", [False, True])
def test_reads_emit_layout_in_either_axis_order(tmp_path, band_first):
    cube, mask = emit_file(tmp_path / "g.nc", band_first)
    scene = read_scene(tmp_path / "g.nc", gt_key="gt")
    assert scene.cube.shape == (H, W, B) and scene.nodata == -9999.0
    np.testing.assert_array_equal(np.asarray(scene.cube), cube)
    np.testing.assert_array_equal(scene.cube[3:9:2, 4, 1:6], cube[3:9:2, 4, 1:6])
    np.testing.assert_array_equal(scene.mask, mask)
    np.testing.assert_allclose(scene.wavelengths, np.linspace(400, 900, B), rtol=1e-6)
    assert scene.georef is None                    # sensor geometry: no map grid
    lat, lon = pixel_latlon(tmp_path / "g.nc", np.array([0, 13]), np.array([0, 11]))
    np.testing.assert_allclose(lat, [34.0, 34.1]) and np.testing.assert_allclose(lon, [-118.0, -117.9])


def test_cube_key_is_named_when_it_cannot_be_guessed(tmp_path):
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros((3, 3, 3))
        f["b"] = np.zeros((3, 3, 3))
    with pytest.raises(DataError, match=r"two.h5: cannot tell which variable holds the cube; 3-D variables found: "
                                        r"a, b; name it with data_key=<variable>"):
        read_scene(tmp_path / "two.h5")


@pytest.mark.parametrize("labelled", [True, False])
def test_test_py_on_an_emit_file(test_cli, tmp_path, capsys, labelled):
    emit_file(tmp_path / "g.nc", gt=labelled)
    extra = ["--gt_key", "gt"] if labelled else []
    rc = test_cli.main(["--scenes", str(tmp_path / "g.nc"), "--input_channel", str(B), "--detectors", "GRX",
                        "--save_dir", str(tmp_path / "out"), *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "bands [0, 8) = 400-900 nm" in err
    assert "9 of 168 pixels are nodata in the bands used and left out (1 of them with no data in only some" in err
    scores = np.load(tmp_path / "out" / "scores" / "g.npz")["GRX"]
    assert np.isnan(scores[0:2, 0:4]).all() and np.isnan(scores[5, 5]) and np.isfinite(scores[3:]).sum() == 11 * 12 - 1
    first = next(l for l in out.splitlines() if l.startswith("g ")).split()[1]
    if labelled:
        assert float(first) > 0.99  # its AUC
    else:  # unlabelled: the detections table, with the pixels scored (the valid ones)
        assert "unlabelled scenes: detections" in out and first == str(168 - 9)


def test_unlabelled_emit_detections_carry_each_objects_latitude_longitude(test_cli, tmp_path, capsys):
    """Sensor geometry has no map grid: the detections give row/col and, from the file's location group, the
    latitude/longitude of the pixel under each centroid (CSV columns and an RFC 7946 GeoJSON)."""
    import csv
    import json

    emit_file(tmp_path / "g.nc", gt=False)
    rc = test_cli.main(["--scenes", str(tmp_path / "g.nc"), "--input_channel", str(B), "--detectors", "GRX",
                        "--detect_fraction", "0.05", "--save_dir", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "out" / "detections" / "g_GRX.csv")))
    assert rows and rows[0]["x"] == "" and rows[0]["crs"] == ""  # no map grid
    lat = np.linspace(34.0, 34.1, H * W).reshape(H, W)
    lon = np.linspace(-118.0, -117.9, H * W).reshape(H, W)
    for row in rows:
        r, c = int(float(row["row"])), int(float(row["col"]))
        assert float(row["lat"]) == pytest.approx(lat[r, c], abs=1e-7)
        assert float(row["lon"]) == pytest.approx(lon[r, c], abs=1e-7)
    top = rows[0]  # the implanted block at rows 9-11, columns 7-9 is the strongest object
    assert 9 <= float(top["row"]) <= 12 and 7 <= float(top["col"]) <= 10
    features = json.loads((tmp_path / "out" / "detections" / "g_GRX.geojson").read_text())["features"]
    assert [f["geometry"]["coordinates"] for f in features] == [[float(r["lon"]), float(r["lat"])] for r in rows]
