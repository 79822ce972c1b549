"""ENVI scenes (data/envi.py): header + binary written with the spectral package, read through read_scene,
with either mask convention, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from spectral.io import envi

from data.preprocess import DataError
from data.scene import read_scene
from data.synthetic import mask_png


def _write(tmp_path, interleave="bsq", mask_kind="hdr"):
    rng = np.random.default_rng(0)
    cube = rng.integers(0, 4000, size=(9, 7, 12)).astype(np.int16)  # H x W x B, integer DN as ABU
    mask = np.zeros((9, 7), bool)
    mask[2:4, 3] = True
    hdr = tmp_path / "scene.hdr"
    envi.save_image(str(hdr), cube, interleave=interleave, ext=".img")
    if mask_kind == "hdr":
        envi.save_image(str(tmp_path / "scene_gt.hdr"), mask.astype(np.uint8), ext=".img")
    elif mask_kind == "png":
        mask_png(mask).save(tmp_path / "scene.png")
    return hdr, cube, mask


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
def test_reads_cube_and_envi_mask(tmp_path, interleave):
    hdr, cube, mask = _write(tmp_path, interleave)
    scene = read_scene(hdr)
    assert scene.name == "scene" and scene.source == str(hdr)
    np.testing.assert_array_equal(scene.cube, cube)
    np.testing.assert_array_equal(scene.mask, mask)


def test_png_mask(tmp_path):
    hdr, cube, mask = _write(tmp_path, mask_kind="png")
    np.testing.assert_array_equal(read_scene(hdr).mask, mask)


def test_missing_mask_names_the_expected_files(tmp_path):
    hdr, _, _ = _write(tmp_path, mask_kind=None)
    with pytest.raises(DataError, match=r"no ground-truth mask beside it \(expected one of scene.png, scene_gt.hdr"):
        read_scene(hdr)


def test_broken_header_and_missing_binary(tmp_path):
    bad = tmp_path / "bad.hdr"
    bad.write_text("this is not an ENVI header\n")
    with pytest.raises(DataError, match="bad.hdr: not a readable ENVI header"):
        read_scene(bad)
    hdr, _, _ = _write(tmp_path)
    (tmp_path / "scene.img").unlink()
    with pytest.raises(DataError, match="scene.hdr: not a readable ENVI header"):
        read_scene(hdr)


def test_cli_runs_on_an_envi_scene(test_cli, tmp_path, capsys):
    hdr, _, _ = _write(tmp_path)
    rc = test_cli.main(["--scenes", str(hdr), "--input_channel", "12", "--detectors", "GRX", "SLRX", "LRX",
                        "--block_size", "3", "--lrx_inner", "1", "--lrx_outer", "5", "--save_dir",
                        str(tmp_path / "r"), "--no-progress"])
    assert rc == 0 and "scene " in capsys.readouterr().out
