"""max_ahead_ms: one far-future timestamp (microseconds sent as milliseconds) must not be stored,
because every later real event would then be out of order, for ever in a durable store."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from libfraud import FraudError, Scorer

DAY = 86_400_000


def _far_future(row: pd.DataFrame) -> pd.DataFrame:
    bad = row.copy()
    bad["txn_id"] = bad["txn_id"] + 10_000_000
    bad["timestamp_ms"] = bad["timestamp_ms"] * 1000  # microseconds, sent as milliseconds
    return bad


def test_without_a_bound_one_far_future_event_blocks_every_later_one(small_bundle, small_transactions):
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.head(100))
    scorer.ingest(_far_future(small_transactions.iloc[[100]]))  # accepted: the default has no bound
    with pytest.raises(FraudError, match="older than the store's watermark") as e:
        scorer.ingest(small_transactions.iloc[[101]])
    assert e.value.status == "FRAUD_STATUS_OUT_OF_ORDER"


def test_the_bound_refuses_the_far_future_event_and_keeps_serving(small_bundle, small_transactions, tmp_path):
    scorer = Scorer(small_bundle, max_ahead_ms=DAY, state_dir=tmp_path / "state")
    scorer.ingest(small_transactions.head(100))
    with pytest.raises(FraudError, match=r"is more than max_ahead_ms 86400000 ahead of the store's watermark") as e:
        scorer.score_and_ingest(_far_future(small_transactions.iloc[[100]]))
    assert e.value.status == "FRAUD_STATUS_INVALID_TRANSACTION"
    assert scorer.store_size == 100
    assert scorer.stats()["rejected_by_status"]["FRAUD_STATUS_INVALID_TRANSACTION"] == 1
    scores = scorer.score_and_ingest(small_transactions.iloc[100:110])  # real events go on
    assert np.isfinite(scores).all() and scorer.store_size == 110
    # Historical replay is unaffected: the bound follows the later of the watermark and the clock.
    assert small_transactions["timestamp_ms"].max() < pd.Timestamp.now("UTC").value // 1_000_000


def test_a_negative_bound_is_refused(small_bundle):
    with pytest.raises(FraudError, match="max_ahead_ms must be >= 0"):
        Scorer(small_bundle, max_ahead_ms=-1)


def test_cli_max_ahead(small_bundle, small_transactions, tmp_path):
    rows = pd.concat([small_transactions.head(50), _far_future(small_transactions.iloc[[50]])])
    csv = tmp_path / "events.csv"
    rows.to_csv(csv, index=False)
    cmd = [sys.executable, "-m", "libfraud", "score", str(small_bundle), str(csv), "--max-ahead", "1d"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0 and "max_ahead_ms 86400000" in proc.stderr
    bad = subprocess.run(cmd[:-1] + ["soon"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--max-ahead: 'soon' is not a duration" in bad.stderr
