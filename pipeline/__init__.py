"""Scenes of any size through the FEN and the detectors in bounded memory (test.py's one call, run.py):
scene sources read block by block (sources.py), the tile plan (plan.py), the FEN over tiles (fen_tiles.py)."""
