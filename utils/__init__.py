"""Detectors, metrics, weight handling and small I/O helpers."""
