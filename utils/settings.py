"""What the typed settings of the library share: their error, the checks of single values, and the building
from a flat mapping of option values (what a script's parser returns).

The settings objects themselves live beside the code that reads them (``pipeline.settings.EvalSettings``,
``training.settings.TrainSettings``): frozen dataclasses whose fields are named as the scripts' flags, each
checked once, in ``__post_init__``, with a ``name=value`` message (a flag once a script prints it,
utils.cli.flag_text).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, TypeVar

from utils.errors import FerdError

T = TypeVar("T")


class SettingsError(FerdError, ValueError):
    """A setting that cannot be used; the message starts ``name=value:`` and says what would work."""


def at_least(name: str, value: int | None, least: int) -> None:
    """``value`` (when not None) is a whole number of at least ``least``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingsError(f"{name}={value!r}: must be a whole number")
    if value is not None and value < least:
        raise SettingsError(f"{name}={value}: must be {least} or more")


def positive(name: str, value: float | None) -> None:
    """``value`` (when not None) is a finite number above 0."""
    if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
        raise SettingsError(f"{name}={value}: must be a positive number")


def non_negative(name: str, value: float) -> None:
    """``value`` is a finite number, 0 or more."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise SettingsError(f"{name}={value}: must be a finite number, 0 or more")


def one_of(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise SettingsError(f"{name}={value!r}: must be one of {', '.join(map(str, choices))}")


def as_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def as_paths(value: Any) -> tuple[Path, ...] | None:
    """A list of files as a tuple of paths (a single path or string counts as one file)."""
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        value = [value]
    return tuple(Path(v) for v in value)


def normalise(settings: object, **values: Any) -> None:
    """Set fields of a frozen dataclass in its ``__post_init__`` (paths as Path, lists as tuples)."""
    for name, value in values.items():
        object.__setattr__(settings, name, value)


def field_defaults(cls: type) -> SimpleNamespace:
    """The declared default of every init field of the dataclass ``cls`` (what a parser shows as its flags'
    defaults: a default that the settings resolve from other fields, such as train.py's ``select``, stays
    None here)."""
    out = {}
    for f in fields(cls):
        if f.init:
            out[f.name] = f.default_factory() if f.default is MISSING else f.default
    return SimpleNamespace(**out)


def from_options(cls: type[T], values: Mapping[str, Any], /, **extra: Any) -> T:
    """``cls`` built from the entries of ``values`` named as its fields (the rest ignored), and ``extra``."""
    names = {f.name for f in fields(cls)} - set(extra)
    return cls(**{k: v for k, v in values.items() if k in names}, **extra)
