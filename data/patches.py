"""Training data: preprocessed background patches, and the held-out validation scenes of ``--select val``.

Each training file (an H x W x B background, 64 x 64 in HAD100) is preprocessed as a whole (SPEC
sec. 5: one global min and max per image) and cut into non-overlapping ``size x size`` tiles on a
grid from the top-left corner (leftover rows/columns dropped). With HAD100 and ``size`` 64 that is
exactly one patch per file, as in the authors' code.

Validation (the clean alternative to quirk 4, SPEC sec. 7): a seeded fraction of the training
*files* is held out of training; into each held-out background a few small blobs of a synthetic
foreign material are mixed sub-pixel (:func:`implant_anomalies`), and the blobs are the ground truth.
Selecting the epoch on these never looks at the test labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.preprocess import DataError, check_cube, preprocess
from data.scene import Scene, load_npy

#: Implanted validation anomalies: blobs per scene (low, high), largest blob side (px), fill fraction,
#: and the foreign material's narrow spectral features: count, height (relative), width (bands).
VAL_BLOBS = (2, 5)
VAL_MAX_SIDE = 3
VAL_FILL = (0.2, 0.6)
VAL_FEATURES = (4, 9)
VAL_HEIGHT = (0.02, 0.1)  # on the synthetic set: GRX AUC about 0.8 on the raw val scenes
VAL_WIDTH = (0.7, 2.5)


def tiles(x: torch.Tensor, size: int) -> torch.Tensor:
    """Non-overlapping ``size x size`` tiles of ``(B, H, W)``, row-major: ``(n, B, size, size)``."""
    b, h, w = x.shape
    rows, cols = h // size, w // size
    t = x[:, : rows * size, : cols * size].reshape(b, rows, size, cols, size)
    return t.permute(1, 3, 0, 2, 4).reshape(rows * cols, b, size, size).contiguous()


def load_patches(files: list[Path], bands: int, start: int, size: int) -> torch.Tensor:
    """All training tiles of ``files``: ``(N, bands, size, size)`` float32; any bad file raises DataError."""
    if not files:
        raise DataError("no training files")
    out = []
    for path in files:
        cube = load_npy(path, mmap=True)
        if cube.ndim == 3 and min(cube.shape[:2]) < size:
            raise DataError(f"{path}: is {cube.shape[0]} x {cube.shape[1]} px, smaller than --img_size {size}")
        out.append(tiles(preprocess(np.asarray(cube), bands, start, str(path)), size))
    return torch.cat(out)


class PatchDataset(Dataset):
    """In-memory training patches; item ``i`` is a ``(B, size, size)`` float32 tensor."""

    def __init__(self, patches: torch.Tensor) -> None:
        self.patches = patches

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.patches[i]


def split_files(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """``(train, val)``: a seeded ``fraction`` of ``files`` (at least one) held out, both kept sorted."""
    if not 0 < fraction < 1:
        raise ValueError(f"--val_fraction must be between 0 and 1, got {fraction}")
    if len(files) < 2:
        raise DataError(f"--select val needs at least 2 training files to hold one out, found {len(files)}")
    n_val = min(len(files) - 1, max(1, round(fraction * len(files))))
    order = np.random.default_rng(seed).permutation(len(files))
    val = set(order[:n_val].tolist())
    return ([f for i, f in enumerate(files) if i not in val], [f for i, f in enumerate(files) if i in val])


def foreign_spectrum(mean: np.ndarray, start: int, bands: int, rng: np.random.Generator) -> np.ndarray:
    """A material absent from the background: its mean spectrum reshaped by a few narrow absorption and
    emission features inside the bands used, ``[start, start + bands)``; returned as the difference to
    the mean (zero outside those bands)."""
    t = np.arange(mean.shape[0], dtype=np.float64)
    shape = np.zeros_like(t)
    for _ in range(int(rng.integers(*VAL_FEATURES))):
        centre = rng.uniform(start, start + bands - 1)
        height = rng.uniform(*VAL_HEIGHT) * rng.choice([-1.0, 1.0])
        shape += height * np.exp(-0.5 * ((t - centre) / rng.uniform(*VAL_WIDTH)) ** 2)
    shape[:start] = 0.0
    shape[start + bands :] = 0.0
    return mean * shape


def implant_anomalies(cube: np.ndarray, start: int, bands: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``cube`` (H x W x B) with 2-4 blobs of foreign material mixed in sub-pixel, and the blobs' mask.

    Each blob (1 to 3 px a side, not on the border) gets its own :func:`foreign_spectrum`, added at a
    fill fraction ``a`` drawn from :data:`VAL_FILL`: ``x + a (s - mean)``. Adding the difference
    (rather than blending towards ``s``) keeps each pixel's own noise and texture, so the blob differs
    from the background only by the foreign spectral shape.
    """
    h, w, _ = cube.shape
    out = np.array(cube, dtype=np.float64)
    mask = np.zeros((h, w), dtype=bool)
    mean = out.reshape(h * w, -1).mean(axis=0)
    for _ in range(int(rng.integers(*VAL_BLOBS))):
        diff = foreign_spectrum(mean, start, bands, rng)
        bh, bw = (int(v) for v in rng.integers(1, VAL_MAX_SIDE + 1, size=2))
        r = int(rng.integers(1, max(2, h - bh)))
        c = int(rng.integers(1, max(2, w - bw)))
        out[r : r + bh, c : c + bw] += rng.uniform(*VAL_FILL) * diff
        mask[r : r + bh, c : c + bw] = True
    return out.astype(np.float32), mask


def make_val_scenes(val_files: list[Path], bands: int, start: int, seed: int) -> list[Scene]:
    """One scene per held-out file with :func:`implant_anomalies`; deterministic in ``seed``."""
    rng = np.random.default_rng(seed + 1)
    scenes = []
    for path in val_files:
        cube = np.asarray(load_npy(path, mmap=True))
        check_cube(cube, str(path), bands, start)
        implanted, mask = implant_anomalies(cube, start, bands, rng)
        scenes.append(Scene(f"val_{path.stem}", implanted, mask, f"{path} (+ implanted anomalies)"))
    return scenes
