"""``python -m data --out FOLDER``: write the synthetic HAD100-layout dataset (data/synthetic.py)."""
from __future__ import annotations

import argparse
import sys

from data.synthetic import DEFAULT_ROOT, DEFAULTS, generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data", description="Write the synthetic HAD100-layout dataset.")
    p.add_argument("--out", default=str(DEFAULT_ROOT), help="output folder (replaced)")
    for key, value in DEFAULTS.items():
        p.add_argument(f"--{key}", type=int, default=value)
    args = vars(p.parse_args(argv))
    print(generate(args.pop("out"), **args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
