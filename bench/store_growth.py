"""Store growth stalls: the time of EVERY ingest call as the store grows to 1M / 3M / 10M events
with a hot entity growing to 1M events, the restore time of each size, and memory per edge.

    python bench/store_growth.py                         # 1M, 3M, 10M events (about 4 min)
    python bench/store_growth.py --quick                 # 20k and 100k: a smoke test (seconds)
    python bench/store_growth.py --sizes 1000000 --op score_and_ingest
    python bench/store_growth.py --libdir /tmp/old/lib   # another build of libfraud.so (before/after)

For each size, bench/store_growth.c (compiled here against the installed library, or --libdir)
opens an engine on a small trees-only payments bundle with a state directory and no capacity hint,
sends the events one per call (fraud_engine_ingest, or --op score_and_ingest) and times each call
alone; one merchant takes min(1/2, 1M / size) of the events, so at 3M and 10M it reaches 1M events.
After 90% of the events one snapshot is written, so the restore (the engine freed, then opened again
on the state directory) reads the snapshot and replays the last 10% from the log. Reports max,
p99.99, p99, p50 per call, the calls over 1 ms, the same of each call's thread CPU time (a
wall-clock outlier of one 4 ms scheduler tick without the CPU time is another process's timeslice on a
shared machine, not the store's work) and the same for the calls without a page fault (a first touch
of a fresh page has taken up to 0.7 ms of CPU on this VM), the restore time and the store's bytes per edge
(fraud_engine_stats.store_bytes over the events' present entity ids). Writes
bench/results/<date>-store-growth.json (--out) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

import libfraud
from libfraud.data.declared import load_preset
from libfraud.data.generate import generate_transactions
from libfraud.export import build_bundle
from libfraud.features import as_matrix, replay_features

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOT_EVENTS = 1_000_000


def make_bundle(work: Path) -> Path:
    """A small trees-only bundle of the payments preset (50 trees of depth 4): the store's path
    dominates, as intended."""
    df = pd.concat(list(generate_transactions(20_000, seed=5, fraud_rate=0.02)), ignore_index=True)
    schema, spec = load_preset("payments", df.columns)
    features = replay_features(df, schema, spec)
    X = as_matrix(features)
    y = df["label"].to_numpy(dtype=np.float32)
    names = list(features.columns)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "seed": 1, "nthread": 2},
                        xgb.DMatrix(X, label=y, feature_names=names), num_boost_round=50)
    return build_bundle(work / "bundle", booster=booster, feature_names=names, schema=schema.to_json(),
                        spec=spec.to_json(), X_holdout=X[-2000:], threshold=0.5,
                        threshold_rule="store growth bench: fixed 0.5", metrics={})


def build_harness(work: Path, libdir: str | None) -> tuple[Path, str]:
    cc = os.environ.get("CC", "cc")
    if libdir is None:
        env = {**os.environ, "PKG_CONFIG_PATH": libfraud.pkgconfig_path}
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "libfraud"], env=env, check=True,
                                capture_output=True, text=True).stdout.strip()
    exe = work / "store_growth"
    subprocess.run([cc, "-std=c11", "-O2", f"-I{HERE}", f"-I{ROOT / 'cpp' / 'include'}", str(HERE / "store_growth.c"),
                    "-o", str(exe), f"-L{libdir}", "-lfraud", f"-Wl,-rpath,{libdir}"], check=True)
    return exe, libdir


def run_size(exe: Path, bundle: Path, work: Path, n: int, op: str) -> dict:
    state = work / f"state-{n}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    hot = min(0.5, HOT_EVENTS / n)
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456"}
    run = subprocess.run([str(exe), str(bundle), str(state), str(n), f"{hot:.6f}", op, str(int(0.9 * n))],
                         capture_output=True, text=True, env=env)
    shutil.rmtree(state, ignore_errors=True)
    if run.returncode != 0:
        raise RuntimeError(f"store_growth {n}: {run.stderr.strip()}")
    r = json.loads(run.stdout)
    r["hot_share"] = hot
    r["hot_events"] = int(hot * n)
    r["bytes_per_edge"] = r["store_bytes"] / r["edges"]
    return r


def table(rows: list[dict]) -> str:
    """The markdown table of the README (a row of an older harness without fault counts shows '-')."""
    out = ["| events | hot entity | max ms | p99.99 us | p99 us | p50 us | calls > 1 ms | CPU max ms | CPU p99.99 us "
           "| CPU > 1 ms | of them without a page fault | CPU max without a fault ms | restore s | bytes/edge |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['events']:,} | {r['hot_events']:,} | {r['max_us'] / 1000:.2f} | {r['p9999_us']:.0f} | "
                   f"{r['p99_us']:.1f} | {r['p50_us']:.2f} | {r['calls_over_1ms']} | {r['cpu_max_us'] / 1000:.2f} | "
                   f"{r['cpu_p9999_us']:.0f} | {r['cpu_calls_over_1ms']} | {r.get('cpu_calls_over_1ms_without_fault', '-')} | "
                   f"{format(r['cpu_max_without_fault_us'] / 1000, '.2f') if 'cpu_max_without_fault_us' in r else '-'} | "
                   f"{r['restore_s']:.2f} | "
                   f"{r['bytes_per_edge']:.1f} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1_000_000, 3_000_000, 10_000_000],
                   help="comma-separated event counts")
    p.add_argument("--quick", action="store_true", help="20k and 100k events: a smoke test")
    p.add_argument("--op", choices=("ingest", "score_and_ingest"), default="ingest")
    p.add_argument("--libdir", help="directory of the libfraud.so to measure (default: the installed package's)")
    p.add_argument("--out", type=Path, help="JSON result path (default bench/results/<date>-store-growth.json)")
    a = p.parse_args()
    sizes = [20_000, 100_000] if a.quick else a.sizes
    rows = []
    with tempfile.TemporaryDirectory(prefix="libfraud-growth-") as tmp:
        work = Path(tmp)
        bundle = make_bundle(work)
        exe, libdir = build_harness(work, a.libdir)
        for n in sizes:
            r = run_size(exe, bundle, work, n, a.op)
            print(f"{n:,} events: max {r['max_us'] / 1000:.2f} ms, p99.99 {r['p9999_us']:.0f} us, "
                  f"restore {r['restore_s']:.2f} s", file=sys.stderr)
            rows.append(r)
    result = {"sizes": rows, "op": a.op, "libdir": libdir,
              "machine": {"cpu": _cpu(), "logical_cpus": os.cpu_count(), "python": platform.python_version()},
              "command": "python bench/store_growth.py " + " ".join(sys.argv[1:])}
    out = a.out or HERE / "results" / f"{dt.date.today().isoformat()}-store-growth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    return 0


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
