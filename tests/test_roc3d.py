"""3D-ROC measures (utils/roc3d.py) on cases computed by hand, against a threshold grid, and in the reports."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from utils.report import SceneResult, format_roc3d_table, roc3d_csv, to_json
from utils.roc3d import Roc3D, roc3d, snpr_db

SCORES = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])
MASK = np.array([[False, False, False, True, True]])


def test_hand_computed_case():
    """Normalised scores 0, .25, .5 (background) and .75, 1 (anomalies):
    AUC(Pd,tau) = (.75 + 1) / 2 = .875, AUC(Pf,tau) = (0 + .25 + .5) / 3 = .25, SNPR = 10 log10 3.5;
    adaptive: clipped at the median anomaly score 3.5 -> 0, 2/7, 4/7 | 6/7, 1 -> 10 log10((13/14) / (2/7))."""
    m = roc3d(SCORES, MASK)
    assert m.auc_pd_pf == 1.0
    assert m.auc_pd_tau == pytest.approx(0.875, abs=1e-15)
    assert m.auc_pf_tau == pytest.approx(0.25, abs=1e-15)
    assert m.snpr == pytest.approx(10 * math.log10(3.5), abs=1e-12)          # 5.4407 dB
    assert m.asnpr == pytest.approx(10 * math.log10(13 / 4), abs=1e-12)      # 5.1188 dB


def test_overlapping_classes_by_hand():
    """Scores 1, 3 (background) and 2, 3 (anomalies). ROC AUC over the (anomaly, background) pairs:
    (2,1) win, (2,3) loss, (3,1) win, (3,3) tie -> 2.5 / 4. Normalised: 0, 1 | .5, 1."""
    m = roc3d(np.array([1.0, 3.0, 2.0, 3.0]), np.array([False, False, True, True]))
    assert m.auc_pd_pf == pytest.approx(0.625)
    assert (m.auc_pd_tau, m.auc_pf_tau) == (pytest.approx(0.75), pytest.approx(0.5))
    assert m.snpr == pytest.approx(10 * math.log10(1.5))


def test_exact_integrals_equal_a_fine_threshold_grid():
    rng = np.random.default_rng(0)
    scores = rng.gamma(2.0, size=(40, 40))
    mask = rng.random((40, 40)) < 0.05
    scores[mask] += 2
    m = roc3d(scores, mask)
    s = (scores - scores.min()) / (scores.max() - scores.min())
    tau = np.linspace(0, 1, 20001)
    pd = (s[mask][None, :] >= tau[:, None]).mean(axis=1)
    pf = (s[~mask][None, :] >= tau[:, None]).mean(axis=1)
    assert m.auc_pd_tau == pytest.approx(np.trapezoid(pd, tau), abs=1e-4)
    assert m.auc_pf_tau == pytest.approx(np.trapezoid(pf, tau), abs=1e-4)


def test_undefined_and_infinite_cases():
    assert roc3d(SCORES, np.zeros_like(MASK)) == Roc3D()                   # no anomaly: all None
    const = roc3d(np.ones((1, 5)), MASK)
    assert const.auc_pd_pf == 0.5 and const.auc_pd_tau is None and const.snpr is None and const.asnpr is None
    perfect = roc3d(np.array([0.0, 0.0, 0.0, 5.0, 9.0]), np.array([False, False, False, True, True]))
    assert perfect.auc_pf_tau == 0 and perfect.snpr == math.inf and perfect.asnpr == math.inf
    assert snpr_db(0.0, 0.5) == -math.inf


def test_reports_carry_the_measures():
    r = SceneResult("s1", auc={"GRX": 1.0}, seconds={"GRX": 0.5}, roc3d={"GRX": roc3d(SCORES, MASK)})
    p = SceneResult("s2", auc={"GRX": 1.0}, seconds={"GRX": 0.5},
                    roc3d={"GRX": roc3d(np.array([0.0, 0.0, 1.0]), np.array([False, False, True]))})
    table = format_roc3d_table([r, p], ["GRX"])
    assert "5.44" in table and "inf" in table and "mean (2 scenes)" in table and "aSNPR dB" in table
    means_only = format_roc3d_table([r, p], ["GRX"], per_scene=False).splitlines()
    assert len(means_only) == 3 and means_only[2].startswith("mean (2 scenes)  GRX")
    csv = roc3d_csv([r], ["GRX"]).splitlines()
    assert csv[0] == "scene,detector,auc_pd_pf,auc_pd_tau,auc_pf_tau,snpr_db,asnpr_db,seconds"
    assert csv[1].startswith("s1,GRX,1.000000,0.875000,0.250000,5.440680,5.118834,")
    data = json.loads(json.dumps(to_json([r, p], ["GRX"])))  # strict JSON: no Infinity literal
    assert data["scenes"][1]["roc3d"]["GRX"]["snpr"] == "inf"
    assert data["mean_roc3d"]["GRX"]["auc_pd_tau"] == pytest.approx((0.875 + 1.0) / 2)
