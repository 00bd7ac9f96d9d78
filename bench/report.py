"""The side-by-side latency and accuracy report: one command, every path, one JSON + markdown + PNGs.

    python -m bench --mode quick          # < 5 min on a 2-core machine
    python -m bench --mode full           # the committed figures (bigger model data, more calls)
    python -m bench --mode smoke          # the test's bounded run (tests/test_bench_quick.py)
    libfraud bench --mode quick           # the same entry point

Builds (or reuses, under build/bench/report/) a GNN bundle with libfraud.demo.run_demo (generate ->
train -> compile), then, one thread, batch 1, warm-up excluded, medians over repeats:

  end to end   libfraud through the C API (bench/e2e_bench.c) and through Python (Scorer)
  components   features (C API), 2-hop sampler (bench/sampler_latency.py), each GNN backend
               (_core.GnnModel.time_run on the bundle's artifacts, ONNX Runtime on its .onnx), the
               floor (bench/gnn_floor.cpp, built by native_gnn_latency.build_floor), trees
               (bench/fraud_trees_bench.c, bench/xgb_capi_bench.c, inplace_predict via
               trees_latency.py, ONNX Runtime)
  baseline     the Python pipeline (bench/python_pipeline.py): pandas + eager PyG + inplace_predict
  throughput   transactions/s at batch 1..1024 and 1..N threads (bench/e2e_bench.c)
  accuracy     the demo's AUPRC/AUROC (trees alone vs stacked); eth_phishing in full mode

Writes bench/results/<date>-<host>.json and .md, and PNGs beside them (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Pinned before numpy/torch/xgboost start their pools (FACTS.md, "Measuring"); the union of what
# the harnesses pin, so importing them does not re-execute.
PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456",
}

MODES = {
    # n: demo transactions; live: e2e transactions after the history (warmup of them untimed)
    "smoke": dict(n=30_000, trees=500, gnn_epochs=5, live=1500, warmup=300, repeats=2, py_txns=40,
                  calls=1000, batches=[1, 16, 256], max_threads=2, backends=["native"], eth=False),
    "quick": dict(n=30_000, trees=500, gnn_epochs=5, live=4500, warmup=500, repeats=5, py_txns=300,
                  calls=5000, batches=[1, 4, 16, 64, 256, 1024], max_threads=None,
                  backends=["native", "aoti"], eth=False),
    "full": dict(n=200_000, trees=500, gnn_epochs=30, live=20_000, warmup=2000, repeats=7, py_txns=1000,
                 calls=10_000, batches=[1, 4, 16, 64, 256, 1024], max_threads=None,
                 backends=["native", "aoti", "torchscript"], eth=True),
}



def _calibrator(manifest: dict):
    """The bundle's calibration as a function of the trees' output (identity without one)."""
    if not manifest.get("calibration"):
        return lambda p: np.asarray(p, dtype=np.float32)
    from libfraud.calibration import Calibrator
    return Calibrator.from_manifest(manifest["calibration"]).apply

def _reexec_pinned(argv: list[str]) -> None:
    if any(os.environ.get(k) != v for k, v in PINNED_ENV.items()) and "_BENCH_REPORT_REEXEC" not in os.environ:
        os.execve(sys.executable, [sys.executable, "-m", "bench", *argv],
                  {**os.environ, **PINNED_ENV, "_BENCH_REPORT_REEXEC": "1",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})


# ------------------------------------------------------------------------------------ statistics

def pct(ns, q: float) -> float:
    """Nearest-rank percentile of ns, in microseconds (the C harnesses' rule)."""
    import numpy as np
    s = np.sort(np.asarray(ns))
    return float(s[min(max(int(np.ceil(q / 100 * len(s))), 1), len(s)) - 1]) / 1e3


def summarize(per_repeat_ns: list) -> dict:
    """Median over repeats of each repeat's p50/p99/p99.9; spread = (max - min) / median of p50s."""
    stats = {k: [pct(ns, q) for ns in per_repeat_ns] for k, q in (("p50", 50), ("p99", 99), ("p999", 99.9))}
    return from_repeats(stats["p50"], stats["p99"], stats["p999"], n=sum(len(x) for x in per_repeat_ns))


def from_repeats(p50: list, p99: list, p999: list | None = None, n: int | None = None) -> dict:
    import numpy as np
    med = float(np.median(p50))
    out = {"p50_us": med, "p99_us": float(np.median(p99)),
           "p999_us": float(np.median(p999)) if p999 else None,
           "repeats": len(p50), "p50_spread_pct": 100 * (max(p50) - min(p50)) / med if med else 0.0,
           "per_repeat_p50_us": [float(x) for x in p50]}
    if n is not None:
        out["calls"] = n
    return out


# ------------------------------------------------------------------------------------ machine

def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"host": socket.gethostname(), "cpu": cpu, "logical_cpus": os.cpu_count(),
            "cpus_allowed": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version()}


# ------------------------------------------------------------------------------------ steps

def build_bundle(mode: str, cfg: dict, rebuild: bool, log) -> tuple[Path, dict]:
    import libfraud
    from libfraud.demo import run_demo
    out = ROOT / "build" / "bench" / "report" / f"n{cfg['n']}-t{cfg['trees']}-e{cfg['gnn_epochs']}"
    rep = out / "report.json"
    if rep.is_file() and not rebuild:
        from libfraud.export import BundleError, read_manifest
        report = json.loads(rep.read_text())
        try:
            read_manifest(out / "bundle")  # a bundle of this format version (a kept one may be older)
            current = True
        except BundleError:
            current = False
        if report.get("libfraud") == libfraud.__version__ and current:
            log(f"reusing bundle {out / 'bundle'}")
            return out, report
    log(f"building the bundle: demo, {cfg['n']} transactions, <= {cfg['trees']} trees, "
        f"{cfg['gnn_epochs']} GNN epochs")
    t0 = time.perf_counter()
    saved = out / "model" / "training.json"
    try:
        if saved.is_file() and (out / "onnx_refused.txt").is_file() and not rebuild:
            # an earlier run trained this model and its compile step refused the ONNX export: do not retrain
            raise type("GnnParityError", (Exception,), {})((out / "onnx_refused.txt").read_text())
        report = run_demo(out, n=cfg["n"], trees=cfg["trees"], gnn_epochs=cfg["gnn_epochs"], progress=False)
    except Exception as e:  # noqa: BLE001  only the ONNX export's parity refusal is handled
        if type(e).__name__ != "GnnParityError" or "ONNX" not in str(e):
            raise
        (out / "onnx_refused.txt").write_text(str(e))
        log(f"the compile step refused the ONNX export ({e}); compiling the bundle without the "
            "ONNX artifacts (native, AOTInductor, TorchScript are checked as usual)")
        report = compile_without_onnx(out, str(e))
    report["libfraud"] = libfraud.__version__
    report["build_seconds"] = time.perf_counter() - t0
    rep.write_text(json.dumps(report, indent=2))
    return out, report


def compile_without_onnx(out: Path, why: str) -> dict:
    """run_demo's compile and serve steps, from its saved model, without the ONNX exports (which
    are not a serving backend): libfraud.compile.compile_model_dir minus export_onnx_artifacts."""
    import shutil
    import numpy as np
    from libfraud import metrics
    from libfraud.compile import export_gnn
    from libfraud.data import load_transactions
    from libfraud.export import build_bundle as build
    from libfraud.scorer import Scorer
    from libfraud.train import load_trained, load_trained_gnn
    model, info, holdout = load_trained(out / "model")
    gnn_model, arrays = load_trained_gnn(out / "model")
    arrays.pop("holdout_rows")
    shutil.rmtree(out / "bundle", ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="bench-gnn-") as work:
        gnn = export_gnn(gnn_model, arrays, info["sampler"], Path(work), progress=False)
        bundle = build(out / "bundle", booster=model.booster, feature_names=list(model.feature_names),
                       schema=info["schema"], spec=info["spec"], X_holdout=holdout, threshold=info["threshold"],
                       threshold_rule=info["threshold_rule"], metrics=info["metrics"], gnn=gnn, jobs=2)
    tx = load_transactions(out / "transactions.parquet")
    times = tx["timestamp_ms"].to_numpy()
    history, live = tx[times < info["test_start_ms"]], tx[times >= info["test_start_ms"]]
    scorer = Scorer(bundle, expected_transactions=len(tx))
    scorer.ingest(history)
    scores = scorer.score_and_ingest(live)
    m = info["metrics"]
    return {"bundle": str(bundle), "onnx_export_refused": why,
            "transactions": {"total": len(tx), "history": len(history), "scored": len(live),
                             "fraud_rate": float(tx["label"].mean())},
            "metrics": {"test": metrics.summary(live["label"].to_numpy(dtype=np.int8), scores),
                        "test_python": m["test"], "test_gbdt_only": m["test_gbdt_only"],
                        "test_gnn_only": m["test_gnn_only"]}}


def compile_c(work: Path) -> dict:
    import trees_latency as tl
    import libfraud
    fraud_bin, xgb_bin, build = tl.compile_benches(work)
    env = {**os.environ, "PKG_CONFIG_PATH": libfraud.pkgconfig_path}
    pc = subprocess.run(["pkg-config", "--cflags", "--libs", "libfraud"], env=env, check=True,
                        capture_output=True, text=True).stdout.split()
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "libfraud"], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    e2e = work / "e2e_bench"
    subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-O2", "-Wall", "-Wextra", "-pthread",
                    f"-I{HERE}", str(HERE / "e2e_bench.c"), "-o", str(e2e), *pc, f"-Wl,-rpath,{libdir}"],
                   check=True)
    return {"fraud_trees": fraud_bin, "xgb_capi": xgb_bin, "e2e": e2e, "build": build}


def run_json(cmd: list) -> dict:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{Path(str(cmd[0])).name} failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout)


def e2e_latency(bins, bundle, backend, txns_bin, n_hist, cfg, op, work) -> tuple[dict, "object"]:
    import numpy as np
    ns_file = work / f"ns-{op}-{backend}.i64"
    r = run_json([bins["e2e"], "latency", bundle, backend, txns_bin, n_hist, cfg["live"], cfg["warmup"],
                  cfg["repeats"], op, ns_file])
    ns = np.fromfile(ns_file, dtype=np.int64).reshape(cfg["repeats"], -1)
    out = from_repeats(r["p50_us"], r["p99_us"], r["p999_us"], n=int(ns.size))
    return out, ns


def tree_onnx(booster, names: list[str], path: Path) -> Path:
    """The XGBoost model as an ONNX TreeEnsembleRegressor (logistic post-transform): no converter
    package is installed here, so written from the model's JSON dump."""
    import math
    import onnx
    from onnx import TensorProto, helper
    cfg = json.loads(booster.save_config())
    base = float(str(cfg["learner"]["learner_model_param"]["base_score"]).strip("[]"))
    margin = math.log(base / (1 - base))
    index = {n: i for i, n in enumerate(names)}
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
                         "target_treeids", "target_nodeids", "target_ids", "target_weights")}
    for tid, dump in enumerate(booster.get_dump(dump_format="json")):
        stack = [json.loads(dump)]
        while stack:
            n = stack.pop()
            a["nodes_treeids"].append(tid)
            a["nodes_nodeids"].append(n["nodeid"])
            if "leaf" in n:
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_modes"].append("LEAF")
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                a["target_treeids"].append(tid)
                a["target_nodeids"].append(n["nodeid"])
                a["target_ids"].append(0)
                a["target_weights"].append(float(n["leaf"]))
            else:
                f = n["split"]
                a["nodes_featureids"].append(index[f] if f in index else int(str(f).lstrip("f")))
                a["nodes_values"].append(float(n["split_condition"]))
                a["nodes_modes"].append("BRANCH_LT")
                a["nodes_truenodeids"].append(n["yes"])
                a["nodes_falsenodeids"].append(n["no"])
                a["nodes_missing_value_tracks_true"].append(int(n["missing"] == n["yes"]))
                stack += n["children"]
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["M"], domain="ai.onnx.ml", n_targets=1,
                            base_values=[margin], post_transform="NONE", **a)
    sigmoid = helper.make_node("Sigmoid", ["M"], ["Y"])  # onnxruntime ignores the regressor's LOGISTIC
    graph = helper.make_graph([node, sigmoid], "trees", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, len(names)])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def time_python_calls(fn, inputs: list, calls: int, repeats: int, warmup: int = 200) -> list:
    """ns of each call of fn(inputs[i % len]) per repeat, perf_counter_ns, GC off, after warm-up."""
    import numpy as np
    clock = time.perf_counter_ns
    for i in range(min(warmup, calls)):
        fn(inputs[i % len(inputs)])
    out = []
    gc.disable()
    try:
        for _ in range(repeats):
            ns = np.empty(calls, np.int64)
            for c in range(calls):
                x = inputs[c % len(inputs)]
                t0 = clock()
                fn(x)
                ns[c] = clock() - t0
            out.append(ns)
    finally:
        gc.enable()
    return out


# ------------------------------------------------------------------------------------ main run

def run(mode: str = "quick", *, out_dir: Path | None = None, rebuild: bool = False,
        threads: int | None = None, quiet: bool = False) -> dict:
    sys.path.insert(0, str(HERE))
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    import torch

    import libfraud
    from libfraud import _core
    from libfraud.data import load_transactions
    from libfraud.data.schema import to_txn_records  # fraud_txn, for the C harnesses
    from libfraud.export import read_manifest
    from libfraud.features import make_store
    from libfraud.models.gnn import INPUT_NAMES
    from libfraud.scorer import Scorer
    from libfraud.train import load_trained_gnn
    import native_gnn_latency as nl
    import trees_latency as tl
    from python_pipeline import STAGES, PythonPipeline

    torch.set_num_threads(1)
    cfg = dict(MODES[mode])
    log = (lambda m: None) if quiet else (lambda m: print(f"[bench {time.strftime('%H:%M:%S')}] {m}", flush=True))
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    n_threads_max = threads or cfg["max_threads"] or (os.cpu_count() or 1)
    out_dir = Path(out_dir or HERE / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"benchmark": "bench.report", "mode": mode, "config": cfg,
                    "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "command": " ".join(["python -m bench", *sys.argv[1:]]) if sys.argv[0].endswith("__main__.py")
                    else f"bench.report.run({mode!r})",
                    "machine": {**machine(), "loadavg_before": list(load_before)},
                    "env": {k: os.environ.get(k) for k in PINNED_ENV},
                    "versions": {"libfraud": libfraud.__version__, "xgboost": xgb.__version__,
                                 "torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__}}

    model_dir, demo = build_bundle(mode, cfg, rebuild, log)
    bundle = model_dir / "bundle"
    manifest = read_manifest(bundle)
    tx = load_transactions(model_dir / "transactions.parquet")
    n_hist = int(demo["transactions"]["history"])
    live_n = min(cfg["live"], len(tx) - n_hist)
    cfg["live"] = live_n
    hist_df, live_df = tx.iloc[:n_hist], tx.iloc[n_hist:n_hist + live_n]
    records = to_txn_records(tx.iloc[:n_hist + live_n])  # the C harnesses' input
    K = int(manifest["gnn"]["sampler"]["fanout"])
    graph_fields = list(manifest["gnn"]["sampler"].get("graph_fields", []))
    D = int(manifest["gnn"]["embedding_dim"])
    art = {a["name"]: bundle / a["path"] for a in manifest["artifacts"]}
    result["model"] = {"bundle": str(bundle), "onnx_export_refused": demo.get("onnx_export_refused"), "n_trees": manifest["model"]["n_trees"],
                       "max_trees": cfg["trees"], "num_features": len(manifest["features"]["order"]),
                       "fanout": K, "embedding_dim": D, "default_backend": manifest["gnn"]["default_backend"],
                       "transactions": demo["transactions"]}

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = Path(tmp)
        txns_bin = work / "txns.bin"
        records.tofile(txns_bin)
        log("compiling the C harnesses")
        bins = compile_c(work)
        lat: dict = {}
        raw_ns: dict = {}

        # -- end to end, C API
        default = manifest["gnn"]["default_backend"]
        for backend in [default] + [b for b in cfg["backends"] if b != default]:
            log(f"end to end, C API, GNN backend {backend}")
            name = f"libfraud C API (GNN {backend})"
            lat[name], ns = e2e_latency(bins, bundle, backend, txns_bin, n_hist, cfg, "score_and_ingest", work)
            raw_ns[name] = ns
        e2e_name = f"libfraud C API (GNN {default})"
        e2e = lat[e2e_name]

        # -- end to end, Python (Scorer.score_and_ingest, one transaction per call, timed in Python)
        log("end to end, Python API")
        scorer = Scorer(bundle, expected_transactions=len(records))
        events = scorer.events(tx.iloc[:n_hist + live_n])  # the core's arrays, converted once (untimed)
        history_ev, live_ev = events.slice(0, n_hist), events.slice(n_hist, len(events))
        scorer.ingest(history_ev)
        singles = [live_ev.slice(i, i + 1) for i in range(len(live_ev))]
        clock = time.perf_counter_ns
        py_ns = []
        for r in range(cfg["repeats"]):
            s = Scorer(bundle, expected_transactions=len(records))
            s.ingest(history_ev)
            ns = np.empty(len(singles), np.int64)
            gc.disable()
            for i, x in enumerate(singles):
                t0 = clock()
                s.score_and_ingest(x)
                ns[i] = clock() - t0
            gc.enable()
            py_ns.append(ns[cfg["warmup"]:])
        lat["libfraud Python API (Scorer.score_and_ingest)"] = summarize(py_ns)
        raw_ns["libfraud Python API (Scorer.score_and_ingest)"] = np.stack(py_ns)
        lib_scores = scorer.score_and_ingest(live_ev)  # reference scores for parity

        # -- components
        comp: dict = {}
        log("component: features (C API, fraud_engine_features on a trees-only bundle)")
        fb = tl.train_bundle(argparse.Namespace(trees=10, depth=3, train_txns=5000, seed=0,
                                                bundle_dir=ROOT / "build" / "bench", rebuild=False))
        if read_manifest(fb)["features"]["spec"] != manifest["features"]["spec"]:
            raise SystemExit("the features bundle's feature spec differs from the model's")
        comp["features (C API)"], _ = e2e_latency(bins, fb, "-", txns_bin, n_hist, cfg, "features", work)
        comp["features + sample + GNN (C API)"], _ = e2e_latency(bins, bundle, default, txns_bin, n_hist, cfg,
                                                                  "features", work)

        log("component: sampler (bench/sampler_latency.py)")
        sdir = work / "sampler"
        subprocess.run([sys.executable, str(HERE / "sampler_latency.py"), "--txns", str(cfg["n"]),
                        "--targets", str(min(cfg["calls"] * 2, cfg["n"] // 2)), "--fanout", str(K),
                        "--repeats", str(cfg["repeats"]), "--out", str(sdir),
                        *[a for g in graph_fields for a in ("--graph-field", g)]], check=True,
                       capture_output=True, text=True)
        srow = next(r for r in json.loads(next(sdir.glob("*-sampler.json")).read_text())["results"]
                    if r["strategy"] == manifest["gnn"]["sampler"]["strategy"])
        comp["sampler, 2-hop (C++)"] = from_repeats(srow["repeats_p50_us"], srow["repeats_p99_us"])

        log("component: GNN backends on real sampled neighbourhoods")
        store = make_store(manifest["schema"], manifest["features"]["spec"], expected_events=len(records))
        store.ingest(*history_ev.args())
        sampler = _core.Sampler(store, _core.SamplerConfig(fanout=K, strategy=manifest["gnn"]["sampler"]["strategy"],
                                                           seed=0), graph_fields)
        sampled = dict(sampler.sample(store, *live_ev.slice(0, 1).args()))
        arrays = [np.ascontiguousarray(sampled[k], dtype=np.float32) for k in INPUT_NAMES]
        kinds = {"native": art["gnn_native"], "aoti": art["gnn_aoti"], "torchscript": art["gnn_torchscript"]}
        gnn_stats = {}
        for kind in cfg["backends"]:
            m = _core.GnnModel(kind, str(kinds[kind]), D)
            per = [m.time_run(*arrays, repeats=cfg["calls"], warmup=200) for _ in range(cfg["repeats"])]
            gnn_stats[f"GNN {kind} (C++)"] = summarize(per)
        floor_w, inputs_bin = work / "floor_weights.bin", work / "gnn_inputs.bin"
        nl.floor_weights(art["gnn_native"], floor_w)
        inputs_bin.write_bytes(b"".join(a.tobytes() for a in arrays))
        gnn_model, _ = load_trained_gnn(model_dir / "model")
        exe, _ = nl.build_floor(work, gnn_model.hidden, D, K)
        per = []
        for _ in range(cfg["repeats"]):
            subprocess.run([str(exe), str(floor_w), str(inputs_bin), str(cfg["calls"]), "200", str(work / "f.i64")],
                           check=True, capture_output=True)
            per.append(np.fromfile(work / "f.i64", dtype=np.int64))
        gnn_stats["GNN floor (hand-written loop)"] = summarize(per)
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        if "gnn_onnx" in art:  # absent when the compile step refused the ONNX export
            sess = ort.InferenceSession(str(art["gnn_onnx"]), so, providers=["CPUExecutionProvider"])
            feed = dict(zip(INPUT_NAMES, arrays))
            gnn_stats["GNN onnxruntime (Python)"] = summarize(
                time_python_calls(lambda _: sess.run(None, feed), [0], cfg["calls"], cfg["repeats"]))
        tens = [torch.from_numpy(a) for a in arrays]

        def eager(_):
            with torch.no_grad():
                gnn_model(*tens)
        gnn_stats["GNN eager PyG (Python)"] = summarize(time_python_calls(eager, [0], min(cfg["calls"], 1000),
                                                                          cfg["repeats"], warmup=50))
        comp.update(gnn_stats)

        log("component: trees (fraud_trees_bench.c, xgb_capi_bench.c, inplace_predict, onnxruntime)")
        rows = scorer.features(live_df).to_numpy(dtype=np.float32)  # stacked rows, after the live ingest:
        rows = np.ascontiguousarray(rows)                             # the rows serving would see later
        nf = rows.shape[1]
        rows_file = work / "rows.f32"
        rows.tofile(rows_file)
        counts = [cfg["calls"], 256, 20, cfg["repeats"]]
        raw_t, scores_t = {}, {}
        raw_t["libfraud"], scores_t["libfraud"] = tl.run_c(
            [bins["fraud_trees"], bundle, rows_file, len(rows), *counts, work / "s1.f32"], work / "s1.f32")
        raw_t["xgb-capi"], scores_t["xgb-capi"] = tl.run_c(
            [bins["xgb_capi"], art["xgboost"], rows_file, len(rows), nf, *counts, work / "s2.f32"], work / "s2.f32")
        booster = xgb.Booster(model_file=str(art["xgboost"]))
        raw_t["xgb-inplace"], scores_t["xgb-inplace"] = tl.run_inplace(
            booster, rows, argparse.Namespace(batch=256, repeats=cfg["repeats"], single_calls=cfg["calls"],
                                              batch_calls=20))
        onnx_path = tree_onnx(booster, manifest["features"]["order"], work / "trees.onnx")
        tsess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        singles_rows = [rows[i:i + 1] for i in range(len(rows))]
        scores_t["onnxruntime"] = np.concatenate([tsess.run(None, {"X": r})[0].reshape(-1) for r in singles_rows])
        ort_ns = time_python_calls(lambda r: tsess.run(None, {"X": r}), singles_rows, cfg["calls"], cfg["repeats"])
        comp["trees libfraud compiled (C API)"] = from_repeats(raw_t["libfraud"]["single"]["p50_us"],
                                                               raw_t["libfraud"]["single"]["p99_us"])
        comp["trees XGBoost C API"] = from_repeats(raw_t["xgb-capi"]["single"]["p50_us"],
                                                   raw_t["xgb-capi"]["single"]["p99_us"])
        comp["trees XGBoost inplace_predict (Python)"] = from_repeats(raw_t["xgb-inplace"]["single"]["p50_us"],
                                                                      raw_t["xgb-inplace"]["single"]["p99_us"])
        comp["trees onnxruntime (Python)"] = summarize(ort_ns)
        # libfraud serves the bundle's calibrated probability; the other paths give the trees' own
        # output, so the same calibrator (a scalar step, ~20 ns) is applied to them before comparing.
        calibrate = _calibrator(manifest)
        tree_parity = {p: float(np.max(np.abs(calibrate(scores_t[p]).astype(np.float64) - scores_t["libfraud"])))
                       for p in scores_t if p != "libfraud"}

        # -- the Python pipeline
        log(f"the Python pipeline (pandas + eager PyG + inplace_predict), {cfg['py_txns']} transactions")
        n_py = min(cfg["py_txns"] + 20, live_n)
        pipe = PythonPipeline(hist_df, n_hist + n_py, xgb.Booster(model_file=str(art["xgboost"])), gnn_model,
                              manifest["features"]["spec"], K, graph_fields)
        py_scores, _, stage_ns = pipe.score_and_ingest_timed(live_df.iloc[:n_py])
        stage_ns = stage_ns[20:]  # the first 20 are warm-up
        py_total = stage_ns.sum(axis=1)
        halves = np.array_split(py_total, max(1, min(cfg["repeats"], len(py_total) // 20)))
        python_pipeline = summarize(halves)
        python_pipeline["stages_p50_us"] = {s: float(np.median(stage_ns[:, i]) / 1e3) for i, s in enumerate(STAGES)}
        python_pipeline["max_abs_score_diff_vs_libfraud"] = float(np.max(np.abs(calibrate(py_scores)
                                                                                - lib_scores[:n_py])))
        python_pipeline["features"] = "all 44 of the core's features, pandas, per transaction"
        lat["Python pipeline (pandas + eager PyG + inplace_predict)"] = python_pipeline
        raw_ns["Python pipeline (pandas + eager PyG + inplace_predict)"] = py_total[None, :]

        # -- throughput
        log("throughput: batch sweep (score_and_ingest, 1 thread), thread sweep (score)")
        tp = {"batch_sweep": [], "thread_sweep": []}
        rep = max(1, cfg["repeats"] - 1)
        for b in cfg["batches"]:
            r = run_json([bins["e2e"], "throughput", bundle, default, txns_bin, n_hist, live_n, b, 1, rep,
                          "score_and_ingest"])
            tp["batch_sweep"].append({"batch": b, "threads": 1, "txn_per_s": float(np.median(r["txn_per_s"])),
                                      "per_repeat": r["txn_per_s"]})
        for t in range(1, n_threads_max + 1):
            for b in (1, 64):
                r = run_json([bins["e2e"], "throughput", bundle, default, txns_bin, n_hist, live_n, b, t, rep,
                              "score"])
                tp["thread_sweep"].append({"batch": b, "threads": t, "txn_per_s": float(np.median(r["txn_per_s"])),
                                           "per_repeat": r["txn_per_s"]})

    # -- accuracy
    m = demo["metrics"]
    acc = {"synthetic": {"source": "libfraud.demo.run_demo test period (time-ordered split)",
                         "n_test": m["test"]["n"], "positives": m["test"]["positives"],
                         "trees_only": {k: m["test_gbdt_only"][k] for k in ("auprc", "auroc")},
                         "stacked_served": {k: m["test"][k] for k in ("auprc", "auroc")},
                         "gnn_only": {k: m["test_gnn_only"][k] for k in ("auprc", "auroc")}}}
    if cfg["eth"]:
        log("accuracy: eth_phishing (bench/eth_phishing.py)")
        edir = Path(tempfile.mkdtemp(prefix="bench-eth-"))
        p = subprocess.run([sys.executable, str(HERE / "eth_phishing.py"), "--results", str(edir)],
                           capture_output=True, text=True)
        files = list(edir.glob("*.json"))
        if p.returncode == 0 and files:
            acc["eth_phishing"] = json.loads(files[0].read_text())
        else:
            acc["eth_phishing"] = {"skipped": (p.stdout.strip().splitlines() or [f"rc {p.returncode}"])[-1]}
    else:
        acc["eth_phishing"] = {"skipped": f"{mode} mode (full mode only)"}

    # -- ratios and targets
    ref = e2e["p50_us"]
    for v in {**lat, **comp}.values():
        v["x_libfraud_e2e_p50"] = v["p50_us"] / ref
    py = lat["Python pipeline (pandas + eager PyG + inplace_predict)"]
    ratios = {"python_pipeline_over_libfraud": py["p50_us"] / ref,
              "python_api_over_c_api": lat["libfraud Python API (Scorer.score_and_ingest)"]["p50_us"] / ref,
              "xgb_capi_over_compiled_trees": comp["trees XGBoost C API"]["p50_us"] / comp["trees libfraud compiled (C API)"]["p50_us"],
              "onnxruntime_trees_over_compiled_trees": comp["trees onnxruntime (Python)"]["p50_us"] / comp["trees libfraud compiled (C API)"]["p50_us"],
              "native_gnn_over_floor": comp["GNN native (C++)"]["p50_us"] / comp["GNN floor (hand-written loop)"]["p50_us"]}
    targets = {
        "e2e_p50_le_20us": {"target": 20.0, "measured": ref, "met": ref <= 20.0},
        "e2e_p99_le_100us": {"target": 100.0, "measured": e2e["p99_us"], "met": e2e["p99_us"] <= 100.0},
        "python_pipeline_ge_100x": {"target": 100.0, "measured": ratios["python_pipeline_over_libfraud"],
                                    "met": ratios["python_pipeline_over_libfraud"] >= 100.0},
        "trees_ge_10x_xgb_capi": {"target": 10.0, "measured": ratios["xgb_capi_over_compiled_trees"],
                                  "met": ratios["xgb_capi_over_compiled_trees"] >= 10.0},
    }
    fsg = comp["features + sample + GNN (C API)"]["p50_us"]
    breakdown = {"features_us": comp["features (C API)"]["p50_us"],
                 "sampler_us": comp["sampler, 2-hop (C++)"]["p50_us"],
                 "gnn_us": comp[f"GNN {default} (C++)"]["p50_us"],
                 "trees_us": comp["trees libfraud compiled (C API)"]["p50_us"],
                 "features_sample_gnn_measured_together_us": fsg,
                 "rest_us (validate + ingest + call overhead, by difference)":
                     ref - fsg - comp["trees libfraud compiled (C API)"]["p50_us"]}
    result.update({
        "end_to_end": {"path": e2e_name, "batch": 1, "threads": 1, **e2e},
        "latency_us": lat, "components_us": comp, "ratios": ratios, "targets": targets,
        "breakdown_p50_us": breakdown, "parity": {"trees_max_abs_diff_vs_libfraud": tree_parity,
                                                  "python_pipeline_max_abs_diff_vs_libfraud":
                                                      python_pipeline["max_abs_score_diff_vs_libfraud"]},
        "throughput": tp, "accuracy": acc,
    })
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - t_start
    host = socket.gethostname().split(".")[0]
    stem = out_dir / f"{dt.date.today().isoformat()}-{host}"
    result["plots"] = [p.name for p in render(result, raw_ns, stem)]
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result) + "\n")
    log(f"wrote {stem}.json, {stem}.md ({result['seconds']:.0f} s)")
    return result


def render(r: dict, raw_ns: dict, stem: Path) -> list[Path]:
    """PNGs: latency histograms and CDFs of the end-to-end paths, throughput vs batch and threads."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    paths = []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, ns in raw_ns.items():
        us = np.sort(np.asarray(ns).ravel()) / 1e3
        ax1.hist(us, bins=np.logspace(np.log10(max(us.min(), 0.5)), np.log10(us.max() + 1), 80),
                 histtype="step", label=name)
        ax2.plot(us, np.arange(1, len(us) + 1) / len(us), label=name)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("microseconds per transaction (batch 1, one thread)")
    ax1.set_ylabel("calls")
    ax2.set_ylabel("fraction of calls <= x")
    ax1.set_title("latency histogram")
    ax2.set_title("latency CDF")
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths.append(stem.parent / f"{stem.name}-latency.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    bs = r["throughput"]["batch_sweep"]
    ax1.plot([x["batch"] for x in bs], [x["txn_per_s"] for x in bs], "o-")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("batch (score_and_ingest, one thread)")
    ax1.set_ylabel("transactions / s")
    for b in sorted({x["batch"] for x in r["throughput"]["thread_sweep"]}):
        ts = [x for x in r["throughput"]["thread_sweep"] if x["batch"] == b]
        ax2.plot([x["threads"] for x in ts], [x["txn_per_s"] for x in ts], "o-", label=f"batch {b}")
    ax2.set_xlabel("threads (fraud_engine_score)")
    ax2.set_ylabel("transactions / s")
    ax2.legend()
    fig.tight_layout()
    paths.append(stem.parent / f"{stem.name}-throughput.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def _f(x, digits: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def markdown(r: dict) -> str:
    m, e = r["machine"], r["end_to_end"]
    L = [f"# libfraud benchmark report: {r['mode']} mode, {r['date_utc']}", "",
         f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['cpus_allowed']} allowed), host "
         f"`{m['host']}`; load average before {', '.join(f'{x:.2f}' for x in m['loadavg_before'])}, after "
         f"{', '.join(f'{x:.2f}' for x in m['loadavg_after'])}.",
         f"- Command: `{r['command']}`; {r['seconds']:.0f} s. Versions: " +
         ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".",
         f"- Model: {r['model']['n_trees']} trees (at most {r['model']['max_trees']} rounds, early stopping), "
         f"{r['model']['num_features']} inputs (44 features + GNN logit + {r['model']['embedding_dim']}-d "
         f"embedding), 2-hop sample with fanout {r['model']['fanout']}, default GNN backend "
         f"`{r['model']['default_backend']}`; trained by `libfraud.demo.run_demo` on "
         f"{r['model']['transactions']['total']:,} synthetic transactions; the store holds the "
         f"{r['model']['transactions']['history']:,} history transactions, then the test period is scored.",
         f"- Protocol: one thread (`OMP_NUM_THREADS=1`, torch/ORT/XGBoost pools pinned to 1, glibc malloc "
         f"trimming off), batch 1, warm-up excluded, {r['config']['repeats']} repeats; each figure is the median "
         f"over repeats of the repeat's nearest-rank percentile; noise = spread of the p50 across repeats "
         f"((max - min) / median). Tests never assert a time.", "",
         "## Latency, batch 1, one thread", "",
         f"End to end through the C API: **p50 {_f(e['p50_us'])} us, p99 {_f(e['p99_us'])} us, "
         f"p99.9 {_f(e['p999_us'])} us** ({e['path']}).", "",
         "| path | p50 us | p99 us | p99.9 us | x libfraud e2e p50 | p50 spread % |",
         "|---|---|---|---|---|---|"]
    for name, v in {**r["latency_us"], **r["components_us"]}.items():
        L.append(f"| {name} | {_f(v['p50_us'])} | {_f(v['p99_us'])} | {_f(v.get('p999_us'))} | "
                 f"{_f(v['x_libfraud_e2e_p50'], 3)} | {_f(v['p50_spread_pct'], 1)} |")
    py = r["latency_us"]["Python pipeline (pandas + eager PyG + inplace_predict)"]
    L += ["", "Python pipeline per stage (p50 us): " +
          ", ".join(f"{k} {_f(v, 0)}" for k, v in py["stages_p50_us"].items()) +
          f"; its scores match libfraud's to {py['max_abs_score_diff_vs_libfraud']:.1e} "
          f"({py['calls']} transactions timed: {py['features']}).",
          "Tree parity (max |score - libfraud| on the same rows): " +
          ", ".join(f"{k} {v:.1e}" for k, v in r["parity"]["trees_max_abs_diff_vs_libfraud"].items()) + ".", "",
          "## Where the end-to-end time goes (p50 us, each measured alone)", "",
          "| part | p50 us |", "|---|---|"]
    for k, v in r["breakdown_p50_us"].items():
        L.append(f"| {k} | {_f(v)} |")
    L += ["", "## Targets (reported, not asserted)", "", "| target | measured | met |", "|---|---|---|"]
    names = {"e2e_p50_le_20us": "end-to-end p50 <= 20 us", "e2e_p99_le_100us": "end-to-end p99 <= 100 us",
             "python_pipeline_ge_100x": ">= 100x faster than the Python pipeline (p50)",
             "trees_ge_10x_xgb_capi": "compiled trees >= 10x XGBoost C API per row (p50)"}
    for k, t in r["targets"].items():
        unit = " us" if k.startswith("e2e") else "x"
        miss = "" if t["met"] else (f" (missed by {t['measured'] / t['target']:.2f}x)" if k.startswith("e2e")
                                    else f" (missed: {t['target'] / t['measured']:.2f}x short)")
        L.append(f"| {names[k]} | {_f(t['measured'])}{unit} | {'yes' if t['met'] else 'no' + miss} |")
    L += ["", "## Throughput, end to end", "", "| batch | threads | call | transactions/s |", "|---|---|---|---|"]
    for x in r["throughput"]["batch_sweep"]:
        L.append(f"| {x['batch']} | 1 | score_and_ingest | {x['txn_per_s']:,.0f} |")
    for x in r["throughput"]["thread_sweep"]:
        L.append(f"| {x['batch']} | {x['threads']} | score (concurrent, stores nothing) | {x['txn_per_s']:,.0f} |")
    a = r["accuracy"]
    s = a["synthetic"]
    L += ["", "## Accuracy next to speed", "",
          f"Synthetic test period ({s['n_test']:,} transactions, {s['positives']} frauds; {s['source']}):", "",
          "| model | AUPRC | AUROC |", "|---|---|---|",
          f"| trees alone (GBDT on the 44 features) | {s['trees_only']['auprc']:.4f} | {s['trees_only']['auroc']:.4f} |",
          f"| GNN alone | {s['gnn_only']['auprc']:.4f} | {s['gnn_only']['auroc']:.4f} |",
          f"| stacked (GNN + trees), served by libfraud | {s['stacked_served']['auprc']:.4f} | "
          f"{s['stacked_served']['auroc']:.4f} |", ""]
    eth = a.get("eth_phishing", {})
    if "skipped" in eth:
        L.append(f"eth_phishing: skipped ({eth['skipped']}).")
    else:
        L += ["eth_phishing (bench/eth_phishing.py, test accounts, score = mean / max of an account's incoming "
              "transactions; the full figures are in the JSON and bench/README.md):", "",
              "| split | model | AUROC | AUPRC |", "|---|---|---|---|"]
        for sp in eth.get("splits", []):
            for k, v in sp.get("test_accounts", {}).items():
                L.append(f"| {sp['split']} | {k} | {v['auroc']:.3f} | {v['auprc']:.3f} |")
    L += ["", "Plots (regenerated, git-ignored): " + ", ".join(f"`{p}`" for p in r.get("plots", [])) +
          ". JSON beside this file holds every repeat's figures.", ""]
    L += [f"![plot]({p})" for p in r.get("plots", [])]
    if r["model"].get("onnx_export_refused"):
        L.insert(5, f"- The compile step refused this model's ONNX export ({r['model']['onnx_export_refused']}), so "
                 "the bundle was compiled without the ONNX artifacts (not a serving backend) and the "
                 "GNN-in-ONNX-Runtime row is absent.")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=list(MODES), default="quick")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    ap.add_argument("--rebuild", action="store_true", help="train and compile the bundle even if kept")
    ap.add_argument("--threads", type=int, default=None, help="largest thread count of the sweep")
    ap.add_argument("-q", "--quiet", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    a = ap.parse_args(argv)
    _reexec_pinned(argv)
    r = run(a.mode, out_dir=a.out, rebuild=a.rebuild, threads=a.threads, quiet=a.quiet)
    e = r["end_to_end"]
    print(f"end to end (C API, batch 1, 1 thread): p50 {e['p50_us']:.2f} us, p99 {e['p99_us']:.2f} us; "
          f"Python pipeline / libfraud = {r['ratios']['python_pipeline_over_libfraud']:.0f}x")
    return 0
