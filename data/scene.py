"""Single scenes, with or without ground truth: MATLAB ``.mat`` (v5 via scipy, v7.3 via h5py), ``.npy`` (+ a PNG
mask of the same stem), or ENVI (data/envi.py).

Every reader returns a :class:`Scene` with the raw H x W x B cube and a boolean H x W mask, or ``mask=None``
where the file comes without one (an unlabelled scene: scored and mapped, not measured); any problem
raises :class:`data.DataError` with the file name and what is wrong. Cubes are not read into memory where
the format allows it: a ``.npy`` cube is memory-mapped (``np.load(mmap_mode="r")``), an ENVI cube too
(spectral's ``open_memmap``), and a MATLAB v7.3 cube is a :class:`MatlabCube` that h5py reads block by
block; numpy indexing and ``np.asarray`` work on all three, and pipeline/ streams them. Only
MATLAB v5 files (at most 2 GB a variable) are read whole, as scipy does.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from data.bands import envi_band_facts
from data.envi import envi_georef, envi_mask_path, open_envi, read_envi_mask
from data.geotiff import SUFFIXES as GEOTIFF_SUFFIXES
from data.geotiff import geotiff_mask_path, open_geotiff, read_geotiff_mask
from data.georef import GeoRef
from data.lazy import LazyCube
from data.netcdf import SUFFIXES as NETCDF_SUFFIXES
from data.netcdf import open_netcdf, pixel_latlon
from data.preprocess import DataError, check_mask
from utils.errors import describe

#: Names tried, in order, when a .mat file's cube or mask key is not given.
CUBE_KEYS = ("data", "hsi", "hsi_img", "img", "image", "cube", "X", "Y")
MASK_KEYS = ("map", "gt", "mask", "groundtruth", "ground_truth", "label", "labels", "GT")


@dataclass
class Scene:
    """A hyperspectral scene: ``cube`` H x W x B (raw values), ``mask`` H x W bool (True = anomaly), or None
    for a scene nobody labelled.

    Optional facts a reader fills where its format gives them: ``georef`` (where the scene lies on the
    Earth), ``wavelengths`` (B centre wavelengths, nanometres) and ``nodata`` (the value that marks a pixel
    with no data in a band, as the file declares it), ``fwhm`` (B band widths, nanometres) and ``bbl`` (B
    values of the bad band list, 1 = good, 0 = bad, as ENVI and GDAL metadata give it).
    """

    name: str
    cube: np.ndarray
    mask: np.ndarray | None
    source: str = ""
    georef: GeoRef | None = None
    wavelengths: np.ndarray | None = None
    nodata: float | None = None
    #: ``(rows, cols) -> (lat, lon)`` or None: per-pixel locations of a scene without a map grid (NetCDF)
    pixel_latlon: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None] | None = None
    fwhm: np.ndarray | None = None
    bbl: np.ndarray | None = None

    @property
    def label(self) -> str:
        """What messages call the scene: its file (``source``) when it has one, else its name."""
        return self.source or self.name

    @property
    def labelled(self) -> bool:
        """Whether the scene has a ground-truth mask (AUCs and ROC curves need one)."""
        return self.mask is not None


def read_png_mask(path: Path) -> np.ndarray:
    """Ground truth from an image: HAD100's colour PNGs (anomaly where green == 255), grey or palette
    images (255 = anomaly), 0/1 images (1 = anomaly, whatever the mode), 1-bit and 16-bit images (> 0)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA"):  # palette indices mean nothing by themselves: use the colours
                im = im.convert("RGBA")
            elif im.mode == "LA":  # grey + alpha: channel 1 would be the alpha
                im = im.convert("L")
            img = np.asarray(im)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise DataError(f"{path}: not a readable PNG mask ({describe(err)})") from None
    if img.ndim == 3:
        img = img[:, :, 1]
    if img.dtype == bool:
        return img
    if img.size and 0 <= img.min() and img.max() <= 1:  # a 0/1 mask
        return img == 1
    return img == 255 if img.dtype == np.uint8 else img > 0


class MatlabCube(LazyCube):
    """A 3-D array of a MATLAB v7.3 (HDF5) file, read on demand through h5py, with MATLAB's axes
    (``(H, W, B)``; HDF5 holds MATLAB's column-major arrays with the axes reversed).

    ``cube[rows, cols, bands]`` (integers and slices of step 1 or more) reads just that block;
    ``np.asarray(cube)`` reads it all. The file is opened for each read, so no handle is left open.
    """

    def __init__(self, path: Path, key: str, stored_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.key, self.dtype = Path(path), key, np.dtype(dtype)
        self.shape = tuple(int(n) for n in reversed(stored_shape))

    def __getitem__(self, key: object) -> np.ndarray:
        import h5py

        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        norm = []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 1:
                    raise IndexError("MatlabCube: slices must have a positive step")
                norm.append(slice(start, max(start, stop), step))
            else:
                norm.append(int(k) + n if int(k) < 0 else int(k))
        try:
            with h5py.File(self.path, "r") as fh:
                block = fh[self.key][tuple(reversed(norm))]
        except Exception as err:  # a truncated or damaged file shows only when a block is read
            raise DataError(f"{self.path}: cannot read '{self.key}' ({describe(err)})") from None
        return np.asarray(block).T

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype)


def _load_mat(path: Path, lazy: bool = False) -> dict[str, np.ndarray]:
    """All numeric arrays in a .mat file, in MATLAB's axis order (H x W x B). With ``lazy``, the 3-D arrays
    of a v7.3 file are :class:`MatlabCube` (read on demand) rather than read whole."""
    import h5py
    import scipy.io

    # complex arrays are kept so that check_cube can refuse them by name, rather than "no cube found"
    try:
        if h5py.is_hdf5(path):  # MATLAB v7.3 files are HDF5
            with h5py.File(path, "r") as fh:
                # h5py sees MATLAB's column-major arrays with their axes reversed
                return {k: (MatlabCube(path, k, v.shape, v.dtype) if lazy and v.ndim == 3 else np.asarray(v[()]).T)
                        for k, v in fh.items() if isinstance(v, h5py.Dataset) and v.dtype.kind in "biufc"}
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy and h5py raise many kinds (MatReadError, zlib, struct, ...) for a bad file
        raise DataError(f"{path}: not a readable .mat file ({describe(err)})") from None
    return {k: v for k, v in mat.items()
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biufc"}


def _pick(arrays: dict[str, np.ndarray], key: str | None, preferred: tuple[str, ...], ndim: int,
          path: Path, what: str, flag: str) -> str:
    found = ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) or "none"
    if key is not None:
        if key not in arrays:
            raise DataError(f"{path}: no key {flag}='{key}'; numeric keys found: {found}")
        return key
    candidates = [k for k, v in arrays.items() if v.ndim == ndim]
    for name in preferred:
        if name in candidates:
            return name
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(f"{path}: cannot tell which key holds the {what}; keys found: {found}; "
                    f"name it with {flag}=<key>")


def _mask_key(arrays: dict[str, np.ndarray], gt_key: str | None, cube_key: str, path: Path) -> str | None:
    """The key of the mask in a .mat file, or None where it has none.

    A candidate is 2-D and H x W like the cube (B x H x W's H x W too, so that check_mask can tell a band-first
    cube): a ``wavelengths`` vector (B x 1) or any other small array is never taken for a mask. A 2-D array
    under a usual mask name (:data:`MASK_KEYS`) is taken whatever its shape, so that a mask of the wrong size
    is reported rather than ignored.
    """
    if gt_key is not None:
        return _pick(arrays, gt_key, MASK_KEYS, 2, path, "H x W mask", "gt_key")
    shape = arrays[cube_key].shape
    fits = {k: v for k, v in arrays.items() if k != cube_key and v.ndim == 2
            and (tuple(v.shape) == tuple(shape[:2]) or tuple(v.shape) == tuple(shape[1:]))}
    named = {k: v for k, v in arrays.items() if k in MASK_KEYS and v.ndim == 2}
    if not fits and not named:
        return None
    return _pick(fits or named, None, MASK_KEYS, 2, path, "H x W mask", "gt_key")


def _keys_found(arrays: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {' x '.join(map(str, v.shape))}" for k, v in arrays.items()) or "none"


def read_mat(path: Path, data_key: str | None = None, gt_key: str | None = None) -> Scene:
    """A .mat scene: the cube (``data_key``, else guessed) and its mask (``gt_key``, else an H x W array beside
    the cube, else none: an unlabelled scene)."""
    arrays = _load_mat(path, lazy=True)
    ck = _pick(arrays, data_key, CUBE_KEYS, 3, path, "H x W x B cube", "data_key")
    mk = _mask_key(arrays, gt_key, ck, path)
    if mk is None:
        return Scene(path.stem, arrays[ck], None, str(path))
    mask = np.asarray(arrays[mk])
    if mask.ndim != 2 or mask.shape != tuple(arrays[ck].shape[:2]):
        try:
            check_mask(arrays[ck], mask, str(path))
        except DataError as err:
            raise DataError(f"{err} ({'gt_key' if gt_key else 'mask'}='{mk}', cube '{ck}'; keys found: "
                            f"{_keys_found(arrays)})") from None
    return Scene(path.stem, arrays[ck], mask != 0, str(path))


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` array (memory-mapped with ``mmap``); an unreadable file raises :class:`DataError`."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as err:  # OSError, ValueError, EOFError (empty file), ...
        # numpy's pickle message advises allow_pickle=True, i.e. running the file's code: never repeat it; memory-
        # mapped, an object array stops earlier ("Array can't be memory-mapped: Python objects in dtype")
        why = ("another kind of file, or Python objects, which are never loaded"
               if "pickle" in str(err) or "Python objects" in str(err) else describe(err))
        raise DataError(f"{path}: not a readable .npy array ({why})") from None
    if not isinstance(array, np.ndarray):  # np.load opens a .npz archive whatever the file is called
        array.close()
        raise DataError(f"{path}: a .npz archive, not a .npy array; save the cube with np.save")
    return array


def read_npy(path: Path) -> Scene:
    """A ``.npy`` cube (memory-mapped) and the ``<stem>.png`` mask beside it, if there is one."""
    cube = load_npy(path, mmap=True)
    mask_path = path.with_suffix(".png")
    mask = read_png_mask(mask_path) if mask_path.is_file() else None
    return Scene(path.stem, cube, mask, str(path))


def read_envi(path: Path) -> Scene:
    """An ENVI scene (header ``path``, memory-mapped image), its mask if one lies beside it (see data/envi.py),
    and its georeference from the header's ``map info`` (:func:`data.envi.envi_georef`)."""
    cube = open_envi(path)
    mask_path = envi_mask_path(path)
    mask = None
    if mask_path is not None:
        mask = read_png_mask(mask_path) if mask_path.suffix.lower() == ".png" else read_envi_mask(mask_path)
    return Scene(path.stem, cube, mask, str(path), georef=envi_georef(path), **envi_band_facts(path, cube.shape[2]))


def read_geotiff(path: Path) -> Scene:
    """A GeoTIFF scene (data/geotiff.py): the cube read window by window, its georeference, nodata and band
    metadata, and its mask (``<stem>.png`` or ``<stem>_gt.tif`` ...; none: unlabelled, ``mask=None``)."""
    cube, facts = open_geotiff(path)
    mask_path = geotiff_mask_path(path)
    mask = None
    if mask_path is not None:
        mask = read_png_mask(mask_path) if mask_path.suffix.lower() == ".png" else read_geotiff_mask(mask_path)
    return Scene(path.stem, cube, mask, str(path), **facts)


def read_netcdf(path: Path, data_key: str | None = None, gt_key: str | None = None) -> Scene:
    """A NetCDF4/HDF5 scene (data/netcdf.py); its mask the ``gt_key`` variable, else ``<stem>.png``, else
    none (unlabelled, ``mask=None``)."""
    cube, mask, facts = open_netcdf(path, data_key, gt_key)
    if mask is None:
        png = path.with_suffix(".png")
        mask = read_png_mask(png) if png.is_file() else None
    # sensor geometry (EMIT L1B/L2A): no map grid, but per-pixel locations where the file has them
    return Scene(path.stem, cube, mask, str(path), pixel_latlon=partial(pixel_latlon, path), **facts)


def check_scene(scene: Scene) -> Scene:
    """Shape checks that every reader shares."""
    if scene.cube.ndim != 3:
        raise DataError(f"{scene.source}: expected an H x W x B cube, got shape {scene.cube.shape}")
    if scene.mask is not None:
        check_mask(scene.cube, scene.mask, scene.source)
    return scene


def read_scene(path: str | Path, data_key: str | None = None, gt_key: str | None = None) -> Scene:
    """Read a ``.mat``, ``.npy`` (+ ``.png`` mask of the same stem, if any) or ENVI ``.hdr`` scene; a scene
    without a mask has ``mask=None``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a scene file (a HAD100-layout folder is read as a dataset: data_path=<folder>)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return check_scene(read_mat(path, data_key, gt_key))
    if suffix == ".npy":
        return check_scene(read_npy(path))
    if suffix == ".hdr":  # ENVI header + binary image (data/envi.py, through the spectral package)
        return check_scene(read_envi(path))
    if suffix in GEOTIFF_SUFFIXES:  # GeoTIFF (data/geotiff.py, through rasterio)
        return check_scene(read_geotiff(path))
    if suffix in NETCDF_SUFFIXES:  # NetCDF4 / HDF5 products (data/netcdf.py, through h5py)
        return check_scene(read_netcdf(path, data_key, gt_key))
    raise DataError(f"{path}: unknown scene format '{suffix}' (use .mat, .npy (with a .png mask if labelled), an ENVI .hdr, "
                    "a GeoTIFF .tif or a NetCDF4/HDF5 .nc/.h5)")
