"""Ranking metrics for fraud scores (labels 0/1, higher score = more likely fraud).

Every function validates its inputs and raises ValueError instead of returning NaN: a metric of a
test set with no fraud in it is a bug in the split, not a number.

Ties in scores are treated honestly: a threshold flags either every row with a given score or none
of them, so no metric can be improved by the order in which tied rows happen to be stored.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "auprc",
    "auroc",
    "precision_at_k",
    "recall_at_fpr",
    "summary",
    "threshold_at_fpr",
]


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and scores; return them as 1-D int8 / float64 arrays."""
    y = np.asarray(y)
    s = np.asarray(s)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"y and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"y and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size == 0:
        raise ValueError("y and scores are empty")
    if y.dtype == bool:
        y = y.astype(np.int8)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 0/1, got values {np.unique(y)[:10].tolist()}")
    y = y.astype(np.int8)
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        only = "positive (1)" if positives else "negative (0)"
        raise ValueError(f"y has only one class (all {y.size} labels are {only}); metric undefined")
    return y, s


def _check_fpr(fpr: float) -> float:
    if not (isinstance(fpr, (int, float)) and math.isfinite(fpr) and 0.0 <= fpr <= 1.0):
        raise ValueError(f"fpr must be a number in [0, 1], got {fpr!r}")
    return float(fpr)


def _roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every achievable (threshold, fpr, tpr) for the rule ``score >= threshold``.

    Thresholds are the distinct scores in decreasing order, preceded by +inf (flag nothing), so each
    point flags whole tie groups only.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each tie group: a threshold includes a group entirely or not at all.
    group_end = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted, dtype=np.int64)[group_end]
    fp = (group_end + 1) - tp
    pos, neg = int(y.sum()), int(y.size - y.sum())
    thresholds = np.r_[np.inf, s_sorted[group_end]]
    return thresholds, np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def _best_point_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> tuple[float, float]:
    thresholds, fprs, tprs = _roc_points(y, s)
    allowed = fprs <= fpr + 1e-12  # both are ratios of counts; absorb representation error
    best = float(tprs[allowed].max())
    # tpr and fpr both grow as the threshold falls: the first point reaching `best` flags the fewest.
    i = int(np.flatnonzero(allowed & (tprs == best))[0])
    return float(thresholds[i]), best


def auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall curve, as average precision (sklearn's definition)."""
    y, s = _check(y, s)
    return float(average_precision_score(y, s))


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (ties count half)."""
    y, s = _check(y, s)
    return float(roc_auc_score(y, s))


def recall_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float = 0.01) -> float:
    """Highest recall of a rule ``score >= t`` whose false-positive rate is <= ``fpr``.

    No interpolation between points: if a tie group would push the FPR over the budget, the whole
    group stays unflagged.
    """
    y, s = _check(y, s)
    return _best_point_at_fpr(y, s, _check_fpr(fpr))[1]


def threshold_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> float:
    """The score threshold t such that flagging ``score >= t`` achieves ``recall_at_fpr(y, s, fpr)``.

    Of the thresholds with that recall it returns the highest (the fewest false positives). Returns
    +inf when no positive can be flagged within the budget (flag nothing).
    """
    y, s = _check(y, s)
    return _best_point_at_fpr(y, s, _check_fpr(fpr))[0]


def precision_at_k(y: np.ndarray, s: np.ndarray, k: int) -> float:
    """Precision among the ``k`` highest-scored rows (1 <= k <= len(y)).

    When the k-th place falls inside a tie group, the tied rows fill the remaining places in
    proportion to their positives: the expected precision over every ordering of the ties.
    """
    y, s = _check(y, s)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= y.size:
        raise ValueError(f"k must be an integer in [1, {y.size}], got {k!r}")
    k = int(k)
    kth = np.sort(s)[::-1][k - 1]
    above = s > kth
    tied = s == kth
    n_above = int(above.sum())
    tp_above = int(y[above].sum())
    tp_tied = (k - n_above) * float(y[tied].sum()) / int(tied.sum())
    return (tp_above + tp_tied) / k


def summary(y: np.ndarray, s: np.ndarray, *, k: int = 100, fpr: float = 0.01) -> dict:
    """The standard report for one scored set, as JSON-ready Python numbers.

    Keys: auprc, auroc, recall_at_<fpr as percent>pct_fpr (``recall_at_1pct_fpr`` for the default),
    precision_at_k, k (the k used: ``min(k, n)``), n, positives.
    """
    y, s = _check(y, s)
    fpr = _check_fpr(fpr)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k_used = min(int(k), int(y.size))
    return {
        "auprc": auprc(y, s),
        "auroc": auroc(y, s),
        f"recall_at_{fpr * 100:g}pct_fpr": recall_at_fpr(y, s, fpr),
        "precision_at_k": precision_at_k(y, s, k_used),
        "k": k_used,
        "n": int(y.size),
        "positives": int(y.sum()),
    }
