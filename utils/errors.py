"""The project's own error type: everything a user can cause (a bad file, option, weight file or data folder).

The scripts print a :class:`FerdError` as one line, ``<script>: error: <message>``, and exit with code 2;
any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class FerdError(Exception):
    """A problem with the user's input; the message names the file or parameter and says what to do.

    Raised by library code, it names parameters as ``name=value``, in the terms of the Python API
    (``bands=7``); the scripts print it with their flags instead (``--input_channel 7``, utils.cli.flag_text).
    """


def describe(err: BaseException) -> str:
    """A library's exception as one line for a :class:`FerdError` message: its text with newlines folded,
    or its type name when it has no text."""
    return " ".join(str(err).split()) or type(err).__name__


class DetectorError(FerdError, ValueError):
    """A detector option or a scene that a detector cannot use (too small, constant, non-finite), or one that
    would not fit in memory; the message names the option or value that works. Also a ValueError, as these
    errors were before."""


class CubeError(FerdError, ValueError):
    """A cube that a public function cannot take (utils.cube): not an array, a layout that is not one, the
    wrong number of axes, no pixels, complex or non-numeric values, or not what the FEN was built for."""


class DiskFullError(FerdError):
    """No room on a disk: for a temporary file (the message says how much is needed, where, and what helps)
    or a result file (whose old version, if any, is left as it was)."""


class Interrupted(Exception):
    """Ctrl-C during a run that has something to say about it (train.py: which epoch is saved); the scripts
    print its message as one line and exit with code 130."""
