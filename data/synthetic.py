"""A deterministic synthetic dataset in exactly the HAD100 layout (method sec. 5).

It stands in for HAD100, which cannot be redistributed: ``python test.py`` and ``python train.py``
use it when no ``--data_path`` is given and ``data/HAD100Dataset`` does not exist.

How a scene is made (every number below is an argument of :func:`generate`):

* background: a linear mix of ``n_endmembers`` smooth, positive spectra (sums of broad Gaussian
  bumps on a sloping continuum, 500-5000 "DN" like AVIRIS-NG radiance) with spatially smooth
  abundances (Gaussian-filtered random fields through a softmax), a smooth illumination field, and
  band-dependent sensor noise;
* clutter: a few small patches of a rare background material, labelled *normal*, so that a global
  detector also fires on things that are not targets;
* targets (test scenes only): 2-5 blobs of 1-9 pixels whose spectra are other endmembers, mixed
  sub-pixel into the background at a fill fraction of 4-40 % (:data:`FILL`), so that weak targets hide in the
  background and GRX is far from perfect.

Masks are 3-channel PNGs, anomaly = (255, 255, 255), like HAD100's ground truth (green == 255).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from utils.io import save_npy

DEFAULT_ROOT = Path(__file__).resolve().parent / "synthetic"
GENERATOR_VERSION = 1
#: Sub-pixel fill fraction of targets: low values hide them in the background noise.
FILL = (0.04, 0.4)
DEFAULTS = dict(n_train=32, n_test=10, size=64, bands=276, n_endmembers=5, seed=0)


def smooth_spectra(rng: np.random.Generator, n: int, bands: int) -> np.ndarray:
    """``n`` positive, smooth spectra of ``bands`` samples: ``(n, bands)``."""
    t = np.linspace(0.0, 1.0, bands)
    spectra = np.empty((n, bands))
    for i in range(n):
        s = rng.uniform(0.4, 1.0) + rng.uniform(-0.4, 0.4) * t
        for _ in range(rng.integers(3, 7)):
            centre, width, height = rng.uniform(0, 1), rng.uniform(0.03, 0.2), rng.uniform(-0.35, 0.6)
            s = s + height * np.exp(-0.5 * ((t - centre) / width) ** 2)
        spectra[i] = np.clip(s, 0.1, None)
    # water-vapour-like absorption dips shared by every material, as in real radiance
    for centre in (0.33, 0.5, 0.78):
        spectra *= 1 - 0.7 * np.exp(-0.5 * ((t - centre) / 0.012) ** 2)
    return 1000.0 * spectra


def with_features(rng: np.random.Generator, spectra: np.ndarray, n: int = 12) -> np.ndarray:
    """``spectra`` with ``n`` narrow absorption/emission features each, spread over all bands, so that
    materials differ in shape within any band range and not only in the broad continuum."""
    t = np.linspace(0.0, 1.0, spectra.shape[1])
    out = spectra.copy()
    for s in out:
        for centre in rng.uniform(0, 1, n):
            s *= 1 + rng.uniform(-0.25, 0.25) * np.exp(-0.5 * ((t - centre) / rng.uniform(0.004, 0.015)) ** 2)
    return out


def mixtures(rng: np.random.Generator, endmembers: np.ndarray, size: int) -> np.ndarray:
    """A noise-free ``size x size x bands`` background of smooth endmember mixtures."""
    k, bands = endmembers.shape
    fields = np.stack([gaussian_filter(rng.standard_normal((size, size)), rng.uniform(3, 9), mode="wrap")
                       for _ in range(k)])
    fields = fields / fields.std(axis=(1, 2), keepdims=True) * rng.uniform(1.0, 2.5)
    abund = np.exp(fields - fields.max(axis=0))
    abund /= abund.sum(axis=0)
    return np.einsum("khw,kb->hwb", abund, endmembers)


def sense(rng: np.random.Generator, cube: np.ndarray) -> np.ndarray:
    """Smooth illumination changes and band-dependent sensor noise on top of the scene radiance."""
    size = cube.shape[0]
    illum = 1 + 0.6 * gaussian_filter(rng.standard_normal((size, size)), 12, mode="wrap")
    cube = cube * illum[:, :, None]
    noise_sd = 0.01 * cube.mean(axis=(0, 1)) + 5.0
    return cube + rng.standard_normal(cube.shape) * noise_sd


def blob(rng: np.random.Generator, size: int, max_side: int = 3) -> tuple[slice, slice]:
    h, w = rng.integers(1, max_side + 1, size=2)
    r, c = rng.integers(2, size - 2 - max_side, size=2)
    return slice(r, r + h), slice(c, c + w)


def implant(rng: np.random.Generator, cube: np.ndarray, spectra: np.ndarray, n: int,
            fill: tuple[float, float], mask: np.ndarray | None) -> None:
    """Mix ``n`` blobs of random rows of ``spectra`` into ``cube`` in place; mark them in ``mask``."""
    for _ in range(n):
        rows, cols = blob(rng, cube.shape[0])
        a = rng.uniform(*fill)
        cube[rows, cols] = (1 - a) * cube[rows, cols] + a * spectra[rng.integers(len(spectra))]
        if mask is not None:
            mask[rows, cols] = True


def make_scene(seed: int, endmembers: np.ndarray, targets: np.ndarray, clutter: np.ndarray, size: int,
               with_targets: bool) -> tuple[np.ndarray, np.ndarray]:
    """One ``(cube H x W x B float32, mask H x W bool)`` pair, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    cube = mixtures(rng, endmembers, size)
    implant(rng, cube, clutter, int(rng.integers(1, 4)), (0.2, 0.5), None)
    mask = np.zeros((size, size), dtype=bool)
    if with_targets:
        implant(rng, cube, targets, int(rng.integers(2, 6)), FILL, mask)
    return sense(rng, cube).astype(np.float32), mask


def mask_png(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat((mask * 255).astype(np.uint8)[:, :, None], 3, axis=2))


def generate(root: str | Path = DEFAULT_ROOT, n_train: int = 32, n_test: int = 10, size: int = 64,
             bands: int = 276, n_endmembers: int = 5, seed: int = 0) -> Path:
    """Write the dataset under ``root`` (replacing it), atomically: a half-written set never appears."""
    root = Path(root)
    params = dict(n_train=n_train, n_test=n_test, size=size, bands=bands, n_endmembers=n_endmembers,
                  seed=seed, version=GENERATOR_VERSION)
    rng = np.random.default_rng(seed)
    lib = with_features(rng, smooth_spectra(rng, n_endmembers + 6, bands))
    endmembers, targets, clutter = lib[:n_endmembers], lib[n_endmembers:n_endmembers + 4], lib[-2:]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for split, n, offset in (("train", n_train, 1_000_000), ("test", n_test, 2_000_000)):
            for i in range(n):
                cube, mask = make_scene(seed + offset + i, endmembers, targets, clutter, size, split == "test")
                stem = f"synthetic_{split}_{i:04d}"
                save_npy(tmp / split / "aviris_ng" / f"{stem}.npy", cube)
                if split == "test":
                    (tmp / "ground_truth" / "aviris_ng").mkdir(parents=True, exist_ok=True)
                    mask_png(mask).save(tmp / "ground_truth" / "aviris_ng" / f"{stem}.png")
        (tmp / "synthetic.json").write_text(json.dumps(params, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root


def choose_dataset(data_path: Path | None, default: Path) -> tuple[Path, str, str | None]:
    """Where test.py and train.py read HAD100-layout data: ``data_path`` if given, else ``default`` if it is
    there, else this synthetic set. Returns the folder, its description, and for the synthetic set the note
    to print (the caller generates it with :func:`ensure_synthetic`; under torchrun only one process does)."""
    if data_path is not None:
        return data_path, str(data_path), None
    if default.is_dir():
        return default, str(default), None
    return DEFAULT_ROOT, "synthetic", (f"note: no HAD100 folder given and no {default}: using the synthetic HAD100-format "
                                       f"set in {DEFAULT_ROOT} (generated on first use)")


def ensure_synthetic(root: str | Path = DEFAULT_ROOT, **kwargs) -> Path:
    """The synthetic set at ``root``, generated first if it is missing or was made with other settings."""
    root = Path(root)
    want = {**DEFAULTS, **kwargs, "version": GENERATOR_VERSION}
    meta = root / "synthetic.json"
    if not (meta.is_file() and json.loads(meta.read_text()) == want):
        generate(root, **{k: v for k, v in want.items() if k != "version"})
    return root
