"""The detectors test.py offers: the list of :class:`detectors.base.Detector` objects, their ``FEN+``
variants, the options of all of them (:data:`DetectorOptions`), and the checks and memory estimates of a
name such as ``FEN+LRX``.

A detector maps a preprocessed ``(H, W, B)`` cube (read through a ``detectors.base.CubeReader``) to an ``(H, W)``
score map on the reader's device.
``FEN+X`` first enhances the cube with the FEN (method sec. 4: ``x + FEN(x)``), then runs ``X`` on it.

    GRX   global RX (detectors/rx.py)
    SLRX  the authors' simplified local RX, blocks of B // block_num px (detectors/slrx.py, quirk 6)
    LRX   dual-window local RX, inner guard / outer background window (detectors/lrx.py)
    CRD   collaborative representation, inner guard / outer dictionary window (detectors/crd.py)

Adding a detector: its file defines the object, and one line below lists it (or :func:`register` adds it
from anywhere, tests/test_registry.py's toy detector among them). Every list of names (test.py's ``--help``,
the tables, the plans) comes from :data:`DETECTORS`.
"""
from __future__ import annotations

import numbers

import torch

from detectors.base import Detector, Option
from detectors.crd import CRD
from detectors.lrx import LRX
from detectors.rx import GRX
from detectors.slrx import SLRX
from model.cwl import CWL_PAD
from utils.errors import DetectorError
from utils.settings import SettingsError

#: Every base detector by name, in the order tables and plans list them.
DETECTORS: dict[str, Detector] = {d.name: d for d in (GRX, SLRX, LRX, CRD)}
FEN_PREFIX = "FEN+"
#: What test.py runs without --detectors.
DEFAULT_DETECTORS = [GRX.name, FEN_PREFIX + GRX.name]
#: Headroom on the memory estimates (allocator slack, temporaries the estimate leaves out).
MEMORY_MARGIN = 1.25



def register(det: Detector) -> Detector:
    """Add a detector (after those above, or in place of one of the same name): test.py offers it, with
    ``FEN+``, and its options as flags; the planner, the pipeline and the result files ask the object.
    Returns it, so that a detector file can end ``MY = register(MyDetector())``."""
    clash = {o.name for o in det.options} & {o.name for d in DETECTORS.values() if d.name != det.name
                                             for o in d.options}
    if clash:
        raise DetectorError(f"{det.name}: option {', '.join(sorted(clash))} is already another detector's")
    DETECTORS[det.name] = det
    return det


def all_options() -> dict[str, Option]:
    """Every registered detector's options by name (test.py's flags of the same names)."""
    return {o.name: o for d in DETECTORS.values() for o in d.options}


class DetectorOptions:
    """The options of every registered detector, by name, e.g. ``DetectorOptions(lrx_outer=31,
    crd_lambda=1e-4)``; the rest keep their defaults. Frozen; each value's type and least value are checked
    when it is made (:class:`SettingsError`); the detectors check what depends on the scene (windows
    against its size) against each scene."""

    __slots__ = ("_values",)

    def __init__(self, **values: object) -> None:
        known = all_options()
        for name in values.keys() - known.keys():
            raise SettingsError(f"{name}={values[name]!r}: no detector has this option; the options are "
                                f"{', '.join(known)}")
        checked = {n: _checked(o, values.get(n, o.default)) for n, o in known.items()}
        object.__setattr__(self, "_values", checked)

    def __getattr__(self, name: str) -> object:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"DetectorOptions has no option {name!r}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DetectorOptions are frozen: make new ones")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DetectorOptions) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return "DetectorOptions(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def asdict(self) -> dict[str, object]:
        return dict(self._values)

    @staticmethod
    def names() -> list[str]:
        return list(all_options())


def _checked(o: Option, value: object) -> object:
    """``value`` of option ``o`` as its type, or :class:`SettingsError` naming it."""
    if value is None:
        return None
    if o.type is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{o.name}={value!r}: must be True or False")
        return value
    if o.type in (int, float):
        kind = numbers.Integral if o.type is int else numbers.Real
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SettingsError(f"{o.name}={value!r}: must be {'a whole number' if o.type is int else 'a number'}")
        value = o.type(value)
    elif not isinstance(value, o.type):
        raise SettingsError(f"{o.name}={value!r}: must be a {o.type.__name__}")
    if o.least is not None and value < o.least:
        raise SettingsError(f"{o.name}={value}: must be {o.least} or more")
    if o.choices is not None and value not in o.choices:
        raise SettingsError(f"{o.name}={value!r}: must be one of {', '.join(map(str, o.choices))}")
    return value


DEFAULT_OPTIONS = DetectorOptions()


def detector_names() -> list[str]:
    """Every valid ``--detectors`` value: each base detector, and each with ``FEN+`` in front."""
    return [n for base in DETECTORS for n in (base, FEN_PREFIX + base)]


def needs_fen(names: list[str]) -> bool:
    return any(n.startswith(FEN_PREFIX) for n in names)


def base_name(name: str) -> str:
    return name.removeprefix(FEN_PREFIX)


def detector(name: str) -> Detector:
    """The detector object of ``name`` (``FEN+`` or not)."""
    return DETECTORS[base_name(name)]


def check_detector(name: str, shape: tuple[int, int, int], options=DEFAULT_OPTIONS) -> None:
    """Raise DetectorError (naming a value that works) if detector ``name`` cannot run on an ``(H, W, B)`` cube."""
    h, w, _ = shape
    base = base_name(name)
    if name.startswith(FEN_PREFIX) and min(h, w) <= CWL_PAD:
        raise DetectorError(f"the scene is {h} x {w} pixels; the FEN needs at least {CWL_PAD + 1} x {CWL_PAD + 1} "
                            f"(it mirrors {CWL_PAD} px at each border): use {base} without FEN+ on such a scene")
    if h * w < 2:  # every detector estimates statistics (a covariance, a range) from the scene's pixels
        raise DetectorError(f"the scene is {h} x {w} pixel: {base} needs at least 2 pixels")
    detector(name).check(shape, options)


def memory_estimate(name: str, shape: tuple[int, int, int], options=DEFAULT_OPTIONS,
                    device: torch.device | str = "cpu") -> int:
    """Rough peak bytes detector ``name`` needs on an ``(H, W, B)`` cube (after :func:`check_detector`)."""
    h, w, b = shape
    need = detector(name).memory_bytes(shape, options, device)
    if name.startswith(FEN_PREFIX):
        # FEN activations (float32): CWL 64 + layer1 256 channels and its bottleneck's 128-wide inner
        # maps, on the 4 px padded image; plus the enhanced cube
        need += 4 * ((h + 8) * (w + 8) * (64 + 4 * 256 + 3 * 128) + 2 * b * h * w)
    return need
