"""Anomaly detectors on a preprocessed cube: GRX (rx.py), SLRX (slrx.py), LRX (lrx.py), and the registry of
names, options and checks that test.py uses (registry.py); and slow per-pixel oracles of GRX, SLRX and LRX that
the tests and benchmarks compare them with (reference.py)."""
