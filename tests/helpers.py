"""Ways into the library that only tests need: a detector as a plain function, a pipeline on tiles the test
chooses, both figures of a scene in one call, the 3D-ROC curve's points. Imported as ``from helpers import ...``
(pytest puts tests/ on the path, as for conftest)."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from detectors.registry import DEFAULT_OPTIONS, detector
from evaluation.had_figures import class_scores, curve_thresholds, detection_rates
from evaluation.plots import plot_maps, plot_roc
from pipeline.plan import TilePlan
from pipeline.run import Pipeline


def base_detector(name: str, options=DEFAULT_OPTIONS) -> Callable[[torch.Tensor], torch.Tensor]:
    """The base detector ``name`` (no ``FEN+``) with ``options`` bound: the object's ``Detector.score``, the
    path test.py runs, on a ``(B, H, W)`` cube, giving ``(H, W)`` scores."""
    return partial(detector(name).score, options=options)


def pipeline_on(plan: TilePlan, *args, **kwargs) -> Pipeline:
    """``Pipeline(*args, **kwargs)`` that cuts every scene by ``plan`` instead of planning from the memory
    budget: the same tiles and strips whatever the scene's size."""
    pipeline = Pipeline(*args, **kwargs)
    pipeline.plan = lambda shape: plan
    return pipeline


def plot_scene(out_dir: Path, scene: str, cube: np.ndarray, mask: np.ndarray | None, maps: dict[str, np.ndarray],
               aucs: dict[str, float | None]) -> list[Path]:
    """Both figures of one scene: ``<out_dir>/<scene>_maps.png`` and ``<out_dir>/<scene>_roc.png`` (the maps
    alone for an unlabelled scene, ``mask=None``); ``cube`` is ``(H, W, B)``, the maps ``(H, W)``."""
    out_dir = Path(out_dir)
    figures = [plot_maps(out_dir / f"{scene}_maps.png", scene, cube, mask, maps, aucs)]
    if mask is not None:
        figures.append(plot_roc(out_dir / f"{scene}_roc.png", scene, mask, maps, aucs))
    return figures


def roc3d_curve(scores: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(tau, Pd, Pf)``, 1-D of equal length (bounded, evaluation.had_figures.curve_thresholds), of the
    ``(H, W)`` scores min-max normalised, against the boolean ``(H, W)`` mask; None for a constant map: the
    points evaluation.had_figures.plot_roc3d draws."""
    split = class_scores(mask, scores)
    if split is None:
        return None
    background, anomaly = np.sort(split[0]), np.sort(split[1])
    taus = curve_thresholds(anomaly, background)
    return (taus, *detection_rates(anomaly, background, taus))
