"""The project's own error type: everything a user can cause (a bad file, option, weight file or data folder).

The scripts print a :class:`FerdError` as one line, ``<script>: error: <message>``, and exit with code 2;
any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class FerdError(Exception):
    """A problem with the user's input; the message names the file or option and says what to do."""
