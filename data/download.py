"""The 14 ABU-folder scenes, fetched from a pinned commit of a public repository, SHA-256 checked, cached.

    python -m data.download abu                   # into downloads/data/abu/ (or $FERD_DATA_DIR/data/abu/)
    python -m data.download abu --dest DIR        # into DIR/data/abu/
    python -m data.download abu --base_url URL    # from a mirror of the repository's data/ folder (file:// too)

The folder it fills is laid out like ``../shared`` (``data/abu/*.mat``), so ``FERD_DATA_DIR=DIR`` points the
tests and the README's examples at it; ``python -m weights fetch DIR/ferd-release`` adds the authors' released
weights beside it. A file already there with the right SHA-256 is not fetched again; a download whose
SHA-256 differs is deleted and named in one line.

Where the scenes come from: github.com/jiojio0505/OT-AD at commit ``dd4a58097f``, folder ``data/``. The ABU
scenes are Kang et al., "Hyperspectral anomaly detection with attribute and edge-preserving filters", IEEE TGRS
2017 (airport, beach and urban scenes of AVIRIS and ROSIS); HYDICE urban and San Diego (AVIRIS) are the classic
scenes of the same literature. Neither that repository nor the ABU page states a licence: they are used here
for research, as the literature uses them, and never committed to this repository. The commit (abbreviated) and
the file names are those recorded when the scenes were copied from there; the download itself has not been tried
from the workplace this was written in (no network): a URL that does not resolve is one error line naming it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from utils.errors import FerdError
from utils.fetch import download, sha256
from utils.shared import ENV_DATA_DIR

REPO = Path(__file__).resolve().parent.parent
#: The folder the scenes go to (``DIR/data/abu``), laid out like ../shared; the tests read it from here too.

DEFAULT_DIR = REPO / "downloads"
#: The public repository that holds the 14 scenes, the commit they are pinned to, and its folder of them.
ABU_REPO_RAW = "https://raw.githubusercontent.com/jiojio0505/OT-AD"
ABU_COMMIT = "dd4a58097f"
ABU_BASE_URL = f"{ABU_REPO_RAW}/{ABU_COMMIT}/data"
#: file -> SHA-256 (of the files the tests and docs/results.md ran on: ../shared/data/abu).
ABU_FILES = {
    "abu-airport-1.mat": "5de3c0b74593552e21e88ee280d02c4acae60bd48a013d72bd28ef63815485f5",
    "abu-airport-2.mat": "7121476e700001e76191d6ee6bc6f2d5f680c0fe49186b61a57f10fcac7718b9",
    "abu-airport-3.mat": "97b574be2de8c1ae3158b60b4aa34676c59a218398fc096c0dcdf125a6c74495",
    "abu-airport-4.mat": "c10cb987f0a75ad5834da2be35e2cfe740660fd9094521dd6d047de535a2a72b",
    "abu-beach-1.mat": "b1fa88474fbc06f2e654e4452d8f7f98757c199197e2b7fec1977a5c5753fcb0",
    "abu-beach-2.mat": "3ec5f0c5c36b2f98a41f9d9e69946e9f3e6fdbeee0f42b3e402485a4efd9bb80",
    "abu-beach-3.mat": "56622ebe89aa1a37aced4b41286eb0a045677553f637c63f90c8222f1027f576",
    "abu-urban-1.mat": "951d8d9c405d7ae200634dfd5244586545c01a561b1028f0e65e09e562523942",
    "abu-urban-2.mat": "ed900cbde844582dd51943f920eac47c3a4e7f4cf3e0ae7612fdfb80b7ee7807",
    "abu-urban-3.mat": "a4e4ef3c512b72510f5852300a5050e9e544f80abb021d79ee04921c2070598b",
    "abu-urban-4.mat": "6d6b81c9688f883a9ca59ff99ebc8053c5be1a14099960c460ba420d8507e676",
    "abu-urban-5.mat": "16a50cfca9d6c4783adfd663e9d1e5e948ddaad950912b58577a604c86eb64c5",
    "hydice.mat": "095875682b1f5da092c64ebf4b40493d4d9071aa6a7856c8821cc986051422c7",
    "sandiego.mat": "6830b031438366acbcf3d20f35a5589f969783471a6fd987b792954c51283b01",
}


class DataDownloadError(FerdError, RuntimeError):
    """A scene that cannot be fetched or whose SHA-256 differs; one line saying what to do."""


def data_dir(dest: str | os.PathLike | None = None) -> Path:
    """The data folder: ``dest``, else ``$FERD_DATA_DIR``, else ``downloads/`` of this repository."""
    return Path(dest or os.environ.get(ENV_DATA_DIR) or DEFAULT_DIR)


def abu_dir(dest: str | os.PathLike | None = None) -> Path:
    """Where the ABU scenes of the data folder :func:`data_dir` lie: ``<data folder>/data/abu``."""
    return data_dir(dest) / "data" / "abu"


def fetch_abu(dest: str | os.PathLike | None = None, base_url: str = ABU_BASE_URL) -> tuple[list[Path], int]:
    """The 14 verified scenes in ``abu_dir(dest)``, fetching those missing or damaged from ``base_url``;
    returns their paths and how many were fetched (0: all were cached)."""
    folder, paths, fetched = abu_dir(dest), [], 0
    for name, expected in ABU_FILES.items():
        path = folder / name
        if not (path.is_file() and sha256(path) == expected):  # missing, or damaged since: fetch it again
            download(f"{base_url.rstrip('/')}/{name}", path, expected, DataDownloadError,
                     f"offline? copy the scenes into {folder} by hand (their SHA-256 are in data/download.py), "
                     "or give base_url=... a local mirror (file:///...)")
            fetched += 1
        paths.append(path)
    return paths, fetched


def main(argv: list[str] | None = None) -> int:
    """``python -m data.download abu [--dest DIR] [--base_url URL]``."""
    from utils.cli import OneLineParser, fail, flag_text

    p = OneLineParser(prog="python -m data.download", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["abu"], help="abu: the 14 ABU-folder scenes (about 40 MB)")
    p.add_argument("--dest", type=Path, default=None,
                   help=f"data folder; the scenes go to DEST/data/abu (default ${ENV_DATA_DIR}, else {DEFAULT_DIR})")
    p.add_argument("--base_url", default=ABU_BASE_URL, help="where the .mat files lie (default: the pinned commit)")
    args = p.parse_args(argv)
    try:
        paths, fetched = fetch_abu(args.dest, args.base_url)
    except DataDownloadError as err:
        return fail(p.prog, flag_text(str(err), p))
    print(f"{len(paths)} ABU scenes verified in {paths[0].parent} ({fetched} downloaded, "
          f"{len(paths) - fetched} already there); point the tests at them: {ENV_DATA_DIR}={data_dir(args.dest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
