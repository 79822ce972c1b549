"""The library's typed settings (pipeline.settings.EvalSettings, training.settings.TrainSettings): every
field checked when the object is made with a ``name=value`` error, the scripts' flags mapped onto them one
to one with the same defaults, and no argparse or Namespace inside the library's packages."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from conftest import REPO, load_script

from detectors.registry import DetectorOptions
from pipeline.settings import EvalSettings
from training.settings import TrainSettings
from utils.settings import SettingsError, field_defaults

LIBRARY = ("data", "model", "detectors", "evaluation", "weights", "pipeline", "training")


def library_modules() -> list[Path]:
    """Every module of the library's packages but their ``__main__.py`` (a command line of its own)."""
    return [p for pkg in LIBRARY for p in sorted((REPO / pkg).glob("*.py")) if p.name != "__main__.py"]


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_argparse_or_namespace_in_the_library(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(a.name != "argparse" for a in node.names), f"{path} imports argparse"
        if isinstance(node, ast.ImportFrom):
            assert node.module != "argparse", f"{path} imports from argparse"
        if isinstance(node, ast.Name):
            assert node.id != "Namespace", f"{path} line {node.lineno} names Namespace"
        if isinstance(node, ast.Attribute):
            assert node.attr != "Namespace", f"{path} line {node.lineno} names Namespace"


@pytest.mark.parametrize("script, settings_cls", [("test", EvalSettings), ("train", TrainSettings)])
def test_every_flag_is_a_setting_with_the_same_default(script, settings_cls):
    parser = load_script(script).build_parser()
    defaults = vars(field_defaults(settings_cls))
    defaults.update(DetectorOptions().asdict() if settings_cls is EvalSettings else {})
    defaults.pop("options", None)
    dests = {a.dest: a.default for a in parser._actions if a.option_strings and a.dest != "help"}
    assert set(dests) == set(defaults), set(dests) ^ set(defaults)
    for name, default in dests.items():
        value = defaults[name]
        if isinstance(value, tuple):
            default = tuple(default)
        assert default == value, f"--{name}: parser default {default!r}, settings default {value!r}"


@pytest.mark.parametrize("make, message", [
    (lambda: EvalSettings(input_channel=0), "input_channel=0: must be 1 or more"),
    (lambda: EvalSettings(input_channel=2.5), "input_channel=2.5: must be a whole number"),
    (lambda: EvalSettings(max_memory_gb=-1), "max_memory_gb=-1: must be a positive number"),
    (lambda: EvalSettings(detectors=["RX"]), "detectors=RX: not a detector; choose from GRX FEN+GRX"),
    (lambda: EvalSettings(scenes=["a.mat"], data_path="d"), "give one source of scenes"),
    (lambda: DetectorOptions(block_num=0), "block_num=0: must be 1 or more"),
    (lambda: DetectorOptions(lrx_outer="21"), "lrx_outer='21': must be a whole number"),
    (lambda: TrainSettings(lr=0), "lr=0: must be a positive number"),
    (lambda: TrainSettings(betas=(0.5, 1.0)), "betas=<0.5 1.0>: each must lie in [0, 1)"),
    (lambda: TrainSettings(val_fraction=1), "val_fraction=1: must lie in [0, 1)"),
    (lambda: TrainSettings(select="best"), "select='best': must be one of test, last, val"),
    (lambda: TrainSettings(train_scenes=["a.mat"], select="test"), "select='test' needs a test set"),
    (lambda: TrainSettings(train_scenes=["a.mat"], select="val", val_fraction=0), "holds no scene out"),
    (lambda: TrainSettings(val_scenes=["v.mat"]), "val_scenes=... goes with train_scenes=..."),
    (lambda: TrainSettings(select="val_real"), "select=val_real needs train_scenes=... with"),
])
def test_a_bad_setting_is_one_name_value_error(make, message):
    with pytest.raises(SettingsError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_settings_normalise_their_types():
    s = EvalSettings(scenes="a.mat", detectors="GRX", save_dir="out", options=DetectorOptions(crd_lambda=1))
    assert s.scenes == (Path("a.mat"),) and s.detectors == ("GRX",) and s.save_dir == Path("out")
    assert s.options.crd_lambda == 1.0 and isinstance(s.options.crd_lambda, float)
    t = TrainSettings(resume=True, betas=[0.9, 0.99], train_scenes=["a.mat"])
    assert t.resume == "auto" and t.betas == (0.9, 0.99) and t.train_scenes == (Path("a.mat"),)
    assert t.select == "last" and "select: the last epoch" in t.select_note  # no test set, no val_scenes
    assert TrainSettings().select == "test" and TrainSettings().select_note is None  # HAD100: the paper's
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.input_channel = 7


def test_the_scripts_print_a_bad_setting_as_their_flag(capsys):
    cli = load_script("test")
    assert cli.main(["--input_channel", "0"]) == 2
    assert capsys.readouterr().err.strip() == "test.py: error: --input_channel 0: must be 1 or more"
    assert cli.main(["--block_num", "0"]) == 2
    assert capsys.readouterr().err.strip() == "test.py: error: --block_num 0: must be 1 or more"
    train = load_script("train")
    assert train.main(["--betas", "0.5", "1.0"]) == 2
    assert capsys.readouterr().err.strip() == "train.py: error: --betas 0.5 1.0: each must lie in [0, 1)"
    assert train.main(["--train_scenes", "a.mat", "--select", "test"]) == 2
    assert capsys.readouterr().err.strip() == ("train.py: error: --select test needs a test set to evaluate each "
                                               "epoch: give --test_scenes, or pick --select val/last")
