"""Nodata (data/nodata.py): a scene inside a nodata frame scores its valid pixels as the scene alone, in all
three conventions (GeoTIFF nodata tag, ENVI ``data ignore value``, NaN in a .npy); holes inside a scene give
every detector finite scores on the valid pixels and NaN on the others; nodata pixels enter no background;
bands that hold no data, or are marked bad, are refused with a start that avoids them."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from data.nodata import scan_nodata
from data.preprocess import DataError
from data.scene import read_scene
from data.synthetic import mask_png
from detectors.base import CubeReader
from detectors.crd import crd_scores
from detectors.registry import DEFAULT_OPTIONS, DetectorOptions, detector
from evaluation.results import measure_scene
from pipeline.run import Pipeline
from pipeline.sources import SceneCube

BANDS, FRAME, FILL = 50, 12, -9999.0


@pytest.fixture(scope="module")
def airport(abu_dir):
    """abu-airport-1, its first 50 bands as float32 (exact: 16-bit DN), and its mask."""
    m = scipy.io.loadmat(abu_dir / "abu-airport-1.mat")
    return m["data"][:, :, :BANDS].astype(np.float32), m["map"] != 0


def framed(cube: np.ndarray, value: float) -> np.ndarray:
    h, w, b = cube.shape
    out = np.full((h + 2 * FRAME, w + 2 * FRAME, b), value, dtype=np.float32)
    out[FRAME:-FRAME, FRAME:-FRAME] = cube
    return out


def write_geotiff(path, cube, nodata):
    import rasterio
    from rasterio.transform import Affine

    h, w, b = cube.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=b, dtype="float32", nodata=nodata,
                       crs="EPSG:32633", transform=Affine(30.0, 0.0, 365055.0, 0.0, -30.0, 5809965.0)) as ds:
        ds.write(np.moveaxis(cube, -1, 0))


def write_convention(tmp_path, kind, cube, mask):
    """The framed scene as a file of convention ``kind``, its mask beside it; returns the path."""
    big_mask = np.pad(mask, FRAME)
    if kind == "geotiff":
        path = tmp_path / "framed.tif"
        write_geotiff(path, framed(cube, FILL), FILL)
    elif kind == "envi":
        from spectral.io import envi

        path = tmp_path / "framed.hdr"
        envi.save_image(str(path), framed(cube, FILL), ext=".img", metadata={"data ignore value": FILL})
    else:
        path = tmp_path / "framed.npy"
        np.save(path, framed(cube, np.nan))
    mask_png(big_mask).save(path.with_suffix(".png"))
    return path


def run(scene_cube, mask, detectors, fen=None, nodata=None, name="scene"):
    from data.scene import Scene

    src = SceneCube(scene_cube, BANDS, 0, name, nodata)
    src.check()
    out = next(Pipeline(detectors, fen, DEFAULT_OPTIONS, torch.device("cpu")).run([src]))
    return src, out.maps, measure_scene(Scene(name, scene_cube, mask), out.maps, out.seconds, BANDS, src.valid)


@pytest.fixture(scope="module")
def fen50(release_dir):
    from weights.release import load_fen

    return load_fen("had100", BANDS, release_dir)


@pytest.fixture(scope="module")
def alone(airport, fen50):
    cube, mask = airport
    return run(cube, mask, ["GRX", "FEN+GRX"], fen50)


@pytest.mark.parametrize("kind", ["geotiff", "envi", "npy"])
def test_a_nodata_frame_changes_nothing_for_the_valid_pixels(tmp_path, airport, fen50, alone, kind):
    cube, mask = airport
    scene = read_scene(write_convention(tmp_path, kind, cube, mask))
    assert scene.nodata == (None if kind == "npy" else FILL)
    src, maps, result = run(scene.cube, scene.mask, ["GRX", "FEN+GRX"], fen50, scene.nodata, scene.name)
    _, maps0, result0 = alone
    h, w = mask.shape
    assert src.scan.full == src.scan.count == (h + 2 * FRAME) * (w + 2 * FRAME) - h * w
    inner = (slice(FRAME, FRAME + h), slice(FRAME, FRAME + w))
    np.testing.assert_allclose(maps["GRX"][inner], maps0["GRX"], rtol=1e-9)   # the same GRX map
    assert np.isnan(maps["GRX"][:FRAME]).all() and np.isnan(maps["FEN+GRX"][:, -FRAME:]).all()
    assert abs(result.auc["GRX"] - result0.auc["GRX"]) <= 1e-4
    assert abs(result.auc["FEN+GRX"] - result0.auc["FEN+GRX"]) <= 0.005
    assert abs(result0.auc["GRX"] - 0.8922) < 1e-4 and abs(result0.auc["FEN+GRX"] - 0.9456) < 1e-4  # issue 27's


def holed_cube(seed=0, h=24, w=20, b=6):
    """A random cube with a hole (every band NaN), a few partial nodata pixels and a -1 nodata corner."""
    rng = np.random.default_rng(seed)
    cube = rng.normal(size=(h, w, b)).astype(np.float32)
    cube[5:9, 6:10] = np.nan                 # a hole
    cube[15, 3, 2] = np.nan                  # partial: one band
    cube[18, 12, :3] = -1.0                  # partial: the nodata value in three bands
    cube[0:3, 0:3] = -1.0                    # a nodata corner
    return cube


def test_scan_counts_full_and_partial_nodata():
    scan = scan_nodata(holed_cube(), 0, 6, -1.0, 7, "holed")
    assert (scan.full, scan.partial) == (16 + 9, 2)
    assert scan.valid.sum() == 24 * 20 - 27 and not scan.valid[15, 3] and not scan.valid[18, 12]


@pytest.mark.parametrize("name", ["GRX", "SLRX", "LRX", "CRD", "FEN+GRX", "FEN+LRX"])
def test_holes_give_finite_scores_on_valid_pixels_and_nan_elsewhere(name):
    from model.fen import FEN

    torch.manual_seed(0)
    cube = holed_cube()
    src = SceneCube(cube, 6, 0, "holed", -1.0)
    src.check()
    options = DetectorOptions(**{**DEFAULT_OPTIONS.asdict(), "block_size": 4, "lrx_inner": 3,
                                           "lrx_outer": 7, "crd_outer": 7})
    fen = FEN(bands=6) if name.startswith("FEN+") else None
    out = next(Pipeline([name], fen, options, torch.device("cpu")).run([src]))
    scores = out.maps[name]
    assert np.isfinite(scores[src.valid]).all()
    assert np.isnan(scores[~src.valid]).all()


def test_lrx_background_leaves_nodata_out():
    """One pixel's LRX score against the direct formula on its valid background pixels only."""
    cube = holed_cube(1)
    valid = ~np.isnan(cube).any(axis=2)
    x = np.nan_to_num(cube.astype(np.float64))
    inner, outer, (i, j) = 3, 7, (10, 8)      # its window overlaps the hole
    det = detector("LRX")
    options = DetectorOptions(**{**DEFAULT_OPTIONS.asdict(), "lrx_inner": inner, "lrx_outer": outer})
    t = torch.from_numpy(np.where(valid[..., None], x, 0.0)).permute(2, 0, 1)
    scores = det.score_reader(CubeReader(t.permute(1, 2, 0), valid=valid), 0, options)
    bg = [(r, c) for r in range(i - 3, i + 4) for c in range(j - 3, j + 4)
          if not (abs(r - i) <= 1 and abs(c - j) <= 1) and valid[r, c]]
    assert len(bg) < outer * outer - inner * inner      # the hole is inside the window
    pix = np.array([x[r, c] for r, c in bg])
    mu, cov = pix.mean(axis=0), np.cov(pix.T)
    span = x[valid].max() - x[valid].min()
    d = x[i, j] - mu
    want = d @ np.linalg.solve(cov + 1e-6 * span ** 2 * np.eye(6), d)
    assert float(scores[i, j]) == pytest.approx(want, rel=1e-8)


def test_crd_leaves_nodata_out_of_the_dictionary():
    """CRD with some background pixels marked nodata (rows zeroed) equals CRD on the others alone."""
    rng = np.random.default_rng(2)
    for b, n in ((4, 12), (12, 8)):              # push-through form (B + 1 < N) and the N x N form
        xa = torch.from_numpy(np.concatenate([rng.random((3, n, b)), np.ones((3, n, 1))], axis=-1))
        ya = torch.from_numpy(np.concatenate([rng.random((3, b)), np.ones((3, 1))], axis=-1))
        keep = torch.ones(3, n, dtype=torch.bool)
        keep[:, : n // 3] = False
        holed = xa.masked_fill(~keep[..., None], 0.0)
        got = crd_scores(holed, ya, 1e-2, keep=keep)
        want = torch.stack([crd_scores(xa[p: p + 1, keep[p]], ya[p: p + 1], 1e-2)[0] for p in range(3)])
        torch.testing.assert_close(got, want, rtol=1e-9, atol=0)


def test_a_band_with_no_data_is_refused_with_a_start_that_avoids_it():
    cube = np.random.default_rng(0).random((6, 5, 12)).astype(np.float32)
    cube[:, :, 7:9] = np.nan
    with pytest.raises(DataError, match=r"gap: band 7 \(from 0\) holds no data in any pixel, inside the bands "
                                        r"used \[2, 8\): use start_channel=1"):
        SceneCube(cube, 6, 2, "gap").check()
    with pytest.raises(DataError, match=r"bands 7-8 \(from 0\) hold no data .*\[4, 10\): use start_channel=1"):
        SceneCube(cube, 6, 4, "gap").check()
    bbl = np.ones(12)
    bbl[10] = 0
    with pytest.raises(DataError, match=r"band 10 \(from 0\) is marked bad .*: no 12 contiguous bands"):
        SceneCube(np.ones((4, 4, 12)), 12, 0, "bbl", bbl=bbl).check()


def test_training_patches_holding_nodata_are_dropped():
    from data.patches import scene_patches
    from data.scene import Scene

    cube = np.random.default_rng(4).random((16, 16, 5)).astype(np.float32) * 100
    clean = np.array(cube)
    cube[1, 9, 2] = -1.0                    # partial nodata in the top-right patch
    cube[12:14, 1:3] = np.nan               # a hole in the bottom-left patch
    mask = np.zeros((16, 16), bool)
    mask[10, 12] = True                     # a labelled anomaly in the bottom-right patch
    patches, dropped = scene_patches([Scene("s", cube, mask, nodata=-1.0)], 5, 0, 8)
    assert dropped == 3 and patches.shape == (1, 5, 8, 8)
    valid = np.ones((16, 16), bool)
    valid[1, 9] = valid[12:14, 1:3] = False
    lo, hi = float(clean[valid].min()), float(clean[valid].max())   # the valid pixels' range only
    want = ((clean[:8, :8].astype(np.float64) - lo) / (hi - lo) * 2 - 1) * 0.1
    np.testing.assert_allclose(patches[0].numpy(), want.transpose(2, 0, 1).astype(np.float32), rtol=0, atol=0)
