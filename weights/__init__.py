"""Weights: the FEN's (the authors' release, this project's checkpoints, the authors' file format) and the
teacher's (torchvision's ImageNet file, a local state dict), one verified way of reading each."""
