"""Result tables: per-scene AUC and seconds for each detector, the mean row, CSV and JSON forms; and the
3D-ROC measures (evaluation/roc3d.py) as a second, long-format table (one row per scene and detector)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation.roc3d import FIELDS as ROC3D_FIELDS
from evaluation.roc3d import Roc3D


@dataclass
class SceneResult:
    """One scene's evaluation: per detector its ROC ``auc`` (None where the mask makes it undefined: ``note``
    says why), ``roc3d`` measures and ``seconds``; ``scores_file``, the ``.npz`` of its score maps if written."""

    name: str
    auc: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    note: str | None = None  # why the AUC is undefined, if it is
    roc3d: dict[str, Roc3D] = field(default_factory=dict)
    warning: str | None = None  # why its AUCs mean nothing although defined (degenerate_warning)
    scores_file: Path | None = None
    facts: dict = field(default_factory=dict)  # what the file told of the scene: nodata counts, wavelengths
    labelled: bool = True  # False: no ground truth, so no AUC or 3D-ROC (its maps and detections only)
    pixels: int = 0  # pixels scored
    detections: dict[str, int] = field(default_factory=dict)  # detections per detector, where they were written


#: A score map whose spread is at most this fraction of its magnitude is constant to within rounding (float32
#: rounding is 6e-8 of a value; a real map spreads over a good part of its range).
FLAT_RTOL = 1e-6


def is_flat(scores: np.ndarray) -> bool:
    """Whether a score map is the same value everywhere to within rounding (:data:`FLAT_RTOL`)."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    return hi - lo <= FLAT_RTOL * max(abs(lo), abs(hi))


def degenerate_warning(maps: dict[str, np.ndarray], bands: int) -> str | None:
    """Why the AUCs of a scene mean nothing although they are defined, or None: fewer pixels than bands
    (``pixels <= bands``: the covariance of the mean-free pixels is singular by construction) and the
    detectors whose score map is constant to within rounding (its AUC only reflects ties and rounding)."""
    if not maps:
        return None
    pixels = next(iter(maps.values())).size
    parts = []
    if pixels <= bands:
        parts.append(f"{pixels} pixels for {bands} bands: the covariance is singular by construction")
    flat = [d for d, m in maps.items() if is_flat(m)]
    if flat:
        parts.append(f"{', '.join(flat)} score map{'s' if len(flat) > 1 else ''} constant to within rounding")
    return "; ".join(parts) or None


def mean_auc(results: list[SceneResult], detectors: list[str]) -> dict[str, float | None]:
    """Mean AUC per detector over the scenes where it is defined (None if it is defined nowhere)."""
    out = {}
    for d in detectors:
        vals = [r.auc[d] for r in results if r.auc.get(d) is not None]
        out[d] = sum(vals) / len(vals) if vals else None
    return out


def fmt(v: float | None, digits: int = 4) -> str:
    """``v`` with ``digits`` decimals; ``n/a`` for a value that is undefined (None or NaN) or not measured."""
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def mean_seconds(results: list[SceneResult], detectors: list[str]) -> dict[str, float]:
    return {d: sum(r.seconds.get(d, 0.0) for r in results) / max(len(results), 1) for d in detectors}


def render(head: list[str], rows: list[list[str]], footer: list[list[str]], text_cols: int = 1) -> list[str]:
    """Aligned plain-text lines: header, rule, rows (then a rule, if any), footer rows. The first
    ``text_cols`` columns are left-aligned, the rest (numbers) right-aligned."""
    widths = [max(len(row[i]) for row in [head] + rows + footer) for i in range(len(head))]
    line = lambda row: "  ".join(c.ljust(w) if i < text_cols else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(row, widths)))
    sep = "-" * len(line(head))
    body = [line(r) for r in rows] + [sep] if rows else []
    return [line(head), sep] + body + [line(r) for r in footer]


def format_table(results: list[SceneResult], detectors: list[str]) -> str:
    """A plain-text table: scene, AUC per detector, seconds per detector, and the mean row."""
    head = ["scene"] + [f"AUC {d}" for d in detectors] + [f"s {d}" for d in detectors]
    rows = [[r.name] + [fmt(r.auc.get(d), 4) for d in detectors] + [fmt(r.seconds.get(d), 3) for d in detectors]
            for r in results]
    means, sec = mean_auc(results, detectors), mean_seconds(results, detectors)
    n_def = sum(1 for r in results if r.note is None)
    mean_row = ([f"mean ({n_def} scenes)"] + [fmt(means[d], 4) for d in detectors]
                + [fmt(sec[d], 3) for d in detectors])
    out = render(head, rows, [mean_row])
    excluded = [r for r in results if r.note is not None]
    if excluded:
        out.append("AUC undefined, excluded from the mean: "
                   + "; ".join(f"{r.name} ({r.note})" for r in excluded))
    degenerate = [r for r in results if r.warning]
    if degenerate:
        out.append("warning: AUCs without meaning (shown as computed): "
                   + "; ".join(f"{r.name} ({r.warning})" for r in degenerate))
    return "\n".join(out)


def to_csv(results: list[SceneResult], detectors: list[str]) -> str:
    head = ["scene"] + [f"auc_{d}" for d in detectors] + [f"seconds_{d}" for d in detectors]
    lines = [",".join(head)]
    for r in results:
        lines.append(",".join([r.name] + ["" if r.auc.get(d) is None else f"{r.auc[d]:.6f}" for d in detectors]
                              + [f"{r.seconds.get(d, 0.0):.6f}" for d in detectors]))
    return "\n".join(lines) + "\n"


def _json_number(v: float | None) -> float | str | None:
    """Strict JSON has no infinities: an infinite SNPR (all background scores 0) is written as "inf"."""
    if v is None or math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def to_json(results: list[SceneResult], detectors: list[str], **extra) -> dict:
    """``{"scenes": [{"name", "auc", "seconds", "roc3d"}], "mean_auc": {...}, "mean_roc3d": {...}}`` plus
    ``extra`` keys (``roc3d`` only where it was computed)."""
    scenes = []
    for r in results:
        item = {"name": r.name, "auc": {d: r.auc.get(d) for d in detectors},
                "seconds": {d: r.seconds.get(d) for d in detectors}}
        if r.roc3d:
            item["roc3d"] = {d: {k: _json_number(v) for k, v in r.roc3d[d].as_dict().items()}
                             for d in detectors if d in r.roc3d}
        if r.note:
            item["note"] = r.note
        if r.warning:
            item["warning"] = r.warning
        item.update(r.facts)
        scenes.append(item)
    out = {"scenes": scenes, "mean_auc": mean_auc(results, detectors)}
    if any(r.roc3d for r in results):
        out["mean_roc3d"] = {d: {k: _json_number(v) for k, v in m.items()}
                             for d, m in mean_roc3d(results, detectors).items()}
    return {**out, **extra}


def mean_roc3d(results: list[SceneResult], detectors: list[str]) -> dict[str, dict[str, float | None]]:
    """Per detector, the mean of each 3D-ROC measure over the scenes where it is defined (mean aSNPR is the
    HAD100 table's mASNPR)."""
    out = {}
    for d in detectors:
        out[d] = {}
        for key in ROC3D_FIELDS:
            vals = [getattr(r.roc3d[d], key) for r in results if d in r.roc3d]
            vals = [v for v in vals if v is not None and not math.isnan(v)]
            out[d][key] = sum(vals) / len(vals) if vals else None
    return out


def _fmt_db(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def _roc3d_cells(m: dict[str, float | None]) -> list[str]:
    return [fmt(m["auc_pd_pf"], 4), fmt(m["auc_pd_tau"], 4), fmt(m["auc_pf_tau"], 4),
            _fmt_db(m["snpr"]), _fmt_db(m["asnpr"])]


def format_roc3d_table(results: list[SceneResult], detectors: list[str], per_scene: bool = True) -> str:
    """3D-ROC measures: one row per scene and detector (unless ``per_scene=False``), then the mean of each
    detector over the scenes."""
    head = ["scene", "detector"] + list(ROC3D_FIELDS.values()) + ["s"]
    rows = [[r.name, d] + _roc3d_cells(r.roc3d[d].as_dict()) + [fmt(r.seconds.get(d), 3)]
            for r in results for d in detectors if d in r.roc3d] if per_scene else []
    means, sec = mean_roc3d(results, detectors), mean_seconds(results, detectors)
    mean_rows = [[f"mean ({len(results)} scenes)", d] + _roc3d_cells(means[d]) + [fmt(sec[d], 3)]
                 for d in detectors]
    return "\n".join(render(head, rows, mean_rows, text_cols=2))


def roc3d_csv(results: list[SceneResult], detectors: list[str]) -> str:
    """Long-format CSV: ``scene,detector,auc_pd_pf,auc_pd_tau,auc_pf_tau,snpr_db,asnpr_db,seconds``."""
    lines = ["scene,detector,auc_pd_pf,auc_pd_tau,auc_pf_tau,snpr_db,asnpr_db,seconds"]
    for r in results:
        for d in detectors:
            if d not in r.roc3d:
                continue
            vals = [_json_number(v) for v in r.roc3d[d].as_dict().values()]
            cells = ["" if v is None else (v if isinstance(v, str) else f"{v:.6f}") for v in vals]
            lines.append(",".join([r.name, d] + cells + [f"{r.seconds.get(d, 0.0):.6f}"]))
    return "\n".join(lines) + "\n"
