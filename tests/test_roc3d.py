"""3D-ROC measures (evaluation/roc3d.py) on cases computed by hand, against a threshold grid, and in the reports."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from evaluation.report import SceneResult, format_roc3d_table, roc3d_csv, to_json
from evaluation.roc3d import Roc3D, roc3d, snpr_db

SCORES = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])
MASK = np.array([[False, False, False, True, True]])


def test_hand_computed_case():
    """Normalised scores 0, .25, .5 (background) and .75, 1 (anomalies); thresholds 0, .25, .5, .75, 1.
    Pd = 1, 1, 1, 1, .5 -> trapezoid .75 + .25 (1 + .5) / 2 = .9375;
    Pf = 1, 2/3, 1/3, 0, 0 -> .25 (5/6 + 1/2 + 1/6) = .375; SNPR = 10 log10 2.5.
    Adaptive: clipped at the median anomaly score 3.5 -> 0, 2/7, 4/7 | 6/7, 1:
    Pd area 6/7 + (1/7)(3/4) = 27/28, Pf area (2/7)(3/2) = 3/7 -> 10 log10 (9/4)."""
    m = roc3d(SCORES, MASK)
    assert m.auc_pd_pf == 1.0
    assert m.auc_pd_tau == pytest.approx(0.9375, abs=1e-15)
    assert m.auc_pf_tau == pytest.approx(0.375, abs=1e-15)
    assert m.snpr == pytest.approx(10 * math.log10(2.5), abs=1e-12)          # 3.9794 dB
    assert m.asnpr == pytest.approx(10 * math.log10(9 / 4), abs=1e-12)       # 3.5218 dB


def test_overlapping_classes_by_hand():
    """Scores 1, 3 (background) and 2, 3 (anomalies). ROC AUC over the (anomaly, background) pairs:
    (2,1) win, (2,3) loss, (3,1) win, (3,3) tie -> 2.5 / 4. Normalised: 0, 1 | .5, 1; thresholds 0, .5, 1:
    Pd = 1, 1, .5 -> .5 + .5 (.75) = .875; Pf = 1, .5, .5 -> .5 (.75) + .5 (.5) = .625."""
    m = roc3d(np.array([1.0, 3.0, 2.0, 3.0]), np.array([False, False, True, True]))
    assert m.auc_pd_pf == pytest.approx(0.625)
    assert (m.auc_pd_tau, m.auc_pf_tau) == (pytest.approx(0.875), pytest.approx(0.625))
    assert m.snpr == pytest.approx(10 * math.log10(1.4))


def per_threshold_loop(s: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """The HAD100 tool's procedure written out: for every distinct threshold, count; then the trapezoid."""
    thresholds = sorted(set(s.ravel().tolist()))
    pd = [(s[mask] >= t).mean() for t in thresholds]
    pf = [(s[~mask] >= t).mean() for t in thresholds]
    area = lambda y: sum((thresholds[k + 1] - thresholds[k]) * (y[k] + y[k + 1]) / 2  # noqa: E731
                         for k in range(len(thresholds) - 1))
    return area(pd), area(pf)


@pytest.mark.parametrize("levels", [None, 7])
def test_equals_the_per_threshold_loop(levels):
    """Continuous scores and heavily tied ones (7 distinct values) alike."""
    rng = np.random.default_rng(0)
    scores = rng.gamma(2.0, size=(40, 40))
    mask = rng.random((40, 40)) < 0.05
    scores[mask] += 2
    if levels:
        scores = np.floor(scores / scores.max() * (levels - 1))
    m = roc3d(scores, mask)
    s = (scores - scores.min()) / (scores.max() - scores.min())
    pd_area, pf_area = per_threshold_loop(s, mask)
    assert m.auc_pd_tau == pytest.approx(pd_area, rel=1e-12)
    assert m.auc_pf_tau == pytest.approx(pf_area, rel=1e-12)
    # the trapezoid is not the mean score (the exact integral of the step function) unless ties vanish
    assert m.auc_pd_tau >= s[mask].mean() - 1e-12


def test_a_megapixel_map_is_quick():
    """Vectorised (one sort, no loop over thresholds): a 1000 x 1000 map in well under a second on a quiet
    machine; the bound here leaves room for a busy shared CPU."""
    rng = np.random.default_rng(1)
    scores, mask = rng.random((1000, 1000)), rng.random((1000, 1000)) < 0.01
    t0 = time.perf_counter()
    roc3d(scores, mask)
    assert time.perf_counter() - t0 < 3.0


def test_undefined_and_edge_cases():
    assert roc3d(SCORES, np.zeros_like(MASK)) == Roc3D()                   # no anomaly: all None
    const = roc3d(np.ones((1, 5)), MASK)
    assert const.auc_pd_pf == 0.5 and const.auc_pd_tau is None and const.snpr is None and const.asnpr is None
    # perfectly separated: Pf is 1 at the lowest threshold, so the trapezoid keeps AUC(Pf,tau) > 0 and SNPR
    # finite. Normalised 0, 0, 0 | 5/9, 1: Pd = 1, 1, .5 -> 8/9, Pf = 1, 0, 0 -> 5/18.
    # Clipped at 7: 0, 0, 0 | 5/7, 1: Pd -> 5/7 + (2/7)(3/4) = 13/14, Pf -> 5/14.
    perfect = roc3d(np.array([0.0, 0.0, 0.0, 5.0, 9.0]), np.array([False, False, False, True, True]))
    assert perfect.auc_pf_tau == pytest.approx(5 / 18) and perfect.snpr == pytest.approx(10 * math.log10(3.2))
    assert perfect.asnpr == pytest.approx(10 * math.log10(2.6))
    assert snpr_db(0.5, 0.0) == math.inf and snpr_db(0.0, 0.5) == -math.inf


def test_reports_carry_the_measures():
    r = SceneResult("s1", auc={"GRX": 1.0}, seconds={"GRX": 0.5}, roc3d={"GRX": roc3d(SCORES, MASK)})
    p = SceneResult("s2", auc={"GRX": 1.0}, seconds={"GRX": 0.5},
                    roc3d={"GRX": Roc3D(1.0, 1.0, 0.0, math.inf, math.inf)})  # SNPR as snpr_db gives it then
    table = format_roc3d_table([r, p], ["GRX"])
    assert "3.98" in table and "inf" in table and "mean (2 scenes)" in table and "aSNPR dB" in table
    means_only = format_roc3d_table([r, p], ["GRX"], per_scene=False).splitlines()
    assert len(means_only) == 3 and means_only[2].startswith("mean (2 scenes)  GRX")
    csv = roc3d_csv([r], ["GRX"]).splitlines()
    assert csv[0] == "scene,detector,auc_pd_pf,auc_pd_tau,auc_pf_tau,snpr_db,asnpr_db,seconds"
    assert csv[1].startswith("s1,GRX,1.000000,0.937500,0.375000,3.979400,3.521825,")
    data = json.loads(json.dumps(to_json([r, p], ["GRX"])))  # strict JSON: no Infinity literal
    assert data["scenes"][1]["roc3d"]["GRX"]["snpr"] == "inf"
    assert data["mean_roc3d"]["GRX"]["auc_pd_tau"] == pytest.approx((0.9375 + 1.0) / 2)


#: ../shared/reference/README.md, "3D-ROC reference values": the HAD100 authors' tool on score maps that
#: reproduce the reference AUCs (first 100 bands, had100 weights, SLRX block_num 25, i.e. 4 px blocks).
HAD100_TOOL = {
    ("abu-airport-1", "GRX"): (0.8789, 0.0766, 0.0289, 4.2272, 2.6137),
    ("abu-airport-1", "FEN+GRX"): (0.9372, 0.0806, 0.0208, 5.8906, 4.9004),
    ("abu-airport-1", "SLRX"): (0.9273, 0.0177, 0.0027, 8.1919, 6.2650),
    ("abu-airport-1", "FEN+SLRX"): (0.9550, 0.1300, 0.0174, 8.7405, 7.7302),
    ("hydice", "GRX"): (0.9868, 0.1588, 0.0290, 7.3764, 6.7219),
    ("hydice", "FEN+GRX"): (0.9798, 0.2530, 0.0364, 8.4161, 7.5943),
    ("hydice", "SLRX"): (0.9973, 0.0566, 0.0023, 13.9627, 13.2638),
    ("hydice", "FEN+SLRX"): (0.9937, 0.4692, 0.0150, 14.9618, 13.5762),
}


def test_matches_the_had100_tool_on_real_scenes(test_cli, abu_dir, release_dir, tmp_path):
    """All 8 rows of the reference table (2 scenes x 4 detectors), through test.py: AUCs to 4 decimals, SNPR/ASNPR to 0.01 dB."""
    out = tmp_path / "out.json"
    argv = ["--scenes", str(abu_dir / "abu-airport-1.mat"), str(abu_dir / "hydice.mat"), "--input_channel", "100",
            "--weights", "had100", "--weights_dir", str(release_dir), "--detectors", "GRX", "FEN+GRX", "SLRX",
            "FEN+SLRX", "--save_dir", str(tmp_path), "--no-save_scores", "--no-progress", "--json", str(out)]
    assert test_cli.main(argv) == 0
    got = {(s["name"], det): m for s in json.loads(out.read_text())["scenes"] for det, m in s["roc3d"].items()}
    assert set(got) == set(HAD100_TOOL)
    for key, (auc, pd_tau, pf_tau, snpr, asnpr) in HAD100_TOOL.items():
        m = got[key]
        assert round(m["auc_pd_pf"], 4) == auc, key
        assert round(m["auc_pd_tau"], 4) == pd_tau, key
        assert round(m["auc_pf_tau"], 4) == pf_tau, key
        assert m["snpr"] == pytest.approx(snpr, abs=0.01), key
        assert m["asnpr"] == pytest.approx(asnpr, abs=0.01), key
