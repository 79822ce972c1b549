"""Hyperspectral data: preprocessing, the HAD100 layout, single-scene files, the synthetic set.

``data/HAD100Dataset`` (if you place the benchmark there) and ``data/synthetic`` (generated on first
use) are data folders beside this package; both are git-ignored.
"""
from data.preprocess import preprocess, DataError
from data.scene import Scene, read_scene
from data.had100 import read_had100, had100_train_files

__all__ = ["preprocess", "DataError", "Scene", "read_scene", "read_had100", "had100_train_files"]
