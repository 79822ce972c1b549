"""Where the read-only shared folder is (SPEC.md, reference/, data/, ferd-release/): the one lookup that the tests
(tests/conftest.py) and the benchmarks (benchmarks/checks/gpu_check_commands.py) share, so that both find the same data.

``$FERD_DATA_DIR`` wins where it is set: a folder laid out like it, which a user with only the repository fills
with ``python -m data.download abu`` and ``python -m weights fetch``. A checkout beside it sees ``../shared``; a
copy of the tree sent to another machine (a GPU machine) may carry it as ``shared/`` inside. To add a place, add
it to :func:`shared_candidates`, in the order it should win.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The repository root (this file is ``utils/shared.py``).
REPO = Path(__file__).resolve().parents[1]
#: The environment variable naming a data folder laid out like the shared folder.
ENV_DATA_DIR = "FERD_DATA_DIR"


def shared_candidates(repo: Path = REPO) -> list[Path]:
    """The places the shared folder may be, first match wins: ``$FERD_DATA_DIR`` where set (then the only
    place: a user who names a folder means it), else ``../shared`` beside the checkout ``repo``, then a
    ``shared/`` inside it."""
    if os.environ.get(ENV_DATA_DIR):
        return [Path(os.environ[ENV_DATA_DIR])]
    return [repo.parent / "shared", repo / "shared"]


def shared_dir(repo: Path = REPO) -> Path:
    """The shared folder of the checkout ``repo``: the first of :func:`shared_candidates` that is a folder, else
    the first candidate (missing: callers skip or fail naming it)."""
    candidates = shared_candidates(repo)
    return next((p for p in candidates if p.is_dir()), candidates[0])
