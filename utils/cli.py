"""Command-line helpers shared by test.py and train.py: the options both declare, the option checks, the
one ``main`` both run (exit codes, one-line errors), and the translation of library errors into flags.

Library code (data/, model/, detectors/, evaluation/, weights/, pipeline/) names what the caller passed in
Python terms, ``name=value`` (``bands=7``, ``lrx_outer=31``, ``teacher='imagenet'``); :func:`flag_text`
turns each such mention into the script's flag (``--input_channel 7``, ``--lrx_outer 31``, ``--teacher
imagenet``), so a Python user reads their parameter and a command-line user their option.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Callable, NoReturn

from utils.dist import Dist, launched_rank
from utils.errors import FerdError, Interrupted

REPO = Path(__file__).resolve().parents[1]
#: Library parameter names whose option has another name.
ALIASES = {"bands": "input_channel", "start": "start_channel", "download": "download_teacher"}
#: A ``name=value`` mention: the value is quoted, a <placeholder>, or runs to a space or punctuation.
_MENTION = re.compile(r"\b([a-z][a-z0-9_]*)=('[^']*'|<[^>]*>|[^\s:;,()]+)")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default where it has one (no "(default: None)")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``<prog>: error: <message>`` (exit code 2), like every
    other input error of the scripts; ``--help`` still shows the full usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_band_options(group: argparse._ActionsContainer, defaults: object) -> None:
    """``--input_channel`` and ``--start_channel``, the same in test.py and train.py (``defaults``: the
    script's settings object with its defaults)."""
    group.add_argument("--input_channel", type=int, default=defaults.input_channel,
                       help="number of bands B used (50, 100 or 200 in the paper)")
    group.add_argument("--start_channel", type=int, default=defaults.start_channel,
                       help="first band used, counted from 0")


def add_data_path(group: argparse._ActionsContainer) -> None:
    """``--data_path``, the same in test.py and train.py."""
    group.add_argument("--data_path", type=Path, default=None,
                       help="HAD100-layout folder (default data/HAD100Dataset if it is there, else the synthetic "
                            "set generated in data/synthetic)")


def flag_text(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with every ``name=value`` of one of ``parser``'s options (or an :data:`ALIASES` name) written
    as that option: ``--name value``, ``--name`` for True (and for ``name=...``: the option, whatever its value)
    and ``--no-name`` for False; quotes and the ``<>`` of a placeholder dropped."""
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}

    def swap(m: re.Match) -> str:
        name, value = ALIASES.get(m.group(1), m.group(1)), m.group(2).strip("'<>")
        if name not in flags:
            return m.group(0)
        if value == "...":  # ``name=...``: the option itself, whatever its value
            return flags[name]
        if value in ("True", "False"):
            return flags[name] if value == "True" else flags[name].replace("--", "--no-", 1)
        return f"{flags[name]} {value}"

    return _MENTION.sub(swap, message)


#: How the library's progress lines name parameters: as given (``name=value``, Python) until a script
#: sets its flags (:func:`script_main`).
_say: Callable[[str], str] = str


def say(message: str) -> str:
    """A progress line of the library, in the caller's terms: ``name=value`` from Python, the flag from a
    script (:func:`flag_text` with the script's parser)."""
    return _say(message)


def script_main(parser: argparse.ArgumentParser, parse: Callable[[list[str] | None], argparse.Namespace],
                body: Callable[[argparse.Namespace, Dist], object], argv: list[str] | None,
                interrupted: str) -> int:
    """The ``main`` of both scripts; returns the exit code. 0: done; 2: an input error, printed as one line
    ``<prog>: error: <message>`` with library parameters written as flags (:func:`flag_text`); 130: Ctrl-C,
    with :class:`utils.errors.Interrupted`'s message or ``interrupted``. Under torchrun only rank 0 prints
    the errors every process finds alike; a :class:`PeerError` makes every process leave together."""
    global _say
    restore_ctrl_c()
    _say = lambda message: flag_text(message, parser)  # noqa: E731 (progress lines name the script's flags)
    quiet = launched_rank() != 0
    try:
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            args = parse(argv)
    except SystemExit as done:  # --help, or an option error already printed as one line
        return int(done.code or 0)
    try:
        with Dist(args.device) as d:  # all processes leave together (a PeerError too), then the group ends
            body(args, d)
    except FerdError as err:  # DataError, WeightsError, DetectorError, TrainingError, ...: one line
        if not quiet:
            fail(parser.prog, flag_text(str(err), parser))
        return 2
    except (KeyboardInterrupt, Interrupted) as err:  # result files are written atomically
        said = flag_text(str(err), parser) if isinstance(err, Interrupted) else interrupted
        print(f"{parser.prog}: {said}", file=sys.stderr)
        return 130
    return 0


def add_run_options(group: argparse._ActionsContainer, defaults: object) -> None:
    """``--device`` and ``--progress``, the same in test.py and train.py."""
    group.add_argument("--device", default=defaults.device, help="cpu, cuda or cuda:N (default: cuda if available)")
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=defaults.progress,
                       help="tqdm progress bar")


def load_script(path: Path, name: str) -> ModuleType:
    """Import the script at ``path`` (test.py, train.py) as module ``name``, by its path: ``import test`` could
    find the standard library's package of that name. Registered in ``sys.modules`` as an import does (the
    dataclasses of train.py look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def restore_ctrl_c() -> None:
    """Make SIGINT (Ctrl-C, ``kill -INT``) raise ``KeyboardInterrupt`` even where the process inherited it ignored.

    A program started in the background by a non-interactive shell (``python train.py ... &`` in a script)
    inherits SIGINT set to "ignore", and Python then leaves it ignored: the signal had no effect at all and
    the run went on to its end with exit code 0. The scripts promise that an interrupt ends the run with
    one line and exit code 130, so they take the signal back.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def fail(prog: str, message: str) -> int:
    """Print the one-line error of an input problem found after parsing; return the exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


class OutputError(FerdError):
    """A result path that cannot be written (found before anything is written)."""


def check_writable(path: Path, param: str, folder: bool) -> None:
    """Raise :class:`OutputError` unless ``path`` can be written: a folder (existing or to be made) if ``folder``,
    else a file; the nearest existing folder on the way must be a writable folder. The message starts with
    ``param='<path>'`` (the parameter that named it: a flag once a script prints it)."""
    where = f"{param}='{path}'"
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{where}: {path} is a file, not a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{where}: {path} is a folder, not a file")
    existing = path if folder else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{where}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: {existing} is not writable")
