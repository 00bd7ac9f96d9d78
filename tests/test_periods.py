"""Periods by time (libfraud.periods): a hand-built timeline, its boundaries and the label cutoff."""

from __future__ import annotations

import numpy as np
import pytest

from libfraud.periods import (DAY_MS, PeriodError, PeriodSpec, assign, effective_label_time,
                              parse_time, prequential_folds, resolve)
from libfraud.splits import time_split

T0 = parse_time("2026-03-01", "test")


def day(d: float) -> int:
    return T0 + int(d * DAY_MS)


def iso(d: int) -> str:
    """The date of day ``d`` (day 0 is 2026-03-01)."""
    return f"2026-03-{d + 1:02d}"


def timeline():
    """Events on days 0..29, four a day at 00, 06, 12 and 18 h; every 3rd event fraud. Labels are
    known 3 days after the event, except events on day 10 whose labels arrive on day 25 (late)."""
    t = np.array([day(d) + h * 21_600_000 for d in range(30) for h in range(4)], dtype=np.int64)
    y = np.where(np.arange(t.size) % 3 == 0, 1, 0).astype(np.int8)
    label_time = t + 3 * DAY_MS
    late = (t >= day(10)) & (t < day(11))
    label_time[late] = day(25)
    return t, y, label_time


def test_boundaries_are_half_open_and_the_gap_is_left_out():
    t, y, lt = timeline()
    spec = PeriodSpec(train_start=iso(2), train_end="12d", label_delay="3d", test_end="5d",
                      valid_start=iso(11))
    p = resolve(spec, t, y)
    assert (p.train_start_ms, p.valid_start_ms, p.train_end_ms) == (day(2), day(11), day(14))
    assert (p.test_start_ms, p.test_end_ms, p.cutoff_ms) == (day(17), day(22), day(17))
    split = assign(p, t, y, effective_label_time(t, lt, p.label_delay_ms))
    # An event exactly on a boundary belongs to the period that starts there.
    assert t[split.train].min() == day(2) and t[split.train].max() < day(11)
    assert t[split.valid].min() == day(11) and t[split.valid].max() < day(14)
    assert t[split.test].min() == day(17) and t[split.test].max() < day(22)
    assert split.counts["warmup"] == 8 and split.counts["gap"] == 12  # days 0-1; days 14-16
    # Day 10's labels arrive on day 25, after the cutoff: as the desk knew them then, legitimate.
    day10 = (t >= day(10)) & (t < day(11))
    assert np.isin(np.flatnonzero(day10), split.train).all()
    assert (split.y[day10] == 0).all() and (y[day10] == 1).sum() == 1  # event 42
    assert split.counts["not_yet_known"]["train"] == {"labels_not_yet_known": 4, "frauds_not_yet_known": 1}
    assert (split.y[split.test] == y[split.test]).all()  # the test keeps the truth
    # ... or left out.
    dropped = assign(p, t, y, effective_label_time(t, lt, p.label_delay_ms), unknown="drop")
    assert not np.isin(np.flatnonzero(day10), dropped.train).any()
    assert dropped.train.size == split.train.size - 4
    known = np.setdiff1d(split.train, np.flatnonzero(day10))
    assert (dropped.y[known] == y[known]).all()
    with pytest.raises(PeriodError, match="--unknown-labels"):
        assign(p, t, y, lt, unknown="maybe")


def test_a_label_known_exactly_at_the_cutoff_is_not_used():
    t, y, lt = timeline()
    spec = PeriodSpec(train_start=iso(0), train_end="10d", valid_start="2d", label_delay="0d",
                      test_start=iso(12))
    p = resolve(spec, t, y)
    lt = lt.copy()
    target = int(np.flatnonzero(t == day(9))[0])  # 00:00 on day 9: event 36, a fraud
    lt[target] = p.cutoff_ms  # known at the cutoff itself: not strictly before
    assert y[target] == 1
    split = assign(p, t, y, effective_label_time(t, lt, 0))
    assert target in split.valid and split.y[target] == 0  # not yet known: no fraud report yet
    assert target not in assign(p, t, y, effective_label_time(t, lt, 0), unknown="drop").valid
    lt[target] = p.cutoff_ms - 1
    split = assign(p, t, y, effective_label_time(t, lt, 0))
    assert target in split.valid and split.y[target] == 1


def test_the_label_delay_makes_labels_mature_later():
    t, y, lt = timeline()
    known_now = t.copy()  # labels "known" at the event itself
    spec = PeriodSpec(train_start=iso(0), train_end="10d", valid_start="2d", test_start=iso(12))
    p = resolve(spec, t, y)
    assert len(assign(p, t, y, effective_label_time(t, known_now, 0)).valid) == 8
    # With a 3-day delay, days 8-9's labels are only known on days 11-12: day 9's miss the cutoff.
    eff = effective_label_time(t, known_now, 3 * DAY_MS)
    split = assign(p, t, y, eff, unknown="drop")
    assert np.all(eff[split.train] < p.cutoff_ms) and np.all(eff[split.valid] < p.cutoff_ms)
    assert split.counts["not_yet_known"]["valid"]["labels_not_yet_known"] == 4


def test_carved_validation_is_the_tail_of_the_training_window():
    t, y, lt = timeline()
    p = resolve(PeriodSpec(train_start=iso(0), train_end="10d", valid_fraction=0.25,
                           label_delay="2d", test_end="3d"), t, y)
    assert p.valid_carved and p.train_end_ms == day(10) and p.test_start_ms == day(12)
    split = assign(p, t, y, effective_label_time(t, lt, p.label_delay_ms))
    assert t[split.train].max() < t[split.valid].min()
    # 25% of the window's 40 labelled events; day 9's labels are not known by the cutoff (day 12).
    assert split.valid.size == 10
    assert split.counts["not_yet_known"]["valid"]["labels_not_yet_known"] == 4


def test_fractions_without_periods_match_time_split():
    t, y, lt = timeline()
    p = resolve(PeriodSpec(), t, y, fractions=(0.6, 0.2, 0.2))
    tr, va, te = time_split(t, (0.6, 0.2, 0.2))
    assert p.valid_start_ms == t[va].min() and p.test_start_ms == t[te].min()


@pytest.mark.parametrize("spec, flag", [
    (PeriodSpec(train_end=iso(4), valid_start=iso(3), valid_end=iso(7),
                test_start=iso(19)), "overlaps"),
    (PeriodSpec(train_start=iso(4), train_end=iso(2)), "--train-end"),
    (PeriodSpec(train_end="5d", test_start=iso(2)), "--test-start"),
    (PeriodSpec(train_end="20d", label_delay="30d"), "--label-delay"),
    (PeriodSpec(train_end="5d", label_delay="x"), "--label-delay"),
    (PeriodSpec(train_end="not a date"), "--train-end"),
    (PeriodSpec(train_start=iso(0), valid_end=iso(3), train_end="5d"), "--valid-start"),
    (PeriodSpec(train_end="5d", valid_fraction=1.5), "--valid-fraction"),
])
def test_bad_periods_name_the_flag(spec, flag):
    t, y, lt = timeline()
    with pytest.raises(PeriodError, match=flag):
        resolve(spec, t, y)


def test_periods_without_fraud_or_events_are_refused():
    t, y, lt = timeline()
    y0 = y.copy()
    y0[(t >= day(18))] = 0  # no fraud in the test
    p = resolve(PeriodSpec(train_end="15d", label_delay="3d", test_end="5d"), t, y0)
    with pytest.raises(PeriodError, match="test period has no fraud"):
        assign(p, t, y0, effective_label_time(t, lt, 3 * DAY_MS))
    # Every training label arrives after the cutoff: no fraud known to train on.
    p = resolve(PeriodSpec(train_end="15d", label_delay="0d", test_end="5d"), t, y)
    with pytest.raises(PeriodError, match="training period has no fraud"):
        assign(p, t, y, np.full_like(t, day(40)))
    with pytest.raises(PeriodError, match="training period has no labelled events"):
        assign(p, t, y, np.full_like(t, day(40)), unknown="drop")


def test_prequential_folds_shift_by_the_validation_length():
    t, y, lt = timeline()
    p = resolve(PeriodSpec(train_start=iso(10), train_end="6d", valid_start="2d", label_delay="3d",
                           test_end="3d"), t, y)
    folds = prequential_folds(p, 3)
    step = p.valid_end_ms - p.valid_start_ms
    assert [f.valid_start_ms for f in folds] == [p.valid_start_ms - i * step for i in range(3)]
    assert [f.cutoff_ms for f in folds] == [p.cutoff_ms - i * step for i in range(3)]
    eff = effective_label_time(t, lt, 3 * DAY_MS)
    for f in folds:
        s = assign(f, t, y, eff, unknown="drop")
        assert np.all(eff[s.train] < f.cutoff_ms) and np.all(eff[s.valid] < f.cutoff_ms)
    with pytest.raises(PeriodError, match="--prequential"):
        prequential_folds(p, 0)
