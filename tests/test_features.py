"""Point-in-time features: the C++ store + features against a brute-force reference.

The reference is written for clarity, not speed: for each transaction it looks at every stored row of
the same entity with an earlier timestamp. Tolerance: float32 output of double sums, so rtol 1e-4
(plus atol 1e-5 for values near 0, such as z-scores).
"""

import math

import numpy as np
import pytest

from libfraud import _core

# fraud_txn's layout (fraud.h). Kept local on purpose: this test checks the binding's own contract.
TXN_DTYPE = np.dtype(
    [
        ("txn_id", "<i8"),
        ("timestamp_ms", "<i8"),
        ("amount", "<f8"),
        ("entity_id", "<i8", (4,)),
        ("country", "<i4"),
        ("mcc", "<i4"),
    ]
)
ENTITIES = ["card", "device", "merchant", "ip"]
CARD, DEVICE, MERCHANT, IP = range(4)
HOUR = 3_600_000
DAY = 24 * HOUR
RTOL, ATOL = 1e-4, 1e-5


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


def reference_features(stored, queries, windows, dw, max_scan):
    """Features of each query row against the rows in `stored` (in append order)."""
    nan = math.nan
    out = []
    for q in queries:
        t = int(q["timestamp_ms"])
        amount = float(q["amount"])
        ids = [int(x) for x in q["entity_id"]]
        # Each entity's history: stored rows with the same id and ts < t, in append order.
        hist = []
        for e in range(4):
            if ids[e] < 0:
                hist.append(None)
            else:
                hist.append(
                    [r for r in stored if int(r["entity_id"][e]) == ids[e] and int(r["timestamp_ms"]) < t]
                )
        row = [amount, math.log1p(amount), (t // HOUR) % 24, int(q["country"]), int(q["mcc"])]
        for e in range(4):
            for w in windows:
                if hist[e] is None:
                    row += [nan, nan]
                else:
                    inside = [r for r in hist[e] if t - w <= int(r["timestamp_ms"]) < t]
                    row += [len(inside), sum(float(r["amount"]) for r in inside)]
        for e in range(4):
            if not hist[e]:
                row.append(nan)
            else:
                row.append((t - max(int(r["timestamp_ms"]) for r in hist[e])) / 1000.0)

        def ratio_to_mean(h):
            return amount / np.mean([float(r["amount"]) for r in h]) if h else nan

        card = hist[CARD]
        row.append(ratio_to_mean(card))
        if card is not None and len(card) >= 2:
            amounts = np.array([float(r["amount"]) for r in card])
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
            return len(
                {int(r["entity_id"][other]) for r in recent if int(r["timestamp_ms"]) >= t - dw and r["entity_id"][other] >= 0}
            )

        row += [distinct(CARD, DEVICE), distinct(CARD, IP), distinct(DEVICE, CARD), distinct(IP, CARD)]
        recent_card = card[-max_scan:] if card else []

        def is_new(e):
            if ids[e] < 0 or not card:
                return nan
            return float(all(int(r["entity_id"][e]) != ids[e] for r in recent_card))

        row += [is_new(DEVICE), is_new(IP)]
        if not card:
            row += [nan, nan]
        else:
            row.append(float(all(int(r["mcc"]) != int(q["mcc"]) for r in recent_card)))
            row.append(float(int(card[-1]["country"]) != int(q["country"])))
        out.append(row)
    return np.array(out, dtype=np.float64).reshape(len(queries), -1)


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
    r = np.zeros(n, TXN_DTYPE)
    r["txn_id"] = rng.permutation(n) * 7 + 1000
    r["timestamp_ms"] = ts
    amounts = np.round(rng.lognormal(3.5, 1.2, n), 2)
    # A few cards pay the same whole amount every time: their std is exactly 0.
    cards = rng.zipf(1.6, n) % 40
    constant = cards < 3
    amounts = np.where(constant, 25.0 * (cards + 1), amounts)
    r["amount"] = amounts
    singletons = 1_000_000 + np.arange(n)  # entities seen once
    r["entity_id"][:, CARD] = np.where(rng.random(n) < 0.1, singletons, cards)
    dev = rng.integers(0, 60, n)
    dev = np.where(rng.random(n) < 0.25, -1, dev)
    r["entity_id"][:, DEVICE] = np.where(rng.random(n) < 0.1, singletons, dev)
    r["entity_id"][:, MERCHANT] = rng.integers(0, 25, n)
    ip = rng.integers(0, 80, n)
    r["entity_id"][:, IP] = np.where(rng.random(n) < 0.3, -1, ip)
    r["country"] = rng.choice([840, 826, 276, 1, 999], n, p=[0.7, 0.1, 0.1, 0.05, 0.05])
    r["mcc"] = rng.choice([5411, 5812, 5999, 0, 9999, 4829], n)
    return r


CONFIGS = {
    "default": dict(windows_ms=[HOUR, DAY, 7 * DAY], distinct_window_ms=DAY, max_scan=1024),
    "tight": dict(windows_ms=[1500, HOUR // 2, 2 * HOUR], distinct_window_ms=3 * HOUR, max_scan=3),
}


def make_store(cfg, **kw):
    return _core.Store(_core.FeatureConfig(**cfg), **kw)


def assert_features_match(got, want, names):
    assert got.dtype == np.float32 and got.shape == want.shape
    for j, name in enumerate(names):
        g, w = got[:, j].astype(np.float64), want[:, j]
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"NaN pattern of {name}")
        ok = ~np.isnan(w)
        np.testing.assert_allclose(g[ok], w[ok], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference(seed, config_name):
    cfg = CONFIGS[config_name]
    stream = random_stream(seed)
    store = make_store(cfg, expected_transactions=len(stream))
    got = store.features_and_ingest(stream)
    want = reference_features(stream, stream, cfg["windows_ms"], cfg["distinct_window_ms"], cfg["max_scan"])
    assert store.feature_names == reference_names(cfg["windows_ms"], cfg["distinct_window_ms"])
    assert_features_match(got, want, store.feature_names)
    # The stream must really exercise the edges it claims to.
    ts = stream["timestamp_ms"]
    assert (np.diff(ts) == 0).sum() > 50, "equal timestamps"
    gaps = ts[:, None] - ts[None, :]
    for w in cfg["windows_ms"][1:]:
        assert (gaps == w).any(), f"an event exactly at t - {w}"
    assert np.isnan(got[:, store.feature_names.index("device_count_1h" if config_name == "default" else "device_count_1500ms")]).any()
    assert (got[:, store.feature_names.index("card_amount_zscore")] != 0).any()


@pytest.mark.parametrize("seed", [0, 5])
def test_replay_equals_one_by_one_and_scoring_in_the_past(seed):
    stream = random_stream(seed, n=400)
    batch = _core.Store()
    replayed = batch.features_and_ingest(stream)
    single = _core.Store()
    rows = [single.features_and_ingest(stream[i : i + 1]) for i in range(len(stream))]
    np.testing.assert_array_equal(replayed, np.concatenate(rows))
    # A store that already holds the whole stream sees only each transaction's strict past.
    np.testing.assert_array_equal(batch.features(stream), replayed)
    ingested = _core.Store()
    ingested.ingest(stream)
    np.testing.assert_array_equal(ingested.features(stream), replayed)


@pytest.mark.parametrize("seed", [0, 7])
def test_no_future_leakage(seed):
    stream = random_stream(seed, n=500)
    later = random_stream(seed + 100, n=300)
    later["timestamp_ms"] += int(stream["timestamp_ms"][-1]) - int(later["timestamp_ms"][0])  # ties the last
    later["txn_id"] += 10_000_000
    prefix = _core.Store().features_and_ingest(stream)
    full = _core.Store().features_and_ingest(np.concatenate([stream, later]))
    np.testing.assert_array_equal(full[: len(stream)], prefix)


def test_features_does_not_change_the_store():
    stream = random_stream(11, n=300)
    store = _core.Store()
    store.ingest(stream[:200])
    before = store.features(stream)
    size, wm = store.size, store.watermark_ms
    store.features(stream[200:])  # later than the watermark, not stored
    assert (store.size, store.watermark_ms) == (size, wm)
    np.testing.assert_array_equal(store.features(stream), before)


def small_batch():
    r = np.zeros(8, TXN_DTYPE)
    r["txn_id"] = np.arange(100, 108)
    r["timestamp_ms"] = 10_000 + np.arange(8) * 1000
    r["amount"] = 10.0
    r["entity_id"] = [1, 2, 3, 4]
    r["country"] = 840
    r["mcc"] = 5411
    return r


@pytest.mark.parametrize(
    "mutate, status_words",
    [
        (lambda r: r["amount"].__setitem__(5, np.nan), "transaction 5 (txn_id=105): amount: is NaN"),
        (lambda r: r["entity_id"].__setitem__((5, 1), -7), "transaction 5 (txn_id=105): entity_id[device]: must be >= 0 or -1 (absent), got -7"),
        (lambda r: r["country"].__setitem__(5, 0), "transaction 5 (txn_id=105): country: must be in 1..999, got 0"),
        (lambda r: r["timestamp_ms"].__setitem__(5, 0), "transaction 5 (txn_id=105): timestamp_ms 0 is older than"),
        (lambda r: r["timestamp_ms"].__setitem__(5, 500), "older than the store's watermark 1000"),
        (lambda r: r["txn_id"].__setitem__(5, 102), "transaction 5 (txn_id=102): txn_id: same as transaction 2"),
        (lambda r: r["txn_id"].__setitem__(5, 1), "transaction 5 (txn_id=1): txn_id: already in the store"),
    ],
)
def test_bad_batch_changes_nothing(mutate, status_words):
    store = _core.Store()
    first = small_batch()[:1].copy()
    first["txn_id"], first["timestamp_ms"] = 1, 1000
    store.ingest(first)
    probe = small_batch()
    before = store.features(probe)
    bad = small_batch()
    mutate(bad)
    for call in (store.ingest, store.features_and_ingest):
        with pytest.raises(_core.FraudError) as info:
            call(bad)
        assert status_words in str(info.value)
        assert (store.size, store.watermark_ms) == (1, 1000)
        np.testing.assert_array_equal(store.features(probe), before)


def test_features_validates_fields_only():
    store = _core.Store()
    r = small_batch()[::-1].copy()  # out of order and repeated ids are fine for scoring
    r["txn_id"] = 5
    assert store.features(r).shape == (8, store.num_features)
    r["mcc"][3] = 10000
    with pytest.raises(_core.FraudError, match=r"transaction 3 \(txn_id=5\): mcc: must be in 0\.\.9999, got 10000"):
        store.features(r)


def test_wrong_records_raise_value_error():
    store = _core.Store()
    good = small_batch()
    wrong = [
        np.zeros(4, np.float64),
        np.zeros((2, 4), TXN_DTYPE),
        good[::2],  # not contiguous
        good.astype(TXN_DTYPE.newbyteorder(">")),
        np.zeros(2, [("txn_id", "<i8"), ("timestamp_ms", "<i8"), ("amount", "<f4"), ("pad", "V52")]),
        np.zeros(2, [(n if n != "mcc" else "mcc_code", TXN_DTYPE.fields[n][0]) for n in TXN_DTYPE.names]),
    ]
    for records in wrong:
        for call in (store.ingest, store.features, store.features_and_ingest):
            with pytest.raises(ValueError, match="expected a C-contiguous 1-D NumPy structured array"):
                call(records)
    with pytest.raises(TypeError):
        store.ingest([1, 2, 3])
    assert store.size == 0


def test_layout_constants_and_empty_batches():
    assert _core.TXN_ITEMSIZE == TXN_DTYPE.itemsize == 64
    assert _core.TXN_OFFSETS == {n: TXN_DTYPE.fields[n][1] for n in TXN_DTYPE.names}
    store = _core.Store()
    assert store.watermark_ms == -(2**63) and store.size == 0
    empty = np.zeros(0, TXN_DTYPE)
    assert store.features_and_ingest(empty).shape == (0, store.num_features)
    store.ingest(empty)
    assert store.size == 0


def test_names_labels_and_config():
    assert [_core.window_label(x) for x in (HOUR, DAY, 7 * DAY, 300_000, 1500, 2 * DAY, 36 * HOUR, 30_000)] == [
        "1h", "24h", "7d", "5m", "1500ms", "2d", "36h", "30s"
    ]
    cfg = _core.FeatureConfig()
    assert cfg.windows_ms == [HOUR, DAY, 7 * DAY] and cfg.distinct_window_ms == DAY and cfg.max_scan == 1024
    assert repr(cfg) == "FeatureConfig(windows_ms=[3600000, 86400000, 604800000], distinct_window_ms=86400000, max_scan=1024)"
    assert _core.feature_names(cfg) == reference_names(cfg.windows_ms, cfg.distinct_window_ms)
    assert len(_core.feature_names(cfg)) == 44 == _core.Store().num_features
    assert _core.FeatureConfig(max_scan=3) == _core.FeatureConfig(max_scan=3) != cfg
    for bad in (dict(windows_ms=[]), dict(windows_ms=[HOUR, HOUR]), dict(windows_ms=[0]), dict(max_scan=0), dict(distinct_window_ms=-1)):
        with pytest.raises(_core.FraudError):
            _core.FeatureConfig(**bad)


def test_aligned_copy_of_misaligned_buffer():
    # A view into a byte buffer at an odd offset is still read correctly (copied, not misread).
    good = small_batch()
    raw = np.zeros(good.nbytes + 1, np.uint8)
    raw[1:] = good.view(np.uint8)
    view = raw[1:].view(TXN_DTYPE)
    np.testing.assert_array_equal(_core.Store().features_and_ingest(view), _core.Store().features_and_ingest(good))
