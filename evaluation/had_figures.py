"""The two figures hyperspectral anomaly detection papers show beside their tables: the separability box plot
and the 3D-ROC curve with its three projections. PNG files, written atomically, on an Agg canvas through
matplotlib's object API (the conventions of evaluation/plots.py, whose ``_save`` writes them).

Both start from the scores min-max normalised over the scene (:func:`evaluation.roc3d.normalize`, the
normalisation of the 3D-ROC table), so the figures and ``roc3d.csv`` describe the same numbers.

* Separability (:func:`plot_separability`, :func:`plot_separability_mean`): for each detector a box of its
  background pixels' scores and one of its anomaly pixels' scores side by side; box from the 25th to the 75th
  percentile, median line, whiskers at the 10th and 90th percentiles, no fliers. The statistics are computed
  with numpy on *all* pixels (no subsample; ``np.percentile`` partitions, it does not sort) and drawn with
  ``Axes.bxp``, so a 2048 x 2048 scene costs a few partitions, not a 4-million-point boxplot. The mean figure
  pools every scene's normalised scores (each scene normalised on its own), held in memory while it draws:
  8 bytes per pixel per detector over all scenes.
* 3D-ROC (:func:`plot_roc3d`): Pd(tau) and Pf(tau) with tau the threshold on the normalised scores, drawn as
  the 3-D curve (Pf, tau, Pd) and its projections (Pf, Pd) on a log Pf axis, (tau, Pd), (tau, Pf). The curves
  are exact at a bounded set of thresholds (:func:`curve_thresholds`: a uniform tau grid, plus background
  order statistics at log-spaced ranks so that the low-Pf end of the ROC is drawn truly, plus anomaly order
  statistics for the Pd steps), counted with ``np.searchsorted`` in the two sorted classes: O(n log n).
  The legends give the measures of the full map: those the caller passes (test.py's ``SceneResult.roc3d``),
  else computed here from the same sorted classes (equal to evaluation/roc3d.py's, see the tests).

Degenerate inputs draw, with a note: a constant map (``normalize`` gives None) has no box and no curve; a
mask with no anomaly pixel has background boxes only and no 3D-ROC curve (Pd is undefined).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from evaluation.metrics import auc_undefined_reason
from evaluation.plots import _save
from evaluation.report import fmt
from evaluation.roc3d import Roc3D, normalize, snpr_db

#: Box colours of the two classes (matplotlib's tab:blue and tab:red).
BACKGROUND_COLOUR = "#1f77b4"
ANOMALY_COLOUR = "#d62728"
#: Percentiles of a box: lower whisker, box bottom, median, box top, upper whisker.
BOX_PERCENTILES = (10, 25, 50, 75, 90)
#: Width of one box, and the offset of each class's box from its detector's tick.
BOX_WIDTH = 0.32
BOX_OFFSET = 0.19
#: Points of the uniform tau grid of a 3D-ROC curve, from 0 to 1.
TAU_POINTS = 1001
#: Most background (and most anomaly) order statistics added to the tau grid; a curve has at most
#: ``TAU_POINTS + 2 * RANK_POINTS`` points whatever the scene size.
RANK_POINTS = 2000


# ---------------------------------------------------------------------------------------------- separability

def box_stats(values: np.ndarray, label: str = "") -> dict | None:
    """The ``Axes.bxp`` statistics of ``values`` (any shape, all used): whiskers at the 10th and 90th
    percentiles, box at the 25th and 75th, median, mean, no fliers; None for no value."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return None
    lo, q1, med, q3, hi = np.percentile(v, BOX_PERCENTILES)
    return {"whislo": lo, "q1": q1, "med": med, "q3": q3, "whishi": hi, "mean": float(v.mean()),
            "fliers": np.empty(0), "label": label}


def class_scores(mask: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(background, anomaly)`` 1-D arrays of the normalised ``(H, W)`` scores under the boolean ``(H, W)``
    mask (either may be empty); None for a constant map."""
    norm = normalize(scores)
    if norm is None:
        return None
    m = np.asarray(mask, dtype=bool)
    return norm[~m], norm[m]


def _box_figure(path: Path, title: str, stats: dict[str, tuple[dict | None, dict | None] | None],
                notes: dict[str, str]) -> Path:
    """Draw the boxes: ``stats[name]`` is ``(background, anomaly)`` box statistics or None (no box);
    ``notes[name]`` a second line under the detector's name."""
    names = list(stats)
    fig = Figure(figsize=(max(4.0, 1.1 * len(names) + 2.0), 4.2))
    ax = fig.subplots()
    for k, colour, shift in ((0, BACKGROUND_COLOUR, -BOX_OFFSET), (1, ANOMALY_COLOUR, BOX_OFFSET)):
        boxes = [(i + shift, s[k]) for i, s in enumerate(stats.values()) if s is not None and s[k] is not None]
        if boxes:
            ax.bxp([b for _, b in boxes], positions=[p for p, _ in boxes], widths=BOX_WIDTH, showfliers=False,
                   patch_artist=True, manage_ticks=False, medianprops={"color": "black"},
                   boxprops={"facecolor": colour, "edgecolor": "black", "alpha": 0.85})
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{notes[n]}" if notes.get(n) else n for n in names], fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(-0.03, 1.16)  # the band above 1 holds the legend
    ax.set_yticks(np.linspace(0.0, 1.0, 6))
    ax.set_ylabel("normalised score (min-max per scene)")
    ax.set_title(f"{title}: separability\nboxes 25-75th percentile, whiskers 10-90th", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(handles=[Patch(facecolor=BACKGROUND_COLOUR, edgecolor="black", label="background"),
                       Patch(facecolor=ANOMALY_COLOUR, edgecolor="black", label="anomaly")],
              loc="upper center", ncol=2, fontsize=8)
    return _save(fig, path)


def plot_separability(path: Path, title: str, mask: np.ndarray, maps: dict[str, np.ndarray]) -> Path:
    """The separability box plot of one scene: ``mask`` boolean ``(H, W)``, ``maps`` detector name ->
    ``(H, W)`` scores (raw; normalised here). Writes the PNG ``path`` and returns it."""
    return plot_separability_mean(path, [(mask, maps)], title=title)


def plot_separability_mean(path: Path, scenes: list[tuple[np.ndarray, dict[str, np.ndarray]]],
                           title: str | None = None) -> Path:
    """The separability box plot over several scenes: ``scenes`` is a list of ``(mask, maps)`` as taken by
    :func:`plot_separability` (shapes may differ between scenes). Each detector's boxes pool the normalised
    background and anomaly scores of every scene where its map is not constant (each scene normalised on
    its own); the tick notes in how many scenes, when not all. Title defaults to ``mean of N scenes``."""
    pooled: dict[str, tuple[list, list]] = {}
    for mask, maps in scenes:
        for name, scores in maps.items():
            parts = pooled.setdefault(name, ([], []))
            split = class_scores(mask, scores)
            if split is not None:
                parts[0].append(split[0])
                parts[1].append(split[1])
    stats, notes = {}, {}
    for name, (bg, an) in pooled.items():
        present = sum(name in maps for _, maps in scenes)
        if not bg:
            stats[name], notes[name] = None, "(constant map)"
            continue
        stats[name] = (box_stats(np.concatenate(bg), "background"), box_stats(np.concatenate(an), "anomaly"))
        if len(bg) < present:
            notes[name] = f"({len(bg)} of {present} scenes)"
        if stats[name][1] is None:
            notes[name] = (notes.get(name, "") + " (no anomaly px)").strip()
    if title is None:
        title = f"mean of {len(scenes)} scenes" if len(scenes) != 1 else "scene"
    return _box_figure(Path(path), title, stats, notes)


# -------------------------------------------------------------------------------------------------- 3D-ROC

def detection_rates(anomaly: np.ndarray, background: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Pd, Pf)`` at each threshold of ``taus`` (1-D): the fractions of the *sorted* 1-D ``anomaly`` and
    ``background`` scores at or above it (the >= of evaluation/roc3d.py). An empty class gives NaN rates."""
    taus = np.asarray(taus, dtype=np.float64)

    def above(sorted_scores: np.ndarray) -> np.ndarray:
        if sorted_scores.size == 0:
            return np.full(taus.shape, np.nan)
        return (sorted_scores.size - np.searchsorted(sorted_scores, taus, side="left")) / sorted_scores.size

    return above(anomaly), above(background)


def curve_thresholds(anomaly: np.ndarray, background: np.ndarray, tau_points: int = TAU_POINTS,
                     rank_points: int = RANK_POINTS) -> np.ndarray:
    """The increasing thresholds a curve is drawn through, from the *sorted* 1-D class scores in [0, 1]: the
    uniform grid of ``tau_points`` over [0, 1], the background scores at about ``rank_points`` ranks
    log-spaced from the top (so the ROC on a log Pf axis is exact where it is drawn), and the anomaly scores
    (all, or about ``rank_points`` evenly spaced ranks)."""
    parts = [np.linspace(0.0, 1.0, tau_points)]
    if background.size:
        ranks = np.unique(np.geomspace(1, background.size, rank_points).astype(np.int64))
        parts.append(background[background.size - ranks])
    if anomaly.size:
        ranks = np.unique(np.linspace(0, anomaly.size - 1, min(anomaly.size, rank_points)).astype(np.int64))
        parts.append(anomaly[ranks])
    return np.unique(np.concatenate(parts))


def rank_auc(anomaly: np.ndarray, background: np.ndarray) -> float:
    """ROC AUC (Pd against Pf) from the *sorted* 1-D class scores, ties counted half, as scikit-learn's
    ``roc_auc_score``: the Mann-Whitney statistic by ``np.searchsorted``, O(n log n)."""
    below = np.searchsorted(background, anomaly, side="left").sum(dtype=np.float64)
    ties = np.searchsorted(background, anomaly, side="right").sum(dtype=np.float64) - below
    return float((below + 0.5 * ties) / (anomaly.size * background.size))


def sorted_tau_areas(anomaly: np.ndarray, background: np.ndarray) -> tuple[float, float]:
    """``(AUC(Pd, tau), AUC(Pf, tau))`` from the *sorted* 1-D normalised class scores: the numbers of
    :func:`evaluation.roc3d.tau_areas` (trapezoid over the distinct scores as thresholds) without its
    ``np.unique(return_inverse=True)``, which costs an argsort of the whole map."""
    thresholds = np.unique(np.concatenate([background, anomaly]))
    pd, pf = detection_rates(anomaly, background, thresholds)
    return float(np.trapezoid(pd, thresholds)), float(np.trapezoid(pf, thresholds))


def _measures(anomaly: np.ndarray, background: np.ndarray) -> Roc3D:
    """The measures the legends show, for a caller that gave none, from the sorted class scores."""
    out = Roc3D(auc_pd_pf=rank_auc(anomaly, background))
    out.auc_pd_tau, out.auc_pf_tau = sorted_tau_areas(anomaly, background)
    out.snpr = snpr_db(out.auc_pd_tau, out.auc_pf_tau)
    return out


def _roc3d_axes(fig: Figure):
    """The 2 x 2 panels: 3-D curve, (Pf, Pd) on log Pf, (tau, Pd), (tau, Pf)."""
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the '3d' projection)

    cube = fig.add_subplot(2, 2, 1, projection="3d")
    roc, pd_tau, pf_tau = (fig.add_subplot(2, 2, k) for k in (2, 3, 4))
    cube.set_xlabel("Pf", fontsize=8)
    cube.set_ylabel("τ", fontsize=8)
    cube.set_zlabel("Pd", fontsize=8)
    cube.set(xlim=(0, 1), ylim=(0, 1), zlim=(0, 1))
    cube.tick_params(labelsize=7)
    cube.set_title("3D-ROC (Pf, τ, Pd)", fontsize=9)
    for ax, x, y, t in ((roc, "false alarm rate Pf (log scale)", "detection rate Pd", "ROC (Pf, Pd)"),
                        (pd_tau, "threshold τ", "detection rate Pd", "(τ, Pd)"),
                        (pf_tau, "threshold τ", "false alarm rate Pf", "(τ, Pf)")):
        ax.set_xlabel(x, fontsize=8)
        ax.set_ylabel(y, fontsize=8)
        ax.set_title(t, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="both", alpha=0.3)
    for ax in (pd_tau, pf_tau):
        ax.set_xlim(0.0, 1.0)
    roc.set_xscale("log")
    return cube, roc, pd_tau, pf_tau


def plot_roc3d(path: Path, title: str, mask: np.ndarray, maps: dict[str, np.ndarray],
               measures: dict[str, Roc3D] | None = None) -> Path:
    """The 3D-ROC figure of one scene: ``mask`` boolean ``(H, W)``, ``maps`` detector name -> ``(H, W)``
    scores (raw; normalised here). ``measures`` (detector name -> :class:`evaluation.roc3d.Roc3D` of the full
    map, as test.py keeps per scene) labels the legends; computed here for detectors it lacks."""
    m = np.asarray(mask, dtype=bool)
    fig = Figure(figsize=(11.0, 9.0), layout="constrained")
    cube, roc, pd_tau, pf_tau = _roc3d_axes(fig)
    reason, constant = auc_undefined_reason(m), []
    floor = 1.0 / max(int((~m).sum()), 1)  # one background pixel: the smallest non-zero Pf
    for name, scores in ({} if reason else maps).items():
        split = class_scores(m, scores)
        if split is None:
            constant.append(name)
            continue
        background, anomaly = np.sort(split[0]), np.sort(split[1])
        taus = curve_thresholds(anomaly, background)
        pd, pf = detection_rates(anomaly, background, taus)
        r = (measures or {}).get(name) or _measures(anomaly, background)
        line = cube.plot(pf, taus, pd, lw=1.2, label=f"{name} (SNPR {fmt(r.snpr, 2)} dB)")[0]
        colour = line.get_color()
        roc.plot(np.maximum(pf, floor), pd, color=colour, lw=1.3, label=f"{name} AUC(D,F) {fmt(r.auc_pd_pf)}")
        pd_tau.plot(taus, pd, color=colour, lw=1.3, label=f"{name} AUC(D,τ) {fmt(r.auc_pd_tau)}")
        pf_tau.plot(taus, pf, color=colour, lw=1.3, label=f"{name} AUC(F,τ) {fmt(r.auc_pf_tau)}")
    roc.set_xlim(floor, 1.0)
    for ax, where in ((cube, "upper left"), (roc, "lower right"), (pd_tau, "upper right"), (pf_tau, "upper right")):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc=where, fontsize=7)
        elif reason and ax is not cube:
            ax.text(0.5, 0.5, f"3D-ROC undefined: {reason}", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8)
    note = f"\nno curve for a constant map: {', '.join(constant)}" if constant else ""
    note += f"\n3D-ROC undefined: {reason}" if reason else ""
    fig.suptitle(f"{title}: 3D-ROC on min-max normalised scores{note}", fontsize=11)
    return _save(fig, Path(path))
