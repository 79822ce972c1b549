"""ENVI scenes (data/envi.py): header + binary written with the spectral package, read through read_scene,
with either mask convention, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from conftest import examples
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


def test_no_mask_is_an_unlabelled_scene(tmp_path):
    hdr, cube, _ = _write(tmp_path, mask_kind=None)
    scene = read_scene(hdr)
    assert scene.mask is None and scene.georef is None  # no mask, no map info
    np.testing.assert_array_equal(scene.cube, cube)


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
    """test.py on an ENVI scene gives the AUCs of the detectors run on the cube and mask as written."""
    import json

    import torch

    from data.preprocess import preprocess
    from detectors.lrx import lrx
    from detectors.rx import grx
    from detectors.slrx import slrx
    from evaluation.metrics import roc_auc

    hdr, cube, mask = _write(tmp_path)
    out = tmp_path / "r"
    rc = test_cli.main(["--scenes", str(hdr), "--input_channel", "12", "--detectors", "GRX", "SLRX", "LRX",
                        "--block_size", "3", "--lrx_inner", "1", "--lrx_outer", "5", "--save_dir",
                        str(out), "--no-progress", "--json", str(out / "r.json")])
    assert rc == 0 and "scene " in capsys.readouterr().out
    [scene] = json.loads((out / "r.json").read_text())["scenes"]
    assert scene["name"] == "scene"
    x = preprocess(cube, 12)
    expected = {"GRX": grx(x, layout="bhw"), "SLRX": slrx(x, block_size=3, layout="bhw"),
                "LRX": lrx(x.double(), 1, 5, layout="bhw")}
    for name, scores in expected.items():
        assert scene["auc"][name] == pytest.approx(roc_auc(torch.as_tensor(scores).numpy(), mask), abs=1e-9), name
    assert scene["auc"]["LRX"] != scene["auc"]["GRX"]  # (0.385 and 0.516): the figures are each detector's own


# ---- issue 21 item 2: header fields the reader relies on are checked, the rest refused naming the field ----

def _edit(hdr, field: str, value) -> None:
    """Set ``field = value`` in the ENVI header ``hdr`` (added if absent, removed if ``value`` is None)."""
    lines = [ln for ln in hdr.read_text().splitlines() if ln.split("=")[0].strip().lower() != field]
    if value is not None:
        lines.insert(1, f"{field} = {value}")
    hdr.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("field,value,message", [
    ("byte order", 2, "'byte order' = 2: must be 0 (little-endian) or 1 (big-endian)"),
    ("byte order", None, "'byte order' = missing: must be 0"),
    ("data type", 7, "'data type' = 7: not a known ENVI data type"),
    ("interleave", "xyz", "'interleave' = xyz: must be bsq, bil or bip"),
    ("interleave", "Bil", "'interleave' = Bil: must be bsq, bil or bip"),
    ("samples", 0, "'samples' = 0: must be a whole number, 1 or more"),
    ("lines", "9.5", "'lines' = 9.5: must be a whole number, 1 or more"),
    ("header offset", -4, "'header offset' = -4: must be a whole number, 0 or more"),
    ("header offset", 5000, "'header offset' = 5000 lies outside the image file"),
    ("header offset", 8, "has 1512 bytes but the header needs 1520"),
    ("data type", 4, "has 1512 bytes but the header needs 3024 (9 lines x 7 samples x 12 bands of 4 bytes"),
    ("bands", 11, "has 1512 bytes but the header needs 1386"),
])
def test_invalid_header_field_is_named(tmp_path, field, value, message):
    hdr, _, _ = _write(tmp_path)
    _edit(hdr, field, value)
    with pytest.raises(DataError) as err:
        read_scene(hdr)
    assert str(err.value).startswith(f"{hdr}: ") and message in str(err.value)


def test_big_endian_file_reads_the_same_values(tmp_path):
    hdr, cube, _ = _write(tmp_path)
    img = tmp_path / "scene.img"
    img.write_bytes(np.fromfile(img, "<i2").astype(">i2").tobytes())
    _edit(hdr, "byte order", 1)
    np.testing.assert_array_equal(read_scene(hdr).cube, cube)


def test_byte_order_2_stops_test_py_with_one_line(test_cli, tmp_path, capsys):
    """The issue's case: was read as big-endian, exit 0 and a wrong AUC."""
    hdr, _, _ = _write(tmp_path)
    _edit(hdr, "byte order", 2)
    rc = test_cli.main(["--scenes", str(hdr), "--input_channel", "12", "--detectors", "GRX", "--save_dir",
                        str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "ENVI header field 'byte order' = 2" in err[0]
    assert not (tmp_path / "r").exists()


@examples(20)
@given(order=st.sampled_from(["0", "1", "2", "-1", "big"]), dtype=st.sampled_from(["1", "2", "4", "7", "12", "0"]),
       interleave=st.sampled_from(["bsq", "bil", "bip", "BIP", "Bsq", "x"]), offset=st.integers(0, 12))
def test_header_either_reads_what_it_says_or_names_a_field(tmp_path_factory, order, dtype, interleave, offset):
    """A header is read only if every field it relies on is valid and the file size matches; then the values
    are exactly the ones written. Otherwise one DataError names the field or the sizes."""
    d = tmp_path_factory.mktemp("h")
    hdr, cube, _ = _write(d, interleave={"x": "bsq"}.get(interleave, interleave.lower()))
    img = d / "scene.img"
    img.write_bytes(b"\0" * offset + img.read_bytes())
    for field, value in (("byte order", order), ("data type", dtype), ("interleave", interleave),
                         ("header offset", offset)):
        _edit(hdr, field, value)
    valid = order in ("0", "1") and dtype in ("1", "2", "4", "12") and interleave in ("bsq", "bil", "bip", "BIP")
    readable = valid and dtype in ("2", "12")  # 2-byte types: the only ones of the file's size
    try:
        scene = read_scene(hdr)
    except DataError as err:
        text = str(err)
        assert "\n" not in text and text.startswith(str(hdr))
        assert "ENVI header field" in text or "the header needs" in text, text
        assert not readable, text
        return
    assert readable
    expected = cube if order == "0" else cube.byteswap()  # uint16 reads the same positive values as int16
    np.testing.assert_array_equal(scene.cube.astype(np.int64), expected.view(np.int16 if dtype == "2" else np.uint16))
