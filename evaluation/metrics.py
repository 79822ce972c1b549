"""Detection metrics on score maps and ground-truth masks."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc_undefined_reason(mask: np.ndarray) -> str | None:
    """Why ROC AUC is undefined for ``mask`` (no anomaly / no background pixel), or None if it is defined."""
    n_anom = int(mask.sum())
    if n_anom == 0:
        return "mask has no anomaly pixel"
    if n_anom == mask.size:
        return "mask has no background pixel"
    return None


def roc_auc(scores: np.ndarray, mask: np.ndarray) -> float | None:
    """ROC AUC (scikit-learn) of ``scores`` against the boolean ``mask``; None where undefined."""
    if auc_undefined_reason(mask) is not None:
        return None
    return float(roc_auc_score(mask.ravel().astype(bool), np.asarray(scores, dtype=np.float64).ravel()))
