"""Anomaly detectors on a preprocessed cube, one file each defining one :class:`detectors.base.Detector`;
the registry of names, options and checks that test.py uses (registry.py, which lists them); and slow
per-pixel oracles that the tests and benchmarks compare the detectors with (reference.py)."""
