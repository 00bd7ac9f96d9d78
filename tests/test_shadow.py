"""The shadow challenger (fraud.h fraud_engine_set_challenger): scored beside the champion on the
same store state, each gives the scores it gives alone (bitwise, batches across the block edge);
the served scores never change; its counters match a reference; promotion is a hot swap with no
reload that no concurrent call notices halfway; a challenger that cannot serve leaves the engine
as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from libfraud import FraudError, Scorer
from libfraud.data.declared import load_preset

from bundles import payments, random_bundle, spec_json

BATCHES = (1, 63, 65, 130)  # around the core's block of 64


@pytest.fixture(scope="module")
def streams(small_transactions):
    return small_transactions.iloc[:4_000], small_transactions.iloc[4_000:4_000 + sum(BATCHES)]


@pytest.fixture(scope="module")
def reversed_bundle(tmp_path_factory):
    """The payments schema with some of its features in reverse order: rows unlike small_bundle's
    in every slot, so a challenger sharing the champion's buffers would show."""
    schema, spec = payments()
    features = list(reversed(spec["features"]))[::3]
    return random_bundle(tmp_path_factory.mktemp("reversed") / "bundle", schema, spec_json(schema, features),
                         rounds=8)


def one_by_one(bundle, history, live, backend: str = "") -> np.ndarray:
    alone = Scorer(bundle, gnn_backend=backend)
    alone.ingest(history)
    return np.concatenate([alone.score_and_ingest(live.iloc[i:i + 1]) for i in range(len(live))])


def in_batches(fn, live) -> list:
    out, at = [], 0
    for n in BATCHES:
        out.append(fn(live.iloc[at:at + n]))
        at += n
    return out


@pytest.mark.parametrize("pair", ["other", "reversed", "reversed_champion"])
def test_champion_and_challenger_score_as_each_alone(pair, small_bundle, other_bundle, reversed_bundle, streams):
    history, live = streams
    champion_bundle, challenger_bundle = {"other": (small_bundle, other_bundle),
                                          "reversed": (small_bundle, reversed_bundle),
                                          "reversed_champion": (reversed_bundle, small_bundle)}[pair]
    scorer = Scorer(champion_bundle)
    scorer.ingest(history)
    scorer.set_challenger(challenger_bundle)
    frame = pd.concat(in_batches(scorer.score_and_ingest_decide, live))
    champion = one_by_one(champion_bundle, history, live)
    challenger = one_by_one(challenger_bundle, history, live)
    np.testing.assert_array_equal(frame["score"].to_numpy(), champion)
    np.testing.assert_array_equal(frame["challenger_score"].to_numpy(), challenger)
    assert np.max(np.abs(champion - challenger)) > 1e-3
    threshold_b = Scorer(challenger_bundle).threshold
    np.testing.assert_array_equal(frame["challenger_decision"].to_numpy(),
                                  np.where(challenger >= threshold_b, "review", "allow").astype(object))
    s = scorer.stats()
    assert s["challenger_set"] and s["challenger_scored"] == len(live) and s["challenger_failures"] == 0
    assert s["challenger_decision_disagreements"] == int((frame["decision"] != frame["challenger_decision"]).sum())
    diff = np.abs(champion.astype(np.float64) - challenger)
    assert s["challenger_score_abs_diff_sum"] == pytest.approx(diff.sum(), rel=1e-9)
    assert s["challenger_score_abs_diff_mean"] == pytest.approx(diff.mean(), rel=1e-9)
    assert 0 < s["challenger_latency_p50_us"] <= s["challenger_latency_p99_us"]
    assert s["scored"] == len(live) and s["store_transactions"] == len(history) + len(live)


def test_plain_calls_serve_the_champion_while_the_challenger_is_scored(small_bundle, other_bundle, streams):
    history, live = streams
    shadowed, plain = Scorer(small_bundle), Scorer(small_bundle)
    for s in (shadowed, plain):
        s.ingest(history)
    shadowed.set_challenger(other_bundle)
    np.testing.assert_array_equal(np.concatenate(in_batches(shadowed.score_and_ingest, live)),
                                  np.concatenate(in_batches(plain.score_and_ingest, live)))
    later = live.iloc[-50:]
    np.testing.assert_array_equal(shadowed.score(later), plain.score(later))
    pd.testing.assert_frame_equal(shadowed.explain(later, 2), plain.explain(later, 2))
    assert shadowed.stats()["challenger_scored"] == len(live) + 2 * len(later)
    frame = shadowed.decide(later)  # score-only: both against the same store, nothing stored
    alone = Scorer(other_bundle)
    alone.ingest(pd.concat([history, live]))
    np.testing.assert_array_equal(frame["challenger_score"].to_numpy(), alone.score(later))


def test_the_log_records_both_and_replays(small_bundle, other_bundle, streams, tmp_path):
    import hashlib
    history, live = streams
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    scorer.set_challenger(other_bundle)
    scorer.decision_log(tmp_path / "d.jsonl")
    frame = pd.concat(in_batches(scorer.score_and_ingest_decide, live))
    records = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(records) == len(live)
    sha = hashlib.sha256((other_bundle / "manifest.json").read_bytes()).hexdigest()
    assert {r["challenger_sha256"] for r in records} == {sha} == {scorer._engine.bundle_sha256[1]}
    logged = np.array([r["challenger_score"] for r in records], dtype=np.float32)
    np.testing.assert_array_equal(logged, frame["challenger_score"].to_numpy())
    np.testing.assert_array_equal(logged, one_by_one(other_bundle, history, live))
    assert [r["challenger_decision"] for r in records] == list(frame["challenger_decision"])


def test_promotion_serves_the_challenger_from_then_on(small_bundle, other_bundle, streams):
    history, live = streams
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    scorer.set_challenger(other_bundle)
    first = scorer.score_and_ingest_decide(live.iloc[:100])
    scorer.promote_challenger()
    assert scorer.challenger is None and scorer.bundle == str(other_bundle)
    rest = scorer.score_and_ingest_decide(live.iloc[100:])
    assert "challenger_score" not in rest
    reference = one_by_one(other_bundle, history, live)
    np.testing.assert_array_equal(first["challenger_score"].to_numpy(), reference[:100])
    np.testing.assert_array_equal(rest["score"].to_numpy(), reference[100:])
    s = scorer.stats()
    assert s["bundle_swaps"] == 1 and not s["challenger_set"] and s["challenger_scored"] == 0
    assert scorer.bundle_sha256 == Scorer(other_bundle).bundle_sha256
    with pytest.raises(FraudError, match="no challenger is set") as e:
        scorer.promote_challenger()
    assert e.value.status == "FRAUD_STATUS_INVALID_ARGUMENT"


def test_a_swap_keeps_the_challenger_and_clearing_removes_it(small_bundle, other_bundle, streams):
    history, live = streams
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    scorer.set_challenger(other_bundle)
    scorer.swap_bundle(other_bundle)
    frame = scorer.decide(live)
    np.testing.assert_array_equal(frame["score"].to_numpy(), frame["challenger_score"].to_numpy())
    scorer.set_challenger(None)
    assert "challenger_score" not in scorer.decide(live) and not scorer.stats()["challenger_set"]
    assert scorer._engine.decide(*scorer.events(live.iloc[:3]).args())[3].tolist() == [-1, -1, -1]
    scorer.set_challenger("")  # clearing twice is fine


def test_a_challenger_that_cannot_serve_leaves_the_engine_as_it_was(small_bundle, other_bundle, streams,
                                                                     tmp_path):
    history, live = streams
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    scorer.set_challenger(other_bundle)
    before = scorer.decide(live)
    schema, spec = (x.to_json() for x in load_preset("cards"))
    cards = random_bundle(tmp_path / "cards", schema, spec)
    with pytest.raises(FraudError) as e:
        scorer.set_challenger(cards)
    assert e.value.status == "FRAUD_STATUS_BUNDLE_INVALID" and "schema differs" in str(e.value)
    broken = shutil.copytree(other_bundle, tmp_path / "broken")
    so = broken / "trees" / "model.so"
    data = bytearray(so.read_bytes())
    data[100] ^= 0xFF
    so.write_bytes(bytes(data))
    with pytest.raises(FraudError) as e:
        scorer.set_challenger(broken)
    assert e.value.status == "FRAUD_STATUS_BUNDLE_CHECKSUM"
    with pytest.raises(FraudError) as e:
        scorer.set_challenger(tmp_path / "nowhere")
    assert e.value.status == "FRAUD_STATUS_IO_ERROR"
    assert scorer.challenger == str(other_bundle)
    pd.testing.assert_frame_equal(scorer.decide(live), before)
    assert scorer.stats()["bundle_swaps"] == 0


def test_no_call_fails_or_mixes_bundles_while_promoting(small_bundle, other_bundle, streams):
    # Scoring threads (plain and decide) against a fixed store while another thread keeps setting
    # and promoting challengers: every call returns one bundle's scores whole, never a mix.
    history, live = streams
    part = live.iloc[:40]
    refs = {}
    for b in (small_bundle, other_bundle):
        alone = Scorer(b)
        alone.ingest(history)
        refs[str(b)] = alone.score(part)
    scorer = Scorer(small_bundle)
    scorer.ingest(history)
    events = scorer.events(part)
    stop = threading.Event()
    errors: list[str] = []
    counts = {"plain": 0, "decide": 0, "promotions": 0}

    def which(scores) -> str | None:
        return next((k for k, v in refs.items() if np.array_equal(scores, v)), None)

    def plain():
        while not stop.is_set():
            if which(scorer._engine.score(*events.args())) is None:
                errors.append("plain: a score of neither bundle")
            counts["plain"] += 1

    def decide():
        while not stop.is_set():
            out = scorer._engine.decide(*events.args())
            champion, challenger = which(out[0]), out[1]
            if champion is None:
                errors.append("decide: a champion score of neither bundle")
            elif not np.isnan(challenger).all() and which(challenger) in (None, champion):
                errors.append("decide: a challenger score of neither other bundle")
            counts["decide"] += 1

    threads = [threading.Thread(target=f) for f in (plain, plain, decide)]
    for t in threads:
        t.start()
    try:
        current, other = small_bundle, other_bundle
        for _ in range(15):
            scorer.set_challenger(other)
            scorer.promote_challenger()
            current, other = other, current
            counts["promotions"] += 1
            scorer.swap_bundle(current)  # a swap with no challenger, too
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert counts["plain"] > 0 and counts["decide"] > 0 and counts["promotions"] == 15
    assert scorer.stats()["bundle_swaps"] == 30


@pytest.mark.slow
def test_a_gnn_champion_and_a_tree_challenger_score_as_each_alone(small_demo, small_bundle):
    # The champion's GNN neighbourhoods and rows live in its own scratch: the challenger, staged
    # event by event in the same pass, must not overwrite them (and the other way round).
    _, out = small_demo
    df = pd.read_parquet(out / "transactions.parquet")
    history, live = df.iloc[:-400], df.iloc[-400:-400 + sum(BATCHES)]
    gnn = out / "bundle"
    backend = {gnn: "native", small_bundle: ""}
    for champion, challenger in ((gnn, small_bundle), (small_bundle, gnn)):
        scorer = Scorer(champion, gnn_backend=backend[champion])
        scorer.ingest(history)
        scorer.set_challenger(challenger, gnn_backend=backend[challenger])
        frame = pd.concat(in_batches(scorer.score_and_ingest_decide, live))
        np.testing.assert_array_equal(frame["score"].to_numpy(),
                                      one_by_one(champion, history, live, backend[champion]))
        np.testing.assert_array_equal(frame["challenger_score"].to_numpy(),
                                      one_by_one(challenger, history, live, backend[challenger]))


def test_cli_scores_with_a_challenger_and_a_decision_log(small_bundle, other_bundle, small_transactions_csv,
                                                         tmp_path):
    out, log = tmp_path / "scores.csv", tmp_path / "decisions.jsonl"
    run = subprocess.run([sys.executable, "-m", "libfraud", "-q", "score", str(small_bundle),
                          str(small_transactions_csv), "--out", str(out), "--challenger", str(other_bundle),
                          "--decision-log", str(log)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    frame, df = pd.read_csv(out), pd.read_csv(small_transactions_csv)
    reference = Scorer(small_bundle)
    reference.set_challenger(other_bundle)
    expected = reference.score_and_ingest_decide(df)
    np.testing.assert_array_equal(frame["score"].to_numpy(np.float32), expected["score"].to_numpy())
    np.testing.assert_array_equal(frame["challenger_score"].to_numpy(np.float32),
                                  expected["challenger_score"].to_numpy())
    assert list(frame["decision"]) == list(expected["decision"])
    assert list(frame["challenger_decision"]) == list(expected["challenger_decision"])
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["event_id"] for r in records] == list(df[reference.schema.event_id.column])
