"""NetCDF4 / HDF5 products (EMIT's L1B radiance and L2A reflectance granules and their kind), read through
h5py (a NetCDF4 file is an HDF5 file), window by window.

EMIT's layout, which this reader follows (and any file that names its dimensions)::

    radiance | reflectance     (downtrack, crosstrack, bands) float32, _FillValue -9999
    sensor_band_parameters/    wavelengths (bands, nm), fwhm (bands), good_wavelengths (bands, 1 = good)
    location/                  lat, lon (downtrack, crosstrack): each pixel's position (sensor geometry)

* the cube is the variable ``--data_key`` (guessed where one 3-D variable is called ``radiance``,
  ``reflectance``, ``data`` ...); its axis order comes from its dimension names (NetCDF dimension scales):
  a name with ``band`` or ``wavelength`` in it is the band axis, the other two are rows then columns in file
  order; without names the file order is taken as rows x columns x bands;
* ``_FillValue`` (or ``missing_value``) is the nodata value (data/nodata.py);
* wavelengths, fwhm and the good-band list from ``sensor_band_parameters``, micrometres converted to nm;
* the ground truth is the 2-D variable ``--gt_key`` of the same file, or a ``<stem>.png`` beside it; without
  either, the scene is unlabelled (an all-False mask stands for "no ground truth");
* L1B/L2A cubes are in sensor geometry: rows and columns are no map grid, so the scene has no
  :class:`data.georef.GeoRef`; :func:`pixel_latlon` gives the latitude/longitude of pixels from the
  ``location`` group, for detections.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.lazy import LazyCube, normalise_key
from data.preprocess import DataError
from utils.errors import describe

#: File suffixes read as NetCDF4/HDF5 scenes.
SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".he5")
#: Names tried, in order, for the cube when --data_key is not given.
CUBE_NAMES = ("radiance", "reflectance", "data", "cube", "hsi", "image")
#: The group holding the band table, and its variables.
BAND_GROUP = "sensor_band_parameters"
LOCATION_GROUP = "location"


def _file(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except Exception as err:  # OSError for a file that is not HDF5 (a NetCDF3 classic file, say)
        raise DataError(f"{path}: not a readable NetCDF4/HDF5 file ({describe(err)}); NetCDF3 classic files "
                        "are not read: convert with nccopy -k nc4") from None


def dimension_names(ds) -> list[str]:
    """The NetCDF dimension names of an h5py dataset ('' where a dimension has none)."""
    names = []
    for dim in ds.dims:
        name = dim.label
        if not name and len(dim):
            try:
                name = dim[0].name.rsplit("/", 1)[-1]
            except Exception:  # a dangling reference: no name
                name = ""
        names.append(name or "")
    return names


def axis_order(names: list[str], path: Path, key: str) -> tuple[int, int, int]:
    """``(row axis, column axis, band axis)`` of the stored array from its dimension names."""
    bands = [i for i, n in enumerate(names) if "band" in n.lower() or "wavelength" in n.lower()]
    if len(bands) > 1:
        raise DataError(f"{path}: '{key}' has several band-like dimensions ({', '.join(names)}); cannot tell "
                        "the band axis")
    if not bands:
        return 0, 1, 2
    others = [i for i in range(3) if i != bands[0]]
    return others[0], others[1], bands[0]


class H5Cube(LazyCube):
    """A 3-D variable of an HDF5/NetCDF4 file as an ``(H, W, B)`` array read on demand, whatever its stored
    axis order (``order``: the stored axes of rows, columns and bands). The file is opened for each read."""

    def __init__(self, path: Path, key: str, stored_shape: tuple[int, ...], dtype: np.dtype,
                 order: tuple[int, int, int]) -> None:
        self.path, self.key, self.dtype, self.order = Path(path), key, np.dtype(dtype), order
        self.shape = tuple(int(stored_shape[a]) for a in order)

    def __getitem__(self, key: object) -> np.ndarray:
        norm = normalise_key(key, self.shape, str(self.path))
        stored: list[slice | int] = [slice(None)] * 3
        for axis, k in zip(self.order, norm):
            stored[axis] = k
        try:
            with _file(self.path) as fh:
                block = np.asarray(fh[self.key][tuple(stored)])
        except DataError:
            raise
        except Exception as err:  # a truncated or damaged file shows only when a block is read
            raise DataError(f"{self.path}: cannot read '{self.key}' ({describe(err)})") from None
        kept = [a for a in self.order if isinstance(stored[a], slice)]   # stored axes left, in H, W, B order
        present = sorted(kept)
        return np.transpose(block, [present.index(a) for a in kept]) if block.ndim > 1 else block

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype)


def _attr_number(ds, *names: str) -> float | None:
    for name in names:
        if name in ds.attrs:
            value = np.asarray(ds.attrs[name]).ravel()
            if value.size == 1 and value.dtype.kind in "iuf":
                return float(value[0])
    return None


def _band_table(fh, bands: int) -> dict[str, np.ndarray | None]:
    """wavelengths (nm), fwhm (nm) and bbl (1 = good) from the ``sensor_band_parameters`` group."""
    out: dict[str, np.ndarray | None] = {"wavelengths": None, "fwhm": None, "bbl": None}
    group = fh.get(BAND_GROUP)
    if group is None:
        return out
    for key, names in (("wavelengths", ("wavelengths", "wavelength")), ("fwhm", ("fwhm",)),
                       ("bbl", ("good_wavelengths", "bbl"))):
        for name in names:
            if name in group and group[name].shape == (bands,):
                values = np.asarray(group[name][()], dtype=np.float64)
                units = group[name].attrs.get("units", b"")
                units = (units.decode() if isinstance(units, bytes) else str(units)).lower()
                if key != "bbl" and (units.startswith("micro") or units in ("um", "µm") or
                                     (not units and values.max() < 100)):
                    values = values * 1000.0
                out[key] = values
                break
    return out


def _pick_cube(fh, path: Path, key: str | None) -> str:
    import h5py

    cubes = [k for k, v in fh.items() if isinstance(v, h5py.Dataset) and v.ndim == 3 and v.dtype.kind in "biuf"]
    if key is not None:
        if key not in fh or not isinstance(fh[key], h5py.Dataset):
            raise DataError(f"{path}: no variable data_key='{key}'; 3-D variables found: {', '.join(cubes) or 'none'}")
        if fh[key].ndim != 3:
            raise DataError(f"{path}: variable data_key='{key}' has shape {fh[key].shape}, not a 3-D cube")
        return key
    for name in CUBE_NAMES:
        if name in cubes:
            return name
    if len(cubes) == 1:
        return cubes[0]
    raise DataError(f"{path}: cannot tell which variable holds the cube; 3-D variables found: "
                    f"{', '.join(cubes) or 'none'}; name it with data_key=<variable>")


def open_netcdf(path: Path, data_key: str | None = None, gt_key: str | None = None
                ) -> tuple[H5Cube, np.ndarray | None, dict]:
    """The cube of a NetCDF4/HDF5 file (module docstring), its ``gt_key`` mask (None if not asked for), and
    its facts: ``nodata``, ``wavelengths``, ``fwhm``, ``bbl``."""
    with _file(path) as fh:
        key = _pick_cube(fh, path, data_key)
        ds = fh[key]
        order = axis_order(dimension_names(ds), path, key)
        cube = H5Cube(path, key, ds.shape, ds.dtype, order)
        nodata = _attr_number(ds, "_FillValue", "missing_value")
        table = _band_table(fh, cube.shape[2])
        mask = None
        if gt_key is not None:
            if gt_key not in fh or fh[gt_key].ndim != 2:
                raise DataError(f"{path}: no 2-D variable gt_key='{gt_key}'")
            mask = np.asarray(fh[gt_key][()]) != 0
    return cube, mask, {"nodata": nodata, **table}


def pixel_latlon(path: Path, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Latitude and longitude of pixels ``(rows, cols)`` from the file's ``location`` group (EMIT: ``lat``,
    ``lon``, downtrack x crosstrack), or None where the file has none."""
    with _file(Path(path)) as fh:
        group = fh.get(LOCATION_GROUP)
        if group is None or "lat" not in group or "lon" not in group:
            return None
        lat, lon = np.asarray(group["lat"][()]), np.asarray(group["lon"][()])
    rows, cols = np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)
    return lat[rows, cols].astype(np.float64), lon[rows, cols].astype(np.float64)
