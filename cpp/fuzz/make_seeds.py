#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (kept out of git): make_seeds.py OUT_DIR -> OUT_DIR/<target>/.

The seeds are small valid inputs in each target's format (see the header comment of each
fuzz_*.cpp), so libFuzzer starts past the parsers' first checks.

make_seeds.py --convert-v2 IN OUT re-encodes a fuzz_snapshot input of format version 2 (no log ids,
88-byte log header, 48-byte record headers) in version 3: its snapshot names no log (as version 2
behaved: any log at or before its sequence follows it), its log gets an id and record header
checks, and its flags, fields and any bytes that did not parse stay as they were, checksums valid
where they were (how the saved snapshot-* regressions were carried over; regressions/README.md)."""
import hashlib
import json
import os
import struct
import sys

ABC_SHA = hashlib.sha256(b"abc").hexdigest()  # fuzz_manifest's bundle: trees/model.so = "abc"
TXN = struct.Struct("<qqd4qii")  # fraud_txn, 64 bytes (fuzz_transactions' records)
assert TXN.size == 64
INT64_MAX = 2**63 - 1

# ---- the layouts the snapshot target restores into (fuzz_snapshot.cpp: layout_for)


class Layout:
    def __init__(self, entities, required, numeric, categorical, history, amount=True):
        self.E, self.N, self.C = len(entities), len(numeric), len(categorical)
        key = "amount;" if amount else "no-amount;"
        key += "".join(f"e:{e}{'!' if r else '?'};" for e, r in zip(entities, required))
        key += "".join(f"n:{n};" for n in numeric) + "".join(f"c:{c};" for c in categorical)
        # StoreLayout::key; "x": per-block extremes kept (the default). Keys without it (the
        # seeds' until format version 3) are what the store's key was before extremes were keyed.
        self.legacy_key = (key + "h:" + "".join(f"{h}," for h in history)).encode()
        self.key = self.legacy_key + b"x"


PAYMENTS = Layout(["card", "device", "merchant", "ip"], [True, False, True, False], [], ["country", "mcc"], [-1])
TWO = Layout(["customer", "terminal"], [True, False], ["risk"], ["channel"], [-1, 0])  # flag bit 3


def event(layout, i, ts, amount=10.0, ents=None, nums=None, cats=None):
    """A log record's event (state_log.h): id, time, amount, entities, numeric, categorical."""
    ents = ents if ents is not None else [0] + [-1] * (layout.E - 1)
    if layout is PAYMENTS and ents[2] < 0:
        ents[2] = 0  # merchant is required
    nums = nums if nums is not None else [float("nan")] * layout.N
    cats = cats if cats is not None else [-1] * layout.C
    return (struct.pack("<qqd", i, ts, amount) + struct.pack(f"<{layout.E}q", *ents) +
            struct.pack(f"<{layout.N}d", *nums) + struct.pack(f"<{layout.C}q", *cats))


def snapshot_row(layout, ev, degrees, mask, label=-1, label_time=INT64_MAX):
    """A snapshot row (snapshot.h) from a log-format event: label time after the amount, then the
    degrees, the history mask and the label."""
    head, rest = ev[:24], ev[24:]
    return (head + struct.pack("<q", label_time) + rest + struct.pack(f"<{layout.E}I", *degrees) +
            struct.pack("<Ii", mask, label))


NO_LOG = bytes(16)  # a snapshot written outside a state directory names no log
LOG_A = bytes(range(1, 17))  # the ids of the seeds' logs (random in a real state directory)
LOG_B = bytes(range(17, 33))


def snapshot_payload(fixed, key, rest, log_id):
    """A version-3 snapshot's payload: the fixed part, the log it names, the layout key, the rest."""
    return fixed + log_id + struct.pack("<Q", len(key)) + key + rest


def snapshot_file(payload):
    return b"LFRDSNAP" + struct.pack("<IIQ", 3, 56, len(payload)) + hashlib.sha256(payload).digest() + payload


def snapshot(layout, rows, watermark, appended_total=None, evicted=0, retention=0, cap=0, dropped=(), log_id=LOG_A):
    appended_total = len(rows) + evicted if appended_total is None else appended_total
    fixed = struct.pack("<qIIqQQQQ", retention, cap, 0, watermark, evicted, appended_total, len(dropped), len(rows))
    rest = b"".join(struct.pack("<IIqQ", etype, 0, eid, count) for etype, eid, count in dropped) + b"".join(rows)
    return snapshot_file(snapshot_payload(fixed, layout.key, rest, log_id))


def log_header_with(layout_digest, base_seq, log_id):
    head = b"LFRDSLOG" + struct.pack("<IIQ", 3, 104, base_seq) + log_id + layout_digest
    return head + hashlib.sha256(head).digest()


def log_header(layout, base_seq, log_id=LOG_A):
    return log_header_with(hashlib.sha256(layout.key).digest(), base_seq, log_id)


def record(magic, n, first_seq, body, valid=True):
    """A version-3 log record: its 16 fixed bytes, their check, the digest of them and the body."""
    fixed = struct.pack("<IIQ", magic, n, first_seq)
    digest = hashlib.sha256(fixed + body).digest()
    if not valid:  # keep a damaged record damaged
        digest = bytes([digest[0] ^ 1]) + digest[1:]
    return fixed + hashlib.sha256(fixed).digest()[:8] + digest + body


def event_record(first_seq, events):
    return record(0x4345524C, len(events), first_seq, b"".join(events))


def label_record(first_seq, labels):
    body = b"".join(struct.pack("<qqii", eid, at, label, 0) for eid, at, label in labels)
    return record(0x42414C4C, len(labels), first_seq, body)


def snapshot_input(flags, snap, log):
    return bytes([flags]) + struct.pack("<I", len(snap)) + snap + log


# ---- seeds


def payments_schema():
    entity = lambda n, r: {"name": n, "column": n + "_id", "ids": "int", "required": r}
    return {"format": "libfraud-schema", "version": 1, "name": "payments",
            "event_id": {"column": "txn_id", "ids": "int"},
            "time": {"column": "timestamp_ms", "unit": "ms", "timezone": "UTC",
                     "utc_offsets": [[-2**63, 0]]},
            "amount": {"column": "amount"},
            "entities": [entity("card", True), entity("device", False), entity("merchant", True),
                         entity("ip", False)],
            "numeric": [],
            "categorical": [{"name": "country", "column": "country", "codes": "int"},
                            {"name": "mcc", "column": "mcc", "codes": "int"}],
            "label": {"column": "label", "time_column": None, "delay_ms": 0}}


def manifests():
    spec = {"format": "libfraud-features", "version": 1, "max_scan": 16, "features": [
        {"name": "amount", "kind": "amount"},
        {"name": "card_count_1h", "kind": "window", "entity": "card", "agg": "count", "window_ms": 3600000},
        {"name": "card_amount_sum_24h", "kind": "window", "entity": "card", "agg": "sum", "field": "amount",
         "window_ms": 86400000},
        {"name": "card_device_is_new", "kind": "novelty", "entity": "card", "of": {"entity": "device"}},
        {"name": "card_mcc_changed", "kind": "changed", "entity": "card", "of": {"categorical": "mcc"}}]}
    base = {
        "format": "libfraud-bundle", "format_version": 2, "schema": payments_schema(),
        "features": {"spec": spec, "order": [f["name"] for f in spec["features"]]},
        "model": {"artifact": "trees"}, "threshold": 0.5,
        "artifacts": [{"name": "trees", "path": "trees/model.so", "target": "tl2cgen-c-shared",
                       "sha256": ABC_SHA, "size": 3}],
    }
    yield "tree", base
    gnn = json.loads(json.dumps(base))
    gnn["artifacts"].append({"name": "gnn", "path": "gnn/model.pt", "target": "torchscript",
                             "sha256": ABC_SHA, "size": 3})
    gnn["gnn"] = {"sampler": {"fanout": 10, "strategy": "most_recent", "seed": 0, "graph_fields": ["mcc"]},
                  "embedding_dim": 2, "output_features": ["gnn_logit", "gnn_emb_0", "gnn_emb_1"],
                  "default_backend": "torchscript",
                  "backends": [{"kind": "torchscript", "artifact": "gnn", "cpu_flags": ["avx2"]}]}
    gnn["features"]["order"] += gnn["gnn"]["output_features"]
    yield "gnn", gnn
    # A schema of two entity types with numeric and categorical fields, and every kind of feature.
    generic = json.loads(json.dumps(base))
    generic["schema"] = {
        "format": "libfraud-schema", "version": 1, "name": "cards",
        "time": {"column": "t", "utc_offsets": [[-2**63, 0], [1000000000000, 7200]]},
        "amount": {"column": "a"}, "label": None,
        "entities": [{"name": "customer", "required": True}, {"name": "terminal", "required": False}],
        "numeric": [{"name": "risk"}], "categorical": [{"name": "channel"}]}
    w = lambda **kw: dict(kind="window", entity="customer", window_ms=86400000, **kw)
    feats = [
        {"name": "hour", "kind": "calendar", "part": "hour"},
        {"name": "night", "kind": "calendar", "part": "night"},
        {"name": "risk", "kind": "numeric", "field": "risk"},
        {"name": "channel", "kind": "categorical", "field": "channel", "vocabulary": [3, 1]},
        dict(name="c_mean", agg="mean", field="amount", offset_ms=3600000, **w()),
        dict(name="c_std_risk", agg="std", field="risk", **w()),
        dict(name="c_ecom", agg="count", filter={"field": "channel", "in": [1, 2]}, **w()),
        dict(name="c_big", agg="max", field="amount", max_scan=4, filter={"field": "amount", "op": ">", "value": 5.5}, **w()),
        {"name": "t_last", "kind": "time_since_last", "entity": "terminal"},
        {"name": "c_z", "kind": "amount_vs_history", "entity": "customer", "field": "risk", "stat": "zscore",
         "window_ms": 3600000},
        {"name": "c_terminals", "kind": "distinct", "entity": "customer", "of": {"entity": "terminal"},
         "window_ms": 86400000},
        {"name": "c_channels", "kind": "distinct", "entity": "customer", "of": {"categorical": "channel"},
         "window_ms": 86400000},
        {"name": "t_fraud", "kind": "label", "entity": "terminal", "agg": "fraud_rate", "window_ms": 604800000,
         "offset_ms": 604800000}]
    generic["features"] = {"spec": {"format": "libfraud-features", "version": 1, "features": feats},
                           "order": [f["name"] for f in feats]}
    yield "generic", generic
    # Calibrated bundles are format version 3 (export/BUNDLE.md "Versions and compatibility").
    for method, section in (("platt", {"method": "platt", "a": 1.5, "b": -2.0, "fitted_on": "valid"}),
                            ("isotonic", {"method": "isotonic", "x": [0.0, 0.1, 0.5, 1.0],
                                          "y": [0.0, 0.01, 0.2, 0.9]})):
        calibrated = json.loads(json.dumps(base))
        calibrated.update(format_version=3, calibration=section)
        yield "calibrated_" + method, calibrated
    # The two refused mismatches: version 3 without the section, version 2 with it.
    v3 = json.loads(json.dumps(base))
    v3["format_version"] = 3
    yield "version3_uncalibrated", v3
    v2 = json.loads(json.dumps(base))
    v2["calibration"] = {"method": "platt", "a": 1.0, "b": 0.0}
    yield "version2_calibrated", v2
    # A decision section (export/BUNDLE.md "decision"): bands and rules over features and fields.
    decided = json.loads(json.dumps(base))
    decided["decision"] = {"version": 1, "review_from": 0.3, "decline_from": 0.8, "rules": [
        {"code": 1001, "name": "big_and_fast", "when": "amount > 5000 and card_count_1h > 3", "action": "decline"},
        {"code": 1002, "name": "gambling", "when": "mcc in [7995, 7800] or not (country != 250)",
         "action": "review", "mode": "shadow", "description": "draft"},
        {"code": 1003, "name": "odd", "when": "(card_amount_sum_24h >= 1e4 or score < .5) and mcc is not missing",
         "action": "review"}]}
    yield "decision", decided
    generic_decided = json.loads(json.dumps(generic))
    generic_decided["decision"] = {"version": 1, "rules": [
        {"code": 1, "name": "r", "when": "risk > feature.risk and channel == 3 and field.channel not in [1, 2]",
         "action": "decline"}]}
    yield "decision_generic", generic_decided
    bad = json.loads(json.dumps(decided))
    bad["decision"]["rules"][0]["when"] = "amount > 5000 and card_count_1h >> 3"
    yield "decision_parse_error", bad
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
    batch = b"".join(txn(i, t0 + 60000 * i, card=i % 3, device=i % 2, merchant=i % 4, country=i % 3, mcc=i)
                     for i in range(8))
    yield "valid", header(0) + batch
    yield "valid_ingest", header(4) + batch
    yield "clamped_sorted", header(1 | 2 | 4 | 8) + batch
    yield "custom_config", header(16 | 4, windows=(1000, 60000, 120000), distinct=1, max_scan=1) + batch
    yield "retention", header(32 | 64 | 4, windows=(1000, 60000, 120000)) + batch
    yield "nan_amount", header(4) + txn(1, t0, amount=float("nan"))
    yield "zero_amount_missing_codes", header(4) + txn(1, t0, amount=0.0, country=-1, mcc=-1) + txn(2, t0, country=-2)
    yield "out_of_order", header(4) + txn(1, t0) + txn(2, t0 - 1)
    yield "duplicate", header(4) + txn(1, t0) + txn(1, t0)
    yield "extreme_time", header(4) + txn(1, -2**63) + txn(2, 2**63 - 1)
    # Labels are derived from the records (fuzz_transactions.cpp: labels_of): country % 3 is the
    # label, mcc % 7 - 2 ms after the event its time.
    yield "labels", header(4 | 8) + b"".join(txn(i, t0 + i, card=i % 2, country=i % 2, mcc=2 + i % 5) for i in range(8))


def snapshots():
    """Snapshot and log in the layouts of cpp/src/store/snapshot.h and log_format.h (version 3)."""
    t0 = 1_700_000_000_000
    out = []
    for layout, flag, name in ((PAYMENTS, 0, ""), (TWO, 8, "two_")):
        def ev(i, ts, card, other):
            if layout is PAYMENTS:
                return event(layout, i, ts, ents=[card, -1, other, -1], cats=[250, 5411])
            return event(layout, i, ts, ents=[card, other], nums=[0.5 * i], cats=[i % 2])
        evs = [ev(i, t0 + i, i % 2, 1) for i in range(4)]
        # Degrees (earlier events of each entity), history masks; event 1 labelled.
        if layout is PAYMENTS:  # card i % 2, merchant 1
            degrees, mask = (lambda i: [i // 2, 0, i, 0]), 0b0101
        else:  # customer i % 2, terminal 1
            degrees, mask = (lambda i: [i // 2, i]), 0b11
        rows = [snapshot_row(layout, e, degrees(i), mask, label=(1 if i == 1 else -1),
                             label_time=(t0 + 5 if i == 1 else INT64_MAX)) for i, e in enumerate(evs)]
        snap = snapshot(layout, rows, t0 + 3)  # names LOG_A, from sequence 4
        log = log_header(layout, len(rows))
        log += event_record(len(rows), [ev(10 + i, t0 + 10 + i, i % 2, 2) for i in range(2)])
        log += label_record(len(rows) + 2, [(10, t0 + 20, 1), (0, t0 + 20, 0)])
        damaged = bytearray(log)
        damaged[-1] ^= 1  # the last record's last byte: every byte present, its checksum wrong
        out += [
            (name + "snapshot_and_log", snapshot_input(flag | 1 | 2 | 4, snap, log)),
            # A snapshot written outside a state directory: no log, StateLog::open re-takes it.
            (name + "snapshot_only", snapshot_input(flag | 1 | 4, snapshot(layout, rows, t0 + 3, log_id=NO_LOG), b"")),
            (name + "log_only", snapshot_input(flag | 2 | 4, b"", log_header(layout, 0) + event_record(0, evs[:2]))),
            # The first record's intact header and part of its events: a torn tail.
            (name + "torn_tail", snapshot_input(flag | 1 | 2 | 4, snap, log + log[104:174])),
            (name + "raw_checksums", snapshot_input(flag | 1 | 2, snap, log)),
            # The log the snapshot names is missing, or is another one: refused.
            (name + "named_log_missing", snapshot_input(flag | 1 | 4, snap, b"")),
            (name + "other_log", snapshot_input(flag | 1 | 2 | 4, snap, log_header(layout, 4, LOG_B))),
            # A snapshot stopped after its rename: the log it names is still store.log.next.
            (name + "log_still_next", snapshot_input(flag | 1 | 2 | 4 | 32, snap, log)),
            # A damaged last record: refused; quarantined when allowed (bit 4).
            (name + "damaged_last_record", snapshot_input(flag | 1 | 2, snap, bytes(damaged))),
            (name + "damaged_last_record_quarantined", snapshot_input(flag | 1 | 2 | 16, snap, bytes(damaged))),
        ]
        # Entities whose histories dropped events (a per-entity cap): the block alignment counts.
        dropped = snapshot(layout, rows[2:], t0 + 3, evicted=2, cap=2, dropped=[(0, 0, 1), (0, 1, 1)])
        out.append((name + "dropped", snapshot_input(flag | 1 | 2 | 4, dropped, log_header(layout, 4))))
    return out


def leaf(value, cover):
    """A TreeSHAP tables leaf (its output, margin, and its cover)."""
    return ("leaf", value, cover)


def split(feature, threshold, left, right, cover, default_left=1):
    """A split; left and right are node indices within its tree (later nodes: the reader checks)."""
    return ("split", feature, threshold, left, right, cover, default_left)


def shap_tables_file(trees, num_features, base_margin=-1.0, max_depth=None, version=1, magic=b"LFSHAP1\0"):
    """The bundle's explain/shap_tables.bin (export/BUNDLE.md "explanation", written by
    export/shap_tables.py, read by cpp/src/explain/shap_file.cpp): the header, then the arrays."""
    offsets, cover, value, feature, left, right, threshold, default_left = [0], [], [], [], [], [], [], []
    expected, deepest = base_margin, 0
    for nodes in trees:
        base = offsets[-1]
        depth = {0: 0}
        for i, n in enumerate(nodes):
            if n[0] == "leaf":
                feature.append(0), left.append(-1), right.append(-1), threshold.append(float("nan"))
                default_left.append(0), cover.append(n[2]), value.append(n[1])
            else:
                _, f, thr, l, r, c, dl = n
                feature.append(f), left.append(base + l), right.append(base + r), threshold.append(thr)
                default_left.append(dl), cover.append(c), value.append(0.0)
                depth[l] = depth[r] = depth.get(i, 0) + 1
        deepest = max(deepest, max(depth.values()))
        # The tree's cover-weighted mean leaf value (a single leaf: its value).
        if nodes[0][0] == "leaf":
            expected += nodes[0][1]
        elif nodes[0][5] > 0:  # (a broken seed's root may have none)
            expected += sum(n[1] * n[2] for n in nodes if n[0] == "leaf") / nodes[0][5]
        offsets.append(base + len(nodes))
    n = len(cover)
    max_depth = deepest if max_depth is None else max_depth
    return (magic + struct.pack("<II4Qd", version, 0, len(trees), n, num_features, max_depth, expected) +
            struct.pack(f"<{len(offsets)}q", *offsets) + struct.pack(f"<{n}d", *cover) +
            struct.pack(f"<{n}d", *value) + struct.pack(f"<{n}i", *feature) + struct.pack(f"<{n}i", *left) +
            struct.pack(f"<{n}i", *right) + struct.pack(f"<{n}f", *threshold) + bytes(default_left))


def shap_tables():
    """fuzz_shap_tables: valid tables files, then broken ones the reader must refuse (LOAD_ERROR)."""
    stump = [split(0, 0.5, 1, 2, 4.0), leaf(-0.3, 3.0), leaf(0.7, 1.0)]
    # Feature 1 split twice on the leftmost path (TreeSHAP's UNWIND), depth 3; threshold 0 is what
    # the all-zeros row hits exactly.
    depth3 = [split(1, 0.0, 1, 8, 10.0),
              split(1, -2.5, 2, 5, 6.0),
              split(2, 1.0, 3, 4, 2.5, default_left=0), leaf(-0.8, 1.0), leaf(0.1, 1.5),
              split(0, 3.0, 6, 7, 3.5), leaf(0.4, 2.0), leaf(-0.2, 1.5),
              leaf(0.9, 4.0)]
    shallow = [split(2, -1.0, 1, 2, 5.0, default_left=0), leaf(0.05, 2.0), leaf(-0.15, 3.0)]
    deeper = [split(0, 0.25, 1, 2, 8.0), leaf(0.3, 3.0),
              split(3, 100.0, 3, 4, 5.0), leaf(-0.6, 4.0), leaf(1.2, 1.0)]
    nan_right = [split(0, 0.0, 1, 2, 6.0, default_left=0), leaf(-0.5, 2.0),
                 split(1, 7.5, 3, 4, 4.0, default_left=0), leaf(0.25, 3.0), leaf(-1.0, 1.0)]
    out = [
        ("stump", shap_tables_file([stump], 1)),
        ("depth3_repeated_feature", shap_tables_file([depth3], 3)),
        ("two_trees_different_depth", shap_tables_file([shallow, deeper], 4)),
        ("single_leaf", shap_tables_file([[leaf(0.42, 7.0)]], 1)),
        ("leaf_tree_and_stump", shap_tables_file([[leaf(-0.1, 0.0)], stump], 2)),
        ("nan_default_right", shap_tables_file([nan_right], 2)),
        # A leaf no training row reached (cover 0) and max_depth above the deepest node.
        ("zero_cover_leaf", shap_tables_file([[split(0, 1.0, 1, 2, 2.0), leaf(0.3, 2.0), leaf(-0.3, 0.0)]], 1,
                                             max_depth=5)),
    ]
    good = shap_tables_file([stump], 1)
    out += [
        ("bad_truncated", good[:-1]),
        ("bad_truncated_header", good[:40]),
        ("bad_trailing_byte", good + b"\0"),
        ("bad_magic", b"LFSHAP2\0" + good[8:]),
        ("bad_version", shap_tables_file([stump], 1, version=2)),
        ("bad_child_backwards", shap_tables_file([[split(0, 0.5, 1, 2, 4.0), leaf(-0.3, 3.0),
                                                   split(0, 0.1, 1, 0, 1.0)]], 1)),
        ("bad_feature_out_of_range", shap_tables_file([[split(1, 0.5, 1, 2, 4.0), leaf(-0.3, 3.0),
                                                        leaf(0.7, 1.0)]], 1)),
        ("bad_depth_over_max", shap_tables_file([depth3], 3, max_depth=2)),
        ("bad_split_cover_zero", shap_tables_file([[split(0, 0.5, 1, 2, 0.0), leaf(-0.3, 0.0), leaf(0.7, 0.0)]], 1)),
    ]
    return out


# ---- carrying a version-2 fuzz_snapshot input over to version 3


def convert_v2(data):
    flags, split = data[0], struct.unpack_from("<I", data, 1)[0]
    body = data[5:]
    split = min(split, len(body))
    s, l = body[:split], body[split:]
    layout = TWO if flags & 8 else PAYMENTS
    return snapshot_input(flags, convert_snapshot_v2(s, layout), convert_log_v2(l, layout))


def convert_snapshot_v2(s, layout):
    if len(s) < 112 or s[:8] != b"LFRDSNAP":
        return s
    payload = s[56:]
    valid = hashlib.sha256(payload).digest() == s[24:56]
    # Version 2's payload is version 3's without the log id after the fixed part: it names no log.
    rest = payload[56:]
    if rest[:8 + len(layout.legacy_key)] == struct.pack("<Q", len(layout.legacy_key)) + layout.legacy_key:
        rest = struct.pack("<Q", len(layout.key)) + layout.key + rest[8 + len(layout.legacy_key):]  # today's key
    new = payload[:56] + NO_LOG + rest
    out = bytearray(snapshot_file(new))
    if not valid:
        out[24] ^= 1
    return bytes(out)


def convert_log_v2(l, layout):
    if len(l) < 88 or l[:8] != b"LFRDSLOG":
        return l
    base = struct.unpack_from("<Q", l, 16)[0]
    digest = l[24:56]
    if digest == hashlib.sha256(layout.legacy_key).digest():
        digest = hashlib.sha256(layout.key).digest()  # today's key, as for the snapshot
    out = bytearray(log_header_with(digest, base, LOG_A))
    if hashlib.sha256(l[:56]).digest() != l[56:88]:
        out[-1] ^= 1  # the header was damaged: keep it so
    each = 8 * (3 + layout.E + layout.N + layout.C)
    off = 88
    while off + 48 <= len(l):
        magic, n, first = struct.unpack_from("<IIQ", l, off)
        size = n * (24 if magic == 0x42414C4C else each)
        if magic not in (0x4345524C, 0x42414C4C) or n == 0 or off + 48 + size > len(l):
            break
        payload = l[off + 48:off + 48 + size]
        digest = bytearray(hashlib.sha256(l[off + 4:off + 16] + payload).digest())
        if magic == 0x42414C4C:
            digest[0] ^= 0x5A
        out += record(magic, n, first, payload, valid=bytes(digest) == l[off + 16:off + 48])
        off += 48 + size
    return bytes(out) + l[off:]  # a torn or garbage tail, as it was


def schema_specs():
    """fuzz_schema: each manifest's schema and spec (header: both from the input, 12 events)."""
    events = b"".join(struct.pack("<IIHHBBH", 600000 * (i % 7) + 1, 0x9C3A5 * (i + 1), 40 + i, i * 3,
                                  i * 5, i * 40 % 256, i % 5) for i in range(12))
    seen = set()
    for name, m in manifests():
        key = json.dumps([m["schema"], m["features"]["spec"]], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        text = json.dumps(m["schema"]).encode() + b"\0" + json.dumps(m["features"]["spec"]).encode()
        yield name, bytes([3, 12]) + events + text
    yield "payments_preset", bytes([0, 12]) + events


def label_streams():
    """fuzz_labels: appends, labels (some refused) and probes over 1-4 label features."""
    header = bytes([7, 3, 0, 0]) + bytes([0, 3, 0, 0, 1, 95, 2, 0, 4, 10, 0, 0, 5, 40, 7, 0])
    ops = []
    for i in range(40):
        kind = (0, 0, 2, 4, 1, 3, 5)[i % 7]
        ops.append(struct.pack("<BBhII", kind, (i * 13) % 32, (i * 37) % 200 - 20, i * 0x2F1B3, i * 0x51C7D))
    yield "mixed", header + b"".join(ops)
    yield "appends_then_probes", header + b"".join(struct.pack("<BBhII", k, i % 8, 15, i << 5, 0)
                                                   for i, k in enumerate([0] * 10 + [2] * 10 + [4] * 10))


def rule_conditions():
    """fuzz_rules: conditions over its world (features amount, card_count_1h, ratio; fields amount,
    risk, channel (string codes), mcc (integer codes); the score)."""
    conditions = {
        "compare": "amount > 5000 and card_count_1h > 3",
        "every_op": "risk < 1 or risk <= 1 or risk > 1 or risk >= -1.5e-3 or risk == .5 or risk != 2",
        "lists": 'channel in ["web", "pos"] and mcc not in [5967, 7995,] and amount in [1, 2.5]',
        "missing": "risk is missing or not (mcc is not missing) and channel is missing",
        "names": "feature.amount >= field.amount and 0.5 < ratio and score > ratio and channel != channel",
        "nested": "not (((amount > 1 or risk > 2) and not ratio == 0.1) or (mcc == 1 and channel == 'a\\'b'))",
        "strings": 'channel == "Z\xfcrich" or channel == "\\\\" or channel == \'\\\'\'',
        "parse_error": "amount > 5000 and card_count_1h >> 3",
    }
    for name, text in conditions.items():
        yield name, text.encode()


def manifest_shapes():
    """fuzz_manifest_shapes: one hostile value each, small sizes (the fuzzer grows them)."""
    for key in range(43):
        for kind in range(10):
            yield f"k{key}_s{kind}", bytes([key % 4]) + struct.pack("<BBHI", key, kind, 5, 1000 + key)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--convert-v2":
        with open(sys.argv[2], "rb") as f:
            data = f.read()
        with open(sys.argv[3], "wb") as f:
            f.write(convert_v2(data))
        print(f"{sys.argv[2]} -> {sys.argv[3]} (fuzz_snapshot input, format version 3)")
        return
    out = sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds"
    targets = {"fuzz_manifest": ((n, json.dumps(m, indent=1).encode()) for n, m in manifests()),
               "fuzz_transactions": transactions(), "fuzz_snapshot": snapshots(),
               "fuzz_shap_tables": shap_tables(), "fuzz_schema": schema_specs(),
               "fuzz_labels": label_streams(), "fuzz_manifest_shapes": manifest_shapes(),
               "fuzz_rules": rule_conditions()}
    for target, seeds in targets.items():
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in seeds:
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)
    print(f"seeds written under {out}/")


if __name__ == "__main__":
    main()
