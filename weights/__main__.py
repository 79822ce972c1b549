"""``python -m weights export CHECKPOINT DIR``: a train.py FEN written in the authors' file format."""
from __future__ import annotations

import sys
from pathlib import Path

from utils.cli import OneLineParser, fail
from weights.release import WeightsError, export_checkpoint


def main(argv: list[str] | None = None) -> int:
    """``python -m weights export CHECKPOINT DIR``: a train.py FEN in the authors' file format."""

    p = OneLineParser(prog="python -m weights", description=main.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write CHECKPOINT as the authors' convh.pt, enc.pt, pc.pt in DIR")
    e.add_argument("checkpoint", type=Path, help="a fen_<N>bands.pt written by train.py")
    e.add_argument("out_dir", type=Path, help="folder to write (test.py --weights DIR reads it back)")
    args = p.parse_args(argv)
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
