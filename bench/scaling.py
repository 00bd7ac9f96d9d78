"""Fast at every size: the scaling tables in one command, side by side in one run.

    python -m bench.scaling                 # full: stores of 1M and 10M events (~25 min here)
    python -m bench.scaling --mode quick    # small sizes, bounded (~5 min): a smoke run
    python -m bench.scaling --only e2e,hot  # some sections only

Sections (each a table in the printed markdown and the JSON under bench/results/):
- ``e2e``: ``fraud_engine_score_and_ingest``, one event per call, each call timed, on stores of
  each size (p50 / p99 / p99.99 / max), and ``fraud_engine_features`` alone on the same traffic.
  The model: GNN (native backend) + exactly 500 trees of depth 6 + the payments features and four
  label-aware ones (``label`` kind: the scans read ``max_scan`` rows each).
- ``hot``: the same calls on a store where one IP carries a third of the events (a 1M-event hot
  entity in full mode): features and end to end of the events on the hot IP against the others,
  split from the same run.
- ``batch``: ``score_and_ingest`` throughput at batch 1 .. 1024 on one thread.
- ``store`` and ``trees``: bench/store_growth.py and bench/trees_scaling.py (their own tables),
  run as subprocesses so each keeps its own protocol.

The traffic is synthetic ``fraud_txn`` records written here (skewed cards, merchants and IPs over
30 days; see ``synthetic_records``): the latency of a history's shape, not of a fraud pattern. The
model is trained on the project's generator (``libfraud.data``) and scores these records as it
would any; its accuracy is not the point. Protocol as bench/report.py: the process re-executes
itself pinned to one thread with glibc's malloc trimming off; each repeat opens a fresh engine
and ingests the same history in one call (untimed), then times the live calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

MODES = {
    # sizes: history events per store; live: timed calls per repeat (after warmup)
    "quick": {"sizes": [100_000, 300_000], "hot_size": 300_000, "live": 3_000, "warmup": 500,
              "repeats": 2, "batches": [1, 64, 1024], "batch_live": 20_480, "train_n": 30_000,
              "gnn_epochs": 2},
    "full": {"sizes": [1_000_000, 10_000_000], "hot_size": 3_000_000, "live": 20_000, "warmup": 2_000,
             "repeats": 3, "batches": [1, 16, 64, 256, 1024], "batch_live": 102_400, "train_n": 60_000,
             "gnn_epochs": 3},
}
TREES, DEPTH = 500, 6
HOT_IP = 987_654_321
DAY_MS = 86_400_000
LABEL_FEATURES = [
    {"name": "merchant_fraud_count_7d", "kind": "label", "entity": "merchant", "agg": "fraud_count", "window_ms": 7 * DAY_MS},
    {"name": "merchant_fraud_rate_7d", "kind": "label", "entity": "merchant", "agg": "fraud_rate", "window_ms": 7 * DAY_MS},
    {"name": "card_labelled_count_30d", "kind": "label", "entity": "card", "agg": "labelled_count", "window_ms": 30 * DAY_MS},
    {"name": "ip_fraud_count_7d", "kind": "label", "entity": "ip", "agg": "fraud_count", "window_ms": 7 * DAY_MS},
]
PINNED_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456"}


def _reexec_pinned(argv: list[str]) -> None:
    if all(os.environ.get(k) == v for k, v in PINNED_ENV.items()):
        return
    os.environ.update(PINNED_ENV)
    os.execv(sys.executable, [sys.executable, "-m", "bench.scaling", *argv])


def log(msg: str) -> None:
    print(f"[scaling {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- the model

def scaling_bundle(cfg: dict, rebuild: bool) -> Path:
    """GNN + exactly TREES trees of DEPTH on the payments features plus LABEL_FEATURES; cached."""
    import xgboost as xgb

    import libfraud
    from libfraud.compile import compile_model_dir
    from libfraud.data import load_transactions, write_transactions
    from libfraud.data.declared import FeatureSpec, load_preset
    from libfraud.demo import DEMO_GRAPH_FIELDS
    from libfraud.export import BundleError, read_manifest
    from libfraud.models.gbdt import GbdtParams
    from libfraud.train import SamplerSettings, load_trained, train
    from libfraud.train_gnn import GnnParams

    out = ROOT / "build" / "bench" / "scaling" / f"n{cfg['train_n']}-t{TREES}x{DEPTH}-e{cfg['gnn_epochs']}"
    bundle = out / "bundle"
    if (bundle / "manifest.json").is_file() and not rebuild:
        try:
            m = read_manifest(bundle)
            # Kept only when built by this libfraud with node tables (the flat predictor serves it).
            if (m["tools"].get("libfraud") == libfraud.__version__ and m["model"]["n_trees"] == TREES
                    and m["model"].get("node_tables")):
                log(f"reusing bundle {bundle}")
                return bundle
        except BundleError:
            pass
    log(f"building the bundle: {cfg['train_n']} generated transactions, GNN {cfg['gnn_epochs']} epochs, "
        f"{TREES} trees of depth {DEPTH}, payments + label-aware features")
    out.mkdir(parents=True, exist_ok=True)
    df = load_transactions(write_transactions(out / "transactions.parquet", cfg["train_n"], seed=0))
    schema, spec = load_preset("payments", df.columns)
    spec = FeatureSpec(spec.features + tuple(LABEL_FEATURES), max_scan=spec.max_scan).validate(schema)
    result = train(df, schema=schema, spec=spec, params=GbdtParams(n_estimators=20, seed=0),
                   sampler=SamplerSettings(graph_fields=DEMO_GRAPH_FIELDS),
                   gnn_params=GnnParams(seed=0, epochs=cfg["gnn_epochs"]))
    model_dir = out / "model"
    result.save(model_dir)
    # Exactly TREES trees (training stops early on this data): a latency model, fitted on the
    # held-out stacked rows with fixed rounds and no early stopping, then compiled as trained.
    model, _info, holdout = load_trained(model_dir)
    y = np.load(model_dir / "holdout_y.npy")
    names = list(model.feature_names)
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": DEPTH,
                         "learning_rate": 0.05, "min_child_weight": 0.0, "subsample": 0.8, "seed": 0,
                         "nthread": os.cpu_count() or 1},
                        xgb.DMatrix(holdout, label=y, missing=np.nan, feature_names=names), num_boost_round=TREES)
    booster.feature_names = names
    dataclasses.replace(model, booster=booster, n_trees=TREES, best_iteration=TREES - 1).save(model_dir / "model.ubj")
    compile_model_dir(model_dir, bundle, jobs=os.cpu_count() or 1, track=False)
    return bundle


def features_bundle(cfg: dict, rebuild: bool) -> Path:
    """A trees-only bundle (10 trees) with the same schema and feature spec as scaling_bundle's:
    fraud_engine_features on it is the feature plan alone (on a GNN bundle it also samples and
    runs the GNN)."""
    import libfraud
    from libfraud.compile import compile_model_dir
    from libfraud.data import load_transactions
    from libfraud.data.declared import FeatureSpec, load_preset
    from libfraud.export import BundleError, read_manifest
    from libfraud.models.gbdt import GbdtParams
    from libfraud.train import train

    out = ROOT / "build" / "bench" / "scaling" / f"n{cfg['train_n']}-features"
    bundle = out / "bundle"
    if (bundle / "manifest.json").is_file() and not rebuild:
        try:
            if read_manifest(bundle)["tools"].get("libfraud") == libfraud.__version__:
                return bundle
        except BundleError:
            pass
    src = ROOT / "build" / "bench" / "scaling" / f"n{cfg['train_n']}-t{TREES}x{DEPTH}-e{cfg['gnn_epochs']}"
    df = load_transactions(src / "transactions.parquet")
    schema, spec = load_preset("payments", df.columns)
    spec = FeatureSpec(spec.features + tuple(LABEL_FEATURES), max_scan=spec.max_scan).validate(schema)
    result = train(df, schema=schema, spec=spec, params=GbdtParams(n_estimators=10, seed=0))
    result.save(out / "model")
    compile_model_dir(out / "model", bundle, jobs=os.cpu_count() or 1, track=False)
    return bundle


# --------------------------------------------------------------------------------- the traffic

def synthetic_records(n: int, seed: int, hot_share: float = 0.0) -> np.ndarray:
    """n fraud_txn records over 30 days in time order. Each card, device, merchant and IP has a
    log-normal activity weight (cards and devices: most with a handful of events, the busiest
    ~40x the mean; merchants heavier-tailed: a few with 10^4-10^5 events); a fifth of devices and a
    third of IPs absent; with hot_share, that share of events on one IP (HOT_IP)."""
    from libfraud.data.schema import TXN_DTYPE

    rng = np.random.default_rng(seed)
    rec = np.empty(n, dtype=TXN_DTYPE)
    rec["txn_id"] = np.arange(1, n + 1, dtype=np.int64)
    span_ms = 30 * DAY_MS
    rec["timestamp_ms"] = 1_735_689_600_000 + np.sort(rng.integers(0, span_ms, n))
    rec["amount"] = np.round(rng.lognormal(3.5, 1.2, n), 2)

    def draw(count: int, sigma: float) -> np.ndarray:
        cum = np.cumsum(rng.lognormal(0.0, sigma, count))
        return np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1]), count - 1).astype(np.int64)

    ids = np.stack([draw(max(100, n // 20), 0.8),       # card: ~20 events each on average
                    draw(max(100, n // 25), 0.8),       # device
                    draw(max(20, n // 2_000), 2.0),     # merchant
                    draw(max(100, n // 15), 1.0)], axis=1)  # ip
    ids[rng.random(n) < 0.2, 1] = -1
    ids[rng.random(n) < 0.33, 3] = -1
    if hot_share > 0:
        ids[rng.random(n) < hot_share, 3] = HOT_IP
    rec["entity_id"] = ids
    rec["country"] = rng.choice(np.array([840, 826, 276, 250, 380, 724, 124, 36, 392, 76], np.int32), n)
    rec["mcc"] = rng.choice(np.arange(5000, 5050, dtype=np.int32), n)
    return rec


# --------------------------------------------------------------------------------- the harness

def pct(ns: np.ndarray, q: float) -> float:
    s = np.sort(ns)
    return float(s[min(len(s) - 1, max(0, int(np.ceil(q / 100.0 * len(s))) - 1))]) / 1000.0


def stats_us(per_repeat: np.ndarray) -> dict:
    """Median over repeats of each repeat's nearest-rank percentiles, and the max of all calls."""
    qs = {"p50": 50.0, "p99": 99.0, "p99.9": 99.9, "p99.99": 99.99}
    out = {k: float(np.median([pct(r, q) for r in per_repeat])) for k, q in qs.items()}
    out["max"] = float(per_repeat.max()) / 1000.0
    out["calls"] = int(per_repeat.size)
    return out


class Harness:
    def __init__(self, work: Path, cfg: dict):
        from report import compile_c
        self.work, self.cfg = work, cfg
        self.bins = compile_c(work)

    def write(self, name: str, records: np.ndarray) -> Path:
        path = self.work / f"{name}.bin"
        records.tofile(path)
        return path

    def latency(self, bundle: Path, txns: Path, n_hist: int, op: str) -> np.ndarray:
        """ns per timed call, [repeats, live]."""
        from report import run_json
        c = self.cfg
        ns_file = self.work / "ns.i64"
        run_json([self.bins["e2e"], "latency", bundle, "-", txns, n_hist, c["live"] + c["warmup"], c["warmup"],
                  c["repeats"], op, ns_file])
        return np.fromfile(ns_file, dtype=np.int64).reshape(c["repeats"], -1)

    def throughput(self, bundle: Path, txns: Path, n_hist: int, n_live: int, batch: int) -> float:
        from report import run_json
        r = run_json([self.bins["e2e"], "throughput", bundle, "-", txns, n_hist, n_live, batch, 1,
                      self.cfg["repeats"], "score_and_ingest"])
        return float(np.median(r["txn_per_s"]))


def section_e2e(h: Harness, bundle: Path, cfg: dict) -> list[dict]:
    rows = []
    for size in cfg["sizes"]:
        rec = synthetic_records(size + cfg["live"] + cfg["warmup"], seed=1)
        path = h.write(f"e2e-{size}", rec)
        for op, b, name in (("score_and_ingest", bundle, "score_and_ingest"),
                            ("features", bundle, "features + sample + GNN"),
                            ("features", h.features_bundle, "features")):
            log(f"e2e: {name}, store of {size:,} events")
            t0 = time.perf_counter()
            ns = h.latency(b, path, size, op)
            rows.append({"store_events": size, "op": name, **stats_us(ns),
                         "seconds": round(time.perf_counter() - t0, 1)})
        path.unlink()
    return rows


def section_hot(h: Harness, bundle: Path, cfg: dict) -> list[dict]:
    size = cfg["hot_size"]
    n = size + cfg["live"] + cfg["warmup"]
    rec = synthetic_records(n, seed=2, hot_share=1 / 3)
    live = rec[size + cfg["warmup"]:]
    hot = live["entity_id"][:, 3] == HOT_IP
    hot_events = int((rec["entity_id"][:size, 3] == HOT_IP).sum())
    path = h.write("hot", rec)
    rows = []
    for op, b in (("features", h.features_bundle), ("score_and_ingest", bundle)):
        log(f"hot entity: {op}, store of {size:,} events, hot IP with {hot_events:,}")
        ns = h.latency(b, path, size, op)
        for name, mask in (("hot IP", hot), ("other events", ~hot)):
            rows.append({"op": op, "events": name, "hot_entity_events": hot_events, **stats_us(ns[:, mask])})
    path.unlink()
    for op in ("features", "score_and_ingest"):
        a, b = (r for r in rows if r["op"] == op)
        a["x_other_p50"] = a["p50"] / b["p50"]
    return rows


def section_batch(h: Harness, bundle: Path, cfg: dict) -> list[dict]:
    size = cfg["sizes"][0]
    rec = synthetic_records(size + cfg["batch_live"], seed=3)
    path = h.write("batch", rec)
    rows = []
    for b in cfg["batches"]:
        log(f"batch: score_and_ingest at batch {b}, store of {size:,} events")
        rows.append({"store_events": size, "batch": b, "events_per_s": h.throughput(bundle, path, size,
                                                                                   cfg["batch_live"], b)})
    path.unlink()
    return rows


def section_script(script: str, quick: bool) -> dict:
    """A harness with its own protocol and table (bench/<script>), its JSON and markdown kept."""
    path = HERE / script
    if not path.is_file():
        return {"skipped": f"bench/{script} is not in this checkout"}
    cmd = [sys.executable, str(path)] + (["--quick"] if quick else [])
    log(f"{script}: {' '.join(cmd[1:])}")
    p = subprocess.run(cmd, capture_output=True, text=True)
    return {"command": " ".join(["python", f"bench/{script}"] + (["--quick"] if quick else [])),
            "returncode": p.returncode, "stdout": p.stdout[-20000:], "stderr": p.stderr[-4000:]}


# ------------------------------------------------------------------------------------- output

def _table(rows: list[dict], cols: list[tuple[str, str]]) -> list[str]:
    def f(v):
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 1e4 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)
    out = ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(f(r.get(k, "")) for _, k in cols) + " |" for r in rows]
    return out


def markdown(r: dict) -> str:
    lines = [f"# Scaling ({r['mode']}), {r['date_utc']}", "",
             f"Model: GNN ({r['model']['gnn_backend']}) + {r['model']['n_trees']} trees of depth {DEPTH}, "
             f"{r['model']['num_features']} inputs ({len(LABEL_FEATURES)} label-aware features); one thread. "
             f"Load average before/after: {r['loadavg_before']} / {r['loadavg_after']}.", ""]
    lat = [("store events", "store_events"), ("call", "op"), ("p50 us", "p50"), ("p99 us", "p99"),
           ("p99.9 us", "p99.9"), ("p99.99 us", "p99.99"), ("max us", "max"), ("calls", "calls")]
    if "e2e" in r:
        lines += ["## End to end by store size", ""] + _table(r["e2e"], lat) + [""]
    if "hot" in r:
        lines += ["## A hot entity (one IP on a third of the events)", ""]
        lines += _table(r["hot"], [("call", "op"), ("events", "events"), ("hot IP's events", "hot_entity_events"),
                                   ("p50 us", "p50"), ("p99 us", "p99"), ("p99.99 us", "p99.99"),
                                   ("max us", "max"), ("x other p50", "x_other_p50")]) + [""]
    if "batch" in r:
        lines += ["## Batches (score_and_ingest, one thread)", ""]
        lines += _table(r["batch"], [("store events", "store_events"), ("batch", "batch"),
                                     ("events/s", "events_per_s")]) + [""]
    for name in ("store", "trees"):
        if name in r:
            s = r[name]
            lines += [f"## {name} (`{s.get('command', '')}`)", "", s.get("stdout", s.get("skipped", "")).strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=sorted(MODES), default="full")
    ap.add_argument("--only", default="e2e,hot,batch,store,trees",
                    help="comma-separated sections: e2e, hot, batch, store, trees")
    ap.add_argument("--rebuild", action="store_true", help="train and compile the model again")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    _reexec_pinned(argv)
    sections = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(sections) - {"e2e", "hot", "batch", "store", "trees"}
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}")
    cfg = dict(MODES[a.mode])

    import torch
    from libfraud.export import read_manifest
    torch.set_num_threads(1)
    result: dict = {"benchmark": "bench.scaling", "mode": a.mode, "config": cfg,
                    "command": "python -m bench.scaling " + " ".join(argv),
                    "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    t0 = time.perf_counter()
    if {"e2e", "hot", "batch"} & set(sections):
        bundle = scaling_bundle(cfg, a.rebuild)
        m = read_manifest(bundle)
        result["model"] = {"bundle": str(bundle), "n_trees": m["model"]["n_trees"],
                           "num_features": len(m["features"]["order"]),
                           "gnn_backend": m["gnn"]["default_backend"]}
        with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
            h = Harness(Path(tmp), cfg)
            h.features_bundle = features_bundle(cfg, a.rebuild)
            for name, fn in (("e2e", section_e2e), ("hot", section_hot), ("batch", section_batch)):
                if name in sections:
                    result[name] = fn(h, bundle, cfg)
    for name, script in (("store", "store_growth.py"), ("trees", "trees_scaling.py")):
        if name in sections:
            result[name] = section_script(script, a.mode == "quick")
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result.setdefault("model", {"gnn_backend": "-", "n_trees": TREES, "num_features": "-"})
    a.out_dir.mkdir(parents=True, exist_ok=True)
    stem = a.out_dir / f"{result['date_utc'][:10]}-scaling{'-quick' if a.mode == 'quick' else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    stem.with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
