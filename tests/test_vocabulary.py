"""One vocabulary (docs/method.md, "Glossary"): the names retired for a cube being read and for the actions that
had two names do not come back in the code, and every name the glossary gives is defined where it says."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

#: Old name -> what replaced it (the readers of a scene: three names, docs/method.md sec. 9).
RETIRED = {"SceneSource": "SceneCube", "StoredCube": "SceneCube (stored)", "Cube": "SceneCube",
           "CubeAccess": "CubeReader", "TensorReader": "CubeReader", "PixelReader": "CubeReader.pixels",
           "BlockReader": "CubeReader.block", "band_major_reader": "CubeReader", "pixel_reader": "CubeReader.pixels",
           "block_reader": "CubeReader.block", "evaluate_scene": "measure_scene",
           "check_outputs": "check_result_paths / check_training_paths", "EvalCube": "EvalScene"}
#: Defined once, in this module only: ``pipeline.evaluate.evaluate`` (training's per-epoch AUC is fen_grx_auc).
ONE_PLACE = {"evaluate": "pipeline/evaluate.py"}
GLOSSARY = REPO / "docs" / "method.md"


def python_files() -> list[Path]:
    """The packages, the scripts, the benchmarks and the tests."""
    packages = [p for p in REPO.iterdir() if (p / "__init__.py").is_file()]
    files = [f for p in packages for f in p.rglob("*.py")] + sorted(REPO.glob("*.py"))
    return files + sorted((REPO / "benchmarks").rglob("*.py")) + sorted((REPO / "tests").rglob("*.py"))


def identifiers(tree: ast.AST) -> list[tuple[int, str]]:
    """Every name ``tree`` uses or defines: variables, attributes, imports, functions, classes, arguments."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.lineno, node.name))
        elif isinstance(node, ast.alias):
            found += [(getattr(node, "lineno", 0), part) for part in (node.name.split(".")[-1], node.asname) if part]
        elif isinstance(node, ast.arg):
            found.append((node.lineno, node.arg))
    return found


def definitions(path: Path) -> set[str]:
    """The names ``path`` defines at module level or in its classes: classes, functions, assignments."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def glossary_rows() -> list[tuple[str, str]]:
    """``(name, module)`` of every row of the glossary's tables."""
    text = GLOSSARY.read_text()
    section = text[text.index("## 9. Glossary"):]
    return re.findall(r"^\| `(\w+)` \| `([\w/]+\.py)` \|", section, flags=re.M)


def test_no_retired_name_in_the_code():
    found = [f"{f.relative_to(REPO)}:{line}: {name} (now {RETIRED[name]})"
             for f in python_files() for line, name in identifiers(ast.parse(f.read_text())) if name in RETIRED]
    assert not found, "retired names: " + "; ".join(found)


def test_an_action_name_defined_in_one_place():
    for name, home in ONE_PLACE.items():
        homes = sorted(str(f.relative_to(REPO)) for f in python_files()
                       if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
                              for n in ast.walk(ast.parse(f.read_text()))))
        assert homes == [home], f"{name} defined in {homes}"


def test_no_retired_reader_name_in_the_docs():
    unique = [n for n in RETIRED if n != "Cube"]  # "Cube" is also an English word of the docs
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [f"{d.name}: {n}" for d in docs for n in unique if re.search(rf"\b{n}\b", d.read_text())]
    assert not found


def test_the_probe_finds_a_retired_name():
    """The walk above could not pass by finding nothing: it sees an import, an annotation and an attribute."""
    tree = ast.parse("from pipeline.sources import StoredCube\ndef f(x: PixelReader): return m.evaluate_scene")
    assert {n for _, n in identifiers(tree)} >= {"StoredCube", "PixelReader", "evaluate_scene"}


def test_the_glossary_has_three_reading_names():
    text = GLOSSARY.read_text()
    reading = text[text.index("Reading a scene:"):text.index("The other words.")]
    assert re.findall(r"^\| `(\w+)` \|", reading, flags=re.M) == ["LazyCube", "SceneCube", "CubeReader"]


@pytest.mark.parametrize("name,module", glossary_rows())
def test_every_glossary_name_is_defined_where_it_says(name, module):
    assert name in definitions(REPO / module), f"docs/method.md's glossary: {name} is not defined in {module}"


def test_the_glossary_is_read():
    names = {n for n, _ in glossary_rows()}
    assert {"LazyCube", "SceneCube", "CubeReader", "Scene", "FEN", "Detector", "EvalSettings", "evaluate"} <= names
