"""Threshold rules: each against a brute-force search over every achievable threshold."""

import dataclasses
import json

import numpy as np
import pytest

from libfraud import metrics, thresholds
from libfraud.thresholds import FLAG_NOTHING, Threshold

DAY = 86_400_000


def data(seed, n=1500, n_days=10):
    """Scores rounded to 0.01: many tie groups, some large."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    s = np.round(np.clip(0.5 * rng.random(n) + 0.5 * y * rng.random(n), 0, 1), 2)
    t = 1_700_000_000_000 + rng.integers(0, n_days * DAY, n)
    return y, s, t


def days_spanned(t):
    return int(t.max() // DAY - t.min() // DAY + 1)


def test_flag_nothing_value_is_json_safe_and_beyond_every_probability():
    assert np.float32(FLAG_NOTHING) == FLAG_NOTHING > 1.0  # exact in the core's float32
    assert np.float32(FLAG_NOTHING) > np.float32(1.0)
    y = np.array([0, 1, 1])
    t = thresholds.by_fpr(y, np.array([0.2, 1.0, 1.0]), 0.0)  # 1.0 catches fraud with no FP
    assert t.value == 1.0
    t = thresholds.by_fpr(np.array([1, 0, 1]), np.array([0.2, 1.0, 1.0]), 0.0)  # 1.0 tie has a FP
    assert t.value == FLAG_NOTHING and t.details["flags_nothing"] and t.details["alerts"] == 0
    # Raw margins above 1: flag nothing sits above the highest score, in float32 too.
    big = np.array([0.5, 3.7, 3.7])
    v = thresholds.by_fpr(np.array([1, 0, 0]), big, 0.0).value
    assert v > 3.7 and np.float32(v) > np.float32(3.7) and not np.any(big >= v)
    json.dumps(t.to_dict(), allow_nan=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_by_fpr_matches_threshold_at_fpr(seed):
    y, s, _ = data(seed)
    for fpr in (0.0, 0.005, 0.01, 0.1, 1.0):
        t = thresholds.by_fpr(y, s, fpr)
        want = metrics.threshold_at_fpr(y, s, fpr)
        assert t.value == (want if np.isfinite(want) else FLAG_NOTHING)
        flagged = s >= t.value
        assert t.details["fpr"] == (flagged & (y == 0)).sum() / (y == 0).sum() <= fpr
        assert t.details["recall"] == pytest.approx(metrics.recall_at_fpr(y, s, fpr))
        assert t.details["alerts"] == flagged.sum()
        assert "false-positive rate at most" in t.rule


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_by_alert_budget_is_the_lowest_threshold_within_budget(seed):
    y, s, t = data(seed)
    days = days_spanned(t)
    distinct = np.unique(s)[::-1]
    for budget in (0, 0.05, 1, 7.5, 20, 60, 149.9, 1e6):
        th = thresholds.by_alert_budget(s, t, budget, y=y)
        flagged = s >= th.value
        achieved = flagged.sum() / days
        assert achieved <= budget and th.details["alerts_per_day"] == pytest.approx(achieved)
        assert th.details["alerts"] == flagged.sum() and th.details["days"] == days
        # Lowering the threshold by one tie group would exceed the budget.
        lower = distinct[distinct < th.value]
        if lower.size:
            assert (s >= lower[0]).sum() / days > budget
        if th.details["flags_nothing"]:
            assert th.value == FLAG_NOTHING and not flagged.any()
        else:
            assert th.value in set(s.tolist())
        assert th.details["recall"] == pytest.approx((flagged & (y == 1)).sum() / y.sum())
        assert f"at most {budget:g} alerts per day" in th.rule
    # Without labels: same value, no label-based details; a given day count overrides the span.
    assert thresholds.by_alert_budget(s, t, 20).value == thresholds.by_alert_budget(s, t, 20, y=y).value
    assert "recall" not in thresholds.by_alert_budget(s, t, 20).details
    th = thresholds.by_alert_budget(s, t, 20, days=3)
    assert (s >= th.value).sum() / 3 <= 20 < (s >= distinct[distinct < th.value][0]).sum() / 3


def brute_cost(y, s, cm, cr):
    """Reference: every distinct score, and flagging nothing; ties in cost go to fewer alerts."""
    best = (cm * y.sum(), 0, None)  # (cost, alerts, threshold); None = flag nothing
    for v in np.unique(s):
        flagged = s >= v
        cost = cm * (y[~flagged] == 1).sum() + cr * flagged.sum()
        if (cost, flagged.sum()) < best[:2]:
            best = (cost, flagged.sum(), v)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_by_cost_is_the_brute_force_argmin(seed):
    y, s, t = data(seed)
    for cm, cr in ((200, 5), (10, 1), (1, 1), (1, 50), (0, 1), (3, 0)):
        cost, alerts, value = brute_cost(y, s, cm, cr)
        th = thresholds.by_cost(y, s, cost_missed_fraud=cm, cost_review=cr, time_ms=t)
        assert th.details["cost"] == cost and th.details["alerts"] == alerts
        assert th.value == (FLAG_NOTHING if value is None else value)
        assert th.details["flags_nothing"] == (value is None)
        assert th.details["cost_flag_nothing"] == cm * y.sum()
        assert th.details["cost_per_day"] == pytest.approx(cost / days_spanned(t))
    assert "cost_per_day" not in thresholds.by_cost(y, s, cost_missed_fraud=1, cost_review=1).details


def test_given_and_threshold_record():
    th = thresholds.given(0.3)
    assert th == Threshold(0.3, th.rule, {}) and "0.3" in th.rule
    with pytest.raises(dataclasses.FrozenInstanceError):
        th.value = 0.5
    assert th.to_dict() == {"value": 0.3, "rule": th.rule, "details": {}}


def test_choose_dispatches_every_form():
    y, s, t = data(4)
    assert thresholds.choose("fpr:0.01", y=y, scores=s) == thresholds.by_fpr(y, s, 0.01)
    assert thresholds.choose(" alerts_per_day : 50 ", scores=s, time_ms=t, y=y) == \
        thresholds.by_alert_budget(s, t, 50, y=y)
    assert thresholds.choose("cost:200:5", y=y, scores=s, time_ms=t) == \
        thresholds.by_cost(y, s, cost_missed_fraud=200, cost_review=5, time_ms=t)
    assert thresholds.choose("value:0.3") == thresholds.given(0.3)
    for th in (thresholds.choose("cost:200:5", y=y, scores=s, time_ms=t),
               thresholds.choose("alerts_per_day:0", scores=s, time_ms=t)):
        json.dumps(th.to_dict(), allow_nan=False)


@pytest.mark.parametrize("spec", ["", "fpr", "fpr:", "fpr:abc", "fpr:0.1:2", "cost:200",
                                  "budget:50", "value:nan", "value:inf", 0.3, None])
def test_choose_rejects_bad_specs_naming_the_forms(spec):
    y, s, t = data(0, n=100)
    with pytest.raises(ValueError, match="expected one of.*fpr:.*alerts_per_day:.*cost:.*value:"):
        thresholds.choose(spec, y=y, scores=s, time_ms=t)


def test_bad_inputs():
    y, s, t = data(0, n=200)
    with pytest.raises(ValueError, match="needs y"):
        thresholds.choose("fpr:0.01", scores=s)
    with pytest.raises(ValueError, match="needs time_ms"):
        thresholds.choose("alerts_per_day:5", scores=s, y=y)
    with pytest.raises(ValueError, match="fpr"):
        thresholds.choose("fpr:1.5", y=y, scores=s)
    with pytest.raises(ValueError, match="alerts_per_day"):
        thresholds.by_alert_budget(s, t, -1)
    with pytest.raises(ValueError, match="time_ms"):
        thresholds.by_alert_budget(s, t[:-1], 5)
    with pytest.raises(ValueError, match="length"):
        thresholds.by_alert_budget(s, t, 5, y=y[:-1])
    with pytest.raises(ValueError, match="both 0"):
        thresholds.by_cost(y, s, cost_missed_fraud=0, cost_review=0)
    with pytest.raises(ValueError, match="cost_review"):
        thresholds.by_cost(y, s, cost_missed_fraud=1, cost_review=-1)
    with pytest.raises(ValueError, match="one class"):
        thresholds.by_cost(np.zeros_like(y), s, cost_missed_fraud=1, cost_review=1)
    with pytest.raises(ValueError, match="finite"):
        thresholds.given(float("inf"))
