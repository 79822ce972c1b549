"""Evaluations (evaluate.py: ``evaluate(EvalSettings(...))``, test.py's one call; settings.py) and scenes of
any size through the FEN and the detectors in bounded memory (run.py):
scene sources read block by block (sources.py), the tile plan (plan.py), the FEN over tiles (fen_tiles.py)."""
