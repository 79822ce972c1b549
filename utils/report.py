"""Result tables: per-scene AUC and seconds for each detector, the mean row, CSV and JSON forms."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SceneResult:
    name: str
    auc: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    note: str | None = None  # why the AUC is undefined, if it is


def mean_auc(results: list[SceneResult], detectors: list[str]) -> dict[str, float | None]:
    """Mean AUC per detector over the scenes where it is defined (None if it is defined nowhere)."""
    out = {}
    for d in detectors:
        vals = [r.auc[d] for r in results if r.auc.get(d) is not None]
        out[d] = sum(vals) / len(vals) if vals else None
    return out


def _fmt(v: float | None, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_table(results: list[SceneResult], detectors: list[str]) -> str:
    """A plain-text table: scene, AUC per detector, seconds per detector, and the mean row."""
    head = ["scene"] + [f"AUC {d}" for d in detectors] + [f"s {d}" for d in detectors]
    rows = [[r.name] + [_fmt(r.auc.get(d), 4) for d in detectors] + [_fmt(r.seconds.get(d), 3) for d in detectors]
            for r in results]
    means = mean_auc(results, detectors)
    sec = {d: sum(r.seconds.get(d, 0.0) for r in results) / max(len(results), 1) for d in detectors}
    n_def = sum(1 for r in results if r.note is None)
    rows.append([f"mean ({n_def} scenes)"] + [_fmt(means[d], 4) for d in detectors]
                + [_fmt(sec[d], 3) for d in detectors])
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    line = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    sep = "-" * len(line(head))
    out = [line(head), sep] + [line(r) for r in rows[:-1]] + [sep, line(rows[-1])]
    excluded = [r for r in results if r.note is not None]
    if excluded:
        out.append("AUC undefined, excluded from the mean: "
                   + "; ".join(f"{r.name} ({r.note})" for r in excluded))
    return "\n".join(out)


def to_csv(results: list[SceneResult], detectors: list[str]) -> str:
    head = ["scene"] + [f"auc_{d}" for d in detectors] + [f"seconds_{d}" for d in detectors]
    lines = [",".join(head)]
    for r in results:
        lines.append(",".join([r.name] + ["" if r.auc.get(d) is None else f"{r.auc[d]:.6f}" for d in detectors]
                              + [f"{r.seconds.get(d, 0.0):.6f}" for d in detectors]))
    return "\n".join(lines) + "\n"


def to_json(results: list[SceneResult], detectors: list[str], **extra) -> dict:
    """``{"scenes": [{"name", "auc", "seconds"}], "mean_auc": {...}}`` plus ``extra`` keys."""
    scenes = []
    for r in results:
        item = {"name": r.name, "auc": {d: r.auc.get(d) for d in detectors},
                "seconds": {d: r.seconds.get(d) for d in detectors}}
        if r.note:
            item["note"] = r.note
        scenes.append(item)
    return {"scenes": scenes, "mean_auc": mean_auc(results, detectors), **extra}
