"""Reasons: the cost of explaining, side by side in one run, one core.

    PYTHONPATH=python python -m bench.explain            # 500 trees of depth 6 (issue 11's model)
    PYTHONPATH=python python -m bench.explain --quick    # 100 trees of depth 6, fewer rows, < 60 s
    ... --shap-site /tmp/shap_site                       # where a throwaway `pip install --target` put shap

One XGBoost model (trained here on the payments generator's transactions, the payments preset's 44
features, exactly --trees trees of --depth; kept under build/bench/explain/ and reused) compiled
into a bundle with its explanation data, then, one event or row per call, one thread:

  end to end, C API    fraud_engine_score_and_ingest_events vs fraud_engine_score_and_ingest_explain_events
                       (k=3) with min_score 0 (every event explained) and min_score = the bundle's
                       threshold (alerts explained): bench/explain_bench.c e2e
  end to end, Python   _core.Engine.score_and_ingest vs _core.Engine.explain(..., ingest=True), same ops
  contributions        fraud_engine_contributions (bench/explain_bench.c contributions),
                       _core.Engine.contributions and Scorer.contributions (Python) on one row
  XGBoost              booster.predict(DMatrix(row), pred_contribs=True) (Python), and its C API:
                       XGDMatrixCreateFromDense + XGBoosterPredictFromDMatrix "type": 2
                       (bench/xgb_capi_bench.c contribs; PredictFromDense refuses type 2)
  shap                 shap.TreeExplainer(booster).shap_values(row), when shap is importable: as it
                       runs (for XGBoost it calls pred_contribs) and with its own C TreeSHAP

Every call is timed alone after an untimed warm-up. The run goes round by round, each path once a
round, the order turning (a burst of load from a neighbour lands on one round of every path, not on
one path); a round reports each path's nearest-rank p50 / p99 / mean over its timed calls; figures
are medians over rounds. The parity of every path's contributions against
pred_contribs on the timed rows is stated beside the timings. Results: a table on stdout and
bench/results/<date>-explain.json (-explain-quick.json for --quick). See bench/README.md, "Reasons: the
cost of explaining".
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# One core: every pool pinned before numpy/xgboost start theirs; glibc's malloc trimming off (it made
# latency jump between runs, see bench/README.md). Re-exec once so the process itself has them.
PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456",
}
if __name__ == "__main__" and any(os.environ.get(k) != v for k, v in PINNED_ENV.items()) \
        and "_EXPLAIN_BENCH_REEXEC" not in os.environ:
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {**os.environ, **PINNED_ENV, "_EXPLAIN_BENCH_REEXEC": "1"})

import numpy as np  # noqa: E402

MODES = {
    # train_txns: synthetic transactions the model is trained on; history: events ingested before
    # the traffic; warmup + calls live events (the calls timed); rounds: each path runs once a round
    # (warmup untimed calls, then one timed call per timed event / row).
    "full": dict(trees=500, depth=6, train_txns=60_000, history=20_000, warmup=50, calls=500, rounds=5),
    "quick": dict(trees=100, depth=6, train_txns=15_000, history=3_000, warmup=50, calls=500, rounds=3),
}
K = 3  # reasons per event, as the serving call asks
TARGET_ADDED_P50_US = 10.0
THRESHOLD_FPR = 0.01  # the bundle's threshold: 1% false-positive rate on the held-out rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 trees, fewer rows and calls (< 60 s)")
    p.add_argument("--trees", type=int, help="override the mode's tree count")
    p.add_argument("--depth", type=int, help="override the mode's max depth")
    p.add_argument("--calls", type=int, help="timed calls per path and round (>= 500)")
    p.add_argument("--rounds", type=int, help="rounds (each path once a round; figures: median of rounds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin the whole run to this CPU")
    p.add_argument("--shap-site", type=Path, default=None,
                   help="a folder holding shap (pip install --target DIR shap ...), appended to sys.path")
    p.add_argument("--no-shap", action="store_true", help="skip the shap path even if importable")
    p.add_argument("--bundle-dir", type=Path, default=ROOT / "build" / "bench" / "explain")
    p.add_argument("--rebuild", action="store_true", help="train and compile even if a bundle is kept")
    p.add_argument("--out", type=Path, default=None,
                   help="result JSON (default bench/results/<date>-explain.json, -explain-quick.json with --quick)")
    a = p.parse_args(argv)
    cfg = dict(MODES["quick" if a.quick else "full"])
    for key in ("trees", "depth", "calls", "rounds"):
        if getattr(a, key) is not None:
            cfg[key] = getattr(a, key)
    if cfg["calls"] < 500:
        p.error("--calls must be >= 500 (the issue's protocol)")
    if min(cfg["trees"], cfg["depth"], cfg["rounds"]) < 1:
        p.error("--trees, --depth, --rounds must be >= 1")
    a.cfg = cfg
    a.mode = "quick" if a.quick else "full"
    return a


def log(msg: str) -> None:
    print(f"[explain {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ model

def transactions(n: int, seed: int):
    import pandas as pd

    from libfraud.data.generate import generate_transactions
    return pd.concat(list(generate_transactions(n, seed=seed, fraud_rate=0.02)), ignore_index=True)


def _settings(cfg: dict, seed: int) -> dict:
    return {"trees": cfg["trees"], "depth": cfg["depth"], "train_txns": cfg["train_txns"], "seed": seed,
            "threshold": f"fpr:{THRESHOLD_FPR}"}


def _kept(out: Path, settings: dict) -> bool:
    """A kept bundle of the same settings that this core opens, with explanation data."""
    import libfraud
    from libfraud import _core
    from libfraud.export import read_manifest
    try:
        if json.loads((out / "bench_settings.json").read_text()) != settings:
            return False
        m = read_manifest(out / "bundle")
        if m["model"]["n_trees"] != settings["trees"] or m["tools"].get("libfraud") != libfraud.__version__ \
                or "explanation" not in m:
            return False
        return len(_core.Engine(str(out / "bundle")).reason_families) > 0
    except FileNotFoundError:
        return False
    except Exception as e:  # noqa: BLE001  an older format, the core's refusal (FraudError)...: built again
        log(f"not reusing {out}: {type(e).__name__}: {e}")
        return False


def train_bundle(a: argparse.Namespace) -> tuple[Path, dict]:
    """A bundle (with explanation data) of a model of exactly `trees` trees of `depth`."""
    import shutil

    import xgboost as xgb

    from libfraud.data.declared import load_preset
    from libfraud.export import build_bundle
    from libfraud.features import as_matrix, replay_features
    from libfraud.thresholds import by_fpr
    cfg = a.cfg
    settings = _settings(cfg, a.seed)
    out = a.bundle_dir / f"explain-{cfg['trees']}x{cfg['depth']}-n{cfg['train_txns']}-seed{a.seed}"
    if not a.rebuild and _kept(out, settings):
        log(f"reusing bundle {out / 'bundle'}")
        info = out / "build_info.json"
        return out / "bundle", {"reused": True, **json.loads((info if info.is_file() else
                                                              out / "bench_settings.json").read_text())}
    t0 = time.perf_counter()
    log(f"training {cfg['trees']} trees of depth {cfg['depth']} on {cfg['train_txns']} synthetic transactions")
    df = transactions(cfg["train_txns"], a.seed)
    schema, spec = load_preset("payments", df.columns)  # the generator's schema and its 44 features
    features = replay_features(df, schema, spec)
    X = as_matrix(features)
    y = df["label"].to_numpy(dtype=np.float32)
    names = list(features.columns)
    cut = int(0.8 * len(df))
    # Fixed rounds, no early stopping: exactly `trees` trees, each grown to `depth` where the data
    # allows (a latency model; its accuracy is not the point). Training may use every core.
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": cfg["depth"],
                         "learning_rate": 0.1, "min_child_weight": 0.0, "subsample": 0.8,
                         "seed": a.seed, "nthread": os.cpu_count() or 1},
                        xgb.DMatrix(X[:cut], label=y[:cut], missing=np.nan, feature_names=names),
                        num_boost_round=cfg["trees"])
    holdout = booster.inplace_predict(X[cut:], missing=np.nan)
    threshold = by_fpr(y[cut:], holdout, THRESHOLD_FPR, on="held-out rows")
    t_train = time.perf_counter() - t0
    log(f"compiling the bundle (threshold {threshold.value:.4g}: {threshold.rule})")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bundle = build_bundle(out / "bundle", booster=booster, feature_names=names, schema=schema.to_json(),
                          spec=spec.to_json(), X_holdout=X[cut:], threshold=float(threshold.value),
                          threshold_rule=f"benchmark model: {threshold.rule}", metrics={},
                          jobs=os.cpu_count() or 1)
    info = {**settings, "threshold_value": float(threshold.value), "threshold_rule": threshold.rule,
            "train_seconds": t_train, "compile_seconds": time.perf_counter() - t0 - t_train}
    (out / "bench_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return bundle, {"reused": False, **info}


# ------------------------------------------------------------------------------------------ data

def traffic(bundle: Path, a: argparse.Namespace):
    """History + live events of fresh synthetic transactions (another seed than training) and the
    live events' feature rows as serving computes them (each against the store before it)."""
    from libfraud import _core
    from libfraud.scorer import Scorer
    cfg = a.cfg
    n_live = cfg["warmup"] + cfg["calls"]
    df = transactions(cfg["history"] + n_live, a.seed + 1)
    scorer = Scorer(bundle)
    events = scorer.events(df)
    history, live = events.slice(0, cfg["history"]), events.slice(cfg["history"], len(events))
    engine = _core.Engine(str(bundle), len(events))
    engine.ingest(*history.args())
    rows = np.empty((len(live), engine.num_features), np.float32)
    for i in range(len(live)):
        one = live.slice(i, i + 1)
        rows[i] = engine.features(*one.args())[0]
        engine.ingest(*one.args())
    return events, history, live, rows


def write_events(events, path: Path) -> tuple[int, int, int]:
    with open(path, "wb") as f:
        for col in events.args():
            f.write(np.ascontiguousarray(col).tobytes())
    return events.entity_id.shape[1], events.numeric.shape[1], events.categorical.shape[1]


# ------------------------------------------------------------------------------------------ harnesses

def compile_c(work: Path) -> tuple[Path, Path, dict]:
    import libfraud
    import xgboost as xgb
    cc = os.environ.get("CC", "cc")
    env = {**os.environ, "PKG_CONFIG_PATH": libfraud.pkgconfig_path}
    pc = subprocess.run(["pkg-config", "--cflags", "--libs", "libfraud"], env=env, check=True,
                        capture_output=True, text=True).stdout.split()
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "libfraud"], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra"]
    fraud_bin = work / "explain_bench"
    subprocess.run([cc, *flags, f"-I{HERE}", str(HERE / "explain_bench.c"), "-o", str(fraud_bin), *pc,
                    f"-Wl,-rpath,{libdir}"], check=True)
    xgb_lib = Path(xgb.core._LIB._name).resolve()
    xgb_bin = work / "xgb_capi_bench"
    subprocess.run([cc, *flags, str(HERE / "xgb_capi_bench.c"), "-o", str(xgb_bin), str(xgb_lib),
                    f"-Wl,-rpath,{xgb_lib.parent}"], check=True)
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return fraud_bin, xgb_bin, {"cc": version, "flags": " ".join(flags), "libfraud_libdir": libdir,
                                "libxgboost": str(xgb_lib)}


def run_json(cmd: list) -> dict:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{Path(str(cmd[0])).name} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def pct_us(ns, q: float) -> float:
    """Nearest-rank percentile of ns in microseconds (the C harnesses' rule)."""
    s = np.sort(np.asarray(ns))
    return float(s[min(max(int(np.ceil(q / 100.0 * len(s))), 1), len(s)) - 1]) / 1e3


def summarize(per_round_ns) -> dict:
    """Median over rounds of each round's p50 / p99 / mean; spread = (max - min) / median of p50s."""
    p50 = [pct_us(ns, 50) for ns in per_round_ns]
    p99 = [pct_us(ns, 99) for ns in per_round_ns]
    mean = [float(np.mean(ns)) / 1e3 for ns in per_round_ns]
    med = float(np.median(p50))
    return {"p50_us": med, "p99_us": float(np.median(p99)), "mean_us": float(np.median(mean)),
            "rounds": len(p50), "calls_per_round": int(len(per_round_ns[0])),
            "p50_spread_pct": 100.0 * (max(p50) - min(p50)) / med if med else 0.0,
            "per_round_p50_us": p50, "per_round_p99_us": p99, "per_round_mean_us": mean}


def time_calls(fn, inputs: list, repeats: int, warmup: int) -> tuple[list, list]:
    """(outputs of the first repeat, ns of every call per repeat): `warmup` untimed calls, then
    `repeats` passes over inputs, each call timed alone (perf_counter_ns, GC off)."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    clock = time.perf_counter_ns
    outputs: list = []
    per = []
    gc.disable()
    try:
        for r in range(repeats):
            ns = np.empty(len(inputs), np.int64)
            for c, x in enumerate(inputs):
                t0 = clock()
                y = fn(x)
                ns[c] = clock() - t0
                if r == 0:
                    outputs.append(y)
            per.append(ns)
    finally:
        gc.enable()
    return outputs, per


E2E_OPS = ("score_and_ingest", "explain_all", "explain_alerts")


def python_e2e_round(bundle: Path, history, singles: list, threshold: float, warmup: int,
                     turn: int) -> dict:
    """One round of _core.Engine.score_and_ingest vs .explain(ingest=True) at min_score 0 and at
    the threshold, one event per call: {op: (ns of the timed calls, scores of every live event)}.
    The ops run one after the other (a fresh engine each), their order turning with `turn`, as in
    explain_bench.c."""
    from libfraud import _core
    ops = {
        "score_and_ingest": lambda e, x: e.score_and_ingest(*x),
        "explain_all": lambda e, x: e.explain(*x, k=K, min_score=0.0, ingest=True)[0],
        "explain_alerts": lambda e, x: e.explain(*x, k=K, min_score=threshold, ingest=True)[0],
    }
    clock = time.perf_counter_ns
    out = {}
    for op in E2E_OPS[turn % 3:] + E2E_OPS[:turn % 3]:
        fn = ops[op]
        engine = _core.Engine(str(bundle), len(history) + len(singles))
        engine.ingest(*history.args())
        ns = np.empty(len(singles), np.int64)
        scores = np.empty(len(singles), np.float32)
        gc.disable()
        try:
            for i, x in enumerate(singles):
                t0 = clock()
                s = fn(engine, x)
                ns[i] = clock() - t0
                scores[i] = s[0]
        finally:
            gc.enable()
        out[op] = (ns[warmup:], scores)
    return out


def import_shap(a: argparse.Namespace):
    if a.no_shap:
        return None, "skipped: --no-shap"
    if a.shap_site is not None:
        sys.path.append(str(a.shap_site.resolve()))
    try:
        import shap  # noqa: F401
        return shap, None
    except Exception as e:  # noqa: BLE001  shap is optional: any import failure means skipped
        why = "shap not installed (pip install shap)" if isinstance(e, ModuleNotFoundError) and \
            e.name == "shap" else f"shap does not import: {type(e).__name__}: {e}"
        return None, f"skipped: {why}"


# ------------------------------------------------------------------------------------------ report

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
            "platform": platform.platform(), "python": platform.python_version(),
            "loadavg": list(os.getloadavg())}


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.1f}" if abs(x) >= 100 else f"{x:.2f}"


def main(argv=None) -> None:
    a = parse_args(argv)
    cfg = a.cfg
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})  # inherited by the C harnesses
    t_start = time.perf_counter()
    load_before = os.getloadavg()

    import pandas as pd
    import xgboost as xgb

    import libfraud
    from libfraud import _core
    from libfraud.export import read_manifest
    from libfraud.scorer import Scorer

    bundle, build_info = train_bundle(a)
    manifest = read_manifest(bundle)
    ubj = next(bundle / art["path"] for art in manifest["artifacts"] if art["target"] == "xgboost-ubjson")
    booster = xgb.Booster(model_file=str(ubj))
    booster.set_param({"nthread": 1})
    n_trees = manifest["model"]["n_trees"]

    log("computing the traffic's feature rows (as served)")
    events, history, live, live_rows = traffic(bundle, a)
    rows = np.ascontiguousarray(live_rows[cfg["warmup"]:])  # the timed events' rows
    n_rows, nf = rows.shape
    threshold = float(_core.Engine(str(bundle)).threshold)  # min_score of the alerts-only ops
    raw: dict = {}
    skipped: dict = {}

    shap, why = import_shap(a)
    shap_info = {"status": why or "measured"}
    explainer = own = None
    if shap is not None:
        explainer = shap.TreeExplainer(booster)
        # For an XGBoost model TreeExplainer (tree_path_dependent, no background data) hands the rows
        # to booster.predict(pred_contribs=True). Its own TreeSHAP (the C extension it runs for other
        # models) is timed too, with that shortcut off: the same explainer, model_type "internal".
        own = shap.TreeExplainer(booster)
        own.model.model_type = "internal"
        shap_info.update(version=shap.__version__, feature_perturbation=explainer.feature_perturbation,
                         location=str(Path(shap.__file__).parent.parent),
                         default_path="TreeExplainer's XGBoost shortcut: booster.predict(DMatrix(X), "
                                      "pred_contribs=True, validate_features=False)",
                         internal_path="explainer.model.model_type = 'internal': shap's own C TreeSHAP")
    else:
        skipped["shap_tree_explainer"] = why
        skipped["shap_tree_explainer_internal"] = why
        log(why)

    rounds, warmup = cfg["rounds"], cfg["warmup"]
    ns: dict = {}  # path -> [ns of its timed calls, one array per round]
    outputs: dict = {}  # path -> its output on the timed rows (first round)
    singles = [rows[i:i + 1] for i in range(n_rows)]
    with tempfile.TemporaryDirectory(prefix="explain-bench-") as tmp:
        work = Path(tmp)
        log("compiling the C harnesses")
        fraud_bin, xgb_bin, build = compile_c(work)
        ev_file = work / "events.bin"
        n_ent, n_num, n_cat = write_events(events, ev_file)
        rows_file = work / "rows.f32"
        rows.tofile(rows_file)
        live_singles = [live.slice(i, i + 1).args() for i in range(len(live))]
        engine = _core.Engine(str(bundle))
        scorer = Scorer(bundle)
        frames = [pd.DataFrame(r, columns=scorer.feature_names) for r in singles]  # a frame, as features() gives

        def add(path: str, per_call_ns, output=None) -> None:
            ns.setdefault(path, []).append(np.asarray(per_call_ns))
            if output is not None and path not in outputs:
                outputs[path] = output

        def c_e2e(rnd: int) -> None:
            r = run_json([fraud_bin, "e2e", bundle, ev_file, len(events), n_ent, n_num, n_cat, len(history),
                          warmup, 1, K, work / "e2e.i64", work / "e2e.f32", rnd % 3])
            arr = np.fromfile(work / "e2e.i64", dtype=np.int64).reshape(3, -1)
            sc = np.fromfile(work / "e2e.f32", dtype=np.float32).reshape(3, -1)
            for j, op in enumerate(E2E_OPS):
                add(f"c_e2e_{op}", arr[j], sc[j])
            raw.setdefault("c_e2e", []).append(r)

        def py_e2e(rnd: int) -> None:
            for op, (t, sc) in python_e2e_round(bundle, history, live_singles, threshold, warmup, rnd).items():
                add(f"py_e2e_{op}", t, sc)

        def c_contributions(rnd: int) -> None:
            r = run_json([fraud_bin, "contributions", bundle, rows_file, n_rows, warmup, 1,
                          work / "contrib.f64", work / "contrib.i64"])
            add("c_contributions", np.fromfile(work / "contrib.i64", dtype=np.int64),
                np.fromfile(work / "contrib.f64", dtype=np.float64).reshape(n_rows, nf + 1))
            raw.setdefault("c_contributions", []).append(r)

        def xgb_capi(rnd: int) -> None:
            r = run_json([xgb_bin, "contribs", ubj, rows_file, n_rows, nf, warmup, 1,
                          work / "xgb.f32", work / "xgb.i64"])
            add("xgb_capi_contribs", np.fromfile(work / "xgb.i64", dtype=np.int64),
                np.fromfile(work / "xgb.f32", dtype=np.float32).reshape(n_rows, nf + 1).astype(np.float64))
            raw.setdefault("xgb_capi_contribs", []).append(r)

        def python_path(path: str, fn, inputs: list, join, calls_warmup: int = warmup):
            def run(rnd: int) -> None:
                out, per = time_calls(fn, inputs, 1, calls_warmup)
                add(path, per[0], None if path in outputs else join(out))
            return run

        cat = lambda out: np.concatenate([np.asarray(o, np.float64).reshape(1, -1) for o in out])  # noqa: E731
        paths = [
            ("end to end, C API", c_e2e),
            ("end to end, Python", py_e2e),
            ("fraud_engine_contributions", c_contributions),
            ("_core.Engine.contributions", python_path("py_core_contributions", engine.contributions, singles, cat)),
            ("Scorer.contributions", python_path("py_scorer_contributions", scorer.contributions, frames,
                                                 lambda out: np.concatenate([o.to_numpy() for o in out]))),
            # validate_features=False: the cheapest call (a DMatrix without feature names is not checked)
            ("pred_contribs (Python)", python_path(
                "xgb_python_pred_contribs",
                lambda r: booster.predict(xgb.DMatrix(r, missing=np.nan, nthread=1), pred_contribs=True,
                                          validate_features=False), singles, cat)),
            ("XGBoost C API type 2", xgb_capi),
        ]
        if shap is not None:
            paths += [
                ("shap TreeExplainer", python_path(
                    "shap_tree_explainer", lambda r: explainer.shap_values(r, check_additivity=False), singles,
                    # expected_value: the bias column pred_contribs returned (set by shap_values)
                    lambda out: np.concatenate([cat(out), np.full((len(out), 1),
                                                                  float(np.ravel(explainer.expected_value)[0]))],
                                               axis=1),
                    min(warmup, 20))),
                ("shap TreeExplainer (own C)", python_path(
                    "shap_tree_explainer_internal", lambda r: own.shap_values(r, check_additivity=False), singles,
                    cat, min(warmup, 20))),
            ]
        # Round after round, each path once per round, the order turning: a neighbour's burst of
        # load lands on one round of every path rather than on all the rounds of one.
        for rnd in range(rounds):
            order = paths[rnd % len(paths):] + paths[:rnd % len(paths)]
            t0 = time.perf_counter()
            for _, run in order:
                run(rnd)
            log(f"round {rnd + 1}/{rounds}: {len(paths)} paths, {time.perf_counter() - t0:.0f} s "
                f"(load {os.getloadavg()[0]:.1f})")

    e2e = raw["c_e2e"][0]
    timed = e2e["timed_per_repeat"]
    if abs(float(e2e["threshold"]) - threshold) > 1e-7:
        raise SystemExit(f"the C API's threshold {e2e['threshold']} differs from the binding's {threshold}")
    results = {path: summarize(per) for path, per in ns.items()}
    for op in E2E_OPS:
        results[f"c_e2e_{op}"]["explained_timed_events"] = e2e["ops"][op]["explained_timed_events"]
    core_c, core_py, scorer_py = (outputs[k] for k in ("c_contributions", "py_core_contributions",
                                                       "py_scorer_contributions"))
    xgb_py, xgb_c = outputs["xgb_python_pred_contribs"], outputs["xgb_capi_contribs"]
    e2e_scores = np.stack([outputs[f"c_e2e_{op}"] for op in E2E_OPS])
    py_scores = np.stack([outputs[f"py_e2e_{op}"] for op in E2E_OPS])
    xraw = raw["xgb_capi_contribs"][0]
    shap_vals = outputs.get("shap_tree_explainer")
    shap_own = outputs.get("shap_tree_explainer_internal")

    # -- parity: the same rows' contributions through every path, against pred_contribs
    def maxdiff(x, y) -> float:
        return float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
    margin = booster.predict(xgb.DMatrix(rows, missing=np.nan, nthread=1), output_margin=True,
                             validate_features=False)
    parity = {
        "rows": n_rows,
        "core_c_vs_pred_contribs": maxdiff(core_c, xgb_py),
        "core_python_vs_core_c": maxdiff(core_py, core_c),
        "scorer_vs_core_c": maxdiff(scorer_py, core_c),
        "xgb_capi_vs_pred_contribs": maxdiff(xgb_c, xgb_py),
        "core_row_sum_vs_xgb_margin": maxdiff(core_c.sum(axis=1), margin),
        "e2e_explain_all_scores_vs_score_and_ingest": maxdiff(e2e_scores[1], e2e_scores[0]),
        "e2e_explain_alerts_scores_vs_score_and_ingest": maxdiff(e2e_scores[2], e2e_scores[0]),
        "e2e_python_scores_vs_c": maxdiff(py_scores, e2e_scores),
        "e2e_scores_vs_score_features_of_rows": maxdiff(
            e2e_scores[0], np.asarray(_core.Engine(str(bundle)).score_features(live_rows))),
        "bundle_tolerance": 1e-4,
    }
    if shap_vals is not None:
        shap_info.update(expected_value=float(np.ravel(explainer.expected_value)[0]),
                         internal_expected_value=float(np.ravel(own.expected_value)[0]))
        parity["shap_vs_pred_contribs"] = maxdiff(shap_vals, xgb_py)
        parity["shap_internal_features_vs_pred_contribs"] = maxdiff(shap_own, xgb_py[:, :nf])
        parity["shap_internal_expected_value_minus_bias"] = float(
            shap_info["internal_expected_value"] - np.median(xgb_py[:, nf]))

    # -- the cost an explained alert leaves behind: the events after it, not explained, run on caches
    # the TreeSHAP walk swept. Median ns of the non-alert timed events by how many events after the
    # latest alert they came, in the alerts-only op against the same events in score_and_ingest.
    live_scores = e2e_scores[0]
    is_alert = live_scores >= threshold
    since = np.full(len(live_scores), 10**9)
    last = None
    for i, flag in enumerate(is_alert):
        if last is not None:
            since[i] = i - last
        if flag:
            last = i
    since, is_alert = since[warmup:], is_alert[warmup:]
    plain_ns = np.stack(ns["c_e2e_score_and_ingest"])
    alerts_ns = np.stack(ns["c_e2e_explain_alerts"])
    aftermath = []
    for lo, hi in ((1, 2), (2, 5), (5, 20), (20, 100), (100, 10**9 + 1)):
        m = (since >= lo) & (since < hi) & ~is_alert
        if m.any():
            aftermath.append({"events_after_alert": (str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" if hi <= 100
                                                     else f">={lo}"),
                              "events": int(m.sum()),
                              "score_and_ingest_p50_us": float(np.median(plain_ns[:, m])) / 1e3,
                              "explain_alerts_p50_us": float(np.median(alerts_ns[:, m])) / 1e3})

    # -- what explaining adds, and the ratios
    base = results["c_e2e_score_and_ingest"]
    added = {f"c_{op}": {"p50_us": results[f"c_e2e_{op}"]["p50_us"] - base["p50_us"],
                         "p99_us": results[f"c_e2e_{op}"]["p99_us"] - base["p99_us"],
                         "mean_us": results[f"c_e2e_{op}"]["mean_us"] - base["mean_us"]}
             for op in ("explain_all", "explain_alerts")}
    pbase = results["py_e2e_score_and_ingest"]
    added.update({f"python_{op}": {"p50_us": results[f"py_e2e_{op}"]["p50_us"] - pbase["p50_us"],
                                   "p99_us": results[f"py_e2e_{op}"]["p99_us"] - pbase["p99_us"],
                                   "mean_us": results[f"py_e2e_{op}"]["mean_us"] - pbase["mean_us"]}
                  for op in ("explain_all", "explain_alerts")})
    ref = results["c_contributions"]["p50_us"]
    ratios = {f"{path} / core C contributions (p50)": results[path]["p50_us"] / ref
              for path in ("py_core_contributions", "py_scorer_contributions", "xgb_python_pred_contribs",
                           "xgb_capi_contribs", "shap_tree_explainer", "shap_tree_explainer_internal")
              if path in results}
    alerts = results["c_e2e_explain_alerts"]["explained_timed_events"]
    target = {
        "goal": f"explaining adds at most {TARGET_ADDED_P50_US:g} us to the end-to-end p50 "
                f"({n_trees} trees, depth {cfg['depth']}, one core)",
        "every_event": {"added_p50_us": added["c_explain_all"]["p50_us"],
                        "met": added["c_explain_all"]["p50_us"] <= TARGET_ADDED_P50_US},
        "alerts_only": {"added_p50_us": added["c_explain_alerts"]["p50_us"],
                        "added_mean_us": added["c_explain_alerts"]["mean_us"],
                        "alert_rate": alerts / timed,
                        "met": added["c_explain_alerts"]["p50_us"] <= TARGET_ADDED_P50_US},
    }
    if cfg["trees"] != 500 or cfg["depth"] != 6:
        target["note"] = "not the issue's model (500 trees, depth 6): run without --quick for the target"

    report = {
        "benchmark": "bench.explain",
        "mode": a.mode,
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["python -m bench.explain", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {**machine(), "loadavg_before": list(load_before)},
        "env": {k: os.environ.get(k) for k in PINNED_ENV},
        "versions": {"libfraud": libfraud.__version__, "libfraud_core": e2e["library"],
                     "xgboost": xgb.__version__, "xgboost_capi": xraw["library"], "numpy": np.__version__,
                     "pandas": pd.__version__, "shap": shap_info.get("version"),
                     "bundle_tools": manifest.get("tools", {})},
        "build": build,
        "model": {"bundle": str(bundle), **build_info, "n_trees": n_trees, "max_depth": cfg["depth"],
                  "num_features": nf, "reason_families": e2e["reason_families"], "threshold": threshold,
                  "explanation": {k: v for k, v in manifest.get("explanation", {}).items()
                                  if not isinstance(v, (list, dict))}},
        "protocol": {"threads": 1, "k": K, "history_events": len(history), "warmup": cfg["warmup"],
                     "timed_calls_per_round": cfg["calls"], "rounds": cfg["rounds"],
                     "shap_warmup": min(cfg["warmup"], 20),
                     "order": "each path once a round (C end-to-end ops: a fresh engine each, history "
                              "ingested, then warmup untimed + calls timed live events); the path order and "
                              "the e2e op order turn each round",
                     "rows": "the timed live events' feature rows as served (each against the store before it)",
                     "statistic": "median over rounds of each round's p50 / p99 / mean (nearest rank)",
                     "added": "an op's p50 (p99, mean) minus score_and_ingest's, same run"},
        "alerts": {"timed_events": timed, "explained_at_threshold": alerts, "rate": alerts / timed,
                   "aftermath": aftermath,
                   "aftermath_note": "non-alert timed events of the C end-to-end ops (all rounds), by how many "
                                     "events after the latest alert they came: an explained alert's TreeSHAP "
                                     "walk leaves the caches cold for the events after it"},
        "shap": shap_info,
        "results": results,
        "added_by_explaining": added,
        "ratios": ratios,
        "parity_max_abs_diff": parity,
        "target": target,
        "skipped": skipped,
        "xgboost_predict_from_dense_type2": xraw.get("predict_from_dense_type2"),
        "seconds": time.perf_counter() - t_start,
        "raw": raw,
    }
    report["machine"]["loadavg_after"] = list(os.getloadavg())
    suffix = "" if a.mode == "full" else "-quick"  # a quick run never replaces the full figures
    out = a.out or HERE / "results" / f"{dt.date.today().isoformat()}-explain{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    # -- the table
    m = report["machine"]
    print(f"\n{m['cpu']}, {m['logical_cpus']} logical CPUs ({m['cpus_allowed']} allowed), one thread; "
          f"{n_trees} trees of depth {cfg['depth']}, {nf} features, k={K}; "
          f"{cfg['calls']} timed calls x {cfg['rounds']} rounds (median of rounds)")
    labels = [
        ("c_e2e_score_and_ingest", "C  fraud_engine_score_and_ingest_events"),
        ("c_e2e_explain_all", "C  ..._score_and_ingest_explain_events, every event"),
        ("c_e2e_explain_alerts", f"C  ..._score_and_ingest_explain_events, alerts ({alerts}/{timed})"),
        ("py_e2e_score_and_ingest", "Py _core.Engine.score_and_ingest"),
        ("py_e2e_explain_all", "Py _core.Engine.explain(ingest=True), every event"),
        ("py_e2e_explain_alerts", "Py _core.Engine.explain(ingest=True), alerts"),
        ("c_contributions", "C  fraud_engine_contributions (1 row)"),
        ("py_core_contributions", "Py _core.Engine.contributions (1 row)"),
        ("py_scorer_contributions", "Py Scorer.contributions (1 row)"),
        ("xgb_capi_contribs", "C  XGBoost DMatrix + PredictFromDMatrix type 2"),
        ("xgb_python_pred_contribs", "Py XGBoost predict(DMatrix, pred_contribs=True)"),
        ("shap_tree_explainer", "Py shap TreeExplainer.shap_values (XGBoost shortcut)"),
        ("shap_tree_explainer_internal", "Py shap TreeExplainer.shap_values (shap's own C)"),
    ]
    head = f"{'path':<58} {'p50 us':>10} {'p99 us':>10} {'mean us':>10} {'x core contrib':>15}"
    print(head)
    print("-" * len(head))
    for key, label in labels:
        if key not in results:
            print(f"{label:<58} {skipped.get(key, 'skipped')}")
            continue
        r = results[key]
        x = f"{r['p50_us'] / ref:.2f}" if "contrib" in key or "shap" in key else ""
        print(f"{label:<58} {_fmt(r['p50_us']):>10} {_fmt(r['p99_us']):>10} {_fmt(r['mean_us']):>10} {x:>15}")
    print()
    for key, what in (("c_explain_all", "every event"), ("c_explain_alerts", "alerts only")):
        d = added[key]
        print(f"explaining adds (C API, {what}): p50 {d['p50_us']:+.2f} us, p99 {d['p99_us']:+.1f} us, "
              f"mean {d['mean_us']:+.2f} us")
    print("events after an alert (alerts only; median us, score_and_ingest -> explain_alerts): "
          + ", ".join(f"{x['events_after_alert']} after: {x['score_and_ingest_p50_us']:.1f} -> "
                      f"{x['explain_alerts_p50_us']:.1f}" for x in aftermath))
    print(f"target (<= {TARGET_ADDED_P50_US:g} us added to the e2e p50): every event "
          f"{'MET' if target['every_event']['met'] else 'NOT MET'}, alerts only "
          f"{'MET' if target['alerts_only']['met'] else 'NOT MET'} (alert rate {alerts / timed:.1%})"
          + (f"  [{target['note']}]" if "note" in target else ""))
    same = max(parity["e2e_explain_all_scores_vs_score_and_ingest"],
               parity["e2e_explain_alerts_scores_vs_score_and_ingest"])
    print("parity (max abs diff, margin units): core vs pred_contribs "
          f"{parity['core_c_vs_pred_contribs']:.2g}, XGBoost C API vs pred_contribs "
          f"{parity['xgb_capi_vs_pred_contribs']:.2g}"
          + (f", shap vs pred_contribs {parity['shap_vs_pred_contribs']:.2g} (own C, features: "
             f"{parity['shap_internal_features_vs_pred_contribs']:.2g})" if "shap_vs_pred_contribs" in parity
             else "")
          + f", explained vs plain scores {same:.2g}")
    print(f"written {out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
