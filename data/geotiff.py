"""GeoTIFF scenes (EnMAP, DESIS, PRISMA and most processed products): band-first multi-band rasters read
with rasterio (GDAL in its wheels, the field's standard), window by window, and one-band GeoTIFF maps out.

The cube is a :class:`GeoTiffCube`: ``cube[rows, cols, bands]`` reads just that window of those bands
(``(rows, cols, bands)``, numpy's H x W x B order although the file is band-first), so pipeline/ streams a
file of any size within ``--max_memory_gb`` as it streams memory-mapped ``.npy`` and ENVI cubes. The file is
opened for each read, so no handle is left open (and the object can be sent to another process).

What GDAL's metadata says is kept: the CRS and geotransform (:class:`data.georef.GeoRef`), the nodata value,
and per band ``wavelength`` (nanometres; micrometres are converted), ``fwhm`` and ``bbl`` (1 = good band, as
ENVI) from the band tags or, where a file keeps them as ENVI lists, the ``ENVI`` metadata domain.

rasterio is imported inside the functions: only runs that read or write a GeoTIFF pay for it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.georef import GeoRef
from data.lazy import LazyCube, normalise_key
from data.preprocess import DataError
from utils.errors import describe
from utils.io import atomic_path

#: File suffixes read as GeoTIFF.
SUFFIXES = (".tif", ".tiff")


def _open(path: Path):
    import rasterio

    try:
        return rasterio.open(path)
    except Exception as err:  # rasterio's RasterioIOError, CPLE_* for a damaged or foreign file
        raise DataError(f"{path}: not a readable GeoTIFF ({describe(err)})") from None


class GeoTiffCube(LazyCube):
    """The bands of a GeoTIFF as an ``(H, W, B)`` array read on demand (rasterio windows).

    ``cube[rows, cols, bands]`` (integers and slices of step 1 or more) reads that window; ``np.asarray(cube)``
    reads it all.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = Path(path), shape, np.dtype(dtype)

    def __getitem__(self, key: object) -> np.ndarray:
        from rasterio.windows import Window

        rows, cols, bands = normalise_key(key, self.shape, str(self.path))
        as_slice = [k if isinstance(k, slice) else slice(k, k + 1, 1) for k in (rows, cols, bands)]
        r, c, b = as_slice
        indexes = list(range(b.start + 1, b.stop + 1, b.step))  # GDAL counts bands from 1
        h, w = len(range(r.start, r.stop)), len(range(c.start, c.stop))
        if not indexes or h == 0 or w == 0:
            block = np.empty((len(range(r.start, r.stop, r.step)), len(range(c.start, c.stop, c.step)),
                              len(indexes)), dtype=self.dtype)
        else:
            try:
                with _open(self.path) as ds:
                    data = ds.read(indexes, window=Window(c.start, r.start, w, h))   # (bands, h, w)
            except DataError:
                raise
            except Exception as err:  # a truncated file shows only when a block is read
                raise DataError(f"{self.path}: cannot read a window ({describe(err)})") from None
            block = np.moveaxis(data, 0, -1)[:: r.step, :: c.step]
        squeeze = tuple(i for i, k in enumerate((rows, cols, bands)) if not isinstance(k, slice))
        return block.squeeze(axis=squeeze) if squeeze else block

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype)


def _floats(values: list[str | None]) -> np.ndarray | None:
    """Per-band numbers from metadata text, or None unless every band has one."""
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if len(out) else None


def _envi_list(text: str | None) -> list[str] | None:
    """An ENVI ``{a, b, c}`` list as its items."""
    if not text:
        return None
    return [t.strip() for t in text.strip().strip("{}").split(",") if t.strip()]


def to_nanometres(values: np.ndarray | None, units: str | None) -> np.ndarray | None:
    """Wavelengths in nanometres: micrometre values (``units`` says so, or all below 100) are scaled."""
    if values is None:
        return None
    micro = (units or "").strip().lower() in ("micrometers", "micrometres", "microns", "um", "µm")
    return values * 1000.0 if micro or (units is None and values.max() < 100) else values


def band_metadata(ds) -> dict[str, np.ndarray | None]:
    """``wavelengths`` (nm), ``fwhm`` (nm) and ``bbl`` (1 = good) per band of an open rasterio dataset, each
    None where the file does not give it for every band."""
    tags = [{k.lower(): v for k, v in ds.tags(i).items()} for i in range(1, ds.count + 1)]
    envi = {k.lower(): v for k, v in ds.tags(ns="ENVI").items()} if "ENVI" in (ds.tag_namespaces() or []) else {}
    out: dict[str, np.ndarray | None] = {}
    units = tags[0].get("wavelength_units") if tags else None
    units = units or envi.get("wavelength_units")
    for key in ("wavelength", "fwhm", "bbl"):
        values = _floats([t.get(key) for t in tags])
        if values is None and key in envi:
            values = _floats(_envi_list(envi[key]) or [])
            values = values if values is not None and len(values) == ds.count else None
        out[key] = values
    wavelengths = out.pop("wavelength")
    out["wavelengths"] = to_nanometres(wavelengths, units)
    if out["fwhm"] is not None and wavelengths is not None and out["wavelengths"] is not wavelengths:
        out["fwhm"] = out["fwhm"] * 1000.0  # given in the wavelengths' micrometres
    return out


def open_geotiff(path: Path) -> tuple[GeoTiffCube, dict]:
    """The cube of a GeoTIFF and its facts, as :class:`data.scene.Scene` fields: ``georef`` (:class:`GeoRef` or
    None), ``nodata`` (float or None), ``wavelengths``, ``fwhm``, ``bbl`` (see :func:`band_metadata`)."""
    with _open(path) as ds:
        dtypes = set(ds.dtypes)
        if len(dtypes) != 1:
            raise DataError(f"{path}: bands of different types ({', '.join(sorted(dtypes))}); one type is needed")
        cube = GeoTiffCube(path, (ds.height, ds.width, ds.count), np.dtype(ds.dtypes[0]))
        georef = None
        if ds.crs is not None or not ds.transform.is_identity:
            crs = ds.crs.to_string() if ds.crs is not None else None
            georef = GeoRef(crs, tuple(float(v) for v in ds.transform.to_gdal()))
        facts = {"georef": georef, "nodata": None if ds.nodata is None else float(ds.nodata), **band_metadata(ds)}
    return cube, facts


def read_geotiff_mask(path: Path) -> np.ndarray:
    """A one-band GeoTIFF as an ``(H, W)`` bool mask (nonzero = anomaly)."""
    with _open(path) as ds:
        if ds.count != 1:
            raise DataError(f"{path}: a mask must have one band, this one has {ds.count}")
        return ds.read(1) != 0


def write_geotiff_map(path: Path, scores: np.ndarray, georef: GeoRef | None, nodata: float,
                      description: str = "", tags: dict[str, str] | None = None) -> None:
    """One ``(H, W)`` map as a one-band float32 GeoTIFF with ``georef``'s CRS and transform; NaN pixels
    (no data) are written as ``nodata`` and tagged so; ``tags``: the dataset's key=value metadata. Atomic
    (written beside ``path``, then renamed)."""
    import rasterio
    from rasterio.transform import Affine

    values = np.asarray(scores, dtype=np.float32)
    if not np.isnan(nodata):
        values = np.where(np.isnan(values), np.float32(nodata), values)
    profile = {"driver": "GTiff", "height": values.shape[0], "width": values.shape[1], "count": 1,
               "dtype": "float32", "nodata": nodata}
    if georef is not None:
        profile["transform"] = Affine.from_gdal(*georef.transform)
        if georef.crs is not None:
            profile["crs"] = georef.crs
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(values, 1)
            if description:
                ds.set_band_description(1, description)
            if tags:
                ds.update_tags(**tags)


#: Ground-truth files looked for beside a GeoTIFF scene ``<stem>.tif``, in this order.
MASK_NAMES = ("{stem}.png", "{stem}_gt.tif", "{stem}_mask.tif", "{stem}_map.tif")


def geotiff_mask_path(path: Path) -> Path | None:
    """The ground-truth file beside GeoTIFF ``path`` (:data:`MASK_NAMES`), or None."""
    for pattern in MASK_NAMES:
        candidate = path.with_name(pattern.format(stem=path.stem))
        if candidate.is_file() and candidate != path:
            return candidate
    return None

