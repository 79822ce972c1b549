"""What the lazily read cubes share (GeoTIFF, NetCDF/HDF5, data.scene's MATLAB v7.3 reader): the array-like
surface the pipeline reads them through (:class:`LazyCube`), and index normalisation: ``cube[rows, cols,
bands]`` with integers and slices of positive step, as numpy takes them."""
from __future__ import annotations

import numpy as np


class LazyCube:
    """The numpy-like attributes of a cube read from its file on each index: ``shape`` and ``dtype`` set by
    the subclass, which reads in ``__getitem__``."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]


def normalise_key(key: object, shape: tuple[int, ...], name: str) -> list[slice | int]:
    """``key`` (an index, a slice, a tuple of them, Ellipsis) -> one slice of positive step or one
    non-negative integer per axis of ``shape``; IndexError for what the lazy readers cannot read."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    key = key + (slice(None),) * (len(shape) - len(key))
    out: list[slice | int] = []
    for k, n in zip(key, shape):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step < 1:
                raise IndexError(f"{name}: slices must have a positive step")
            out.append(slice(start, max(start, stop), step))
        else:
            i = int(k) + n if int(k) < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"{name}: index {int(k)} out of range for an axis of {n}")
            out.append(i)
    return out
