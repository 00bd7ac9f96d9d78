"""Tree latency, side by side in one run: libfraud's compiled trees vs XGBoost's own predictors.

    python bench/trees_latency.py [--bundle DIR | --trees 200 --depth 6] [--repeats 5]

One XGBoost model (trained here on synthetic transactions, or the bundle's trees/model.ubj), the
same feature rows (replayed through the core's feature code, so missing values fall where they do in
serving), one thread, three paths:

  libfraud      fraud_engine_score_features, the bundle's compiled trees (bench/fraud_trees_bench.c)
  xgb-capi      XGBoosterPredictFromDense, nthread=1 (bench/xgb_capi_bench.c)
  xgb-inplace   Booster.inplace_predict from Python, nthread=1

each one row per call and 1024 rows per call. Every call is timed; a repeat reports the p50 and p99
of its calls; the figures are medians over repeats. Warm-up is not timed. Results: a table on
stdout and bench/results/<date>-trees.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Pinned before numpy/xgboost load their thread pools; glibc's malloc trimming otherwise makes
# latency jump between runs (see FACTS.md, "Measuring"). Re-exec once so the process itself has them.
PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456",
}
if any(os.environ.get(k) != v for k, v in PINNED_ENV.items()) and "_TREES_LATENCY_REEXEC" not in os.environ:
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {**os.environ, **PINNED_ENV, "_TREES_LATENCY_REEXEC": "1"})

import numpy as np  # noqa: E402
import xgboost as xgb  # noqa: E402

import libfraud  # noqa: E402
from libfraud.data.declared import FeatureSpec, Schema, load_preset  # noqa: E402
from libfraud.data.generate import generate_transactions  # noqa: E402
from libfraud.export import BundleError, build_bundle, read_manifest  # noqa: E402
from libfraud.features import as_matrix, replay_features  # noqa: E402

PATHS = ("libfraud", "xgb-capi", "xgb-inplace")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, help="time this bundle's model (its trees/model.ubj for XGBoost)")
    p.add_argument("--trees", type=int, default=200, help="trees of the model to train (no --bundle)")
    p.add_argument("--depth", type=int, default=6, help="max depth of the model to train (no --bundle)")
    p.add_argument("--train-txns", type=int, default=60_000, help="synthetic transactions to train on")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--single-calls", type=int, default=5000, help="timed one-row calls per repeat")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--batch-calls", type=int, default=40, help="timed batch calls per repeat")
    p.add_argument("--rows", type=int, default=8192, help="distinct feature rows the calls cycle through")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin the whole run to this CPU")
    p.add_argument("--bundle-dir", type=Path, default=ROOT / "build" / "bench",
                   help="where trained bundles are kept (reused when the same model is asked again)")
    p.add_argument("--rebuild", action="store_true", help="train and compile even if a bundle is kept")
    p.add_argument("--out", type=Path, default=None,
                   help="result JSON (default bench/results/<date>-trees.json)")
    a = p.parse_args()
    for name in ("trees", "depth", "train_txns", "repeats", "single_calls", "batch", "batch_calls", "rows"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.rows < a.batch:
        p.error("--rows must be >= --batch")
    return a


# ----------------------------------------------------------------------------------- model and rows

def transactions(n: int, seed: int):
    import pandas as pd

    return pd.concat(list(generate_transactions(n, seed=seed, fraud_rate=0.02)), ignore_index=True)


def train_bundle(a: argparse.Namespace) -> Path:
    """A bundle for a model of exactly --trees trees of --depth, trained on synthetic data."""
    out = a.bundle_dir / f"trees-{a.trees}x{a.depth}-n{a.train_txns}-seed{a.seed}"
    if (out / "manifest.json").is_file() and not a.rebuild:
        try:
            m = read_manifest(out)
        except BundleError:  # kept from an older format version: built again
            m = None
        if m and m["model"]["n_trees"] == a.trees and m["tools"].get("libfraud") == libfraud.__version__:
            print(f"reusing bundle {out}", file=sys.stderr)
            return out
    print(f"training {a.trees} trees of depth {a.depth} on {a.train_txns} synthetic transactions...",
          file=sys.stderr)
    df = transactions(a.train_txns, a.seed)
    schema, spec = load_preset("payments", df.columns)  # the generator's schema and its 44 features
    features = replay_features(df, schema, spec)
    X = as_matrix(features)
    y = df["label"].to_numpy(dtype=np.float32)
    names = list(features.columns)
    cut = int(0.8 * len(df))
    dtrain = xgb.DMatrix(X[:cut], label=y[:cut], missing=np.nan, feature_names=names)
    # Fixed rounds, no early stopping: the model has exactly --trees trees, each grown to --depth
    # where the data allows. (It is a latency model; its accuracy is not the point.)
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": a.depth,
                         "learning_rate": 0.1, "min_child_weight": 0.0, "subsample": 0.8,
                         "seed": a.seed, "nthread": os.cpu_count() or 1},
                        dtrain, num_boost_round=a.trees)
    print(f"compiling the bundle into {out}...", file=sys.stderr)
    return build_bundle(out, booster=booster, feature_names=names, schema=schema.to_json(), spec=spec.to_json(),
                        X_holdout=X[cut:], threshold=0.5,
                        threshold_rule="benchmark model: fixed 0.5, not chosen on data",
                        metrics={}, jobs=os.cpu_count() or 1)


def bench_rows(manifest: dict, a: argparse.Namespace) -> np.ndarray:
    """--rows feature rows of fresh synthetic transactions (another seed than training), computed
    by the core's feature plan with the bundle's schema and spec: the rows serving would see."""
    schema = Schema.from_json(manifest["schema"])
    spec = FeatureSpec.from_json(manifest["features"]["spec"], schema)
    if spec.names != manifest["features"]["order"]:
        raise SystemExit("the bundle's model reads more than its spec's features (a GNN bundle?): "
                         "time a trees-only bundle")
    df = transactions(max(2 * a.rows, 20_000), a.seed + 1)  # payments data: the schema must read it
    X = as_matrix(replay_features(df, schema, spec))
    return np.ascontiguousarray(X[-a.rows:], dtype=np.float32)  # the latest rows: richest histories


# ------------------------------------------------------------------------------------------ paths

def compile_benches(work: Path) -> tuple[Path, Path, dict]:
    cc = os.environ.get("CC", "cc")
    env = {**os.environ, "PKG_CONFIG_PATH": libfraud.pkgconfig_path}
    pc = subprocess.run(["pkg-config", "--cflags", "--libs", "libfraud"], env=env, check=True,
                        capture_output=True, text=True).stdout.split()
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "libfraud"], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra"]
    fraud_bin = work / "fraud_trees_bench"
    subprocess.run([cc, *flags, str(HERE / "fraud_trees_bench.c"), "-o", str(fraud_bin), *pc,
                    f"-Wl,-rpath,{libdir}"], check=True)
    xgb_lib = Path(xgb.core._LIB._name).resolve()
    xgb_bin = work / "xgb_capi_bench"
    # Linked by file path, with an rpath to its folder (the wheel ships no linker setup).
    subprocess.run([cc, *flags, str(HERE / "xgb_capi_bench.c"), "-o", str(xgb_bin), str(xgb_lib),
                    f"-Wl,-rpath,{xgb_lib.parent}"], check=True)
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return fraud_bin, xgb_bin, {"cc": version, "flags": " ".join(flags), "libxgboost": str(xgb_lib)}


def run_c(cmd: list, scores_file: Path) -> tuple[dict, np.ndarray]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout), np.fromfile(scores_file, dtype=np.float32)


def pct_us(ns: np.ndarray, p: float) -> float:
    """Nearest-rank percentile, as the C harnesses compute it."""
    s = np.sort(ns)
    rank = min(max(int(np.ceil(p / 100.0 * len(s))), 1), len(s))
    return float(s[rank - 1]) / 1000.0


def run_inplace(booster: xgb.Booster, rows: np.ndarray, a: argparse.Namespace) -> tuple[dict, np.ndarray]:
    booster.set_param({"nthread": 1})
    singles = [rows[i:i + 1] for i in range(len(rows))]  # views made up front: time the call only
    starts = list(range(0, len(rows) - a.batch + 1, a.batch))
    batches = [rows[s:s + a.batch] for s in starts]
    scores = np.concatenate([booster.inplace_predict(r, missing=np.nan) for r in singles]).astype(np.float32)
    for b in batches:  # batch warm-up
        booster.inplace_predict(b, missing=np.nan)
    result = {"path": "xgboost Booster.inplace_predict (Python)", "library": xgb.__version__,
              "num_features": rows.shape[1], "batch": a.batch,
              "single": {"p50_us": [], "p99_us": []}, "batched": {"p50_us": [], "p99_us": []}}
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(a.repeats):
            ns = np.empty(a.single_calls, np.int64)
            for c in range(a.single_calls):
                r = singles[c % len(singles)]
                t0 = clock()
                booster.inplace_predict(r, missing=np.nan)
                ns[c] = clock() - t0
            result["single"]["p50_us"].append(pct_us(ns, 50))
            result["single"]["p99_us"].append(pct_us(ns, 99))
            ns = np.empty(a.batch_calls, np.int64)
            for c in range(a.batch_calls):
                b = batches[c % len(batches)]
                t0 = clock()
                booster.inplace_predict(b, missing=np.nan)
                ns[c] = clock() - t0
            result["batched"]["p50_us"].append(pct_us(ns, 50))
            result["batched"]["p99_us"].append(pct_us(ns, 99))
    finally:
        gc.enable()
    return result, scores


# ---------------------------------------------------------------------------------------- report

def machine() -> dict:
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())  # the first CPU's
    except OSError:
        pass
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {"cpu": info.get("model name", "unknown"), "cache": info.get("cache size"),
            "logical_cpus": os.cpu_count(), "cpus_allowed": len(affinity),
            "pinned_cpu": affinity[0] if len(affinity) == 1 else None,
            "platform": platform.platform(), "python": platform.python_version()}


def summarize(raw: dict, batch: int) -> dict:
    med = lambda v: float(np.median(v))  # noqa: E731
    s, b = raw["single"], raw["batched"]
    return {
        "single_p50_us": med(s["p50_us"]), "single_p99_us": med(s["p99_us"]),
        "batch_p50_us": med(b["p50_us"]), "batch_p99_us": med(b["p99_us"]),
        "batch_us_per_row": med(b["p50_us"]) / batch,
        "batch_rows_per_s": batch / med(b["p50_us"]) * 1e6,
    }


def table(summary: dict, batch: int) -> str:
    ref = summary["libfraud"]
    head = (f"{'path':<12} {'1 row p50':>10} {'1 row p99':>10} {'x libfraud':>10} | "
            f"{f'{batch} rows p50':>14} {f'{batch} rows p99':>14} {'us/row':>8} {'x libfraud':>10}")
    lines = [head, "-" * len(head)]
    for path in PATHS:
        r = summary[path]
        lines.append(
            f"{path:<12} {r['single_p50_us']:>10.2f} {r['single_p99_us']:>10.2f} "
            f"{r['single_p50_us'] / ref['single_p50_us']:>10.1f} | "
            f"{r['batch_p50_us']:>14.1f} {r['batch_p99_us']:>14.1f} {r['batch_us_per_row']:>8.3f} "
            f"{r['batch_us_per_row'] / ref['batch_us_per_row']:>10.2f}")
    lines.append("(microseconds per call unless noted; 'x libfraud' = this path's time / libfraud's)")
    return "\n".join(lines)


def main() -> None:
    a = parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})  # inherited by the C harnesses
    if a.bundle is not None:
        bundle = a.bundle.resolve()
    else:
        bundle = train_bundle(a).resolve()
    manifest = read_manifest(bundle)
    ubj = next(bundle / art["path"] for art in manifest["artifacts"] if art["target"] == "xgboost-ubjson")
    booster = xgb.Booster(model_file=str(ubj))
    rows = bench_rows(manifest, a)
    n_rows, n_features = rows.shape
    print(f"model: {manifest['model']['n_trees']} trees, {n_features} features; {n_rows} rows "
          f"({np.isnan(rows).any(axis=1).mean():.0%} with a missing value)", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="trees_latency-") as tmp:
        work = Path(tmp)
        rows_file = work / "rows.f32"
        rows.tofile(rows_file)
        fraud_bin, xgb_bin, build = compile_benches(work)
        counts = [a.single_calls, a.batch, a.batch_calls, a.repeats]
        raw, scores = {}, {}
        print("timing libfraud...", file=sys.stderr)
        raw["libfraud"], scores["libfraud"] = run_c(
            [fraud_bin, bundle, rows_file, n_rows, *counts, work / "s1.f32"], work / "s1.f32")
        print("timing XGBoost C API...", file=sys.stderr)
        raw["xgb-capi"], scores["xgb-capi"] = run_c(
            [xgb_bin, ubj, rows_file, n_rows, n_features, *counts, work / "s2.f32"], work / "s2.f32")
        print("timing XGBoost inplace_predict...", file=sys.stderr)
        raw["xgb-inplace"], scores["xgb-inplace"] = run_inplace(booster, rows, a)

    # Same model, same rows: the paths must agree (the bundle's own parity tolerance), else the
    # timings compare different work.
    parity = {p: float(np.max(np.abs(scores[p].astype(np.float64) - scores["libfraud"])))
              for p in PATHS[1:]}
    summary = {p: summarize(raw[p], a.batch) for p in PATHS}
    ratios = {p: {"single": summary[p]["single_p50_us"] / summary["libfraud"]["single_p50_us"],
                  "batch_per_row": summary[p]["batch_us_per_row"] / summary["libfraud"]["batch_us_per_row"]}
              for p in PATHS[1:]}
    report = {
        "benchmark": "trees_latency",
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "env": {k: os.environ.get(k) for k in PINNED_ENV},
        "versions": {"libfraud": libfraud.__version__, "xgboost": xgb.__version__,
                     "numpy": np.__version__, "bundle_tools": manifest.get("tools", {})},
        "build": build,
        "model": {"bundle": str(bundle), "n_trees": manifest["model"]["n_trees"],
                  "num_features": n_features, "max_depth": None if a.bundle else a.depth},
        "protocol": {"threads": 1, "rows": n_rows, "rows_with_missing": int(np.isnan(rows).any(axis=1).sum()),
                     "single_calls_per_repeat": a.single_calls, "batch": a.batch,
                     "batch_calls_per_repeat": a.batch_calls, "repeats": a.repeats,
                     "statistic": "median over repeats of each repeat's p50 / p99 (nearest rank)"},
        "parity_max_abs_diff_vs_libfraud": parity,
        "summary": summary,
        "ratios_vs_libfraud": ratios,
        "target": {"goal": "libfraud single row >= 10x faster than XGBoost's C API",
                   "measured": ratios["xgb-capi"]["single"],
                   "met": ratios["xgb-capi"]["single"] >= 10.0},
        "raw": raw,
    }
    out = a.out or HERE / "results" / f"{dt.date.today().isoformat()}-trees.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    m = report["machine"]
    print(f"\n{m['cpu']}, {m['logical_cpus']} logical CPUs ({m['cpus_allowed']} allowed), one thread; "
          f"{manifest['model']['n_trees']} trees, {n_features} features; median of {a.repeats} repeats")
    print(table(summary, a.batch))
    print(f"\nsingle row: libfraud is {ratios['xgb-capi']['single']:.1f}x faster than XGBoost's C API "
          f"(target >= 10x), {ratios['xgb-inplace']['single']:.1f}x faster than inplace_predict")
    print(f"batch of {a.batch}: XGBoost's C API per row is {ratios['xgb-capi']['batch_per_row']:.2f}x "
          f"libfraud's time")
    worst = max(parity.values())
    print(f"parity: max |score - libfraud| = {worst:.2g}" + ("" if worst <= 1e-5 else "  (ABOVE 1e-5!)"))
    print(f"written {out}")


if __name__ == "__main__":
    main()
