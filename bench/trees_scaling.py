"""How tree cost scales with model size, side by side in one run: libfraud's predictors vs XGBoost.

    python bench/trees_scaling.py            # 100 / 500 / 1000 / 3000 trees at depth 6 and 8
    python bench/trees_scaling.py --quick    # 100 and 500 trees at depth 6, fewer calls (a smoke run)

For each size: a model of exactly that many trees (trained on synthetic transactions and compiled
into a bundle by trees_latency.train_bundle, kept under build/bench/), the same feature rows, one
thread, and these paths, each one row per call and --batch rows per call:

  auto        fraud_engine_score_features, the predictor the engine chooses (engine/tree_predictor.h)
  compiled    the same with LIBFRAUD_TREE_LAYOUT=compiled (TL2cgen's if-else library)
  flat        the same with LIBFRAUD_TREE_LAYOUT=flat (the node array, engine/flat_forest.h)
  xgb-capi    XGBoosterPredictFromDense, nthread=1

plus the bundle's open time (fraud_engine_open, median of 5, auto). Results: a table on stdout and
bench/results/<date>-trees-scaling.json. See bench/README.md "Trees: scaling".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import trees_latency as tl  # noqa: E402  (pins the environment and re-execs first)

import numpy as np  # noqa: E402

import libfraud  # noqa: E402
from libfraud.export import read_manifest  # noqa: E402

LAYOUTS = ("auto", "compiled", "flat")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 and 500 trees at depth 6, fewer calls")
    p.add_argument("--trees", default="100,500,1000,3000", help="comma-separated tree counts")
    p.add_argument("--depths", default="6,8", help="comma-separated max depths")
    p.add_argument("--train-txns", type=int, default=20_000, help="synthetic transactions to train on")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--single-calls", type=int, default=3000, help="timed one-row calls per repeat")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--batch-budget-rows", type=int, default=40_000,
                   help="rows scored in batches per repeat and path (batch calls = this / --batch)")
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin the whole run to this CPU")
    p.add_argument("--bundle-dir", type=Path, default=tl.ROOT / "build" / "bench")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    if a.quick:
        a.trees, a.depths, a.repeats, a.single_calls, a.batch_budget_rows = "100,500", "6", 2, 1000, 8192
    a.sizes = [(int(t), int(d)) for d in a.depths.split(",") for t in a.trees.split(",")]
    return a


def time_size(a, trees: int, depth: int, rows: np.ndarray, work: Path, fraud_bin: Path, xgb_bin: Path) -> dict:
    ns = argparse.Namespace(trees=trees, depth=depth, train_txns=a.train_txns, seed=a.seed,
                            bundle_dir=a.bundle_dir, rebuild=a.rebuild)
    bundle = tl.train_bundle(ns).resolve()
    manifest = read_manifest(bundle)
    ubj = next(bundle / art["path"] for art in manifest["artifacts"] if art["target"] == "xgboost-ubjson")
    rows_file = work / "rows.f32"
    rows.tofile(rows_file)
    n_rows, n_features = rows.shape
    batch_calls = max(3, a.batch_budget_rows // a.batch)
    counts = [a.single_calls, a.batch, batch_calls, a.repeats]
    raw, scores = {}, {}
    for layout in LAYOUTS:
        print(f"  {trees}x{depth}: libfraud {layout}...", file=sys.stderr)
        os.environ["LIBFRAUD_TREE_LAYOUT"] = layout
        try:
            raw[layout], scores[layout] = tl.run_c([fraud_bin, bundle, rows_file, n_rows, *counts, work / "s.f32"],
                                                   work / "s.f32")
        finally:
            del os.environ["LIBFRAUD_TREE_LAYOUT"]
    print(f"  {trees}x{depth}: XGBoost C API...", file=sys.stderr)
    raw["xgb-capi"], scores["xgb-capi"] = tl.run_c(
        [xgb_bin, ubj, rows_file, n_rows, n_features, *counts, work / "s.f32"], work / "s.f32")
    summary = {p: tl.summarize(raw[p], a.batch) for p in raw}
    for layout in LAYOUTS:
        summary[layout]["open_ms"] = float(np.median(raw[layout]["open_ms"]))
    nodes = None
    tables = next((art for art in manifest["artifacts"] if art["target"] == "libfraud-tree-shap"), None)
    if tables is not None:
        n_trees = manifest["model"]["n_trees"]
        nodes = (tables["size"] - 56 - 8 * (n_trees + 1)) // 33  # BUNDLE.md "Node tables"
    so = next(art for art in manifest["artifacts"] if art["name"] == manifest["model"]["artifact"])
    ref = scores["xgb-capi"].astype(np.float64)
    return {
        "trees": trees, "depth": depth, "bundle": str(bundle), "nodes": nodes, "so_bytes": so["size"],
        "parity_max_abs_diff_vs_xgb_capi": {p: float(np.max(np.abs(scores[p] - ref))) for p in LAYOUTS},
        "summary": summary,
        "ratios_xgb_over": {p: {"single": summary["xgb-capi"]["single_p50_us"] / summary[p]["single_p50_us"],
                                "batch_per_row": summary["xgb-capi"]["batch_us_per_row"] / summary[p]["batch_us_per_row"]}
                            for p in LAYOUTS},
        "raw": raw,
    }


def table(results: list[dict], batch: int) -> str:
    head = (f"{'trees x d':>9} {'nodes':>7} | {'auto p50':>8} {'p99':>7} {'compiled':>8} {'flat':>7} "
            f"{'xgb':>8} {'xgb/auto':>8} | {'us/row @' + str(batch) + ' auto':>16} {'compiled':>8} "
            f"{'flat':>7} {'xgb':>7} {'xgb/auto':>8} | {'open ms':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        s = r["summary"]
        lines.append(
            f"{r['trees']:>5} x {r['depth']:<1} {r['nodes']:>7} | {s['auto']['single_p50_us']:>8.2f} "
            f"{s['auto']['single_p99_us']:>7.2f} {s['compiled']['single_p50_us']:>8.2f} "
            f"{s['flat']['single_p50_us']:>7.2f} {s['xgb-capi']['single_p50_us']:>8.1f} "
            f"{r['ratios_xgb_over']['auto']['single']:>8.1f} | {s['auto']['batch_us_per_row']:>16.3f} "
            f"{s['compiled']['batch_us_per_row']:>8.3f} {s['flat']['batch_us_per_row']:>7.3f} "
            f"{s['xgb-capi']['batch_us_per_row']:>7.3f} {r['ratios_xgb_over']['auto']['batch_per_row']:>8.2f} | "
            f"{s['auto']['open_ms']:>7.1f}")
    lines.append("(1-row columns: p50 microseconds per call; batch columns: p50 call time / batch; "
                 "xgb/auto = XGBoost C API time / libfraud's auto time: > 1 means libfraud is faster)")
    return "\n".join(lines)


def main() -> None:
    a = parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    results = []
    rows = None
    with tempfile.TemporaryDirectory(prefix="trees_scaling-") as tmp:
        work = Path(tmp)
        fraud_bin, xgb_bin, build = tl.compile_benches(work)
        for trees, depth in a.sizes:
            if rows is None:  # one row set for every size: the same schema and spec
                first = tl.train_bundle(argparse.Namespace(trees=trees, depth=depth, train_txns=a.train_txns,
                                                           seed=a.seed, bundle_dir=a.bundle_dir, rebuild=a.rebuild))
                rows = tl.bench_rows(read_manifest(first), argparse.Namespace(rows=a.rows, seed=a.seed))
            results.append(time_size(a, trees, depth, rows, work, fraud_bin, xgb_bin))
    report = {
        "benchmark": "trees_scaling",
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": tl.machine(),
        "env": {k: os.environ.get(k) for k in tl.PINNED_ENV},
        "versions": {"libfraud": libfraud.__version__},
        "build": build,
        "protocol": {"threads": 1, "rows": int(rows.shape[0]),
                     "rows_with_missing": int(np.isnan(rows).any(axis=1).sum()),
                     "single_calls_per_repeat": a.single_calls, "batch": a.batch,
                     "batch_calls_per_repeat": max(3, a.batch_budget_rows // a.batch), "repeats": a.repeats,
                     "statistic": "median over repeats of each repeat's p50 / p99 (nearest rank); open: "
                                  "median of 5 fraud_engine_open calls"},
        "targets": {"single": "xgb-capi / auto >= 10 at every size", "batch": "xgb-capi / auto >= 1 at every size",
                    "single_met": all(r["ratios_xgb_over"]["auto"]["single"] >= 10 for r in results),
                    "batch_met": all(r["ratios_xgb_over"]["auto"]["batch_per_row"] >= 1 for r in results)},
        "results": results,
    }
    out = a.out or HERE / "results" / f"{dt.date.today().isoformat()}-trees-scaling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"\n{m['cpu']}, {m['logical_cpus']} logical CPUs ({m['cpus_allowed']} allowed), one thread; "
          f"{rows.shape[1]} features, {rows.shape[0]} rows; median of {a.repeats} repeats")
    print(table(results, a.batch))
    worst = max(max(r["parity_max_abs_diff_vs_xgb_capi"].values()) for r in results)
    print(f"targets: single row >= 10x XGBoost C API at every size: {report['targets']['single_met']}; "
          f"batch >= XGBoost at every size: {report['targets']['batch_met']}")
    print(f"parity: max |libfraud - xgb-capi| = {worst:.2g}" + ("" if worst <= 1e-5 else "  (ABOVE 1e-5!)"))
    print(f"written {out}")


if __name__ == "__main__":
    main()
