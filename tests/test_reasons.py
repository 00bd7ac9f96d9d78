"""Reasons from the core (fraud_engine_explain_events through Scorer): ranked reason families whose
contributions are the TreeSHAP contributions of their features, from the row that was scored;
declared families; and the refusals (no explanation data, bad k, bad manifests)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bundles import payments, random_bundle
from libfraud import _core
from libfraud.data.declared import DeclaredError, FeatureSpec, Schema
from libfraud.reasons import BUILTIN_FAMILIES, ReasonError, default_family, family_table
from libfraud.scorer import Scorer

K = 3


@pytest.fixture(scope="module")
def stream(small_transactions):
    return small_transactions.head(1_500)


@pytest.fixture(scope="module")
def explained(small_bundle, stream):
    """(frame of explain over a served stream, the rows scored, their contributions, scorer)."""
    scorer = Scorer(small_bundle)
    history, live = stream.iloc[:1_200], stream.iloc[1_200:]
    scorer.ingest(history)
    frame = scorer.explain(live, K)
    rows = scorer.features(live)
    return frame, rows, scorer.contributions(rows), scorer, live


def test_reasons_are_the_ranked_family_sums_of_the_scored_rows_contributions(explained):
    frame, rows, phi, scorer, live = explained
    with open(f"{scorer.bundle}/manifest.json", encoding="utf-8") as f:
        manifest = json.load(f)
    section = manifest["explanation"]
    families = section["families"]
    feature_family = np.asarray(section["feature_family"])
    names = scorer.feature_names
    # Same scores as plain scoring against the same store.
    np.testing.assert_array_equal(frame["score"].to_numpy(), scorer.score(live))
    checked = 0
    for i in range(len(frame)):
        sums = np.array([phi.iloc[i, :-1].to_numpy()[feature_family == f].sum() for f in range(len(families))])
        positive = np.flatnonzero(sums > 0)
        expect = positive[np.argsort(-sums[positive], kind="stable")][:K]
        assert frame["n_reasons"].iat[i] == len(expect)
        for j, fam in enumerate(expect, 1):
            assert frame[f"reason_{j}"].iat[i] == families[fam]["name"]
            assert frame[f"reason_{j}_code"].iat[i] == families[fam]["code"]
            assert frame[f"reason_{j}_text"].iat[i] == families[fam]["text"]
            assert frame[f"reason_{j}_contribution"].iat[i] == pytest.approx(sums[fam], abs=1e-9)
            members = np.flatnonzero(feature_family == fam)
            top = members[np.argmax(phi.iloc[i, members].to_numpy())]
            assert frame[f"reason_{j}_feature"].iat[i] == names[top]
            value = frame[f"reason_{j}_value"].iat[i]
            assert (np.isnan(value) and np.isnan(rows.iat[i, top])) or value == rows.iat[i, top]
            checked += 1
        for j in range(len(expect) + 1, K + 1):
            assert pd.isna(frame[f"reason_{j}"].iat[i]) and frame[f"reason_{j}_code"].iat[i] == 0
    assert checked > len(frame)  # most rows have several reasons


def test_contributions_sum_to_the_margin_of_the_served_score(explained):
    frame, rows, phi, scorer, _ = explained
    margin = phi.to_numpy().sum(axis=1)
    # An uncalibrated bundle serves the trees' probability: sigmoid of the margin.
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), frame["score"].to_numpy(), atol=2e-6)


def test_min_score_explains_only_the_scores_at_or_above_it(explained):
    frame, _, _, scorer, live = explained
    fresh = Scorer(scorer.bundle)
    cut = float(np.quantile(frame["score"], 0.8))
    # Against an empty store: scores differ from the fixture's, the rule is what is checked.
    gated = fresh.explain(live, K, min_score=cut)
    above = gated["score"].to_numpy() >= cut
    assert above.any() and (~above).any()
    assert (gated.loc[~above, "n_reasons"] == 0).all()
    assert (gated.loc[above, "n_reasons"] > 0).all()


def test_serving_with_reasons_scores_and_stores_as_serving_without(small_bundle, stream):
    plain, with_reasons = Scorer(small_bundle), Scorer(small_bundle)
    expected = plain.score_and_ingest(stream)
    frame = with_reasons.score_and_ingest_explained(stream, 2)
    np.testing.assert_array_equal(frame["score"].to_numpy(), expected)
    assert with_reasons.store_size == plain.store_size == len(stream)
    assert list(frame.index) == list(stream.index)


def test_bad_k_and_min_score_are_refused_naming_the_limit(small_bundle, stream):
    scorer = Scorer(small_bundle)
    n = len(scorer.reason_families)
    assert n == len({f["code"] for f in scorer.reason_families}) >= 3
    for k in (0, n + 1):
        with pytest.raises(_core.FraudError, match=rf"k is {k}; this bundle has {n} reason families") as e:
            scorer.explain(stream.head(3), k)
        assert e.value.status == "FRAUD_STATUS_INVALID_ARGUMENT"
    with pytest.raises(_core.FraudError, match="min_score is NaN"):
        scorer.explain(stream.head(3), 1, min_score=float("nan"))
    with pytest.raises(_core.FraudError, match=r"k is 0"):
        scorer.score_and_ingest_explained(stream.head(3), 0)
    assert scorer.store_size == 0  # refused before anything was stored


def test_a_bundle_without_explanation_data_says_so_and_scores_unaffected(tmp_path):
    schema, spec = payments()
    with_data = Scorer(random_bundle(tmp_path / "with", schema, spec, rounds=6))
    without = Scorer(random_bundle(tmp_path / "without", schema, spec, rounds=6, explain=False))
    manifest = json.loads((tmp_path / "without" / "manifest.json").read_text())
    assert "explanation" not in manifest and "shap_tables" not in manifest["parity"]
    assert without.reason_families == []
    rows = np.random.default_rng(0).normal(size=(4, len(without.feature_names))).astype(np.float32)
    with pytest.raises(_core.FraudError, match="has no explanation data") as e:
        without.contributions(rows)
    assert e.value.status == "FRAUD_STATUS_NO_EXPLANATION"
    np.testing.assert_array_equal(without.score_features(rows), with_data.score_features(rows))
    # A swap to it: reasons stop with a clear status, scoring goes on.
    with_data.swap_bundle(tmp_path / "without")
    with pytest.raises(_core.FraudError, match="no explanation data"):
        with_data.contributions(rows)
    assert with_data.score_features(rows).shape == (4,)


def test_declared_families_and_reason_keys_reach_the_manifest(tmp_path):
    schema, spec = payments()
    spec = dict(spec)
    spec["reasons"] = [{"name": "card_habits", "code": 4101, "text": "Unusual for this card"},
                       {"name": "velocity", "code": 1, "text": "Burst of payments"}]
    features = [dict(f) for f in spec["features"]]
    features[0]["reason"] = "card_habits"
    spec["features"] = features
    spec = FeatureSpec.from_json(spec, Schema.from_json(schema)).to_json()
    out = random_bundle(tmp_path / "b", schema, spec, rounds=6)
    section = json.loads((out / "manifest.json").read_text())["explanation"]
    by_name = {f["name"]: f for f in section["families"]}
    assert by_name["card_habits"]["code"] == 4101
    assert by_name["velocity"]["text"] == "Burst of payments"
    assert section["families"][section["feature_family"][0]]["name"] == "card_habits"
    assert [f["code"] for f in section["families"]] == sorted(f["code"] for f in section["families"])
    assert Scorer(out).reason_families == [{"code": f["code"], "name": f["name"], "text": f["text"]}
                                           for f in section["families"]]


def test_families_by_kind_and_bad_declarations():
    assert default_family({"kind": "window", "agg": "count"}) == "velocity"
    assert default_family({"kind": "window", "agg": "mean"}) == "spending"
    assert default_family({"kind": "label"}) == "entity_risk"
    assert default_family({"kind": "novelty"}) == "new_counterparty"
    assert default_family({"kind": "amount_vs_history"}) == "amount_vs_normal"
    assert len({f.code for f in BUILTIN_FAMILIES}) == len(BUILTIN_FAMILIES)
    with pytest.raises(ReasonError, match="codes must be unique"):
        family_table([{"name": "mine", "code": 1, "text": "x"}])
    with pytest.raises(ReasonError, match="code must be an integer"):
        family_table([{"name": "mine", "code": 0, "text": "x"}])
    with pytest.raises(ReasonError, match="unknown key 'txt'"):
        family_table([{"name": "mine", "code": 77, "txt": "x"}])
    schema, spec = payments()
    features = [dict(f) for f in spec["features"]]
    features[0]["reason"] = "no_such_family"
    with pytest.raises(DeclaredError, match="reason 'no_such_family' is not a family"):
        FeatureSpec.from_json({**spec, "features": features})


def test_reasons_declared_in_toml(tmp_path):
    from libfraud.data.declared import load_config
    toml = tmp_path / "config.toml"
    toml.write_text("""
[event_id]
column = "id"
[time]
column = "t"
unit = "ms"
[amount]
column = "amt"
[[entities]]
name = "card"
column = "card"
[[reason]]
name = "big_ticket"
code = 300
text = "Large payment"
[[feature]]
kind = "amount"
reason = "big_ticket"
[[feature]]
kind = "window"
entity = "card"
agg = "count"
window = "1h"
""")
    _, spec = load_config(toml)
    assert spec.reasons == ({"name": "big_ticket", "code": 300, "text": "Large payment"},)
    assert spec.features[0]["reason"] == "big_ticket" and "reason" not in spec.features[1]
    assert spec.to_json()["reasons"] == [{"name": "big_ticket", "code": 300, "text": "Large payment"}]
    toml.write_text(toml.read_text().replace('reason = "big_ticket"', 'reason = "huge"'))
    with pytest.raises(DeclaredError, match="reason 'huge' is not a family"):
        load_config(toml)


def _edit_manifest(bundle, fn):
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    fn(manifest)
    path.write_text(json.dumps(manifest))


def test_broken_explanation_data_is_refused_at_open(tmp_path):
    schema, spec = payments()
    good = random_bundle(tmp_path / "good", schema, spec, rounds=4)
    cases = {
        "feature_family": (lambda m: m["explanation"]["feature_family"].pop(), "feature_family' has"),
        "index": (lambda m: m["explanation"]["feature_family"].__setitem__(0, 99), "not an index"),
        "code": (lambda m: m["explanation"]["families"][1].__setitem__("code", m["explanation"]["families"][0]["code"]),
                 "is also family"),
        "artifact": (lambda m: m["explanation"].__setitem__("artifact", "trees"), "expected 'libfraud-tree-shap'"),
        "version": (lambda m: m["explanation"].__setitem__("version", 2), "reads version 1"),
    }
    for name, (edit, message) in cases.items():
        bad = tmp_path / name
        shutil.copytree(good, bad)
        _edit_manifest(bad, edit)
        with pytest.raises(_core.FraudError, match=message):
            _core.Engine(str(bad))
    # The tables file altered: its checksum; altered with a matching checksum: the reader.
    tampered = tmp_path / "tampered"
    shutil.copytree(good, tampered)
    tables = tampered / "explain" / "shap_tables.bin"
    tables.write_bytes(tables.read_bytes()[:-3])
    with pytest.raises(_core.FraudError, match="shap_tables"):
        _core.Engine(str(tampered))
    import hashlib
    data = tables.read_bytes()

    def refresh(m):
        entry = next(a for a in m["artifacts"] if a["name"] == "shap_tables")
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    _edit_manifest(tampered, refresh)
    with pytest.raises(_core.FraudError, match=r"\d+ bytes where the header's \d+ trees and \d+ nodes take \d+") as e:
        _core.Engine(str(tampered))
    assert e.value.status == "FRAUD_STATUS_LOAD_ERROR"


def test_cli_score_adds_reason_columns(small_bundle, small_transactions_csv, tmp_path):
    base = [sys.executable, "-m", "libfraud", "score", str(small_bundle), str(small_transactions_csv)]
    plain = tmp_path / "plain.csv"
    subprocess.run(base + ["--out", str(plain)], check=True, capture_output=True)
    scores = pd.read_csv(plain)["score"]
    cut = float(scores.median())
    out = tmp_path / "scored.csv"
    subprocess.run(base + ["--out", str(out), "--reasons", "2", "--reasons-min-score", str(cut)],
                   check=True, capture_output=True)
    scored = pd.read_csv(out)
    for j in (1, 2):
        for suffix in ("", "_code", "_text", "_contribution", "_feature", "_value"):
            assert f"reason_{j}{suffix}" in scored.columns
    np.testing.assert_array_equal(scored["score"], scores)
    above = scored["score"] >= cut
    assert scored.loc[~above, "reason_1_code"].eq(0).all()
    explained = scored.loc[above & scored["reason_1_code"].gt(0)]
    assert len(explained) > 0.5 * above.sum()
    assert (explained["reason_1_contribution"] >= explained["reason_2_contribution"].fillna(0)).all()
    bad = subprocess.run(base + ["--reasons", "99"], capture_output=True, text=True)
    assert bad.returncode != 0 and "k is 99" in bad.stderr


def test_training_report_carries_parity_and_global_importance(small_training):
    from libfraud.explain_report import explanation_report
    r = small_training
    report = explanation_report(r.model.booster, r.model.feature_names, r.spec, r.X_test)
    assert report["parity"]["passed"] and report["parity"]["max_abs_diff"] <= 1e-4
    assert report["parity"]["max_abs_sum_vs_margin"] <= 1e-4
    values = list(report["features"].values())
    assert values == sorted(values, reverse=True) and len(values) == len(r.model.feature_names)
    families = report["families"]
    assert [f["mean_abs_contribution"] for f in families] == sorted(
        (f["mean_abs_contribution"] for f in families), reverse=True)
    # A family's mean |sum| is at most the sum of its features' mean |contribution|.
    import xgboost as xgb
    X = np.ascontiguousarray(r.X_test[: report["rows"]], dtype=np.float32)
    phi = r.model.booster.predict(xgb.DMatrix(X, feature_names=list(r.model.feature_names)),
                                  pred_contribs=True)[:, :-1]
    if len(r.X_test) <= report["rows"]:
        np.testing.assert_allclose(list(report["features"].values()),
                                   np.sort(np.abs(phi).mean(axis=0))[::-1], atol=1e-4)
    assert sum(f["mean_abs_contribution"] for f in families) <= sum(values) + 1e-9


def test_explaining_from_many_threads_gives_the_one_thread_answer(explained):
    """Per-thread scratch in the core: threads explaining at once (the GIL released) agree."""
    from concurrent.futures import ThreadPoolExecutor
    frame, _, _, scorer, live = explained
    expected = scorer.explain(live, K)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: scorer.explain(live, K), range(8)))
    for got in results:
        pd.testing.assert_frame_equal(got, expected)


def test_a_small_table_budget_falls_back_to_the_same_reasons(explained, caplog):
    """explain_table_bytes below the precomputed tables' size: the recursive kernel, said in the
    log, with the same contributions and reasons."""
    import logging
    frame, rows, phi, scorer, live = explained
    with caplog.at_level(logging.INFO, logger="libfraud"):
        small = Scorer(scorer.bundle, explain_table_bytes=1)
    assert any("recursive TreeSHAP" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(small.contributions(rows).to_numpy(), phi.to_numpy(), rtol=0, atol=1e-6)
    fresh = Scorer(scorer.bundle)
    a, b = small.explain(live, K), fresh.explain(live, K)
    pd.testing.assert_series_equal(a["reason_1_code"], b["reason_1_code"])
    np.testing.assert_allclose(a["reason_1_contribution"], b["reason_1_contribution"], atol=1e-6)
