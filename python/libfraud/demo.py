"""`libfraud demo`: generate -> train -> compile -> serve, on a default data set, with a report."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from . import metrics, plots
from .data import load_transactions, write_transactions
from .models.gbdt import GbdtParams
from .scorer import Scorer
from .train import SamplerSettings, train

#: The generator's merchant category goes into the GNN's transaction features too (4 fixed + mcc).
DEMO_GRAPH_FIELDS = ("mcc",)


def _step(name: str, progress: bool) -> float:
    if progress:
        print(f"==> {name}", flush=True)
    return time.perf_counter()


def _percentiles(latency_ns: np.ndarray) -> dict:
    us = latency_ns.astype(np.float64) / 1e3
    return {"n": int(us.size), "mean": float(us.mean()),
            **{f"p{str(q).replace('.', '')}": float(np.percentile(us, q)) for q in (50, 90, 99, 99.9)},
            "max": float(us.max())}


def _explain_alerts(scorer, live, scores, threshold: float, out: Path, k: int = 3) -> dict:
    """The served alerts' reasons from the core (reasons.csv), explained after serving: the store
    then holds later events too, but an event's features see only what came strictly before it, so
    the scores must come out as served (checked)."""
    alerts = live[scores >= threshold]
    frame = scorer.explain(alerts, k)
    differ = float(np.max(np.abs(frame["score"].to_numpy() - scores[scores >= threshold]))) if len(alerts) else 0.0
    frame.insert(0, "txn_id", alerts["txn_id"].to_numpy())
    frame.to_csv(out / "reasons.csv", index=False, float_format="%.6g")
    top = frame["reason_1"].value_counts().to_dict() if len(frame) else {}
    return {"alerts": int(len(alerts)), "k": k, "file": "reasons.csv", "score_vs_served_max_abs_diff": differ,
            "families": scorer.reason_families, "top_reason_counts": {str(n): int(c) for n, c in top.items()}}


def run_demo(out_dir: str | Path, *, n: int = 200_000, seed: int = 0, trees: int = 500,
             gnn: bool = True, gnn_epochs: int = 30, progress: bool = True) -> dict:
    from .compile import compile_model_dir
    from .export import read_manifest

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t = _step(f"generate {n} synthetic transactions", progress)
    data_path = write_transactions(out / "transactions.parquet", n, seed=seed, progress=progress)
    transactions = load_transactions(data_path)
    seconds["generate"] = time.perf_counter() - t

    gnn_params = None
    if gnn:
        from .train_gnn import GnnParams
        gnn_params = GnnParams(seed=seed, epochs=gnn_epochs)
    t = _step("replay features" + (" and sample neighbourhoods" if gnn else "") + " through the core; "
              "train " + ("the GNN and the trees on its outputs" if gnn else "XGBoost") +
              " (time-ordered split)", progress)
    result = train(transactions, params=GbdtParams(n_estimators=trees, seed=seed),
                   sampler=SamplerSettings(graph_fields=DEMO_GRAPH_FIELDS),
                   gnn_params=gnn_params, progress=progress)
    result.save(out / "model")
    seconds["train"] = time.perf_counter() - t

    t = _step("compile: trees (Treelite -> TL2cgen -> cc)" + (", GNN (AOTInductor, TorchScript)" if gnn
              else "") + "; check parity; write the bundle", progress)
    bundle = compile_model_dir(out / "model", out / "bundle", progress=progress)
    manifest = read_manifest(bundle)
    seconds["compile"] = time.perf_counter() - t

    t = _step("serve: load the bundle, ingest history, score the test period one by one", progress)
    times = transactions["timestamp_ms"].to_numpy()
    history, live = transactions[times < result.test_start_ms], transactions[times >= result.test_start_ms]
    scorer = Scorer(bundle, expected_transactions=len(transactions))
    gnn_backend = scorer.gnn_backend
    scorer.ingest(history)
    scores, latency_ns = scorer.score_and_ingest_timed(live)
    seconds["serve"] = time.perf_counter() - t

    reasons = _explain_alerts(scorer, live, scores, result.threshold, out)
    y = live["label"].to_numpy(dtype=np.int8)
    serving_metrics = metrics.summary(y, scores)
    curves = {"libfraud, served" + (" (GNN + trees)" if gnn else " (trees)"): scores}
    if result.gbdt_only_test_scores is not None:
        curves["trees alone (Python)"] = result.gbdt_only_test_scores
    plots.plot_pr_curve(y, curves, out / "pr_curve.png",
                        title="Test period: precision-recall")
    plots.plot_latency_histogram({f"score_and_ingest, batch 1 (GNN: {gnn_backend})": latency_ns / 1e3},
                                 out / "latency_histogram.png",
                                 title="libfraud scoring latency (C API, one thread)")
    gbdt_only = result.metrics.get("test_gbdt_only")
    parity = {**manifest["parity"],
              # the served scores against the Python pipeline (xgboost on replayed features)
              "serving_vs_python": {"max_abs_diff": float(np.max(np.abs(scores - result.test_scores)))}}
    for name in list(parity):  # gnn_aoti -> aoti, as the report's readers look for them
        if name.startswith("gnn_"):
            parity[name[len("gnn_"):]] = parity.pop(name)
    report = {
        "bundle": str(bundle.resolve()),
        "gnn_backend": gnn_backend,
        "transactions": {"total": int(n), "history": len(history), "scored": len(live),
                         "fraud_rate": float(transactions["label"].mean()), "seed": seed},
        "metrics": {"test": serving_metrics, "valid": result.metrics["valid"],
                    "test_python": result.metrics["test"],
                    **({"test_gbdt_only": gbdt_only,
                        "test_gnn_only": result.metrics["test_gnn_only"],
                        "by_fraud_type": result.metrics["by_fraud_type"]} if gbdt_only else {})},
        "parity": parity,
        "latency_us": _percentiles(latency_ns),
        "threshold": result.threshold,
        "threshold_rule": result.threshold_rule,
        "calibration": result.calibration,
        "flagged": int((scores >= result.threshold).sum()),
        "reasons": reasons,
        "model": {"n_trees": result.model.n_trees, "num_features": len(result.model.feature_names),
                  "split_rows": result.split_rows},
        "seconds": seconds,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "plots": ["pr_curve.png", "latency_histogram.png"],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    from .training_report import write_training_report
    write_training_report(result, out, latency_us={f"score_and_ingest ({gnn_backend})": latency_ns / 1e3},
                          title="libfraud demo: synthetic payments", write_json=False)
    report["plots"].append("report.html")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
