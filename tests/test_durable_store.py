"""Durable, bounded store through the Python bindings: retention, snapshots, the state log, labels.

The store is the payments preset's (load_preset("payments")) plus three label features, so that
what a restored store knows about labels shows in its features. Exactness: a restored store must
give bitwise-equal features (the float32 bits, NaN positions included), since the snapshot and
the log carry every retained event, its label and label time, and the fixed degrees.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from libfraud import _core
from libfraud.data import generate_transactions
from libfraud.data.declared import load_events, load_preset
from libfraud.events import EventArrays, LabelArrays
from libfraud.features import make_store, rows_of

CARD = 0
HOUR = 3_600_000
DAY = 24 * HOUR
LOG_HEADER_BYTES = 104  # cpp/src/store/log_format.h
RECORD_HEADER_BYTES = 56


@pytest.fixture(scope="module")
def world():
    """(schema, spec, events, labels) of 20 000 generated payments, labels known at label_time_ms."""
    df = next(generate_transactions(20_000, seed=3, chunk_size=20_000))
    schema, spec = load_preset("payments", df.columns)
    events, labels = load_events(df, schema)
    spec = spec.to_json()
    spec["features"] += [
        {"name": f"{e}_{a}_30d", "kind": "label", "entity": e, "agg": a, "window_ms": 30 * DAY,
         "offset_ms": 0}
        for e, a in (("card", "fraud_count"), ("card", "labelled_count"), ("merchant", "fraud_rate"))]
    return schema.to_json(), spec, events, labels


@pytest.fixture(scope="module")
def records(world):
    return world[2]


def new_store(world, **kw):
    return make_store(world[0], world[1], **kw)


def queries(events, n=300, after=1):
    q = events.slice(len(events) - n, len(events))
    return EventArrays.make(q.event_id + 10_000_000, np.full(n, int(events.time_ms[-1]) + after),
                            q.amount, q.entity_id, q.numeric, q.categorical)


def labels_of(labels, events):
    """The labels of these events."""
    return labels.take(np.isin(labels.event_id, events.event_id))


def same(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_retention_by_time_and_count(world, records):
    retention = 6 * HOUR
    bounded = new_store(world, retention_ms=retention, max_history_per_entity=20)
    full = new_store(world)
    bounded.ingest(*records.args())
    full.ingest(*records.args())
    ts = records.time_ms
    cutoff = bounded.watermark_ms - retention
    assert bounded.evicted > 0 and bounded.size + bounded.evicted == len(records)
    assert bounded.size <= int((ts >= cutoff).sum())
    assert not bounded.within_retention(cutoff - 1) and bounded.within_retention(cutoff)
    assert not bounded.contains_event_id(int(records.event_id[0]))
    assert bounded.contains_event_id(int(records.event_id[-1]))
    assert bounded.approx_bytes < full.approx_bytes
    assert (bounded.retention_ms, bounded.max_history_per_entity) == (retention, 20)
    cards = records.entity_id[:, CARD]
    for card in np.unique(cards)[:50]:
        mine = (cards == card) & (ts >= cutoff)
        assert bounded.history_size(CARD, int(card)) == min(int(mine.sum()), 20)
        assert bounded.history_size("card", int(card)) == min(int(mine.sum()), 20)

    # Only time retention: features equal those of an unbounded store of the retained rows
    # (sums to float rounding).
    timed = new_store(world, retention_ms=retention)
    timed.ingest(*records.args())
    ref = new_store(world)
    ref.ingest(*records.take(ts >= cutoff).args())
    q = queries(records)
    np.testing.assert_allclose(timed.features(*q.args()), ref.features(*q.args()), rtol=1e-4, atol=1e-5)


def test_evicted_events_can_no_longer_be_labelled(world, records):
    store = new_store(world, retention_ms=6 * HOUR)
    store.ingest(*records.args())
    gone = int(records.event_id[0])
    with pytest.raises(_core.FraudError) as e:
        store.label(*LabelArrays.make([gone], [1], [int(records.time_ms[-1])]).args())
    assert e.value.status == "FRAUD_STATUS_UNKNOWN_EVENT"
    assert store.labelled == 0


def test_bad_retention_arguments(world):
    with pytest.raises(Exception, match="retention_ms"):
        new_store(world, retention_ms=-1)
    with pytest.raises(Exception, match="max_history_per_entity"):
        new_store(world, max_history_per_entity=-1)
    with pytest.raises(Exception, match="expected_events"):
        new_store(world, expected_events=-1)


def test_snapshot_and_log_round_trip(tmp_path, world, records):
    """Events and labels, half before the snapshot and half in the log after it; labels arrive
    when known, so some of the log's labels are of events in the snapshot."""
    labels = world[3]
    # 20 days (the data span 30): most fraud labels become known before their event is evicted.
    kw = dict(retention_ms=20 * DAY, max_history_per_entity=30)
    d = str(tmp_path / "state")
    live = new_store(world, **kw)
    log = _core.StateLog(d, fsync=True, like=live)
    half = len(records) // 2
    label_batches = 0
    label_row = rows_of(records.event_id, labels.event_id)
    done = np.zeros(len(labels), bool)  # applied, or of an event evicted before it was known

    def step(a, b):
        nonlocal label_batches
        batch = records.slice(a, b)
        log.append(*batch.args())
        live.ingest(*batch.args())
        # Labels known by the batch's last time, of events still in the store.
        due = np.flatnonzero(~done & (label_row < b) & (labels.label_time_ms <= int(batch.time_ms[-1])))
        done[due] = True
        due = [j for j in due.tolist() if live.contains_event_id(int(labels.event_id[j]))]
        if due:
            known = labels.take(np.array(due))
            live.label(*known.args())
            log.append_labels(*known.args())
            label_batches += 1

    bounds = np.linspace(0, len(records), 41).astype(int)
    for a, b in zip(bounds[:20], bounds[1:21]):
        step(a, b)
    assert bounds[20] == half
    log.snapshot(live)  # the snapshot and the new log it names
    label_batches = 0
    for a, b in zip(bounds[20:-1], bounds[21:]):
        step(a, b)
    assert live.labelled > 0 and label_batches > 0 and live.evicted > 0
    restored = new_store(world, **kw)
    stats = restored.restore(d)
    assert stats["snapshot_loaded"] and stats["log_transactions"] == len(records) - half
    assert stats["log_label_records"] == label_batches
    assert stats["torn_tail_bytes"] == 0
    q = queries(records)
    got = live.features(*q.args())
    assert same(got, restored.features(*q.args()))
    assert np.nansum(got[:, -3:]) > 0, "label features see the labels"
    assert (restored.size, restored.evicted, restored.watermark_ms, restored.labelled) == (
        live.size, live.evicted, live.watermark_ms, live.labelled)
    # Both keep going identically, events and labels.
    more = queries(records, 50, after=5)
    live.ingest(*more.args())
    restored.ingest(*more.args())
    extra = LabelArrays.make(more.event_id[:10], np.ones(10), more.time_ms[:10] + 1)
    live.label(*extra.args())
    restored.label(*extra.args())
    later = queries(records, 300, after=10)
    assert same(live.features(*later.args()), restored.features(*later.args()))


def test_labels_survive_a_snapshot_with_their_times(tmp_path, world, records):
    """A snapshot holds each label and its label time: a restored store counts a label only from
    its label time on, as the live one does, and refuses a conflicting label."""
    labels = world[3]
    head = records.slice(0, 5000)
    mine = labels_of(labels, head)
    live = new_store(world)
    live.ingest(*head.args())
    live.label(*mine.args())  # all of them, as training does: many are known after the head's end
    d = tmp_path / "state"
    d.mkdir()
    live.write_snapshot(_core.snapshot_path(str(d)))
    restored = new_store(world)
    stats = restored.restore(str(d))
    assert stats["snapshot_loaded"] and stats["log_transactions"] == 0
    assert restored.labelled == live.labelled == len(mine)
    last = int(head.time_ms[-1])
    for after in (1, DAY, 10 * DAY, 40 * DAY):  # labels become known over the next 30 days
        q = queries(head, 300, after=after)
        assert same(live.features(*q.args()), restored.features(*q.args())), after
    fraud = mine.take(mine.label == 1)
    assert len(fraud) > 0
    flipped = LabelArrays.make(fraud.event_id[:1], [0], [last + 1])
    with pytest.raises(_core.FraudError) as e:
        restored.label(*flipped.args())
    assert e.value.status == "FRAUD_STATUS_LABEL_CONFLICT"
    restored.label(*fraud.take(np.array([0])).args())  # the same label again: a no-op


def test_labels_survive_the_log_alone(tmp_path, world, records):
    labels = world[3]
    head = records.slice(0, 3000)
    d = str(tmp_path / "state")
    live = new_store(world)
    log = _core.StateLog(d, fsync=False, like=live)
    mine = labels_of(labels, head)
    for part in np.array_split(np.arange(len(head)), 3):
        batch = head.take(part)
        live.ingest(*batch.args())
        log.append(*batch.args())
        known = labels_of(mine, batch)
        live.label(*known.args())
        log.append_labels(*known.args())
    assert log.next_seq == len(head)  # label records do not advance the sequence
    del log
    restored = new_store(world)
    stats = restored.restore(d)
    assert not stats["snapshot_loaded"]
    assert (stats["log_records"], stats["log_transactions"], stats["log_label_records"]) == (3, 3000, 3)  # event records; label records apart
    assert restored.labelled == len(mine) > 0
    for after in (1, 40 * DAY):
        q = queries(head, 300, after=after)
        assert same(live.features(*q.args()), restored.features(*q.args()))


def test_torn_tail_dropped_corrupt_middle_refused(tmp_path, world, records):
    d = str(tmp_path / "state")
    s0 = new_store(world)
    log = _core.StateLog(d, False, s0)
    batches = [records.slice(0, 1000), records.slice(1000, 2000), records.slice(2000, 3000)]
    for b in batches:
        log.append(*b.args())
    del log
    path = _core.log_path(d)
    data = bytearray(Path(path).read_bytes())
    Path(path).write_bytes(data[:-100])  # a crash mid-write of the last batch
    s = new_store(world)
    stats = s.restore(d)
    assert s.size == len(batches[0]) + len(batches[1]) and stats["torn_tail_bytes"] > 0

    # The log's header is 104 bytes (format version 3: the store layout's digest and the log's id).
    data[LOG_HEADER_BYTES + RECORD_HEADER_BYTES + 7] ^= 0xFF  # damage inside the first record; valid records follow
    Path(path).write_bytes(data)
    s = new_store(world)
    s.ingest(*records.slice(0, 5).args())
    with pytest.raises(Exception, match=f"corrupt record at offset {LOG_HEADER_BYTES}"):
        s.restore(d)
    assert s.size == 5  # untouched


def test_torn_label_record_dropped(tmp_path, world, records):
    d = str(tmp_path / "state")
    head = records.slice(0, 500)
    live = new_store(world)
    log = _core.StateLog(d, False, live)
    log.append(*head.args())
    before = log.bytes
    log.append_labels(*LabelArrays.make(head.event_id[:20], np.ones(20), head.time_ms[:20]).args())
    assert log.bytes == before + RECORD_HEADER_BYTES + 20 * 24
    del log
    path = _core.log_path(d)
    Path(path).write_bytes(Path(path).read_bytes()[:-7])
    s = new_store(world)
    stats = s.restore(d)
    assert s.size == 500 and s.labelled == 0
    assert stats["log_label_records"] == 0 and stats["torn_tail_bytes"] == RECORD_HEADER_BYTES + 20 * 24 - 7


def test_state_of_another_layout_refused(tmp_path, world, records):
    d = str(tmp_path / "state")
    mine = new_store(world)
    log = _core.StateLog(d, False, mine)
    log.append(*records.slice(0, 10).args())
    del log
    # A store of another schema (here: three of the four entities) may not read this state.
    schema = dict(world[0])
    schema["entities"] = world[0]["entities"][:3]
    spec = {"format": "libfraud-features", "version": 1, "max_scan": 1024,
            "features": [{"name": "n", "kind": "window", "entity": "card", "agg": "count",
                          "window_ms": HOUR, "offset_ms": 0}]}
    other = make_store(schema, spec)
    with pytest.raises(_core.FraudError, match="written for another schema or feature layout"):
        other.restore(d)
    with pytest.raises(_core.FraudError, match="written for another schema or feature layout"):
        _core.StateLog(d, False, other)
    assert other.size == 0
    mine.restore(d)
    assert mine.size == 10


def test_every_sampled_snapshot_corruption_refused(tmp_path, world, records):
    s = new_store(world, retention_ms=2 * HOUR)
    s.ingest(*records.slice(0, 3000).args())
    kept = labels_of(world[3], records.slice(2500, 3000))
    s.label(*kept.take(np.array([s.contains_event_id(int(x)) for x in kept.event_id])).args())
    assert s.labelled > 0
    path = str(tmp_path / "state" / "store.snapshot")
    os.makedirs(os.path.dirname(path))
    s.write_snapshot(path)
    good = Path(path).read_bytes()
    rng = np.random.default_rng(0)
    target = new_store(world)
    target.ingest(*records.slice(0, 3).args())
    for pos in rng.choice(len(good), size=200, replace=False):
        bad = bytearray(good)
        bad[pos] ^= int(rng.integers(1, 256))
        Path(path).write_bytes(bad)
        with pytest.raises(_core.FraudError, match="snapshot"):
            target.restore(os.path.dirname(path))
        assert target.size == 3
    for cut in rng.choice(len(good), size=30, replace=False):
        Path(path).write_bytes(good[:cut])
        with pytest.raises(Exception, match="truncated|wrong magic"):
            target.restore(os.path.dirname(path))
    Path(path).write_bytes(good)
    target.restore(os.path.dirname(path))
    assert (target.size, target.labelled) == (s.size, s.labelled)


def layout_key_bytes(snapshot: bytes) -> slice:
    """Where the store layout's key ("amount;e:card!;...", text) lies in a snapshot."""
    start = snapshot.find(b"amount;e:card!")
    assert start > 0
    return slice(start, start + int.from_bytes(snapshot[start - 8:start], "little"))


def test_snapshot_with_a_damaged_schema_key(tmp_path, world, records):
    s = new_store(world)
    s.ingest(*records.slice(0, 100).args())
    d = tmp_path / "state"
    d.mkdir()
    s.write_snapshot(_core.snapshot_path(str(d)))
    good = Path(_core.snapshot_path(str(d))).read_bytes()
    key = layout_key_bytes(good)
    assert good[key].endswith(b"h:-1,"), good[key]
    bad = bytearray(good)
    bad[key.start + 3] ^= 0x80  # "amount" -> "am\xefunt"
    Path(_core.snapshot_path(str(d))).write_bytes(bad)
    target = new_store(world)
    with pytest.raises(_core.FraudError, match="snapshot") as e:
        target.restore(str(d))
    assert e.value.status == "FRAUD_STATUS_IO_ERROR"
    assert target.size == 0
