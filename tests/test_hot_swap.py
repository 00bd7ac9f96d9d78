"""Hot swap, counters and logs: a new bundle replaces the old atomically; a bad one, or one of another
schema, is refused and the old keeps serving; many threads keep scoring through swaps."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import libfraud
from libfraud import FraudError, Scorer
from libfraud.data.declared import load_preset
from libfraud.data.schema import to_txn_records  # fraud_txn records, for the C harness

from bundles import edited, random_bundle, set_at

ROOT = Path(__file__).resolve().parent.parent


def test_swap_replaces_the_model_and_keeps_the_store(small_transactions, small_bundle, other_bundle):
    history, live = small_transactions.iloc[:5_000], small_transactions.iloc[5_000:5_200]
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    before = scorer.score(live)
    scorer.swap_bundle(other_bundle)
    after = scorer.score(live)
    assert scorer.store_size == len(history)
    fresh = Scorer(other_bundle)
    fresh.ingest(history)
    np.testing.assert_array_equal(after, fresh.score(live))
    assert np.max(np.abs(after - before)) > 1e-3
    stats = scorer.stats()
    assert stats["bundle_swaps"] == 1 and stats["bundle_swap_failures"] == 0


def test_a_bad_bundle_is_refused_and_the_old_keeps_serving(small_transactions, small_bundle, tmp_path):
    bad = shutil.copytree(small_bundle, tmp_path / "bad")
    so = bad / "trees" / "model.so"
    data = bytearray(so.read_bytes())
    data[100] ^= 0xFF
    so.write_bytes(bytes(data))
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.iloc[:1_000])
    expected = scorer.score(small_transactions.iloc[1_000:1_100])
    with pytest.raises(FraudError) as error:
        scorer.swap_bundle(bad)
    assert error.value.status == "FRAUD_STATUS_BUNDLE_CHECKSUM"
    np.testing.assert_array_equal(scorer.score(small_transactions.iloc[1_000:1_100]), expected)
    assert scorer.stats()["bundle_swap_failures"] == 1


def test_a_bundle_of_another_schema_is_refused_and_the_old_keeps_serving(small_transactions, small_bundle,
                                                                         tmp_path, caplog):
    # A valid bundle, but of the cards preset's schema: the store holds payments events, so the
    # engine refuses it (fraud_engine_schema_count: the schema never changes for an open engine).
    schema, spec = (x.to_json() for x in load_preset("cards"))
    cards = random_bundle(tmp_path / "cards", schema, spec)
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.iloc[:1_000])
    live = small_transactions.iloc[1_000:1_100]
    expected, names = scorer.score(live), scorer.feature_names
    caplog.set_level(logging.ERROR, logger="libfraud")
    with pytest.raises(FraudError) as error:
        scorer.swap_bundle(cards)
    assert error.value.status == "FRAUD_STATUS_BUNDLE_INVALID", str(error.value)
    assert "schema differs" in str(error.value), str(error.value)
    assert any("old bundle keeps serving" in r.getMessage() for r in caplog.records if r.name == "libfraud")
    assert scorer.bundle == str(small_bundle) and scorer.feature_names == names
    np.testing.assert_array_equal(scorer.score(live), expected)
    never_asked = Scorer(small_bundle)
    never_asked.ingest(small_transactions.iloc[:1_000])
    np.testing.assert_array_equal(scorer.score_and_ingest(live), never_asked.score_and_ingest(live))
    stats = scorer.stats()
    assert stats["bundle_swaps"] == 0 and stats["bundle_swap_failures"] == 1
    assert stats["store_transactions"] == 1_100
    assert Scorer(cards).feature_names == [f["name"] for f in spec["features"]]  # it loads on its own


def test_counters_count_scores_and_rejections(small_transactions, small_bundle):
    scorer = Scorer(small_bundle)
    scorer.score_and_ingest(small_transactions.iloc[:300])
    bad = edited(scorer.events(small_transactions.iloc[300:310]), amount=lambda a: set_at(a, 3, np.nan))
    with pytest.raises(FraudError):
        scorer.score_and_ingest(bad)
    s = scorer.stats()
    assert s["scored"] == 300 and s["ingested"] == 300
    assert s["rejected"] == 10 and s["rejected_by_status"] == {"FRAUD_STATUS_INVALID_TRANSACTION": 10}
    assert s["store_transactions"] == 300 and s["gnn_backend"] == "none"
    assert 0 < s["latency_p50_us"] <= s["latency_p99_us"]


def test_logs_reach_python_logging(small_bundle, other_bundle, caplog):
    caplog.set_level(logging.INFO, logger="libfraud")
    scorer = Scorer(small_bundle)
    scorer.swap_bundle(other_bundle)
    messages = [r.getMessage() for r in caplog.records if r.name == "libfraud"]
    assert any("bundle swapped" in m and str(other_bundle) in m for m in messages), messages


def test_scoring_threads_through_swaps_never_fail(small_transactions, small_bundle, other_bundle, tmp_path):
    # The C harness of bench/stress.py, briefly: 4 scorers, 1 ingester, a swap every 20 ms.
    env = {**os.environ, "PKG_CONFIG_PATH": libfraud.pkgconfig_path}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libfraud"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "libfraud"], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    exe = tmp_path / "stress"
    subprocess.run(["cc", "-std=c11", "-O2", "-pthread", f"-I{ROOT / 'bench'}", str(ROOT / "bench" / "stress.c"),
                    "-o", str(exe), *flags, f"-Wl,-rpath,{libdir}"], check=True)
    txns = tmp_path / "txns.bin"
    to_txn_records(small_transactions).tofile(txns)
    run = subprocess.run([str(exe), str(small_bundle), str(other_bundle), str(txns), "3", "4", "20"],
                         capture_output=True, text=True, timeout=120)
    result = json.loads(run.stdout)
    assert run.returncode == 0, run.stderr
    assert result["failed"] == 0 and result["swap_failed"] == 0 and result["ingest_failed"] == 0
    assert result["swaps"] >= 20 and result["served"] > 1_000 and result["during_swaps"]["requests"] > 0
