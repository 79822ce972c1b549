"""``--help`` costs no more than importing torch: the scripts import the pipeline and the training run only
once their flags are parsed, and the modules the parsers read (the settings, the detectors' registry, the
weights' names) import the heavy libraries where they use them. Checked on the modules loaded, not on a
clock: ``python -X importtime`` names every module a process imports."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

#: The libraries that cost seconds to import and that no ``--help`` needs (torch itself is the floor).
HEAVY = ("torchvision", "sklearn", "scipy", "matplotlib", "rasterio", "h5py", "spectral", "PIL", "netCDF4")


def imported(*args: str) -> tuple[set[str], str]:
    """The top-level packages a ``python -X importtime ARGS`` process imported, and its stdout."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
             if line.startswith("import time:")}
    return names, done.stdout


@pytest.mark.parametrize("script", ["test.py", "train.py"])
def test_help_imports_no_heavy_library(script):
    names, out = imported(script, "--help")
    assert f"usage: {script}" in out  # the help itself was printed
    assert "torch" in names  # the probe sees imports at all (the registry's detectors are torch modules)
    assert sorted(names & set(HEAVY)) == []


def test_the_probe_sees_a_heavy_import():
    """The check above could not pass by reading nothing: a module that does import scipy is seen."""
    names, _ = imported("-c", "import detectors.rx_cpu as m; m.Whitening.__init__")
    assert "scipy" not in names
    names, _ = imported("-c", "import evaluation.metrics")
    assert "sklearn" in names and "scipy" in names
