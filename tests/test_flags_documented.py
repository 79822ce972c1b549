"""README documents every flag of test.py and train.py, and its option tables name no flag they lack; each
``--help`` groups its options, shows a default only where there is one, and names no README section that
does not exist."""
from __future__ import annotations

import re

import pytest
from conftest import REPO, load_script

README = (REPO / "README.md").read_text()
#: Table rows of README whose first cell names flags: the option tables of test.py and train.py.
ROW = re.compile(r"^\| (`--[^|]*)\|", re.M)


def flags(script: str) -> set[str]:
    """Every flag of ``script``'s parser, its ``--no-`` forms left out (README names the flag once)."""
    parser = load_script(script).build_parser()
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"
            and not o.startswith("--no-")}


def table_flags() -> set[str]:
    """The flags the first cells of README's option tables name (``--no-x`` counted as ``--x``)."""
    found = set()
    for cell in ROW.findall(README):
        found |= {f.replace("--no-", "--") for f in re.findall(r"--[a-z][a-z0-9_-]*[a-z0-9_]", cell)}
    return found


@pytest.mark.parametrize("script", ["test", "train"])
def test_every_flag_is_in_readme(script):
    missing = sorted(f for f in flags(script) if f"`{f}" not in README and f"`--no-{f[2:]}" not in README)
    assert not missing, f"{script}.py flags README does not name: {missing}"


def test_readme_tables_name_no_flag_the_parsers_lack():
    extra = sorted(table_flags() - flags("test") - flags("train"))
    assert not extra, f"README's option tables name flags neither script has: {extra}"


@pytest.mark.parametrize("script", ["test", "train"])
def test_help_is_grouped_and_shows_only_real_defaults(script):
    text = load_script(script).build_parser().format_help()
    assert "(default: None)" not in text
    groups = re.findall(r"^(\S[^:\n]*):$", text, re.M)
    assert len(groups) >= 4, groups  # data, weights/model, detectors/optimisation, outputs/selection, ...
    for section in re.findall(r"see README, (\w+)", text):
        assert re.search(rf"^## .*{section}", README, re.M), f"--help points to README section {section!r}"
