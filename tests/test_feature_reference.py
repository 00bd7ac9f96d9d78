"""The feature reference (tests/feature_reference.py) checked on its own: tiny hand-computed cases
for every kind and edge of export/SCHEMA.md, a naive loop-by-loop recomputation on random streams,
and the random stream generators' promises. Pure Python/NumPy: no compiled core needed."""

from __future__ import annotations

import copy
import json
import math
import statistics

import numpy as np
import pytest

from feature_reference import INT64_MIN, feature_is_exact, reference_features
from libfraud.events import EventArrays, LabelArrays
from random_streams import (random_case, random_events, random_labels, random_schema,
                            random_spec)

NAN = math.nan
HOUR = 3_600_000
DAY = 24 * HOUR

FLT_MAX = float(np.finfo(np.float32).max)


# --- helpers: tiny schemas and streams written as rows ----------------------------------------

def schema_of(entities=(("card", True),), amount=True, numeric=(), categorical=(),
              utc_offsets=None) -> dict:
    return {
        "format": "libfraud-schema", "version": 1, "name": "t",
        "event_id": {"column": "ID", "ids": "int"},
        "time": {"column": "T", "unit": "ms", "timezone": "UTC",
                 "utc_offsets": utc_offsets or [[INT64_MIN, 0]]},
        "amount": {"column": "A"} if amount else None,
        "entities": [{"name": n, "column": n, "ids": "int", "required": r} for n, r in entities],
        "numeric": [{"name": n, "column": n} for n in numeric],
        "categorical": [{"name": n, "column": n, "codes": "int"} for n in categorical],
        "label": None,
    }


def events_of(schema: dict, rows: list[dict]) -> EventArrays:
    """rows: {"t": ms, "amount": x, <entity>: id, <numeric>: x, <categorical>: code}; missing keys
    are absent (-1) / missing (NaN, -1); event ids are the row numbers."""
    n = len(rows)
    ents = [e["name"] for e in schema["entities"]]
    nums = [x["name"] for x in schema["numeric"]]
    cats = [x["name"] for x in schema["categorical"]]
    return EventArrays.make(
        event_id=np.arange(n),
        time_ms=[r["t"] for r in rows],
        amount=[r.get("amount", 0.0) for r in rows],
        entity_id=np.array([[r.get(e, -1) for e in ents] for r in rows],
                           dtype=np.int64).reshape(n, len(ents)),
        numeric=np.array([[r.get(x, NAN) for x in nums] for r in rows],
                         dtype=np.float64).reshape(n, len(nums)),
        categorical=np.array([[r.get(c, -1) for c in cats] for r in rows],
                             dtype=np.int64).reshape(n, len(cats)),
    )


def labels_of(triples) -> LabelArrays:
    triples = list(triples)
    return LabelArrays.make([a for a, _, _ in triples], [b for _, b, _ in triples],
                            [c for _, _, c in triples])


def compute(schema, features, rows, labels=None, max_scan=1024, **kw) -> np.ndarray:
    features = [{"name": f"f{k}", **f} for k, f in enumerate(features)]
    spec = {"format": "libfraud-features", "version": 1, "max_scan": max_scan, "features": features}
    out = reference_features(schema, spec, events_of(schema, rows), labels, **kw)
    assert out.dtype == np.float32 and out.shape == (len(rows), len(features))
    return out


def same(actual, expected) -> bool:
    """Equal as float32, NaN where NaN (and -0.0 vs 0.0 distinguished)."""
    a = np.asarray(actual, dtype=np.float32)
    e = np.asarray(expected, dtype=np.float32)
    return a.shape == e.shape and bool(np.all((np.isnan(a) & np.isnan(e)) |
                                              (a.view(np.uint32) == e.view(np.uint32))))


def assert_same(actual, expected):
    assert same(actual, expected), f"\nactual:   {np.asarray(actual).tolist()}\nexpected: {expected}"


# --- pass-throughs and calendar ---------------------------------------------------------------

def test_amount_log_amount_numeric_categorical():
    s = schema_of(numeric=["risk"], categorical=["channel"])
    rows = [{"t": 0, "card": 1, "amount": 0.0, "risk": -0.0, "channel": 2 ** 63 - 1},
            {"t": 1, "card": 1, "amount": 2.5, "channel": 3},
            {"t": 2, "card": 1, "amount": 1e200, "risk": 1e200, "channel": 5},
            {"t": 3, "card": 1, "amount": 7.0, "risk": -3.25}]
    out = compute(s, [{"kind": "amount"}, {"kind": "log_amount"}, {"kind": "numeric", "field": "risk"},
                      {"kind": "categorical", "field": "channel"},
                      {"kind": "categorical", "field": "channel", "vocabulary": [7, 3]}], rows)
    assert_same(out[:, 0], [0.0, 2.5, FLT_MAX, 7.0])  # past float32: saturated, never inf
    assert_same(out[:, 1], [0.0, math.log1p(2.5), math.log1p(1e200), math.log1p(7.0)])
    assert_same(out[:, 2], [-0.0, NAN, FLT_MAX, -3.25])  # -0.0 passes through as -0.0
    # int64 -> double -> float32 (2**63 - 1 rounds up to 2**63)
    assert_same(out[:, 3], [np.float32(float(2 ** 63 - 1)), 3.0, 5.0, NAN])
    assert out[0, 3] == np.float32(2.0 ** 63)
    # vocabulary: the index, len(vocabulary) when unseen, NaN when missing
    assert_same(out[:, 4], [2.0, 1.0, 2.0, NAN])


def test_calendar_utc():
    s = schema_of()
    times = [0,                                   # Thu 1970-01-01 00:00
             2 * DAY + 5 * HOUR + 59 * 60_000,    # Sat 05:59
             3 * DAY + 6 * HOUR,                  # Sun 06:00
             4 * DAY + 22 * HOUR - 1,             # Mon 21:59:59.999
             4 * DAY + 22 * HOUR,                 # Mon 22:00
             -1]                                  # Wed 1969-12-31 23:59:59.999 (floor, not truncation)
    rows = [{"t": t, "card": k} for k, t in enumerate(sorted(times))]
    parts = ["hour", "day_of_week", "weekend", "night"]
    out = compute(s, [{"kind": "calendar", "part": p} for p in parts], rows)
    # sorted: -1, 0, Sat 05:59, Sun 06:00, Mon 21:59:59.999, Mon 22:00
    assert_same(out[:, 0], [23, 0, 5, 6, 21, 22])
    assert_same(out[:, 1], [2, 3, 5, 6, 0, 0])
    assert_same(out[:, 2], [0, 0, 1, 1, 0, 0])
    assert_same(out[:, 3], [1, 1, 1, 0, 0, 1])


def test_calendar_offset_table():
    # UTC-1 until 10:00 UTC, then UTC+5:30 (the entry applies from its utc_ms_from inclusive)
    s = schema_of(utc_offsets=[[INT64_MIN, -3600], [10 * HOUR, 5 * 3600 + 1800]])
    rows = [{"t": 0, "card": 1}, {"t": 10 * HOUR - 1, "card": 1}, {"t": 10 * HOUR, "card": 1},
            {"t": 10 * HOUR + 9 * HOUR, "card": 1}]
    out = compute(s, [{"kind": "calendar", "part": p} for p in ["hour", "day_of_week", "night"]], rows)
    # 0 UTC = Wed 23:00 local; 09:59:59.999 UTC = 08:59 local; 10:00 UTC = 15:30 local;
    # 19:00 UTC = Fri 00:30 local
    assert_same(out[:, 0], [23, 8, 15, 0])
    assert_same(out[:, 1], [2, 3, 3, 4])
    assert_same(out[:, 2], [1, 0, 0, 1])


# --- windows ----------------------------------------------------------------------------------

AGGS = ["count", "sum", "mean", "std", "min", "max"]


def window_features(w, offset=0, entity="card", field="amount", **extra):
    return [{"kind": "window", "entity": entity, "agg": a, "window_ms": w, "offset_ms": offset,
             **({} if a == "count" else {"field": field}), **extra} for a in AGGS]


def test_window_edges_ties_and_empty_history():
    s = schema_of(entities=[("card", True), ("device", False)])
    rows = [{"t": 0, "card": 1, "device": 5, "amount": 1.0},
            {"t": 10, "card": 1, "device": 5, "amount": 2.0},
            {"t": 20, "card": 1, "amount": 4.0},                # device absent
            {"t": 30, "card": 1, "device": 5, "amount": 8.0},
            {"t": 30, "card": 1, "device": 5, "amount": 16.0}]  # a tie: does not see event 3
    out = compute(s, window_features(20) + window_features(20, entity="device"), rows)
    card, device = out[:, :6], out[:, 6:]
    #                 count sum  mean  std               min  max
    assert_same(card[0], [0, 0.0, NAN, NAN, NAN, NAN])  # empty history
    assert_same(card[1], [1, 1.0, 1.0, NAN, 1.0, 1.0])  # [-10, 10): one event, std NaN
    assert_same(card[2], [2, 3.0, 1.5, math.sqrt(0.5), 1.0, 2.0])  # [0, 20): t - w is in
    assert_same(card[3], [2, 6.0, 3.0, math.sqrt(2.0), 2.0, 4.0])  # [10, 30): 0 is out
    assert_same(card[4], [2, 6.0, 3.0, math.sqrt(2.0), 2.0, 4.0])  # the tie at 30 is out
    assert np.all(np.isnan(device[2]))  # absent entity: NaN, count included
    assert_same(device[3], [1, 2.0, 2.0, NAN, 2.0, 2.0])  # [10, 30) of device 5: event 1 only


def test_window_one_ms_and_offset():
    s = schema_of()
    rows = [{"t": 0, "card": 1, "amount": 1.0}, {"t": 9, "card": 1, "amount": 2.0},
            {"t": 10, "card": 1, "amount": 4.0}, {"t": 20, "card": 1, "amount": 8.0},
            {"t": 30, "card": 1, "amount": 16.0}]
    out = compute(s, [{"kind": "window", "entity": "card", "agg": "sum", "field": "amount",
                       "window_ms": 1},
                      {"kind": "window", "entity": "card", "agg": "count", "window_ms": 10,
                       "offset_ms": 10},
                      {"kind": "window", "entity": "card", "agg": "sum", "field": "amount",
                       "window_ms": 10, "offset_ms": 10}], rows)
    assert_same(out[:, 0], [0.0, 0.0, 2.0, 0.0, 0.0])  # [t-1, t): only event 1 for event 2
    # [t - 20, t - 10): event 2 (t=10) -> [-10, 0): none; event 3 (t=20) -> [0, 10): events 0, 1;
    # event 4 (t=30) -> [10, 20): event 2
    assert_same(out[:, 1], [0, 0, 0, 2, 1])
    assert_same(out[:, 2], [0.0, 0.0, 0.0, 3.0, 4.0])


def test_std_of_equal_values_is_exactly_zero():
    s = schema_of(numeric=["x"])
    rows = [{"t": k, "card": 1, "amount": 0.1, "x": 0.1} for k in range(4)]
    out = compute(s, [{"kind": "window", "entity": "card", "agg": "std", "field": f,
                       "window_ms": 100} for f in ("amount", "x")], rows)
    # 0.1 * 3 / 3 != 0.1 in double, so a two-pass std around the mean would not be 0
    assert_same(out[:, 0], [NAN, NAN, 0.0, 0.0])
    assert_same(out[:, 1], [NAN, NAN, 0.0, 0.0])


def test_huge_value_leaving_the_window_leaves_an_exact_sum():
    s = schema_of(numeric=["x"])
    rows = [{"t": 0, "card": 1, "amount": 1e200, "x": 1e200},
            {"t": 10, "card": 1, "amount": 1.0, "x": 0.1},
            {"t": 20, "card": 1, "amount": 2.0, "x": 0.2},
            {"t": 30, "card": 1, "amount": 0.5, "x": 0.7}]
    feats = []
    for f in ("amount", "x"):
        feats += [{"kind": "window", "entity": "card", "agg": a, "field": f, "window_ms": 25}
                  for a in ("sum", "mean", "max", "std")]
    out = compute(s, feats, rows)
    # event 2: [-5, 20) holds the 1e200: past float32, saturated
    assert_same(out[2, :3], [FLT_MAX, FLT_MAX, FLT_MAX])
    # event 3: [5, 30) holds 1 and 2 only: exactly 3, whatever came before
    assert_same(out[3, :4], [3.0, 1.5, 2.0, math.sqrt(0.5)])
    assert_same(out[3, 4:], [0.1 + 0.2, (0.1 + 0.2) / 2, 0.2, statistics.stdev([0.1, 0.2])])
    # std of [1e200, 1] does not overflow in double; past float32 it saturates
    assert_same(out[2, 3], FLT_MAX)


def test_filters():
    s = schema_of(numeric=["risk"], categorical=["channel"])
    rows = [{"t": 0, "card": 1, "amount": 1.0, "channel": 1, "risk": 2.0},
            {"t": 1, "card": 1, "amount": 2.0, "risk": 3.0},                  # channel missing
            {"t": 2, "card": 1, "amount": 4.0, "channel": 0},                 # risk missing
            {"t": 3, "card": 1, "amount": 8.0, "channel": 1, "risk": 5.0},
            {"t": 4, "card": 1, "amount": 16.0, "channel": 1, "risk": 2.0}]
    feats = [
        {"kind": "window", "entity": "card", "agg": "sum", "field": "amount", "window_ms": 100,
         "filter": {"field": "channel", "in": [1]}},
        {"kind": "window", "entity": "card", "agg": "count", "window_ms": 100,
         "filter": {"field": "risk", "op": "!=", "value": 2.0}},  # NaN never passes, not even !=
        {"kind": "window", "entity": "card", "agg": "count", "window_ms": 100,
         "filter": {"field": "amount", "op": ">=", "value": 2.0}},
        # max_scan: the window's 2 most recent events, then the filter
        {"kind": "window", "entity": "card", "agg": "sum", "field": "amount", "window_ms": 100,
         "filter": {"field": "channel", "in": [1]}, "max_scan": 2},
        # the filter is not applied to the event scored, and an unfiltered window has no max_scan
        {"kind": "window", "entity": "card", "agg": "count", "window_ms": 100, "max_scan": 1},
    ]
    out = compute(s, feats, rows)
    assert_same(out[:, 0], [0.0, 1.0, 1.0, 1.0, 9.0])
    assert_same(out[:, 1], [0, 0, 1, 1, 2])
    assert_same(out[:, 2], [0, 0, 1, 2, 3])
    assert_same(out[:, 3], [0.0, 1.0, 1.0, 0.0, 8.0])  # event 3 scans 1, 2; event 4 scans 2, 3
    assert_same(out[:, 4], [0, 1, 2, 3, 4])


def test_spec_max_scan_and_feature_override():
    s = schema_of(categorical=["c"])
    rows = [{"t": k, "card": 1, "c": k} for k in range(5)]
    feats = [{"kind": "distinct", "entity": "card", "of": {"categorical": "c"}, "window_ms": 100},
             {"kind": "distinct", "entity": "card", "of": {"categorical": "c"}, "window_ms": 100,
              "max_scan": 3}]
    out = compute(s, feats, rows, max_scan=2)
    assert_same(out[:, 0], [0, 1, 2, 2, 2])
    assert_same(out[:, 1], [0, 1, 2, 3, 3])


# --- history-based kinds ----------------------------------------------------------------------

def test_time_since_last():
    s = schema_of(entities=[("card", True), ("device", False)])
    rows = [{"t": 0, "card": 1, "device": 2}, {"t": 1500, "card": 1},
            {"t": 1500, "card": 1, "device": 2}, {"t": 4001, "card": 1, "device": 2}]
    out = compute(s, [{"kind": "time_since_last", "entity": "card"},
                      {"kind": "time_since_last", "entity": "device"}], rows)
    assert_same(out[:, 0], [NAN, 1.5, 1.5, 2.501])  # the tie at 1500 sees event 0 only
    assert_same(out[:, 1], [NAN, NAN, 1.5, 2.501])


def test_amount_vs_history():
    s = schema_of(numeric=["x"])
    rows = [{"t": 0, "card": 1, "amount": 10.0, "x": 1.0},
            {"t": 10, "card": 1, "amount": 20.0},
            {"t": 20, "card": 1, "amount": 30.0, "x": 3.0},
            {"t": 30, "card": 1, "amount": 40.0, "x": 5.0}]
    feats = [{"kind": "amount_vs_history", "entity": "card", "field": "amount",
              "stat": "ratio_to_mean", "window_ms": 0},
             {"kind": "amount_vs_history", "entity": "card", "field": "amount", "stat": "zscore",
              "window_ms": 0},
             {"kind": "amount_vs_history", "entity": "card", "field": "amount",
              "stat": "ratio_to_mean", "window_ms": 15},
             {"kind": "amount_vs_history", "entity": "card", "field": "amount", "stat": "zscore",
              "window_ms": 15},
             {"kind": "amount_vs_history", "entity": "card", "field": "x", "stat": "ratio_to_mean",
              "window_ms": 0},
             {"kind": "amount_vs_history", "entity": "card", "field": "x", "stat": "zscore",
              "window_ms": 0}]
    out = compute(s, feats, rows)
    assert_same(out[:, 0], [NAN, 2.0, 2.0, 2.0])
    assert_same(out[:, 1], [NAN, NAN, 15 / math.sqrt(50), 2.0])
    assert_same(out[:, 2], [NAN, 2.0, 1.5, 40 / 30])  # [t - 15, t)
    assert_same(out[:, 3], [NAN, NAN, NAN, NAN])      # never 2 values in 15 ms
    # x: the event's own value missing -> NaN; missing history values are skipped
    assert_same(out[:, 4], [NAN, NAN, 3.0, 5.0 / 2.0])
    assert_same(out[:, 5], [NAN, NAN, NAN, (5.0 - 2.0) / math.sqrt(2.0)])


def test_zscore_threshold_zero_mean_and_huge_values():
    s = schema_of()
    z = {"kind": "amount_vs_history", "entity": "card", "field": "amount", "stat": "zscore",
         "window_ms": 0}
    r = {"kind": "amount_vs_history", "entity": "card", "field": "amount", "stat": "ratio_to_mean",
         "window_ms": 0}

    def run(amounts):
        return compute(s, [z, r], [{"t": k, "card": 1, "amount": a} for k, a in enumerate(amounts)])

    # std 3.5e-5 <= 1e-6 * 100.000025: NaN; std 7.1e-4 > 1e-4: a value
    assert math.isnan(run([100.0, 100.00005, 1.0])[2, 0])
    std = statistics.stdev([100.0, 100.001])
    assert_same(run([100.0, 100.001, 1.0])[2, 0], (1.0 - 100.0005) / std)
    # all equal: std 0 -> NaN (and 0 <= 0 with a zero mean)
    assert math.isnan(run([3.0, 3.0, 3.0])[2, 0])
    assert math.isnan(run([0.0, 0.0, 0.0])[2, 0])
    # ratio to a mean of 0: NaN (no ratio; x / 0 would be inf)
    assert_same(run([0.0, 5.0, 0.0])[1:, 1], [NAN, 0.0 / 2.5])
    assert math.isnan(run([0.0, 0.0])[1, 1])
    # [1e200, 0] then 0: mean 5e199, std 7.07e199 (no overflow): z = -1/sqrt(2)
    assert_same(run([1e200, 0.0, 0.0])[2, 0], -1 / math.sqrt(2.0))
    assert_same(run([1e200, 0.0, 0.0])[2, 1], 0.0)


def test_distinct():
    s = schema_of(entities=[("card", True), ("device", False)], categorical=["c"])
    rows = [{"t": 0, "card": 1, "device": 1, "c": 7},
            {"t": 1, "card": 1, "device": 2},
            {"t": 2, "card": 1, "device": 1, "c": 7},
            {"t": 3, "card": 1, "c": 8},
            {"t": 4, "card": 1, "device": 3, "c": 9},
            {"t": 5, "device": 3, "card": 2}]
    feats = [{"kind": "distinct", "entity": "card", "of": {"entity": "device"}, "window_ms": 100},
             {"kind": "distinct", "entity": "card", "of": {"categorical": "c"}, "window_ms": 100},
             {"kind": "distinct", "entity": "card", "of": {"entity": "device"}, "window_ms": 100,
              "max_scan": 2},
             {"kind": "distinct", "entity": "card", "of": {"entity": "device"}, "window_ms": 3},
             {"kind": "distinct", "entity": "device", "of": {"entity": "card"}, "window_ms": 100}]
    out = compute(s, feats, rows)
    assert_same(out[:, 0], [0, 1, 2, 2, 2, 0])   # absent devices are not values; card 2 is new
    assert_same(out[:, 1], [0, 1, 1, 1, 2, 0])
    assert_same(out[:, 2], [0, 1, 2, 2, 1, 0])   # event 4 scans events 2, 3: device 1 only
    assert_same(out[:, 3], [0, 1, 2, 2, 2, 0])   # event 4: [1, 4) -> events 1-3: devices 2, 1
    assert_same(out[:, 4], [0, 0, 1, NAN, 0, 1])  # event 3's device is absent: NaN


def test_novelty_and_changed():
    s = schema_of(entities=[("card", True), ("device", False)], categorical=["c"])
    rows = [{"t": 0, "card": 1, "device": 1, "c": 0},
            {"t": 1, "card": 1, "device": 2, "c": 0},
            {"t": 2, "card": 1, "device": 3, "c": 1},
            {"t": 3, "card": 1, "device": 1},
            {"t": 4, "card": 1},
            {"t": 4, "card": 1, "device": 9, "c": 1}]  # a tie: its newest history event is event 3
    feats = [{"kind": "novelty", "entity": "card", "of": {"entity": "device"}},
             {"kind": "novelty", "entity": "card", "of": {"entity": "device"}, "max_scan": 2},
             {"kind": "novelty", "entity": "card", "of": {"categorical": "c"}},
             {"kind": "changed", "entity": "card", "of": {"categorical": "c"}},
             {"kind": "changed", "entity": "card", "of": {"entity": "device"}}]
    out = compute(s, feats, rows)
    assert_same(out[:, 0], [NAN, 1, 1, 0, NAN, 1])  # no history / own value absent: NaN
    assert_same(out[:, 1], [NAN, 1, 1, 1, NAN, 1])  # device 1 is beyond the 2 most recent
    assert_same(out[:, 2], [NAN, 0, 1, NAN, NAN, 0])
    # raw values compared: present -> missing is a change; missing -> missing is not
    assert_same(out[:, 3], [NAN, 0, 1, 1, 0, 1])
    assert_same(out[:, 4], [NAN, 1, 1, 1, 1, 1])


def test_distinct_window_bounds():
    s = schema_of(entities=[("card", True), ("device", True)])
    rows = [{"t": 0, "card": 1, "device": 1}, {"t": 1, "card": 1, "device": 2},
            {"t": 2, "card": 1, "device": 1}, {"t": 4, "card": 1, "device": 3}]
    out = compute(s, [{"kind": "distinct", "entity": "card", "of": {"entity": "device"},
                       "window_ms": 3}], rows)
    # event 3 at t=4: [1, 4) -> events 1, 2 (devices 2, 1); event 0 at t=0 is out
    assert_same(out[:, 0], [0, 1, 2, 2])


# --- labels -----------------------------------------------------------------------------------

LABEL_AGGS = ["fraud_count", "labelled_count", "fraud_rate"]


def test_labels_strictly_before_t():
    s = schema_of(entities=[("terminal", True)])
    rows = [{"t": k * 10, "terminal": 1} for k in range(5)] + [{"t": 40, "terminal": 2}]
    labels = labels_of([(0, 1, 30),    # known exactly at event 3's time: not counted by it
                        (1, 0, 29),    # 1 ms before: counted
                        (2, 1, 40),    # known at event 4's time
                        (3, 1, 10 ** 15),  # far in the future
                        (5, 1, 40)])
    feats = [{"kind": "label", "entity": "terminal", "agg": a, "window_ms": 1000} for a in LABEL_AGGS]
    feats += [{"kind": "label", "entity": "terminal", "agg": a, "window_ms": 20, "offset_ms": 10}
              for a in LABEL_AGGS]
    feats += [{"kind": "label", "entity": "terminal", "agg": a, "window_ms": 1000, "max_scan": 2}
              for a in LABEL_AGGS]
    out = compute(s, feats, rows, labels)
    plain, offset, scan2 = out[:, 0:3], out[:, 3:6], out[:, 6:9]
    assert_same(plain[:, 0], [0, 0, 0, 0, 1, 0])
    assert_same(plain[:, 1], [0, 0, 0, 1, 2, 0])
    assert_same(plain[:, 2], [NAN, 0, 0, 0, 0.25, NAN])  # rate over all events scanned; empty: NaN
    # [t - 30, t - 10): event 3 (t=30) -> [0, 20): events 0, 1 (event 0's label not known at 30)
    # event 4 (t=40) -> [10, 30): events 1, 2 (event 2's label known at 40: not counted)
    assert_same(offset[:, 0], [0, 0, 0, 0, 0, 0])
    assert_same(offset[:, 1], [0, 0, 0, 1, 1, 0])
    assert_same(offset[:, 2], [NAN, NAN, 0, 0, 0, NAN])
    # max_scan 2: event 4 scans events 2, 3 (neither known at 40)
    assert_same(scan2[:, 0], [0, 0, 0, 0, 0, 0])
    assert_same(scan2[:, 1], [0, 0, 0, 1, 0, 0])
    assert_same(scan2[:, 2], [NAN, 0, 0, 0, 0, NAN])
    # the order labels arrive in does not matter
    shuffled = labels.take(np.array([4, 2, 0, 3, 1]))
    assert same(compute(s, feats, rows, shuffled), out)
    # absent entity: NaN for every label agg
    s2 = schema_of(entities=[("card", True), ("terminal", False)])
    out2 = compute(s2, feats[:3], [{"t": 0, "card": 1}, {"t": 1, "card": 1}])
    assert np.all(np.isnan(out2))


def test_label_errors():
    s = schema_of()
    rows = [{"t": 10, "card": 1}, {"t": 20, "card": 1}]
    f = [{"kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 100}]
    with pytest.raises(ValueError, match="before"):
        compute(s, f, rows, labels_of([(0, 1, 9)]))
    with pytest.raises(ValueError, match="conflicting"):
        compute(s, f, rows, labels_of([(0, 1, 10), (0, 0, 11)]))
    with pytest.raises(ValueError, match="unknown event"):
        compute(s, f, rows, labels_of([(7, 1, 10)]))
    with pytest.raises(ValueError, match="0 or 1"):
        compute(s, f, rows, labels_of([(0, 2, 10)]))
    # the same label twice keeps the earliest time
    out = compute(s, f + [dict(f[0], agg="labelled_count")], rows + [{"t": 30, "card": 1}],
                  labels_of([(0, 1, 25), (0, 1, 15)]))
    assert_same(out[:, 0], [0, 1, 1])  # known from 15, so event 1 (t=20) counts it


def test_spec_errors():
    with pytest.raises(ValueError, match="without amount"):
        compute(schema_of(amount=False), [{"kind": "amount"}], [{"t": 0, "card": 1}])
    with pytest.raises(ValueError, match="unknown kind"):
        compute(schema_of(), [{"kind": "nope"}], [{"t": 0, "card": 1}])
    with pytest.raises(ValueError, match="window_ms"):
        compute(schema_of(), [{"kind": "window", "entity": "card", "agg": "count", "window_ms": 0}],
                [{"t": 0, "card": 1}])
    with pytest.raises(ValueError, match="required"):
        compute(schema_of(), [{"kind": "amount"}], [{"t": 0}])


# --- retention --------------------------------------------------------------------------------

def test_retention_by_time():
    s = schema_of(entities=[("card", True)])
    rows = [{"t": 0, "card": 1}, {"t": 100, "card": 1}, {"t": 200, "card": 1}, {"t": 300, "card": 1}]
    feats = [{"kind": "window", "entity": "card", "agg": "count", "window_ms": 10_000},
             {"kind": "time_since_last", "entity": "card"}]
    assert_same(compute(s, feats, rows)[:, 0], [0, 1, 2, 3])
    # retention 100: event 2 sees watermark 100, cutoff 0: event 0 (exactly at the cutoff) stays;
    # event 3: watermark 200, cutoff 100: event 0 is gone, event 1 stays
    assert_same(compute(s, feats, rows, retention_ms=100)[:, 0], [0, 1, 2, 2])
    assert_same(compute(s, feats, rows, retention_ms=99)[:, 0], [0, 1, 1, 1])
    # the watermark is moved by any entity's events: card 1 is forgotten (cold start)
    s2 = schema_of(entities=[("card", True)])
    rows2 = [{"t": 0, "card": 1}, {"t": 500, "card": 2}, {"t": 500, "card": 1}]
    out = compute(s2, feats, rows2, retention_ms=400)
    assert_same(out[2], [0, NAN])
    assert_same(compute(s2, feats, rows2, retention_ms=500)[2], [1, 0.5])


def test_retention_by_count():
    s = schema_of(entities=[("card", True), ("device", True)])
    feats = [{"kind": "window", "entity": "card", "agg": "count", "window_ms": 10_000},
             {"kind": "window", "entity": "device", "agg": "count", "window_ms": 10_000}]
    rows = [{"t": 0, "card": 1, "device": 7}, {"t": 10, "card": 1, "device": 8},
            {"t": 20, "card": 1, "device": 7}, {"t": 30, "card": 1, "device": 7}]
    out = compute(s, feats, rows, max_history_per_entity=2)
    assert_same(out[:, 0], [0, 1, 2, 2])
    # per entity: device 7 keeps events 0 and 2 although card 1 dropped event 0
    assert_same(out[:, 1], [0, 0, 1, 2])
    # the cap counts ties in ingest order: three events at t=10 push out everything before
    rows = [{"t": 0, "card": 1, "device": 1}, {"t": 10, "card": 1, "device": 2},
            {"t": 10, "card": 1, "device": 3}, {"t": 10, "card": 1, "device": 4}]
    assert_same(compute(s, feats, rows, max_history_per_entity=2)[:, 0], [0, 1, 1, 0])
    assert_same(compute(s, feats, rows, max_history_per_entity=3)[:, 0], [0, 1, 1, 1])
    # both rules together
    rows = [{"t": k * 100, "card": 1, "device": k} for k in range(5)]
    assert_same(compute(s, feats, rows, retention_ms=150, max_history_per_entity=3)[:, 0],
                [0, 1, 2, 2, 2])
    assert_same(compute(s, feats, rows, retention_ms=1000, max_history_per_entity=1)[:, 0],
                [0, 1, 1, 1, 1])


# --- a naive recomputation on random streams --------------------------------------------------

def naive_features(schema, spec, events, labels):
    """Loop-by-loop, one stored event at a time, statistics.stdev for std; no retention; only the
    history-based kinds."""
    ents = {e["name"]: k for k, e in enumerate(schema["entities"])}
    nums = {x["name"]: k for k, x in enumerate(schema["numeric"])}
    cats = {x["name"]: k for k, x in enumerate(schema["categorical"])}
    n = len(events)
    lab = {int(e): (int(v), int(t)) for e, v, t in
           zip(labels.event_id, labels.label, labels.label_time_ms)}

    def field(j, name):
        return float(events.amount[j]) if name == "amount" else float(events.numeric[j, nums[name]])

    def of(j, o):
        return int(events.entity_id[j, ents[o["entity"]]]) if "entity" in o else \
            int(events.categorical[j, cats[o["categorical"]]])

    def passes(j, flt):
        if "in" in flt:
            c = int(events.categorical[j, cats[flt["field"]]])
            return c != -1 and c in flt["in"]
        x = field(j, flt["field"])
        if math.isnan(x):
            return False
        return {"<": x < flt["value"], "<=": x <= flt["value"], ">": x > flt["value"],
                ">=": x >= flt["value"], "==": x == flt["value"], "!=": x != flt["value"]}[flt["op"]]

    out = {}
    for k, f in enumerate(spec["features"]):
        if f["kind"] not in ("window", "label", "distinct", "novelty", "changed", "time_since_last",
                             "amount_vs_history"):
            continue
        scan = f.get("max_scan", spec["max_scan"])
        col = []
        for i in range(n):
            t = int(events.time_ms[i])
            x = int(events.entity_id[i, ents[f["entity"]]])
            if x == -1:
                col.append(NAN)
                continue
            hist = [j for j in range(i) if int(events.entity_id[j, ents[f["entity"]]]) == x
                    and int(events.time_ms[j]) < t]
            lo = t - f.get("offset_ms", 0) - f.get("window_ms", 0)
            hi = t - f.get("offset_ms", 0)
            win = [j for j in hist if lo <= int(events.time_ms[j]) < hi]
            kind = f["kind"]
            if kind == "amount_vs_history":
                v = field(i, f["field"])
                vals = [field(j, f["field"]) for j in (win if f["window_ms"] > 0 else hist)]
                vals = [x for x in vals if not math.isnan(x)]
                total = 0.0
                for x in vals:
                    total += x
                if math.isnan(v) or not vals or (f["stat"] == "zscore" and len(vals) < 2):
                    col.append(NAN)
                elif f["stat"] == "ratio_to_mean":
                    mean = total / len(vals)
                    col.append(v / mean if mean != 0 else NAN)
                else:
                    mean, std = total / len(vals), statistics.stdev(vals)
                    col.append(NAN if std <= 1e-6 * abs(mean) else (v - mean) / std)
            elif kind == "time_since_last":
                col.append((t - int(events.time_ms[hist[-1]])) / 1000.0 if hist else NAN)
            elif kind == "changed":
                col.append(NAN if not hist else float(of(hist[-1], f["of"]) != of(i, f["of"])))
            elif kind == "novelty":
                v = of(i, f["of"])
                col.append(NAN if not hist or v == -1 else
                           float(all(of(j, f["of"]) != v for j in hist[-scan:])))
            elif kind == "distinct":
                col.append(float(len({of(j, f["of"]) for j in win[-scan:]} - {-1})))
            elif kind == "label":
                w = win[-scan:]
                known = [j for j in w if int(events.event_id[j]) in lab
                         and lab[int(events.event_id[j])][1] < t]
                fraud = sum(1 for j in known if lab[int(events.event_id[j])][0] == 1)
                col.append({"fraud_count": fraud, "labelled_count": len(known),
                            "fraud_rate": fraud / len(w) if w else NAN}[f["agg"]])
            else:  # window
                if f.get("filter"):
                    win = [j for j in win[-scan:] if passes(j, f["filter"])]
                if f["agg"] == "count":
                    col.append(float(len(win)))
                    continue
                vals = [field(j, f["field"]) for j in win]
                vals = [v for v in vals if not math.isnan(v)]
                total = 0.0
                for v in vals:
                    total += v
                col.append({"sum": lambda: total,
                            "mean": lambda: total / len(vals) if vals else NAN,
                            "min": lambda: min(vals) if vals else NAN,
                            "max": lambda: max(vals) if vals else NAN,
                            "std": lambda: statistics.stdev(vals) if len(vals) >= 2 else NAN,
                            }[f["agg"]]())
        out[k] = np.asarray(col, dtype=np.float64)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_reference_matches_a_naive_loop(seed):
    schema, spec, events, labels = random_case(1000 + seed, n_range=(150, 300))
    ref = reference_features(schema, spec, events, labels)
    naive = naive_features(schema, spec, events, labels)
    assert naive, "no history-based feature in this spec"
    with np.errstate(over="ignore"):
        for k, col in naive.items():
            f = spec["features"][k]
            expected = np.clip(col, -FLT_MAX, FLT_MAX).astype(np.float32)  # saturated, never inf
            if (f["kind"], f.get("agg", f.get("stat"))) in (("window", "std"),
                                                            ("amount_vs_history", "zscore")):
                # statistics.stdev is exact (Fractions) then rounded: compare within 1e-6
                a, e = ref[:, k].astype(np.float64), expected.astype(np.float64)
                assert np.array_equal(np.isnan(a), np.isnan(e)), f
                fin = np.isfinite(e)
                assert np.array_equal(a[~fin & ~np.isnan(e)], e[~fin & ~np.isnan(e)]), f
                assert np.all(np.abs(a[fin] - e[fin]) <= 1e-6 * np.maximum(1, np.abs(e[fin]))), f
            else:  # == : min/max may pick either of 0.0 and -0.0
                bad = ~((np.isnan(ref[:, k]) & np.isnan(expected)) | (ref[:, k] == expected))
                assert not np.any(bad), (f, np.flatnonzero(bad)[:5])


# --- the random generators --------------------------------------------------------------------

def test_random_generators_are_deterministic_and_well_formed():
    kinds_seen = set()
    for seed in range(25):
        a = random_case(seed, n_range=(100, 400))
        b = random_case(seed, n_range=(100, 400))
        assert json.dumps(a[0]) == json.dumps(b[0]) and json.dumps(a[1]) == json.dumps(b[1])
        for x, y in zip(a[2].args() + a[3].args(), b[2].args() + b[3].args()):
            assert np.array_equal(x, y, equal_nan=True)
        schema, spec, events, labels = a
        json.loads(json.dumps(schema)), json.loads(json.dumps(spec))  # plain JSON
        assert 1 <= len(schema["entities"]) <= 8
        assert len(schema["numeric"]) <= 3 and len(schema["categorical"]) <= 3
        names = [e["name"] for e in schema["entities"]] + [x["name"] for x in schema["numeric"]] + \
            [x["name"] for x in schema["categorical"]]
        assert len(set(names)) == len(names)
        offsets = schema["time"]["utc_offsets"]
        assert offsets[0][0] == INT64_MIN and [o[0] for o in offsets] == sorted(o[0] for o in offsets)
        t = events.time_ms
        assert np.all(np.diff(t) >= 0)
        assert len(np.unique(events.event_id)) == len(events) and np.all(events.event_id >= 0)
        for k, e in enumerate(schema["entities"]):
            assert np.all(events.entity_id[:, k] >= -1)
            if e["required"]:
                assert np.all(events.entity_id[:, k] >= 0)
        assert np.all(events.categorical >= -1)
        assert not np.any(np.isinf(events.numeric)) and np.all(np.isfinite(events.amount))
        assert np.all(events.amount >= 0)
        if schema["amount"] is None:
            assert np.all(events.amount == 0)
        row = {int(x): i for i, x in enumerate(events.event_id)}
        assert len(set(labels.event_id.tolist())) == len(labels)
        for eid, lt in zip(labels.event_id.tolist(), labels.label_time_ms.tolist()):
            assert lt >= t[row[eid]]
        assert set(np.unique(labels.label).tolist()) <= {0, 1}
        names = [f["name"] for f in spec["features"]]
        assert len(set(names)) == len(names)
        for f in spec["features"]:
            kinds_seen.add(f["kind"])
            if f["kind"] in ("window", "distinct", "label"):
                assert f["window_ms"] > 0
            if schema["amount"] is None:
                assert f["kind"] not in ("amount", "log_amount") and f.get("field") != "amount"
                assert (f.get("filter") or {}).get("field") != "amount"
        out = reference_features(schema, spec, events, labels)
        assert out.shape == (len(events), len(spec["features"])) and out.dtype == np.float32
        assert json.dumps(spec) == json.dumps(b[1])  # the reference does not mutate the spec
    assert kinds_seen == {"amount", "log_amount", "numeric", "categorical", "calendar", "window",
                          "time_since_last", "amount_vs_history", "distinct", "novelty", "changed",
                          "label"}


def test_random_streams_reach_the_edges():
    """Across a few seeds the streams hold what the comparison needs to be meaningful."""
    ties = absent = nan = huge = big_codes = label_at_event = far_labels = early = offsets = 0
    for seed in range(20):
        schema, spec, events, labels = random_case(seed, n_range=(300, 600))
        ties += int(np.sum(np.diff(events.time_ms) == 0))
        absent += int(np.sum(events.entity_id == -1))
        nan += int(np.sum(np.isnan(events.numeric)))
        huge += int(np.sum(events.amount == 1e200) + np.sum(np.abs(events.numeric) == 1e200))
        big_codes += int(np.sum(events.categorical > 2 ** 53))
        times = set(events.time_ms.tolist())
        label_at_event += sum(1 for lt in labels.label_time_ms.tolist() if lt in times)
        far_labels += int(np.sum(labels.label_time_ms > events.time_ms[-1]))
        early += int(events.time_ms[0] < 0)
        offsets += int(len(schema["time"]["utc_offsets"]) > 1)
    for name, v in dict(ties=ties, absent=absent, nan=nan, huge=huge, big_codes=big_codes,
                        label_at_event=label_at_event, far_labels=far_labels, early=early,
                        offsets=offsets).items():
        assert v > 0, name


def test_feature_is_exact():
    assert feature_is_exact({"kind": "window", "agg": "count"})
    assert not feature_is_exact({"kind": "window", "agg": "sum"})
    assert feature_is_exact({"kind": "label", "agg": "fraud_count"})
    assert not feature_is_exact({"kind": "label", "agg": "fraud_rate"})
    assert feature_is_exact({"kind": "calendar"}) and not feature_is_exact({"kind": "log_amount"})


def test_reference_is_pure():
    """Same inputs, same outputs; the inputs are not modified."""
    schema, spec, events, labels = random_case(77, n=200)
    before = copy.deepcopy((schema, spec))
    a = reference_features(schema, spec, events, labels, retention_ms=DAY, max_history_per_entity=5)
    b = reference_features(schema, spec, events, labels, retention_ms=DAY, max_history_per_entity=5)
    assert same(a, b) and (schema, spec) == before
    # retention only ever removes history: with a huge retention nothing changes
    assert same(reference_features(schema, spec, events, labels, retention_ms=10 ** 15),
                reference_features(schema, spec, events, labels))
    # the generators are usable piecemeal too
    rng = np.random.default_rng(5)
    s = random_schema(rng, n_entities=3)
    assert len(s["entities"]) == 3
    ev = random_events(rng, s, 50)
    assert len(random_labels(rng, ev).event_id) <= 50 and random_spec(rng, s)["features"]


def test_categorical_code_is_rounded_through_double():
    """SCHEMA.md: computed in double, output as float32. 2**60 + 2**36 + 1 rounds to 2**60 that
    way; rounded straight from int64 to float32 it would be 2**60 + 2**37."""
    s = schema_of(categorical=["c"])
    out = compute(s, [{"kind": "categorical", "field": "c"}],
                  [{"t": 0, "card": 1, "c": 2 ** 60 + 2 ** 36 + 1}])
    assert int(out[0, 0]) == 2 ** 60
