"""Metrics and time splits: hand-computed cases, sklearn, and a brute-force reference with ties."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from libfraud import metrics
from libfraud.splits import time_split

# The classic sklearn docs example: sorted by score the labels read 1, 0, 1, 0.
Y4 = np.array([0, 0, 1, 1])
S4 = np.array([0.1, 0.4, 0.35, 0.8])


def brute_recall_at_fpr(y, s, fpr):
    """Reference: try every rule `s >= t` (t a distinct score, or flag nothing)."""
    pos, neg = y.sum(), (1 - y).sum()
    best = 0.0
    for t in np.unique(s):
        flagged = s >= t
        if (flagged & (y == 0)).sum() / neg <= fpr:
            best = max(best, (flagged & (y == 1)).sum() / pos)
    return best


def tied_case():
    """5 pos + 2 neg tied at 0.9, 5 pos + 1 neg tied at 0.5, 97 neg at 0.1 (100 negatives)."""
    y = np.array([1] * 5 + [0] * 2 + [1] * 5 + [0] * 1 + [0] * 97)
    s = np.array([0.9] * 7 + [0.5] * 6 + [0.1] * 97)
    return y, s


def test_hand_computed_small_case():
    assert metrics.auprc(Y4, S4) == pytest.approx((1 / 1 + 2 / 3) / 2)  # precision at each hit
    assert metrics.auroc(Y4, S4) == pytest.approx(0.75)
    assert metrics.precision_at_k(Y4, S4, 1) == 1.0
    assert metrics.precision_at_k(Y4, S4, 2) == 0.5
    assert metrics.precision_at_k(Y4, S4, 3) == pytest.approx(2 / 3)
    # One negative allowed out of two (fpr 0.5): flag 0.8, 0.4, 0.35 -> both positives.
    assert metrics.recall_at_fpr(Y4, S4, fpr=0.5) == 1.0
    assert metrics.threshold_at_fpr(Y4, S4, fpr=0.5) == 0.35
    assert metrics.recall_at_fpr(Y4, S4, fpr=0.0) == 0.5
    assert metrics.threshold_at_fpr(Y4, S4, fpr=0.0) == 0.8


def test_recall_at_fpr_ties_are_all_or_nothing():
    y, s = tied_case()
    # The 0.9 group costs 2 false positives: with a budget of 1 it cannot be flagged even in part.
    assert metrics.recall_at_fpr(y, s, fpr=0.01) == 0.0
    assert metrics.threshold_at_fpr(y, s, fpr=0.01) == np.inf
    assert metrics.recall_at_fpr(y, s, fpr=0.02) == 0.5
    assert metrics.threshold_at_fpr(y, s, fpr=0.02) == 0.9
    assert metrics.recall_at_fpr(y, s, fpr=0.03) == 1.0
    assert metrics.threshold_at_fpr(y, s, fpr=0.03) == 0.5
    # Row order must not matter.
    perm = np.random.default_rng(0).permutation(y.size)
    for fpr in (0.01, 0.02, 0.03):
        assert metrics.recall_at_fpr(y[perm], s[perm], fpr) == metrics.recall_at_fpr(y, s, fpr)


def test_precision_at_k_ties_use_expected_value():
    y = np.array([1, 0, 0, 0, 1])
    s = np.array([0.5, 0.5, 0.5, 0.5, 0.9])
    # Top 1 is the 0.9 positive; 2 more places are filled from a 4-row tie holding 1 positive.
    assert metrics.precision_at_k(y, s, 3) == pytest.approx((1 + 2 * 1 / 4) / 3)
    assert metrics.precision_at_k(y, s, 5) == pytest.approx(2 / 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    y = (rng.random(n) < 0.05).astype(int)
    s = np.round(rng.random(n) * 0.6 + 0.4 * y * rng.random(n), 2)  # rounding creates many ties
    assert metrics.auprc(y, s) == pytest.approx(average_precision_score(y, s))
    assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    for fpr in (0.0, 0.01, 0.05, 0.3, 1.0):
        r = metrics.recall_at_fpr(y, s, fpr)
        assert r == pytest.approx(brute_recall_at_fpr(y, s, fpr))
        t = metrics.threshold_at_fpr(y, s, fpr)
        flagged = s >= t
        assert (flagged & (y == 0)).sum() / (y == 0).sum() <= fpr
        assert (flagged & (y == 1)).sum() / y.sum() == pytest.approx(r)
    # Without ties precision@k is the plain top-k precision.
    s_unique = s + rng.random(n) * 1e-6
    top = np.argsort(-s_unique)[:100]
    assert metrics.precision_at_k(y, s_unique, 100) == pytest.approx(y[top].mean())


def test_summary_keys_and_values():
    y, s = tied_case()
    out = metrics.summary(y, s, k=10, fpr=0.02)
    assert set(out) == {"auprc", "auroc", "recall_at_2pct_fpr", "precision_at_k", "k", "n", "positives"}
    out = metrics.summary(y, s)
    assert set(out) == {"auprc", "auroc", "recall_at_1pct_fpr", "precision_at_k", "k", "n", "positives"}
    assert out["recall_at_1pct_fpr"] == 0.0
    assert out["k"] == 100 and out["n"] == 110 and out["positives"] == 10
    assert metrics.summary(Y4, S4)["k"] == 4  # k is capped at n


@pytest.mark.parametrize(
    "fn",
    [
        metrics.auprc,
        metrics.auroc,
        metrics.recall_at_fpr,
        lambda y, s: metrics.precision_at_k(y, s, 1),
        lambda y, s: metrics.threshold_at_fpr(y, s, 0.01),
        metrics.summary,
    ],
)
def test_single_class_is_an_error(fn):
    with pytest.raises(ValueError, match="one class"):
        fn(np.zeros(10, dtype=int), np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="one class"):
        fn(np.ones(10, dtype=int), np.linspace(0, 1, 10))


def test_bad_inputs():
    with pytest.raises(ValueError, match="0/1"):
        metrics.auprc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="length"):
        metrics.auprc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        metrics.auroc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="fpr"):
        metrics.recall_at_fpr(Y4, S4, fpr=1.5)
    with pytest.raises(ValueError, match="k must be"):
        metrics.precision_at_k(Y4, S4, 5)


# --- time_split ---------------------------------------------------------------------------------


def test_time_split_orders_and_partitions():
    rng = np.random.default_rng(0)
    ts = rng.integers(0, 10_000, size=1000)
    tr, va, te = time_split(ts)
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(ts.size))
    assert ts[tr].max() <= ts[va].min() and ts[va].max() <= ts[te].min()
    # No timestamp is shared across a boundary.
    assert not set(ts[tr]) & set(ts[va]) and not set(ts[va]) & set(ts[te])
    assert abs(tr.size - 700) <= 20 and abs(va.size - 150) <= 20


def test_time_split_moves_boundary_to_end_of_tie_run():
    # Sorted: 0..6 distinct, then a run of four 7s straddling the 70% cut (position 7 of 10).
    ts = np.array([7, 0, 1, 7, 2, 3, 4, 5, 7, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
    tr, va, te = time_split(ts, fractions=(0.4, 0.3, 0.3))  # cut at 8 falls inside the 7s
    assert sorted(ts[tr]) == [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7]
    assert ts[tr].max() < ts[va].min() and ts[va].max() < ts[te].min()
    assert va.size + te.size == 9


def test_time_split_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        time_split(np.arange(100), fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="> 0"):
        time_split(np.arange(100), fractions=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="3 values"):
        time_split(np.arange(100), fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="at least 3 rows"):
        time_split(np.arange(2))
    with pytest.raises(ValueError, match="distinct timestamps"):
        time_split(np.array([5, 5, 5, 5, 6]))


# --- the fraud desk's metrics -------------------------------------------------------------------

import json  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from itertools import combinations  # noqa: E402

from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import brier_score_loss  # noqa: E402

DAY = 86_400_000
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z: deliberately not midnight


def brute_daily_precision(y, s, t, ents, k, remove_detected=True, origin=0):
    """Reference: the Handbook's card precision top-k, with plain loops and dicts.

    Ties at the k-th place: average over every choice of tied entities to fill the remaining places
    (each equally likely under a random ordering). Every compromised entity reached by the tie
    counts as detected.
    """
    by_day = {}
    for yi, si, ti, ei in zip(y.tolist(), s.tolist(), t.tolist(), list(ents)):
        day = by_day.setdefault((ti - origin) // DAY, {})
        old_s, old_y = day.get(ei, (-np.inf, 0))
        day[ei] = (max(old_s, si), max(old_y, yi))
    detected, out = set(), []
    for d in sorted(by_day):
        entities = by_day[d]
        dropped = [e for e in entities if remove_detected and e in detected]
        ranked = {e: v for e, v in entities.items() if e not in dropped}
        order = sorted(ranked, key=lambda e: -ranked[e][0])
        if len(order) <= k:
            precision = sum(ranked[e][1] for e in order) / k
            reviewed = order
        else:
            kth = ranked[order[k - 1]][0]
            above = [e for e in order if ranked[e][0] > kth]
            tied = [e for e in order if ranked[e][0] == kth]
            hits_above = sum(ranked[e][1] for e in above)
            fills = list(combinations(tied, k - len(above)))
            precision = sum(hits_above + sum(ranked[e][1] for e in f) for f in fills) / len(fills) / k
            reviewed = above + tied
        detected |= {e for e in reviewed if ranked[e][1] == 1}
        start = datetime.fromtimestamp((origin + d * DAY) / 1000, tz=timezone.utc)
        out.append({"day": start.date().isoformat(), "precision": precision, "entities": len(ranked),
                    "compromised": sum(v[1] for v in ranked.values()), "detected_before": len(dropped)})
    return out


def desk_data(seed, n=600, n_days=6, n_entities=60):
    """Transactions over n_days with a gap day and a day without fraud; coarse scores make ties."""
    rng = np.random.default_rng(seed)
    day = rng.integers(0, n_days, n)
    day[day == 2] = 3  # day 2 has no transactions at all
    t = T0 + day * DAY + rng.integers(0, DAY, n)
    ents = rng.integers(0, n_entities, n)
    y = (rng.random(n) < 0.08).astype(int)
    y[day == 4] = 0  # a day with no fraud
    s = np.round(np.clip(0.3 * rng.random(n) + 0.4 * y * rng.random(n), 0, 1) * 20) / 20
    return y, s, t, ents


def assert_days_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["precision"] == pytest.approx(w["precision"])
        assert {**g, "precision": 0} == {**w, "precision": 0}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_daily_precision_at_k_against_brute_force(seed):
    y, s, t, ents = desk_data(seed)
    saw_removal = saw_straddling_tie = saw_fewer_than_k = False
    for k in (3, 8, 1000):  # 1000 exceeds any day's entity count: divide by k anyway
        for remove in (True, False):
            for origin in (0, T0):
                want = brute_daily_precision(y, s, t, ents, k, remove, origin)
                got = metrics.daily_precision_at_k(y, s, t, ents, k, remove_detected=remove,
                                                   day_origin_ms=origin)
                assert got["k"] == k
                assert_days_equal(got["days"], want)
                assert got["mean"] == pytest.approx(np.mean([d["precision"] for d in want]))
                saw_removal |= any(d["detected_before"] for d in want)
                saw_fewer_than_k |= any(d["entities"] < k for d in want)
    # The data must exercise what the test claims to test.
    for d in sorted(set(((t - T0) // DAY).tolist())):
        m = (t - T0) // DAY == d
        top = {}
        for e, v in zip(ents[m], s[m]):
            top[e] = max(top.get(e, -1), v)
        ranked = sorted(top.values(), reverse=True)
        for k in (3, 8):
            if len(ranked) > k and ranked[k - 1] == ranked[k]:
                saw_straddling_tie = True
    assert saw_removal and saw_straddling_tie and saw_fewer_than_k
    days = metrics.daily_precision_at_k(y, s, t, ents, 8, day_origin_ms=T0)["days"]
    assert len(days) == 5  # the gap day is not listed
    assert days[3]["compromised"] == 0 and days[3]["precision"] == 0.0  # the day without fraud


def test_daily_precision_at_k_ids_and_order_do_not_matter():
    y, s, t, ents = desk_data(5)
    base = metrics.daily_precision_at_k(y, s, t, ents, 5)
    as_text = np.array([f"card-{e}" for e in ents], dtype=object)
    assert metrics.daily_precision_at_k(y, s, t, as_text, 5) == base
    perm = np.random.default_rng(1).permutation(y.size)
    shuffled = metrics.daily_precision_at_k(y[perm], s[perm], t[perm], ents[perm], 5)
    assert_days_equal(shuffled["days"], base["days"])


def test_daily_precision_at_k_drops_detected_entity_on_later_days():
    # Entity 7 is compromised and top-scored on day 0, and again on day 1.
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.2, 0.9, 0.3, 0.1])
    t = np.array([0, 10, DAY, DAY + 5, DAY + 9])
    ents = np.array([7, 8, 7, 8, 9])
    kept = metrics.daily_precision_at_k(y, s, t, ents, 1, remove_detected=False)["days"]
    dropped = metrics.daily_precision_at_k(y, s, t, ents, 1)["days"]
    assert kept[1]["precision"] == 1.0 and kept[1]["detected_before"] == 0
    assert dropped[1]["precision"] == 0.0 and dropped[1]["detected_before"] == 1
    assert dropped[1]["entities"] == kept[1]["entities"] - 1
    assert [d["day"] for d in dropped] == ["1970-01-01", "1970-01-02"]


def test_daily_precision_at_k_bad_inputs():
    y, s, t, ents = desk_data(0, n=50)
    with pytest.raises(ValueError, match="k must be"):
        metrics.daily_precision_at_k(y, s, t, ents, 0)
    with pytest.raises(ValueError, match="time_ms"):
        metrics.daily_precision_at_k(y, s, t[:-1], ents)
    with pytest.raises(ValueError, match="fractional"):
        metrics.daily_precision_at_k(y, s, t + 0.5, ents)
    with pytest.raises(ValueError, match="entity_ids"):
        metrics.daily_precision_at_k(y, s, t, ents[:-1])
    with_none = ents.astype(object)
    with_none[3] = None
    with pytest.raises(ValueError, match="missing"):
        metrics.daily_precision_at_k(y, s, t, with_none)
    with pytest.raises(ValueError, match="day_origin_ms"):
        metrics.daily_precision_at_k(y, s, t, ents, day_origin_ms=0.5)
    with pytest.raises(ValueError, match="one class"):
        metrics.daily_precision_at_k(np.zeros_like(y), s, t, ents)


def utc_days_spanned(t):
    first, last = (datetime.fromtimestamp(x / 1000, tz=timezone.utc).date() for x in (t.min(), t.max()))
    return (last - first).days + 1


@pytest.mark.parametrize("seed", [0, 1])
def test_alerts_per_day_and_at_threshold_against_direct_counts(seed):
    y, s, t, _ = desk_data(seed)
    for thr in (0.0, float(np.median(s)), float(s.max()), 2.0, np.inf):
        alerts = int(np.sum(s >= thr))
        assert metrics.alerts_per_day(s, t, thr) == pytest.approx(alerts / utc_days_spanned(t))
        assert metrics.alerts_per_day(s, t, thr, days=30) == pytest.approx(alerts / 30)
        out = metrics.at_threshold(y, s, thr, t)
        flagged = s >= thr
        assert out["tp"] == sum(f and v == 1 for f, v in zip(flagged, y))
        assert out["fp"] == sum(f and v == 0 for f, v in zip(flagged, y))
        assert out["fn"] == sum(not f and v == 1 for f, v in zip(flagged, y))
        assert out["tn"] == sum(not f and v == 0 for f, v in zip(flagged, y))
        assert out["alerts"] == alerts
        assert out["recall"] == pytest.approx(out["tp"] / y.sum())
        assert out["fpr"] == pytest.approx(out["fp"] / (y == 0).sum())
        if alerts:
            assert out["precision"] == pytest.approx(out["tp"] / alerts)
        else:
            assert out["precision"] is None  # no alerts: no precision, and still JSON
        assert out["alerts_per_day"] == metrics.alerts_per_day(s, t, thr)
    assert "alerts_per_day" not in metrics.at_threshold(y, s, 0.5)


def test_alerts_per_day_bad_inputs():
    s, t = np.array([0.1, 0.9]), np.array([0, DAY])
    with pytest.raises(ValueError, match="threshold"):
        metrics.alerts_per_day(s, t, np.nan)
    with pytest.raises(ValueError, match="days"):
        metrics.alerts_per_day(s, t, 0.5, days=0)
    with pytest.raises(ValueError, match="time_ms"):
        metrics.alerts_per_day(s, np.array(["a", "b"]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        metrics.alerts_per_day(np.array([0.1, np.nan]), t, 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brier_and_reliability_against_direct_computation(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    p = rng.random(n) ** 2
    y = (rng.random(n) < p).astype(int)
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p))
    assert metrics.brier(y, p) == pytest.approx(sum((pi - yi) ** 2 for pi, yi in zip(p, y)) / n)
    # Continuous p never sits on a uniform edge, so sklearn's bins agree with ours.
    rate, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    curve = metrics.reliability_curve(y, p, 10, "uniform")
    assert curve["fraud_rate"] == pytest.approx(rate.tolist())
    assert curve["mean_score"] == pytest.approx(mean.tolist())
    # Coarse p: heavy ties collide quantile edges. Reference: explicit [lo, hi) masks, last closed.
    p = np.round(p, 1)
    for bins, strategy in ((10, "quantile"), (7, "quantile"), (4, "uniform")):
        if strategy == "uniform":
            edges = np.linspace(0, 1, bins + 1)
        else:
            edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
        want = {"mean_score": [], "fraud_rate": [], "count": []}
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            m = (p >= lo) & ((p < hi) | ((p <= hi) if i == edges.size - 2 else False))
            if m.any():
                want["mean_score"].append(p[m].mean())
                want["fraud_rate"].append(y[m].mean())
                want["count"].append(int(m.sum()))
        got = metrics.reliability_curve(y, p, bins, strategy)
        assert got["count"] == want["count"] and sum(got["count"]) == n
        assert got["mean_score"] == pytest.approx(want["mean_score"])
        assert got["fraud_rate"] == pytest.approx(want["fraud_rate"])
    assert len(metrics.reliability_curve(y, p, 10)["count"]) < 10  # duplicate edges were merged
    single = metrics.reliability_curve(y, np.full(n, 0.3), 10)
    assert single["count"] == [n] and single["fraud_rate"] == pytest.approx([y.mean()])


def test_brier_and_reliability_bad_inputs():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.brier(Y4, S4 + 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.reliability_curve(Y4, S4 - 0.2)
    with pytest.raises(ValueError, match="strategy"):
        metrics.reliability_curve(Y4, S4, strategy="kmeans")
    with pytest.raises(ValueError, match="bins"):
        metrics.reliability_curve(Y4, S4, bins=0)
    with pytest.raises(ValueError, match="one class"):
        metrics.brier(np.zeros(4, dtype=int), S4)


SUMMARY_KEYS = {"auprc", "auroc", "recall_at_1pct_fpr", "precision_at_k", "k", "n", "positives"}


def test_desk_summary_layout_and_values():
    y, s, t, ents = desk_data(3)
    bare = metrics.desk_summary(y, s)
    assert set(bare) == SUMMARY_KEYS | {"brier"}
    assert {key: bare[key] for key in SUMMARY_KEYS} == metrics.summary(y, s)
    assert bare["brier"] == metrics.brier(y, s)
    assert set(metrics.desk_summary(y, s * 3 - 1)) == SUMMARY_KEYS  # not probabilities: no brier

    full = metrics.desk_summary(y, s, time_ms=t, entity_ids=ents, threshold=0.3, k=5, entity_name="card")
    assert set(full) == SUMMARY_KEYS | {"brier", "daily_card_precision_at_5", "daily", "threshold",
                                        "at_threshold", "alerts_per_day"}
    daily = metrics.daily_precision_at_k(y, s, t, ents, 5)
    assert full["daily_card_precision_at_5"] == daily["mean"]
    assert full["daily"] == {"metric": "daily_card_precision_at_5", "entity": "card", "k": 5,
                             "days": daily["days"]}
    assert full["at_threshold"] == metrics.at_threshold(y, s, 0.3, t)
    assert full["alerts_per_day"] == metrics.alerts_per_day(s, t, 0.3)
    json.dumps(full, allow_nan=False)  # JSON-ready: plain numbers, no NaN/inf

    no_time = metrics.desk_summary(y, s, threshold=0.3)
    assert "alerts_per_day" not in no_time and "alerts_per_day" not in no_time["at_threshold"]
    assert set(metrics.desk_summary(y, s, time_ms=t)) == SUMMARY_KEYS | {"brier"}
    with pytest.raises(ValueError, match="needs time_ms"):
        metrics.desk_summary(y, s, entity_ids=ents)
    with pytest.raises(ValueError, match="threshold"):
        metrics.desk_summary(y, s, threshold=np.inf)
    with pytest.raises(ValueError, match="entity_name"):
        metrics.desk_summary(y, s, time_ms=t, entity_ids=ents, entity_name="my card")
