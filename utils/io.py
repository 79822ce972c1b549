"""Atomic writes: a file is either the old version or the complete new one, never half written."""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from utils.errors import DiskFullError

#: What :func:`atomic_path` names its temporary files: ``.<file>.<8 random characters>.tmp``.
TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")
#: OS errors that mean "no room left" (a full disk, a quota, a file-size limit).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: The lists that :func:`recording_writes` blocks open: every file :func:`atomic_path` completes is added.
_RECORDERS: list[list[Path]] = []


@contextmanager
def recording_writes() -> Iterator[list[Path]]:
    """Yield a list that collects the path of every file written through :func:`atomic_path` (every writer of
    this project) until the block ends: what a run's manifest lists, and what it replaced."""
    written: list[Path] = []
    _RECORDERS.append(written)
    try:
        yield written
    finally:
        _RECORDERS.remove(written)


@contextmanager
def _sigint_held() -> Iterator[None]:
    """A Ctrl-C during the block is held and raised as it ends, by the handler the block found
    (``KeyboardInterrupt`` in the scripts): a Ctrl-C still ends the run, but not between the creation (or
    removal) of a temporary file and the bookkeeping of its name, which would leave the file behind, nor inside
    numpy's zip writer, whose ``finally`` then raises zipfile's "Can't close the ZIP file while there is an open
    writing handle" instead of the interrupt (and the archive's ``__del__`` another error later).

    The handler is swapped, not the signal blocked: Python runs its handlers in the main thread whichever thread
    the OS hands the signal to, while a blocked mask holds back only the signals sent to this thread (one that
    reached one of torch's threads interrupted the main thread at once). Outside the main thread, where handlers
    cannot be set, nothing is held."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught:
            signal.raise_signal(signal.SIGINT)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Whatever stops the block (an error, Ctrl-C at any moment) leaves ``path`` as it was and removes the
    temporary file; a disk that fills up is one :class:`DiskFullError` line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with scratch_file(path.parent, f".{path.name}.", ".tmp") as tmp:
            yield Path(tmp)
            os.replace(tmp, path)
        for written in _RECORDERS:
            written.append(path)
    except OSError as err:
        if err.errno in FULL_ERRNOS:  # the old file (if any) is kept; the partial temporary is gone
            raise DiskFullError(f"{path}: the disk is full ({os.strerror(err.errno)}) while writing it; "
                                f"it was left as it was: free space in {path.parent}") from None
        raise


@contextmanager
def scratch_file(folder: str | os.PathLike, prefix: str, suffix: str) -> Iterator[str]:
    """Create an empty ``<prefix><8 random characters><suffix>`` in ``folder`` and yield its path; it is
    removed when the block ends, however it ends (unless the block renamed it away): Ctrl-C at any moment,
    the creation included, leaves nothing behind."""
    names: list[str] = []  # the file's name, recorded before the file exists
    try:
        with _sigint_held():
            path = _new_file(folder, prefix, suffix, names)
        yield path
    finally:
        with _sigint_held():
            for name in names:
                with suppress(FileNotFoundError):  # renamed away, or never created
                    os.unlink(name)


def _new_file(folder: str | os.PathLike, prefix: str, suffix: str, names: list[str]) -> str:
    """Create an empty ``<prefix><8 random characters><suffix>`` in ``folder`` (mode 0666 less the umask, like
    any file the user writes) and return its path, appended to ``names`` *before* the file exists, so that
    whoever removes the names in a ``finally`` (:func:`scratch_file`) never leaves it behind.

    Why not ``tempfile.mkstemp``: its name is known only once it returns, so an interrupt that
    :func:`_sigint_held` cannot hold (outside the main thread) inside ``mkstemp`` would leave its file
    behind."""
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")
        names.append(name)
        try:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return name
        except FileExistsError:
            names.pop()  # somebody else's file: never ours to remove
    raise FileExistsError(f"{folder}: no free name {prefix}*{suffix} after 100 tries")


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def save_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError:
            # torch's C++ writer reports a failed or short write() as a RuntimeError with no errno: "file write
            # failed", or "unexpected pos N vs M" when the short write is seen at the next record (a real full
            # disk in CI, and RLIMIT_FSIZE, give the latter). Which one it was, the file system tells.
            full = _out_of_room(tmp)
            if full is None:
                raise
            raise full from None


def _out_of_room(path: Path, probe: int = 1 << 20) -> OSError | None:
    """After a failed write to ``path``: the ``OSError`` of a full disk (or quota, or file-size limit) if that
    is what stopped it, else ``None``. Appending ``probe`` bytes to the file meets the same wall, with the
    errno the C++ writer did not keep; less than ``probe`` free on the file system counts as full too."""
    try:
        with open(path, "ab") as fh:
            fh.write(bytes(probe))
            fh.flush()
    except OSError as err:
        if err.errno in FULL_ERRNOS:
            return OSError(err.errno, os.strerror(err.errno))
        return None
    st = os.statvfs(path.parent)
    if st.f_bavail * st.f_frsize < probe:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def drop_stale_temporaries(folder: str | os.PathLike, names: Iterable[str] = ("*",), subfolders: bool = False) -> int:
    """Remove the temporary files that :func:`atomic_path` left in ``folder`` when a run was killed while
    writing (``kill -9``, a power cut): ``.<name>.<random>.tmp`` for each glob pattern in ``names``, also in
    the folder's direct subfolders with ``subfolders``. The files they were meant to replace are intact.
    Returns how many were removed."""
    folder = Path(folder)
    folders = [folder] + (sorted(p for p in folder.iterdir() if p.is_dir()) if subfolders and folder.is_dir() else [])
    removed = 0
    for where in folders:
        for pattern in names:
            for tmp in where.glob(f".{pattern}.*.tmp"):
                if TEMP_NAME.fullmatch(tmp.name) and tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    removed += 1
    return removed


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh, _sigint_held():  # a file object, so numpy does not append a second .npz
            np.savez_compressed(fh, **arrays)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
