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
