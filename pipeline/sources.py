"""The scene cube: the preprocessed ``(H, W, B)`` float32 band window of a scene, read block by block from
whatever holds the raw cube (a numpy array, a memory-mapped file, a lazily read file cube: data/lazy.py), or
stored in memory or in a temporary file (the preprocessed input computed once, the enhanced cube)."""
from __future__ import annotations

import errno
import os
import tempfile

import numpy as np
import torch

from data.bands import check_bbl
from data.nodata import NodataScan, scan_nodata
from data.preprocess import check_cube, check_layout, check_values, scale
from utils.errors import DiskFullError
from utils.io import FULL_ERRNOS, scratch_file
from utils.memory import format_bytes, release_pages

#: Rows of the raw cube per block of the streaming min/max pass (and of other plain reads).
SCAN_BYTES = 64 << 20
#: What the temporary-file messages advise (the options that keep a cube off the disk or move it).
TEMP_ADVICE = ("set TMPDIR to a folder with more room, or raise max_memory_gb=<GiB> (the cubes are then held in "
               "memory)")


class SceneCube:
    """The preprocessed band window of a scene, ``(H, W, B)`` float32, read by :meth:`block`: what the FEN
    and the detectors score (through a :class:`detectors.base.CubeReader`).

    Read through (``SceneCube(raw, bands, start, ...)``): bands ``[start, start + bands)`` of ``raw`` scaled
    on each read. ``raw``: anything indexable as ``raw[r0:r1, c0:c1, b0:b1]`` -> numpy array with ``shape``,
    ``ndim`` and ``dtype`` (a numpy array or memmap, a spectral ENVI memmap, a :class:`data.lazy.LazyCube`).
    ``nodata``: the file's nodata value (NaN is nodata in any case) and ``bbl`` its bad band list
    (data/nodata.py, data/bands.py). After :meth:`check`, ``valid`` is the ``(H, W)`` bool mask of pixels
    with data (None: all of them) and ``scan`` what the pass found.

    Stored (:meth:`empty`, :meth:`store`): float32 values held in ``array``, in memory or in a temporary file
    (memory-mapped, deleted when the object goes) when the plan has no room for them; :meth:`write` fills it.
    """

    def __init__(self, raw: object, bands: int, start: int = 0, name: str = "scene", nodata: float | None = None,
                 bbl: np.ndarray | None = None) -> None:
        self.raw, self.bands, self.start, self.name = raw, bands, start, name
        self.nodata, self.bbl = nodata, bbl
        self.lo: float | None = None
        self.hi: float | None = None
        self.valid: np.ndarray | None = None
        self.scan: NodataScan | None = None
        self._fill: np.ndarray | None = None
        self.array: np.ndarray | None = None  # the stored values (None: read through ``raw``)
        self.in_memory = True

    @classmethod
    def empty(cls, shape: tuple[int, int, int], in_memory: bool = True, directory: str | None = None) -> SceneCube:
        """A stored cube of ``shape`` to :meth:`write` into: in memory, or in a temporary file in ``directory``
        (default: $TMPDIR) whose disk blocks are reserved now (:func:`reserve`)."""
        if in_memory:
            array = np.empty(shape, dtype=np.float32)
        else:
            folder = tempfile.gettempdir() if directory is None else directory
            # the mapping keeps the data once the file is gone: nothing is left behind, even after a crash
            with scratch_file(folder, "ferd-cube-", ".f32") as path:
                fd = os.open(path, os.O_RDWR)
                try:
                    reserve(fd, 4 * int(np.prod(shape)), folder)
                    array = np.memmap(path, dtype=np.float32, mode="r+", shape=shape)  # "w+" would truncate
                finally:
                    os.close(fd)
        cube = cls(array, shape[2], name="stored")
        cube.array, cube.in_memory = array, in_memory
        return cube

    @classmethod
    def store(cls, cube: SceneCube, in_memory: bool = True) -> SceneCube:
        """The values of ``cube``, stored (read once, block by block)."""
        stored = cls.empty(cube.shape, in_memory)
        h, w, b = cube.shape
        step = max(1, SCAN_BYTES // (8 * w * b))
        for r0 in range(0, h, step):
            stored.write(r0, 0, cube.block(r0, min(h, r0 + step)))
        return stored

    @property
    def shape(self) -> tuple[int, int, int]:
        return int(self.raw.shape[0]), int(self.raw.shape[1]), self.bands

    def _rows_per_scan(self) -> int:
        w = self.raw.shape[1] if self.raw.ndim >= 2 else 1
        return max(1, SCAN_BYTES // max(1, 8 * w * self.bands))

    def check(self) -> None:
        """Refuse (:class:`DataError`) a raw cube that preprocessing cannot use, and keep its min and max.

        One streaming pass finds the nodata pixels (data/nodata.py); the min and max are those of the valid
        pixels. A cube without nodata that fits in one scan block is checked by ``data.preprocess.check_cube``
        as a whole; a larger one block by block, with the same messages.
        """
        raw = self.raw
        if raw.ndim != 3:
            check_cube(np.asarray(raw), self.name, self.bands, self.start)  # its one-line shape message
        check_layout(raw, self.name, self.bands, self.start)
        check_bbl(self.name, self.bbl, self.bands, self.start)
        scan = scan_nodata(raw, self.start, self.bands, self.nodata, self._rows_per_scan(), self.name)
        if scan.valid is None and raw.shape[0] <= self._rows_per_scan():
            self.lo, self.hi = check_cube(np.asarray(raw), self.name, self.bands, self.start)
        else:
            check_values(self.name, scan.inf, scan.lo, scan.hi)
            self.lo, self.hi = scan.lo, scan.hi
        self.scan, self.valid = scan, scan.valid
        if scan.valid is not None:  # the FEN's fill: the valid pixels' mean spectrum, preprocessed
            self._fill = scale(scan.mean[None, None, :], self.lo, self.hi)[0, 0]
        release_pages(raw)  # a memory-mapped cube: its pages leave this process until it is scored

    def block(self, r0: int, r1: int, c0: int = 0, c1: int | None = None) -> np.ndarray:
        """Preprocessed rows ``[r0, r1)`` and columns ``[c0, c1)``: ``(r1 - r0, c1 - c0, bands)`` float32;
        nodata pixels hold the fill (the valid pixels' mean spectrum). A stored cube in memory gives a view."""
        if self.array is not None:
            return self._stored_block(r0, r1, c0, c1)
        if self.lo is None:
            self.check()
        view = self.raw[r0:r1, c0:c1, self.start: self.start + self.bands]
        block = scale(view, self.lo, self.hi)  # data.preprocess's arithmetic: the whole cube's values
        release_pages(self.raw, view if isinstance(view, np.ndarray) else None)
        if self.valid is not None:
            block[~self.valid[r0:r1, c0:c1]] = self._fill
        return block

    def _stored_block(self, r0: int, r1: int, c0: int, c1: int | None) -> np.ndarray:
        view = self.array[r0:r1, c0:c1]
        if self.in_memory:
            return view
        out = np.array(view)
        release_pages(self.array, view)
        return out

    def write(self, r0: int, c0: int, values: np.ndarray) -> None:
        """Store ``(rows, cols, B)`` ``values`` from row ``r0``, column ``c0`` (a stored cube only)."""
        view = self.array[r0: r0 + values.shape[0], c0: c0 + values.shape[1]]
        view[...] = values
        if not self.in_memory:
            release_pages(self.array, view)

    def tensor(self) -> torch.Tensor:
        """The whole cube as ``(bands, H, W)`` float32 (as ``data.preprocess.preprocess``); a stored cube in
        memory gives a view."""
        whole = self.block(0, self.shape[0])
        if self.array is not None:
            return torch.from_numpy(whole).permute(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(whole.transpose(2, 0, 1)))


def reserve(fd: int, nbytes: int, directory: str) -> None:
    """Allocate ``nbytes`` of disk for the file ``fd`` now. A memory-mapped write into a file whose disk is
    full is not an error but a SIGBUS that kills the process without a word; with the blocks reserved up
    front, a full disk is one :class:`DiskFullError` line here instead. Where the file system cannot
    allocate (``EOPNOTSUPP``, no ``posix_fallocate``), the file is filled with zeros, which reserves too."""
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except (AttributeError, OSError) as err:
            if isinstance(err, OSError) and err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            _fill_zeros(fd, nbytes)
    except OSError as err:
        if err.errno not in FULL_ERRNOS:
            raise
        raise DiskFullError(f"temporary file in {directory}: no room for the {format_bytes(nbytes, 1)} of a "
                            f"cube ({os.strerror(err.errno)}): {TEMP_ADVICE}") from None


def _fill_zeros(fd: int, nbytes: int, chunk: int = 16 << 20) -> None:
    """Write ``nbytes`` zeros to ``fd`` (the fallback of :func:`reserve`): a full disk raises ``ENOSPC``."""
    zeros = bytes(min(chunk, nbytes))
    os.lseek(fd, 0, os.SEEK_SET)
    done = 0
    while done < nbytes:
        done += os.write(fd, zeros[: nbytes - done])
