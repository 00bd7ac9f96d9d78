"""Point-in-time features of the payments world: the C++ store + feature plan against a brute-force
reference, the golden file of the pre-generic core, labels, validation and the array contract.

The payments world is the `payments` preset (python/libfraud/presets/payments.toml): schema card,
device (optional), merchant, ip (optional), categoricals country and mcc, and the 44 features the
core has always computed. It goes through the generic path (`_core.Store(schema_json, spec_json)`,
columnar arrays of libfraud.events). The reference below is the legacy one, written for clarity, not
speed: for each event it looks at every stored row of the same entity with an earlier time.
Tolerance: float32 output of double sums, so rtol 1e-4 (plus atol 1e-5 for values near 0, such as
z-scores). The generic engine against its own reference (every kind, random schemas) is
tests/test_feature_plan.py.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from libfraud import _core
from libfraud.data.declared import FeatureSpec, load_events, load_preset, window_label as py_window_label
from libfraud.events import EventArrays, LabelArrays
from libfraud.features import make_store as make_declared_store, replay, replay_features

ENTITIES = ["card", "device", "merchant", "ip"]
CARD, DEVICE, MERCHANT, IP = range(4)
COUNTRY, MCC = range(2)  # the payments schema's categoricals, in order
HOUR = 3_600_000
DAY = 24 * HOUR
INT64_MIN = -(2 ** 63)
RTOL, ATOL = 1e-4, 1e-5
GOLDEN = Path(__file__).parent / "golden" / "payments_features_v1.npz"

PRESET_SCHEMA, PRESET_SPEC = load_preset("payments")
SCHEMA = PRESET_SCHEMA.to_json()
NO_LABELS = LabelArrays.make([], [], [])


def window_label(ms):
    if ms >= 2 * DAY and ms % DAY == 0:
        return f"{ms // DAY}d"
    for unit, suffix in ((HOUR, "h"), (60_000, "m"), (1000, "s")):
        if ms % unit == 0:
            return f"{ms // unit}{suffix}"
    return f"{ms}ms"


def reference_names(windows, dw):
    names = ["amount", "log_amount", "hour_of_day", "country", "mcc"]
    for e in ENTITIES:
        for w in windows:
            names += [f"{e}_count_{window_label(w)}", f"{e}_amount_sum_{window_label(w)}"]
    names += [f"{e}_seconds_since_last" for e in ENTITIES]
    names += ["card_amount_ratio_to_mean", "card_amount_zscore", "merchant_amount_ratio_to_mean"]
    d = window_label(dw)
    names += [
        f"card_distinct_devices_{d}",
        f"card_distinct_ips_{d}",
        f"device_distinct_cards_{d}",
        f"ip_distinct_cards_{d}",
    ]
    names += ["card_device_is_new", "card_ip_is_new", "card_mcc_is_new", "card_country_changed"]
    return names


def payments_spec(windows_ms, distinct_window_ms, max_scan):
    """The legacy FeatureConfig(windows_ms, distinct_window_ms, max_scan) as a feature spec (JSON):
    the payments preset's 44 features with other windows."""
    feats = [{"kind": "amount"}, {"kind": "log_amount"}, {"kind": "calendar", "part": "hour"},
             {"kind": "categorical", "field": "country"}, {"kind": "categorical", "field": "mcc"}]
    for e in ENTITIES:
        for w in windows_ms:
            feats += [{"kind": "window", "entity": e, "agg": "count", "window_ms": w},
                      {"kind": "window", "entity": e, "agg": "sum", "field": "amount", "window_ms": w}]
    feats += [{"kind": "time_since_last", "entity": e} for e in ENTITIES]
    feats += [{"kind": "amount_vs_history", "entity": e, "field": "amount", "stat": s, "window_ms": 0}
              for e, s in (("card", "ratio_to_mean"), ("card", "zscore"), ("merchant", "ratio_to_mean"))]
    feats += [{"kind": "distinct", "entity": e, "of": {"entity": o}, "window_ms": distinct_window_ms}
              for e, o in (("card", "device"), ("card", "ip"), ("device", "card"), ("ip", "card"))]
    feats += [{"kind": "novelty", "entity": "card", "of": of}
              for of in ({"entity": "device"}, {"entity": "ip"}, {"categorical": "mcc"})]
    feats += [{"kind": "changed", "entity": "card", "of": {"categorical": "country"}}]
    names = reference_names(windows_ms, distinct_window_ms)
    assert len(feats) == len(names) == 20 + 8 * len(windows_ms)
    return {"format": "libfraud-features", "version": 1, "max_scan": max_scan,
            "features": [{"name": n, **f} for n, f in zip(names, feats)]}


def reference_features(stored, queries, windows, dw, max_scan):
    """Features of each query event against the events in `stored` (in append order)."""
    nan = math.nan
    rows = [(int(stored.time_ms[i]), float(stored.amount[i]), [int(x) for x in stored.entity_id[i]],
             int(stored.categorical[i, COUNTRY]), int(stored.categorical[i, MCC]))
            for i in range(len(stored))]
    T, AMOUNT, IDS, CTRY, MCC_ = range(5)
    out = []
    for qi in range(len(queries)):
        t = int(queries.time_ms[qi])
        amount = float(queries.amount[qi])
        ids = [int(x) for x in queries.entity_id[qi]]
        country, mcc = int(queries.categorical[qi, COUNTRY]), int(queries.categorical[qi, MCC])
        # Each entity's history: stored rows with the same id and time < t, in append order.
        hist = []
        for e in range(4):
            if ids[e] < 0:
                hist.append(None)
            else:
                hist.append([r for r in rows if r[IDS][e] == ids[e] and r[T] < t])
        row = [amount, math.log1p(amount), (t // HOUR) % 24, country, mcc]
        for e in range(4):
            for w in windows:
                if hist[e] is None:
                    row += [nan, nan]
                else:
                    inside = [r for r in hist[e] if t - w <= r[T] < t]
                    row += [len(inside), sum(r[AMOUNT] for r in inside)]
        for e in range(4):
            if not hist[e]:
                row.append(nan)
            else:
                row.append((t - max(r[T] for r in hist[e])) / 1000.0)

        def ratio_to_mean(h):
            if not h:
                return nan
            mean = np.mean([r[AMOUNT] for r in h])  # amount 0 is valid: a zero mean has no ratio
            return nan if mean == 0 else float(np.float64(amount) / mean)

        card = hist[CARD]
        row.append(ratio_to_mean(card))
        if card is not None and len(card) >= 2:
            amounts = np.array([r[AMOUNT] for r in card])
            mean, std = amounts.mean(), amounts.std(ddof=1)
            row.append((amount - mean) / std if std > 1e-6 * abs(mean) else nan)
        else:
            row.append(nan)
        row.append(ratio_to_mean(hist[MERCHANT]))

        def distinct(owner, other):
            h = hist[owner]
            if h is None:
                return nan
            recent = h[-max_scan:]
            return len({r[IDS][other] for r in recent if r[T] >= t - dw and r[IDS][other] >= 0})

        row += [distinct(CARD, DEVICE), distinct(CARD, IP), distinct(DEVICE, CARD), distinct(IP, CARD)]
        recent_card = card[-max_scan:] if card else []

        def is_new(e):
            if ids[e] < 0 or not card:
                return nan
            return float(all(r[IDS][e] != ids[e] for r in recent_card))

        row += [is_new(DEVICE), is_new(IP)]
        if not card:
            row += [nan, nan]
        else:
            row.append(float(all(r[MCC_] != mcc for r in recent_card)))
            row.append(float(card[-1][CTRY] != country))
        out.append(row)
    limit = float(np.finfo(np.float32).max)  # features saturate there, never +-inf (SCHEMA.md)
    return np.clip(np.array(out, dtype=np.float64).reshape(len(queries), -1), -limit, limit)


def payments_events(event_id, time_ms, amount, entity_id, country, mcc):
    return EventArrays.make(event_id, time_ms, amount, entity_id,
                            categorical=np.stack([np.asarray(country, np.int64),
                                                  np.asarray(mcc, np.int64)], axis=1))


def concat(*parts):
    return EventArrays.make(*(np.concatenate([getattr(p, k) for p in parts])
                              for k in ("event_id", "time_ms", "amount", "entity_id", "numeric",
                                        "categorical")))


def random_stream(seed, n=600):
    """Time-sorted transactions with many ties and exact window-edge gaps.

    Most timestamps sit on a 30-minute grid, so gaps of exactly 1h, 24h and 7d (window edges) and
    equal timestamps are common; the rest get a random millisecond offset.
    """
    rng = np.random.default_rng(seed)
    base = 1_700_000_000_000 - (1_700_000_000_000 % DAY)
    slots = np.sort(rng.integers(0, 20 * 48, n))
    ts = base + slots * (HOUR // 2)
    jitter = rng.random(n) < 0.3
    ts = np.where(jitter, ts + rng.integers(1, HOUR // 2, n), ts)
    ts = np.sort(ts)
    amounts = np.round(rng.lognormal(3.5, 1.2, n), 2)
    # A few cards pay the same whole amount every time: their std is exactly 0.
    cards = rng.zipf(1.6, n) % 40
    constant = cards < 3
    amounts = np.where(constant, 25.0 * (cards + 1), amounts)
    # Amount 0 is valid now (it was refused by the pre-generic core): card 3 always pays 0 (its
    # ratio to mean is 0 / 0 = NaN), and a few payments of other cards (not the constant ones).
    amounts = np.where((cards == 3) | ((cards > 3) & (rng.random(n) < 0.03)), 0.0, amounts)
    singletons = 1_000_000 + np.arange(n)  # entities seen once
    entity_id = np.zeros((n, 4), np.int64)
    entity_id[:, CARD] = np.where(rng.random(n) < 0.1, singletons, cards)
    dev = rng.integers(0, 60, n)
    dev = np.where(rng.random(n) < 0.25, -1, dev)
    entity_id[:, DEVICE] = np.where(rng.random(n) < 0.1, singletons, dev)
    entity_id[:, MERCHANT] = rng.integers(0, 25, n)
    ip = rng.integers(0, 80, n)
    entity_id[:, IP] = np.where(rng.random(n) < 0.3, -1, ip)
    country = rng.choice([840, 826, 276, 1, 999], n, p=[0.7, 0.1, 0.1, 0.05, 0.05])
    mcc = rng.choice([5411, 5812, 5999, 0, 9999, 4829], n)
    return payments_events(rng.permutation(n) * 7 + 1000, ts, amounts, entity_id, country, mcc)


CONFIGS = {
    "default": dict(windows_ms=[HOUR, DAY, 7 * DAY], distinct_window_ms=DAY, max_scan=1024),
    "tight": dict(windows_ms=[1500, HOUR // 2, 2 * HOUR], distinct_window_ms=3 * HOUR, max_scan=3),
}
SPEC = payments_spec(**CONFIGS["default"])


def make_store(cfg=None, **kw):
    spec = SPEC if cfg is None else payments_spec(**cfg)
    return _core.Store(json.dumps(SCHEMA), json.dumps(spec), **kw)


def assert_features_match(got, want, names):
    assert got.dtype == np.float32 and got.shape == want.shape
    for j, name in enumerate(names):
        g, w = got[:, j].astype(np.float64), want[:, j]
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"NaN pattern of {name}")
        ok = ~np.isnan(w)
        np.testing.assert_allclose(g[ok], w[ok], rtol=RTOL, atol=ATOL, err_msg=name)


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype == np.float32 and \
        np.array_equal(a.view(np.uint32), b.view(np.uint32))


# --- the legacy features, through the generic path ---------------------------------------------

def test_payments_preset_is_the_legacy_feature_config():
    assert FeatureSpec(tuple(SPEC["features"]), SPEC["max_scan"]).to_json() == PRESET_SPEC.to_json()
    assert PRESET_SCHEMA.entity_names == ENTITIES
    assert [c.name for c in PRESET_SCHEMA.categorical] == ["country", "mcc"]
    assert [e.required for e in PRESET_SCHEMA.entities] == [True, False, True, False]


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference(seed, config_name):
    cfg = CONFIGS[config_name]
    stream = random_stream(seed)
    store = make_store(cfg, expected_events=len(stream))
    got = store.features_and_ingest(*stream.args())
    want = reference_features(stream, stream, cfg["windows_ms"], cfg["distinct_window_ms"], cfg["max_scan"])
    assert store.feature_names == reference_names(cfg["windows_ms"], cfg["distinct_window_ms"])
    assert_features_match(got, want, store.feature_names)
    # The stream must really exercise the edges it claims to.
    ts = stream.time_ms
    assert (np.diff(ts) == 0).sum() > 50, "equal timestamps"
    gaps = ts[:, None] - ts[None, :]
    for w in cfg["windows_ms"][1:]:
        assert (gaps == w).any(), f"an event exactly at t - {w}"
    assert np.isnan(got[:, store.feature_names.index("device_count_1h" if config_name == "default" else "device_count_1500ms")]).any()
    assert (got[:, store.feature_names.index("card_amount_zscore")] != 0).any()
    assert (stream.amount == 0).any() and (got[:, 0] == 0).any(), "amount 0"
    assert np.isnan(got[stream.entity_id[:, CARD] == 3, store.feature_names.index("card_amount_ratio_to_mean")]).any()


def golden():
    d = np.load(GOLDEN, allow_pickle=False)
    cols = ["txn_id", "timestamp_ms", "amount", "card_id", "device_id", "merchant_id", "ip_id",
            "country", "mcc"]
    return pd.DataFrame({c: d[c] for c in cols}), d["features"], [str(x) for x in d["names"]]


def test_payments_preset_reproduces_the_legacy_core_bitwise():
    """tests/golden/payments_features_v1.npz: 20 000 generated transactions and the 44 features the
    pre-generic core (fixed transaction layout, FeatureConfig()) computed for them. The payments
    preset through load_events and the generic store gives the same float32 bits, NaN included."""
    df, want, names = golden()
    assert want.dtype == np.float32 and want.shape == (len(df), 44)
    assert (df["device_id"] < 0).any() and (df["ip_id"] < 0).any(), "absent devices and ips"
    schema, spec = load_preset("payments", df.columns)
    events, labels = load_events(df, schema)
    assert labels is None  # the golden inputs have no label column
    got = replay(events, None, schema, spec)
    assert got.names == names
    assert got.features.dtype == np.float32 and got.features.shape == want.shape
    bad = [f"{names[j]}: {int(np.sum(got.features[:, j].view(np.uint32) != want[:, j].view(np.uint32)))} rows"
           for j in range(44)
           if not np.array_equal(got.features[:, j].view(np.uint32), want[:, j].view(np.uint32))]
    assert not bad, "columns that differ from the legacy core: " + ", ".join(bad)
    # The other entry points agree: features_and_ingest, and the one-call DataFrame path.
    store = make_declared_store(schema, spec, expected_events=len(events))
    assert same_bits(store.features_and_ingest(*events.args()), want)
    frame = replay_features(df)
    assert list(frame.columns) == names
    assert same_bits(np.ascontiguousarray(frame.to_numpy(np.float32)), want)


@pytest.mark.parametrize("seed", [0, 5])
def test_replay_equals_one_by_one_and_scoring_in_the_past(seed):
    stream = random_stream(seed, n=400)
    batch = make_store()
    replayed = batch.features_and_ingest(*stream.args())
    single = make_store()
    rows = [single.features_and_ingest(*stream.slice(i, i + 1).args()) for i in range(len(stream))]
    np.testing.assert_array_equal(replayed, np.concatenate(rows))
    # A store that already holds the whole stream sees only each transaction's strict past.
    np.testing.assert_array_equal(batch.features(*stream.args()), replayed)
    ingested = make_store()
    ingested.ingest(*stream.args())
    np.testing.assert_array_equal(ingested.features(*stream.args()), replayed)
    # replay() without labels is features_and_ingest().
    np.testing.assert_array_equal(make_store().replay(*stream.args(), *NO_LABELS.args()), replayed)


@pytest.mark.parametrize("seed", [0, 7])
def test_no_future_leakage(seed):
    stream = random_stream(seed, n=500)
    later = random_stream(seed + 100, n=300)
    shift = int(stream.time_ms[-1]) - int(later.time_ms[0])  # ties the last
    later = EventArrays.make(later.event_id + 10_000_000, later.time_ms + shift, later.amount,
                             later.entity_id, later.numeric, later.categorical)
    prefix = make_store().features_and_ingest(*stream.args())
    full = make_store().features_and_ingest(*concat(stream, later).args())
    np.testing.assert_array_equal(full[: len(stream)], prefix)


def test_features_does_not_change_the_store():
    stream = random_stream(11, n=300)
    store = make_store()
    store.ingest(*stream.slice(0, 200).args())
    before = store.features(*stream.args())
    size, wm = store.size, store.watermark_ms
    store.features(*stream.slice(200, 300).args())  # later than the watermark, not stored
    assert (store.size, store.watermark_ms) == (size, wm)
    np.testing.assert_array_equal(store.features(*stream.args()), before)


# --- no poisoning by a huge value ----------------------------------------------------------------

@pytest.mark.parametrize("huge", [1e17, 1e200])
def test_a_huge_amount_does_not_poison_later_windows_or_zscores(huge):
    """One huge amount, then many small ones on the same card (more than a history block, 64, so
    the block aggregates are used): once the huge one has left a window, that window's sum is the
    exact sum of the small ones in it (the small amounts are multiples of 1/4, so every partial sum
    is exact in any order; against a running sum that included 1e17 they would be lost: its ulp is
    16), and z-scores stay finite, even against a whole history that holds the huge one.
    (tests/test_feature_plan.py has the few-event version for window sum/mean.)"""
    n = 400
    minute = 60_000
    time_ms = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * minute  # 1 per minute
    rng = np.random.default_rng(3)
    amount = rng.integers(1, 400, n) / 4.0
    amount[0] = huge
    ids = np.tile([5, -1, 9, -1], (n, 1))
    events = payments_events(np.arange(n), time_ms, amount, ids, np.full(n, 840), np.full(n, 5411))
    spec = dict(SPEC)
    spec["features"] = SPEC["features"] + [
        {"name": "card_amount_zscore_2h", "kind": "amount_vs_history", "entity": "card",
         "field": "amount", "stat": "zscore", "window_ms": 2 * HOUR},
        {"name": "card_amount_mean_1h", "kind": "window", "entity": "card", "agg": "mean",
         "field": "amount", "window_ms": HOUR},
        {"name": "card_amount_std_1h", "kind": "window", "entity": "card", "agg": "std",
         "field": "amount", "window_ms": HOUR}]
    store = make_declared_store(SCHEMA, spec)
    got = store.features_and_ingest(*events.args())
    col = {name: j for j, name in enumerate(store.feature_names)}
    for name, w in (("card_amount_sum_1h", HOUR), ("merchant_amount_sum_1h", HOUR),
                    ("card_amount_sum_24h", DAY)):
        for i in range(n):
            inside = [j for j in range(i) if time_ms[i] - w <= time_ms[j]]
            if 0 in inside:
                if huge > 3.4e38:  # saturated, not +inf (SCHEMA.md)
                    assert got[i, col[name]] == np.finfo(np.float32).max, (name, i)
                continue
            want = np.float32(sum(amount[j] for j in inside))  # exact: multiples of 1/4, small
            assert got[i, col[name]] == want, (name, i, got[i, col[name]], want)
    after = time_ms >= time_ms[0] + HOUR + 1  # rows whose 1h window no longer holds the huge one
    assert after.sum() > 300
    mean = got[after, col["card_amount_mean_1h"]]
    assert np.all(np.isfinite(mean)) and np.all(mean < 100)
    assert np.all(np.isfinite(got[after, col["card_amount_std_1h"]]))
    z2h = got[time_ms >= time_ms[0] + 2 * HOUR + 1, col["card_amount_zscore_2h"]]
    assert np.all(np.isfinite(z2h)) and np.all(np.abs(z2h) < 10)
    # The whole-history z-score keeps the huge amount in its history: finite, and near
    # (small - huge / n) / (huge / sqrt(n)) ~ -1 / sqrt(n).
    z = got[2:, col["card_amount_zscore"]]
    assert np.all(np.isfinite(z)), z[~np.isfinite(z)]
    k = np.arange(2, n)  # history sizes
    np.testing.assert_allclose(z, -1 / np.sqrt(k), rtol=0.02)
    ratio = got[1:, col["card_amount_ratio_to_mean"]]
    assert np.all(np.isfinite(ratio)) and np.all(ratio >= 0)


# --- labels through the store ------------------------------------------------------------------

def label_spec():
    spec = dict(SPEC)
    spec["features"] = SPEC["features"] + [
        {"name": f"card_{a}_7d", "kind": "label", "entity": "card", "agg": a, "window_ms": 7 * DAY,
         "offset_ms": 0} for a in ("fraud_count", "labelled_count", "fraud_rate")]
    return spec


def labelled_store():
    """Four events of card 1, events 1 and 2 labelled (1 fraud from 1500, 2 legitimate from 2500)."""
    store = make_declared_store(SCHEMA, label_spec())
    events = payments_events([1, 2, 3, 4], [1000, 2000, 3000, 4000], [5.0, 6.0, 7.0, 8.0],
                             [[1, -1, 2, -1]] * 4, [840] * 4, [5411] * 4)
    store.ingest(*events.args())
    store.label(*LabelArrays.make([1, 2], [1, 0], [1500, 2500]).args())
    return store


PROBE = payments_events([99], [10_000], [1.0], [[1, -1, 2, -1]], [840], [5411])


def label_columns(store, probe=PROBE):
    return store.features(*probe.args())[0, -3:]


@pytest.mark.parametrize("ids, values, times, status, words", [
    ([3, 2], [1, 1], [3000, 2600], "FRAUD_STATUS_LABEL_CONFLICT",
     "label 1 (event_id=2): label 1 differs from the stored label 0"),
    ([3, 3], [1, 0], [3000, 3000], "FRAUD_STATUS_LABEL_CONFLICT",
     "label 1 (event_id=3): label 0 differs from label 0 of the batch"),
    ([3, 77], [1, 1], [3000, 3000], "FRAUD_STATUS_UNKNOWN_EVENT",
     "label 1 (event_id=77): no such event in the store (never ingested, or evicted)"),
    ([3, 4], [1, 1], [3000, 3999], "FRAUD_STATUS_INVALID_LABEL",
     "label 1 (event_id=4): label_time_ms 3999 is before the event's time_ms 4000"),
    ([3, 4], [1, 2], [3000, 4000], "FRAUD_STATUS_INVALID_LABEL",
     "label 1 (event_id=4): label: must be 0 or 1, got 2"),
])
def test_bad_labels_change_nothing(ids, values, times, status, words):
    store = labelled_store()
    before = label_columns(store)
    np.testing.assert_array_equal(before, [1, 2, 0.25])
    with pytest.raises(_core.FraudError) as e:
        store.label(*LabelArrays.make(ids, values, times).args())
    assert e.value.status == status
    assert words in str(e.value)
    # All or nothing: label 0 of the batch (valid on its own) was not applied either.
    assert store.labelled == 2
    np.testing.assert_array_equal(label_columns(store), before)
    store.label(*LabelArrays.make([3], [1], [3000]).args())  # and the store still takes labels
    np.testing.assert_array_equal(label_columns(store), [2, 3, 0.5])


def test_labels_count_from_their_label_time_and_repeat_as_no_ops():
    store = labelled_store()
    at = lambda t: payments_events([99], [t], [1.0], [[1, -1, 2, -1]], [840], [5411])  # noqa: E731
    np.testing.assert_array_equal(label_columns(store, at(1500)), [0, 0, 0])  # known at 1500: not yet
    np.testing.assert_array_equal(label_columns(store, at(1501)), [1, 1, 1])
    np.testing.assert_array_equal(label_columns(store, at(2501)), [1, 2, 0.5])
    # The same label again is a no-op that keeps the first time (2500, not 2200).
    store.label(*LabelArrays.make([2, 1], [0, 1], [2200, 9000]).args())
    assert store.labelled == 2
    np.testing.assert_array_equal(label_columns(store, at(2300)), [1, 1, 0.5])
    np.testing.assert_array_equal(label_columns(store, at(9001)), [1, 2, 0.25])


@pytest.mark.parametrize("labels, status, words", [
    (([2, 2], [1, 0], [2000, 2000]), "FRAUD_STATUS_LABEL_CONFLICT", "two different labels for one event"),
    (([2], [1], [1999]), "FRAUD_STATUS_INVALID_LABEL", "label_time_ms 1999 is before the event's time_ms 2000"),
    (([555], [1], [1999]), "FRAUD_STATUS_UNKNOWN_EVENT", "(event_id=555): no such event in the store"),
    (([2], [3], [2000]), "FRAUD_STATUS_INVALID_LABEL", "label: must be 0 or 1, got 3"),
])
def test_replay_with_bad_labels_changes_nothing(labels, status, words):
    store = make_declared_store(SCHEMA, label_spec())
    first = payments_events([1], [1000], [5.0], [[1, -1, 2, -1]], [840], [5411])
    store.ingest(*first.args())
    events = payments_events([2, 3], [2000, 3000], [5.0, 6.0], [[1, -1, 2, -1]] * 2, [840] * 2, [5411] * 2)
    with pytest.raises(_core.FraudError) as e:
        store.replay(*events.args(), *LabelArrays.make(*labels).args())
    assert e.value.status == status
    assert words in str(e.value)
    assert (store.size, store.watermark_ms, store.labelled) == (1, 1000, 0)
    np.testing.assert_array_equal(label_columns(store), [0, 0, 0])


def test_replay_names_a_bad_label_by_its_index():
    store = make_declared_store(SCHEMA, label_spec())
    store.ingest(*payments_events([1], [1000], [5.0], [[1, -1, 2, -1]], [840], [5411]).args())
    events = payments_events([2, 3], [2000, 3000], [5.0, 6.0], [[1, -1, 2, -1]] * 2, [840] * 2, [5411] * 2)
    with pytest.raises(_core.FraudError) as e:  # label 0 is of a batch event; label 1 is the bad one
        store.replay(*events.args(), *LabelArrays.make([2, 555], [1, 1], [2000, 2000]).args())
    assert "label 1 (event_id=555)" in str(e.value), str(e.value)


# --- validation --------------------------------------------------------------------------------

def small_batch():
    """8 events of one card etc.; a dict of the columns, so a test can break one value."""
    return dict(event_id=np.arange(100, 108), time_ms=10_000 + np.arange(8) * 1000,
                amount=np.full(8, 10.0), entity_id=np.tile([1, 2, 3, 4], (8, 1)),
                country=np.full(8, 840), mcc=np.full(8, 5411))


def events_of(b):
    return payments_events(b["event_id"], b["time_ms"], b["amount"], b["entity_id"], b["country"], b["mcc"])


# Messages say "event i (event_id=...)" (they said "transaction i (txn_id=...)"); field names are
# the schema's. Country and mcc domains are no longer checked (the country 1..999 case is gone):
# a categorical code is any int64 >= 0, -1 meaning missing, so only a code below -1 is refused.
@pytest.mark.parametrize(
    "mutate, status, status_words",
    [
        (lambda r: r["amount"].__setitem__(5, np.nan), "INVALID_TRANSACTION", "event 5 (event_id=105): amount: is NaN"),
        (lambda r: r["amount"].__setitem__(5, np.inf), "INVALID_TRANSACTION", "event 5 (event_id=105): amount: is +inf"),
        (lambda r: r["amount"].__setitem__(5, -0.5), "INVALID_TRANSACTION", "event 5 (event_id=105): amount: must be >= 0, got -0.5"),
        (lambda r: r["entity_id"].__setitem__((5, 1), -7), "INVALID_TRANSACTION", "event 5 (event_id=105): entity_id[device]: must be >= 0 or -1 (absent), got -7"),
        (lambda r: r["entity_id"].__setitem__((5, 0), -1), "INVALID_TRANSACTION", "event 5 (event_id=105): entity_id[card]: must be >= 0, got -1"),
        (lambda r: r["country"].__setitem__(5, -2), "INVALID_TRANSACTION", "event 5 (event_id=105): categorical[country]: must be >= 0 or -1 (missing), got -2"),
        (lambda r: r["time_ms"].__setitem__(5, 0), "OUT_OF_ORDER", "event 5 (event_id=105): time_ms 0 is older than"),
        (lambda r: r["time_ms"].__setitem__(5, 500), "OUT_OF_ORDER", "older than the store's watermark 1000"),
        (lambda r: r["time_ms"].__setitem__(5, 13_500), "OUT_OF_ORDER", "event 5 (event_id=105): time_ms 13500 is older than event 4's 14000 in the same batch"),
        (lambda r: r["event_id"].__setitem__(5, 102), "DUPLICATE_TRANSACTION", "event 5 (event_id=102): event_id: same as event 2"),
        (lambda r: r["event_id"].__setitem__(5, 1), "DUPLICATE_TRANSACTION", "event 5 (event_id=1): event_id: already in the store"),
    ],
)
def test_bad_batch_changes_nothing(mutate, status, status_words):
    store = make_store()
    first = small_batch()
    first = {k: v[:1].copy() for k, v in first.items()}
    first["event_id"][:], first["time_ms"][:] = 1, 1000
    store.ingest(*events_of(first).args())
    probe = events_of(small_batch())
    before = store.features(*probe.args())
    bad = small_batch()
    mutate(bad)
    bad = events_of(bad)
    calls = (store.ingest, store.features_and_ingest,
             lambda *a: store.replay(*a, *NO_LABELS.args()))
    for call in calls:
        with pytest.raises(_core.FraudError) as info:
            call(*bad.args())
        assert status_words in str(info.value)
        assert info.value.status == f"FRAUD_STATUS_{status}"
        assert (store.size, store.watermark_ms) == (1, 1000)
        np.testing.assert_array_equal(store.features(*probe.args()), before)


def test_amount_zero_and_any_codes_are_valid():
    # Rules changed on purpose: amount 0 is valid (>= 0; the pre-generic core refused it), and
    # country / mcc are categorical codes whose domain is not checked (country 0 or 1000 and mcc
    # 10000 were refused). -1 is a missing code.
    b = small_batch()
    b["amount"][2] = 0.0
    b["country"][3], b["country"][4], b["mcc"][5], b["mcc"][6] = 0, 1000, 10_000, -1
    store = make_store()
    got = store.features_and_ingest(*events_of(b).args())
    assert store.size == 8
    assert got[2, 0] == 0 and got[2, 1] == 0  # amount, log_amount
    np.testing.assert_array_equal(got[3:5, 3], [0, 1000])
    assert got[5, 4] == 10_000 and np.isnan(got[6, 4])  # a missing mcc is NaN
    card_country_changed = got[:, store.feature_names.index("card_country_changed")]
    np.testing.assert_array_equal(card_country_changed[1:], [0, 0, 1, 1, 1, 0, 0])
    card_mcc_is_new = got[:, store.feature_names.index("card_mcc_is_new")]
    assert card_mcc_is_new[5] == 1 and np.isnan(card_mcc_is_new[6]) and card_mcc_is_new[7] == 0


def test_features_validates_fields_only():
    store = make_store()
    b = {k: v[::-1].copy() for k, v in small_batch().items()}  # out of order and repeated ids are fine for scoring
    b["event_id"][:] = 5
    assert store.features(*events_of(b).args()).shape == (8, store.num_features)
    # mcc 10000 was refused ("must be in 0..9999"); codes are no longer range-checked, only -1
    # (missing) and codes >= 0 are valid.
    b["mcc"][3] = 10000
    assert store.features(*events_of(b).args())[3, 4] == 10000
    b["mcc"][3] = -5
    with pytest.raises(_core.FraudError, match=r"event 3 \(event_id=5\): categorical\[mcc\]: must be >= 0 or -1 \(missing\), got -5"):
        store.features(*events_of(b).args())


def test_wrong_arrays_raise_value_error():
    store = make_store()
    good = events_of(small_batch())
    n = len(good)
    a = dict(zip(("event_id", "time_ms", "amount", "entity_id", "numeric", "categorical"), good.args()))
    wrong = [
        ("event_id", good.event_id.astype(np.float64), "event_id: expected a C-contiguous int64 array of shape (8,); got dtype float64"),
        ("time_ms", good.time_ms[:5], "time_ms: expected a C-contiguous int64 array of shape (8,); got shape (5,)"),
        ("time_ms", good.time_ms.astype(np.int32), "got dtype int32"),
        ("amount", good.amount.astype(np.float32), "amount: expected a C-contiguous float64 array of shape (8,); got dtype float32"),
        ("amount", np.zeros(2 * n)[::2], "amount: expected a C-contiguous float64 array of shape (8,); got a non-contiguous array"),
        ("entity_id", good.entity_id[:, :3].copy(), "entity_id: expected a C-contiguous int64 array of shape (8, 4); got shape (8, 3)"),
        ("entity_id", np.asfortranarray(good.entity_id), "got a non-contiguous array"),
        ("entity_id", good.entity_id.reshape(-1), "entity_id: expected a C-contiguous int64 array of shape (8, 4); got 1 dimensions"),
        ("entity_id", good.entity_id.astype(">i8"), "entity_id: expected a C-contiguous int64 array of shape (8, 4); got dtype >i8"),
        ("numeric", np.zeros((n, 1)), "numeric: expected a C-contiguous float64 array of shape (8, 0); got shape (8, 1)"),
        ("categorical", good.categorical.astype(np.int32), "categorical: expected a C-contiguous int64 array of shape (8, 2); got dtype int32"),
        ("categorical", good.categorical[:, ::-1], "got a non-contiguous array"),
        ("event_id", good.event_id.reshape(2, 4), "event_id: expected a 1-D int64 array"),
    ]
    calls = (store.ingest, store.features, store.features_and_ingest,
             lambda *x: store.replay(*x, *NO_LABELS.args()))
    for key, value, words in wrong:
        args = dict(a, **{key: value})
        for call in calls:
            with pytest.raises(ValueError) as e:
                call(*args.values())
            assert words in str(e.value), (key, str(e.value))
    bad_labels = [
        (np.array([1.0]), np.array([1], np.int8), np.array([5], np.int64), "label_event_id: expected a C-contiguous int64"),
        (np.array([1]), np.array([1]), np.array([5]), "label: expected a C-contiguous int8 array of shape (1,); got dtype int64"),
        (np.array([1]), np.array([1], np.int8), np.array([5, 6]), "label_time_ms: expected a C-contiguous int64 array of shape (1,); got shape (2,)"),
    ]
    for labels in bad_labels:
        for call in (store.label, lambda *x: store.replay(*good.args(), *x)):
            with pytest.raises(ValueError) as e:
                call(*labels[:3])
            assert labels[3] in str(e.value)
    with pytest.raises(TypeError):
        store.ingest([1, 2, 3], *good.args()[1:])
    with pytest.raises(TypeError):
        store.ingest(*good.args()[:5])
    assert store.size == 0


def test_layout_and_empty_batches():
    store = make_store()
    assert store.entity_types == ENTITIES
    assert store.history_fields == [-1]  # the amount only (payments has no numeric fields)
    assert store.watermark_ms == INT64_MIN and store.size == 0 and store.labelled == 0
    assert (store.retention_ms, store.max_history_per_entity, store.evicted) == (0, 0, 0)
    empty = EventArrays.make(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                             np.zeros((0, 4), np.int64), None, np.zeros((0, 2), np.int64))
    assert store.features_and_ingest(*empty.args()).shape == (0, store.num_features)
    assert store.features(*empty.args()).shape == (0, store.num_features)
    assert store.replay(*empty.args(), *NO_LABELS.args()).shape == (0, store.num_features)
    store.ingest(*empty.args())
    store.label(*NO_LABELS.args())
    assert store.size == 0 and store.watermark_ms == INT64_MIN
    # Events lay out as the schema says: 4 entity columns, 0 numeric, 2 categorical.
    e = events_of(small_batch())
    assert e.entity_id.shape == (8, 4) and e.numeric.shape == (8, 0) and e.categorical.shape == (8, 2)
    assert store.num_entities("card") == 0 and store.history_size("device", 2) == 0
    store.ingest(*e.args())
    assert store.num_entities("card") == 1 and store.num_entities(1) == 1
    assert store.history_size("ip", 4) == 8 == store.history_size(IP, 4)
    with pytest.raises(ValueError, match="no entity type 'terminal' in the schema"):
        store.history_size("terminal", 1)


def test_names_labels_and_config():
    windows = (HOUR, DAY, 7 * DAY, 300_000, 1500, 2 * DAY, 36 * HOUR, 30_000)
    want = ["1h", "24h", "7d", "5m", "1500ms", "2d", "36h", "30s"]
    assert [_core.window_label(x) for x in windows] == want == [py_window_label(x) for x in windows]
    cfg = CONFIGS["default"]
    assert make_store().feature_names == reference_names(cfg["windows_ms"], cfg["distinct_window_ms"])
    assert make_store().feature_names == PRESET_SPEC.names
    assert len(PRESET_SPEC.names) == 44 == make_store().num_features
    assert PRESET_SPEC.max_scan == 1024
    # What FeatureConfig refused, the core refuses in a spec: no windows (no features), two equal
    # windows (two features of one name), a window of 0, max_scan 0, a negative distinct window.
    bad = [
        ({**SPEC, "features": []}, "features: must be a non-empty list"),
        (payments_spec([HOUR, HOUR, DAY], DAY, 1024), "'card_count_1h' is empty or not unique"),
        (payments_spec([0, DAY, 7 * DAY], DAY, 1024), "features[5].window_ms: must be >= 1, got 0"),
        ({**SPEC, "max_scan": 0}, "max_scan: must be >= 1, got 0"),
        (payments_spec([HOUR, DAY, 7 * DAY], -1, 1024), "features[36].window_ms: must be >= 1, got -1"),
    ]
    for spec, words in bad:
        with pytest.raises(_core.FraudError) as e:
            _core.Store(json.dumps(SCHEMA), json.dumps(spec))
        assert words in str(e.value)


def test_misaligned_arrays_are_read_correctly():
    # A column that is a view into a byte buffer at an odd offset is read as its values (the
    # pre-generic binding copied a misaligned record buffer; it must not misread either way).
    good = events_of(small_batch())

    def misaligned(a):
        raw = np.zeros(a.nbytes + 1, np.uint8)
        raw[1:] = a.reshape(-1).view(np.uint8)
        return raw[1:].view(a.dtype).reshape(a.shape)

    args = [misaligned(a) for a in good.args()]
    assert not args[2].flags.aligned and args[2].flags.c_contiguous
    np.testing.assert_array_equal(make_store().features_and_ingest(*args),
                                  make_store().features_and_ingest(*good.args()))
