"""Command-line helpers shared by test.py and train.py."""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from utils.errors import FerdError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``<prog>: error: <message>`` (exit code 2), like every
    other input error of the scripts; ``--help`` still shows the full usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_run_options(group: argparse._ActionsContainer) -> None:
    """``--device`` and ``--progress``, the same in test.py and train.py."""
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")


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


def check_writable(path: Path, option: str, folder: bool) -> None:
    """Raise :class:`OutputError` unless ``path`` can be written: a folder (existing or to be made) if ``folder``,
    else a file; the nearest existing folder on the way must be a writable folder."""
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{option}: {path} is a file, not a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{option}: {path} is a folder, not a file")
    existing = path if folder else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{option}: {existing} is not writable")
