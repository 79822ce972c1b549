"""Weight files on disk: their SHA-256 and atomic verified download (from utils/fetch.py, which the scenes'
downloader shares), and the one ``torch.load`` of the project (the FEN release and checkpoints,
weights/release.py; the teacher's ImageNet file, weights/imagenet.py; train.py's training states)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from utils.errors import FerdError
from utils.fetch import download, sha256  # noqa: F401  (this module's names since before utils/fetch.py)


def load_tensors(path: Path, error: type[FerdError], accepts: str, mmap: bool = False) -> object:
    """``torch.load`` of a weight file with ``weights_only=True`` (tensors and plain containers, never code);
    with ``mmap``, the tensors stay in the file until used.

    Any failure is one ``error`` line saying the file is not readable, then ``accepts`` (what the option
    takes instead). Torch's own message is not shown: it spans many lines and advises
    ``weights_only=False``, i.e. running code from the file.
    """
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:  # UnpicklingError, RuntimeError (zip), EOFError, KeyError, ...: all the same to the user
        raise error(f"{path}: not a readable torch checkpoint (torch cannot load it as a file of tensors: "
                    f"another kind of file, or a damaged one); {accepts}") from None


def state_dict_of(obj: object) -> object:
    """The state dict in a loaded file: ``obj['state_dict']`` when it is there (the authors' files), else ``obj``."""
    return obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
