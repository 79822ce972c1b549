"""The reference figures copied into the code equal those of ../shared/reference/README.md.

Tests and benchmarks keep their own copies (they must run without ../shared), so nothing else would notice
the two drifting apart: ``REFERENCE_AUCS`` and ``REFERENCE_SLRX_AUCS`` (detectors/reference.py) against the
AUC table, ``HAD100_TOOL`` (tests/test_roc3d.py) against the 3D-ROC table. The tables are read from the
Markdown as it is written, so a change of either side fails here.
"""
from __future__ import annotations

import sys

import pytest
from conftest import SHARED, require_shared
from test_roc3d import HAD100_TOOL

from detectors.reference import REFERENCE_AUCS, REFERENCE_SLRX_AUCS

README = SHARED / "reference" / "README.md"


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a Markdown text: a list of rows (header first, the ``|---|`` line left out), each a list
    of its cells, stripped."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def table_with(header_start: list[str]) -> list[list[str]]:
    """The body of the one table of the reference README whose header starts with ``header_start``."""
    found = [t for t in markdown_tables(require_shared(README).read_text()) if t[0][:len(header_start)] == header_start]
    assert len(found) == 1, f"{README}: {len(found)} tables whose header starts {header_start}"
    return found[0][1:]


def test_markdown_tables_reads_cells():
    text = "x\n| a | b |\n|---|:-:|\n| 1 |  |\n\n| c |\n|---|\n| 2 |\n"
    assert markdown_tables(text) == [[["a", "b"], ["1", ""]], [["c"], ["2"]]]


def test_auc_copies_equal_the_reference_table():
    """8 GRX / FEN+GRX rows (4 weight sets x 2 scenes) and 2 SLRX / FEN+SLRX rows, every cell of each."""
    grx, slrx = {}, {}
    for weights, scene, *aucs in table_with(["weights (B bands)", "scene", "GRX", "FEN+GRX"]):
        name, bands = weights.removesuffix("bands").rsplit("-", 1)
        grx.setdefault((name, int(bands)), {})[scene] = (float(aucs[0]), float(aucs[1]))
        if aucs[2]:
            assert weights == "aviris-200bands"  # the only weights with SLRX figures
            slrx[scene] = (float(aucs[2]), float(aucs[3]))
    assert sum(map(len, grx.values())) == 8 and len(slrx) == 2
    assert REFERENCE_AUCS == grx
    assert REFERENCE_SLRX_AUCS == slrx


def test_had100_tool_copy_equals_the_reference_table():
    """All 8 rows (2 scenes x 4 detectors) and their 5 measures."""
    rows = table_with(["scene", "detector", "AUC(Pd,Pf)"])
    reference = {(scene, detector): tuple(float(v) for v in values) for scene, detector, *values in rows}
    assert len(reference) == len(rows) == 8
    assert HAD100_TOOL == reference
    assert all(len(v) == 5 for v in reference.values())


@pytest.mark.parametrize("table", ["auc", "roc3d"])
def test_a_changed_cell_is_caught(table, monkeypatch):
    """The comparison sees one digit: the copy with one cell changed by 1e-4 no longer equals the file."""
    if table == "auc":
        changed = {k: dict(v) for k, v in REFERENCE_AUCS.items()}
        grx, fen = changed[("had100", 50)]["abu-airport-2"]
        changed[("had100", 50)]["abu-airport-2"] = (grx, round(fen + 1e-4, 4))
        monkeypatch.setattr(sys.modules[__name__], "REFERENCE_AUCS", changed)
        with pytest.raises(AssertionError):
            test_auc_copies_equal_the_reference_table()
    else:
        changed = dict(HAD100_TOOL)
        values = changed[("hydice", "SLRX")]
        changed[("hydice", "SLRX")] = (*values[:4], round(values[4] + 1e-4, 4))
        monkeypatch.setattr(sys.modules[__name__], "HAD100_TOOL", changed)
        with pytest.raises(AssertionError):
            test_had100_tool_copy_equals_the_reference_table()
