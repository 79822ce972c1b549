"""Every Python block of README.md and docs/*.md runs as written, from the repository root, with the release
from ../shared (``FERD_WEIGHTS_DIR``) and its scenes (``FERD_DATA_DIR``, as after ``python -m data.download
abu``); a ``print`` line whose comment gives a value must print that value."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, SHARED, require_shared

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks() -> list[tuple[str, int, str]]:
    """``(file, line, code)`` of every fenced Python block."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in BLOCK.finditer(text):
            found.append((path.name, text[: m.start()].count("\n") + 1, m.group(1)))
    return found


def promised(code: str) -> list[str]:
    """What the block's ``print(...)  # value`` lines say they print."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s*#\s*(.+)$", code, re.M)]


def test_the_docs_have_python_blocks():
    assert len(python_blocks()) >= 2  # README's API and torch.hub examples at least


@pytest.mark.parametrize("name, line, code", python_blocks(), ids=lambda v: str(v)[:20])
def test_python_block_runs_as_written(name, line, code):
    require_shared()
    env = {**os.environ, "FERD_WEIGHTS_DIR": str(SHARED / "ferd-release"), "FERD_DATA_DIR": str(SHARED),
           "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{name} line {line}:\n{proc.stderr[-3000:]}"
    for value in promised(code):
        assert value in proc.stdout, f"{name} line {line}: printed {proc.stdout!r}, the comment says {value!r}"
