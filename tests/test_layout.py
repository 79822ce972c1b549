"""The house rules of the code layout (README "Layout"): packages by role, on floors, no import cycles.

Floors, low to high: ``utils`` (plumbing) <- ``data``, ``model`` <- ``detectors``, ``evaluation``,
``weights`` <- ``pipeline``, ``training`` <- the scripts (test.py, train.py, hubconf.py). A module imports
only from its own package or from a lower floor, at module level or inside a function alike.

Sizes: the scripts at most 200 lines, no other module over 400, no function over 50 (the scripts'
``parse_args``/``build_parser``, a list of options, excepted).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO as ROOT

FLOORS = {"utils": 0, "data": 1, "model": 1, "detectors": 2, "evaluation": 2, "weights": 2, "pipeline": 3,
          "training": 3, "test": 4, "train": 4, "hubconf": 4, "demo": 4}


def modules() -> dict[str, Path]:
    """Every module of the project's packages and scripts, by dotted name."""
    found = {name: ROOT / f"{name}.py" for name in ("test", "train", "hubconf", "demo")}
    for package in (p for p in FLOORS if (ROOT / p).is_dir()):
        for path in sorted((ROOT / package).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out |= {n for n in names if n in known}
    return out


GRAPH = {name: imports(path, set(modules())) - {name} for name, path in modules().items()}


def test_every_package_is_on_a_floor():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"}
    assert packages == {p for p in FLOORS if (ROOT / p).is_dir()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_or_sideways_within_the_package(module):
    top = module.split(".")[0]
    for other in GRAPH[module]:
        other_top = other.split(".")[0]
        assert other_top == top or FLOORS[other_top] < FLOORS[top], f"{module} imports {other} (floor " \
            f"{FLOORS[other_top]}, not below {FLOORS[top]})"


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(GRAPH[name]):
            assert state.get(other) != 1, "import cycle: " + " -> ".join(path + [name, other])
            if other not in state:
                visit(other, path + [name])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])


SCRIPT_LINES, MODULE_LINES, FUNCTION_LINES = 200, 400, 50
#: The option lists: long by nature, read as a table.
LONG_FUNCTIONS = {("test", "build_parser"), ("train", "build_parser")}


def source_files() -> dict[str, Path]:
    """Every module outside tests/ (the packages, the scripts, benchmarks/)."""
    found = dict(modules())
    found.update({f"benchmarks.{p.stem}": p for p in sorted((ROOT / "benchmarks").glob("*.py"))})
    return found


@pytest.mark.parametrize("module", sorted(source_files()))
def test_module_size(module):
    lines = len(source_files()[module].read_text().splitlines())
    limit = SCRIPT_LINES if module in ("test", "train") else MODULE_LINES
    assert lines <= limit, f"{module}: {lines} lines, more than {limit}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_function_size(module):
    tree = ast.parse(modules()[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (module, node.name) not in LONG_FUNCTIONS:
            lines = node.end_lineno - node.lineno + 1
            assert lines <= FUNCTION_LINES, f"{module}.{node.name}: {lines} lines, more than {FUNCTION_LINES}"
