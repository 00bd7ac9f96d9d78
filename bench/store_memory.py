"""Memory of the temporal store: bytes per stored transaction and per transaction-entity edge.

    python bench/store_memory.py                    # 1M and 10M synthetic transactions
    python bench/store_memory.py --sizes 1000000    # just 1M

For each size: generate the transactions (libfraud.data.generate_transactions) into one set of
event arrays (libfraud.events), then ingest them into an unbounded _core.Store of the payments
preset (its schema, and its features: which fields the histories keep) in 100k batches, and report the store's own
accounting (approx_bytes: deque blocks, hash-table slot arrays, history allocations, malloc
headers) and the process RSS delta over the ingest, per transaction and per edge (a present entity
id of a transaction; device and IP may be absent). Target: <= 64 bytes per edge. Writes bench/results/<date>-store-memory.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from libfraud.data import generate_transactions
from libfraud.data.declared import load_events, load_preset
from libfraud.events import EventArrays
from libfraud.features import make_store

TARGET_BYTES_PER_EDGE = 64


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def events_of(n: int, schema) -> EventArrays:
    """n generated transactions as one set of event arrays (chunk by chunk: bounded pandas memory)."""
    parts = [load_events(df, schema, labels=False)[0]
             for df in generate_transactions(n, seed=0, chunk_size=500_000)]
    return EventArrays.make(*(np.concatenate(cols) for cols in zip(*(p.args() for p in parts))))


def measure(n: int) -> dict:
    schema, spec = load_preset("payments")
    events = events_of(n, schema)
    gc.collect()
    edges = int((events.entity_id >= 0).sum())
    rss0 = rss_bytes()
    store = make_store(schema, spec)
    t0 = time.perf_counter()
    for i in range(0, n, 100_000):
        store.ingest(*events.slice(i, i + 100_000).args())
    ingest_s = time.perf_counter() - t0
    rss1 = rss_bytes()
    approx = store.approx_bytes
    breakdown = dict(store.memory_breakdown())
    out = {
        "transactions": n,
        "edges": edges,
        "entities": {name: store.num_entities(name) for name in store.entity_types},
        "approx_bytes": approx,
        "rss_delta_bytes": rss1 - rss0,
        "bytes_per_txn": approx / n,
        "bytes_per_edge": approx / edges,
        "rss_bytes_per_edge": (rss1 - rss0) / edges,
        "breakdown_bytes_per_edge": {k: v / edges for k, v in breakdown.items()},
        "ingest_s": ingest_s,
        "meets_target": approx / edges <= TARGET_BYTES_PER_EDGE,
    }
    del store, events
    gc.collect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/<date>-store-memory.json)")
    args = ap.parse_args()
    results = []
    for n in args.sizes:
        r = measure(n)
        results.append(r)
        print(f"{n:>11,} txns  {r['edges']:>11,} edges  store {r['approx_bytes'] / 2**20:8.1f} MiB  "
              f"{r['bytes_per_txn']:6.1f} B/txn  {r['bytes_per_edge']:5.1f} B/edge "
              f"(RSS {r['rss_bytes_per_edge']:5.1f})  ingest {r['ingest_s']:.1f} s")
        for k, v in sorted(r["breakdown_bytes_per_edge"].items(), key=lambda kv: -kv[1]):
            print(f"    {k:<14} {v:6.1f} B/edge")
    out = Path(args.out) if args.out else (
        Path(__file__).parent / "results" / f"{dt.date.today().isoformat()}-store-memory.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "target_bytes_per_edge": TARGET_BYTES_PER_EDGE,
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
