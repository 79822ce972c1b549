"""The settings of a training run (what ``train.py`` runs, and :func:`training.run.train` from Python): one
frozen object, each field named as train.py's flag, every field and every combination checked once when it
is made, before any file is read.

    from training.settings import TrainSettings
    settings = TrainSettings(train_scenes=["a.mat", "b.mat"], select="last", teacher="random", epochs=2)
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from model.losses import W_REC, W_SIM, W_ZC
from training.own_scenes import default_selection, validation_gap
from utils.settings import (SettingsError, as_path, as_paths, at_least, from_options, non_negative, normalise, one_of,
                            positive)

REPO = Path(__file__).resolve().parents[1]
#: The epoch selections that hold training scenes out as validation scenes.
VAL_SELECTIONS = ("val", "val_real", "val_scene")
#: The selections that need labelled anomalies in the held-out scenes.
LABELLED_SELECTIONS = ("val_real", "val_scene")
SELECTIONS = ("test", "last", *VAL_SELECTIONS)
SENSORS = ("aviris_ng", "aviris", "all")
AMP_NAMES = ("bf16", "fp16")


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run reads; the fields are train.py's flags (README "Training" says each)."""

    # data
    data_path: Path | None = None
    train_scenes: tuple[Path, ...] | None = None
    val_scenes: tuple[Path, ...] | None = None  # with train_scenes: validation scenes instead of a val_fraction
    test_scenes: tuple[Path, ...] | None = None
    sensor: str = "aviris_ng"
    input_channel: int = 50
    start_channel: int = 0
    img_size: int = 64
    patch_stride: int | None = None
    # model and loss
    teacher: str | None = None  # imagenet; with train_scenes, random where imagenet cannot be had (run.py)
    init_fen: str | None = None
    download_teacher: bool = True
    w_sim: float = W_SIM
    w_rec: float = W_REC
    w_zc: float = W_ZC
    double_sigmoid: bool = True
    # optimisation
    epochs: int = 60
    max_steps: int = 0
    batch_size: int = 16
    lr: float = 0.005
    betas: tuple[float, float] = (0.5, 0.999)
    fused_adam: bool = True
    seed: int = 10
    deterministic: bool = False
    amp: bool = False
    amp_dtype: str = "bf16"
    num_workers: int = 0
    # selection, evaluation, checkpoints
    select: str | None = None  # test with a test set, else val with val_scenes, else last (own_scenes.py)
    val_fraction: float = 0.1
    eval_test: bool = True
    eval_scenes: int = 0
    save_dir: Path = REPO / "checkpoints"
    resume: str | bool | None = None  # a last_<N>bands.pt, or True ("auto"): SAVE_DIR/last_<N>bands.pt
    save_last: bool = True  # the resume state each epoch (about 1 GB at 50 bands)
    device: str | None = None
    progress: bool = True
    #: what the default selection chose and why (None where it was given): one log line
    select_note: str | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        normalise(self, data_path=as_path(self.data_path), train_scenes=as_paths(self.train_scenes) or None,
                  val_scenes=as_paths(self.val_scenes) or None, test_scenes=as_paths(self.test_scenes) or None,
                  save_dir=Path(self.save_dir),
                  betas=tuple(float(b) for b in self.betas),
                  resume={None: None, False: None, True: "auto"}.get(self.resume, str(self.resume)))
        self.check_values()
        self.check_together()

    def check_values(self) -> None:
        """Each setting alone: :class:`SettingsError` naming the first bad one."""
        for name, least in (("input_channel", 1), ("start_channel", 0), ("batch_size", 1), ("epochs", 1),
                            ("max_steps", 0), ("eval_scenes", 0), ("num_workers", 0), ("img_size", 8),
                            ("patch_stride", 1), ("seed", 0)):
            at_least(name, getattr(self, name), least)
        positive("lr", self.lr)
        for name in ("w_sim", "w_rec", "w_zc"):
            non_negative(name, getattr(self, name))
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise SettingsError(f"betas=<{' '.join(map(str, self.betas))}>: each must lie in [0, 1)")
        if not (isinstance(self.val_fraction, (int, float)) and 0 <= self.val_fraction < 1):
            raise SettingsError(f"val_fraction={self.val_fraction}: must lie in [0, 1)")
        if self.select is not None:
            one_of("select", self.select, SELECTIONS)
        one_of("sensor", self.sensor, SENSORS)
        one_of("amp_dtype", self.amp_dtype, AMP_NAMES)

    def check_together(self) -> None:
        """Settings that only work together."""
        if self.train_scenes and self.data_path is not None:
            raise SettingsError("train_scenes=... and data_path=...: give one source of training data")
        if self.val_scenes and not self.train_scenes:
            raise SettingsError("val_scenes=... goes with train_scenes=... (a HAD100 folder holds out a "
                                "val_fraction=... of its files)")
        has_test = self.test_scenes or not self.train_scenes
        select, note = default_selection(self.select, bool(has_test and self.eval_test), bool(self.val_scenes),
                                         bool(self.train_scenes))
        normalise(self, select=select, select_note=note)
        if why := validation_gap(self.select, self.val_fraction, bool(self.val_scenes)):
            raise SettingsError(why)
        if self.select == "test" and not (self.eval_test and has_test):
            raise SettingsError("select='test' needs a test set to evaluate each epoch: "
                                + ("give test_scenes=..., " if not has_test else "drop eval_test=False, ")
                                + "or pick select=val/last")
        if self.select in LABELLED_SELECTIONS and not self.train_scenes:
            raise SettingsError(f"select={self.select} needs train_scenes=... with labelled anomalies "
                                "(implanted, or scored, in the held-out scenes); HAD100's training files have "
                                "none: use select=val")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "TrainSettings":
        """The settings from a flat mapping of option values (train.py's flags); other entries are ignored."""
        return from_options(cls, options)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flag's name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def path(self, kind: str, suffix: str = "pt") -> Path:
        """A file of the run in ``save_dir``: ``<kind>_<N>bands.<suffix>`` (fen, last, auc, loss)."""
        return self.save_dir / f"{kind}_{self.input_channel}bands.{suffix}"


