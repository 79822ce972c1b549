"""The settings of an evaluation (what ``test.py`` runs, and :func:`pipeline.evaluate.evaluate` from Python):
one frozen object, each field named as test.py's flag, every field checked once when it is made.

    from pipeline.settings import EvalSettings
    settings = EvalSettings(scenes=["a.mat"], input_channel=50, detectors=["GRX", "FEN+GRX"], save_dir="out")

Detector options (windows, block sizes, regularisation) are one :class:`detectors.registry.DetectorOptions`
under ``options``; ``EvalSettings.from_options`` builds both from one flat mapping (test.py's flags).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from detectors.registry import DEFAULT_DETECTORS, DetectorOptions, detector_names
from evaluation.detections import DEFAULT_TOP_FRACTION
from utils.settings import SettingsError, as_path, as_paths, at_least, from_options, normalise, positive

REPO = Path(__file__).resolve().parents[1]
#: The settings recorded in the --json file's config (with the detector options).
RECORDED = ("input_channel", "start_channel", "weights", "detectors")


@dataclass(frozen=True)
class EvalSettings:
    """Everything an evaluation reads. Scenes: ``scenes`` (files) or ``data_path`` (a HAD100-layout folder);
    neither: ``data/HAD100Dataset``, else the synthetic set. Bands ``[start_channel, start_channel +
    input_channel)``. ``weights``: a release name (``had100``, ``aviris``, ``abu10``), a train.py checkpoint or
    a folder of the authors' files; ``weights_dir``: a local copy of the releases. Outputs under ``save_dir``."""

    input_channel: int = 50
    start_channel: int = 0
    data_path: Path | None = None
    scenes: tuple[Path, ...] | None = None
    data_key: str | None = None
    gt_key: str | None = None
    weights: str = "had100"
    weights_dir: Path | None = None
    detectors: tuple[str, ...] = tuple(DEFAULT_DETECTORS)
    options: DetectorOptions = field(default_factory=DetectorOptions)
    plots: bool = False
    roc3d_scenes: bool = False
    max_memory_gb: float | None = None
    fen_batch: int = 16
    fold_bn: bool = False
    save_dir: Path = REPO / "results"
    save_scores: bool = True
    save_mat: bool = False
    save_envi: bool = False
    save_geotiff: bool | None = None  # None: on for GeoTIFF scenes
    json: Path | None = None
    detect_fraction: float = DEFAULT_TOP_FRACTION  # detections: the top fraction of each map's pixels
    detect_pfa: float | None = None  # detections of GRX: a chi-square false-alarm rate instead
    detect_labelled: bool = False  # detections for labelled scenes too
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        normalise(self, data_path=as_path(self.data_path), scenes=as_paths(self.scenes) or None,
                  weights_dir=as_path(self.weights_dir), save_dir=Path(self.save_dir), json=as_path(self.json),
                  weights=str(self.weights),
                  detectors=tuple([self.detectors] if isinstance(self.detectors, str) else self.detectors))
        self.check()

    def check(self) -> None:
        """Each setting alone (before any file is read): :class:`SettingsError` naming the first bad one."""
        at_least("input_channel", self.input_channel, 1)
        at_least("start_channel", self.start_channel, 0)
        at_least("fen_batch", self.fen_batch, 1)
        positive("max_memory_gb", self.max_memory_gb)
        if not (isinstance(self.detect_fraction, (int, float)) and 0 < self.detect_fraction <= 1):
            raise SettingsError(f"detect_fraction={self.detect_fraction}: must lie in (0, 1]")
        if self.detect_pfa is not None and not (isinstance(self.detect_pfa, (int, float)) and 0 < self.detect_pfa < 1):
            raise SettingsError(f"detect_pfa={self.detect_pfa}: must lie between 0 and 1 (both excluded)")
        if self.scenes is not None and self.data_path is not None:
            raise SettingsError("scenes=... and data_path=...: give one source of scenes")
        if not self.detectors:
            raise SettingsError("detectors=<>: name at least one, e.g. GRX")
        for name in self.detectors:
            if name not in detector_names():
                raise SettingsError(f"detectors={name}: not a detector; choose from {' '.join(detector_names())}")
        if not isinstance(self.options, DetectorOptions):
            raise SettingsError(f"options={self.options!r}: must be a DetectorOptions")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "EvalSettings":
        """The settings from one flat mapping of option values (test.py's flags; the detector options among
        them); entries that are neither are ignored."""
        detector = DetectorOptions(**{k: v for k, v in options.items() if k in DetectorOptions.names()})
        return from_options(cls, {k: v for k, v in options.items() if k != "options"}, options=detector)

    def recorded(self) -> dict[str, Any]:
        """What the --json file records: the bands, weights and detectors, and the detector options."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.flat().items()
                if k in RECORDED or k in DetectorOptions.names()}

    def flat(self) -> dict[str, Any]:
        """Every setting by its flag's name, the detector options among them (what a record keeps)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        out.update(self.options.asdict())
        return out
