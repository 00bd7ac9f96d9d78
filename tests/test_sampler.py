"""Temporal neighbourhood sampler: the C++ sampler against a brute-force reference.

The reference is written for clarity, not speed: for each target it filters the list of stored
transactions by entity and time. Its floats are computed in float64 with Python's math (the same libm
as the core) and rounded once to float32, as the core does, so features are compared bitwise. The
Uniform draw is re-implemented from its definition (splitmix64 + Floyd's algorithm, sampler.cpp),
and also checked for the properties that matter whatever the hash (earlier, distinct, counted).
"""

import math

import numpy as np
import pytest

from libfraud import _core

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
E = 4
CARD, DEVICE, MERCHANT, IP = range(E)
HOUR = 3_600_000
DAY = 24 * HOUR
FLOAT_KEYS = ["target_x", "ent1_x", "ent1_mask", "txn2_x", "txn2_mask", "ent3_x", "ent3_mask"]
ID_KEYS = ["ent1_id", "txn2_id", "ent3_id"]
M64 = (1 << 64) - 1


# --- reference -------------------------------------------------------------------------------


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def uniform_choice(seed, txn_id, entity_type, n, k):
    """k distinct indices of [0, n) (k < n), newest (largest) first: Floyd's algorithm."""
    key = splitmix64(splitmix64(splitmix64(seed) ^ (txn_id & M64)) ^ entity_type)
    chosen = []
    for c, j in enumerate(range(n - k, n)):
        r = (splitmix64((key + c) & M64) * (j + 1)) >> 64
        chosen.append(j if r in chosen else r)
    return sorted(chosen, reverse=True)


def txn_features(r, t):
    hour = (int(r["timestamp_ms"]) % DAY) // HOUR
    age_s = (t - int(r["timestamp_ms"])) / 1000
    return [
        math.log1p(float(r["amount"])),
        math.sin(2 * math.pi * hour / 24),
        math.cos(2 * math.pi * hour / 24),
        math.log1p(age_s),
        int(r["mcc"]) / 10000,
    ]


def entity_features(entity_type, degree):
    x = [0.0] * (E + 1)
    x[entity_type] = 1.0
    x[E] = math.log1p(degree)
    return x


def reference_sample(stored, queries, fanout, strategy="most_recent", seed=0):
    """The sampled arrays of each query against `stored` (a list of records in append order)."""
    B, K = len(queries), fanout
    out = {
        "target_x": np.zeros((B, 5)),
        "ent1_x": np.zeros((B, E, 5)),
        "ent1_mask": np.zeros((B, E)),
        "txn2_x": np.zeros((B, E, K, 5)),
        "txn2_mask": np.zeros((B, E, K)),
        "ent3_x": np.zeros((B, E, K, E, 5)),
        "ent3_mask": np.zeros((B, E, K, E)),
        "ent1_id": np.full((B, E), -1),
        "txn2_id": np.full((B, E, K), -1),
        "ent3_id": np.full((B, E, K, E), -1),
    }
    degree_memo = {}

    def earlier(entity_type, entity_id, t):
        return [r for r in stored if int(r["entity_id"][entity_type]) == entity_id and int(r["timestamp_ms"]) < t]

    def degree(entity_type, entity_id, t):
        key = (entity_type, entity_id, t)
        if key not in degree_memo:
            degree_memo[key] = len(earlier(entity_type, entity_id, t))
        return degree_memo[key]

    for b, q in enumerate(queries):
        t = int(q["timestamp_ms"])
        out["target_x"][b] = txn_features(q, t)
        for e in range(E):
            eid = int(q["entity_id"][e])
            if eid < 0:
                continue
            hist = earlier(e, eid, t)  # oldest first
            out["ent1_x"][b, e] = entity_features(e, len(hist))
            out["ent1_mask"][b, e] = 1
            out["ent1_id"][b, e] = eid
            n = len(hist)
            if strategy == "most_recent" or n <= K:
                picks = list(range(n - 1, max(n - K, 0) - 1, -1))
            else:
                picks = uniform_choice(seed, int(q["txn_id"]), e, n, K)
            for k, j in enumerate(picks):
                s = hist[j]
                out["txn2_x"][b, e, k] = txn_features(s, t)
                out["txn2_mask"][b, e, k] = 1
                out["txn2_id"][b, e, k] = int(s["txn_id"])
                for f in range(E):
                    fid = int(s["entity_id"][f])
                    if fid < 0:
                        continue
                    out["ent3_x"][b, e, k, f] = entity_features(f, degree(f, fid, int(s["timestamp_ms"])))
                    out["ent3_mask"][b, e, k, f] = 1
                    out["ent3_id"][b, e, k, f] = fid
    return {k: v.astype(np.float32 if k in FLOAT_KEYS else np.int64) for k, v in out.items()}


# --- data ------------------------------------------------------------------------------------


def random_stream(seed, n=300):
    """Time-sorted transactions: many ties in time, a few busy cards (history > K) and many quiet
    ones (< K), few devices and IPs shared by many cards, absent devices/IPs, once-seen entities."""
    rng = np.random.default_rng(seed)
    base = 1_700_000_000_000 - (1_700_000_000_000 % DAY)
    slots = np.sort(rng.integers(0, 3 * 48, n))
    ts = base + slots * (HOUR // 2)
    ts = np.sort(np.where(rng.random(n) < 0.3, ts + rng.integers(1, HOUR // 2, n), ts))
    r = np.zeros(n, TXN_DTYPE)
    r["txn_id"] = rng.permutation(n) * 7 + 1000
    r["timestamp_ms"] = ts
    r["amount"] = np.round(rng.lognormal(3.5, 1.2, n), 2)
    singletons = 1_000_000 + np.arange(n)
    cards = rng.zipf(1.5, n) % 60
    r["entity_id"][:, CARD] = np.where(rng.random(n) < 0.1, singletons, cards)
    dev = np.where(rng.random(n) < 0.25, -1, rng.integers(0, 12, n))
    r["entity_id"][:, DEVICE] = np.where(rng.random(n) < 0.1, singletons, dev)
    r["entity_id"][:, MERCHANT] = rng.integers(0, 15, n)
    r["entity_id"][:, IP] = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 8, n))
    r["country"] = 840
    r["mcc"] = rng.choice([5411, 5812, 5999, 0, 9999, 4829], n)
    return r


def make_sampler(fanout=10, strategy="most_recent", seed=0, retention_ms=0):
    return _core.Sampler(_core.SamplerConfig(fanout=fanout, strategy=strategy, seed=seed, retention_ms=retention_ms))


def store_with(records):
    store = _core.Store()
    store.ingest(records)
    return store


def assert_same(got, want):
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def history_ts(stream):
    """{(entity type, id): sorted timestamps} of the stream."""
    h = {}
    for r in stream:
        for e in range(E):
            eid = int(r["entity_id"][e])
            if eid >= 0:
                h.setdefault((e, eid), []).append(int(r["timestamp_ms"]))
    return h


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
@pytest.mark.parametrize("fanout", [3, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed, fanout, strategy):
    stream = random_stream(seed)
    store = store_with(stream)
    sampler = make_sampler(fanout, strategy, seed=seed * 31 + 5)
    got = sampler.sample(store, stream)
    want = reference_sample(list(stream), stream, fanout, strategy, seed=seed * 31 + 5)
    assert_same(got, want)
    # The stream exercises what it claims to.
    assert (np.diff(stream["timestamp_ms"]) == 0).sum() > 20, "equal timestamps"
    degrees = np.expm1(got["ent1_x"][..., E].astype(np.float64)).round()
    present = got["ent1_mask"] == 1
    assert (degrees[present] > fanout).any() and ((degrees[present] > 0) & (degrees[present] < fanout)).any()
    assert (present & (degrees == 0)).any(), "cold entities"
    assert (got["ent1_mask"] == 0).any() and (got["ent3_mask"][got["txn2_mask"] == 1] == 0).any(), "absent"


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
def test_scoring_in_the_past_and_off_stream_times(strategy):
    """Queries that are not in the store, at times inside the stream: only the strict past counts."""
    stream = random_stream(4)
    store = store_with(stream)
    rng = np.random.default_rng(9)
    queries = stream[rng.choice(len(stream), 60, replace=False)].copy()
    queries["txn_id"] += 50_000_000
    queries["timestamp_ms"] += rng.choice([-1, 0, 1, HOUR], len(queries))
    queries["entity_id"][:10, DEVICE] = 77_777_777  # never seen
    got = make_sampler(5, strategy, seed=1).sample(store, queries)
    assert_same(got, reference_sample(list(stream), queries, 5, strategy, seed=1))


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
@pytest.mark.parametrize("seed", [0, 5])
def test_streaming_equals_replay(seed, strategy):
    """Sampling each transaction right before ingesting it == ingesting all, then sampling (bitwise)."""
    stream = random_stream(seed, n=250)
    sampler = make_sampler(4, strategy, seed=seed)
    live = _core.Store()
    parts = []
    for i in range(len(stream)):
        parts.append(sampler.sample(live, stream[i : i + 1]))
        live.ingest(stream[i : i + 1])
    one_by_one = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    replay = sampler.sample(store_with(stream), stream)
    assert_same(replay, one_by_one)


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
def test_no_future_leakage(strategy):
    stream = random_stream(7)
    later = random_stream(107, n=200)
    later["timestamp_ms"] += int(stream["timestamp_ms"][-1]) - int(later["timestamp_ms"][0])  # ties the last
    later["txn_id"] += 10_000_000
    full = np.concatenate([stream, later])
    sampler = make_sampler(6, strategy, seed=3)
    got = sampler.sample(store_with(full), full)
    # A prefix of the stream samples the same whatever came after it.
    prefix = sampler.sample(store_with(stream), stream)
    assert_same({k: v[: len(stream)] for k, v in got.items()}, prefix)
    # And directly: no sampled transaction at or after t, no hop-3 degree counting one.
    ts_of = {int(r["txn_id"]): int(r["timestamp_ms"]) for r in full}
    hist = history_ts(full)
    t = full["timestamp_ms"]
    for b in range(len(full)):
        ids = got["txn2_id"][b][got["txn2_mask"][b] == 1]
        assert all(ts_of[int(i)] < t[b] for i in ids)
        for e, k, f in zip(*np.nonzero(got["ent3_mask"][b])):
            deg = round(math.expm1(float(got["ent3_x"][b, e, k, f, E])))
            eid = int(got["ent3_id"][b, e, k, f])
            assert deg <= sum(1 for x in hist[(f, eid)] if x < t[b])
            assert deg == sum(1 for x in hist[(f, eid)] if x < ts_of[int(got["txn2_id"][b, e, k])])
        for e in range(E):
            if got["ent1_mask"][b, e]:
                deg = round(math.expm1(float(got["ent1_x"][b, e, E])))
                assert deg == sum(1 for x in hist.get((e, int(full["entity_id"][b, e])), []) if x < t[b])


def test_uniform_properties():
    stream = random_stream(3, n=400)
    store = store_with(stream)
    K = 5
    a = make_sampler(K, "uniform", seed=11)
    got = a.sample(store, stream)
    by_id = {int(r["txn_id"]): r for r in stream}
    for b, q in enumerate(stream):
        t = int(q["timestamp_ms"])
        for e in range(E):
            eid = int(q["entity_id"][e])
            ids = [int(i) for i in got["txn2_id"][b, e] if i >= 0]
            np.testing.assert_array_equal(got["txn2_mask"][b, e], [1] * len(ids) + [0] * (K - len(ids)))
            if eid < 0:
                assert ids == []
                continue
            available = [r for r in stream if int(r["entity_id"][e]) == eid and int(r["timestamp_ms"]) < t]
            assert len(ids) == min(K, len(available))
            assert len(set(ids)) == len(ids)
            for i in ids:
                s = by_id[i]
                assert int(s["entity_id"][e]) == eid and int(s["timestamp_ms"]) < t
            times = [int(by_id[i]["timestamp_ms"]) for i in ids]
            assert times == sorted(times, reverse=True), "newest first"
    # Deterministic for a seed; other seeds draw otherwise; the batch around a target changes nothing.
    assert_same(a.sample(store, stream), got)
    other = make_sampler(K, "uniform", seed=12).sample(store, stream)
    assert (other["txn2_id"] != got["txn2_id"]).any()
    assert (make_sampler(K, "uniform", seed=11).sample(store, stream)["txn2_id"] == got["txn2_id"]).all()
    order = np.random.default_rng(0).permutation(len(stream))[:100]
    sub = a.sample(store, stream[order])
    assert_same(sub, {k: v[order] for k, v in got.items()})
    # It does draw among the whole history, not only the newest.
    most_recent = make_sampler(K, "most_recent").sample(store, stream)
    assert (most_recent["txn2_id"] != got["txn2_id"]).any()


def test_cold_start_and_empty_store():
    q = np.zeros(2, TXN_DTYPE)
    q["txn_id"] = [1, 2]
    q["timestamp_ms"] = [5_000, 6_000]
    q["amount"] = [12.5, 3.0]
    q["entity_id"] = [[1, 2, 3, 4], [1, -1, 3, -1]]
    q["country"] = 840
    q["mcc"] = [5411, 0]
    got = make_sampler(3).sample(_core.Store(), q)
    np.testing.assert_array_equal(got["ent1_mask"], [[1, 1, 1, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(got["ent1_id"], [[1, 2, 3, 4], [1, -1, 3, -1]])
    np.testing.assert_array_equal(got["ent1_x"][0], np.hstack([np.eye(4), np.zeros((4, 1))]).astype(np.float32))
    assert not got["ent1_x"][1, [1, 3]].any()
    assert not got["txn2_mask"].any() and (got["txn2_id"] == -1).all() and not got["txn2_x"].any()
    assert not got["ent3_mask"].any() and (got["ent3_id"] == -1).all() and not got["ent3_x"].any()
    np.testing.assert_array_equal(got["target_x"][:, 3], [0, 0])  # the target's own age
    assert_same(got, reference_sample([], q, 3))


def test_shapes_and_config():
    s = make_sampler(7, "uniform", seed=2**64 - 1, retention_ms=DAY)
    assert s.config == _core.SamplerConfig(fanout=7, strategy="uniform", seed=2**64 - 1, retention_ms=DAY)
    assert s.config.strategy == "uniform" and s.config.fanout == 7 and s.config.seed == 2**64 - 1
    assert s.shape == {
        "target_x": (5,),
        "ent1_x": (4, 5),
        "ent1_mask": (4,),
        "txn2_x": (4, 7, 5),
        "txn2_mask": (4, 7),
        "ent3_x": (4, 7, 4, 5),
        "ent3_mask": (4, 7, 4),
        "ent1_id": (4,),
        "txn2_id": (4, 7),
        "ent3_id": (4, 7, 4),
    }
    assert _core.Sampler().config == _core.SamplerConfig()
    assert _core.SamplerConfig().fanout == 10 and _core.SamplerConfig().strategy == "most_recent"
    got = s.sample(_core.Store(), np.zeros(0, TXN_DTYPE))
    assert {k: v.shape for k, v in got.items()} == {k: (0, *v) for k, v in s.shape.items()}
    import pickle

    assert pickle.loads(pickle.dumps(s.config)) == s.config


@pytest.mark.parametrize("fanout", [0, -1, 257])
def test_bad_fanout(fanout):
    with pytest.raises(_core.FraudError, match=rf"fanout: must be in 1\.\.256, got {fanout}") as e:
        _core.SamplerConfig(fanout=fanout)
    assert e.value.status == "FRAUD_STATUS_INVALID_ARGUMENT"


def test_bad_strategy_and_retention():
    with pytest.raises(_core.FraudError, match="must be one of 'most_recent', 'uniform'; got 'newest'"):
        _core.SamplerConfig(strategy="newest")
    with pytest.raises(_core.FraudError, match="retention_ms: must be >= 0"):
        _core.SamplerConfig(retention_ms=-5)


def test_bad_inputs():
    s = make_sampler()
    with pytest.raises(TypeError, match="store: expected a libfraud._core.Store"):
        s.sample(object(), np.zeros(1, TXN_DTYPE))
    bad = np.zeros(1, TXN_DTYPE)
    bad["amount"] = 1.0
    bad["country"] = 840
    bad["entity_id"] = [1, -7, 1, 1]
    with pytest.raises(_core.FraudError, match=r"transaction 0 \(txn_id=0\): entity_id\[device\]"):
        s.sample(_core.Store(), bad)
    with pytest.raises(ValueError, match="records: expected"):
        s.sample(_core.Store(), np.zeros(3, np.float64))


def test_retention_refusal_names_the_times():
    stream = random_stream(2, n=50)
    store = store_with(stream)
    wm = int(stream["timestamp_ms"][-1])
    s = make_sampler(retention_ms=HOUR)
    q = stream[-1:].copy()
    q["timestamp_ms"] = wm - HOUR
    s.sample(store, q)  # exactly at the edge: kept
    q["timestamp_ms"] = wm - HOUR - 1
    q["txn_id"] = 424242
    msg = rf"txn_id=424242: timestamp_ms {wm - HOUR - 1} is older than the retained history: watermark_ms {wm} - retention_ms {HOUR} = {wm - HOUR}"
    with pytest.raises(_core.FraudError, match=msg) as e:
        s.sample(store, q)
    assert e.value.status == "FRAUD_STATUS_OUT_OF_RETENTION"
    # Without retention the same target is sampled.
    make_sampler().sample(store, q)


def test_time_sample_runs():
    stream = random_stream(1, n=100)
    ns = make_sampler().time_sample(store_with(stream), stream, repeats=2)
    assert ns.shape == (2, 100) and ns.dtype == np.int64 and (ns >= 0).all()
