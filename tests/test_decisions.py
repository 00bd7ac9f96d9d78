"""Decisions and decision records (fraud.h "Decisions"): the decide calls give the served scores and
the bundle's bands applied to them (checked against a plain reference, edges included), reasons as
explain gives them; the JSON Lines log has one line per event, names the bundle by the sha256 of
its manifest.json, and an audit replay of its events reproduces its scores; the callback sees each
call's records once; bad input is refused."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pandas as pd
import pytest

from libfraud import FraudError, Scorer
from libfraud.export import build_bundle

from bundles import edited, set_at

NAMES = np.array(["allow", "review", "decline"], dtype=object)


def reference_decisions(scores: np.ndarray, review_from: float, decline_from: float) -> np.ndarray:
    """The bands as BUNDLE.md states them, on the served score (compared as a double)."""
    s = scores.astype(np.float64)
    return NAMES[np.where(s >= decline_from, 2, np.where(s >= review_from, 1, 0))]


@pytest.fixture(scope="module")
def streams(small_transactions):
    return small_transactions.iloc[:4_000], small_transactions.iloc[4_000:4_600]


@pytest.fixture(scope="module")
def edge_bundle(small_training, small_bundle, small_transactions, tmp_path_factory):
    """small_bundle's model with its threshold set to one of its own scores: an event exactly at
    review_from."""
    s = Scorer(small_bundle)
    s.ingest(small_transactions.iloc[:4_000])
    scores = s.score(small_transactions.iloc[4_000:4_600])
    at = float(np.sort(scores)[len(scores) // 2])
    r = small_training
    return build_bundle(tmp_path_factory.mktemp("edge") / "bundle", booster=r.model.booster,
                        feature_names=list(r.model.feature_names), schema=r.schema, spec=r.spec,
                        X_holdout=r.X_test, threshold=at, threshold_rule="test", metrics={})


def test_decisions_are_the_bands_of_the_served_scores(small_bundle, streams):
    history, live = streams
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    frame = scorer.decide(live)
    bands = scorer.decision_bands
    assert bands == {"review_from": scorer.threshold, "decline_from": np.inf}
    assert scorer.rules == []
    np.testing.assert_array_equal(frame["score"].to_numpy(), scorer.score(live))
    np.testing.assert_array_equal(frame["decision"].to_numpy(),
                                  reference_decisions(frame["score"].to_numpy(), **bands))
    assert "decline" not in set(frame["decision"])  # no decline band without a decision section
    assert frame["rule_hits"].map(len).eq(0).all()
    np.testing.assert_array_equal(frame["event_id"].to_numpy(), scorer.events(live).event_id)
    assert list(frame.index) == list(live.index)
    assert "challenger_score" not in frame and scorer.store_size == len(history)


def test_a_score_exactly_at_review_from_is_reviewed(edge_bundle, streams):
    history, live = streams
    scorer = Scorer(edge_bundle)
    scorer.ingest(history)
    frame = scorer.decide(live)
    review_from = scorer.decision_bands["review_from"]
    s = frame["score"].to_numpy()
    at = s.astype(np.float64) == review_from
    assert at.any() and (s < review_from).any()
    assert (frame["decision"][at] == "review").all()
    assert (frame["decision"][s < review_from] == "allow").all()
    np.testing.assert_array_equal(frame["decision"].to_numpy(), reference_decisions(s, review_from, np.inf))


def test_serving_with_decisions_scores_as_score_and_ingest(small_bundle, streams):
    history, live = streams
    a, b = Scorer(small_bundle), Scorer(small_bundle)
    a.ingest(history)
    b.ingest(history)
    parts = [a.score_and_ingest_decide(live.iloc[i:j]) for i, j in ((0, 1), (1, 64), (64, 65), (65, 600))]
    frame = pd.concat(parts)
    np.testing.assert_array_equal(frame["score"].to_numpy(), b.score_and_ingest(live))
    assert a.store_size == b.store_size == len(history) + len(live)
    assert a.stats()["scored"] == len(live)


def test_decide_with_reasons_explains_as_explain(small_bundle, streams):
    history, live = streams
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    min_score = float(np.quantile(scorer.score(live), 0.7))
    frame = scorer.decide(live, 3, min_score=min_score)
    explained = scorer.explain(live, 3, min_score=min_score)
    pd.testing.assert_frame_equal(frame[explained.columns], explained)
    assert (frame["n_reasons"][frame["score"] < min_score] == 0).all()


def test_replay_forms_decide_as_they_score(small_bundle, small_transactions):
    history, live = small_transactions.iloc[:3_000], small_transactions.iloc[3_000:3_500]
    a, b = Scorer(small_bundle), Scorer(small_bundle)
    frame = a.decide_after(history, live)
    np.testing.assert_array_equal(frame["score"].to_numpy(), b.score_and_ingest_after(history, live))
    c, d = Scorer(small_bundle), Scorer(small_bundle)
    frame = c.decide_replaying_labels(live, 2)
    np.testing.assert_array_equal(frame["score"].to_numpy(), d.score_and_ingest_replaying_labels(live))
    assert "reason_2_code" in frame


def test_the_decision_log_is_an_audit_trail(small_bundle, streams, tmp_path):
    history, live = streams
    path = tmp_path / "decisions.jsonl"
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    scorer.decision_log(path)
    served = pd.concat([scorer.score_and_ingest_decide(live.iloc[:100], 2),
                        scorer.score_and_ingest_decide(live.iloc[100:101]),
                        scorer.score_and_ingest_decide(live.iloc[101:])])
    scorer.score(live.iloc[:5])  # score calls make no records
    scorer.decision_log(None)
    scorer.score_and_ingest_decide(live.iloc[:0])
    lines = path.read_text().splitlines()
    assert len(lines) == len(live)
    records = [json.loads(line) for line in lines]
    manifest_sha = hashlib.sha256((small_bundle / "manifest.json").read_bytes()).hexdigest()
    assert {r["bundle_sha256"] for r in records} == {manifest_sha} == {scorer.bundle_sha256}
    assert [r["event_id"] for r in records] == list(served["event_id"])
    assert [r["time_ms"] for r in records] == list(scorer.events(live).time_ms)
    logged = np.array([r["score"] for r in records], dtype=np.float32)
    np.testing.assert_array_equal(logged, served["score"].to_numpy())
    assert [r["decision"] for r in records] == list(served["decision"])
    assert all(r["rule_hits"] == [] and r["latency_us"] > 0 and "challenger_score" not in r for r in records)
    names = [f["name"] for f in scorer.reason_families]
    for r, (_, row) in zip(records[:100], served.iloc[:100].iterrows()):
        assert len(r["reasons"]) == row["n_reasons"]
        for j, reason in enumerate(r["reasons"], start=1):
            assert reason["code"] == row[f"reason_{j}_code"] and reason["name"] == row[f"reason_{j}"]
            assert reason["feature"] == row[f"reason_{j}_feature"]
            assert reason["contribution"] == row[f"reason_{j}_contribution"]
            value = row[f"reason_{j}_value"]
            assert reason["value"] is None if np.isnan(value) else np.float32(reason["value"]) == value
            assert names.index(reason["name"]) >= 0
    assert all(r["reasons"] == [] for r in records[100:])
    # The audit replay: the bundle the log names, fed the same stream, gives the logged scores.
    by_id = live.set_index(scorer.schema.event_id.column)
    replayed = Scorer(small_bundle)
    replayed.ingest(history)
    again = replayed.score_and_ingest(by_id.loc[[r["event_id"] for r in records]].reset_index())
    np.testing.assert_array_equal(again, logged)


def test_the_log_appends_and_reopens(small_bundle, streams, tmp_path):
    _, live = streams
    path = tmp_path / "d.jsonl"
    path.write_text('{"earlier": true}\n')
    scorer = Scorer(small_bundle)
    scorer.decision_log(path)
    scorer.decide(live.iloc[:3])
    scorer.decision_log(path)  # reopened: appends again
    scorer.decide(live.iloc[3:5])
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0]) == {"earlier": True}
    assert scorer.stats()["decision_records"] == 5
    with pytest.raises(FraudError) as e:
        scorer.decision_log(tmp_path / "no" / "such" / "dir.jsonl")
    assert e.value.status == "FRAUD_STATUS_IO_ERROR" and "dir.jsonl" in str(e.value)
    scorer.decide(live.iloc[5:6])  # the previous file stays open
    assert len(path.read_text().splitlines()) == 7


def test_the_callback_gets_each_calls_records_once(small_bundle, streams):
    history, live = streams
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    calls: list[list[dict]] = []
    scorer.set_decision_callback(calls.append)
    sizes = (1, 63, 65, 130)
    frames, at = [], 0
    for n in sizes:
        frames.append(scorer.score_and_ingest_decide(live.iloc[at:at + n]))
        at += n
    scorer.score_and_ingest(live.iloc[at:at + 10])  # no records
    assert [len(c) for c in calls] == list(sizes)
    served = pd.concat(frames)
    got = [r for c in calls for r in c]
    assert [r["event_id"] for r in got] == list(served["event_id"])
    np.testing.assert_array_equal(np.array([r["score"] for r in got], np.float32), served["score"].to_numpy())
    assert [NAMES[r["decision"]] for r in got] == list(served["decision"])
    assert {r["bundle_sha256"] for r in got} == {scorer.bundle_sha256}
    scorer.set_decision_callback(None)
    scorer.decide(live.iloc[:4])
    assert len(calls) == len(sizes)


def test_a_callback_that_raises_does_not_fail_the_call(small_bundle, streams, monkeypatch):
    _, live = streams
    scorer = Scorer(small_bundle)

    def boom(records):
        raise RuntimeError("boom")

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    scorer.set_decision_callback(boom)
    frame = scorer.score_and_ingest_decide(live.iloc[:5])
    assert len(frame) == 5 and scorer.store_size == 5
    assert len(seen) == 1 and isinstance(seen[0].exc_value, RuntimeError)


def test_bad_decide_requests_are_refused_and_nothing_is_stored(small_bundle, streams):
    _, live = streams
    scorer = Scorer(small_bundle)
    events = scorer.events(live.iloc[:10])
    with pytest.raises(FraudError) as e:
        scorer.score_and_ingest_decide(edited(events, amount=lambda a: set_at(a, 3, np.nan)))
    assert e.value.status == "FRAUD_STATUS_INVALID_TRANSACTION"
    n = len(scorer.reason_families)
    with pytest.raises(FraudError, match=f"k must be 1..{n}") as e:
        scorer.score_and_ingest_decide(events, n + 1)
    assert e.value.status == "FRAUD_STATUS_INVALID_ARGUMENT"
    with pytest.raises(FraudError, match="min_score is NaN"):
        scorer.decide(events, 2, min_score=float("nan"))
    with pytest.raises(ValueError, match="amount"):
        scorer._engine.decide(*events.args()[:2], events.amount[:5], *events.args()[3:])
    assert scorer.store_size == 0 and scorer.stats()["scored"] == 0
    assert len(scorer.decide(events.slice(0, 0))) == 0
