"""Drift (export/BUNDLE.md "drift"; fraud.h fraud_engine_drift): the bundle's reference, the core's
online monitor against a NumPy reference (same bins, same floor), its rotating window, a shifted
stream, threads, hot swaps, refusals, and the offline `libfraud drift` report."""

from __future__ import annotations

import json
import math
import re
import shutil
import threading

import numpy as np
import pytest
import xgboost as xgb

from libfraud import FraudError, Scorer, _core
from libfraud.cli import main
from libfraud.export import build_bundle, verify_bundle

FLOOR = 1e-4  # fraud.h: both proportions floored before the sum
WINDOW = 1000  # the smallest window: 10 slots of 100 events


# ---- the NumPy reference: bins [e_{i-1}, e_i) with the outer ones open, then one for NaN


def np_bins(edges, values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32).astype(np.float64)
    b = np.searchsorted(np.asarray(edges, dtype=np.float64), v, side="right")
    return np.where(np.isnan(v), len(edges) + 1, b)


def np_psi(histogram: dict, values) -> float:
    edges, ref = histogram["edges"], np.asarray(histogram["proportions"])
    counts = np.bincount(np_bins(edges, values), minlength=len(edges) + 2)
    a = np.maximum(counts / counts.sum(), FLOOR)
    r = np.maximum(ref, FLOOR)
    return float(np.sum((a - r) * np.log(a / r)))


def np_all_psi(section: dict, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, float]:
    return (np.array([np_psi(h, rows[:, j]) for j, h in enumerate(section["features"])]),
            np_psi(section["score"], scores))


# ---- fixtures


def _with_reference(r, out, booster=None):
    return build_bundle(out, booster=booster or r.model.booster, feature_names=list(r.model.feature_names),
                        schema=r.schema, spec=r.spec, X_holdout=r.X_test, threshold=r.threshold,
                        threshold_rule=r.threshold_rule, metrics={}, calibration=r.calibration,
                        drift_reference=r.X_reference, drift_reference_info=r.reference_info)


@pytest.fixture(scope="module")
def drift_bundle(small_training, tmp_path_factory):
    """small_training's model, calibrated, with the drift reference of its training sample."""
    return _with_reference(small_training, tmp_path_factory.mktemp("drift") / "bundle")


@pytest.fixture(scope="module")
def section(drift_bundle) -> dict:
    return json.loads((drift_bundle / "manifest.json").read_text())["drift"]


@pytest.fixture(scope="module")
def stream(small_transactions):
    """6,000 events: 3,000 as generated (A), then 3,000 with amounts x3 (B)."""
    a = small_transactions.iloc[5_000:8_000].copy()
    b = small_transactions.iloc[8_000:11_000].copy()
    b["amount"] = b["amount"] * 3
    return a, b


def served(bundle, *frames):
    """Rows and scores as served (each event seeing only earlier ones): stored, then read back."""
    import pandas as pd
    scorer = Scorer(bundle)
    frame = pd.concat(frames)
    scorer.ingest(frame)
    return np.asarray(scorer.features(frame), dtype=np.float32), scorer.score(frame)


# ---- the reference


def test_the_reference_bins_the_training_sample_and_the_cores_served_scores(small_training, drift_bundle,
                                                                             section):
    r = small_training
    names = list(r.model.feature_names)
    info = section["computed_on"]
    assert info["source"] == "training" and info["rows"] == len(r.X_reference) == 5000
    assert info["from_utc"] < info["to_utc"] and info["sample_of_rows"] > info["rows"]
    assert [f["name"] for f in section["features"]] == names
    for j, f in enumerate(section["features"]):
        col = r.X_reference[:, j]
        present = col[~np.isnan(col)]
        expected = np.unique(np.quantile(present, np.arange(1, 10) / 10, method="lower")) if present.size else []
        np.testing.assert_array_equal(f["edges"], expected)
        counts = np.bincount(np_bins(f["edges"], col), minlength=len(f["edges"]) + 2)
        np.testing.assert_allclose(f["proportions"], counts / len(col), rtol=0, atol=1e-12)
    # The score's reference is of the core's calibrated scores (not xgboost's raw probabilities).
    scores = Scorer(drift_bundle).score_features(r.X_reference)
    raw = r.model.booster.inplace_predict(r.X_reference)
    assert np.max(np.abs(scores - raw)) > 1e-3
    counts = np.bincount(np_bins(section["score"]["edges"], scores), minlength=len(section["score"]["edges"]) + 2)
    np.testing.assert_allclose(section["score"]["proportions"], counts / len(scores), atol=1e-12)
    # An older core ignores the section: the bundle's format version is what it was without it.
    assert json.loads((drift_bundle / "manifest.json").read_text())["format_version"] == 3


def test_drift_psi_and_drift_bin_match_numpy(small_training, section, stream, drift_bundle):
    rows, scores = served(drift_bundle, *stream)
    out = _core.drift_psi(json.dumps(section), list(small_training.model.feature_names), rows, scores)
    features, score = np_all_psi(section, rows, scores)
    np.testing.assert_allclose(out["feature_psi"], features, rtol=1e-12, atol=1e-15)
    assert out["score_psi"] == pytest.approx(score, rel=1e-12)
    assert out["events"] == len(rows)
    v = np.array([-np.inf, -1, 0, 0.5, 1, 2, np.inf, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(_core.drift_bin(np.array([0.0, 1.0]), v), np_bins([0.0, 1.0], v))
    with pytest.raises(ValueError, match="strictly increasing"):
        _core.drift_bin(np.array([1.0, 0.0]), v)


# ---- the online monitor


def test_bulk_ingest_then_read_back_is_what_score_and_ingest_serves(drift_bundle, stream):
    # What `libfraud drift` relies on to get served rows in bulk.
    a, _ = stream
    live = Scorer(drift_bundle).score_and_ingest(a)
    np.testing.assert_array_equal(served(drift_bundle, a)[1], live)


def test_the_monitor_matches_numpy_and_its_window_rotates(drift_bundle, section, stream):
    a, b = stream
    rows, scores = served(drift_bundle, a, b)
    scorer = Scorer(drift_bundle, drift_window_events=WINDOW)
    assert scorer.drift()["window_events"].max() == 0 and scorer.drift()["psi"].isna().all()
    names = scorer.feature_names

    def check(upto: int):
        # One event a call (score_and_ingest_timed): event e is in slot e // 100, and the window
        # is the last 10 slots of what was fed.
        lo = (max(upto - 1, 0) // 100 - 9) * 100
        window = slice(max(lo, 0), upto)
        frame = scorer.drift().set_index("feature")
        assert (frame["window_events"] == window.stop - window.start).all()
        features, score = np_all_psi(section, rows[window], scores[window])
        np.testing.assert_allclose(frame.loc[names, "psi"].to_numpy(), features, rtol=1e-9, atol=1e-12)
        assert frame.loc["score", "psi"] == pytest.approx(score, rel=1e-9)
        return features

    scorer.score_and_ingest_timed(a.iloc[:600])
    check(600)
    scorer.score_and_ingest_timed(a.iloc[600:])
    only_a = check(3000)
    scorer.score_and_ingest_timed(b.iloc[:500])
    check(3500)  # half A, half B
    scorer.score_and_ingest_timed(b.iloc[500:])
    only_b = check(6000)  # A has left the window: B alone against the reference
    amount = names.index("amount")
    assert only_b[amount] > 0.25 > only_a[amount]
    stats = scorer.stats()
    assert stats["drift_window_events"] == WINDOW
    assert stats["drift_max_feature_psi"] == pytest.approx(only_b.max(), rel=1e-9)
    assert names[stats["drift_max_feature"]] in {names[i] for i in np.flatnonzero(only_b == only_b.max())}


def test_a_shifted_stream_raises_exactly_the_shifted_features(drift_bundle, stream, small_transactions):
    a, shifted = stream
    same = small_transactions.iloc[8_000:11_000]  # the same events with their own amounts
    psi, rows = {}, {}
    for name, frame in (("as generated", same), ("amounts x3", shifted)):
        scorer = Scorer(drift_bundle, drift_window_events=10_000)
        scorer.ingest(a)  # stored, not scored: the window holds the compared events only
        scorer.score_and_ingest(frame)
        psi[name] = scorer.drift().set_index("feature")["psi"]
        rows[name] = served(drift_bundle, a, frame)[0][len(a):]
    # The shifted features: those whose served values differ between the two streams.
    names = Scorer(drift_bundle).feature_names
    changed = [n for j, n in enumerate(names)
               if not np.array_equal(rows["as generated"][:, j], rows["amounts x3"][:, j], equal_nan=True)]
    unchanged = [n for n in names if n not in changed]
    assert "amount" in changed and "log_amount" in changed and "hour_of_day" in unchanged
    before, after = psi["as generated"], psi["amounts x3"]
    np.testing.assert_array_equal(after[unchanged].to_numpy(), before[unchanged].to_numpy())
    assert after[["amount", "log_amount"]].min() > max(0.25, after[unchanged].max())
    assert (after[["amount", "log_amount"]] > 2 * before[["amount", "log_amount"]]).all()


def test_threads_scoring_while_another_reads_drift(drift_bundle, small_transactions):
    scorer = Scorer(drift_bundle, drift_window_events=WINDOW)
    scorer.ingest(small_transactions.iloc[:5_000])
    chunks = [scorer.events(small_transactions.iloc[5_000 + 50 * i: 5_050 + 50 * i]) for i in range(40)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def score():
        try:
            for _ in range(5):
                for c in chunks:
                    scorer.score(c)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def read():
        try:
            while not stop.is_set():
                frame = scorer.drift()
                stats = scorer.stats()
                assert frame["window_events"].iloc[0] <= WINDOW + 10 * 64
                assert stats["drift_window_events"] <= WINDOW + 10 * 64
                assert (frame["psi"].dropna() >= 0).all()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    workers = [threading.Thread(target=score) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    reader.join()
    assert not errors, errors[0]
    assert scorer.stats()["scored"] == 4 * 5 * 40 * 50
    assert 900 - 640 <= scorer.drift()["window_events"].iloc[0] <= WINDOW + 640


def test_a_hot_swap_starts_a_fresh_window(small_training, drift_bundle, small_bundle, small_transactions,
                                          tmp_path):
    r = small_training
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 9, "nthread": 2},
                        xgb.DMatrix(r.X_test, label=r.y_test, feature_names=list(r.model.feature_names)),
                        num_boost_round=10)
    other = _with_reference(r, tmp_path / "other", booster=booster)
    scorer = Scorer(drift_bundle, drift_window_events=2000)
    scorer.score_and_ingest(small_transactions.iloc[:1500])
    assert scorer.drift()["window_events"].iloc[0] == 1500
    scorer.swap_bundle(other)
    fresh = scorer.drift()
    assert (fresh["window_events"] == 0).all() and fresh["psi"].isna().all()
    scorer.score(small_transactions.iloc[1500:1600])
    assert scorer.drift()["window_events"].iloc[0] == 100
    scorer.score(small_transactions.iloc[1600:4000])
    assert scorer.drift()["window_events"].iloc[0] <= 2000  # the open's window kept through the swap
    scorer.swap_bundle(small_bundle)  # no reference: says so
    with pytest.raises(FraudError, match="has no drift reference") as e:
        scorer.drift()
    assert e.value.status == "FRAUD_STATUS_NO_DRIFT_REFERENCE"


def test_a_bundle_without_a_reference_says_so(small_bundle, small_transactions):
    scorer = Scorer(small_bundle)
    scorer.score(small_transactions.iloc[:100])
    with pytest.raises(FraudError, match="no drift reference") as e:
        scorer.drift()
    assert e.value.status == "FRAUD_STATUS_NO_DRIFT_REFERENCE"
    stats = scorer.stats()
    assert stats["drift_window_events"] == 0 and stats["drift_max_feature"] == -1
    assert math.isnan(stats["drift_score_psi"]) and math.isnan(stats["drift_max_feature_psi"])


def test_a_bad_window_is_refused(drift_bundle):
    with pytest.raises(FraudError, match="drift_window_events must be 0") as e:
        Scorer(drift_bundle, drift_window_events=10)
    assert e.value.status == "FRAUD_STATUS_INVALID_ARGUMENT"


BAD_SECTIONS = [
    (lambda d: d["features"][3]["edges"].reverse(), r"drift.features\[3\] \('{name}'\).edges must be strictly increasing"),
    (lambda d: d["features"][3]["proportions"].__setitem__(0, d["features"][3]["proportions"][0] + 0.2),
     r"drift.features\[3\] \('{name}'\).proportions sum to 1.2"),
    (lambda d: d["features"][3]["proportions"].pop(), r"drift.features\[3\] \('{name}'\).proportions has"),
    (lambda d: d["features"].pop(), "'drift.features' has"),
    (lambda d: d["features"][3].__setitem__("name", "x"), r"drift.features\[3\].name is \"x\""),
    (lambda d: d["score"]["edges"].append(float("1e30")), "drift.score.proportions has"),
    (lambda d: d.__setitem__("version", 2), "reads version 1"),
]


@pytest.mark.parametrize("edit, message", BAD_SECTIONS,
                         ids=["unsorted edges", "sum 1.2", "a proportion short", "a feature short", "wrong name",
                              "score: an edge more", "version"])
def test_a_bad_section_is_refused_naming_the_feature(drift_bundle, section, tmp_path, edit, message):
    bad = shutil.copytree(drift_bundle, tmp_path / "bad")
    manifest = json.loads((bad / "manifest.json").read_text())
    edit(manifest["drift"])
    (bad / "manifest.json").write_text(json.dumps(manifest))
    name = section["features"][3]["name"]
    with pytest.raises(FraudError, match=message.replace("{name}", name)) as e:
        Scorer(bad)
    assert e.value.status == "FRAUD_STATUS_BUNDLE_INVALID"
    problems = verify_bundle(bad)  # the Python verifier applies the core's checks
    assert len(problems) == 1 and re.search(message.replace("{name}", name), problems[0]), problems


def test_the_verifier_passes_a_good_section(drift_bundle):
    assert verify_bundle(drift_bundle) == []


# ---- the offline report


def test_libfraud_drift_writes_the_report(drift_bundle, section, stream, small_transactions, tmp_path, capsys):
    a, b = stream
    history = tmp_path / "history.csv"
    data = tmp_path / "data.csv"
    small_transactions.iloc[:5_000].to_csv(history, index=False)
    b.to_csv(data, index=False)
    out, page = tmp_path / "report.json", tmp_path / "report.html"
    assert main(["drift", str(drift_bundle), str(data), "--history", str(history), "--out", str(out),
                 "--html", str(page), "--top", "5"]) == 0
    printed = capsys.readouterr().out
    assert "significant" in printed and "amount" in printed
    report = json.loads(out.read_text())
    assert report["events"] == len(b) and report["reference"]["source"] == "training"
    by_name = {row["feature"]: row for row in report["rows"]}
    rows, scores = served(drift_bundle, small_transactions.iloc[:5_000], b)
    features, score = np_all_psi(section, rows[5_000:], scores[5_000:])
    for j, f in enumerate(section["features"]):
        assert by_name[f["name"]]["psi"] == pytest.approx(features[j], rel=1e-9, abs=1e-12)
    assert by_name["score"]["psi"] == pytest.approx(score, rel=1e-9)
    assert by_name["amount"]["reading"] == "significant" and by_name["amount"]["p_value"] < 1e-6
    assert [r["psi"] for r in report["rows"]] == sorted((r["psi"] for r in report["rows"]), reverse=True)
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and "amount" in html
    # With the file's labels applied at their label times (label-aware features), and empty input.
    assert main(["drift", str(drift_bundle), str(data), "--labels", "--top", "3"]) == 0
    empty = tmp_path / "empty.csv"
    b.iloc[:0].to_csv(empty, index=False)
    capsys.readouterr()
    assert main(["drift", str(drift_bundle), str(empty)]) == 2
    assert "no transactions" in capsys.readouterr().err


def test_libfraud_drift_on_a_bundle_without_a_reference(small_bundle, small_transactions_csv, capsys):
    assert main(["drift", str(small_bundle), str(small_transactions_csv)]) == 2
    assert "no drift reference" in capsys.readouterr().err


def test_the_services_prometheus_metrics_carry_the_drift(drift_bundle, small_transactions):
    pytest.importorskip("prometheus_client", reason="the service's extra")
    from types import SimpleNamespace

    from prometheus_client import parser

    from libfraud.service.app import Service
    from libfraud.service.metrics import ServiceMetrics
    scorer = Scorer(drift_bundle)
    scorer.score_and_ingest(small_transactions.iloc[:500])
    ready = threading.Event()
    ready.set()
    service = SimpleNamespace(scorer=scorer, ready=ready, bundle_path=str(drift_bundle), bundle_sha256="0" * 64)
    service.feature_drift = lambda: Service.feature_drift(service)
    text = ServiceMetrics(service).text().decode()
    samples = [s for f in parser.text_string_to_metric_families(text) for s in f.samples]
    value = {s.name: s.value for s in samples if s.name != "libfraud_drift_feature_psi"}
    stats = scorer.stats()
    assert value["libfraud_drift_window_events"] == stats["drift_window_events"] == 500
    assert value["libfraud_drift_score_psi"] == pytest.approx(stats["drift_score_psi"])
    assert value["libfraud_drift_max_feature_psi"] == pytest.approx(stats["drift_max_feature_psi"])
    per_feature = {s.labels["feature"]: s.value for s in samples if s.name == "libfraud_drift_feature_psi"}
    drift = scorer.drift()
    assert per_feature == pytest.approx(dict(zip(drift["feature"][drift["index"] >= 0],
                                                 drift["psi"][drift["index"] >= 0])))
    assert set(per_feature) == set(scorer.feature_names)


def test_a_challenger_is_not_counted_and_its_promotion_starts_fresh(small_training, drift_bundle,
                                                                     small_transactions, tmp_path):
    r = small_training
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "seed": 3, "nthread": 2},
                        xgb.DMatrix(r.X_test, label=r.y_test, feature_names=list(r.model.feature_names)),
                        num_boost_round=5)
    challenger = _with_reference(r, tmp_path / "challenger", booster=booster)
    scorer = Scorer(drift_bundle, drift_window_events=2000)
    scorer.set_challenger(challenger)
    scorer.score_and_ingest(small_transactions.iloc[:300])
    before = scorer.drift()
    assert (before["window_events"] == 300).all()
    alone = Scorer(drift_bundle, drift_window_events=2000)  # the champion's figures, as without one
    alone.score_and_ingest(small_transactions.iloc[:300])
    np.testing.assert_array_equal(before["psi"], alone.drift()["psi"])
    scorer.promote_challenger()
    assert (scorer.drift()["window_events"] == 0).all()
    scorer.score(small_transactions.iloc[300:400])
    assert scorer.drift()["window_events"].iloc[0] == 100
