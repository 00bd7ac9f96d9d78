"""The generic feature engine (libfraud._core.Store, a schema and a feature spec as JSON) against the
brute-force reference (tests/feature_reference.py, whose docstring states every rule, retention
included) on random streams (tests/random_streams.py).

Binding API under test:
    store = _core.Store(schema_json: str, spec_json: str, expected_events=0, retention_ms=0,
                        max_history_per_entity=0)
    store.feature_names                          list[str], the spec's names in order
    store.replay(*events.args(), *labels.args()) float32 [n, F]: each event's features computed
                                                 just before it is ingested, labels as they become known
    store.features(*events.args())               float32 [n, F], scores without storing
    store.ingest(*events.args()); store.label(*labels.args())
    errors: _core.FraudError with .status, e.g. "FRAUD_STATUS_OUT_OF_ORDER"

Tolerance (core vs reference, per feature, float32 outputs):
    EXACT (bit for bit, NaN exactly where the reference has NaN): pass-throughs (amount, numeric,
    categorical), calendar, window count, distinct, novelty, changed, label fraud_count and
    labelled_count (feature_reference.feature_is_exact).
    TOLERANT (everything else: log_amount, window sum/mean/std/min/max, time_since_last,
    amount_vs_history, label fraud_rate): the same NaN pattern, the same infinities (sign
    included), and for finite values |core - ref| <= 1e-6 * max(1, |ref|), computed in float64 from
    the two float32 values.
    Core vs core (replay vs serving one by one, vs scoring in the past, prefix vs whole stream) is
    bit for bit: one implementation must not disagree with itself.

The 32-seed sweep is marked slow; the whole file runs well under 60 s.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from feature_reference import INT64_MIN, feature_is_exact, reference_features
from libfraud.events import EventArrays, LabelArrays
from random_streams import random_case

_core = pytest.importorskip("libfraud._core", reason="needs the compiled core")
if not hasattr(getattr(_core, "Store", None), "replay"):
    pytest.skip("libfraud._core.Store has no replay(): the generic feature engine is not built",
                allow_module_level=True)

RTOL = 1e-6
HOUR = 3_600_000
DAY = 24 * HOUR
NO_LABELS = LabelArrays.make(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64))


def make_store(schema, spec, **kw):
    return _core.Store(json.dumps(schema), json.dumps(spec), **kw)


# --- comparisons ------------------------------------------------------------------------------

def _bits_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per element: both NaN, or the same float32 bits."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return (np.isnan(a) & np.isnan(b)) | (a.view(np.uint32) == b.view(np.uint32))


def _close(core: np.ndarray, ref: np.ndarray) -> np.ndarray:
    c = core.astype(np.float64)
    r = ref.astype(np.float64)
    nan_c, nan_r = np.isnan(c), np.isnan(r)
    inf_r = np.isinf(r)
    with np.errstate(invalid="ignore"):
        within = np.abs(c - r) <= RTOL * np.maximum(1.0, np.abs(r))
    return np.where(nan_r, nan_c, np.where(inf_r, c == r, ~nan_c & within))


def _describe(bad_rows, k, f, core, ref, events) -> str:
    lines = [f"feature {k} {json.dumps(f)}: {len(bad_rows)} rows differ"]
    for i in bad_rows[:4]:
        lines.append(f"  row {i} (t={int(events.time_ms[i])}, entity_id={events.entity_id[i].tolist()}):"
                     f" core {core[i, k]!r} ref {ref[i, k]!r}")
    return "\n".join(lines)


def assert_matches_reference(core, ref, spec, events, context=""):
    assert core.dtype == np.float32, core.dtype
    assert core.shape == ref.shape, (core.shape, ref.shape)
    problems = []
    for k, f in enumerate(spec["features"]):
        ok = _bits_equal(core[:, k], ref[:, k]) if feature_is_exact(f) else _close(core[:, k], ref[:, k])
        if not np.all(ok):
            problems.append(_describe(np.flatnonzero(~ok), k, f, core, ref, events))
    assert not problems, f"{context}\n" + "\n".join(problems)


def assert_bitwise(a, b, spec, events, context=""):
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32, (a.shape, b.shape, a.dtype, b.dtype)
    problems = []
    for k, f in enumerate(spec["features"]):
        ok = _bits_equal(a[:, k], b[:, k])
        if not np.all(ok):
            problems.append(_describe(np.flatnonzero(~ok), k, f, a, b, events))
    assert not problems, f"{context}\n" + "\n".join(problems)


def take_labels(labels: LabelArrays, mask) -> LabelArrays:
    return labels.take(np.flatnonzero(mask))


def rows_of(events: EventArrays, labels: LabelArrays) -> np.ndarray:
    """The stream index of each label's event."""
    row = {int(x): i for i, x in enumerate(events.event_id)}
    return np.array([row[int(e)] for e in labels.event_id], dtype=np.int64)


# --- core == reference ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_feature_names_are_the_specs(seed):
    schema, spec, _, _ = random_case(seed, n=10)
    assert list(make_store(schema, spec).feature_names) == [f["name"] for f in spec["features"]]


def _check_seed(seed, n_range, retention_ms=0, max_history_per_entity=0):
    schema, spec, events, labels = random_case(seed, n_range=n_range)
    kw = dict(retention_ms=retention_ms, max_history_per_entity=max_history_per_entity)
    ref = reference_features(schema, spec, events, labels, **kw)
    core = make_store(schema, spec, expected_events=len(events), **kw).replay(*events.args(),
                                                                              *labels.args())
    assert_matches_reference(core, ref, spec, events, f"seed {seed}, n={len(events)}, {kw}")
    return schema, spec, events, labels, core


@pytest.mark.parametrize("seed", range(6))
def test_core_matches_reference_quick(seed):
    _check_seed(seed, (300, 600))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 132))
def test_core_matches_reference(seed):
    _check_seed(seed, (300, 2000))


@pytest.mark.parametrize("retention_ms,max_history_per_entity", [
    (1, 0), (HOUR, 0), (DAY, 0), (0, 1), (0, 3), (6 * HOUR, 5), (30 * DAY, 2)])
@pytest.mark.parametrize("seed", range(200, 203))
def test_retention_variants(seed, retention_ms, max_history_per_entity):
    """replay under retention == the reference's retention rule; and serving one event at a time
    (labels applied right after their event) == replay."""
    schema, spec, events, labels, replayed = _check_seed(seed, (300, 800), retention_ms,
                                                         max_history_per_entity)
    store = make_store(schema, spec, retention_ms=retention_ms,
                       max_history_per_entity=max_history_per_entity)
    label_rows = rows_of(events, labels)
    served = np.empty_like(replayed)
    for i in range(len(events)):
        one = events.slice(i, i + 1)
        served[i] = store.features(*one.args())[0]
        store.ingest(*one.args())
        mine = label_rows == i
        if np.any(mine):
            store.label(*take_labels(labels, mine).args())
    assert_bitwise(served, replayed, spec, events, f"seed {seed} retention {retention_ms} "
                                                   f"max_history {max_history_per_entity}")


# --- train == serve ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(300, 304))
def test_replay_equals_serving_one_by_one(seed):
    """Serving: features() then ingest() for each event; each label applied once known (label
    time <= the next event's time, so labels known exactly at t arrive before t is scored, and must
    not count), in label-time order."""
    schema, spec, events, labels = random_case(seed, n_range=(300, 800))
    replayed = make_store(schema, spec).replay(*events.args(), *labels.args())
    store = make_store(schema, spec)
    label_rows = rows_of(events, labels)
    order = np.argsort(labels.label_time_ms, kind="stable")
    applied = np.zeros(len(labels), dtype=bool)
    served = np.empty_like(replayed)
    for i in range(len(events)):
        t = int(events.time_ms[i])
        due = [j for j in order.tolist() if not applied[j] and label_rows[j] < i
               and int(labels.label_time_ms[j]) <= t]
        for j in due:  # one at a time, in label-time order
            store.label(*labels.take(np.array([j])).args())
            applied[j] = True
        one = events.slice(i, i + 1)
        served[i] = store.features(*one.args())[0]
        store.ingest(*one.args())
    assert_bitwise(served, replayed, spec, events, f"seed {seed}")
    assert_matches_reference(replayed, reference_features(schema, spec, events, labels), spec,
                             events, f"seed {seed}")


@pytest.mark.parametrize("seed", range(400, 404))
def test_scoring_in_the_past_equals_replay(seed):
    """With every event and every label stored (labels early, as in training), features() of any
    stored event's record sees only what came strictly before its time: the replay's row."""
    schema, spec, events, labels = random_case(seed, n_range=(300, 800))
    replayed = make_store(schema, spec).replay(*events.args(), *labels.args())
    store = make_store(schema, spec)
    store.ingest(*events.args())
    store.label(*labels.args())
    assert_bitwise(store.features(*events.args()), replayed, spec, events, f"seed {seed}")
    # scoring is read-only: a second pass gives the same
    assert_bitwise(store.features(*events.args()), replayed, spec, events, f"seed {seed} again")


# --- no leakage -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(500, 504))
def test_later_events_and_labels_never_change_earlier_features(seed):
    schema, spec, events, labels = random_case(seed, n_range=(300, 800))
    full = make_store(schema, spec).replay(*events.args(), *labels.args())
    times = events.time_ms
    n = len(events)
    # Cut inside a group of tied times when there is one (the tie after the cut must not leak).
    ties = np.flatnonzero(np.diff(times[n // 3: 2 * n // 3]) == 0)
    cut = n // 3 + int(ties[len(ties) // 2]) + 1 if len(ties) else n // 2
    label_rows = rows_of(events, labels)
    head = events.slice(0, cut)
    # All labels of the head's events, including those known at or after the head's last time...
    head_labels = take_labels(labels, label_rows < cut)
    prefix = make_store(schema, spec).replay(*head.args(), *head_labels.args())
    assert_bitwise(prefix, full[:cut], spec, head, f"seed {seed}, cut {cut}: later events leak")
    # ...and only those known strictly before the last head event: the same features.
    known = take_labels(labels, (label_rows < cut) & (labels.label_time_ms < times[cut - 1]))
    prefix_known = make_store(schema, spec).replay(*head.args(), *known.args())
    assert_bitwise(prefix_known, full[:cut], spec, head, f"seed {seed}, cut {cut}: labels leak")
    # Without any label, only label features may change.
    unlabelled = make_store(schema, spec).replay(*head.args(), *NO_LABELS.args())
    for k, f in enumerate(spec["features"]):
        if f["kind"] != "label":
            assert np.all(_bits_equal(unlabelled[:, k], full[:cut, k])), f


def test_labels_known_exactly_at_t_do_not_count():
    schema = {"format": "libfraud-schema", "version": 1, "name": "t",
              "event_id": {"column": "ID", "ids": "int"},
              "time": {"column": "T", "unit": "ms", "timezone": "UTC", "utc_offsets": [[INT64_MIN, 0]]},
              "amount": {"column": "A"},
              "entities": [{"name": "terminal", "column": "TERMINAL", "ids": "int", "required": True}],
              "numeric": [], "categorical": [], "label": None}
    spec = {"format": "libfraud-features", "version": 1, "max_scan": 1024,
            "features": [{"name": a, "kind": "label", "entity": "terminal", "agg": a,
                          "window_ms": DAY, "offset_ms": 0}
                         for a in ("fraud_count", "labelled_count", "fraud_rate")]}
    events = EventArrays.make([10, 11, 12, 13], [0, 100, 200, 200], [1.0, 1.0, 1.0, 1.0],
                              [[7], [7], [7], [7]])
    labels = LabelArrays.make([10, 11], [1, 1], [200, 199])  # at t of events 2, 3; 1 ms before
    core = make_store(schema, spec).replay(*events.args(), *labels.args())
    expected = np.array([[0, 0, np.nan], [0, 0, 0.0], [1, 1, 0.5], [1, 1, 0.5]], dtype=np.float32)
    assert np.all(_bits_equal(core, expected)), core
    assert np.all(_bits_equal(core, reference_features(schema, spec, events, labels)))


# --- targeted edges ---------------------------------------------------------------------------

def _one_entity_schema(numeric=()):
    return {"format": "libfraud-schema", "version": 1, "name": "t",
            "event_id": {"column": "ID", "ids": "int"},
            "time": {"column": "T", "unit": "ms", "timezone": "UTC", "utc_offsets": [[INT64_MIN, 0]]},
            "amount": {"column": "A"},
            "entities": [{"name": "card", "column": "CARD", "ids": "int", "required": True}],
            "numeric": [{"name": x, "column": x} for x in numeric], "categorical": [], "label": None}


def test_a_huge_value_leaving_the_window_leaves_an_exact_sum():
    schema = _one_entity_schema(numeric=["x"])
    feats = [{"name": f"{fld}_{a}", "kind": "window", "entity": "card", "agg": a, "field": fld,
              "window_ms": 25, "offset_ms": 0} for fld in ("amount", "x") for a in ("sum", "mean")]
    spec = {"format": "libfraud-features", "version": 1, "max_scan": 1024, "features": feats}
    events = EventArrays.make([1, 2, 3, 4], [0, 10, 20, 30], [1e200, 1.0, 2.0, 0.5], [[5]] * 4,
                              [[1e200], [0.1], [0.2], [0.7]])
    core = make_store(schema, spec).replay(*events.args(), *NO_LABELS.args())
    assert core[2, 0] == np.finfo(np.float32).max and core[2, 2] == np.finfo(np.float32).max  # saturated
    assert core[3].tolist() == [3.0, 1.5, np.float32(0.1 + 0.2), np.float32((0.1 + 0.2) / 2)]
    assert np.all(_bits_equal(core, reference_features(schema, spec, events, NO_LABELS)))


def test_features_do_not_store():
    schema, spec, events, labels = random_case(600, n=200)
    store = make_store(schema, spec)
    first = store.features(*events.args())
    again = store.features(*events.args())
    assert_bitwise(first, again, spec, events)
    store.ingest(*events.args())  # no DUPLICATE_TRANSACTION: features() stored nothing


def _status(excinfo) -> str:
    return getattr(excinfo.value, "status", None)


def test_errors_carry_a_status():
    schema = _one_entity_schema()
    spec = {"format": "libfraud-features", "version": 1, "max_scan": 1024,
            "features": [{"name": "fc", "kind": "label", "entity": "card", "agg": "fraud_count",
                          "window_ms": DAY, "offset_ms": 0}]}
    store = make_store(schema, spec)
    store.ingest(*EventArrays.make([1, 2], [100, 200], [1.0, 0.0], [[3], [3]]).args())

    def ingest(ids, times, amounts, entity, numeric=None):
        store.ingest(*EventArrays.make(ids, times, amounts, entity, numeric).args())

    with pytest.raises(_core.FraudError) as e:
        ingest([3], [150], [1.0], [[3]])
    assert _status(e) == "FRAUD_STATUS_OUT_OF_ORDER"
    with pytest.raises(_core.FraudError) as e:
        ingest([2], [300], [1.0], [[3]])
    assert _status(e) == "FRAUD_STATUS_DUPLICATE_TRANSACTION"
    for bad in ([[-1]], [[-7]]):  # a required entity absent; a negative id
        with pytest.raises(_core.FraudError) as e:
            ingest([4], [300], [1.0], bad)
        assert _status(e) == "FRAUD_STATUS_INVALID_TRANSACTION"
    for amount in (np.nan, np.inf, -1.0):
        with pytest.raises(_core.FraudError) as e:
            ingest([4], [300], [amount], [[3]])
        assert _status(e) == "FRAUD_STATUS_INVALID_TRANSACTION"

    def label(ids, values, times):
        store.label(*LabelArrays.make(ids, values, times).args())

    with pytest.raises(_core.FraudError) as e:
        label([99], [1], [500])
    assert _status(e) == "FRAUD_STATUS_UNKNOWN_EVENT"
    with pytest.raises(_core.FraudError) as e:
        label([1], [2], [500])
    assert _status(e) == "FRAUD_STATUS_INVALID_LABEL"
    with pytest.raises(_core.FraudError) as e:
        label([1], [1], [99])  # before its event
    assert _status(e) == "FRAUD_STATUS_INVALID_LABEL"
    with pytest.raises(_core.FraudError) as e:  # a refused batch applies nothing
        label([1, 99], [1, 1], [150, 150])
    probe = EventArrays.make([50], [10_000], [1.0], [[3]])
    assert store.features(*probe.args())[0, 0] == 0.0
    label([1], [1], [150])
    label([1], [1], [180])  # the same label again: a no-op
    assert store.features(*probe.args())[0, 0] == 1.0
    with pytest.raises(_core.FraudError) as e:
        label([1], [0], [190])
    assert _status(e) == "FRAUD_STATUS_LABEL_CONFLICT"


def test_bad_specs_are_refused():
    schema = _one_entity_schema()
    no_amount = dict(schema, amount=None)

    def spec(*features):
        return {"format": "libfraud-features", "version": 1, "max_scan": 1024, "features": list(features)}

    bad = [
        (no_amount, spec({"name": "a", "kind": "amount"})),
        (schema, spec({"name": "a", "kind": "nope"})),
        (schema, spec({"name": "a", "kind": "window", "entity": "nobody", "agg": "count",
                       "window_ms": 1000, "offset_ms": 0})),
        (schema, spec({"name": "a", "kind": "window", "entity": "card", "agg": "count",
                       "window_ms": 0, "offset_ms": 0})),
        (schema, spec({"name": "a", "kind": "numeric", "field": "missing_field"})),
    ]
    for sch, sp in bad:
        with pytest.raises(_core.FraudError):
            make_store(sch, sp)
    with pytest.raises(_core.FraudError):
        _core.Store("{not json", json.dumps(spec({"name": "a", "kind": "amount"})))
