"""Command-line helpers shared by test.py and train.py."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``<prog>: error: <message>`` (exit code 2), like every
    other input error of the scripts; ``--help`` still shows the full usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(prog: str, message: str) -> int:
    """Print the one-line error of an input problem found after parsing; return the exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
