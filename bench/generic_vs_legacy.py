"""The generic core (declared schema, feature plan) against the fixed-layout core it replaced, side
by side in one run, on the payments preset, through the same C program (bench/e2e_bench.c, which
speaks fraud_txn: the preset's record in both libraries).

    python -m bench.generic_vs_legacy [--n 200000] [--live 20000] [--repeats 5] [--legacy REV]

Builds libfraud.so at REV (default: the last commit before the generic core) in a git worktree,
trains a tree model with the current package, writes the bundle in both formats (version 2 as the
compiler writes it; version 1 by rewriting the manifest: the same tree library, the legacy
`features.config`), then alternates repeats of each library: every repeat opens a fresh engine,
ingests the same history and times score_and_ingest one transaction per call. Also measured here:
label ingest (fraud_engine_label through the bindings' Engine, one call of 1M labels) and the
store's bytes per event-entity edge. Prints JSON; --out writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LEGACY_REV = "9a12320"

# The legacy fraud_txn layout (64 bytes, no padding), as both libraries' fraud.h define it.
TXN_DTYPE = np.dtype({"names": ["txn_id", "timestamp_ms", "amount", "entity_id", "country", "mcc"],
                      "formats": ["<i8", "<i8", "<f8", ("<i8", (4,)), "<i4", "<i4"],
                      "offsets": [0, 8, 16, 24, 56, 60], "itemsize": 64})


def run(cmd, **kw) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw).stdout


def build_legacy(rev: str, work: Path) -> tuple[Path, Path]:
    """(include dir, lib dir) of libfraud.so built at rev."""
    src = work / "legacy-src"
    if not src.exists():
        run(["git", "-C", ROOT, "worktree", "add", "--detach", src, rev])
    build = work / "legacy-build"
    import pybind11  # noqa: F401  (the legacy CMakeLists finds nlohmann_json through Python)
    run(["cmake", "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DLIBFRAUD_BUILD_TESTS=OFF",
         "-DLIBFRAUD_BUILD_PYTHON=OFF", "-DLIBFRAUD_WITH_TORCH=OFF", f"-DPython_EXECUTABLE={sys.executable}"])
    run(["ninja", "-C", build, "fraud"])
    return src / "cpp" / "include", build


def legacy_manifest(manifest: dict) -> dict:
    """The version-1 manifest of a payments-preset trees bundle: same artifacts, legacy keys."""
    spec = manifest["features"]["spec"]
    windows = sorted({f["window_ms"] for f in spec["features"] if f["kind"] == "window"})
    distinct = sorted({f["window_ms"] for f in spec["features"] if f["kind"] == "distinct"})
    old = dict(manifest)
    old["format_version"] = 1
    old["schema"] = {"columns": [], "entities": ["card", "device", "merchant", "ip"], "timestamp_unit": "ms"}
    old["features"] = {"config": {"windows_ms": windows, "distinct_window_ms": distinct[0],
                                  "max_scan": spec.get("max_scan", 1024)},
                       "order": manifest["features"]["order"]}
    return old


def compile_client(include: Path, libdir: Path, out: Path) -> Path:
    run(["cc", "-std=c99", "-O2", f"-I{include}", f"-I{HERE}", HERE / "e2e_bench.c", "-o", out,
         f"-L{libdir}", "-lfraud", "-lpthread", f"-Wl,-rpath,{libdir}"])
    return out


def p50_of(binary: Path, bundle: Path, txns: Path, n_hist: int, live: int, work: Path) -> float:
    ns = work / "ns.i64"
    r = json.loads(run([binary, "latency", bundle, "-", txns, n_hist, live, 500, 1, "score_and_ingest", ns],
                       env={**os.environ, "GLIBC_TUNABLES":
                            "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456"}))
    return float(r["p50_us"][0])


def label_rate(bundle: Path, records: np.ndarray, n_labels: int) -> float:
    """Labels per second through fraud_engine_label, in calls of 1M (one thread)."""
    from libfraud import _core
    from libfraud.events import EventArrays, LabelArrays
    engine = _core.Engine(str(bundle), len(records))
    n = min(n_labels, len(records))
    ev = EventArrays.make(records["txn_id"][:n], records["timestamp_ms"][:n], records["amount"][:n],
                          records["entity_id"][:n], None,
                          np.stack([records["country"][:n], records["mcc"][:n]], 1).astype(np.int64))
    engine.ingest(*ev.args())
    labels = LabelArrays.make(ev.event_id, (np.arange(n) % 97 == 0).astype(np.int8), ev.time_ms + 86_400_000)
    t = time.perf_counter()
    for start in range(0, n, 1_000_000):
        part = labels.take(np.arange(start, min(n, start + 1_000_000)))
        engine.label(*part.args())
    return n / (time.perf_counter() - t)


def bytes_per_edge(records: np.ndarray) -> float:
    from libfraud.data.declared import load_preset
    from libfraud.events import EventArrays
    from libfraud.features import make_store
    schema, spec = load_preset("payments")
    store = make_store(schema, spec, expected_events=len(records))
    ev = EventArrays.make(records["txn_id"], records["timestamp_ms"], records["amount"], records["entity_id"], None,
                          np.stack([records["country"], records["mcc"]], 1).astype(np.int64))
    store.ingest(*ev.args())
    edges = int((records["entity_id"] >= 0).sum())
    return store.approx_bytes / edges


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="transactions generated")
    ap.add_argument("--live", type=int, default=20_000, help="timed transactions per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--labels", type=int, default=1_000_000)
    ap.add_argument("--legacy", default=LEGACY_REV)
    ap.add_argument("--work", help="work directory (default: a temporary one)")
    ap.add_argument("--out", help="write the JSON here")
    args = ap.parse_args(argv)

    from libfraud.data import generate_transactions
    from libfraud.export import build_bundle
    from libfraud.models.gbdt import GbdtParams
    from libfraud.train import train

    work = Path(args.work or tempfile.mkdtemp(prefix="libfraud-generic-vs-legacy-"))
    work.mkdir(parents=True, exist_ok=True)
    include_old, lib_old = build_legacy(args.legacy, work)
    df = pd.concat(list(generate_transactions(args.n, seed=0)), ignore_index=True)
    r = train(df, params=GbdtParams(n_estimators=200, max_depth=6, seed=0))
    new_bundle = work / "bundle-v2"
    shutil.rmtree(new_bundle, ignore_errors=True)
    build_bundle(new_bundle, booster=r.model.booster, feature_names=list(r.model.feature_names), schema=r.schema,
                 spec=r.spec, X_holdout=r.X_test, threshold=r.threshold, threshold_rule=r.threshold_rule,
                 metrics=r.metrics)
    old_bundle = work / "bundle-v1"
    shutil.rmtree(old_bundle, ignore_errors=True)
    shutil.copytree(new_bundle, old_bundle)
    manifest = json.loads((new_bundle / "manifest.json").read_text())
    (old_bundle / "manifest.json").write_text(json.dumps(legacy_manifest(manifest), indent=2))

    records = np.zeros(len(df), dtype=TXN_DTYPE)
    records["txn_id"], records["timestamp_ms"], records["amount"] = df["txn_id"], df["timestamp_ms"], df["amount"]
    records["entity_id"] = df[["card_id", "device_id", "merchant_id", "ip_id"]].to_numpy()
    records["country"], records["mcc"] = df["country"], df["mcc"]
    txns = work / "txns.bin"
    records.tofile(txns)
    import libfraud
    new_bin = compile_client(Path(libfraud.include_dir), Path(libfraud.library_path).parent, work / "e2e_new")
    old_bin = compile_client(include_old, lib_old, work / "e2e_old")
    n_hist = len(records) - args.live
    p50 = {"legacy": [], "generic": []}
    for _ in range(args.repeats):  # alternated, so drift on a shared machine hits both alike
        p50["legacy"].append(p50_of(old_bin, old_bundle, txns, n_hist, args.live, work))
        p50["generic"].append(p50_of(new_bin, new_bundle, txns, n_hist, args.live, work))
    med = {k: statistics.median(v) for k, v in p50.items()}
    result = {
        "what": "payments preset, trees only (200 trees, depth 6), score_and_ingest one per call, one thread",
        "transactions": len(records), "history": n_hist, "live": args.live, "repeats": args.repeats,
        "p50_us": p50, "median_p50_us": med, "generic_over_legacy": med["generic"] / med["legacy"],
        "label_ingest_per_s": label_rate(new_bundle, records, args.labels),
        "store_bytes_per_edge": bytes_per_edge(records),
        "legacy_rev": args.legacy,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
