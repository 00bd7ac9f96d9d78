"""Temporal neighbourhood sampler: the C++ sampler against a brute-force reference, for schemas of
1, 2, 4 and 7 entity types, with and without graph fields.

The reference is written for clarity, not speed: for each target it filters the stored events of
each entity by time. Its floats are computed in float64 with Python's math (the same libm as the
core) and rounded once to float32, as the core does, so features are compared bitwise. The Uniform
draw is re-implemented from its definition (splitmix64 + Floyd's algorithm, sampler.cpp), and also
checked for the properties that matter whatever the hash (earlier, distinct, counted).

Shapes, for a schema of E entity types and a sampler of fanout K with G graph fields
(cpp/src/sampler/neighbourhood.h): txn node features Ft = 4 + G, [log1p(amount), sin(2 pi h / 24),
cos(2 pi h / 24), log1p(age_s)] (h the UTC hour, whatever the schema's timezone), then each graph
field's value (a numeric, or a categorical code, as float; missing = 0). The pre-generic sampler had
a fixed fifth feature mcc / 10000; it is gone (mcc is a graph field like any other now). Entity node
features: one-hot type (E), log1p(degree).
"""

import json
import math

import numpy as np
import pytest

from libfraud import _core
from libfraud.data.declared import load_preset
from libfraud.events import EventArrays
from random_streams import random_events, random_schema

HOUR = 3_600_000
DAY = 24 * HOUR
FLOAT_KEYS = ["target_x", "ent1_x", "ent1_mask", "txn2_x", "txn2_mask", "ent3_x", "ent3_mask"]
ID_KEYS = ["ent1_id", "txn2_id", "ent3_id"]
M64 = (1 << 64) - 1
ENTITY_COUNTS = [1, 2, 4, 7]


# --- reference -------------------------------------------------------------------------------


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def uniform_choice(seed, event_id, entity_type, n, k):
    """k distinct indices of [0, n) (k < n), newest (largest) first: Floyd's algorithm."""
    key = splitmix64(splitmix64(splitmix64(seed) ^ (event_id & M64)) ^ entity_type)
    chosen = []
    for c, j in enumerate(range(n - k, n)):
        r = (splitmix64((key + c) & M64) * (j + 1)) >> 64
        chosen.append(j if r in chosen else r)
    return sorted(chosen, reverse=True)


class Stream:
    """Events as Python rows, and the graph fields' columns (numeric or categorical) of a schema."""

    def __init__(self, schema, events, graph_fields=()):
        numeric = [x["name"] for x in schema["numeric"]]
        categorical = [x["name"] for x in schema["categorical"]]
        self.n = len(events)
        self.G = len(graph_fields)
        self.event_id = [int(x) for x in events.event_id]
        self.time = [int(x) for x in events.time_ms]
        self.amount = [float(x) for x in events.amount]
        self.ids = [[int(x) for x in row] for row in events.entity_id]
        cols = []
        for g in graph_fields:
            if g in numeric:
                v = events.numeric[:, numeric.index(g)]
                cols.append([0.0 if math.isnan(x) else float(x) for x in v])  # missing = 0
            else:
                # A code as float32 through double (as the feature plan converts it); missing (-1) = 0.
                c = events.categorical[:, categorical.index(g)]
                f32 = np.where(c == -1, 0, c).astype(np.float64).astype(np.float32)  # via double, as the core
                cols.append([float(x) for x in f32])
        self.graph = [list(r) for r in zip(*cols)] if cols else [[] for _ in range(self.n)]


def txn_features(s, i, t):
    ts = s.time[i]
    hour = (ts % DAY) // HOUR  # floor: right before 1970 too
    age_s = (t - ts) / 1000
    return [
        math.log1p(s.amount[i]),
        math.sin(2 * math.pi * hour / 24),
        math.cos(2 * math.pi * hour / 24),
        math.log1p(age_s),
    ] + s.graph[i]


def entity_features(E, entity_type, degree):
    x = [0.0] * (E + 1)
    x[entity_type] = 1.0
    x[E] = math.log1p(degree)
    return x


def to_float32(a):
    with np.errstate(over="ignore"):  # a 1e200 graph value is inf in float32, as in the core
        return a.astype(np.float32)


def reference_sample(stored, queries, E, fanout, strategy="most_recent", seed=0):
    """The sampled arrays of each query (a Stream) against `stored` (a Stream, in append order)."""
    B, K = queries.n, fanout
    Ft = 4 + queries.G
    out = {
        "target_x": np.zeros((B, Ft)),
        "ent1_x": np.zeros((B, E, E + 1)),
        "ent1_mask": np.zeros((B, E)),
        "txn2_x": np.zeros((B, E, K, Ft)),
        "txn2_mask": np.zeros((B, E, K)),
        "ent3_x": np.zeros((B, E, K, E, E + 1)),
        "ent3_mask": np.zeros((B, E, K, E)),
        "ent1_id": np.full((B, E), -1),
        "txn2_id": np.full((B, E, K), -1),
        "ent3_id": np.full((B, E, K, E), -1),
    }
    by_entity = {}  # (type, id) -> stored rows, in append order
    for j in range(stored.n):
        for e, x in enumerate(stored.ids[j]):
            if x >= 0:
                by_entity.setdefault((e, x), []).append(j)

    def earlier(entity_type, entity_id, t):
        return [j for j in by_entity.get((entity_type, entity_id), []) if stored.time[j] < t]

    degree_memo = {}

    def degree(entity_type, entity_id, t):
        key = (entity_type, entity_id, t)
        if key not in degree_memo:
            degree_memo[key] = len(earlier(entity_type, entity_id, t))
        return degree_memo[key]

    for b in range(B):
        t = queries.time[b]
        out["target_x"][b] = txn_features(queries, b, t)
        for e in range(E):
            eid = queries.ids[b][e]
            if eid < 0:
                continue
            hist = earlier(e, eid, t)  # oldest first
            out["ent1_x"][b, e] = entity_features(E, e, len(hist))
            out["ent1_mask"][b, e] = 1
            out["ent1_id"][b, e] = eid
            n = len(hist)
            if strategy == "most_recent" or n <= K:
                picks = list(range(n - 1, max(n - K, 0) - 1, -1))
            else:
                picks = uniform_choice(seed, queries.event_id[b], e, n, K)
            for k, j in enumerate(picks):
                s = hist[j]
                out["txn2_x"][b, e, k] = txn_features(stored, s, t)
                out["txn2_mask"][b, e, k] = 1
                out["txn2_id"][b, e, k] = stored.event_id[s]
                for f in range(E):
                    fid = stored.ids[s][f]
                    if fid < 0:
                        continue
                    out["ent3_x"][b, e, k, f] = entity_features(E, f, degree(f, fid, stored.time[s]))
                    out["ent3_mask"][b, e, k, f] = 1
                    out["ent3_id"][b, e, k, f] = fid
    return {k: to_float32(v) if k in FLOAT_KEYS else v.astype(np.int64) for k, v in out.items()}


# --- data ------------------------------------------------------------------------------------


class Case:
    """A random schema of E entity types, its events, a store of them and the graph fields."""

    def __init__(self, seed, E, n=300, graph=True):
        rng = np.random.default_rng(1000 * E + seed)
        schema = random_schema(rng, n_entities=E)
        # The last entity type is optional, so that absent entities occur (with E = 1: events of
        # no entity at all).
        schema["entities"][-1]["required"] = False
        self.schema, self.E = schema, E
        events = random_events(rng, schema, n)
        ids = events.entity_id
        # Entity type 0: a few busy ids (history > K), many quiet ones (< K), once-seen ones.
        singletons = 1_000_000 + np.arange(n)
        ids[:, 0] = np.where(rng.random(n) < 0.1, singletons, rng.zipf(1.5, n) % 60)
        for e, ent in enumerate(schema["entities"]):
            if not ent["required"] and not (ids[:, e] == -1).any():
                ids[rng.random(n) < 0.2, e] = -1
        self.events = events
        fields = [x["name"] for x in schema["numeric"] + schema["categorical"]]
        self.graph_fields = [str(x) for x in rng.permutation(fields)[: int(rng.integers(0, len(fields) + 1))]] \
            if graph else []
        self.spec = {"format": "libfraud-features", "version": 1, "max_scan": 1024,
                     "features": [{"name": "n", "kind": "window", "entity": schema["entities"][0]["name"],
                                   "agg": "count", "window_ms": HOUR, "offset_ms": 0}]}

    def store(self, events=None):
        store = self.empty_store()
        store.ingest(*(self.events if events is None else events).args())
        return store

    def empty_store(self):
        return _core.Store(json.dumps(self.schema), json.dumps(self.spec))

    def sampler(self, fanout=10, strategy="most_recent", seed=0, retention_ms=0, store=None):
        config = _core.SamplerConfig(fanout=fanout, strategy=strategy, seed=seed, retention_ms=retention_ms)
        return _core.Sampler(store or self.empty_store(), config, self.graph_fields)

    def stream(self, events=None):
        return Stream(self.schema, self.events if events is None else events, self.graph_fields)


def shifted(events, event_id_offset=0, dt=0):
    return EventArrays.make(events.event_id + event_id_offset, events.time_ms + dt, events.amount,
                            events.entity_id, events.numeric, events.categorical)


def concat(*parts):
    return EventArrays.make(*(np.concatenate([getattr(p, k) for p in parts])
                              for k in ("event_id", "time_ms", "amount", "entity_id", "numeric",
                                        "categorical")))


def assert_same(got, want):
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def history_ts(events):
    """{(entity type, id): sorted times} of the events."""
    h = {}
    for i in range(len(events)):
        for e, x in enumerate(events.entity_id[i]):
            if x >= 0:
                h.setdefault((e, int(x)), []).append(int(events.time_ms[i]))
    return h


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
@pytest.mark.parametrize("fanout", [3, 10])
@pytest.mark.parametrize("E", ENTITY_COUNTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(seed, E, fanout, strategy):
    case = Case(seed, E)
    store = case.store()
    sampler = case.sampler(fanout, strategy, seed=seed * 31 + 5)
    assert sampler.entity_types == E and sampler.txn_features == 4 + len(case.graph_fields)
    got = sampler.sample(store, *case.events.args())
    want = reference_sample(case.stream(), case.stream(), E, fanout, strategy, seed=seed * 31 + 5)
    assert_same(got, want)
    # The stream exercises what it claims to.
    assert (np.diff(case.events.time_ms) == 0).sum() > 20, "equal timestamps"
    degrees = np.expm1(got["ent1_x"][..., E].astype(np.float64)).round()
    present = got["ent1_mask"] == 1
    assert (degrees[present] > fanout).any() and ((degrees[present] > 0) & (degrees[present] < fanout)).any()
    assert (present & (degrees == 0)).any(), "cold entities"
    assert (got["ent1_mask"] == 0).any(), "absent"
    if E > 1:  # with one type, a sampled event's entity is the hop-1 entity itself
        assert (got["ent3_mask"][got["txn2_mask"] == 1] == 0).any(), "absent at hop 3"


def test_the_cases_cover_graph_fields_and_extremes():
    """The parametrised cases of test_matches_reference have numeric and categorical graph fields,
    with missing values, huge values (inf in float32) and a code that float32(double(code)) and
    float32(code) round apart (2**60 + 2**36 + 1), streams before 1970 and schemas not in UTC."""
    seen = set()
    for E in ENTITY_COUNTS:
        for seed in (0, 1):
            case = Case(seed, E)
            numeric = [x["name"] for x in case.schema["numeric"]]
            categorical = [x["name"] for x in case.schema["categorical"]]
            for g in case.graph_fields:
                if g in numeric:
                    col = case.events.numeric[:, numeric.index(g)]
                    seen.add("numeric")
                    if np.isnan(col).any():
                        seen.add("missing numeric")
                    if (np.abs(col) > 3.4e38).any():
                        seen.add("huge numeric")
                else:
                    col = case.events.categorical[:, categorical.index(g)]
                    seen.add("categorical")
                    if (col == -1).any():
                        seen.add("missing code")
                    if (col == 2 ** 60 + 2 ** 36 + 1).any():
                        seen.add("double rounding code")
            if (case.events.time_ms < 0).any():
                seen.add("before 1970")
            if case.schema["time"]["utc_offsets"] != [[-(2 ** 63), 0]]:
                seen.add("not UTC")
            if case.schema["amount"] is None:
                seen.add("no amount")
    assert seen >= {"numeric", "categorical", "missing numeric", "huge numeric", "double rounding code",
                    "before 1970", "not UTC", "no amount"}, seen


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
@pytest.mark.parametrize("E", ENTITY_COUNTS)
def test_scoring_in_the_past_and_off_stream_times(E, strategy):
    """Queries that are not in the store, at times inside the stream: only the strict past counts."""
    case = Case(4, E)
    store = case.store()
    rng = np.random.default_rng(9)
    pick = rng.choice(len(case.events), 60, replace=False)
    q = case.events.take(pick)
    queries = EventArrays.make(q.event_id ^ (1 << 62), q.time_ms + rng.choice([-1, 0, 1, HOUR], len(q)),
                               q.amount, q.entity_id, q.numeric, q.categorical)
    queries.entity_id[:10, 0] = 77_777_777  # never seen
    got = case.sampler(5, strategy, seed=1).sample(store, *queries.args())
    assert_same(got, reference_sample(case.stream(), case.stream(queries), E, 5, strategy, seed=1))


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
@pytest.mark.parametrize("E,seed", [(1, 0), (4, 5), (7, 0)])
def test_streaming_equals_replay(seed, E, strategy):
    """Sampling each event right before ingesting it == ingesting all, then sampling (bitwise)."""
    case = Case(seed, E, n=250)
    sampler = case.sampler(4, strategy, seed=seed)
    live = case.empty_store()
    parts = []
    for i in range(len(case.events)):
        one = case.events.slice(i, i + 1)
        parts.append(sampler.sample(live, *one.args()))
        live.ingest(*one.args())
    one_by_one = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    replay = sampler.sample(case.store(), *case.events.args())
    assert_same(replay, one_by_one)


@pytest.mark.parametrize("strategy", ["most_recent", "uniform"])
@pytest.mark.parametrize("E", [2, 7])
def test_no_future_leakage(E, strategy):
    case = Case(7, E)
    stream = case.events
    later = random_events(np.random.default_rng(107), case.schema, 200)
    # Ties the last time; other ids (the random ones are < 2**62).
    later = EventArrays.make(np.arange(len(later)) + 2 ** 62,
                             later.time_ms + (int(stream.time_ms[-1]) - int(later.time_ms[0])),
                             later.amount, later.entity_id, later.numeric, later.categorical)
    later.entity_id[:, 0] = stream.entity_id[:200, 0]  # the busy ids go on
    full = concat(stream, later)
    sampler = case.sampler(6, strategy, seed=3)
    got = sampler.sample(case.store(full), *full.args())
    # A prefix of the stream samples the same whatever came after it.
    prefix = sampler.sample(case.store(stream), *stream.args())
    assert_same({k: v[: len(stream)] for k, v in got.items()}, prefix)
    # And directly: no sampled event at or after t, no hop-3 degree counting one.
    ts_of = {int(i): int(t) for i, t in zip(full.event_id, full.time_ms)}
    hist = history_ts(full)
    t = full.time_ms
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
                assert deg == sum(1 for x in hist.get((e, int(full.entity_id[b, e])), []) if x < t[b])


@pytest.mark.parametrize("E", [1, 4])
def test_uniform_properties(E):
    case = Case(3, E, n=400)
    stream = case.events
    store = case.store()
    K = 5
    a = case.sampler(K, "uniform", seed=11)
    got = a.sample(store, *stream.args())
    time_of = {int(i): int(t) for i, t in zip(stream.event_id, stream.time_ms)}
    row_of = {int(i): j for j, i in enumerate(stream.event_id)}
    for b in range(len(stream)):
        t = int(stream.time_ms[b])
        for e in range(E):
            eid = int(stream.entity_id[b, e])
            ids = [int(i) for i in got["txn2_id"][b, e] if i >= 0]
            np.testing.assert_array_equal(got["txn2_mask"][b, e], [1] * len(ids) + [0] * (K - len(ids)))
            if eid < 0:
                assert ids == []
                continue
            available = [j for j in range(len(stream)) if int(stream.entity_id[j, e]) == eid and int(stream.time_ms[j]) < t]
            assert len(ids) == min(K, len(available))
            assert len(set(ids)) == len(ids)
            for i in ids:
                assert int(stream.entity_id[row_of[i], e]) == eid and time_of[i] < t
            times = [time_of[i] for i in ids]
            assert times == sorted(times, reverse=True), "newest first"
    # Deterministic for a seed; other seeds draw otherwise; the batch around a target changes nothing.
    assert_same(a.sample(store, *stream.args()), got)
    other = case.sampler(K, "uniform", seed=12).sample(store, *stream.args())
    assert (other["txn2_id"] != got["txn2_id"]).any()
    assert (case.sampler(K, "uniform", seed=11).sample(store, *stream.args())["txn2_id"] == got["txn2_id"]).all()
    order = np.random.default_rng(0).permutation(len(stream))[:100]
    sub = a.sample(store, *stream.take(order).args())
    assert_same(sub, {k: v[order] for k, v in got.items()})
    # It does draw among the whole history, not only the newest.
    most_recent = case.sampler(K, "most_recent").sample(store, *stream.args())
    assert (most_recent["txn2_id"] != got["txn2_id"]).any()


def payments_store(events=None):
    schema, spec = load_preset("payments")
    store = _core.Store(json.dumps(schema.to_json()), json.dumps(spec.to_json()))
    if events is not None:
        store.ingest(*events.args())
    return store, schema.to_json()


def test_cold_start_and_empty_store():
    q = EventArrays.make([1, 2], [5_000, 6_000], [12.5, 3.0], [[1, 2, 3, 4], [1, -1, 3, -1]],
                         categorical=[[840, 5411], [840, -1]])
    store, schema = payments_store()
    got = _core.Sampler(store, _core.SamplerConfig(fanout=3)).sample(store, *q.args())
    np.testing.assert_array_equal(got["ent1_mask"], [[1, 1, 1, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(got["ent1_id"], [[1, 2, 3, 4], [1, -1, 3, -1]])
    np.testing.assert_array_equal(got["ent1_x"][0], np.hstack([np.eye(4), np.zeros((4, 1))]).astype(np.float32))
    assert not got["ent1_x"][1, [1, 3]].any()
    assert not got["txn2_mask"].any() and (got["txn2_id"] == -1).all() and not got["txn2_x"].any()
    assert not got["ent3_mask"].any() and (got["ent3_id"] == -1).all() and not got["ent3_x"].any()
    np.testing.assert_array_equal(got["target_x"][:, 3], [0, 0])  # the target's own age
    assert got["target_x"].shape == (2, 4)  # no mcc / 10000 any more
    assert_same(got, reference_sample(Stream(schema, EventArrays.make([], [], [], np.zeros((0, 4)), None,
                                                                       np.zeros((0, 2)))),
                                      Stream(schema, q), 4, 3))
    # mcc as a graph field: its code as a float, a missing code 0 (it was mcc / 10000, built in).
    with_mcc = _core.Sampler(store, _core.SamplerConfig(fanout=3), ["mcc", "country"])
    got = with_mcc.sample(store, *q.args())
    np.testing.assert_array_equal(got["target_x"][:, 4:], [[5411, 840], [0, 840]])
    assert_same(got, reference_sample(Stream(schema, EventArrays.make([], [], [], np.zeros((0, 4)), None,
                                                                       np.zeros((0, 2))), ["mcc", "country"]),
                                      Stream(schema, q, ["mcc", "country"]), 4, 3))


def test_payments_graph_fields_match_reference():
    """The payments schema with mcc and country as graph fields, on a busy stream."""
    rng = np.random.default_rng(21)
    n = 300
    ts = np.sort(1_700_000_000_000 + rng.integers(0, 3 * DAY, n))
    ids = np.stack([rng.zipf(1.5, n) % 60, np.where(rng.random(n) < 0.25, -1, rng.integers(0, 12, n)),
                    rng.integers(0, 15, n), np.where(rng.random(n) < 0.3, -1, rng.integers(0, 8, n))], axis=1)
    codes = np.stack([np.full(n, 840), rng.choice([5411, 5812, 5999, 0, 9999, 4829, -1], n)], axis=1)
    events = EventArrays.make(rng.permutation(n) * 7 + 1000, ts, np.round(rng.lognormal(3.5, 1.2, n), 2),
                              ids, categorical=codes)
    store, schema = payments_store(events)
    for strategy in ("most_recent", "uniform"):
        sampler = _core.Sampler(store, _core.SamplerConfig(fanout=5, strategy=strategy, seed=4), ["mcc"])
        got = sampler.sample(store, *events.args())
        s = Stream(schema, events, ["mcc"])
        assert_same(got, reference_sample(s, s, 4, 5, strategy, seed=4))


def test_shapes_and_config():
    case = Case(0, 7)
    case.graph_fields = [x["name"] for x in case.schema["numeric"] + case.schema["categorical"]][:2]
    G = len(case.graph_fields)
    s = case.sampler(7, "uniform", seed=2**64 - 1, retention_ms=DAY)
    assert s.config == _core.SamplerConfig(fanout=7, strategy="uniform", seed=2**64 - 1, retention_ms=DAY)
    assert s.config.strategy == "uniform" and s.config.fanout == 7 and s.config.seed == 2**64 - 1
    assert s.graph_fields == case.graph_fields and s.entity_types == 7 and s.txn_features == 4 + G
    Ft = 4 + G
    assert s.shape == {
        "target_x": (Ft,),
        "ent1_x": (7, 8),
        "ent1_mask": (7,),
        "txn2_x": (7, 7, Ft),
        "txn2_mask": (7, 7),
        "ent3_x": (7, 7, 7, 8),
        "ent3_mask": (7, 7, 7),
        "ent1_id": (7,),
        "txn2_id": (7, 7),
        "ent3_id": (7, 7, 7),
    }
    store, _ = payments_store()
    default = _core.Sampler(store)
    assert default.config == _core.SamplerConfig() and default.graph_fields == []
    assert default.shape["txn2_x"] == (4, 10, 4) and default.shape["ent3_x"] == (4, 10, 4, 5)
    assert _core.SamplerConfig().fanout == 10 and _core.SamplerConfig().strategy == "most_recent"
    empty = case.events.slice(0, 0)
    got = s.sample(case.empty_store(), *empty.args())
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
    store, _ = payments_store()
    s = _core.Sampler(store)
    one = EventArrays.make([0], [0], [1.0], [[1, -7, 1, 1]], categorical=[[840, 5411]])
    with pytest.raises(TypeError, match="store: expected a libfraud._core.Store"):
        s.sample(object(), *one.args())
    with pytest.raises(TypeError, match="store: expected a libfraud._core.Store"):
        _core.Sampler(object())
    # Messages say "event i (event_id=...)" (they said "transaction i (txn_id=...)").
    with pytest.raises(_core.FraudError, match=r"event 0 \(event_id=0\): entity_id\[device\]"):
        s.sample(store, *one.args())
    with pytest.raises(ValueError, match=r"entity_id: expected a C-contiguous int64 array of shape \(1, 4\)"):
        s.sample(store, one.event_id, one.time_ms, one.amount, one.entity_id[:, :3].copy(), one.numeric,
                 one.categorical)
    with pytest.raises(ValueError, match="amount: expected a C-contiguous float64"):
        s.sample(store, one.event_id, one.time_ms, one.amount.astype(np.float32), one.entity_id,
                 one.numeric, one.categorical)
    # A store of another schema, and graph fields that are not numeric or categorical fields.
    other = Case(0, 2)
    with pytest.raises(ValueError, match="store: its schema is not the one this sampler was built for"):
        s.sample(other.store(), *EventArrays.make([0], [0], [1.0], [[1, 2, 1, 1]], categorical=[[840, 5411]]).args())
    for bad in (["nope"], ["card"], ["amount"]):
        with pytest.raises(ValueError, match=f"graph field '{bad[0]}' is not a numeric or categorical field"):
            _core.Sampler(store, _core.SamplerConfig(), bad)


def test_retention_refusal_names_the_times():
    case = Case(2, 4, n=50)
    store = case.store()
    wm = int(case.events.time_ms[-1])
    s = case.sampler(retention_ms=HOUR)
    last = case.events.slice(49, 50)
    q = EventArrays.make(last.event_id, [wm - HOUR], last.amount, last.entity_id, last.numeric, last.categorical)
    s.sample(store, *q.args())  # exactly at the edge: kept
    q = EventArrays.make([424242], [wm - HOUR - 1], last.amount, last.entity_id, last.numeric, last.categorical)
    msg = rf"event_id=424242: time_ms {wm - HOUR - 1} is older than the retained history: watermark_ms {wm} - retention_ms {HOUR} = {wm - HOUR}"
    with pytest.raises(_core.FraudError, match=msg) as e:
        s.sample(store, *q.args())
    assert e.value.status == "FRAUD_STATUS_OUT_OF_RETENTION"
    # Without retention the same target is sampled.
    case.sampler().sample(store, *q.args())


def test_time_sample_runs():
    case = Case(1, 2, n=100)
    ns = case.sampler().time_sample(case.store(), *case.events.args(), repeats=2)
    assert ns.shape == (2, 100) and ns.dtype == np.int64 and (ns >= 0).all()
