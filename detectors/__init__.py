"""Anomaly detectors on a preprocessed cube: GRX (rx.py), SLRX (slrx.py), LRX (lrx.py), and the registry of
names, options and checks that test.py uses (registry.py)."""
