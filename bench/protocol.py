"""The fraud team's protocol on the project's own generators, side by side in one run.

Cards (the two-entity preset, the shape of the public card-fraud simulator): train one week, a week's
label delay, test the next week, cards known compromised dropped, daily customer precision@100.
Rows: trees with XGBoost's old defaults (hist, 256 bins), the shipped defaults (exact splits at this
size), tuned (Optuna, N trials), and stacked on the GNN. Payments (the four-entity preset): the same
periods protocol, trees alone and stacked. Every row reports AP, AUROC, CP@100, recall at 1% FPR and
the Brier score before/after calibration; the tree-method rows also the AP on the sharp rule (amount
> 220, scenario 1) alone.

    python -m bench.protocol --out bench/results/2026-12-01-protocol.json [--trials 30] [--gnn]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _row(result, extra=None) -> dict:
    m = result.metrics["test"]
    k = next(key for key in m if key.startswith("daily_") and "_precision_at_" in key)
    out = {"ap": m["auprc"], "auroc": m["auroc"], "cp_at_k": m[k], "cp_metric": k,
           "recall_at_1pct_fpr": m["recall_at_1pct_fpr"], "brier": m.get("brier"),
           "brier_uncalibrated": result.metrics["test_uncalibrated"]["brier"],
           "mean_score": float(np.mean(result.test_scores[result.test_evaluated])),
           "fraud_rate": result.metrics["test_fraud_rate"], "trees": result.model.n_trees,
           "threshold_rule": result.threshold_rule, "at_threshold": m.get("at_threshold")}
    if "test_gbdt_only" in result.metrics:
        g = result.metrics["test_gbdt_only"]
        out["trees_alone"] = {"ap": g["auprc"], "auroc": g["auroc"], "cp_at_k": g.get(k)}
    return {**out, **(extra or {})}


def _scenario_ap(result, scenario: np.ndarray, which: int) -> float:
    from sklearn.metrics import average_precision_score
    ev = result.test_evaluated
    keep = ev & ((result.y_test == 0) | (scenario == which))
    return float(average_precision_score(scenario[keep] == which, result.test_scores[keep]))


def cards(trials: int, gnn: bool, n: int, log) -> dict:
    from libfraud.data.declared import load_preset
    from libfraud.data.generate_cards import generate_card_transactions
    from libfraud.models.gbdt import GbdtParams
    from libfraud.periods import PeriodSpec
    from libfraud.train import Decision, Evaluation, train
    from libfraud.tune_train import Tuning

    df = pd.concat(list(generate_card_transactions(n, seed=0, n_customers=5000, n_terminals=10_000,
                                                   start="2018-04-01")), ignore_index=True)
    schema, spec = load_preset("cards", df.columns)
    periods = PeriodSpec(train_start="2018-07-25", train_end="7d", label_delay="7d", test_end="7d")
    common = dict(schema=schema, spec=spec, periods=periods,
                  decision=Decision(calibration="platt", threshold="alerts_per_day:100"),
                  evaluation=Evaluation(k=100, entity="customer", drop_known_compromised=True))
    times = df["TX_DATETIME"].to_numpy("datetime64[ms]").astype(np.int64)
    rows = {}

    def run(name, **kw):
        t = time.perf_counter()
        r = train(df, **common, **kw)
        start = int(np.searchsorted(times, r.test_start_ms))
        scenario = df["TX_FRAUD_SCENARIO"].to_numpy()[start:start + len(r.y_test)]
        rows[name] = _row(r, {"seconds": time.perf_counter() - t,
                              "ap_amount_rule": _scenario_ap(r, scenario, 1)})
        log(name, rows[name])
        return r

    run("trees, hist 256 bins (xgboost's default)", params=GbdtParams(tree_method="hist", max_bin=256))
    run("trees, hist 1024 bins", params=GbdtParams(tree_method="hist", max_bin=1024))
    run("trees, exact (shipped default at this size)", params=GbdtParams())
    if trials:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"trees, tuned ({trials} Optuna trials)", params=GbdtParams(),
                tuning=Tuning(trials=trials, storage=Path(tmp) / "study.db"))
    if gnn:
        from libfraud.train import SamplerSettings
        from libfraud.train_gnn import GnnParams
        run("GNN + trees (stacked)", params=GbdtParams(), gnn_params=GnnParams(epochs=10),
            sampler=SamplerSettings())
    return {"data": {"rows": len(df), "customers": 5000, "terminals": 10_000,
                     "fraud_rate": float(df["TX_FRAUD"].mean())},
            "protocol": "train 2018-07-25 + 7d, label delay 7d, test 7d, known-compromised customers dropped, "
                        "threshold: at most 100 alerts/day on validation", "rows": rows}


def payments(gnn: bool, n: int, log) -> dict:
    from libfraud.data import generate_transactions
    from libfraud.models.gbdt import GbdtParams
    from libfraud.periods import PeriodSpec
    from libfraud.train import Decision, Evaluation, SamplerSettings, train

    df = pd.concat(list(generate_transactions(n, seed=0, fraud_rate=0.01)), ignore_index=True)
    t0 = pd.Timestamp(int(df["timestamp_ms"].iloc[0]), unit="ms", tz="UTC").normalize()
    periods = PeriodSpec(train_start=(t0 + pd.Timedelta(days=2)).isoformat(), train_end="14d",
                         label_delay="7d", test_end="7d")
    common = dict(periods=periods, decision=Decision(calibration="platt", threshold="alerts_per_day:100"),
                  evaluation=Evaluation(k=100, entity="card"))
    rows = {}
    for name, kw in [("trees (exact)", {}), *([("GNN + trees (stacked)", {
            "gnn_params": __import__("libfraud.train_gnn", fromlist=["GnnParams"]).GnnParams(epochs=10),
            "sampler": SamplerSettings(graph_fields=("mcc",))})] if gnn else [])]:
        t = time.perf_counter()
        r = train(df, params=GbdtParams(), **common, **kw)
        rows[name] = _row(r, {"seconds": time.perf_counter() - t})
        log(name, rows[name])
    return {"data": {"rows": len(df), "fraud_rate": float(df["label"].mean())},
            "protocol": "train day 2 + 14d, label delay 7d, test 7d; daily card precision@100", "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--gnn", action="store_true", help="also the stacked GNN rows (slow)")
    parser.add_argument("--cards-n", type=int, default=1_754_155)
    parser.add_argument("--payments-n", type=int, default=300_000)
    parser.add_argument("--skip-payments", action="store_true")
    args = parser.parse_args(argv)

    def log(name, row):
        print(f"{name:48s} AP {row['ap']:.4f}  AUROC {row['auroc']:.4f}  {row['cp_metric']} {row['cp_at_k']:.4f}  "
              f"Brier {row['brier_uncalibrated']:.5f} -> {row['brier']:.5f}  ({row['seconds']:.0f} s)", flush=True)

    report = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
              "cards": cards(args.trials, args.gnn, args.cards_n, log)}
    if not args.skip_payments:
        report["payments"] = payments(args.gnn, args.payments_n, log)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
