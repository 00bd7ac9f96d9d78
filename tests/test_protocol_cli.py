"""The fraud team's protocol by files and flags alone: periods with a label delay and warm-up,
calibration, an alert-budget threshold, a tuned and tracked run, a report; then the bundle served
from a warmed store gives the training run's (calibrated) test scores."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from libfraud.cli import main
from libfraud.data.generate_cards import write_card_transactions

CONFIG = """
preset = "cards"

[periods]
train_start = "2026-02-10"
train_end = "21d"
label_delay = "7d"
test_end = "14d"

[xgboost]
trees = 80
depth = 4

[gnn]
enabled = false

[decision]
calibration = "platt"
threshold = "alerts_per_day:20"

[evaluation]
k = 10
entity = "customer"
drop_known_compromised = true

[tuning]
trials = 3

[model]
name = "cards-test"
version = "7"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    data = write_card_transactions(root / "cards.parquet", 60_000, seed=5, n_customers=250,
                                   n_terminals=500, fraud_rate=0.02, start="2026-01-01")
    config = root / "run.toml"
    config.write_text(CONFIG)
    store = root / "mlruns"
    model = root / "model"
    assert main(["-q", "train", str(data), "--config", str(config), "--out", str(model),
                 "--mlflow-uri", str(store)]) == 0
    bundle = root / "bundle"
    assert main(["-q", "compile", str(model), "--out", str(bundle)]) == 0
    return root, data, model, bundle, store


def test_training_records_periods_calibration_threshold_and_provenance(run):
    root, data, model, bundle, store = run
    info = json.loads((model / "training.json").read_text())
    p = info["periods"]
    assert p["train_start"].startswith("2026-02-10") and p["test_start"].startswith("2026-03-10")
    assert p["label_cutoff"] == p["test_start"] and p["label_delay_ms"] == 7 * 86_400_000
    assert info["split_rows"]["warmup"] > 0 and info["split_rows"]["gap"] > 0
    assert info["calibration"]["method"] == "platt"
    assert info["threshold_rule"].startswith("at most 20 alerts per day on validation")
    assert p["threshold_details"]["alerts_per_day"] <= 20
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", info["provenance"]["data_fingerprint"])
    assert (info["provenance"]["name"], info["provenance"]["version"]) == ("cards-test", "7")
    tuning = json.loads((model / "tuning.json").read_text())
    assert len(tuning["trials"]) == 3 and tuning["best_params"]
    test = info["metrics"]["test"]
    for key in ("auprc", "auroc", "brier", "daily_customer_precision_at_10", "at_threshold", "alerts_per_day"):
        assert key in test, key
    assert test["auprc"] > 0.3  # far above the fraud rate (~0.02): the features carry the signal
    # Calibrated on validation: the mean probability is near the test's fraud rate, where the trees'
    # own output (scale_pos_weight) is inflated.
    assert test["brier"] < info["metrics"]["test_uncalibrated"]["brier"]


def test_report_html_is_self_contained(run):
    root, data, model, bundle, store = run
    html = (model / "report.html").read_text()
    assert "<img" in html and not re.search(r"(src|href)=[\"']https?://", html)
    report = json.loads((model / "report.json").read_text())
    assert report["threshold"]["rule"].startswith("at most 20 alerts")
    # Reasons: the core's TreeSHAP against xgboost's, and what moves the scores, per family.
    explanation = report["explanation"]
    assert explanation["parity"]["passed"] and explanation["parity"]["max_abs_diff"] <= 1e-4
    assert {f["name"] for f in explanation["families"]} >= {"velocity", "amount"}
    assert 'id="fig-reasons"' in html


def test_bundle_carries_the_calibrator_and_the_provenance(run):
    root, data, model, bundle, store = run
    manifest = json.loads((bundle / "manifest.json").read_text())
    info = json.loads((model / "training.json").read_text())
    assert manifest["calibration"]["method"] == "platt"
    assert manifest["threshold"] == pytest.approx(info["threshold"])
    assert manifest["model"]["name"] == "cards-test" and manifest["model"]["version"] == "7"
    assert manifest["model"]["data_fingerprint"] == info["provenance"]["data_fingerprint"]


def test_the_run_and_its_bundle_are_tracked(run):
    from libfraud.tracking import read_run
    root, data, model, bundle, store = run
    info = json.loads((model / "training.json").read_text())
    got = read_run(info["mlflow"]["uri"], info["mlflow"]["run_id"])
    assert got["metrics"]["test.auprc"] == pytest.approx(info["metrics"]["test"]["auprc"])
    best = json.loads((model / "tuning.json").read_text())["best_params"]
    assert got["params"]["xgboost.max_depth"] == str(best["max_depth"])  # the tuned model's parameters
    names = set(got["artifacts"])
    assert {"report.html", "schema.json", "spec.json", "bundle/manifest.json"} <= names


def test_served_from_a_warmed_store_matches_training(run, tmp_path):
    """`score --history` starts the store where a switch running since then would be: the served
    test scores equal the training run's calibrated test scores."""
    root, data, model, bundle, store = run
    info = json.loads((model / "training.json").read_text())
    df = pd.read_parquet(data)
    start = pd.Timestamp(info["periods"]["test_start"]).tz_localize(None)
    end = pd.Timestamp(info["periods"]["test_end"]).tz_localize(None)
    history, test = df[df.TX_DATETIME < start], df[(df.TX_DATETIME >= start) & (df.TX_DATETIME < end)]
    history.to_parquet(tmp_path / "history.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    out = tmp_path / "scores.csv"
    assert main(["-q", "score", str(bundle), str(tmp_path / "test.parquet"), "--history",
                 str(tmp_path / "history.parquet"), "--labels", "--out", str(out)]) == 0
    served = pd.read_csv(out)["score"].to_numpy(np.float32)
    holdout_y = np.load(model / "holdout_y.npy")
    assert len(served) == len(holdout_y)
    from libfraud.scorer import Scorer
    from libfraud.train import load_trained
    trees, _, X = load_trained(model)
    from libfraud.calibration import Calibrator
    expected = Calibrator.from_manifest(info["calibration"]).apply(trees.predict_proba(X))
    assert np.max(np.abs(served - expected)) < 1e-5
    # Without the history the store starts empty and the scores are not the same.
    cold = Scorer(bundle).score_and_ingest_replaying_labels(test)
    assert np.max(np.abs(cold - expected)) > 1e-3


def test_bad_periods_and_unreachable_tracking_fail_before_writing(run, tmp_path, capsys):
    root, data, model, bundle, store = run
    out = tmp_path / "never"
    assert main(["-q", "train", str(data), "--preset", "cards", "--out", str(out), "--no-gnn", "--no-track",
                 "--train-start", "2026-02-10", "--train-end", "14d", "--test-start", "2026-02-15"]) == 2
    assert "--test-start" in capsys.readouterr().err and not out.exists()
    assert main(["-q", "train", str(data), "--preset", "cards", "--out", str(out), "--no-gnn", "--no-track",
                 "--train-end", "14d", "--label-delay", "400d"]) == 2
    assert "--label-delay" in capsys.readouterr().err and not out.exists()
    assert main(["-q", "train", str(data), "--preset", "cards", "--out", str(out), "--no-gnn",
                 "--train-end", "14d", "--mlflow-uri", "http://127.0.0.1:9"]) == 2
    assert "--mlflow-uri" in capsys.readouterr().err and not out.exists()


def test_a_misspelt_config_key_is_named(run, tmp_path, capsys):
    root, data, model, bundle, store = run
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.replace('calibration = "platt"', 'calibraton = "platt"'))
    out = tmp_path / "never"
    assert main(["-q", "train", str(data), "--config", str(config), "--out", str(out), "--no-track"]) == 2
    assert "'calibraton'" in capsys.readouterr().err and not out.exists()


def test_the_bundle_carries_the_drift_reference_of_the_training_period(run):
    root, data, model, bundle, store = run
    periods = json.loads((model / "training.json").read_text())["periods"]
    drift = json.loads((bundle / "manifest.json").read_text())["drift"]
    ref = drift["computed_on"]
    assert ref["source"] == "training" and ref["rows"] == len(np.load(model / "reference_X.npy")) > 0
    assert periods["train_start"][:10] <= ref["from_utc"][:10] <= ref["to_utc"][:10] < periods["test_start"][:10]
    assert [f["name"] for f in drift["features"]] == json.loads((bundle / "manifest.json").read_text())["features"]["order"]
