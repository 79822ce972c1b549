"""Library errors speak in the library's terms, the scripts in their flags (utils/cli.py ``flag_text``).

Code under data/, model/, detectors/, evaluation/, weights/ and pipeline/ names a parameter as ``name=value``
(what a Python caller passed); test.py and train.py print the same error with the flag. Both are one line.
"""
from __future__ import annotations

import argparse
import ast
import re

import numpy as np
import pytest
from conftest import REPO

from data.preprocess import preprocess
from detectors.lrx import check_windows
from detectors.blocks import resolve_block_size
from utils.cli import flag_text
from utils.errors import FerdError
from weights.release import load_fen

LIBRARY = ("data", "model", "detectors", "evaluation", "weights", "pipeline", "training")
FLAG = re.compile(r"(?<![\w-])--[a-z]")


def message_strings(path) -> list[tuple[int, str]]:
    """Every string constant of ``path`` that is not a docstring nor an ``add_argument`` help (a module's own
    small CLI, e.g. data/synthetic.py's generator, speaks in flags by right)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.Call) and (getattr(node.func, "attr", "") in ("add_argument", "ArgumentParser")
                                           or getattr(node.func, "id", "") == "Option"):  # help texts
            skip |= {id(n) for n in ast.walk(node)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


@pytest.mark.parametrize("package", LIBRARY)
def test_library_strings_name_no_flag(package):
    found = [f"{path.relative_to(REPO)}:{line}: {text!r}" for path in sorted((REPO / package).glob("*.py"))
             for line, text in message_strings(path) if FLAG.search(text)]
    assert not found, "flag text in library code:\n" + "\n".join(found)


def api_error(call) -> str:
    with pytest.raises(FerdError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("call, param", [
    (lambda: preprocess(np.ones((4, 4, 3), np.float32), 7), "bands=7"),
    (lambda: preprocess(np.ones((4, 4, 3), np.float32), 2, 5), "start=5"),
    (lambda: check_windows(4, 9, 20, 20), "lrx_inner=4"),
    (lambda: check_windows(3, 31, 20, 20), "lrx_outer=31"),
    (lambda: resolve_block_size(50, 20, 20, 0), "block_num=0"),
    (lambda: load_fen("had100", 7), "bands=7"),
])
def test_python_api_names_the_parameter(call, param):
    text = api_error(call)
    assert param in text and not FLAG.search(text)


def test_flag_text_turns_parameters_into_flags():
    p = argparse.ArgumentParser()
    p.add_argument("--input_channel", type=int)
    p.add_argument("--save_envi", action=argparse.BooleanOptionalAction)
    p.add_argument("--teacher")
    p.add_argument("--max_memory_gb", type=float)
    assert flag_text("x.mat: has 3 bands, fewer than start=0 + bands=7; use bands=3 or less", p) == \
        "x.mat: has 3 bands, fewer than start=0 + --input_channel 7; use --input_channel 3 or less"
    assert flag_text("save_envi=True: a.mat is not ENVI; give ENVI or save_envi=False", p) == \
        "--save_envi: a.mat is not ENVI; give ENVI or --no-save_envi"
    assert flag_text("teacher='imagenet': not cached; use teacher=<PATH> or teacher='random'", p) == \
        "--teacher imagenet: not cached; use --teacher PATH or --teacher random"
    assert flag_text("raise max_memory_gb=<GiB>, or lrx_outer=5 (no such flag here)", p) == \
        "raise --max_memory_gb GiB, or lrx_outer=5 (no such flag here)"


@pytest.mark.parametrize("argv, flag", [
    (["--input_channel", "7", "--weights", "had100"], "--input_channel 7"),
    (["--lrx_inner", "4", "--detectors", "LRX"], "--lrx_inner 4"),
    (["--lrx_outer", "41", "--detectors", "LRX"], "--lrx_outer 41"),
    (["--block_size", "400", "--detectors", "SLRX"], "--block_size 400"),
])
def test_test_py_names_the_flag(test_cli, tmp_path, capsys, argv, flag):
    cube = tmp_path / "s.npy"
    np.save(cube, np.random.default_rng(0).random((30, 30, 6), dtype=np.float32))
    from PIL import Image
    Image.fromarray(np.eye(30, dtype=np.uint8) * 255).save(tmp_path / "s.png")
    code = test_cli.main(["--scenes", str(cube), "--no-progress", "--save_dir", str(tmp_path / "r"),
                          "--input_channel", "6", *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("test.py: error: "), lines
    assert flag in lines[0] and not re.search(r"\b[a-z_]+=\S", lines[0]), lines[0]


def test_train_py_names_the_flag(train_cli, tmp_path, capsys):
    """A library error (the teacher file) through train.py: the flag, one line."""
    code = train_cli.main(["--teacher", str(tmp_path / "none.pt"), "--epochs", "1", "--save_dir", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"--teacher {tmp_path / 'none.pt'}" in lines[0], lines


def bare_option_names(texts: list[tuple[int, str]], names: set[str]) -> list[tuple[int, str, str]]:
    """``(line, name, text)`` for each of ``names`` written bare in ``texts``: neither ``--name`` (flag text)
    nor ``name=value`` (which :func:`flag_text` turns into the flag), so the scripts' users would read a
    Python name where they type an option. A string that is only the name (a key, a list of names) is none."""
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b(?!=)")
    return [(line, m.group(1), text) for line, text in texts if text not in names
            for m in pattern.finditer(text)]


def test_bare_option_names_are_found():
    names = {"max_memory_gb", "lrx_outer"}
    texts = [(1, "or raise max_memory_gb (the cubes)"), (2, "raise max_memory_gb=<GiB>"), (3, "--lrx_outer 5"),
             (4, "lrx_outer"), (5, "its lrx_outer."), (6, "x.max_memory_gb")]
    assert [(line, name) for line, name, _ in bare_option_names(texts, names)] == [(1, "max_memory_gb"),
                                                                                  (5, "lrx_outer")]


def test_every_refusal_writes_options_as_flags(test_cli, train_cli):
    """Every message string of the library and training/ that names one of the scripts' options does so as
    ``name=value``, which the scripts print as ``--name value`` (the full-$TMPDIR refusal once ended "raise
    max_memory_gb", no ``--``). Options whose name is an English word too (``--lr``, ``--seed``, ``--epochs``)
    cannot be told apart from prose, so the check covers the names with an underscore: 39 of them."""
    names = {a.dest for cli in (test_cli, train_cli) for a in cli.build_parser()._actions
             if a.option_strings and "_" in a.dest}
    assert len(names) >= 35 and "max_memory_gb" in names and "input_channel" in names
    found = [f"{path.relative_to(REPO)}:{line}: {name} in {text!r}"
             for package in LIBRARY + ("training", "utils") for path in sorted((REPO / package).glob("*.py"))
             for line, name, text in bare_option_names(message_strings(path), names)]
    assert not found, "an option named without -- or =value:\n" + "\n".join(found)
