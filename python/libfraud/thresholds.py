"""Choosing the score threshold a fraud desk runs: by false-positive rate, alert budget, cost, or fixed.

Every rule flags ``score >= value`` and, as in ``metrics``, picks among whole tie groups only: a
threshold flags every row with a given score or none of them, so the choice never depends on the
order of tied rows.

Values are always finite (they go into a JSON manifest). "Flag nothing" is the value
``FLAG_NOTHING`` -- the float32 just above 1.0 -- which exceeds every probability and is exactly
representable in the float32 the serving core compares in; for scores above 1 (raw margins) it is
the float32 just above the highest score instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import metrics

__all__ = [
    "FLAG_NOTHING",
    "Threshold",
    "by_alert_budget",
    "by_cost",
    "by_fpr",
    "choose",
    "given",
]

FLAG_NOTHING = float(np.nextafter(np.float32(1), np.float32(2)))

RULE_FORMS = ("'fpr:<rate in [0, 1]>'", "'alerts_per_day:<alerts>'",
              "'cost:<missed fraud cost>:<review cost>'", "'value:<score>'")


@dataclass(frozen=True)
class Threshold:
    """A threshold, the sentence explaining how it was chosen, and the numbers behind it."""

    value: float
    rule: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _flag_nothing(s: np.ndarray) -> float:
    top = float(np.nextafter(np.float32(s.max()), np.float32(np.inf)))
    if not math.isfinite(top):  # beyond float32's range: fall back to float64 spacing
        top = float(np.nextafter(s.max(), np.inf))
    return max(FLAG_NOTHING, top)


def _groups(s: np.ndarray, y: np.ndarray | None = None):
    """Distinct scores in decreasing order, with the rows (and positives) flagged down to each."""
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    end = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = None if y is None else np.cumsum(y[order], dtype=np.int64)[end]
    return s_sorted[end], end + 1, tp


def _number(x, name: str, *, low: float = 0.0) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) \
            or not math.isfinite(x) or x < low:
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {x!r}")
    return float(x)


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"


def by_fpr(y: np.ndarray, scores: np.ndarray, fpr: float, *, on: str = "validation") -> Threshold:
    """The threshold of ``metrics.threshold_at_fpr``: the most recall with FPR <= ``fpr`` on this set.

    Where no fraud can be flagged within the budget that function says +inf; here it becomes the
    finite ``FLAG_NOTHING`` value (see the module docstring).
    """
    y, s = metrics._check(y, scores)
    value = metrics.threshold_at_fpr(y, s, fpr)
    nothing = not math.isfinite(value)
    if nothing:
        value = _flag_nothing(s)
    at = metrics.at_threshold(y, s, value)
    details = {"fpr_budget": float(fpr), "fpr": at["fpr"], "recall": at["recall"],
               "precision": at["precision"], "alerts": at["alerts"], "flags_nothing": nothing}
    if nothing:
        rule = (f"false-positive rate at most {_pct(fpr)} on {on}: no threshold catches any fraud "
                f"within it, so nothing is flagged")
    else:
        rule = (f"false-positive rate at most {_pct(fpr)} on {on} "
                f"(achieved {_pct(at['fpr'])}, recall {_pct(at['recall'])})")
    return Threshold(float(value), rule, details)


def by_alert_budget(
    scores: np.ndarray,
    time_ms: np.ndarray,
    alerts_per_day: float,
    *,
    y: np.ndarray | None = None,
    days: float | None = None,
    on: str = "validation",
) -> Threshold:
    """The lowest threshold whose mean alerts per day on this period stays within the budget.

    The lowest such threshold flags the most rows the desk can review, hence the most recall. Days
    are counted as in ``metrics.alerts_per_day`` (``days`` overrides). If even the top tie group
    alone exceeds the budget, nothing is flagged. Details: alerts_per_day_budget, alerts_per_day
    (achieved), alerts, days, flags_nothing, and with ``y`` also precision (None with no alerts),
    recall, fpr.
    """
    s = metrics._check_scores(scores)
    t = metrics._check_time(time_ms, s.size)
    if y is not None:
        y, s = metrics._check(y, s)
    budget = _number(alerts_per_day, "alerts_per_day")
    if days is None:
        days = metrics._period_days(t)
    days = _number(days, "days")
    if days <= 0:
        raise ValueError(f"days must be positive, got {days!r}")
    values, alerts, _ = _groups(s)
    # Compared as the same division that reports "achieved", so achieved <= budget holds exactly.
    fits = np.flatnonzero(alerts / days <= budget)
    nothing = fits.size == 0
    value = _flag_nothing(s) if nothing else float(values[fits[-1]])
    flagged = 0 if nothing else int(alerts[fits[-1]])
    achieved = flagged / days
    details = {"alerts_per_day_budget": budget, "alerts_per_day": achieved, "alerts": flagged,
               "days": days, "flags_nothing": nothing}
    tail = ""
    if y is not None:
        at = metrics.at_threshold(y, s, value)
        details.update(precision=at["precision"], recall=at["recall"], fpr=at["fpr"])
        tail = f", recall {_pct(at['recall'])}"
    if nothing:
        rule = (f"at most {budget:g} alerts per day on {on}: the highest-scored tie group alone "
                f"exceeds it, so nothing is flagged")
    else:
        rule = f"at most {budget:g} alerts per day on {on} (achieved {achieved:.1f}{tail})"
    return Threshold(value, rule, details)


def by_cost(
    y: np.ndarray,
    scores: np.ndarray,
    *,
    cost_missed_fraud: float,
    cost_review: float,
    time_ms: np.ndarray | None = None,
    on: str = "validation",
) -> Threshold:
    """The threshold minimising ``cost_missed_fraud * FN + cost_review * alerts`` on this set.

    Every achievable rule is tried (each distinct score, and flagging nothing); among equal costs
    the one raising the fewest alerts wins. Details: cost_missed_fraud, cost_review, cost,
    cost_flag_nothing (the baseline), alerts, tp, fn, precision (None with no alerts), recall,
    flags_nothing, and with ``time_ms`` also days, cost_per_day and alerts_per_day.
    """
    y, s = metrics._check(y, scores)
    cm = _number(cost_missed_fraud, "cost_missed_fraud")
    cr = _number(cost_review, "cost_review")
    if cm == 0 and cr == 0:
        raise ValueError("cost_missed_fraud and cost_review are both 0: every threshold costs nothing")
    values, alerts, tp = _groups(s, y)
    pos = int(y.sum())
    alerts, tp = np.r_[0, alerts], np.r_[0, tp]  # index 0: flag nothing
    cost = cm * (pos - tp) + cr * alerts
    i = int(np.argmin(cost))  # first minimum: alerts grow with i, so the fewest alerts
    nothing = i == 0
    value = _flag_nothing(s) if nothing else float(values[i - 1])
    recall = int(tp[i]) / pos
    details = {"cost_missed_fraud": cm, "cost_review": cr, "cost": float(cost[i]),
               "cost_flag_nothing": float(cost[0]), "alerts": int(alerts[i]), "tp": int(tp[i]),
               "fn": pos - int(tp[i]), "precision": int(tp[i]) / int(alerts[i]) if i else None,
               "recall": recall, "flags_nothing": nothing}
    if time_ms is not None:
        days = metrics._period_days(metrics._check_time(time_ms, s.size))
        details.update(days=days, cost_per_day=float(cost[i]) / days,
                       alerts_per_day=int(alerts[i]) / days)
    rule = (f"lowest cost on {on} with a missed fraud costing {cm:g} and a review {cr:g} "
            f"(cost {float(cost[i]):g} against {float(cost[0]):g} flagging nothing, "
            f"recall {_pct(recall)})")
    return Threshold(value, rule, details)


def given(value: float) -> Threshold:
    """A fixed threshold, taken as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"threshold value must be a finite number, got {value!r}")
    value = float(value)
    return Threshold(value, f"fixed threshold {value:g} from the configuration", {})


def choose(
    rule: str,
    *,
    y: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    time_ms: np.ndarray | None = None,
    on: str = "validation",
) -> Threshold:
    """Apply a rule written in a config or on the command line.

    Forms: ``fpr:<rate>`` (``by_fpr``; needs y, scores), ``alerts_per_day:<alerts>``
    (``by_alert_budget``; needs scores, time_ms; uses y when given), ``cost:<missed fraud
    cost>:<review cost>`` (``by_cost``; needs y, scores; uses time_ms when given), ``value:<score>``
    (``given``). Anything else is a ValueError listing these forms.
    """
    expected = "expected one of " + ", ".join(RULE_FORMS)
    if not isinstance(rule, str):
        raise ValueError(f"threshold rule must be a string, got {rule!r}; {expected}")
    name, *args = [part.strip() for part in rule.strip().split(":")]
    arity = {"fpr": 1, "alerts_per_day": 1, "cost": 2, "value": 1}
    if name.lower() not in arity:
        raise ValueError(f"unknown threshold rule {rule!r}; {expected}")
    name = name.lower()
    if len(args) != arity[name]:
        raise ValueError(f"threshold rule {rule!r} takes {arity[name]} number(s) after "
                         f"'{name}:'; {expected}")
    try:
        nums = [float(a) for a in args]
    except ValueError:
        raise ValueError(f"threshold rule {rule!r} has a part that is not a number; {expected}") from None
    if not all(math.isfinite(x) for x in nums):
        raise ValueError(f"threshold rule {rule!r} has a non-finite number; {expected}")

    def need(**inputs):
        missing = [k for k, v in inputs.items() if v is None]
        if missing:
            raise ValueError(f"threshold rule {rule!r} needs {' and '.join(missing)}")

    if name == "fpr":
        need(y=y, scores=scores)
        return by_fpr(y, scores, nums[0], on=on)
    if name == "alerts_per_day":
        need(scores=scores, time_ms=time_ms)
        return by_alert_budget(scores, time_ms, nums[0], y=y, on=on)
    if name == "cost":
        need(y=y, scores=scores)
        return by_cost(y, scores, cost_missed_fraud=nums[0], cost_review=nums[1],
                       time_ms=time_ms, on=on)
    return given(nums[0])
