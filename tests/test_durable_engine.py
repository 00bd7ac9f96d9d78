"""Durable state through the engine: a process killed with SIGKILL mid-ingest loses no acknowledged
transaction, and the restored store gives the features of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from libfraud import FraudError, Scorer
from libfraud.data.schema import to_txn_records

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
    records = to_txn_records(txns)
    records["timestamp_ms"] = restored.watermark_ms  # in order now: only a duplicate id can refuse it
    for i in np.random.default_rng(0).choice(len(acked), 200, replace=False):
        with pytest.raises(FraudError) as error:
            restored.ingest(records[i:i + 1])
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


def test_retention_bounds_the_store(small_transactions, small_bundle):
    scorer = Scorer(small_bundle, retention_ms=3_600_000)
    scorer.ingest(small_transactions.iloc[:5_000])
    s = scorer.stats()
    assert s["evicted"] > 0 and s["store_transactions"] == 5_000 - s["evicted"]
    unbounded = Scorer(small_bundle)
    unbounded.ingest(small_transactions.iloc[:5_000])
    assert s["store_bytes"] < unbounded.stats()["store_bytes"]
