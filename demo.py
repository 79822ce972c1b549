"""``make demo``: test.py at 50 bands with the authors' released HAD100 weights where they can be found or
fetched, else with this project's shipped 50-band FEN (``abu10``, weights/shipped/), said in one line.

    python demo.py [test.py options]        # e.g. --data_path data/HAD100Dataset

test.py itself never switches weights on its own (the paper's command prints the paper's numbers or a clear
error); this script makes the choice before it starts test.py, so that a first run without internet works.
"""
from __future__ import annotations

import sys
from pathlib import Path

from utils.cli import load_script
from weights.release import WeightsError, get_release, release_files

ROOT = Path(__file__).resolve().parent
BANDS = 50


def demo_weights() -> tuple[str, str | None]:
    """``("had100", None)`` where the release's files are found (``FERD_WEIGHTS_DIR``, the cache) or fetched
    into the cache, else ``("abu10", the line that says why)``."""
    try:
        release_files(get_release("had100", BANDS))
    except WeightsError as err:
        why = str(err).split(";")[0]
        return "abu10", (f"demo: the released had100 weights are not available ({why}); running this project's "
                         f"shipped 50-band FEN instead: --weights abu10 (docs/model_card_abu10.md)")
    return "had100", None


def main(argv: list[str] | None = None) -> int:
    weights, note = demo_weights()
    if note:
        print(note, file=sys.stderr, flush=True)
    test = load_script(ROOT / "test.py", "ferd_test_script")
    return test.main(["--input_channel", str(BANDS), "--weights", weights, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
