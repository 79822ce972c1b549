"""``python -m weights export CHECKPOINT DIR``: a train.py FEN written in the authors' file format."""
import sys

from weights.release import main

sys.exit(main())
