"""Durable, bounded store through the Python bindings: retention, snapshots, the state log.

Exactness: a restored store must give bitwise-equal features (np.array_equal on the float32 rows,
NaN positions included), since the snapshot carries the running sums' bases and fixed degrees.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from libfraud import _core
from libfraud.data import generate_transactions
from libfraud.data.schema import to_txn_records

CARD = 0
HOUR = 3_600_000


@pytest.fixture(scope="module")
def records():
    df = next(generate_transactions(20_000, seed=3, chunk_size=20_000))
    return to_txn_records(df)


def queries(recs, n=300):
    q = recs[-n:].copy()
    q["txn_id"] += 10_000_000
    q["timestamp_ms"] = recs["timestamp_ms"][-1] + 1
    return q


def same(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_retention_by_time_and_count(records):
    retention = 6 * HOUR
    bounded = _core.Store(retention_ms=retention, max_history_per_entity=20)
    full = _core.Store()
    bounded.ingest(records)
    full.ingest(records)
    ts = records["timestamp_ms"]
    cutoff = bounded.watermark_ms - retention
    assert bounded.evicted > 0 and bounded.size + bounded.evicted == len(records)
    assert bounded.size <= int((ts >= cutoff).sum())
    assert not bounded.within_retention(cutoff - 1) and bounded.within_retention(cutoff)
    assert not bounded.contains_txn_id(int(records["txn_id"][0]))
    assert bounded.approx_bytes < full.approx_bytes
    for card in np.unique(records["entity_id"][:, CARD])[:50]:
        mine = records[(records["entity_id"][:, CARD] == card) & (ts >= cutoff)]
        assert bounded.history_size(CARD, int(card)) == min(len(mine), 20)

    # Only time retention: features equal those of an unbounded store of the retained rows
    # (sums to float rounding: the bounded store subtracts a base from a longer running sum).
    timed = _core.Store(retention_ms=retention)
    timed.ingest(records)
    ref = _core.Store()
    ref.ingest(records[ts >= cutoff])
    q = queries(records)
    np.testing.assert_allclose(timed.features(q), ref.features(q), rtol=1e-4, atol=1e-5)


def test_bad_retention_arguments():
    with pytest.raises(Exception, match="retention_ms"):
        _core.Store(retention_ms=-1)
    with pytest.raises(Exception, match="max_history_per_entity"):
        _core.Store(max_history_per_entity=-1)


def test_snapshot_and_log_round_trip(tmp_path, records):
    kw = dict(retention_ms=12 * HOUR, max_history_per_entity=30)
    d = str(tmp_path / "state")
    live = _core.Store(**kw)
    log = _core.StateLog(d, fsync=True)
    half = len(records) // 2
    for batch in np.array_split(records[:half], 20):
        log.append(batch)
        live.ingest(batch)
    live.write_snapshot(_core.snapshot_path(d))
    log.reset()
    for batch in np.array_split(records[half:], 20):
        log.append(batch)
        live.ingest(batch)
    restored = _core.Store(**kw)
    stats = restored.restore(d)
    assert stats["snapshot_loaded"] and stats["log_transactions"] == len(records) - half
    assert stats["torn_tail_bytes"] == 0
    q = queries(records)
    assert same(live.features(q), restored.features(q))
    assert (restored.size, restored.evicted, restored.watermark_ms) == (
        live.size, live.evicted, live.watermark_ms)
    # Both keep going identically.
    more = queries(records, 50)
    more["timestamp_ms"] += 5
    live.ingest(more)
    restored.ingest(more)
    assert same(live.features(q), restored.features(q))


def test_torn_tail_dropped_corrupt_middle_refused(tmp_path, records):
    d = str(tmp_path / "state")
    log = _core.StateLog(d)
    batches = np.array_split(records[:3000], 3)
    for b in batches:
        log.append(b)
    del log
    path = _core.log_path(d)
    data = bytearray(Path(path).read_bytes())
    Path(path).write_bytes(data[:-100])  # a crash mid-write of the last batch
    s = _core.Store()
    stats = s.restore(d)
    assert s.size == len(batches[0]) + len(batches[1]) and stats["torn_tail_bytes"] > 0

    data[56 + 48 + 7] ^= 0xFF  # damage inside the first record; valid records follow
    Path(path).write_bytes(data)
    s = _core.Store()
    s.ingest(records[:5])
    with pytest.raises(Exception, match="corrupt record at offset 56"):
        s.restore(d)
    assert s.size == 5  # untouched


def test_every_sampled_snapshot_corruption_refused(tmp_path, records):
    s = _core.Store(retention_ms=2 * HOUR)
    s.ingest(records[:3000])
    path = str(tmp_path / "state" / "store.snapshot")
    os.makedirs(os.path.dirname(path))
    s.write_snapshot(path)
    good = Path(path).read_bytes()
    rng = np.random.default_rng(0)
    target = _core.Store()
    target.ingest(records[:3])
    for pos in rng.choice(len(good), size=200, replace=False):
        bad = bytearray(good)
        bad[pos] ^= int(rng.integers(1, 256))
        Path(path).write_bytes(bad)
        with pytest.raises(Exception, match="snapshot"):
            target.restore(os.path.dirname(path))
        assert target.size == 3
    for cut in rng.choice(len(good), size=30, replace=False):
        Path(path).write_bytes(good[:cut])
        with pytest.raises(Exception, match="truncated|wrong magic"):
            target.restore(os.path.dirname(path))
    Path(path).write_bytes(good)
    target.restore(os.path.dirname(path))
    assert target.size == s.size
