"""3D-ROC measures (C.-I. Chang, "An effective evaluation tool for hyperspectral target detection: 3D receiver
operating characteristic curve analysis", IEEE TGRS 59(6), 2021), next to the usual ROC AUC.

The scores s are min-max normalised to [0, 1] over the scene, and a threshold tau in [0, 1] declares a
pixel anomalous when s >= tau. With A the anomaly pixels and G the background pixels of the mask:

    Pd(tau) = |{i in A : s_i >= tau}| / |A|        Pf(tau) = |{i in G : s_i >= tau}| / |G|

    AUC(Pd, Pf)  = area under the ROC curve (Pd against Pf; scikit-learn's roc_auc_score)
    AUC(Pd, tau) = int_0^1 Pd(tau) dtau = mean_{i in A} s_i       (the higher the better)
    AUC(Pf, tau) = int_0^1 Pf(tau) dtau = mean_{i in G} s_i       (the lower the better)
    SNPR         = 10 log10( AUC(Pd, tau) / AUC(Pf, tau) )   in dB (signal-to-noise probability ratio)

The two tau integrals are exact: for s in [0, 1], int_0^1 1[s >= tau] dtau = s, so no threshold grid is
needed (a grid of thresholds with the trapezoid rule converges to the same numbers).

"Adaptive" SNPR, as in the HAD100 benchmark table (Li et al., "You only train once", IEEE TGRS 2023):
before normalising, the scores are clipped from above at the median score of the anomaly pixels,
s <- min(s, median_{i in A} s_i), so that a few very bright anomaly pixels cannot squeeze the background
towards 0 and inflate the ratio; then SNPR as above. Its mean over scenes is the table's mASNPR.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from utils.metrics import auc_undefined_reason, roc_auc

#: Names, in table order, with the column titles used in reports.
FIELDS = {"auc_pd_pf": "AUC(Pd,Pf)", "auc_pd_tau": "AUC(Pd,tau)", "auc_pf_tau": "AUC(Pf,tau)",
          "snpr": "SNPR dB", "asnpr": "aSNPR dB"}


@dataclass
class Roc3D:
    """The 3D-ROC measures of one score map; None where undefined (see :func:`roc3d`)."""

    auc_pd_pf: float | None = None
    auc_pd_tau: float | None = None
    auc_pf_tau: float | None = None
    snpr: float | None = None
    asnpr: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def normalise(scores: np.ndarray) -> np.ndarray | None:
    """Min-max ``scores`` to [0, 1] (float64); None for a constant map (no threshold separates anything)."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = s.min(), s.max()
    if not hi > lo:
        return None
    return (s - lo) / (hi - lo)


def tau_areas(normalised: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(AUC(Pd, tau), AUC(Pf, tau))`` of scores already in [0, 1]: the mean anomaly and background score."""
    m = np.asarray(mask, dtype=bool)
    return float(normalised[m].mean()), float(normalised[~m].mean())


def snpr_db(auc_pd_tau: float, auc_pf_tau: float) -> float:
    """``10 log10(AUC(Pd,tau) / AUC(Pf,tau))``; +inf when every background score is 0, -inf when every
    anomaly score is 0."""
    if auc_pf_tau == 0:
        return math.inf if auc_pd_tau > 0 else math.nan
    if auc_pd_tau == 0:
        return -math.inf
    return 10.0 * math.log10(auc_pd_tau / auc_pf_tau)


def adaptive_snpr_db(scores: np.ndarray, mask: np.ndarray) -> float | None:
    """SNPR after clipping the scores at the median anomaly score (HAD100's adaptive SNPR); None if the
    clipped map is constant."""
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    clipped = np.minimum(s, np.median(s[m]))
    norm = normalise(clipped)
    if norm is None:
        return None
    return snpr_db(*tau_areas(norm, m))


def roc3d(scores: np.ndarray, mask: np.ndarray) -> Roc3D:
    """All measures of one ``(H, W)`` score map against a boolean ``(H, W)`` mask.

    Everything is None if the mask has no anomaly or no background pixel; the tau measures and SNPR are
    None for a constant score map.
    """
    if auc_undefined_reason(np.asarray(mask, dtype=bool)) is not None:
        return Roc3D()
    out = Roc3D(auc_pd_pf=roc_auc(scores, mask))
    norm = normalise(scores)
    if norm is not None:
        out.auc_pd_tau, out.auc_pf_tau = tau_areas(norm, mask)
        out.snpr = snpr_db(out.auc_pd_tau, out.auc_pf_tau)
    out.asnpr = adaptive_snpr_db(scores, mask)
    return out
