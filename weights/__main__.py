"""``python -m weights export CHECKPOINT DIR``: a train.py FEN written in the authors' file format; ``python -m
weights fetch DIR``: the authors' released files, verified, in the layout of FERD_WEIGHTS_DIR."""
from __future__ import annotations

import sys
from pathlib import Path

from utils.cli import OneLineParser, fail
from weights.release import ENV_WEIGHTS_DIR, WeightsError, export_checkpoint, fetch_releases


def main(argv: list[str] | None = None) -> int:
    """``python -m weights export CHECKPOINT DIR``: a train.py FEN in the authors' file format;
    ``python -m weights fetch DIR``: the authors' released files, verified, laid out for ``FERD_WEIGHTS_DIR``."""
    p = OneLineParser(prog="python -m weights", description=main.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write CHECKPOINT as the authors' convh.pt, enc.pt, pc.pt in DIR")
    e.add_argument("checkpoint", type=Path, help="a fen_<N>bands.pt written by train.py")
    e.add_argument("out_dir", type=Path, help="folder to write (test.py --weights DIR reads it back)")
    f = sub.add_parser("fetch", help="download every released file into DIR/<name>-<bands>bands/ "
                                     "(FERD_WEIGHTS_DIR=DIR)")
    f.add_argument("dest", type=Path, help="folder to fill (e.g. downloads/ferd-release: FERD_DATA_DIR=downloads)")
    args = p.parse_args(argv)
    if args.command == "fetch":
        try:
            paths, fetched = fetch_releases(args.dest)
        except WeightsError as err:
            return fail(p.prog, str(err))
        print(f"{len(paths)} released files verified in {args.dest} ({fetched} downloaded); "
              f"{ENV_WEIGHTS_DIR}={args.dest} reads them")
        return 0
    if not args.checkpoint.is_file():
        return fail(p.prog, f"{args.checkpoint}: no such file")
    try:
        written = export_checkpoint(args.checkpoint, args.out_dir)
    except WeightsError as err:
        return fail(p.prog, str(err))
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
