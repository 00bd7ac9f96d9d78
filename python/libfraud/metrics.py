"""Ranking metrics for fraud scores (labels 0/1, higher score = more likely fraud).

Every function validates its inputs and raises ValueError instead of returning NaN: a metric of a
test set with no fraud in it is a bug in the split, not a number.

Ties in scores are treated honestly: a threshold flags either every row with a given score or none
of them, so no metric can be improved by the order in which tied rows happen to be stored.

Besides the ranking metrics there are the numbers a fraud desk runs on: precision of the top k
entities a day (``daily_precision_at_k``), alerts per day, the counts at a threshold, calibration
(``brier``, ``reliability_curve``), and ``desk_summary`` bundling them for a report.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "alerts_per_day",
    "at_threshold",
    "auprc",
    "auroc",
    "brier",
    "daily_precision_at_k",
    "desk_summary",
    "precision_at_k",
    "recall_at_fpr",
    "reliability_curve",
    "summary",
    "threshold_at_fpr",
]


def labels_and_scores(y, s) -> tuple[np.ndarray, np.ndarray]:
    """1-D, same length, non-empty, 0/1 labels: (y as int8, scores as given); the rest is the caller's."""
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
    return y.astype(np.int8), s


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and scores; return them as 1-D int8 / float64 arrays."""
    y, s = labels_and_scores(y, s)
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


# --- a fraud desk's view: days, entities, alerts, calibration -------------------------------------

DAY_MS = 86_400_000


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_scores(s) -> np.ndarray:
    """Scores alone (no labels): 1-D, non-empty, finite."""
    s = np.asarray(s)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if s.size == 0:
        raise ValueError("scores are empty")
    if s.dtype == bool or not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return s


def _check_time(time_ms, n: int) -> np.ndarray:
    """Epoch milliseconds as int64; floats are accepted only when they hold whole numbers."""
    t = np.asarray(time_ms)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"time_ms must be 1-D with one entry per score ({n}), got shape {t.shape}")
    if t.dtype == bool or not np.issubdtype(t.dtype, np.number):
        raise ValueError(f"time_ms must be integer epoch milliseconds, got dtype {t.dtype}")
    if np.issubdtype(t.dtype, np.floating):
        if not np.all(np.isfinite(t)):
            raise ValueError("time_ms contains NaN or infinite values")
        if not np.all(t == np.round(t)):
            raise ValueError("time_ms must be whole epoch milliseconds, got fractional values")
    return t.astype(np.int64)


def _check_origin(day_origin_ms) -> int:
    if isinstance(day_origin_ms, bool) or not isinstance(day_origin_ms, (int, np.integer)):
        raise ValueError(f"day_origin_ms must be an integer (epoch milliseconds), got {day_origin_ms!r}")
    return int(day_origin_ms)


def _day_index(t: np.ndarray, origin: int) -> np.ndarray:
    return (t - origin) // DAY_MS  # floor division: times before the origin fall on negative days


def _day_label(day: int, origin: int) -> str:
    """The UTC date on which day ``day`` starts, YYYY-MM-DD."""
    return str(np.datetime64(origin + day * DAY_MS, "ms").astype("datetime64[D]"))


def _check_threshold(threshold, *, allow_inf: bool = True) -> float:
    ok = isinstance(threshold, (int, float, np.integer, np.floating)) and not isinstance(threshold, bool)
    if ok:
        threshold = float(threshold)
        ok = not math.isnan(threshold) and (math.isfinite(threshold) or (allow_inf and threshold > 0))
    if not ok:
        what = "a finite number" if not allow_inf else "a number (or +inf: flag nothing)"
        raise ValueError(f"threshold must be {what}, got {threshold!r}")
    return threshold


def _check_probabilities(p: np.ndarray) -> None:
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            f"probabilities must lie in [0, 1], got values in [{p.min():g}, {p.max():g}]"
        )


def daily_precision_at_k(
    y: np.ndarray,
    scores: np.ndarray,
    time_ms: np.ndarray,
    entity_ids: np.ndarray,
    k: int = 100,
    *,
    remove_detected: bool = True,
    day_origin_ms: int = 0,
) -> dict:
    """The Fraud Detection Handbook's "card precision top-k" (Le Borgne et al., section 4.2).

    A desk reviews ``k`` entities (cards, accounts, ...) a day, not ``k`` transactions. Day ``d`` is
    ``[day_origin_ms + d * 86_400_000, + 86_400_000)``: UTC days by default. For each day that has
    transactions, in time order:

    1. group the day's transactions by entity: an entity's score is its highest score that day and
       it is compromised when any of its transactions that day is fraud;
    2. with ``remove_detected``, drop the entities detected on an earlier day: a desk that has
       blocked a card does not review it again, so it cannot keep earning precision;
    3. rank the remaining entities by score and take the top ``k``;
    4. precision = compromised entities among the top ``k``, divided by ``k``. As in the Handbook
       the divisor is ``k`` even on a day with fewer than ``k`` entities: unused review capacity
       counts as wasted, so the metric is comparable across days.

    An entity is *detected* on a day when it is compromised and in that day's top ``k``. When the
    k-th place falls inside a tie group, the day's precision is the expected value over orderings of
    the tie (as ``precision_at_k``), and every compromised entity of that tie group counts as
    detected: the conservative choice, so a tie can never raise a later day's precision.

    Days without transactions are not listed and do not enter the mean; a day whose entities were
    all detected earlier is listed with precision 0.

    Returns ``{"k": k, "mean": mean precision over the listed days, "days": [per day]}`` where each
    day is ``{"day": "YYYY-MM-DD" (the UTC date the day starts on), "precision": p, "entities":
    entities ranked that day (after removal), "compromised": compromised entities among them,
    "detected_before": entities active that day but dropped as detected earlier (0 without
    removal)}``.

    ``entity_ids`` may be int64 or any hashable values (strings, ...); missing ids are an error.
    Raises ValueError on bad inputs, including a test set with a single class.
    """
    y, s = _check(y, scores)
    t = _check_time(time_ms, y.size)
    k = _check_k(k)
    origin = _check_origin(day_origin_ms)
    ids = np.asarray(entity_ids)
    if ids.ndim != 1 or ids.shape[0] != y.size:
        raise ValueError(f"entity_ids must be 1-D with one entry per score ({y.size}), got shape {ids.shape}")
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    if np.any(codes < 0):
        raise ValueError("entity_ids contain missing values (None/NaN)")

    frame = pd.DataFrame({"day": _day_index(t, origin), "entity": codes, "s": s, "y": y})
    per = frame.groupby(["day", "entity"], sort=True).agg(s=("s", "max"), y=("y", "max"))
    day_of = per.index.get_level_values("day").to_numpy()
    ent_of = per.index.get_level_values("entity").to_numpy()
    s_of, y_of = per["s"].to_numpy(), per["y"].to_numpy().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, day_of[1:] != day_of[:-1]])
    ends = np.r_[starts[1:], day_of.size]

    detected = np.zeros(len(uniques), dtype=bool)
    days = []
    for a, b in zip(starts, ends):
        ents, es, ey = ent_of[a:b], s_of[a:b], y_of[a:b]
        before = detected[ents] if remove_detected else np.zeros(ents.size, dtype=bool)
        ents, es, ey = ents[~before], es[~before], ey[~before]
        n_ent = int(ents.size)
        if n_ent <= k:
            hits = float(ey.sum())
            reviewed = np.ones(n_ent, dtype=bool)
        else:
            kth = np.partition(es, n_ent - k)[n_ent - k]  # the k-th highest score
            above, tied = es > kth, es == kth
            n_above = int(above.sum())
            hits = float(ey[above].sum()) + (k - n_above) * float(ey[tied].sum()) / int(tied.sum())
            reviewed = above | tied
        detected[ents[reviewed & (ey == 1)]] = True
        days.append({
            "day": _day_label(int(day_of[a]), origin),
            "precision": hits / k,
            "entities": n_ent,
            "compromised": int(ey.sum()),
            "detected_before": int(before.sum()),
        })
    return {"k": k, "mean": float(np.mean([d["precision"] for d in days])), "days": days}


def _period_days(t: np.ndarray, origin: int = 0) -> int:
    d = _day_index(t, origin)
    return int(d.max() - d.min() + 1)


def alerts_per_day(
    scores: np.ndarray, time_ms: np.ndarray, threshold: float, *, days: float | None = None
) -> float:
    """Mean number of alerts (rows with ``score >= threshold``) per day over the period.

    The period is, unless ``days`` is given, the number of UTC days from the first event's day to
    the last event's day inclusive; days without events count, since the desk is staffed on them.
    ``threshold`` may be +inf (flag nothing).
    """
    s = _check_scores(scores)
    t = _check_time(time_ms, s.size)
    threshold = _check_threshold(threshold)
    if days is None:
        days = _period_days(t)
    elif (isinstance(days, bool) or not isinstance(days, (int, float, np.integer, np.floating))
          or not math.isfinite(days) or days <= 0):
        raise ValueError(f"days must be a positive number, got {days!r}")
    return int((s >= threshold).sum()) / float(days)


def at_threshold(
    y: np.ndarray, scores: np.ndarray, threshold: float, time_ms: np.ndarray | None = None
) -> dict:
    """The confusion counts of the rule ``score >= threshold`` and the rates a desk reads off them.

    Keys: tp, fp, fn, tn, alerts (tp + fp), precision (tp / alerts; None when nothing is flagged,
    since a rule that raises no alert has no precision and None stays JSON-safe), recall, fpr and,
    only when ``time_ms`` is given, alerts_per_day (see ``alerts_per_day``). ``threshold`` may be
    +inf (flag nothing).
    """
    y, s = _check(y, scores)
    threshold = _check_threshold(threshold)
    flagged = s >= threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    pos, neg = int(y.sum()), int(y.size - y.sum())
    out = {
        "tp": tp,
        "fp": fp,
        "fn": pos - tp,
        "tn": neg - fp,
        "alerts": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / pos,
        "fpr": fp / neg,
    }
    if time_ms is not None:
        out["alerts_per_day"] = alerts_per_day(s, time_ms, threshold)
    return out


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Brier score: mean squared difference between the probability and the 0/1 label."""
    y, p = _check(y, p)
    _check_probabilities(p)
    return float(np.mean((p - y) ** 2))


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = 10, strategy: str = "quantile") -> dict:
    """Mean predicted probability against the observed fraud rate, bin by bin.

    ``strategy="uniform"`` cuts [0, 1] into ``bins`` equal widths; ``"quantile"`` puts edges at the
    quantiles of ``p`` (roughly equal counts; with heavy ties several edges coincide and are merged,
    so fewer bins come back). Bins are ``[lo, hi)``, the last one closed, so tied probabilities
    always share a bin. Empty bins are omitted. Returns ``{"mean_score": [...], "fraud_rate":
    [...], "count": [...]}``, one entry per non-empty bin in increasing order of probability.
    """
    y, p = _check(y, p)
    _check_probabilities(p)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(bins) + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, int(bins) + 1)))
    else:
        raise ValueError(f'strategy must be "quantile" or "uniform", got {strategy!r}')
    which = np.searchsorted(edges[1:-1], p, side="right")
    n_bins = max(edges.size - 1, 1)  # all-equal p: one bin holding everything
    count = np.bincount(which, minlength=n_bins)
    total_p = np.bincount(which, weights=p, minlength=n_bins)
    total_y = np.bincount(which, weights=y, minlength=n_bins)
    keep = count > 0
    return {
        "mean_score": (total_p[keep] / count[keep]).tolist(),
        "fraud_rate": (total_y[keep] / count[keep]).tolist(),
        "count": count[keep].astype(int).tolist(),
    }


def desk_summary(
    y: np.ndarray,
    scores: np.ndarray,
    *,
    time_ms: np.ndarray | None = None,
    entity_ids: np.ndarray | None = None,
    threshold: float | None = None,
    k: int = 100,
    fpr: float = 0.01,
    entity_name: str = "entity",
) -> dict:
    """Everything a fraud desk reads about one scored set, as a JSON-ready dict.

    Always present (exactly ``summary(y, scores, k=k, fpr=fpr)``): auprc, auroc,
    ``recall_at_<fpr%>pct_fpr``, precision_at_k, k (``min(k, n)``), n, positives.

    Present only when it applies (absent otherwise, never None):

    - ``brier``: when every score lies in [0, 1];
    - ``daily_<entity_name>_precision_at_<k>`` (e.g. ``daily_card_precision_at_100``): the mean of
      ``daily_precision_at_k(y, scores, time_ms, entity_ids, k)``, when time_ms and entity_ids are
      given; alongside it ``daily``: ``{"metric": that key, "entity": entity_name, "k": k (not
      capped), "days": [{"day", "precision", "entities", "compromised", "detected_before"}, ...]}``;
    - ``threshold`` (the value) and ``at_threshold`` (``at_threshold(...)``'s dict: tp, fp, fn, tn,
      alerts, precision (None with no alerts), recall, fpr, plus alerts_per_day with time_ms), when
      threshold is given;
    - ``alerts_per_day``: when threshold and time_ms are given (the same number as in at_threshold).

    ``threshold`` must be finite here (the dict is JSON); entity_ids without time_ms is an error.
    """
    y, s = _check(y, scores)
    if not isinstance(entity_name, str) or not entity_name.isidentifier():
        raise ValueError(f"entity_name must be a short identifier such as 'card', got {entity_name!r}")
    if entity_ids is not None and time_ms is None:
        raise ValueError("entity_ids needs time_ms: daily precision groups entities by day")
    out = summary(y, s, k=k, fpr=fpr)
    if s.min() >= 0.0 and s.max() <= 1.0:
        out["brier"] = brier(y, s)
    if entity_ids is not None:
        daily = daily_precision_at_k(y, s, time_ms, entity_ids, k)
        key = f"daily_{entity_name}_precision_at_{daily['k']}"
        out[key] = daily["mean"]
        out["daily"] = {"metric": key, "entity": entity_name, "k": daily["k"], "days": daily["days"]}
    if threshold is not None:
        threshold = _check_threshold(threshold, allow_inf=False)
        out["threshold"] = threshold
        out["at_threshold"] = at_threshold(y, s, threshold, time_ms)
        if time_ms is not None:
            out["alerts_per_day"] = out["at_threshold"]["alerts_per_day"]
    elif time_ms is not None:
        _check_time(time_ms, y.size)  # validate even when nothing uses it yet
    return out
