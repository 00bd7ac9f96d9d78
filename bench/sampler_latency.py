"""Neighbourhood sampler latency: one target per call, one thread, timed inside C++.

    python bench/sampler_latency.py [--txns 200000] [--targets 20000] [--fanout 10] [--repeats 5]
                                    [--graph-field mcc ...]

Builds a store (the payments preset's schema and features) from `--txns` synthetic transactions
(libfraud.data.generate_transactions), then
times `Sampler.time_sample`: each `sample()` call on one target (batch 1) timed alone with
std::chrono::steady_clock, after an untimed pass over the targets, so no Python is in the figure.
Targets: the last `--targets` transactions of the stream, sampled against the whole store (the
training case; serving samples the same neighbourhoods, see sampler.h). For each strategy, each
repeat reports the p50 and p99 (nearest rank) of its calls; the figures are medians over repeats.
Writes a table to stdout and bench/results/<date>-sampler.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# glibc's malloc trimming otherwise makes latency jump between runs (see FACTS.md, "Measuring").
PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456",
}
if any(os.environ.get(k) != v for k, v in PINNED_ENV.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **PINNED_ENV})

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from libfraud import _core  # noqa: E402
from libfraud.data import generate_transactions  # noqa: E402
from libfraud.data.declared import load_events, load_preset  # noqa: E402
from libfraud.features import make_store  # noqa: E402


def percentile(values: np.ndarray, q: float) -> float:
    """Nearest-rank percentile."""
    s = np.sort(values)
    return float(s[max(0, int(np.ceil(q / 100 * len(s))) - 1)])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txns", type=int, default=200_000)
    ap.add_argument("--targets", type=int, default=20_000)
    ap.add_argument("--fanout", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--graph-field", action="append", default=[],
                    help="a numeric or categorical field appended to the txn features (country, mcc)")
    ap.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    df = pd.concat(list(generate_transactions(args.txns, seed=args.seed)), ignore_index=True)
    schema, spec = load_preset("payments", df.columns)  # the generator's schema; its features
    events, _ = load_events(df, schema, labels=False)
    store = make_store(schema, spec, expected_events=len(events))
    store.ingest(*events.args())
    targets = events.slice(len(events) - min(args.targets, len(events)), len(events))

    rows = []
    for strategy in ("most_recent", "uniform"):
        sampler = _core.Sampler(store, _core.SamplerConfig(fanout=args.fanout, strategy=strategy, seed=1),
                                list(args.graph_field))
        ns = sampler.time_sample(store, *targets.args(), repeats=args.repeats)
        p50 = [percentile(r, 50) / 1000 for r in ns]
        p99 = [percentile(r, 99) / 1000 for r in ns]
        fill = sampler.sample(store, *targets.args())["txn2_mask"].mean()
        rows.append({
            "strategy": strategy,
            "p50_us": float(np.median(p50)),
            "p99_us": float(np.median(p99)),
            "mean_us": float(ns.mean() / 1000),
            "hop2_fill": float(fill),
            "repeats_p50_us": p50,
            "repeats_p99_us": p99,
        })

    print(f"store {len(events)} txns, {len(targets)} targets, fanout {args.fanout}, batch 1, one thread")
    print(f"{'strategy':<12} {'p50 us':>8} {'p99 us':>8} {'mean us':>8} {'hop-2 fill':>10}")
    for r in rows:
        print(f"{r['strategy']:<12} {r['p50_us']:>8.2f} {r['p99_us']:>8.2f} {r['mean_us']:>8.2f} {r['hop2_fill']:>10.2f}")
    print("target: p50 < 5 us (most_recent, fanout 10)")

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "date": dt.date.today().isoformat(),
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                    "allowed_cpus": sorted(os.sched_getaffinity(0)), "python": sys.version.split()[0]},
        "libfraud": _core.__version__,
        "env": PINNED_ENV,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": rows,
    }
    path = args.out / f"{result['date']}-sampler.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
