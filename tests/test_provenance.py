"""Every output of test.py says where it came from (evaluation/provenance.py): the bands, the weights' files
with their SHA-256, each detector with its options, the scene's file; a second run into the same folder says
what it replaced and removes what the first run wrote and it did not; a manifest never removes a file outside
its folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import table_lines

from data.geotiff import write_geotiff_map
from evaluation.detections import detections_geojson
from evaluation.provenance import MANIFEST, Provenance, read_csv_provenance, write_manifest
from utils.fetch import sha256
from weights.release import shipped_file


def toy_scene(folder, name: str, seed: int, bands: int = 50):
    """A small labelled ``.npy`` + ``.png`` scene of ``bands`` bands with one implanted target."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    cube = rng.normal(100, 5, (20, 18, bands)).astype(np.float32)
    mask = np.zeros((20, 18), bool)
    mask[8:10, 6:8] = True
    cube[mask] += 30
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}.npy", cube)
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}.png")
    return folder / f"{name}.npy"


def run(test_cli, scenes, out, *extra):
    return test_cli.main(["--scenes", *map(str, scenes), "--detectors", "GRX", "FEN+GRX", "LRX", "--lrx_outer", "7",
                          "--lrx_inner", "3", "--weights", "abu10", "--save_dir", str(out), "--no-progress", *extra])


def test_every_output_records_bands_weights_detectors_and_scene(test_cli, tmp_path, capsys):
    a, b = toy_scene(tmp_path / "in", "a", 1), toy_scene(tmp_path / "in", "b", 2)
    out = tmp_path / "out"
    assert run(test_cli, [a, b], out, "--json", str(out / "r.json")) == 0
    weights = shipped_file("abu10", 50)
    for table in ("auc.csv", "roc3d.csv"):
        head = read_csv_provenance(out / table)
        assert head["bands"] == [0, 50] and head["weights"] == "abu10"
        assert head["weights_files"] == {str(weights.resolve()): sha256(weights)}
        assert head["detectors"] == {"GRX": {}, "FEN+GRX": {}, "LRX": {"lrx_inner": 3, "lrx_outer": 7}}
        assert head["scenes"] == {"a": str(a.resolve()), "b": str(b.resolve())}
        assert table_lines(out / table)[0].startswith("scene,")  # the table itself follows, unchanged
    with np.load(out / "scores" / "b.npz") as z:
        one = json.loads(str(z["provenance"]))
        assert set(z.files) == {"mask", "GRX", "FEN+GRX", "LRX", "provenance"}
    assert one["scenes"] == {"b": str(b.resolve())} and one["detectors"]["LRX"] == {"lrx_inner": 3, "lrx_outer": 7}
    assert one["weights_files"] == head["weights_files"] and one["bands"] == [0, 50]
    whole = json.loads((out / "r.json").read_text())["provenance"]
    assert whole["scenes"] == head["scenes"] and whole["software"]["torch"] == head["software"]["torch"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["files"] == ["auc.csv", "r.json", "roc3d.csv", "scores/a.npz", "scores/b.npz"]
    assert manifest["weights_files"] == head["weights_files"]


def test_a_second_run_says_what_it_replaced_and_drops_the_first_runs_stale_maps(test_cli, tmp_path, capsys):
    a, b = toy_scene(tmp_path / "in", "a", 1), toy_scene(tmp_path / "in", "b", 2)
    out = tmp_path / "out"
    assert run(test_cli, [a, b], out) == 0
    (out / "mine.txt").write_text("not the run's")  # a file no manifest lists: never touched
    capsys.readouterr()
    assert run(test_cli, [a], out) == 0
    said = capsys.readouterr().err
    assert f"{out}: replaced 3 file(s) of the run of " in said and "(auc.csv, roc3d.csv, scores/a.npz)" in said
    assert f"{out}: removed 1 file(s) of the run of " in said and "did not write (scores/b.npz)" in said
    assert not (out / "scores" / "b.npz").exists() and (out / "mine.txt").read_text() == "not the run's"
    assert list(read_csv_provenance(out / "auc.csv")["scenes"]) == ["a"]


@pytest.mark.parametrize("listed", ["../outside.txt", "/tmp/../outside.txt", "sub/../../outside.txt", MANIFEST])
def test_a_manifest_never_removes_a_file_outside_its_folder(tmp_path, listed):
    save = tmp_path / "save"
    save.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (save / MANIFEST).write_text(json.dumps({"created": "then", "files": [listed]}))
    prov = Provenance(bands=(0, 4), weights=None, weights_files={}, detectors={"GRX": {}})
    assert write_manifest(save, prov, []) == []
    assert outside.read_text() == "keep" and json.loads((save / MANIFEST).read_text())["files"] == []


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"files": "a.npz"}'])
def test_a_run_json_that_is_no_manifest_is_replaced_and_said(tmp_path, text):
    save = tmp_path / "save"
    (save / "scores").mkdir(parents=True)
    (save / "scores" / "a.npz").write_text("an earlier map")
    (save / MANIFEST).write_text(text)
    prov = Provenance(bands=(0, 4), weights=None, weights_files={}, detectors={"GRX": {}})
    assert write_manifest(save, prov, []) == [f"{save / MANIFEST}: replaced a file that was not a run manifest "
                                              "(no list of an earlier run's files in it: none removed)"]
    assert (save / "scores" / "a.npz").read_text() == "an earlier map"
    assert json.loads((save / MANIFEST).read_text())["files"] == []


def test_geojson_and_geotiff_maps_carry_the_provenance(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    prov = Provenance(bands=(0, 50), weights="abu10", weights_files={"w.pt": "ab"}, detectors={"GRX": {}},
                      scenes={"s": "/data/s.tif"})
    assert detections_geojson([], "s", "GRX", prov.as_dict())["provenance"]["scenes"] == {"s": "/data/s.tif"}
    assert "provenance" not in detections_geojson([], "s", "GRX")
    path = tmp_path / "m.tif"
    write_geotiff_map(path, np.ones((3, 4), np.float32), None, float("nan"), "GRX",
                      {"ferd_provenance": json.dumps(prov.as_dict())})
    with rasterio.open(path) as ds:
        assert json.loads(ds.tags()["ferd_provenance"]) == prov.as_dict()


def test_a_fresh_training_run_says_which_earlier_files_it_replaces(tmp_path):
    from training.record import replaced_note
    from training.settings import TrainSettings

    settings = TrainSettings(save_dir=tmp_path, input_channel=8)
    assert replaced_note(settings) is None
    (tmp_path / "fen_8bands.pt").write_bytes(b"x")
    (tmp_path / "auc_8bands.csv").write_text("x")
    (tmp_path / "fen_50bands.pt").write_bytes(b"x")  # another band count: another run's, not replaced
    assert replaced_note(settings) == (f"{tmp_path}: this run replaces an earlier run's fen_8bands.pt, "
                                       "auc_8bands.csv as its epochs end (resume=True continues that run instead)")
