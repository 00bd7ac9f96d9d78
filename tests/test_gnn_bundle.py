"""The graph path end to end: a GNN bundle served by the core (features -> sample -> GNN plugin ->
trees), its backends, its refusals, and tree-only bundles that never load torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from libfraud import FraudError, Scorer

pytestmark = pytest.mark.slow


def test_demo_report_has_the_graph_fields(small_demo):
    report, out = small_demo
    m = report["metrics"]
    for key in ("test", "test_gbdt_only", "test_gnn_only"):
        assert 0.0 <= m[key]["auprc"] <= 1.0
    assert report["parity"]["trees"]["max_abs_diff"] <= 1e-5
    for backend in ("native", "aoti", "torchscript", "onnx"):
        assert report["parity"][backend]["max_abs_diff"] <= 1e-5, backend
    fp16 = report["parity"]["onnx_fp16"]
    assert fp16["passed"] and "score_effect" in fp16 and abs(fp16["score_effect"]["auprc_delta"]) < 0.05
    assert report["gnn_backend"] == "native"  # the fastest the bundle carries
    assert (out / "pr_curve.png").stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["metrics"]["test"]["auprc"] == m["test"]["auprc"]


def _live(out):
    df = pd.read_parquet(out / "transactions.parquet")
    return df.iloc[:-2000], df.iloc[-2000:]


def test_served_scores_match_the_python_pipeline(small_demo):
    report, out = small_demo
    # The demo served the test period through the C API and compared with Python's pipeline
    # (replayed features + PyTorch GNN + xgboost): the GNN's float32 rounding may move a score a little.
    assert report["parity"]["serving_vs_python"]["max_abs_diff"] <= 1e-4


def test_both_backends_give_the_same_scores(small_demo):
    _, out = small_demo
    history, live = _live(out)
    scores = {}
    for backend in ("native", "aoti", "torchscript"):
        scorer = Scorer(out / "bundle", gnn_backend=backend)
        assert scorer.gnn_backend == backend
        scorer.ingest(history)
        scores[backend] = scorer.score_and_ingest(live)
    # The GNN's outputs agree within 1e-5; a tree split on them may still move a score a little.
    assert np.max(np.abs(scores["aoti"] - scores["torchscript"])) <= 1e-4
    assert np.max(np.abs(scores["native"] - scores["aoti"])) <= 1e-4


def test_batches_score_as_one_by_one(small_demo):
    # A batch samples event by event (each seeing the ones before it stored) and runs the GNN and
    # the trees once per block of 64: sizes around the block edge, native bitwise, scores alike.
    _, out = small_demo
    history, live = _live(out)
    part = live.iloc[:130]
    for backend in ("native", "aoti", "torchscript"):
        single, batched = (Scorer(out / "bundle", gnn_backend=backend) for _ in range(2))
        single.ingest(history)
        batched.ingest(history)
        one_by_one = np.concatenate([single.score_and_ingest(part.iloc[i:i + 1]) for i in range(len(part))])
        got = np.concatenate([batched.score_and_ingest(part.iloc[a:b])
                              for a, b in ((0, 1), (1, 64), (64, 129), (129, 130))])
        scored = batched.score(live.iloc[130:330])  # score: a batch of 200 against the same store
        alone = np.concatenate([batched.score(live.iloc[i:i + 1]) for i in range(130, 330)])
        if backend == "native":
            np.testing.assert_array_equal(got, one_by_one)
            np.testing.assert_array_equal(scored, alone)
        else:  # a batched matmul may round differently from a batch of one
            np.testing.assert_allclose(got, one_by_one, rtol=0, atol=1e-6)
            np.testing.assert_allclose(scored, alone, rtol=0, atol=1e-6)
        assert batched.store_size == single.store_size


def test_gnn_features_are_what_the_trees_read(small_demo):
    _, out = small_demo
    history, live = _live(out)
    scorer = Scorer(out / "bundle")
    scorer.ingest(history)
    rows = scorer.features(live.iloc[:50])
    assert list(rows.columns[-17:]) == ["gnn_logit"] + [f"gnn_emb_{i}" for i in range(16)]
    assert np.isfinite(rows["gnn_logit"]).all()
    np.testing.assert_array_equal(scorer.score_features(rows.to_numpy()), scorer.score(live.iloc[:50]))


def test_cold_start_scores_with_a_gnn(small_demo):
    _, out = small_demo
    scorer = Scorer(out / "bundle")
    df = pd.read_parquet(out / "transactions.parquet").iloc[:1].copy()
    df[["device_id", "ip_id"]] = -1
    score = scorer.score_and_ingest(df)
    assert np.isfinite(score).all() and 0.0 <= score[0] <= 1.0


def test_backend_choice_and_refusals(small_demo, tmp_path):
    _, out = small_demo
    with pytest.raises(FraudError) as error:
        Scorer(out / "bundle", gnn_backend="tensorrt")
    assert error.value.status == "FRAUD_STATUS_INVALID_ARGUMENT" and "aoti" in str(error.value)

    empty = tmp_path / "no-plugins"
    empty.mkdir()
    with pytest.raises(FraudError) as error:
        Scorer(out / "bundle", plugin_dir=empty, gnn_backend="aoti")
    assert error.value.status == "FRAUD_STATUS_BACKEND_UNAVAILABLE"
    assert "libfraud_torch.so" in str(error.value)
    # The native backend is built in: no plugin needed.
    assert Scorer(out / "bundle", plugin_dir=empty).gnn_backend == "native"

    # An AOTInductor artifact built for a CPU with an ISA this one lacks: refused by name when asked
    # for, skipped for the next backend when the engine chooses.
    bundle = shutil.copytree(out / "bundle", tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    for b in manifest["gnn"]["backends"]:
        if b["kind"] == "aoti":
            b["cpu_flags"] = [*b["cpu_flags"], "avx_from_the_future"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FraudError) as error:
        Scorer(bundle, gnn_backend="aoti")
    assert error.value.status == "FRAUD_STATUS_LOAD_ERROR" and "avx_from_the_future" in str(error.value)
    manifest["gnn"]["default_backend"] = "aoti"
    manifest["gnn"]["backends"] = [b for b in manifest["gnn"]["backends"] if b["kind"] != "native"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert Scorer(bundle).gnn_backend == "torchscript"  # aoti skipped on this CPU, next one taken


def test_tree_only_bundle_never_loads_torch(small_bundle):
    # A tree-only switch must not need libtorch: torch is made unimportable, and after scoring no
    # torch library is mapped into the process.
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        import pandas as pd
        from libfraud import Scorer
        from libfraud.data import generate_transactions
        df = next(generate_transactions(500, seed=1))
        scorer = Scorer({str(small_bundle)!r})
        assert scorer.gnn_backend == "none"
        scores = scorer.score_and_ingest(df)
        assert len(scores) == 500
        maps = open("/proc/self/maps").read()
        assert "libtorch" not in maps and "libc10" not in maps, "torch was loaded"
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": ""})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_demo_alerts_come_with_reasons_from_the_core(small_demo):
    report, out = small_demo
    reasons = report["reasons"]
    assert reasons["alerts"] == report["flagged"] > 0
    # Explained after serving, from the same features: the scores are the served ones.
    assert reasons["score_vs_served_max_abs_diff"] <= 1e-6
    names = {f["name"] for f in reasons["families"]}
    assert "graph" in names  # the GNN's outputs are one family
    frame = pd.read_csv(out / reasons["file"])
    assert len(frame) == reasons["alerts"]
    assert frame["reason_1_code"].gt(0).mean() > 0.5
    assert set(frame["reason_1"].dropna()) <= names
    shap = report["parity"]["shap_tables"]
    assert shap["passed"] and shap["max_abs_diff"] <= 1e-4 and shap["explains"] == "margin"


def test_neighbours_that_mattered_are_earlier_events_of_the_same_entities(small_demo):
    report, out = small_demo
    scorer = Scorer(out / "bundle")
    history, live = _live(out)
    scorer.ingest(history)
    events = live.head(40)
    found = scorer.explain_neighbours(events, m=5)
    assert len(found) > 0
    by_id = history.set_index("txn_id")
    entity_column = {e: f"{e}_id" for e in ("card", "device", "merchant", "ip")}
    for i, group in found.groupby("row"):
        assert len(group) <= 5
        deltas = group["delta"].to_numpy()
        assert (np.diff(deltas) <= 0).all()  # largest fall first
        event = events.iloc[i]
        for _, n in group.iterrows():
            earlier = by_id.loc[n["neighbour_event_id"]]
            assert earlier["timestamp_ms"] < event["timestamp_ms"]  # strictly before the event
            column = entity_column[n["via"]]
            assert earlier[column] == event[column]  # sampled through that shared entity
    # Asking twice gives the same answer (the sampler is deterministic per event), nothing stored.
    again = scorer.explain_neighbours(events, m=5)
    pd.testing.assert_frame_equal(found, again)
    assert scorer.store_size == len(history)


def test_neighbours_of_a_tree_only_bundle_are_refused(small_bundle, small_transactions):
    with pytest.raises(FraudError, match="has no GNN stage") as e:
        Scorer(small_bundle).explain_neighbours(small_transactions.head(2), m=2)
    assert e.value.status == "FRAUD_STATUS_NO_EXPLANATION"


def test_cli_gives_the_demo_bundles_reasons(small_demo, tmp_path):
    report, out = small_demo
    df = pd.read_parquet(out / "transactions.parquet").head(600)
    csv = tmp_path / "events.csv"
    df.to_csv(csv, index=False)
    scored = tmp_path / "scored.csv"
    subprocess.run([sys.executable, "-m", "libfraud", "score", str(out / "bundle"), str(csv), "--out", str(scored),
                    "--reasons", "2"], check=True, capture_output=True)
    frame = pd.read_csv(scored)
    expected = Scorer(out / "bundle").score_and_ingest_explained(df, 2)
    np.testing.assert_allclose(frame["score"], expected["score"], rtol=1e-6)
    np.testing.assert_array_equal(frame["reason_1_code"], expected["reason_1_code"])
    assert frame["reason_1_code"].gt(0).any()


def test_drift_covers_the_gnn_outputs_and_matches_the_cores_pure_function(small_demo):
    # The demo compiles through `libfraud compile`: its bundle carries the training sample's
    # reference, GNN outputs included; the monitor's PSI equals drift_psi on the served rows.
    from libfraud import _core
    _, out = small_demo
    history, live = _live(out)
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    section = manifest["drift"]
    assert [f["name"] for f in section["features"]] == manifest["features"]["order"]
    assert section["computed_on"]["source"] == "training"
    part = live.iloc[:500]
    scorer = Scorer(out / "bundle")
    scorer.ingest(history)
    scorer.score_and_ingest(part)
    drift = scorer.drift().set_index("feature")
    assert (drift["window_events"] == len(part)).all() and drift["psi"].notna().all()
    reread = Scorer(out / "bundle")
    reread.ingest(pd.concat([history, part]))
    rows = np.ascontiguousarray(reread.features(part).to_numpy(dtype=np.float32))
    pure = _core.drift_psi(json.dumps(section), reread.feature_names, rows, reread.score(part))
    np.testing.assert_allclose(drift.loc[reread.feature_names, "psi"], pure["feature_psi"], rtol=1e-9, atol=1e-12)
    assert drift.loc["score", "psi"] == pytest.approx(pure["score_psi"], rel=1e-9)
