"""``python -m weights export CHECKPOINT DIR``: a train.py FEN written in the authors' file format; ``python -m weights
fetch DIR``: the authors' released files, verified, in the layout of FERD_WEIGHTS_DIR."""
import sys

from weights.release import main

sys.exit(main())
