"""evaluation/detections.py: thresholds, connected objects, map coordinates, the CSV and the GeoJSON."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from data.georef import GeoRef
from detectors.rx import grx
from evaluation.detections import (DEFAULT_TOP_FRACTION, DetectionError, DetectionRule, detections_csv,
                                   detections_geojson, find_objects, locate, top_fraction_threshold,
                                   write_detections)


def _map() -> np.ndarray:
    """A 10 x 12 map: a 2 x 2 object (peak 9) at rows 1-2, cols 1-2, a diagonal pair (peak 7), one pixel (8)."""
    s = np.zeros((10, 12))
    s[1:3, 1:3] = [[5, 6], [6, 9]]
    s[6, 6], s[7, 7] = 7, 5  # diagonal neighbours: one object under 8-connectivity
    s[8, 10] = 8
    return s


def test_objects_ranked_with_centroid_size_peak_and_mean():
    found = find_objects(_map(), 5)
    assert [(d.rank, d.pixels, d.peak_score) for d in found] == [(1, 4, 9.0), (2, 1, 8.0), (3, 2, 7.0)]
    first, _, pair = found
    assert (first.row, first.col, first.mean_score) == (1.5, 1.5, 6.5)
    assert (pair.row, pair.col, pair.mean_score) == (6.5, 6.5, 6.0)
    assert find_objects(_map(), 10) == []


def test_top_fraction_threshold_flags_the_top_pixels():
    s = _map()
    assert top_fraction_threshold(s, 3 / s.size) == 7.0  # the 3rd highest score (9, 8, 7)
    assert top_fraction_threshold(np.full((4, 4), 2.0), 0.5) == np.inf  # a flat map flags nothing
    assert DetectionRule().top_fraction == DEFAULT_TOP_FRACTION == 0.001


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30), st.floats(0.001, 1.0), st.integers(0, 2 ** 31 - 1))
def test_top_fraction_flags_at_least_k_and_only_the_highest(h, w, fraction, seed):
    s = np.random.default_rng(seed).random((h, w))
    t = top_fraction_threshold(s, fraction)
    flagged = s >= t
    assert flagged.sum() == max(1, int(np.ceil(fraction * s.size - 1e-9)))  # continuous scores: no ties
    assert s[flagged].min() > s[~flagged].max() if (~flagged).any() else True


def test_chi2_rule_on_gaussian_grx_flags_about_pfa():
    """GRX scores of Gaussian pixels are chi-square with B degrees of freedom: the rule's rate is kept."""
    rng = np.random.default_rng(0)
    cube = torch.from_numpy(rng.normal(size=(6, 200, 200)))
    scores = grx(cube, layout="bhw").numpy()
    rule = DetectionRule(pfa=0.01, chi2_detectors=("GRX",))
    t = rule.threshold(scores, "GRX", 6)
    assert t == pytest.approx(chi2.isf(0.01, 6))
    assert 0.008 < (scores >= t).mean() < 0.012  # 40 000 pixels: 0.01 +- 2 standard errors
    assert rule.threshold(scores, "FEN+GRX", 6) == top_fraction_threshold(scores, DEFAULT_TOP_FRACTION)
    assert "chi-square" in rule.describe("GRX", 6) and "top 0.1%" in rule.describe("LRX", 6)


@pytest.mark.parametrize("kw, match", [({"top_fraction": 0}, "detect_fraction=0"),
                                       ({"top_fraction": 1.5}, "detect_fraction=1.5"),
                                       ({"pfa": 1.0}, "detect_pfa=1.0")])
def test_bad_rules_are_refused(kw, match):
    with pytest.raises(DetectionError, match=match):
        DetectionRule(**kw)


UTM = GeoRef("EPSG:32633", (400000.0, 30.0, 0.0, 5800000.0, 0.0, -30.0))  # UTM 33N, near Potsdam


def test_map_coordinates_and_wgs84_of_the_pixel_centre():
    found = locate(find_objects(_map(), 5), UTM)
    first = found[0]
    assert (first.x, first.y) == (400000.0 + 2.0 * 30, 5800000.0 - 2.0 * 30)  # centroid 1.5 + 0.5
    from rasterio.warp import transform

    lon, lat = transform("EPSG:32633", "EPSG:4326", [first.x], [first.y])
    assert (first.lon, first.lat) == pytest.approx((lon[0], lat[0]))
    assert 13.0 < first.lon < 13.6 and 52.3 < first.lat < 52.4  # west of Potsdam, as that UTM point lies


def test_csv_names_the_crs_and_geojson_is_rfc7946(tmp_path):
    counts = write_detections(tmp_path, "s", {"GRX": _map(), "FEN+GRX": _map() * 2}, DetectionRule(3 / 120), 4, UTM)
    assert counts == {"GRX": 3, "FEN+GRX": 3}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s_FEN_GRX.csv").read_text())))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and {r["crs"] for r in rows} == {"EPSG:32633"}
    # the top 3 pixels (18, 16, 14): three one-pixel objects, the first at pixel (2, 2), centre (2.5, 2.5)
    assert (float(rows[0]["x"]), float(rows[0]["y"]), float(rows[0]["peak_score"])) == (400075.0, 5799925.0, 18.0)
    gj = json.loads((tmp_path / "s_FEN_GRX.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and "crs" not in gj and len(gj["features"]) == 3
    lon, lat = gj["features"][0]["geometry"]["coordinates"]
    assert 13.0 < lon < 13.6 and 52.3 < lat < 52.4
    assert gj["features"][0]["properties"]["rank"] == 1


def test_without_georef_the_csv_has_pixels_only_and_no_geojson(tmp_path):
    write_detections(tmp_path, "s", {"GRX": _map()}, DetectionRule(7 / 120), 4, None)  # down to 5: all 7 pixels
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s_GRX.csv").read_text())))
    assert rows[0]["x"] == rows[0]["crs"] == "" and rows[0]["row"] == "1.500"
    assert not list(tmp_path.glob("*.geojson"))
    # a georeference without a CRS: map x/y in the file's own units, no GeoJSON (it could not be placed)
    found = locate(find_objects(_map(), 5), GeoRef(None, (10.0, 1.0, 0.0, 20.0, 0.0, -1.0)))
    text = detections_csv(found, GeoRef(None, (10.0, 1.0, 0.0, 20.0, 0.0, -1.0)), 5.0, "rule")
    assert "unknown (the file's own map units)" in text and found[0].lon is None
    assert detections_geojson(found, "s", "GRX")["features"] == []
