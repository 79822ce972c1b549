"""Files fetched from the web: their SHA-256 and an atomic, verified download (the released FEN weights,
weights/release.py and weights/imagenet.py; the ABU scenes, data/download.py)."""
from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from utils.errors import FerdError
from utils.io import atomic_path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, expected: str, error: type[FerdError], offline_hint: str) -> None:
    """Fetch ``url`` to ``dest`` atomically and check its SHA-256 against ``expected``.

    A mismatch deletes the file; a mismatch or a failed fetch raises ``error`` (one line; ``offline_hint``
    says what to do without the network)."""
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
            got = sha256(tmp)
            if got != expected:
                raise error(f"checksum mismatch for {url}: got sha256 {got}, expected {expected}; "
                            "the download was deleted and not loaded")
    except (urllib.error.URLError, OSError) as err:
        raise error(f"cannot download {url} ({err}); {offline_hint}") from None
