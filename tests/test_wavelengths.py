"""Wavelengths (data/bands.py): read from ENVI headers, the range of the bands used printed and in the JSON,
recorded by train.py where its scenes agree, and a one-line warning (never a refusal) when a scene's bands
lie far from those of the FEN."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from spectral.io import envi

from data.bands import training_wavelengths, wavelength_gap
from data.scene import read_scene
from data.synthetic import mask_png

B = 6


def envi_scene(path, wavelengths, units="Nanometers"):
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(16, 16, B)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[4, 4] = True
    envi.save_image(str(path), cube, ext=".img", metadata={"wavelength": [f"{w:g}" for w in wavelengths],
                                                           "wavelength units": units, "bbl": ["1"] * B})
    mask_png(mask).save(path.with_suffix(".png"))
    return path


def test_envi_wavelengths_in_nanometres(tmp_path):
    scene = read_scene(envi_scene(tmp_path / "s.hdr", np.linspace(0.4, 0.65, B), "Micrometers"))
    np.testing.assert_allclose(scene.wavelengths, np.linspace(400, 650, B))
    assert scene.nodata is None and (scene.bbl == 1).all()


def test_training_wavelengths_need_every_scene_to_agree():
    w = np.arange(400.0, 460.0, 10.0)
    same = [SimpleNamespace(wavelengths=w), SimpleNamespace(wavelengths=w + 0.5)]
    np.testing.assert_allclose(training_wavelengths(same, 4, 1), w[1:5] + 0.25)
    assert training_wavelengths(same + [SimpleNamespace(wavelengths=w + 30)], 4, 1) is None
    assert training_wavelengths(same + [SimpleNamespace(wavelengths=None)], 4, 1) is None
    assert wavelength_gap(w, w + 12) == pytest.approx(12.0) and wavelength_gap(w, w[:3]) is None


def test_test_py_warns_when_the_fen_was_trained_on_other_bands(test_cli, tmp_path, capsys):
    from model.fen import FEN
    from weights.release import save_fen

    save_fen(FEN(bands=B), tmp_path / "fen.pt", wavelengths=[float(v) for v in np.linspace(1500, 1750, B)])
    hdr = envi_scene(tmp_path / "s.hdr", np.linspace(400, 650, B))
    rc = test_cli.main(["--scenes", str(hdr), "--input_channel", str(B), "--weights", str(tmp_path / "fen.pt"),
                        "--detectors", "GRX", "FEN+GRX", "--save_dir", str(tmp_path / "out"),
                        "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"{hdr}: bands [0, 6) = 400-650 nm" in err
    assert (f"warning: {hdr}: its bands lie 1100 nm (median) from those the FEN of '{tmp_path / 'fen.pt'}' was "
            "trained on (1500-1750 nm, scene 400-650 nm)") in err
    assert json.loads((tmp_path / "r.json").read_text())["scenes"][0]["wavelength_range_nm"] == [400, 650]
    save_fen(FEN(bands=B), tmp_path / "near.pt", wavelengths=[float(v) for v in np.linspace(403, 653, B)])
    rc = test_cli.main(["--scenes", str(hdr), "--input_channel", str(B), "--weights", str(tmp_path / "near.pt"),
                        "--detectors", "FEN+GRX", "--save_dir", str(tmp_path / "out")])
    assert rc == 0 and "warning" not in capsys.readouterr().err
