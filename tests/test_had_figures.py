"""The separability box plot and the 3D-ROC figure (evaluation/had_figures.py): real PNGs, the numbers they
are drawn from against brute force, a 2048 x 2048 scene in seconds, and degenerate inputs."""
from __future__ import annotations

import time

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score
from helpers import roc3d_curve

from evaluation.had_figures import (box_stats, class_scores, curve_thresholds, detection_rates, plot_roc3d,
                                    plot_separability, plot_separability_mean, rank_auc, sorted_tau_areas)
from evaluation.roc3d import normalize, roc3d, tau_areas

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _scene(seed: int = 0, h: int = 30, w: int = 40):
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), bool)
    mask[5:9, 10:14] = True
    maps = {"GRX": rng.random((h, w)), "FEN+GRX": rng.random((h, w)) + 1.5 * mask}
    return mask, maps


def _check_png(path, min_width=300, min_height=250):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width and image.shape[0] >= min_height
    assert image[..., :3].std() > 0.01  # not blank
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_box_stats_are_the_percentiles():
    values = np.random.default_rng(1).normal(size=(37, 11))
    s = box_stats(values, "x")
    lo, q1, med, q3, hi = np.percentile(values, [10, 25, 50, 75, 90])
    assert (s["whislo"], s["q1"], s["med"], s["q3"], s["whishi"]) == (lo, q1, med, q3, hi)
    assert s["mean"] == pytest.approx(values.mean()) and s["fliers"].size == 0 and s["label"] == "x"
    simple = box_stats(np.arange(11.0))  # 0..10: the percentiles are the values themselves
    assert [simple[k] for k in ("whislo", "q1", "med", "q3", "whishi")] == [1.0, 2.5, 5.0, 7.5, 9.0]
    assert box_stats(np.empty(0)) is None


def test_class_scores_split_the_normalised_map():
    mask, maps = _scene()
    bg, an = class_scores(mask, maps["FEN+GRX"])
    norm = normalize(maps["FEN+GRX"])
    assert bg.size == (~mask).sum() and an.size == mask.sum()
    assert np.array_equal(np.sort(an), np.sort(norm[mask])) and min(bg.min(), an.min()) == 0
    assert class_scores(mask, np.full(mask.shape, 3.0)) is None


def test_rates_match_a_brute_force_count():
    rng = np.random.default_rng(2)
    mask = rng.random((17, 23)) < 0.1
    scores = np.round(rng.random((17, 23)), 2)  # ties on purpose
    norm = normalize(scores)
    an, bg = np.sort(norm[mask]), np.sort(norm[~mask])
    taus = np.concatenate([np.linspace(0, 1, 51), np.unique(norm)])
    pd, pf = detection_rates(an, bg, taus)
    for t, d, f in zip(taus, pd, pf):
        assert d == np.mean(norm[mask] >= t) and f == np.mean(norm[~mask] >= t)
    tau, pd2, pf2 = roc3d_curve(scores, mask)
    assert tau[0] == 0 and tau[-1] == 1 and np.all(np.diff(tau) > 0) and pd2[0] == pf2[0] == 1
    assert np.all(np.diff(pd2) <= 0) and np.all(np.diff(pf2) <= 0)
    for t, d, f in zip(tau, pd2, pf2):
        assert d == np.mean(norm[mask] >= t) and f == np.mean(norm[~mask] >= t)
    assert rank_auc(an, bg) == pytest.approx(roc_auc_score(mask.ravel(), scores.ravel()), abs=1e-12)
    assert sorted_tau_areas(an, bg) == pytest.approx(tau_areas(norm, mask), abs=1e-12)
    smooth = normalize(rng.random((17, 23)))  # no ties
    assert sorted_tau_areas(np.sort(smooth[mask]), np.sort(smooth[~mask])) == pytest.approx(tau_areas(smooth, mask),
                                                                                            abs=1e-12)


def test_curve_points_are_bounded_and_reach_the_lowest_false_alarm():
    rng = np.random.default_rng(3)
    bg, an = np.sort(rng.random(200_000)), np.sort(rng.random(5000))
    taus = curve_thresholds(an, bg, tau_points=101, rank_points=300)
    assert taus.size <= 101 + 2 * 300
    _, pf = detection_rates(an, bg, taus)
    assert pf[pf > 0].min() == 1 / bg.size  # the top background pixel is a drawn point
    assert np.isnan(detection_rates(np.empty(0), bg, taus)[0]).all()


def test_both_figures_write_pngs(tmp_path):
    mask, maps = _scene()
    _check_png(plot_separability(tmp_path / "demo_boxes.png", "demo", mask, maps))
    measures = {name: roc3d(s, mask) for name, s in maps.items()}
    _check_png(plot_roc3d(tmp_path / "demo_roc3d.png", "demo", mask, maps, measures), 600, 500)


def test_mean_over_scenes(tmp_path):
    scenes = [_scene(0), _scene(1, h=20, w=50)]
    path = plot_separability_mean(tmp_path / "mean_boxes.png", scenes)
    _check_png(path)
    # a scene where one detector is constant and one without the other detector still pools the rest
    mask, maps = _scene(2)
    scenes.append((mask, {"GRX": np.zeros(mask.shape)}))
    _check_png(plot_separability_mean(tmp_path / "mean2_boxes.png", scenes, title="mean"))


def test_degenerate_inputs_draw(tmp_path):
    mask, maps = _scene()
    maps["flat"] = np.full(mask.shape, 0.5)
    empty = np.zeros_like(mask)
    for m, tag in ((mask, "constant"), (empty, "no_anomaly")):
        _check_png(plot_separability(tmp_path / f"{tag}_boxes.png", tag, m, maps))
        _check_png(plot_roc3d(tmp_path / f"{tag}_roc3d.png", tag, m, maps), 600, 500)
    only_flat = {"flat": maps["flat"]}
    _check_png(plot_separability(tmp_path / "flat_boxes.png", "flat", mask, only_flat), 200, 200)
    _check_png(plot_roc3d(tmp_path / "flat_roc3d.png", "flat", mask, only_flat), 600, 500)
    _check_png(plot_separability_mean(tmp_path / "none_boxes.png", [(empty, only_flat)]), 200, 200)
    assert roc3d_curve(maps["flat"], mask) is None


def test_a_2048_scene_draws_in_seconds(tmp_path):
    rng = np.random.default_rng(4)
    n = 2048
    mask = np.zeros((n, n), bool)
    mask[rng.integers(0, n, 300), rng.integers(0, n, 300)] = True
    maps = {"GRX": rng.random((n, n), dtype=np.float32), "FEN+GRX": rng.random((n, n), dtype=np.float32) + mask}
    start = time.perf_counter()
    plot_separability(tmp_path / "big_boxes.png", "big", mask, maps)
    boxes = time.perf_counter() - start
    plot_roc3d(tmp_path / "big_roc3d.png", "big", mask, maps)
    total = time.perf_counter() - start
    print(f"2048 x 2048, 2 detectors: boxes {boxes:.2f} s, 3D-ROC {total - boxes:.2f} s, total {total:.2f} s")
    assert total < 20
    _check_png(tmp_path / "big_roc3d.png", 600, 500)
