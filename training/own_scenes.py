"""Training on one's own scenes (``train.py --train_scenes``) with the defaults: the choices a newcomer should
not have to make by trial and error, each made from what the run has and said in one line.

* the **selection** (:func:`default_selection`): the paper's best-test-mAUC where a test set exists (the
  HAD100 folder, or ``--test_scenes``); else the best mAUC on validation scenes with implanted anomalies where
  ``--val_scenes`` are given; else the last epoch;
* the **teacher** (:func:`default_teacher`): torchvision's ImageNet weights where they are cached or can be
  downloaded, else the seeded random start (a run that works, said so; ``--teacher imagenet`` insists);
* **patches** (:func:`patch_note`): how many were dropped, and why.
"""
from __future__ import annotations

from weights.imagenet import IMAGENET_HOST, _reachable, imagenet_cache_path


def default_selection(select: str | None, has_test: bool, has_val_scenes: bool, own: bool
                      ) -> tuple[str, str | None]:
    """``select``, or when None the default and the line that says why (for a run on ``own`` scenes only: a
    HAD100 run keeps the paper's test selection unsaid): ``test`` with a test set, ``val`` with
    ``--val_scenes``, else ``last``."""
    if select is not None:
        return select, None
    if has_test:
        return "test", ("select: best test mAUC (the paper's; select=val/last to leave the test set out)"
                        if own else None)
    if has_val_scenes:
        return "val", ("select: best mAUC on the val_scenes=... with implanted anomalies (no "
                       "test set; select=val_scene to score their own labels)")
    return "last", ("select: the last epoch (no test set and no val_scenes=...: give test_scenes=... or "
                    "val_scenes=... to select by mAUC)")


def validation_gap(select: str, val_fraction: float, has_val_scenes: bool) -> str | None:
    """Why a validation selection has nothing to validate on (``val_fraction`` 0 and no ``--val_scenes``)."""
    if select in ("val", "val_real", "val_scene") and val_fraction == 0 and not has_val_scenes:
        return (f"select={select} with val_fraction=0 holds no scene out: give val_scenes=..., a val_fraction=... "
                "above 0, or select=last")
    return None


def default_teacher(teacher: str | None, own: bool, download: bool) -> tuple[str, str | None]:
    """``teacher``, or when None: ``imagenet`` (the paper's) for a HAD100 run; for a run on ``own`` scenes
    ``imagenet`` where its file is cached, or can be downloaded (``download`` and its host reachable), else
    ``random``, with the line that says so."""
    if teacher is not None or not own:
        return teacher or "imagenet", None
    if imagenet_cache_path().is_file():
        return "imagenet", None
    if download and _reachable(IMAGENET_HOST):
        return "imagenet", None
    why = "downloads are off" if not download else f"{IMAGENET_HOST} is unreachable"
    return "random", (f"teacher: random (seeded): the ImageNet file is not cached and {why}; place "
                      f"{imagenet_cache_path()} or give teacher=imagenet to insist on it")


def patch_note(dropped: int, kept: int, unlabelled: int, scenes: int) -> str:
    """The log's phrase on the training patches of ``--train_scenes``: how many were dropped and why (a
    labelled anomaly), and how many scenes were taken as all background (no mask)."""
    parts = [f"{dropped} of {dropped + kept} patches dropped for touching a labelled anomaly or nodata"]
    if unlabelled:
        parts.append(f"{unlabelled} of {scenes} scenes unlabelled, taken as all background")
    return ", ".join(parts)
