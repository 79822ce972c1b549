"""Training data: preprocessed background patches, and the held-out validation scenes of ``--select val``.

Each training file (an H x W x B background, 64 x 64 in HAD100) or scene (``train.py --train_scenes``)
is preprocessed as a whole (method sec. 5: one global min and max per image) and cut into ``size x size``
patches on a grid from the top-left corner with step ``stride`` (default ``size``: non-overlapping tiles;
leftover rows/columns dropped). With HAD100 and ``size`` 64 that is exactly one patch per file, as in the
authors' code. Quirk 9, *not* reproduced: the authors ignore their ``--img_size`` and train on whole files;
here files are cut into ``--img_size`` patches (the same at the default 64). A scene with a ground-truth mask loses every patch that touches a labelled anomaly, so that
training sees background only, as HAD100's training set does; a scene without one (``mask=None``) is taken as
all background, as HAD100's anomaly-free training images are (anomalies in it are learned as background).

Validation (the clean alternative to quirk 4, method sec. 7): a seeded fraction of the training
*files* is held out of training; into each held-out background a few small blobs of a synthetic
foreign material are mixed sub-pixel (:func:`implant_anomalies`), and the blobs are the ground truth.
Selecting the epoch on these never looks at the test labels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from data.nodata import preprocess_valid
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


def cut_patches(x: torch.Tensor, size: int, stride: int | None = None) -> torch.Tensor:
    """``size x size`` patches of ``(B, H, W)`` at rows and columns ``0, stride, 2 stride, ...`` (those that fit),
    row-major: ``(n, B, size, size)``; ``stride`` defaults to ``size`` (non-overlapping tiles)."""
    stride = size if stride is None else stride
    b = x.shape[0]
    p = x.unfold(1, size, stride).unfold(2, size, stride)  # (B, rows, cols, size, size)
    return p.permute(1, 2, 0, 3, 4).reshape(-1, b, size, size).contiguous()


def anomaly_free(mask: np.ndarray, size: int, stride: int | None = None) -> np.ndarray:
    """For each patch of :func:`cut_patches` (same order), whether it touches no labelled anomaly: ``(n,)`` bool."""
    stride = size if stride is None else stride
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))
    touched = m.unfold(0, size, stride).unfold(1, size, stride).amax(dim=(-2, -1))
    return (touched == 0).flatten().numpy()


def kept_patches(scene: Scene, size: int, stride: int | None = None) -> np.ndarray:
    """:func:`anomaly_free` of ``scene``'s mask; every patch of an unlabelled scene (all background)."""
    if scene.mask is not None:
        return anomaly_free(scene.mask, size, stride)
    stride = size if stride is None else stride
    h, w = scene.cube.shape[:2]
    return np.ones(((h - size) // stride + 1) * ((w - size) // stride + 1), dtype=bool)


def check_patch_fits(shape: tuple[int, ...], size: int, name: str) -> None:
    if len(shape) == 3 and min(shape[:2]) < size:
        raise DataError(f"{name}: is {shape[0]} x {shape[1]} px, smaller than img_size={size}")


def check_band_last(shape: tuple[int, ...], name: str) -> None:
    """A training background has no mask to compare with, so a band-first file (B x H x W) is told by its
    shape: square in its last two axes and longer in its first (HAD100's are 64 x 64 x 276 and 64 x 64 x 162).
    Read as H x W x B it would give wrong numbers without any error."""
    if len(shape) == 3 and shape[1] == shape[2] and shape[0] > shape[1]:
        raise DataError(f"{name}: is {' x '.join(map(str, shape))}: the background looks band-first (B x H x W, "
                        f"{shape[0]} bands); store it as H x W x B, e.g. np.save(path, np.moveaxis(cube, 0, -1))")


def load_patches(files: list[Path], bands: int, start: int, size: int, stride: int | None = None) -> torch.Tensor:
    """All training patches of ``files``: ``(N, bands, size, size)`` float32; any bad file raises DataError."""
    if not files:
        raise DataError("no training files")
    out = []
    for path in files:
        cube = load_npy(path, mmap=True)
        check_band_last(cube.shape, str(path))
        check_patch_fits(cube.shape, size, str(path))
        out.append(cut_patches(preprocess(np.asarray(cube), bands, start, str(path)), size, stride))
    return torch.cat(out)


def scene_patches(scenes: Sequence[Scene], bands: int, start: int, size: int, stride: int | None = None
                  ) -> tuple[torch.Tensor, int]:
    """Training patches of whole scenes (each preprocessed as one image) that touch no labelled anomaly and no
    nodata pixel (data/nodata.py): ``(N, bands, size, size)`` float32, and how many patches were dropped."""
    if not scenes:
        raise DataError("no training scenes")
    out, dropped = [], 0
    for s in scenes:
        name = s.label
        check_patch_fits(s.cube.shape, size, name)
        x, valid = preprocess_valid(s.cube, bands, start, name, s.nodata, s.bbl)
        patches = cut_patches(x, size, stride)
        mask = s.mask if s.mask is not None else np.zeros(s.cube.shape[:2], dtype=bool)  # unlabelled: background
        keep = anomaly_free(mask if valid is None else mask | ~valid, size, stride)
        dropped += int((~keep).sum())
        out.append(patches[torch.from_numpy(keep)])
    patches = torch.cat(out)
    if not len(patches):
        raise DataError(f"every {size} x {size} patch of the {len(scenes)} training scene(s) touches a labelled "
                        f"anomaly or nodata at img_size={size}: use smaller patches, or a smaller patch_stride=<px>")
    return patches, dropped


class PatchDataset(Dataset):
    """In-memory training patches; item ``i`` is a ``(B, size, size)`` float32 tensor."""

    def __init__(self, patches: torch.Tensor) -> None:
        self.patches = patches

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.patches[i]


T = TypeVar("T")


def split_files(files: list[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """``(train, val)``: a seeded ``fraction`` of ``files`` (training files or scenes; at least one) held
    out, both kept in their order."""
    if not 0 < fraction < 1:
        raise DataError(f"val_fraction={fraction}: must be between 0 and 1")
    if len(files) < 2:
        raise DataError(f"a validation set needs at least 2 training files or scenes to hold one out, found {len(files)}")
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


def implant_val_scenes(backgrounds: list[tuple[str, np.ndarray, str]], bands: int, start: int, seed: int,
                       pool: np.ndarray | None = None) -> list[Scene]:
    """One validation scene per ``(name, H x W x B background, source)``: synthetic foreign materials implanted
    (:func:`implant_anomalies`), or with ``pool`` the real anomaly spectra (:func:`implant_real_anomalies`);
    deterministic in ``seed``."""
    rng = np.random.default_rng(seed + (1 if pool is None else 2))
    prefix, what = ("val", "implanted anomalies") if pool is None else ("valreal", "implanted real anomaly spectra")
    scenes = []
    for name, cube, source in backgrounds:
        check_cube(cube, source, bands, start)
        implanted, mask = (implant_anomalies(cube, start, bands, rng) if pool is None
                           else implant_real_anomalies(cube, pool, start, rng))
        scenes.append(Scene(f"{prefix}_{name}", implanted, mask, f"{source} (+ {what})"))
    return scenes


def make_val_scenes(val_files: list[Path], bands: int, start: int, seed: int) -> list[Scene]:
    """Validation scenes from held-out HAD100-layout training files (one each)."""
    return implant_val_scenes([(p.stem, np.asarray(load_npy(p, mmap=True)), str(p)) for p in val_files],
                              bands, start, seed)


def make_val_scenes_from(scenes: Sequence[Scene], bands: int, start: int, size: int, seed: int) -> list[Scene]:
    """Validation scenes from held-out training *scenes*: each non-overlapping ``size x size`` patch that
    touches no labelled anomaly (raw values), with implanted anomalies."""
    return implant_val_scenes(clean_tiles(scenes, size), bands, start, seed)


def clean_tiles(scenes: Sequence[Scene], size: int) -> list[tuple[str, np.ndarray, str]]:
    """``(name, H x W x B raw cube, source)`` of each non-overlapping ``size x size`` patch of ``scenes`` that
    touches no labelled anomaly."""
    backgrounds = []
    for s in scenes:
        check_patch_fits(s.cube.shape, size, s.label)
        keep = kept_patches(s, size)
        cols = s.cube.shape[1] // size
        for k in np.flatnonzero(keep):
            r, c = divmod(int(k), cols)
            cube = np.asarray(s.cube[r * size:(r + 1) * size, c * size:(c + 1) * size])
            backgrounds.append((f"{s.name}_{r * size}_{c * size}", cube, f"{s.label} [{r * size}, {c * size}]"))
    return backgrounds


#: Real-spectra validation targets (``--select val_real``): targets per scene (low, high), pixels per target
#: (1 to this), and the abundance of the implanted material in each target pixel (sub-pixel mixing).
REAL_TARGETS = (2, 6)
REAL_MAX_PIXELS = 3
REAL_FILL = (0.2, 0.6)


def anomaly_pool(scenes: Sequence[Scene], bands: int, start: int) -> np.ndarray:
    """The labelled anomaly pixels of ``scenes`` as standard scores of their own scene: ``(n, bands)`` float64.

    Bands ``[start, start + bands)``; each pixel as ``(t - mean) / std`` with the mean and standard deviation
    of its scene's background pixels, so that spectra of other scenes, sensors and units can be implanted
    into any background (:func:`implant_real_anomalies` maps them back with the background's own). Empty
    when no scene has a labelled anomaly.
    """
    pool = []
    for s in scenes:
        if s.mask is None or not s.mask.any() or s.mask.all():
            continue
        check_cube(s.cube, s.label, bands, start)
        px = np.asarray(s.cube[..., start:start + bands], dtype=np.float64).reshape(-1, bands)
        flat = s.mask.reshape(-1)
        mean, std = background_moments(px[~flat])
        pool.append((px[flat] - mean) / std)
    return np.concatenate(pool) if pool else np.zeros((0, bands))


def background_moments(px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation of pixels ``(n, bands)``; a constant band gets std 1 (its
    standard scores are then plain differences)."""
    mean, std = px.mean(axis=0), px.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def target_pixels(h: int, w: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """1 to :data:`REAL_MAX_PIXELS` 4-connected pixels away from the border (a random walk from a seed)."""
    r, c = int(rng.integers(1, max(2, h - 1))), int(rng.integers(1, max(2, w - 1)))
    pixels = [(r, c)]
    for _ in range(int(rng.integers(1, REAL_MAX_PIXELS + 1)) - 1):
        dr, dc = ((0, 1), (1, 0), (0, -1), (-1, 0))[int(rng.integers(4))]
        r, c = min(max(r + dr, 1), max(1, h - 2)), min(max(c + dc, 1), max(1, w - 2))
        if (r, c) not in pixels:
            pixels.append((r, c))
    return pixels


def implant_real_anomalies(cube: np.ndarray, pool: np.ndarray, start: int, rng: np.random.Generator
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``cube`` (H x W x B raw) with 2-5 small targets of real anomaly spectra mixed in sub-pixel, and their mask.

    Each target (:func:`target_pixels`) takes one spectrum ``z`` of ``pool`` (:func:`anomaly_pool`), brought
    into this background's units as ``t = mean + z std`` (the background's per-band moments), and mixed at an
    abundance ``a`` from :data:`REAL_FILL`: ``(1 - a) x + a t`` in the bands used (the others untouched).
    """
    h, w, _ = cube.shape
    bands = pool.shape[1]
    out = np.array(cube, dtype=np.float64)
    used = out[..., start:start + bands]  # a view: implanting writes into ``out``
    mask = np.zeros((h, w), dtype=bool)
    mean, std = background_moments(used.reshape(-1, bands))
    for _ in range(int(rng.integers(*REAL_TARGETS))):
        t = mean + pool[int(rng.integers(len(pool)))] * std
        a = rng.uniform(*REAL_FILL)
        for r, c in target_pixels(h, w, rng):
            used[r, c] = (1 - a) * used[r, c] + a * t
            mask[r, c] = True
    return out.astype(np.float32), mask


def make_real_val_scenes_from(scenes: Sequence[Scene], pool: np.ndarray, bands: int, start: int, size: int,
                              seed: int) -> list[Scene]:
    """Like :func:`make_val_scenes_from`, with real anomaly spectra (``pool``) implanted instead of synthetic
    foreign materials; deterministic in ``seed``."""
    if not len(pool):
        raise DataError("real-spectra validation needs labelled anomalies in the training scenes; none has one")
    return implant_val_scenes(clean_tiles(scenes, size), bands, start, seed, pool)
