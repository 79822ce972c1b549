"""FEN weights: the authors' released checkpoints (fetched, verified, cached) and this project's own.

``load_fen(spec, bands)`` is the one entry point. ``spec`` is a release name from :data:`RELEASES`
(``had100``, ``aviris``), the name of a FEN this project trained and keeps in ``weights/shipped/``
(:data:`SHIPPED`: ``abu10``; docs/model_card_abu10.md), or the path of a checkpoint written by this
project's ``train.py`` / :func:`save_fen`.

Where release files come from, first match wins:

1. ``FERD_WEIGHTS_DIR`` (or the ``weights_dir`` argument): a local copy laid out as
   ``{dir}/{name}-{bands}bands/{convh,enc,pc}.pt`` (e.g. ``../shared/ferd-release``);
2. the cache ``checkpoints/release/`` of this repository;
3. a download from the authors' repository at the pinned commit into that cache.

Every file is checked against its SHA-256 before ``torch.load`` sees it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from model.fen import FEN
from utils.errors import FerdError, describe
from utils.io import save_torch
from weights.files import download, load_tensors, sha256, state_dict_of

#: The authors' repository and the commit the released weights are pinned to (method sec. 6).
FERD_REPO_RAW = "https://raw.githubusercontent.com/cristianoKaKa/FERD"
FERD_COMMIT = "0e021faf9646a4c95ff975c300d4af9ecd3488b7"
CACHE_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "release"
ENV_WEIGHTS_DIR = "FERD_WEIGHTS_DIR"
RELEASE_FILES = ("convh.pt", "enc.pt", "pc.pt")
CHECKPOINT_FORMAT = "ferd-fen/1"

_ENC = "c333f48607543486a380ba900a57ea20559b40ef2e7f25dd246de3369371978c"  # ImageNet layer1, shared


@dataclass(frozen=True)
class Release:
    """One released weight set: where it lives upstream and the SHA-256 of each file."""

    name: str
    bands: int
    upstream_dir: str
    sha256: dict[str, str]

    @property
    def local_name(self) -> str:
        return f"{self.name}-{self.bands}bands"

    def url(self, filename: str) -> str:
        return f"{FERD_REPO_RAW}/{FERD_COMMIT}/{self.upstream_dir}/{filename}"


RELEASES: dict[str, dict[int, Release]] = {
    "had100": {
        50: Release("had100", 50, "saved_models/50bands", {
            "convh.pt": "64859f3aa3b65352bc881e6c103e6d5131a765adf45cadff6ebea405f0649540", "enc.pt": _ENC,
            "pc.pt": "adc3601bfe865cb5d60734ce32a2359d50a64671644aa418687fa118e494bf8d"}),
        100: Release("had100", 100, "saved_models/100bands", {
            "convh.pt": "08e837f7e04c5f4982edb25a29f69877f7b7387404ffac3722682b52875adcda", "enc.pt": _ENC,
            "pc.pt": "ac04ef92c5ace09365d60f7e729385eca9149299a3c6d3981c8c0d3b62c1f0a5"}),
        200: Release("had100", 200, "saved_models/200bands", {
            "convh.pt": "18cebf832b4d740c7b34c2ab049f505e0e418c316940bbadd143131cc4f36da5", "enc.pt": _ENC,
            "pc.pt": "e15f12739cbca0cf7eead7e9adeee785fe70e62ca36266178edc9891d50d7b56"}),
    },
    "aviris": {
        200: Release("aviris", 200, "Supp_Exp/saved_models/200bands", {
            "convh.pt": "ccd4286945c93829fdb3ccce4bb27599adf9f3e01c303cb3ea09827100e58ee4",
            "enc.pt": "142e80d8d16893a279cbece11bb1c4520e5f178a54207e5d628e3da826e71fe5",
            "pc.pt": "1351abeb56ccdece61c0fbac7ecc2f5f53f8d5714af77087114615f9fe263e57"}),
    },
}


#: FENs trained by this project, kept in the repository as ``weights/shipped/{name}-{bands}bands.pt`` (train.py
#: checkpoints: FEN, its ZCL, and the metadata of the run): name -> bands -> SHA-256 of the file.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED: dict[str, dict[int, str]] = {
    "abu10": {50: "88bfec5ca1524471b5aa9f9d8eeb4074afdf70ae867020f49641ac058b1a6996"},  # docs/model_card_abu10.md
}


class WeightsError(FerdError, RuntimeError):
    """Weights that cannot be found, fetched, verified or used; the message says what to do.

    A :class:`~utils.errors.FerdError` (one line, exit code 2) and a RuntimeError, so ``except RuntimeError``
    catches it too."""


def get_release(name: str, bands: int) -> Release:
    if name not in RELEASES:
        raise WeightsError(f"unknown weights '{name}': use one of {sorted(RELEASES)} or a checkpoint path")
    if bands not in RELEASES[name]:
        have = ", ".join(str(b) for b in sorted(RELEASES[name]))
        raise WeightsError(f"weights '{name}' were released for {have} bands, not bands={bands}")
    return RELEASES[name][bands]


def release_files(release: Release, weights_dir: str | os.PathLike | None = None,
                  cache_dir: Path | None = None) -> dict[str, Path]:
    """Paths of the three verified files of ``release``, downloading into the cache if needed."""
    weights_dir = weights_dir or os.environ.get(ENV_WEIGHTS_DIR)
    cache_dir = CACHE_DIR if cache_dir is None else cache_dir
    paths = {}
    for filename in RELEASE_FILES:
        expected = release.sha256[filename]
        if weights_dir:
            path = Path(weights_dir) / release.local_name / filename
            if not path.is_file():
                raise WeightsError(f"{path}: not found (the weights folder {weights_dir}, from weights_dir=<folder> or "
                                   f"{ENV_WEIGHTS_DIR}, must hold {release.local_name}/{filename})")
        else:
            path = cache_dir / release.local_name / filename
            if not path.is_file():
                download(release.url(filename), path, expected, WeightsError,
                         f"offline? set {ENV_WEIGHTS_DIR}=/path/to/ferd-release (a folder holding "
                         f"{path.parent.name}/{path.name}) or place the file at {path}")
        got = sha256(path)
        if got != expected:
            raise WeightsError(f"{path}: checksum mismatch (sha256 {got}, expected {expected}); refusing to load")
        paths[filename] = path
    return paths


def fetch_releases(dest: Path) -> tuple[list[Path], int]:
    """Every released file in ``dest/<name>-<bands>bands/`` (the layout of ``FERD_WEIGHTS_DIR``), fetched from the
    authors' repository unless already there with the right SHA-256; returns the paths and how many were fetched."""
    paths, fetched = [], 0
    for release in (r for by_bands in RELEASES.values() for r in by_bands.values()):
        for filename in RELEASE_FILES:
            path = dest / release.local_name / filename
            if not (path.is_file() and sha256(path) == release.sha256[filename]):
                download(release.url(filename), path, release.sha256[filename], WeightsError,
                         f"offline? copy the release into {dest} by hand (e.g. from a machine that has it)")
                fetched += 1
            paths.append(path)
    return paths, fetched


#: What ``--weights`` takes, said after a file it cannot read.
ACCEPTS = ("the weights are a fen_<N>bands.pt written by train.py or a release name "
           f"({', '.join(sorted(RELEASES))})")


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return state_dict_of(load_tensors(path, WeightsError, ACCEPTS))


#: The authors' file names and their layout (method sec. 6): CWL, layer1, FPL + ZCL.
FPL_KEYS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")
ZCL_KEYS = {"conv3.weight": "weight", "conv3.bias": "bias"}


def read_authors_files(paths: dict[str, Path]) -> tuple[FEN, dict[str, torch.Tensor]]:
    """The FEN (eval mode) and the ZCL's ``{"weight", "bias"}`` from the authors' ``convh.pt`` (CWL),
    ``enc.pt`` (layer1) and ``pc.pt`` (FPL + ZCL)."""
    convh = _state_dict(paths["convh.pt"])
    enc = _state_dict(paths["enc.pt"])
    pc = _state_dict(paths["pc.pt"])
    try:
        bands, hidden = pc["conv2.weight"].shape[:2]
        fen = FEN(bands, hidden=hidden)
        fen.cwl.conv.load_state_dict({"weight": convh["convh.weight"]})
        fen.layer1.load_state_dict({k.removeprefix("layer1."): v for k, v in enc.items()})
        fen.fpl.load_state_dict({k: pc[k] for k in FPL_KEYS})
        zcl = {ours: pc[theirs] for theirs, ours in ZCL_KEYS.items()}
    except (KeyError, RuntimeError, ValueError, AttributeError) as err:
        raise WeightsError(f"{paths['pc.pt'].parent}: convh.pt, enc.pt and pc.pt do not hold the authors' FEN "
                           f"tensors ({describe(err)[:200]})") from None
    return fen.eval(), zcl


def fen_from_release(paths: dict[str, Path]) -> FEN:
    """Build a FEN (eval mode) from the authors' ``convh.pt``, ``enc.pt`` and ``pc.pt``."""
    return read_authors_files(paths)[0]


def zcl_tensors(zcl: torch.nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"weight": (1, B, 1, 1), "bias": (1,)}`` of a ZCL module (model.sfam.ZCL) or such a dict, on the CPU."""
    if isinstance(zcl, torch.nn.Module):
        zcl = {"weight": zcl.conv.weight, "bias": zcl.conv.bias}
    return {k: zcl[k].detach().cpu() for k in ("weight", "bias")}


def save_fen(fen: FEN, path: str | os.PathLike, zcl: torch.nn.Module | dict | None = None, **meta) -> None:
    """Write a self-contained FEN checkpoint: format tag, the config to rebuild it, weights, the ZCL of the
    same epoch (so that the authors' ``pc.pt`` can be written from it: :func:`export_authors`), metadata."""
    save_torch({"format": CHECKPOINT_FORMAT, "config": fen.config,
                "state_dict": {k: v.detach().cpu() for k, v in fen.state_dict().items()},
                "zcl": None if zcl is None else zcl_tensors(zcl), "meta": meta}, path)


def read_checkpoint(path: Path) -> tuple[FEN, dict[str, torch.Tensor] | None]:
    """The FEN (eval mode) of a :func:`save_fen` checkpoint and its ZCL tensors (None in files written before
    the ZCL was stored)."""
    ckpt = load_tensors(path, WeightsError, ACCEPTS)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not a FEN checkpoint of this project (format tag '{CHECKPOINT_FORMAT}' missing)")
    try:
        fen = FEN(**ckpt["config"])
        fen.load_state_dict(ckpt["state_dict"])
    except Exception as err:  # KeyError, TypeError, RuntimeError (shapes): a damaged or hand-edited file
        raise WeightsError(f"{path}: a FEN checkpoint whose config or tensors do not fit the network "
                           f"({describe(err)[:200]})") from None
    return fen.eval(), ckpt.get("zcl")


def fen_from_checkpoint(path: Path) -> FEN:
    """The FEN (eval mode) of a checkpoint written by :func:`save_fen` (train.py's ``fen_<N>bands.pt``)."""
    return read_checkpoint(path)[0]


def authors_folder(path: Path) -> dict[str, Path]:
    """The three files of a folder in the authors' format (``--weights DIR``); no checksum (they are yours)."""
    missing = [f for f in RELEASE_FILES if not (path / f).is_file()]
    if missing:
        raise WeightsError(f"{path}: a weights folder must hold the authors' {', '.join(RELEASE_FILES)}; "
                           f"missing {', '.join(missing)}")
    return {f: path / f for f in RELEASE_FILES}


def export_authors(fen: FEN, zcl: torch.nn.Module | dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``convh.pt``, ``enc.pt`` and ``pc.pt`` exactly as the authors' code saves them (method sec. 6):
    each ``{'state_dict': ...}`` with their key names, so their test code loads them strictly."""
    out_dir = Path(out_dir)
    z = zcl_tensors(zcl)
    fpl = fen.fpl.state_dict()
    files = {"convh.pt": {"convh.weight": fen.cwl.conv.weight},
             "enc.pt": {f"layer1.{k}": v for k, v in fen.layer1.state_dict().items()},
             "pc.pt": {**{k: fpl[k] for k in FPL_KEYS}, **{theirs: z[ours] for theirs, ours in ZCL_KEYS.items()}}}
    paths = []
    for name, tensors in files.items():
        save_torch({"state_dict": {k: v.detach().cpu().clone() for k, v in tensors.items()}}, out_dir / name)
        paths.append(out_dir / name)
    return paths


def export_checkpoint(checkpoint: Path, out_dir: Path) -> list[Path]:
    """:func:`export_authors` of a train.py checkpoint; refuses one saved without its ZCL."""
    fen, zcl = read_checkpoint(checkpoint)
    if zcl is None:
        raise WeightsError(f"{checkpoint}: written before checkpoints kept the ZCL, which the authors' pc.pt needs "
                           "(their test code loads it strictly); re-save it from its training state or retrain")
    return export_authors(fen, zcl, out_dir)


def shipped_file(name: str, bands: int) -> Path:
    """The verified file of the shipped FEN ``name`` for ``bands`` bands."""
    if bands not in SHIPPED[name]:
        have = ", ".join(str(b) for b in sorted(SHIPPED[name]))
        raise WeightsError(f"weights '{name}' were trained for {have} bands, not {bands}")
    path = SHIPPED_DIR / f"{name}-{bands}bands.pt"
    if not path.is_file():
        raise WeightsError(f"{path}: not found (it is part of this repository: restore it with git checkout)")
    got = sha256(path)
    if got != SHIPPED[name][bands]:
        raise WeightsError(f"{path}: checksum mismatch (sha256 {got}, expected {SHIPPED[name][bands]}); "
                           "refusing to load")
    return path


def fen_wavelengths(spec: str) -> list[float] | None:
    """The centre wavelengths (nm) of the bands a train.py checkpoint ``spec`` was trained on, where train.py
    knew them (its scenes gave them); None for the released weights (HAD100's AVIRIS-NG bands, whose
    wavelengths the data set does not give) and for checkpoints without them."""
    path = Path(spec)
    if spec in RELEASES or not path.is_file():
        return None
    ckpt = load_tensors(path, WeightsError, ACCEPTS)
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    return meta.get("wavelengths") if isinstance(meta, dict) else None


#: train.py's other outputs (training state, AUC table, loss plot), by name: ``<kind>_<N>bands.<suffix>``.
TRAIN_OUTPUT = re.compile(r"(last|auc|loss)_(\d+)bands\.(pt|csv|png)")


def not_a_fen(path: Path) -> None:
    """Refuse one of train.py's files that is not the FEN (``last_50bands.pt``, the resume state, say) with
    the name of the one that is, ``fen_<N>bands.pt`` beside it."""
    m = TRAIN_OUTPUT.fullmatch(path.name)
    if m is None:
        return
    fen = path.with_name(f"fen_{m.group(2)}bands.pt")
    what = {"last": "train.py's training state (to resume from)", "auc": "train.py's AUC table",
            "loss": "train.py's loss plot"}[m.group(1)]
    there = "" if fen.is_file() else " (not there: the run wrote none yet, or elsewhere)"
    raise WeightsError(f"weights='{path}': {what}, not a FEN; the FEN of that run is {fen}{there}")


def weights_files(spec: str, bands: int, weights_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The files the FEN named by ``spec`` is read from (release name, shipped name, checkpoint path, or a
    folder of the authors' three files), release and shipped files checksum-verified: ``{label: path}``."""
    path = Path(spec)
    if spec in RELEASES:
        return release_files(get_release(spec, bands), weights_dir)
    if spec in SHIPPED:
        return {"checkpoint": shipped_file(spec, bands)}
    if path.is_file():
        not_a_fen(path)
        return {"checkpoint": path}
    if path.is_dir():
        return authors_folder(path)
    raise WeightsError(f"weights='{spec}': neither a release name ({', '.join(sorted(RELEASES))}), "
                       f"nor a shipped one ({', '.join(sorted(SHIPPED)) or '-'}), "
                       "nor an existing checkpoint file, nor a folder of the authors' convh.pt, enc.pt, pc.pt")


def load_fen(spec: str, bands: int, weights_dir: str | os.PathLike | None = None) -> FEN:
    """The FEN named by ``spec`` (:func:`weights_files`), checked to take ``bands`` bands; in eval mode. Its
    ``files`` attribute: ``{path: sha256}`` of the files it was read from (what a run's outputs record)."""
    files = weights_files(spec, bands, weights_dir)
    fen = fen_from_checkpoint(files["checkpoint"]) if "checkpoint" in files else fen_from_release(files)
    if fen.bands != bands:
        raise WeightsError(f"weights='{spec}' take {fen.bands} bands, not bands={bands}")
    fen.files = {os.path.abspath(p): sha256(p) for p in files.values()}
    return fen.eval()
