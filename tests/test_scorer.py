"""The served path: bundle -> C API engine -> scores, against the Python pipeline, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from libfraud import FraudError, Scorer
from libfraud.data.schema import to_txn_records
from libfraud.features import as_matrix, replay_features


def test_served_scores_equal_the_python_pipeline(small_transactions, small_training, small_bundle):
    scorer = Scorer(small_bundle)
    served = scorer.score_and_ingest(small_transactions)
    # Python: the same replayed features into xgboost's own predictor.
    X = as_matrix(replay_features(small_transactions, small_training.feature_config))
    reference = small_training.model.predict_proba(X)
    assert served.dtype == np.float32
    assert np.max(np.abs(served - reference)) <= 1e-5
    assert scorer.store_size == len(small_transactions)
    assert scorer.watermark_ms == int(small_transactions["timestamp_ms"].max())


def test_serving_features_equal_training_replay(small_transactions, small_training, small_bundle):
    history, live = small_transactions.iloc[:15_000], small_transactions.iloc[15_000:15_500]
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    served = []
    for i in range(len(live)):  # as a switch sees them: features of each, then it is stored
        served.append(scorer.features(live.iloc[i:i + 1]).to_numpy())
        scorer.ingest(live.iloc[i:i + 1])
    served = np.concatenate(served)
    replayed = replay_features(small_transactions.iloc[:15_500], small_training.feature_config)
    np.testing.assert_array_equal(served, replayed.to_numpy()[15_000:])
    assert scorer.feature_names == list(small_training.model.feature_names)


def test_batch_equals_one_by_one_and_score_stores_nothing(small_transactions, small_bundle):
    part = small_transactions.iloc[:2_000]
    batch = Scorer(small_bundle).score_and_ingest(part)
    single = Scorer(small_bundle)
    one_by_one = np.concatenate([single.score_and_ingest(part.iloc[i:i + 1]) for i in range(len(part))])
    np.testing.assert_array_equal(batch, one_by_one)
    before = single.store_size
    again = single.score(small_transactions.iloc[2_000:2_100])
    assert single.store_size == before
    np.testing.assert_array_equal(again, single.score(small_transactions.iloc[2_000:2_100]))


def test_scores_from_many_threads_equal_serial(small_transactions, small_bundle):
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.iloc[:10_000])
    chunks = [small_transactions.iloc[10_000 + 500 * i:10_500 + 500 * i] for i in range(8)]
    serial = [scorer.score(c) for c in chunks]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(scorer.score, chunks))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_cold_start_entities_score(small_transactions, small_bundle):
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.iloc[:1_000])
    new = small_transactions.iloc[[1_000]].copy()
    new[["card_id", "device_id", "merchant_id", "ip_id"]] = [10**15, -1, 10**15 + 1, -1]
    score = scorer.score(new)
    assert np.isfinite(score).all() and 0.0 <= score[0] <= 1.0


@pytest.mark.parametrize("column, value, status, words", [
    ("amount", np.nan, "FRAUD_STATUS_INVALID_TRANSACTION", "amount"),
    ("amount", np.inf, "FRAUD_STATUS_INVALID_TRANSACTION", "amount"),
    ("amount", -5.0, "FRAUD_STATUS_INVALID_TRANSACTION", "amount"),
    ("card_id", -3, "FRAUD_STATUS_INVALID_TRANSACTION", "card"),
    ("country", 0, "FRAUD_STATUS_INVALID_TRANSACTION", "country"),
    ("mcc", 10_000, "FRAUD_STATUS_INVALID_TRANSACTION", "mcc"),
    ("timestamp_ms", 0, "FRAUD_STATUS_OUT_OF_ORDER", "watermark"),
    ("txn_id", 5, "FRAUD_STATUS_DUPLICATE_TRANSACTION", "txn_id"),
])
def test_bad_transaction_is_refused_and_changes_nothing(small_transactions, small_bundle,
                                                         column, value, status, words):
    history, batch = small_transactions.iloc[:3_000], small_transactions.iloc[3_000:3_010]
    clean = Scorer(small_bundle)
    clean.ingest(history)
    expected_next = clean.score_and_ingest(batch)

    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    records = to_txn_records(batch)
    bad = records.copy()
    target = "entity_id" if column == "card_id" else column
    if target == "entity_id":
        bad["entity_id"][4, 0] = value
    else:
        bad[target][4] = value
    with pytest.raises(FraudError) as error:
        scorer.score_and_ingest(bad)
    assert error.value.status == status
    assert "transaction 4" in str(error.value) and words in str(error.value)
    assert scorer.store_size == len(history)
    assert scorer.watermark_ms == int(history["timestamp_ms"].max())
    # The store is exactly as before: the clean batch now scores as on a store that never saw it.
    np.testing.assert_array_equal(scorer.score_and_ingest(records), expected_next)


def _copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / "bundle")


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_bundles_are_refused(small_bundle, tmp_path):
    bundle = _copy(small_bundle, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        path = bundle / artifact["path"]
        original = path.read_bytes()
        _flip_byte(path, len(original) // 2)
        with pytest.raises(FraudError) as error:
            Scorer(bundle)
        assert error.value.status == "FRAUD_STATUS_BUNDLE_CHECKSUM"
        assert artifact["name"] in str(error.value) and "altered" in str(error.value)
        path.write_bytes(original[:-10])
        with pytest.raises(FraudError, match="truncated"):
            Scorer(bundle)
        path.unlink()
        with pytest.raises(FraudError, match="missing"):
            Scorer(bundle)
        path.write_bytes(original)
    Scorer(bundle)  # restored: loads again


def test_manifest_problems_are_named(small_bundle, tmp_path):
    bundle = _copy(small_bundle, tmp_path)
    path = bundle / "manifest.json"
    good = json.loads(path.read_text())

    path.write_text(json.dumps({**good, "format_version": 99}))
    with pytest.raises(FraudError) as error:
        Scorer(bundle)
    assert error.value.status == "FRAUD_STATUS_BUNDLE_VERSION" and "99" in str(error.value)

    order = list(good["features"]["order"])
    order[0], order[1] = order[1], order[0]
    path.write_text(json.dumps({**good, "features": {**good["features"], "order": order}}))
    with pytest.raises(FraudError) as error:
        Scorer(bundle)
    assert error.value.status == "FRAUD_STATUS_BUNDLE_INVALID" and "features.order[0]" in str(error.value)

    path.write_text(json.dumps({k: v for k, v in good.items() if k != "threshold"}))
    with pytest.raises(FraudError, match="'threshold'"):
        Scorer(bundle)

    with pytest.raises(FraudError) as error:
        Scorer(tmp_path / "nowhere")
    assert error.value.status == "FRAUD_STATUS_IO_ERROR"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "libfraud", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_score_matches_scorer(small_bundle, small_transactions_csv, tmp_path):
    out = tmp_path / "scores.csv"
    run = _cli("score", small_bundle, small_transactions_csv, "--out", out)
    assert run.returncode == 0, run.stderr
    scores = pd.read_csv(out)
    expected = Scorer(small_bundle).score_and_ingest(pd.read_csv(small_transactions_csv))
    np.testing.assert_array_equal(scores["score"].to_numpy(np.float32), expected)


def test_cli_score_refusals_exit_nonzero_with_the_reason(small_bundle, small_transactions_csv, tmp_path):
    run = _cli("score", tmp_path / "no-bundle", small_transactions_csv)
    assert run.returncode != 0 and "FRAUD_STATUS_IO_ERROR" in run.stderr

    bad_csv = tmp_path / "bad.csv"
    lines = small_transactions_csv.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[5].split(",")
    cells[header.index("amount")] = "abc"
    lines[5] = ",".join(cells)
    bad_csv.write_text("\n".join(lines) + "\n")
    run = _cli("score", small_bundle, bad_csv)
    assert run.returncode != 0 and "amount" in run.stderr and "row 4" in run.stderr
