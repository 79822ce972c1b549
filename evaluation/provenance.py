"""Where a result came from, recorded in the files test.py writes: the bands, the weights (each file's path and
SHA-256), the detectors with their options, the scenes' files and the software. And the manifest of a run
(``SAVE_DIR/run.json``: the provenance and every file the run wrote), which lets the next run into the same
folder say what it replaced and remove what the earlier run wrote and it did not (stale maps beside new tables).

Where each output keeps it: ``auc.csv`` and ``roc3d.csv`` in ``# key: <JSON>`` lines above the header
(``pandas.read_csv(path, comment="#")`` reads the table), each ``scores/<scene>.npz`` in a ``provenance``
entry (a JSON string: ``json.loads(str(npz["provenance"]))``), the ``--json`` file and the GeoJSON detections
in a ``provenance`` member, GeoTIFF maps in a ``ferd_provenance`` tag; the detection CSVs stay plain tables
for GIS tools (their provenance: ``run.json`` beside them, which lists them).
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from utils.io import save_json

#: The manifest of the last run written into a SAVE_DIR.
MANIFEST = "run.json"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Provenance:
    """What produced a run's results. ``bands``: ``[start, stop)``; ``weights``: the ``weights`` setting (None
    when no detector uses the FEN) and ``weights_files`` ``{path: sha256}``; ``detectors``: each detector's
    options ``{name: {option: value}}``; ``scenes``: ``{scene name: its file}``; ``software``: versions."""

    bands: tuple[int, int]
    weights: str | None
    weights_files: dict[str, str]
    detectors: dict[str, dict[str, object]]
    scenes: dict[str, str] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=dict)
    created: str = ""

    def of_scene(self, name: str) -> "Provenance":
        """The same with ``scenes`` narrowed to one scene (what a per-scene file records)."""
        return replace(self, scenes={name: self.scenes[name]} if name in self.scenes else {})

    def as_dict(self) -> dict:
        out = asdict(self)
        out["bands"] = list(self.bands)
        return out

    def csv_lines(self) -> str:
        """``# key: <JSON>`` lines, one per field, to put above a CSV header."""
        return comment_lines(self.as_dict().items())

    def npz_entry(self) -> np.ndarray:
        """A 0-d unicode array of the JSON (``np.load`` reads it without pickle)."""
        return np.array(json.dumps(self.as_dict()))


def comment_lines(items: Iterable[tuple[str, object]]) -> str:
    """``# key: <JSON>`` lines above a CSV header (test.py's tables, train.py's; :func:`read_csv_provenance`)."""
    return "".join(f"# {k}: {json.dumps(v)}\n" for k, v in items)


def software() -> dict[str, str]:
    """The versions (:func:`_versions`), a copy (the record it goes into may be changed)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    """The versions a result depends on: this project's git commit (``-dirty`` with uncommitted changes to
    tracked files; absent outside a git checkout), torch and numpy. Asked of git once per process."""
    import torch

    out = {"torch": str(torch.__version__), "numpy": str(np.__version__)}  # TorchVersion: no pickle-free load
    git = ["git", "-C", str(ROOT)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0 and commit.stdout.strip():
            changed = subprocess.run([*git, "diff-index", "HEAD"], capture_output=True, text=True, timeout=10)
            out["ferd"] = commit.stdout.strip()[:12] + ("-dirty" if changed.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):  # no git: the versions alone
        pass
    return out


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_csv_provenance(path: Path) -> dict:
    """The ``# key: <JSON>`` lines above a CSV's header, as a dict (what :meth:`Provenance.csv_lines` wrote)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        out[key] = json.loads(value)
    return out


def previous_manifest(save_dir: Path) -> dict | None:
    """The manifest an earlier run left in ``save_dir`` (None: none, or not readable as one)."""
    try:
        manifest = json.loads((save_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), list) else None


def write_manifest(save_dir: Path, provenance: Provenance, written: list[Path]) -> list[str]:
    """Write ``save_dir/run.json`` (the provenance and the files this run wrote, relative to ``save_dir``),
    then remove the files the previous run listed that this run did not write (its maps of other scenes,
    plots, detections: stale beside the new tables); returns what to say about the earlier run, one line each."""
    save_dir = Path(save_dir)
    previous, existed = previous_manifest(save_dir), (save_dir / MANIFEST).exists()
    mine = sorted({rel for p in written if (rel := _relative(p, save_dir)) is not None})
    save_json({**provenance.as_dict(), "files": mine}, save_dir / MANIFEST)
    if previous is None:  # a file of that name that no run of ours wrote: said, and nothing removed on its word
        return [f"{save_dir / MANIFEST}: replaced a file that was not a run manifest (no list of an earlier run's "
                "files in it: none removed)"] if existed else []
    old = [f for f in previous["files"] if isinstance(f, str) and _inside(save_dir, f)]
    replaced = [f for f in old if f in mine]
    stale = [f for f in old if f not in mine]
    for f in stale:
        (save_dir / f).unlink(missing_ok=True)
    lines = []
    when = previous.get("created") or "an earlier run"
    if replaced:
        lines.append(f"{save_dir}: replaced {len(replaced)} file(s) of the run of {when} ({_some(replaced)})")
    if stale:
        lines.append(f"{save_dir}: removed {len(stale)} file(s) of the run of {when} that this run did not write "
                     f"({_some(stale)})")
    return lines


def _relative(path: Path, root: Path) -> str | None:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:  # written outside save_dir (--json elsewhere): not the folder's to manage
        return None


def _inside(root: Path, rel: str) -> bool:
    """Whether ``rel`` (from a manifest, so not trusted) names a file inside ``root``."""
    target = os.path.abspath(root / rel)
    return target.startswith(os.path.abspath(root) + os.sep) and Path(rel).name != MANIFEST


def _some(files: list[str], shown: int = 3) -> str:
    return ", ".join(files[:shown]) + (f" and {len(files) - shown} more" if len(files) > shown else "")
