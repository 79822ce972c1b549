"""FERD model: one module per concept of the paper (CWL, teacher encoder, SFAM, FEN)."""
from model.cwl import CWL
from model.teacher import wide_layer1
from model.sfam import FPL, ZCL, fpl_hidden
from model.fen import FEN

__all__ = ["CWL", "wide_layer1", "FPL", "ZCL", "fpl_hidden", "FEN"]

from model.teacher import Teacher, TeacherError, load_teacher  # noqa: E402
from model.mffm import MFFM  # noqa: E402
from model.decoder import Decoder, UpBottleneck  # noqa: E402
from model.ferd import FERD, FERDOutput, SFAM  # noqa: E402
from model.losses import FERDLoss  # noqa: E402

__all__ += ["Teacher", "load_teacher", "TeacherError", "MFFM", "Decoder", "UpBottleneck", "FERD", "FERDOutput",
            "SFAM", "FERDLoss"]
