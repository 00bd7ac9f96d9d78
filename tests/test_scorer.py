"""The served path: bundle -> C API engine -> scores, against the Python pipeline; bad input; labels."""

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
from libfraud.data.declared import FeatureSpec, Schema
from libfraud.events import LabelArrays
from libfraud.features import as_matrix, replay_features

from bundles import edited, set_at


def _replay(transactions, training):
    """The training replay of these rows with the trained model's schema and spec (TrainResult
    holds their JSON forms)."""
    schema = Schema.from_json(training.schema)
    return replay_features(transactions, schema, FeatureSpec.from_json(training.spec, schema))


def test_served_scores_equal_the_python_pipeline(small_transactions, small_training, small_bundle):
    scorer = Scorer(small_bundle)
    served = scorer.score_and_ingest(small_transactions)
    # Python: the same replayed features into xgboost's own predictor.
    X = as_matrix(_replay(small_transactions, small_training))
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
    replayed = _replay(small_transactions.iloc[:15_500], small_training)
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


# Changed with the declared schema (export/SCHEMA.md): an amount of 0 is legitimate, and
# categorical codes (country, mcc) have no range beyond ">= 0 or -1 (missing)", so the old
# country 0 and mcc 10000 cases are now valid events; negative codes are what the core refuses.
# Messages name "event i (event_id=...)" and the schema's field ("entity_id[card]").
@pytest.mark.parametrize("column, value, status, words", [
    ("amount", np.nan, "FRAUD_STATUS_INVALID_TRANSACTION", "amount"),
    ("amount", np.inf, "FRAUD_STATUS_INVALID_TRANSACTION", "amount"),
    ("amount", -5.0, "FRAUD_STATUS_INVALID_TRANSACTION", "amount"),
    ("card", -3, "FRAUD_STATUS_INVALID_TRANSACTION", "entity_id[card]"),
    ("device", -2, "FRAUD_STATUS_INVALID_TRANSACTION", "entity_id[device]"),
    ("country", -5, "FRAUD_STATUS_INVALID_TRANSACTION", "categorical[country]"),
    ("mcc", -2, "FRAUD_STATUS_INVALID_TRANSACTION", "categorical[mcc]"),
    ("time_ms", 0, "FRAUD_STATUS_OUT_OF_ORDER", "watermark"),
    ("event_id", 5, "FRAUD_STATUS_DUPLICATE_TRANSACTION", "event_id"),
])
def test_bad_transaction_is_refused_and_changes_nothing(small_transactions, small_bundle,
                                                         column, value, status, words):
    history, batch = small_transactions.iloc[:3_000], small_transactions.iloc[3_000:3_010]
    clean = Scorer(small_bundle)
    clean.ingest(history)
    expected_next = clean.score_and_ingest(batch)

    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    events = scorer.events(batch)
    # Edited past the Python loader, which would refuse them itself: the core must refuse them too.
    where = {"card": ("entity_id", (4, 0)), "device": ("entity_id", (4, 1)),
             "country": ("categorical", (4, 0)), "mcc": ("categorical", (4, 1))}
    target, index = where.get(column, (column, 4))
    bad = edited(events, **{target: lambda a: set_at(a, index, value)})
    with pytest.raises(FraudError) as error:
        scorer.score_and_ingest(bad)
    assert error.value.status == status
    assert "event 4 " in str(error.value) and words in str(error.value), str(error.value)
    assert scorer.store_size == len(history)
    assert scorer.watermark_ms == int(history["timestamp_ms"].max())
    # The store is exactly as before: the clean batch now scores as on a store that never saw it.
    np.testing.assert_array_equal(scorer.score_and_ingest(events), expected_next)


def test_zero_amounts_and_any_code_are_events_now(small_transactions, small_bundle):
    # What the fixed schema refused (amount 0, country 0, mcc 10000) the declared one serves.
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.iloc[:1_000])
    new = small_transactions.iloc[[1_000]].copy()
    new[["amount", "country", "mcc"]] = [0.0, 0, 10_000]
    row = scorer.features(new).iloc[0]
    assert (row["amount"], row["log_amount"], row["country"], row["mcc"]) == (0.0, 0.0, 0.0, 10_000.0)
    score = scorer.score_and_ingest(new)
    assert np.isfinite(score).all() and 0.0 <= score[0] <= 1.0


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


# ---------------------------------------------------------------------------------------- labels

def _stats(scorer, *keys):
    s = scorer.stats()
    return tuple(s[k] for k in keys)


LABEL_COUNTS = ("labels_applied", "labels_rejected", "store_labels")


def test_labels_are_applied_counted_and_repeats_are_no_ops(small_transactions, small_bundle):
    scorer = Scorer(small_bundle)
    part = small_transactions.iloc[:1_000]
    scorer.ingest(part)
    assert _stats(scorer, *LABEL_COUNTS) == (0, 0, 0)
    ids, t = part["txn_id"].to_numpy(), part["timestamp_ms"].to_numpy()
    scorer.label(LabelArrays.make(ids[:3], [1, 0, 0], t[:3] + 1_000))
    assert _stats(scorer, *LABEL_COUNTS) == (3, 0, 3)
    # The same labels again (even at another time): nothing new.
    scorer.label(LabelArrays.make(ids[:3], [1, 0, 0], t[:3] + 5_000))
    assert _stats(scorer, *LABEL_COUNTS) == (3, 0, 3)
    # A DataFrame in the schema's columns (its label time column, declared by the preset).
    frame = part.iloc[3:10][["txn_id", "label", "label_time_ms"]]
    scorer.label(frame)
    assert _stats(scorer, *LABEL_COUNTS) == (10, 0, 10)
    # Labels count as labels, not as transactions.
    assert _stats(scorer, "ingested", "rejected", "store_transactions") == (1_000, 0, 1_000)


@pytest.mark.parametrize("case, status, words", [
    ("unknown", "FRAUD_STATUS_UNKNOWN_EVENT", "no such event"),
    ("not_0_or_1", "FRAUD_STATUS_INVALID_LABEL", "must be 0 or 1"),
    ("before_its_event", "FRAUD_STATUS_INVALID_LABEL", "before the event's time_ms"),
    ("changed", "FRAUD_STATUS_LABEL_CONFLICT", "differs from the stored label"),
    ("changed_in_the_batch", "FRAUD_STATUS_LABEL_CONFLICT", "differs from label 0 of the batch"),
])
def test_a_bad_label_is_refused_and_applies_nothing(small_transactions, small_bundle, case, status, words):
    scorer = Scorer(small_bundle)
    part = small_transactions.iloc[:1_000]
    scorer.ingest(part)
    ids, t = part["txn_id"].to_numpy(), part["timestamp_ms"].to_numpy()
    scorer.label(LabelArrays.make(ids[:1], [1], t[:1]))  # a stored label for "changed"
    # Label 0 of each batch is good (an unlabelled event); label 1 is the bad one.
    batch = {
        "unknown": ([ids[5], 10 ** 15], [1, 1], [t[5], t[5]]),
        "not_0_or_1": ([ids[5], ids[6]], [1, 2], [t[5], t[6]]),
        "before_its_event": ([ids[5], ids[6]], [1, 1], [t[5], t[6] - 1]),
        "changed": ([ids[5], ids[0]], [1, 0], [t[5], t[0]]),
        "changed_in_the_batch": ([ids[5], ids[5]], [1, 0], [t[5], t[5]]),
    }[case]
    with pytest.raises(FraudError) as error:
        scorer.label(LabelArrays.make(*batch))
    assert error.value.status == status, str(error.value)
    assert "label 1 " in str(error.value) and words in str(error.value), str(error.value)
    assert f"event_id={batch[0][1]}" in str(error.value), str(error.value)
    # All or nothing: the good label of the batch was not applied either (so 0 is no conflict).
    assert _stats(scorer, *LABEL_COUNTS) == (1, 2, 1)
    assert scorer.stats()["rejected_by_status"] == {status: 2}
    scorer.label(LabelArrays.make(ids[5:6], [0], t[5:6]))
    assert _stats(scorer, *LABEL_COUNTS) == (2, 2, 2)


def test_labels_need_the_label_columns(small_transactions, small_bundle):
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.iloc[:100])
    with pytest.raises(ValueError, match="'label'"):
        scorer.label(small_transactions.iloc[:10][["txn_id", "label_time_ms"]])
    with pytest.raises(TypeError, match="LabelArrays"):
        scorer.label(np.zeros(3))
    assert _stats(scorer, *LABEL_COUNTS) == (0, 0, 0)


def test_cli_score_then_label_a_durable_store(small_bundle, small_transactions_csv, tmp_path):
    state = tmp_path / "state"
    run = _cli("score", small_bundle, small_transactions_csv, "--state-dir", state, "--out", tmp_path / "s.csv")
    assert run.returncode == 0, run.stderr
    frame = pd.read_csv(small_transactions_csv)
    labels = tmp_path / "labels.csv"
    frame.iloc[:200][["txn_id", "label", "label_time_ms"]].to_csv(labels, index=False)
    run = _cli("label", small_bundle, labels, "--state-dir", state)
    assert run.returncode == 0, run.stderr
    assert "200 new, 200 labelled events in the store" in run.stderr, run.stderr
    restored = Scorer(small_bundle, state_dir=state)
    assert restored.store_size == len(frame) and restored.stats()["store_labels"] == 200
    # A changed label is refused by its status, and nothing is applied.
    frame.loc[:199, "label"] = 1 - frame.loc[:199, "label"]
    frame.iloc[:200][["txn_id", "label", "label_time_ms"]].to_csv(labels, index=False)
    del restored
    run = _cli("label", small_bundle, labels, "--state-dir", state)
    assert run.returncode == 2 and "FRAUD_STATUS_LABEL_CONFLICT" in run.stderr, run.stderr
    assert Scorer(small_bundle, state_dir=state).stats()["store_labels"] == 200
