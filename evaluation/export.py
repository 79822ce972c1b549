"""Outputs for the field's own tools: the authors' MATLAB files (``test.py --save_mat``) and georeferenced
ENVI score maps (``test.py --save_envi``).

``--save_mat`` writes the files of the authors' ``test.py``, with their names, keys and layouts, so that an
existing MATLAB workflow reads them unchanged:

    scores.mat     key ``result``: N x H x W float64 score maps, one slice per scene in test_list.txt order
    gts.mat        key ``gt``:     N x 1 x H x W float32 masks, 1 = anomaly
    mixfs.mat      key ``mixfs``:  N x B x H x W float32 FEN(x), the FPL output (only when a FEN ran)
    each_auc.txt   ``<scene>:<auc> `` per line (the AUC as Python prints a float, ``nan`` where undefined)
    test_list.txt  ``scene<k>:<scene>`` per line, k from 1

With several detectors the per-detector files are ``scores_<detector>.mat`` and ``each_auc_<detector>.txt``
(``+`` spelled ``_``: ``scores_FEN_GRX.mat``). A ``.mat`` stack needs one H x W, so scenes of different sizes
get one complete set per size, in ``mat_<H>x<W>/`` under the save folder (scenes in their input order); a
single size writes the set beside ``auc.csv``, as the authors' code does. A variable over MATLAB v5's 2 GiB
limit is written as a v7.3 (HDF5) file under the same name, which MATLAB's ``load`` reads alike.

``--save_envi`` writes, for ENVI input scenes, each score map as a one-band float32 ENVI image
``envi/<scene>_<detector>.hdr`` + ``.img`` (through ``spectral``) whose header carries the input header's
georeferencing fields (:data:`GEO_FIELDS`), so that the map overlays the scene in QGIS or ENVI.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import FerdError
from utils.io import atomic_path, save_text

#: Header fields that tie pixels to map coordinates; copied verbatim (as the input spells them) to each map.
GEO_FIELDS = ("map info", "coordinate system string", "pixel size", "projection info", "geo points",
              "x start", "y start")
#: MATLAB v5/v7 files hold variables up to 2^31 bytes; larger ones need v7.3 (HDF5).
MAT_V5_LIMIT = 2 ** 31


class ExportError(FerdError, ValueError):
    """An export option that does not fit the input (test.py prints it as one line, exit code 2)."""


@dataclass
class SceneRecord:
    """What the exports need from one evaluated scene.

    ``mask`` (H, W) bool; ``maps`` detector -> (H, W) scores; ``auc`` detector -> AUC or None (one-class
    mask); ``fen_out`` (B, H, W) float32 FEN(x) or None; ``source`` the input file (its ENVI header).
    """

    name: str
    source: str
    mask: np.ndarray
    maps: dict[str, np.ndarray]
    auc: dict[str, float | None]
    fen_out: np.ndarray | None = None
    nodata: float | None = None  # the input's nodata value: NaN scores (nodata pixels) are written as it


def detector_tag(name: str) -> str:
    """A detector name as it appears in file names: ``FEN+GRX`` -> ``FEN_GRX``."""
    return name.replace("+", "_")


# --- the authors' MATLAB files ------------------------------------------------------------------------

def _mat73_header() -> bytes:
    """The 128-byte MATLAB header that marks an HDF5 file as a v7.3 MAT-file (text, subsystem offset,
    version 0x0200, endian indicator 'IM')."""
    text = (f"MATLAB 7.3 MAT-file, Platform: {platform.system()}-{platform.machine()}, "
            f"Created on: {time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 .")
    return text.encode("ascii")[:116].ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


def save_mat(path: Path, key: str, slices: list[np.ndarray], dtype: np.dtype) -> None:
    """Write ``np.stack(slices)`` (N, ...) as ``dtype`` under ``key``, atomically: MATLAB v5 through scipy,
    or v7.3 (HDF5, written slice by slice, never stacked in memory) when it exceeds :data:`MAT_V5_LIMIT`."""
    import scipy.io

    dtype = np.dtype(dtype)
    shape = (len(slices), *slices[0].shape)
    with atomic_path(path) as tmp:
        if int(np.prod(shape)) * dtype.itemsize <= MAT_V5_LIMIT:
            with open(tmp, "wb") as fh:  # a file object: scipy would append ".mat" to a bare name
                scipy.io.savemat(fh, {key: np.stack(slices).astype(dtype, copy=False)})
            return
        import h5py

        with h5py.File(tmp, "w", userblock_size=512) as fh:
            # MATLAB is column-major: an N x ... x W array is the HDF5 dataset W x ... x N
            ds = fh.create_dataset(key, shape=shape[::-1], dtype=dtype)
            ds.attrs["MATLAB_class"] = np.bytes_({"f8": "double", "f4": "single"}[dtype.str[1:]])
            for n, s in enumerate(slices):
                ds[..., n] = np.asarray(s, dtype=dtype).T
        with open(tmp, "r+b") as fh:
            fh.write(_mat73_header())


def each_auc_text(records: list[SceneRecord], detector: str) -> str:
    """``each_auc.txt``: ``<scene>:<auc> `` per line, the AUC as Python prints a float (nan: undefined)."""
    lines = []
    for r in records:
        auc = r.auc.get(detector)
        lines.append(f"{r.name}:{float('nan') if auc is None else float(auc)} \n")
    return "".join(lines)


def scene_list_text(records: list[SceneRecord]) -> str:
    """``test_list.txt``: ``scene<k>:<scene>`` per line, k from 1 in slice order."""
    return "".join(f"scene{k}:{r.name}\n" for k, r in enumerate(records, start=1))


def size_groups(records: list[SceneRecord]) -> dict[tuple[int, int], list[SceneRecord]]:
    """Records by scene size (H, W), sizes in order of first appearance, scenes in input order."""
    groups: dict[tuple[int, int], list[SceneRecord]] = {}
    for r in records:
        groups.setdefault(tuple(r.mask.shape), []).append(r)
    return groups


def write_mat_set(records: list[SceneRecord], out_dir: Path, detectors: list[str]) -> list[Path]:
    """One set of the authors' files for scenes of one size; returns the paths written."""
    single = len(detectors) == 1
    written = []
    for d in detectors:
        suffix = "" if single else f"_{detector_tag(d)}"
        path = out_dir / f"scores{suffix}.mat"
        save_mat(path, "result", [r.maps[d] for r in records], np.float64)
        save_text(each_auc_text(records, d), out_dir / f"each_auc{suffix}.txt")
        written += [path, out_dir / f"each_auc{suffix}.txt"]
    save_mat(out_dir / "gts.mat", "gt", [r.mask[None] for r in records], np.float32)
    written.append(out_dir / "gts.mat")
    if records[0].fen_out is not None:
        save_mat(out_dir / "mixfs.mat", "mixfs", [r.fen_out for r in records], np.float32)
        written.append(out_dir / "mixfs.mat")
    save_text(scene_list_text(records), out_dir / "test_list.txt")
    return written + [out_dir / "test_list.txt"]


def write_mat(records: list[SceneRecord], save_dir: Path, detectors: list[str]) -> list[Path]:
    """The authors' files in ``save_dir`` (one scene size) or one set per size in ``save_dir/mat_<H>x<W>``."""
    groups = size_groups(records)
    if len(groups) == 1:
        return write_mat_set(records, save_dir, detectors)
    written = []
    for (h, w), group in groups.items():
        written += write_mat_set(group, save_dir / f"mat_{h}x{w}", detectors)
    return written


# --- ENVI score maps ----------------------------------------------------------------------------------

def is_envi(source: str) -> bool:
    return Path(source).suffix.lower() == ".hdr"


def check_envi_sources(sources: list[str]) -> None:
    """Before any work: ``--save_envi`` needs ENVI scenes, whose header holds the georeferencing to keep."""
    for s in sources:
        if not is_envi(s):
            raise ExportError(f"save_envi=True: {s} is not an ENVI scene, so there is no map info to keep; "
                             "give ENVI .hdr scenes or save_envi=False (the .npz score maps have every map)")


def envi_georef(header: str | os.PathLike) -> dict[str, str]:
    """The georeferencing fields (:data:`GEO_FIELDS`) of an ENVI header, as header text.

    ``spectral`` reads a ``{a, b, c}`` value as a list split at the commas and writes a list with commas
    inside items replaced by ``-``, which would break the WKT of ``coordinate system string``; so each value
    is joined back into its brace form and handed to ``spectral`` as a string, which it writes verbatim.
    """
    from spectral.io import envi

    meta = envi.read_envi_header(str(header))
    out = {}
    for key in GEO_FIELDS:
        if key in meta:
            value = meta[key]
            sep = "," if key == "coordinate system string" else ", "
            out[key] = "{" + sep.join(value) + "}" if isinstance(value, list) else value
    return out


def write_envi_map(path: Path, scores: np.ndarray, metadata: dict[str, object]) -> None:
    """One ``(H, W)`` map as a one-band float32 ENVI image ``path`` (``.hdr``) + ``.img`` beside it.

    ``spectral`` writes both files in place; here it writes them in a temporary folder beside ``path``, and
    the image then the header are renamed into place, so a header never points at a half-written image.
    """
    from spectral.io import envi

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}.", dir=path.parent) as tmp:
        tmp_hdr = Path(tmp) / path.name
        envi.save_image(str(tmp_hdr), np.asarray(scores, dtype=np.float32), dtype=np.float32, interleave="bsq",
                        ext=".img", metadata=metadata, force=True)
        os.replace(tmp_hdr.with_suffix(".img"), path.with_suffix(".img"))
        os.replace(tmp_hdr, path)


def write_envi(records: list[SceneRecord], save_dir: Path, detectors: list[str]) -> list[Path]:
    """Every detector's map of every (ENVI) scene as ``save_dir/envi/<scene>_<detector>.hdr``."""
    written = []
    for r in records:
        georef = envi_georef(r.source)
        for d in detectors:
            path = save_dir / "envi" / f"{r.name}_{detector_tag(d)}.hdr"
            meta = {**georef, "band names": [d], "description":
                    f"{d} anomaly scores of {r.name} (FERD test.py; georeferencing of {Path(r.source).name})"}
            scores = r.maps[d]
            if np.isnan(scores).any():  # nodata pixels (data/nodata.py): the input's nodata value, declared
                fill = float("nan") if r.nodata is None else r.nodata
                scores = np.where(np.isnan(scores), fill, scores)
                meta["data ignore value"] = str(fill)
            write_envi_map(path, scores, meta)
            written.append(path)
    return written


def write_exports(records: list[SceneRecord], save_dir: Path, detectors: list[str], mat: bool = False,
                  envi: bool = False) -> list[Path]:
    """All exports asked for (test.py ``--save_mat``, ``--save_envi``); returns the paths written."""
    written = []
    if records and mat:
        written += write_mat(records, save_dir, detectors)
    if records and envi:
        written += write_envi(records, save_dir, detectors)
    return written
