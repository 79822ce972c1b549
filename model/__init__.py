"""The FERD network, one module per concept of the paper: CWL (cwl.py), the teacher's wide ResNet stages
(teacher.py), MFFM (mffm.py), the student decoder (decoder.py), SFAM's FPL and ZCL (sfam.py), the full
network (ferd.py), the FEN kept for inference (fen.py) and the losses (losses.py)."""
