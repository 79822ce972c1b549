"""Pictures of one scene's results: the cube in false colour, the ground truth, every detector's anomaly
map, and the ROC curves of all detectors. PNG files, written atomically (utils/io.py).

Big scenes are drawn reduced, so that a flight line gives a picture in seconds, not a 4-megapixel figure
that takes a minute: images wider or taller than :data:`MAX_SIDE` px are shrunk by an integer factor
(block maximum for score maps and masks, so that a one-pixel anomaly stays visible; one pixel per block
for the false colour, read band by band from the possibly memory-mapped cube), and ROC curves are drawn
through at most :data:`ROC_POINTS` points. The AUCs in the titles are always those of the full maps.

Matplotlib is used through its object API on an Agg canvas (no GUI backend, no global pyplot state),
so it works on headless machines and from threads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from evaluation.report import fmt
from utils.io import atomic_path
from utils.memory import release_pages

#: Band positions (fractions of the band range) shown as red, green, blue. Without wavelengths a fixed
#: spread is the only general choice; for AVIRIS-like 400-2500 nm cubes these are near-infrared, red-edge
#: and visible bands, a classic false-colour composite.
RGB_FRACTIONS = (0.25, 0.12, 0.05)
#: Maps are shown from their minimum to this percentile (clipped above).
DISPLAY_PERCENTILE = 99.5
#: Largest image side drawn (px); larger scenes are reduced by an integer factor.
MAX_SIDE = 512
#: Most points of a drawn ROC curve.
ROC_POINTS = 2000


def reduction(height: int, width: int, max_side: int = MAX_SIDE) -> int:
    """The integer factor that brings an ``height`` x ``width`` image to at most ``max_side`` px a side."""
    return max(1, -(-max(height, width) // max_side))


def block_max(image: np.ndarray, factor: int) -> np.ndarray:
    """``(H, W)`` -> ``(ceil(H / f), ceil(W / f))`` maxima of ``f x f`` blocks (edge blocks may be smaller)."""
    if factor == 1:
        return np.asarray(image)
    h, w = image.shape
    ph, pw = -(-h // factor) * factor, -(-w // factor) * factor
    low = np.min(image) if image.dtype != bool else False
    padded = np.full((ph, pw), low, dtype=image.dtype)
    padded[:h, :w] = image
    return padded.reshape(ph // factor, factor, pw // factor, factor).max(axis=(1, 3))


def false_colour(cube: np.ndarray, fractions: tuple[float, float, float] = RGB_FRACTIONS,
                 step: int = 1) -> np.ndarray:
    """``(H, W, B)`` cube -> ``(H, W, 3)`` RGB in [0, 1] (every ``step``-th pixel each way): three bands, each
    stretched between its 2nd and 98th percentile (robust to a few very bright pixels)."""
    b = cube.shape[2]
    channels = []
    for f in fractions:
        band = _band(cube, min(b - 1, int(round(f * (b - 1)))), step)
        lo, hi = np.percentile(band, [2, 98])
        channels.append(np.clip((band - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(band))
    return np.stack(channels, axis=-1)


def _band(cube: np.ndarray, index: int, step: int, rows: int = 256) -> np.ndarray:
    """Band ``index`` of ``cube``, every ``step``-th pixel, float64; read a few rows at a time so that a
    memory-mapped cube's pages are let go as it goes (utils.memory.release_pages)."""
    h = cube.shape[0]
    parts = []
    for r0 in range(0, h, rows * step):
        view = cube[r0: min(h, r0 + rows * step): step, ::step, index]
        parts.append(np.asarray(view, dtype=np.float64))
        release_pages(cube, view if isinstance(view, np.ndarray) else None)
    return np.concatenate(parts)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _label(name: str, auc: float | None) -> str:
    return f"{name} (AUC {fmt(auc)})"


def display_scale(scores: np.ndarray, upper: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """Scores mapped to [0, 1] for display: from the minimum to the ``upper`` percentile (clipped above), so
    that a handful of extreme pixels do not turn the rest of the map black."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = s.min(), np.percentile(s, upper)
    if not hi > lo:
        hi = s.max()
    return np.clip((s - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(s)


def plot_maps(path: Path, scene: str, cube: np.ndarray, mask: np.ndarray | None, maps: dict[str, np.ndarray],
              aucs: dict[str, float | None]) -> Path:
    """Panels of false colour, ground truth (none for an unlabelled scene, ``mask=None``), then each detector's
    map (up to 4 per row)."""
    first = 2 if mask is not None else 1
    panels = first + len(maps)
    cols = min(4, panels)
    rows = -(-panels // cols)
    fig = Figure(figsize=(3.0 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    f = reduction(*cube.shape[:2])
    shown = f" (drawn 1:{f})" if f > 1 else ""
    axes[0].imshow(false_colour(cube, step=f), interpolation="nearest")
    axes[0].set_title(f"false colour\n{cube.shape[0]} x {cube.shape[1]} x {cube.shape[2]}{shown}", fontsize=9)
    if mask is not None:
        axes[1].imshow(block_max(np.asarray(mask, dtype=bool), f), cmap="gray", interpolation="nearest", vmin=0,
                       vmax=1)
        axes[1].set_title(f"ground truth\n{int(mask.sum())} anomaly px", fontsize=9)
    image = None
    for ax, (name, scores) in zip(axes[first:], maps.items()):
        # scaled after the reduction: the colours spread over the block maxima actually shown
        image = ax.imshow(display_scale(block_max(np.asarray(scores), f)), cmap="inferno", interpolation="nearest",
                          vmin=0, vmax=1)
        auc = aucs.get(name)
        if mask is None:
            ax.set_title(name, fontsize=9)
        else:
            ax.set_title(f"{name}\nAUC {auc:.4f}" if auc is not None else f"{name}\nAUC n/a", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[panels:]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[:panels]), fraction=0.025, pad=0.02,
                     label=f"score, min to {DISPLAY_PERCENTILE:g}th percentile")
    fig.suptitle(f"{scene}: anomaly maps", fontsize=11)
    return _save(fig, path)


def thin_curve(pf: np.ndarray, pd: np.ndarray, points: int = ROC_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``points`` points of a ROC curve, evenly spaced in log Pf (the axis it is drawn on), its
    ends and steps kept: ``pd`` at each chosen Pf is the curve's highest there."""
    if len(pf) <= points:
        return pf, pd
    grid = np.geomspace(pf[0], pf[-1], points)
    idx = np.unique(np.concatenate([[0, len(pf) - 1], np.searchsorted(pf, grid, side="right") - 1]))
    return pf[idx], pd[idx]


def plot_roc(path: Path, scene: str, mask: np.ndarray, maps: dict[str, np.ndarray],
             aucs: dict[str, float | None]) -> Path:
    """ROC curves (Pd against Pf, log Pf axis so the low false-alarm end is visible) of every detector."""
    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.subplots()
    truth = np.asarray(mask, dtype=bool).ravel()
    floor = 1.0 / max(int((~truth).sum()), 1)   # one background pixel: the smallest non-zero Pf
    if truth.any() and not truth.all():
        for name, scores in maps.items():
            pf, pd, _ = roc_curve(truth, np.asarray(scores, dtype=np.float64).ravel())
            pf, pd = thin_curve(np.maximum(pf, floor), pd)
            ax.plot(pf, pd, label=_label(name, aucs.get(name)), linewidth=1.4)
    else:
        ax.text(0.5, 0.5, "ROC undefined: the mask has no anomaly or no background pixel",
                ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false alarm rate Pf (log scale)")
    ax.set_ylabel("detection rate Pd")
    ax.set_title(f"{scene}: ROC")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_training(history: list[dict], path: Path, selection: str = "") -> Path:
    """train.py's curve: the three (unweighted) loss terms per epoch on a log scale, and the FEN+GRX mAUC
    on the test and validation sets (where evaluated), the selected epoch marked."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 3.8))
    losses, aucs = fig.subplots(1, 2)
    for key, label in (("sim", "L_sim"), ("rec", "L_rec"), ("zc", "L_zc"), ("loss", "total")):
        losses.plot(epochs, [r[key] for r in history], marker="o", ms=3, label=label,
                    lw=2 if key == "loss" else 1)
    losses.set_yscale("log")
    losses.set_xlabel("epoch")
    losses.set_title("training loss (epoch means)")
    losses.legend(fontsize=8)
    for key, label in (("test_mAUC", "test"), ("val_mAUC", "val"), ("val_real_mAUC", "val_real")):
        values = [np.nan if r.get(key) is None else r[key] for r in history]
        if not all(np.isnan(values)):
            aucs.plot(epochs, values, marker="o", ms=3, label=f"FEN+GRX {label} mAUC")
    chosen = [r["epoch"] for r in history if r.get("selected")]
    for e in chosen:
        aucs.axvline(e, color="grey", ls=":", label=f"selected (epoch {e})")
    aucs.set_xlabel("epoch")
    aucs.set_title("FEN+GRX mAUC" + (f"\nselection: {selection}" if selection else ""), fontsize=9)
    if aucs.lines:
        aucs.legend(fontsize=8)
    return _save(fig, path)
