#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (kept out of git): make_seeds.py OUT_DIR -> OUT_DIR/<target>/.

The seeds are small valid inputs in each target's format (see the header comment of each
fuzz_*.cpp), so libFuzzer starts past the parsers' first checks."""
import hashlib
import json
import os
import struct
import sys

ABC_SHA = hashlib.sha256(b"abc").hexdigest()  # fuzz_manifest's bundle: trees/model.so = "abc"
TXN = struct.Struct("<qqd4qii")  # fraud_txn, 64 bytes
assert TXN.size == 64


def manifests():
    base = {
        "format": "libfraud-bundle", "format_version": 1,
        "features": {"config": {"windows_ms": [3600000, 86400000], "distinct_window_ms": 86400000,
                                "max_scan": 16}, "order": ["amount"]},
        "model": {"artifact": "trees"}, "threshold": 0.5,
        "artifacts": [{"name": "trees", "path": "trees/model.so", "target": "tl2cgen-c-shared",
                       "sha256": ABC_SHA, "size": 3}],
    }
    yield "tree", base
    gnn = json.loads(json.dumps(base))
    gnn["artifacts"].append({"name": "gnn", "path": "gnn/model.pt", "target": "torchscript",
                             "sha256": ABC_SHA, "size": 3})
    gnn["gnn"] = {"sampler": {"fanout": 10, "strategy": "most_recent", "seed": 0},
                  "embedding_dim": 2, "output_features": ["gnn_logit", "gnn_emb_0", "gnn_emb_1"],
                  "default_backend": "torchscript",
                  "backends": [{"kind": "torchscript", "artifact": "gnn", "cpu_flags": ["avx2"]}]}
    yield "gnn", gnn
    bad = json.loads(json.dumps(base))
    bad["artifacts"][0].update(path="empty", size=0)
    yield "checksum", bad
    bad = json.loads(json.dumps(base))
    bad["artifacts"][0]["path"] = "trees/../../etc/passwd"
    yield "escape", bad


def txn(i, ts, card=0, device=-1, merchant=0, ip=-1, amount=10.0, country=250, mcc=5411):
    return TXN.pack(i, ts, amount, card, device, merchant, ip, country, mcc)


def header(flags, windows=(3600000, 86400000, 604800000), distinct=86400000, max_scan=16):
    return struct.pack("<BBHI3qq", flags, len(windows) - 1, 0, max_scan, *windows, distinct)


def transactions():
    t0 = 1_700_000_000_000
    batch = b"".join(txn(i, t0 + 60000 * i, card=i % 3, device=i % 2, merchant=i % 4) for i in range(8))
    yield "valid", header(0) + batch
    yield "valid_ingest", header(4) + batch
    yield "clamped_sorted", header(1 | 2 | 4 | 8) + batch
    yield "custom_config", header(16 | 4, windows=(1000, 60000, 120000), distinct=1, max_scan=1) + batch
    yield "retention", header(32 | 64 | 4, windows=(1000, 60000, 120000)) + batch
    yield "nan_amount", header(4) + txn(1, t0, amount=float("nan"))
    yield "out_of_order", header(4) + txn(1, t0) + txn(2, t0 - 1)
    yield "duplicate", header(4) + txn(1, t0) + txn(1, t0)
    yield "extreme_time", header(4) + txn(1, -2**63) + txn(2, 2**63 - 1)


def snapshots():
    """Snapshot and log in the layouts of cpp/src/store/snapshot.h and state_log.h."""
    t0 = 1_700_000_000_000
    rows = [(txn(i, t0 + i, card=i % 2, merchant=1), (0, i // 2, i, 0), 0b0101) for i in range(4)]
    payload = struct.pack("<qIIqQQQQ", 0, 0, 0, t0 + 3, 0, len(rows), 0, len(rows))
    for record, degrees, mask in rows:
        payload += record + struct.pack("<4IB3x", *degrees, mask)
    snap = b"LFRDSNAP" + struct.pack("<IIQ", 1, 56, len(payload)) + hashlib.sha256(payload).digest() + payload
    head = b"LFRDSLOG" + struct.pack("<IIQ", 1, 56, len(rows))
    log = head + hashlib.sha256(head).digest()
    recs = [txn(10 + i, t0 + 10 + i, card=i % 2, merchant=2) for i in range(2)]
    body = b"".join(recs)
    n_seq = struct.pack("<IQ", len(recs), len(rows))
    log += struct.pack("<I", 0x4345524C) + n_seq + hashlib.sha256(n_seq + body).digest() + body
    def inp(flags, s, l):
        return bytes([flags]) + struct.pack("<I", len(s)) + s + l
    yield "snapshot_and_log", inp(1 | 2 | 4, snap, log)
    yield "snapshot_only", inp(1 | 4, snap, b"")
    yield "log_only", inp(2 | 4, b"", log)
    yield "torn_tail", inp(1 | 2 | 4, snap, log + log[56:90])
    yield "raw_checksums", inp(1 | 2, snap, log)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds"
    targets = {"fuzz_manifest": ((n, json.dumps(m, indent=1).encode()) for n, m in manifests()),
               "fuzz_transactions": transactions(), "fuzz_snapshot": snapshots()}
    for target, seeds in targets.items():
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in seeds:
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)
    print(f"seeds written under {out}/")


if __name__ == "__main__":
    main()
