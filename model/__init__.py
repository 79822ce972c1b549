"""FERD model: one module per concept of the paper (CWL, teacher encoder, SFAM, FEN)."""
from model.cwl import CWL
from model.teacher import wide_layer1
from model.sfam import FPL, ZCL, fpl_hidden
from model.fen import FEN

__all__ = ["CWL", "wide_layer1", "FPL", "ZCL", "fpl_hidden", "FEN"]
