"""The house rules of the code layout (README "Layout"): packages by role, on floors, no import cycles.

Floors, low to high: ``utils`` (plumbing) <- ``data``, ``model`` <- ``detectors``, ``evaluation``,
``weights`` <- ``pipeline``, ``training`` <- the scripts (test.py, train.py, hubconf.py). A module imports
only from its own package or from a lower floor, at module level or inside a function alike.

Sizes: the scripts at most 200 lines, no other module over 400, no function over 50 (the scripts'
``parse_args``/``build_parser``, a list of options, excepted).

Use: every public function and class of the packages serves the packages or the scripts, or README/docs show
it; code only tests use lives in tests/helpers.py, code only benchmarks use in benchmarks/.
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
    found.update({".".join(p.relative_to(ROOT).with_suffix("").parts): p
                  for p in sorted((ROOT / "benchmarks").rglob("*.py"))})
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


#: Package names nothing in the packages or the scripts uses, kept on purpose: ``{module: {name: why}}``.
#: A name README or docs/ shows in code (```...``` or `...`) is public API and needs no entry here.
SERVES_OUTSIDE = {
    "detectors.reference": {"*": "the per-pixel oracles of method sec. 4 and the authors' AUCs: tests and "
                                 "benchmarks check and time the detectors against them"},
    "detectors.registry": {"register": "the way in for a new detector: its file ends ``MY = register(MyDetector())``"},
    "weights.imagenet": {"load_teacher": "a teacher filled in one call (model/teacher.py points to it); train.py "
                                         "takes its two steps apart to report a missing file before building"},
    "utils.device": {"cpu_model": "the CPU line the benchmarks and the test summary print"},
    "utils.shared": {"shared_dir": "the data folder ($FERD_DATA_DIR, ../shared) tests and benchmarks read"},
}


def used_names(path: Path) -> set[str]:
    """Identifiers ``path`` reads: names, attributes, imported names (anywhere in the file)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.alias):
            out.add(node.name.split(".")[-1])
    return out


def documented_names() -> set[str]:
    """Identifiers in the code blocks and code spans of README.md and docs/*.md."""
    import re

    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    code = re.findall(r"```.*?```|`[^`\n]+`", text, flags=re.S)
    return set(re.findall(r"[A-Za-z_]\w*", "\n".join(code)))


def public_definitions(path: Path) -> list[str]:
    """The module's top-level public functions and classes."""
    return [n.name for n in ast.parse(path.read_text()).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]


def test_no_package_code_serves_only_tests_or_benchmarks():
    """Every public function and class of the packages is used by the packages or the scripts (its own module
    counts beyond its definition), shown in README/docs, or kept on purpose in SERVES_OUTSIDE: code only tests
    use lives in tests/ (tests/helpers.py), code only benchmarks use in benchmarks/."""
    package_modules = {m: p for m, p in modules().items() if "." in m or (ROOT / m).is_dir()}
    counts: dict[str, int] = {}
    for path in modules().values():
        for name in used_names(path):
            counts[name] = counts.get(name, 0) + 1
    documented = documented_names()
    unused = [f"{module}.{name}" for module, path in sorted(package_modules.items())
              for name in public_definitions(path)
              if not counts.get(name) and name not in documented
              and not ({"*", name} & set(SERVES_OUTSIDE.get(module, {})))]
    assert not unused, ("used by nothing in the packages or the scripts (move them to tests/ or benchmarks/, or "
                        "list them in SERVES_OUTSIDE with the reason): " + ", ".join(unused))
