"""Durable state through the engine: a process killed with SIGKILL mid-ingest loses no acknowledged
transaction, the restored store gives the features of an uninterrupted run, and labels (in the
snapshot and in the log) come back with it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from libfraud import FraudError, Scorer
from libfraud.events import LabelArrays

from bundles import DAY, edited, payments, random_bundle, spec_json

CHILD = textwrap.dedent("""
    import sys
    import pandas as pd
    from libfraud import Scorer
    bundle, state, data = sys.argv[1:4]
    df = pd.read_parquet(data)
    scorer = Scorer(bundle, state_dir=state)
    for i in range(len(df)):
        scorer.score_and_ingest(df.iloc[i:i + 1])
        print(int(df["txn_id"].iat[i]), flush=True)  # acknowledged: the call returned
        if i == 1500:
            scorer.snapshot()
""")


def test_sigkill_mid_ingest_loses_nothing_acknowledged(small_transactions, small_bundle, tmp_path):
    data = tmp_path / "txns.parquet"
    txns = small_transactions.iloc[:6_000]
    txns.to_parquet(data)
    state = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(small_bundle), str(state), str(data)],
                             stdout=subprocess.PIPE, text=True)
    acked = []
    for line in child.stdout:
        acked.append(int(line))
        if len(acked) == 3_000:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) == 3_000

    restored = Scorer(small_bundle, state_dir=state)
    kept = restored.store_size
    # Every acknowledged transaction is back; at most the one in flight at the kill is extra.
    assert len(acked) <= kept <= len(acked) + 1
    # In order now: only a duplicate id can refuse them.
    events = edited(restored.events(txns), time_ms=lambda t: np.full_like(t, restored.watermark_ms))
    for i in np.random.default_rng(0).choice(len(acked), 200, replace=False):
        with pytest.raises(FraudError) as error:
            restored.ingest(events.slice(i, i + 1))
        assert error.value.status == "FRAUD_STATUS_DUPLICATE_TRANSACTION", (i, str(error.value))
    # The restored store is the uninterrupted run's prefix: the next transactions' features agree.
    uninterrupted = Scorer(small_bundle)
    uninterrupted.ingest(txns.iloc[:kept])
    nxt = txns.iloc[kept:kept + 300]
    np.testing.assert_array_equal(restored.features(nxt).to_numpy(), uninterrupted.features(nxt).to_numpy())
    np.testing.assert_array_equal(restored.score_and_ingest(nxt), uninterrupted.score_and_ingest(nxt))


def test_a_corrupt_state_is_refused_not_half_loaded(small_transactions, small_bundle, tmp_path):
    state = tmp_path / "state"
    scorer = Scorer(small_bundle, state_dir=state)
    scorer.ingest(small_transactions.iloc[:500])
    scorer.snapshot()
    scorer.ingest(small_transactions.iloc[500:600])
    del scorer
    snap = state / "store.snapshot"
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0x40
    snap.write_bytes(bytes(data))
    with pytest.raises(FraudError) as error:
        Scorer(small_bundle, state_dir=state)
    assert error.value.status == "FRAUD_STATUS_IO_ERROR" and "store.snapshot" in str(error.value)


def test_a_log_lost_after_a_snapshot_is_refused(small_transactions, small_bundle, tmp_path):
    """The snapshot names its log: without it the events acknowledged after the snapshot would be
    silently gone, so the open fails naming the gap."""
    state = tmp_path / "state"
    scorer = Scorer(small_bundle, state_dir=state)
    scorer.ingest(small_transactions.iloc[:500])
    scorer.snapshot()
    scorer.ingest(small_transactions.iloc[500:600])  # acknowledged: only in store.log
    del scorer
    log = state / "store.log"
    kept = log.read_bytes()
    log.unlink()
    with pytest.raises(FraudError, match=r"store.log is missing; the snapshot \(taken at sequence 500\) expects log") as e:
        Scorer(small_bundle, state_dir=state)
    assert e.value.status == "FRAUD_STATUS_IO_ERROR"
    log.write_bytes(kept)
    assert Scorer(small_bundle, state_dir=state).store_size == 600


def test_a_damaged_last_record_is_refused_or_quarantined(small_transactions, small_bundle, tmp_path, caplog):
    """A bit flip in the last record is not a torn write: refused, even with fsync on; allowed, its
    bytes are kept in a quarantine file and the open goes on without them, saying so."""
    state = tmp_path / "state"
    scorer = Scorer(small_bundle, state_dir=state, fsync_every_ingest=True)
    scorer.ingest(small_transactions.iloc[:300])
    log = state / "store.log"
    good_end = log.stat().st_size
    scorer.ingest(small_transactions.iloc[300:310])
    del scorer
    data = bytearray(log.read_bytes())
    data[-3] ^= 0x04
    log.write_bytes(bytes(data))
    with pytest.raises(FraudError, match=rf"store.log: corrupt record at offset {good_end} \(sequence 300\)") as e:
        Scorer(small_bundle, state_dir=state)
    assert e.value.status == "FRAUD_STATUS_IO_ERROR" and "quarantine_corrupt_log_tail" in str(e.value)
    with caplog.at_level(logging.WARNING, logger="libfraud"):
        opened = Scorer(small_bundle, state_dir=state, quarantine_corrupt_log_tail=True)
    assert opened.store_size == 300
    (kept,) = state.glob("store.log.quarantine-*")
    assert kept.read_bytes() == bytes(data[good_end:])
    assert any(str(kept) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    del opened
    assert Scorer(small_bundle, state_dir=state).store_size == 300  # cut there: opens plainly now


def test_retention_bounds_the_store(small_transactions, small_bundle):
    scorer = Scorer(small_bundle, retention_ms=3_600_000)
    scorer.ingest(small_transactions.iloc[:5_000])
    s = scorer.stats()
    assert s["evicted"] > 0 and s["store_transactions"] == 5_000 - s["evicted"]
    unbounded = Scorer(small_bundle)
    unbounded.ingest(small_transactions.iloc[:5_000])
    assert s["store_bytes"] < unbounded.stats()["store_bytes"]
    # An evicted event can no longer be labelled: the core says it does not hold it.
    first = small_transactions.iloc[:1]
    with pytest.raises(FraudError) as error:
        scorer.label(LabelArrays.make(first["txn_id"], [1], first["timestamp_ms"]))
    assert error.value.status == "FRAUD_STATUS_UNKNOWN_EVENT" and "evicted" in str(error.value)
    unbounded.label(LabelArrays.make(first["txn_id"], [1], first["timestamp_ms"]))
    assert unbounded.stats()["store_labels"] == 1


@pytest.fixture(scope="module")
def label_bundle(tmp_path_factory):
    """A bundle whose features count labels (card frauds over 30 days, known before the event)."""
    schema, payments_spec = payments()
    spec = spec_json(schema, payments_spec["features"][:5] + [
        {"kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 30 * DAY,
         "name": "card_fraud_count_30d"},
        {"kind": "label", "entity": "card", "agg": "labelled_count", "window_ms": 30 * DAY,
         "name": "card_labelled_count_30d"}])
    return random_bundle(tmp_path_factory.mktemp("label-bundle") / "bundle", schema, spec)


def _labels_of(txns, rows) -> LabelArrays:
    """The frame's labels of these rows, known one second after their event."""
    t = txns.iloc[rows]
    return LabelArrays.make(t["txn_id"], t["label"], t["timestamp_ms"] + 1000)


def test_labels_survive_a_restart(small_transactions, label_bundle, tmp_path):
    txns = small_transactions.iloc[:3_000]
    # Cards with frauds, so the label features see some.
    rows = np.flatnonzero(txns["card_id"].isin(txns.loc[txns["label"] == 1, "card_id"]).to_numpy()
                          & (np.arange(len(txns)) < 2_000))
    assert len(rows) > 20 and txns["label"].iloc[rows].sum() > 0
    early, late = rows[: len(rows) // 2], rows[len(rows) // 2:]
    state = tmp_path / "state"
    scorer = Scorer(label_bundle, state_dir=state)
    scorer.ingest(txns.iloc[:2_000])
    scorer.label(_labels_of(txns, early))
    scorer.snapshot()  # the early labels are in the snapshot
    scorer.label(_labels_of(txns, late))  # the late ones only in the log
    stats = scorer.stats()
    assert stats["labels_applied"] == stats["store_labels"] == len(rows)
    del scorer

    restored = Scorer(label_bundle, state_dir=state)
    assert restored.store_size == 2_000 and restored.stats()["store_labels"] == len(rows)
    # Each stored label is the one given: its opposite conflicts, itself again changes nothing.
    for part in (early, late):
        flipped = _labels_of(txns, part[:1])
        flipped = LabelArrays.make(flipped.event_id, 1 - flipped.label, flipped.label_time_ms)
        with pytest.raises(FraudError) as error:
            restored.label(flipped)
        assert error.value.status == "FRAUD_STATUS_LABEL_CONFLICT", str(error.value)
    restored.label(_labels_of(txns, rows))
    assert restored.stats()["labels_applied"] == 0 and restored.stats()["store_labels"] == len(rows)
    # The restored store's label features are the uninterrupted run's.
    uninterrupted = Scorer(label_bundle)
    uninterrupted.ingest(txns.iloc[:2_000])
    uninterrupted.label(_labels_of(txns, rows))
    nxt = txns.iloc[2_000:2_500]
    want = uninterrupted.features(nxt)
    assert want["card_labelled_count_30d"].sum() > 0 and want["card_fraud_count_30d"].sum() > 0
    np.testing.assert_array_equal(restored.features(nxt).to_numpy(), want.to_numpy())
    np.testing.assert_array_equal(restored.score_and_ingest(nxt), uninterrupted.score_and_ingest(nxt))


def test_the_cli_passes_the_quarantine_flag():
    from libfraud.cli import build_parser
    for argv in (["score", "b", "in.csv", "--state-dir", "s", "--quarantine-corrupt-log-tail"],
                 ["label", "b", "l.csv", "--state-dir", "s", "--quarantine-corrupt-log-tail"]):
        assert build_parser().parse_args(argv).quarantine_corrupt_log_tail
    assert not build_parser().parse_args(["label", "b", "l.csv", "--state-dir", "s"]).quarantine_corrupt_log_tail
