"""Atomic writes: a file is either the old version or the complete new one, never half written."""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from utils.errors import DiskFullError

#: What :func:`atomic_path` names its temporary files: ``.<file>.<8 random characters>.tmp`` (mkstemp).
TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")
#: OS errors that mean "no room left" (a full disk, a quota, a file-size limit).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT held back by the OS for the duration of the block and delivered as it ends: a Ctrl-C still
    ends the run, but not between the creation (or removal) of a temporary file and the bookkeeping of its
    name, which would leave the file behind."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Whatever stops the block (an error, Ctrl-C at any moment) leaves ``path`` as it was and removes the
    temporary file; a disk that fills up is one :class:`DiskFullError` line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: str | None = None
    try:
        with _sigint_held():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should be like any file the user writes
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in FULL_ERRNOS:  # the old file (if any) is kept; the partial temporary goes below
            raise DiskFullError(f"{path}: the disk is full ({os.strerror(err.errno)}) while writing it; "
                                f"it was left as it was: free space in {path.parent}") from None
        raise
    finally:
        with _sigint_held():
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


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
        except RuntimeError as err:  # torch's C++ writer reports a failed write() as a RuntimeError, no errno
            if "write failed" not in str(err) or _has_room(tmp):
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None


def _has_room(path: Path) -> bool:
    """Whether the file system of ``path`` has 1 MiB free or more (a write that failed with less: a full disk)."""
    st = os.statvfs(path.parent)
    return st.f_bavail * st.f_frsize >= 1 << 20


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
        with open(tmp, "wb") as fh:  # a file object, so numpy does not append a second .npz
            np.savez_compressed(fh, **arrays)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
