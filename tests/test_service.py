"""The HTTP service (`libfraud serve`), started for real on a localhost port and driven by a real
HTTP client: scores equal the core's, bad input gets a 4xx naming the field (never a 500, never a
stuck worker), metrics parse as Prometheus text, a hot swap under load drops no request."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
prom_parser = pytest.importorskip("prometheus_client.parser")

from bundles import random_bundle, spec_json  # noqa: E402
from libfraud import Scorer  # noqa: E402
from libfraud.data.declared import Schema, load_events  # noqa: E402
from libfraud.service.events_json import EventDecoder, RequestError  # noqa: E402

TOKEN = "test-admin-token-0123456789"
T0 = 1_700_000_000_000

# A schema unlike the payments preset: other column names, string terminal ids, an optional
# entity, a numeric field and a string-coded categorical.
SCHEMA = {
    "format": "libfraud-schema", "version": 1, "name": "shop",
    "event_id": {"column": "order_ref", "ids": "string"},
    "time": {"column": "ts", "unit": "ms", "timezone": "UTC", "utc_offsets": [[-(2 ** 63), 0]]},
    "amount": {"column": "total"},
    "entities": [{"name": "customer", "column": "cust", "ids": "int", "required": True},
                 {"name": "terminal", "column": "term", "ids": "string", "required": False}],
    "numeric": [{"name": "risk", "column": "risk_score"}],
    "categorical": [{"name": "channel", "column": "chan", "codes": "string"}],
    "label": {"column": "is_fraud", "time_column": None, "delay_ms": 0},
}
FEATURES = [
    {"name": "amount", "kind": "amount"},
    {"name": "risk", "kind": "numeric", "field": "risk"},
    {"name": "cust_count_1h", "kind": "window", "entity": "customer", "agg": "count", "window_ms": 3_600_000},
    {"name": "term_sum_1d", "kind": "window", "entity": "terminal", "agg": "sum", "field": "amount",
     "window_ms": 86_400_000},
    {"name": "cust_fraud_7d", "kind": "label", "entity": "customer", "agg": "fraud_count",
     "window_ms": 7 * 86_400_000},
]


def events_json(n: int, seed: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({"order_ref": f"o-{start + i}", "ts": T0 + (start + i) * 1000,
                    "total": float(np.round(rng.lognormal(3, 1), 2)), "cust": int(rng.integers(0, 20)),
                    "term": None if rng.random() < 0.2 else f"t{int(rng.integers(0, 8))}",
                    "risk_score": None if rng.random() < 0.1 else float(rng.normal()),
                    "chan": ["web", "pos", None][int(rng.integers(0, 3))]})
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("service")
    schema = Schema.from_json(SCHEMA).to_json()
    spec = spec_json(schema, FEATURES)
    return (random_bundle(d / "a", schema, spec, seed=1, explain=True, decision=DECISION),
            random_bundle(d / "b", schema, spec, seed=2, rounds=6))


DECISION = {"review_from": 0.5, "decline_from": 0.9, "rules": [
    {"code": 1001, "name": "big_and_busy", "when": "amount > 100 and cust_count_1h >= 2", "action": "decline"},
    {"code": 1002, "name": "web_channel", "when": 'channel == "web"', "action": "review", "mode": "shadow"}]}


def reference_decision(event: dict, features: dict, score: float) -> tuple[str, list, list]:
    """The bands and rules of DECISION, written out: (decision, active codes held, shadow codes held)."""
    active = [1001] if event["total"] > 100 and features["cust_count_1h"] >= 2 else []
    shadow = [1002] if event["chan"] == "web" else []
    band = "decline" if score >= 0.9 else "review" if score >= 0.5 else "allow"
    decision = "decline" if active else band
    return decision, active, shadow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bundle: Path, tmp: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token = tmp / "token"
        token.write_text(TOKEN)
        self.log = open(tmp / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "libfraud", "serve", str(bundle), "--port", str(self.port),
             "--admin-token-file", str(token), "--log-level", "warning", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, Path(self.log.name).read_text()
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError("the service did not become ready: " + Path(self.log.name).read_text())

    def post(self, path: str, body, **kw):
        return requests.post(self.url + path, data=json.dumps(body) if not isinstance(body, (bytes, str)) else body,
                             headers={"Content-Type": "application/json", **kw.pop("headers", {})}, timeout=30, **kw)

    def close(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


@pytest.fixture()
def server(bundles, tmp_path):
    s = Server(bundles[0], tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def idle_server(bundles, tmp_path_factory):
    """One server for the tests that store nothing."""
    s = Server(bundles[0], tmp_path_factory.mktemp("idle"))
    yield s
    s.close()


def scores_of(response) -> list[float]:
    assert response.status_code == 200, response.text
    return [r["score"] for r in response.json()["results"]]


def test_score_and_ingest_equal_the_core(server, bundles):
    evs = events_json(120, seed=3)
    reference = Scorer(bundles[0])
    want = reference.score_and_ingest(pd.DataFrame(evs))
    got = []
    got += scores_of(server.post("/score_and_ingest", evs[0]))               # one event, no list
    got += scores_of(server.post("/score_and_ingest", {"events": evs[1:100]}))
    for e in evs[100:]:
        got += scores_of(server.post("/score_and_ingest", {"events": [e]}))
    np.testing.assert_array_equal(np.float32(got), want)  # the core's float32, through JSON exactly
    r = server.post("/score", {"events": evs[:3]}).json()
    assert [x["event_id"] for x in r["results"]] == ["o-0", "o-1", "o-2"]  # ids as the client sent them
    np.testing.assert_array_equal(np.float32([x["score"] for x in r["results"]]),
                                  reference.score(pd.DataFrame(evs[:3])))
    assert requests.get(server.url + "/readyz").json()["store_events"] == 120


def test_decisions_rules_and_the_decision_log(bundles, tmp_path):
    log = tmp_path / "decisions.jsonl"
    s = Server(bundles[0], tmp_path, "--decision-log", str(log))
    try:
        evs = events_json(80, seed=13)
        for e in evs[::3]:
            e["cust"] = 3  # a busy customer, so the decline rule holds for some
        ref = Scorer(bundles[0])
        got = []
        for start in range(0, 80, 20):
            r = s.post("/score_and_ingest", {"events": evs[start:start + 20]})
            assert r.status_code == 200, r.text
            got += r.json()["results"]
        held = 0
        for e, res in zip(evs, got):
            f = ref.features(pd.DataFrame([e])).iloc[0]
            score = ref.score_and_ingest(pd.DataFrame([e]))[0]
            assert np.float32(res["score"]) == score
            decision, active, shadow = reference_decision(e, f, float(score))
            assert (res["decision"], res["rules"], res.get("shadow_rules", [])) == (decision, active, shadow), (e, res)
            held += bool(active)
        assert 0 < held < 80 and any("shadow_rules" in r for r in got)
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        assert len(lines) == 80 and lines[0]["bundle_sha256"] == hashlib.sha256(
            (bundles[0] / "manifest.json").read_bytes()).hexdigest()
        assert [np.float32(x["score"]) for x in lines] == [np.float32(r["score"]) for r in got]
        ready = requests.get(s.url + "/readyz").json()
        assert [r["code"] for r in ready["rules"]] == [1001, 1002] and ready["decision_bands"]["decline_from"] == 0.9
    finally:
        s.close()


def test_shadow_challenger_then_promote(bundles, tmp_path):
    log = tmp_path / "decisions.jsonl"
    s = Server(bundles[0], tmp_path, "--challenger", str(bundles[1]), "--decision-log", str(log))
    try:
        evs = events_json(30, seed=14)
        r = s.post("/score_and_ingest", {"events": evs[:20]})
        assert r.status_code == 200, r.text
        champion, challenger = Scorer(bundles[0]), Scorer(bundles[1])
        want_a = champion.score_and_ingest(pd.DataFrame(evs[:20]))
        want_b = challenger.score_and_ingest(pd.DataFrame(evs[:20]))
        res = r.json()["results"]
        np.testing.assert_array_equal(np.float32([x["score"] for x in res]), want_a)
        assert all("challenger" not in x for x in res)  # only the champion's score is served
        records = [json.loads(x) for x in log.read_text().splitlines()]
        np.testing.assert_array_equal(np.float32([x["challenger_score"] for x in records]), want_b)
        assert {x["challenger_sha256"] for x in records} == {
            hashlib.sha256((bundles[1] / "manifest.json").read_bytes()).hexdigest()}
        text = requests.get(s.url + "/metrics").text
        scored = [x for f in prom_parser.text_string_to_metric_families(text) if f.name == "libfraud_challenger_scored"
                  for x in f.samples]
        assert scored and scored[0].value == 20
        assert requests.get(s.url + "/readyz").json()["challenger"] == str(bundles[1])
        auth = {"Authorization": f"Bearer {TOKEN}"}
        p = s.post("/admin/promote", {}, headers=auth)
        assert p.status_code == 200, p.text
        assert p.json()["bundle_sha256"] == hashlib.sha256((bundles[1] / "manifest.json").read_bytes()).hexdigest()
        after = s.post("/score_and_ingest", {"events": evs[20:]}).json()
        np.testing.assert_array_equal(np.float32([x["score"] for x in after["results"]]),
                                      challenger.score_and_ingest(pd.DataFrame(evs[20:])))
        assert after["bundle_sha256"] == p.json()["bundle_sha256"]
        assert "challenger_score" not in json.loads(log.read_text().splitlines()[-1])
        assert s.post("/admin/promote", {}, headers=auth).status_code == 409  # nothing left to promote
        bad = s.post("/admin/challenger", {"bundle": str(tmp_path)}, headers=auth)
        assert bad.status_code == 422, bad.text
        assert s.post("/admin/challenger", {"bundle": str(bundles[0])}, headers=auth).status_code == 200
        assert requests.get(s.url + "/readyz").json()["challenger"] == str(bundles[0])
        assert s.post("/admin/challenger", {"bundle": None}, headers=auth).status_code == 200
        assert requests.get(s.url + "/readyz").json()["challenger"] is None
    finally:
        s.close()


def test_explain_gives_the_cores_reasons(server, bundles):
    evs = events_json(5, seed=4)
    r = server.post("/explain", {"events": evs, "k": 2})
    assert r.status_code == 200, r.text
    ref = Scorer(bundles[0]).explain(pd.DataFrame(evs), k=2)
    for row, (_, want) in zip(r.json()["results"], ref.iterrows()):
        assert np.float32(row["score"]) == want["score"]
        assert [x["code"] for x in row["reasons"]] == [want[f"reason_{j + 1}_code"] for j in range(want["n_reasons"])]
    assert server.post("/explain", {"events": evs, "k": 0}).status_code == 422


def test_labels_reach_label_aware_features(server, bundles):
    evs = events_json(30, seed=5)
    for e in evs:
        e["cust"] = 7
    assert server.post("/score_and_ingest", {"events": evs[:20]}).status_code == 200
    r = server.post("/label", {"labels": [{"order_ref": e["order_ref"], "is_fraud": 1, "ts": e["ts"]}
                                         for e in evs[:20]]})
    assert r.status_code == 200 and r.json() == {"applied": 20}, r.text
    ref = Scorer(bundles[0])
    ref.score_and_ingest(pd.DataFrame(evs[:20]))
    ref.label(pd.DataFrame([{"order_ref": e["order_ref"], "is_fraud": 1, "ts": e["ts"]} for e in evs[:20]]))
    after = server.post("/score", {"events": evs[20:21]}).json()["results"][0]["score"]
    assert np.float32(after) == ref.score(pd.DataFrame(evs[20:21]))[0]
    assert ref.features(pd.DataFrame(evs[20:21]))["cust_fraud_7d"].iloc[0] == 20
    unknown = server.post("/label", {"labels": [{"order_ref": "nope", "is_fraud": 1, "ts": T0}]})
    assert unknown.status_code == 404 and "FRAUD_STATUS_UNKNOWN_EVENT" in unknown.text


@pytest.mark.parametrize("body, code, loc, words", [
    (b'{"events": [{"order_ref": "x",', 422, ["body", 30], "malformed JSON"),
    (b"\xff\xfe", 422, ["body"], "not UTF-8"),
    ([1, 2], 422, ["body"], "expected a JSON object"),
    ({"events": {}}, 422, ["body", "events"], "must be a list"),
    ({"events": []}, 422, ["body", "events"], "is empty"),
    ({"events": ["x"]}, 422, ["body", "events", 0], "not a JSON object"),
    ({"order_ref": "a", "ts": T0, "total": "abc", "cust": 1}, 422, ["body", "events", 0, "total"], "not a number"),
    ({"order_ref": "a", "ts": T0, "total": -1, "cust": 1}, 422, ["body", "events", 0, "total"], "negative"),
    ({"order_ref": "a", "ts": T0, "cust": 1}, 422, ["body", "events", 0, "total"], "empty amount"),
    ({"order_ref": "a", "ts": T0, "total": 1}, 422, ["body", "events", 0, "cust"], "required"),
    ({"order_ref": "a", "ts": "soon", "total": 1, "cust": 1}, 422, ["body", "events", 0, "ts"], "not a number"),
    ({"order_ref": "a", "ts": T0, "total": 1, "cust": 1.5}, 422, ["body", "events", 0, "cust"], "not an integer"),
    ({"order_ref": "a", "ts": T0, "total": 1, "cust": True}, 422, ["body", "events", 0, "cust"], "boolean"),
    ({"events": [{"order_ref": "a", "ts": T0, "total": 1, "cust": 1},
                 {"order_ref": "a", "ts": T0, "total": 1, "cust": 1}]}, 422, ["body", "events", 1, "order_ref"],
     "duplicate event id"),
    ({"events": [{"order_ref": "a", "ts": T0 + 5, "total": 1, "cust": 1},
                 {"order_ref": "b", "ts": T0, "total": 1, "cust": 1}]}, 422, ["body", "events", 1, "ts"], "earlier"),
    ({"order_ref": "a", "ts": T0, "total": 1, "cust": 1, "risk_score": "NaNx"}, 422,
     ["body", "events", 0, "risk_score"], "not a number"),
])
def test_bad_input_is_a_4xx_naming_the_field(idle_server, body, code, loc, words):
    r = idle_server.post("/score_and_ingest", body)
    assert r.status_code == code, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == loc and words in detail["msg"], detail
    assert requests.get(idle_server.url + "/readyz").json()["store_events"] == 0  # nothing was stored


def test_store_conflicts_and_limits(server):
    evs = events_json(3, seed=6)
    assert server.post("/score_and_ingest", {"events": evs}).status_code == 200
    again = server.post("/score_and_ingest", {"events": [dict(evs[0], ts=evs[-1]["ts"])]})
    assert again.status_code == 409 and again.json()["status"] == "FRAUD_STATUS_DUPLICATE_TRANSACTION"
    late = dict(events_json(1, seed=7)[0], order_ref="late", ts=T0 - 10_000)
    r = server.post("/score_and_ingest", late)
    assert r.status_code == 409 and r.json()["status"] == "FRAUD_STATUS_OUT_OF_ORDER", r.text
    assert server.post("/score", late).status_code == 200  # scoring the past is fine
    big = {"events": events_json(10_001, seed=8)}
    r = server.post("/score", big)
    assert r.status_code in (413, 422) and ("at most" in r.text), r.text[:300]
    huge = b'{"events": [' + b" " * (5 << 20) + b"]}"
    assert server.post("/score", huge).status_code == 413


def test_a_slow_client_gets_408_and_blocks_no_one(bundles, tmp_path):
    s = Server(bundles[0], tmp_path, "--body-timeout", "1")
    try:
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"events\": [")
        t = time.monotonic()
        assert scores_of(s.post("/score", events_json(1, seed=9)[0]))  # served meanwhile
        sock.settimeout(10)
        reply = sock.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408") and 0.8 < time.monotonic() - t < 8, reply
        sock.close()
    finally:
        s.close()


def test_metrics_parse_as_prometheus_text(server):
    server.post("/score_and_ingest", {"events": events_json(10, seed=10)})
    server.post("/score", {"order_ref": "x"})
    text = requests.get(server.url + "/metrics").text
    families = {f.name: f for f in prom_parser.text_string_to_metric_families(text)}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    pid = next(iter(families["libfraud_events_scored"].samples)).labels["pid"]
    assert value[("libfraud_events_scored_total", (("pid", pid),))] == 10
    assert value[("libfraud_store_events", (("pid", pid),))] == 10
    assert value[("libfraud_http_requests_total", (("code", "200"), ("endpoint", "score_and_ingest")))] == 1
    assert value[("libfraud_http_requests_total", (("code", "422"), ("endpoint", "score")))] == 1
    assert value[("libfraud_http_events_total", (("endpoint", "score_and_ingest"),))] == 10
    assert families["libfraud_http_request_seconds"].type == "histogram"
    info = next(iter(families["libfraud_bundle_info"].samples)).labels
    assert len(info["sha256"]) == 64


def test_swap_under_load_drops_no_request(server, bundles, tmp_path):
    evs = events_json(50, seed=11)
    server.post("/score_and_ingest", {"events": evs[:40]})
    want_a = Scorer(bundles[0])
    want_a.ingest(pd.DataFrame(evs[:40]))
    want_b = Scorer(bundles[1])
    want_b.ingest(pd.DataFrame(evs[:40]))
    probe = {"events": evs[40:45]}
    a, b = want_a.score(pd.DataFrame(evs[40:45])), want_b.score(pd.DataFrame(evs[40:45]))
    assert not np.array_equal(a, b)
    seen, errors, stop = [], [], threading.Event()

    def hammer():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.post(server.url + "/score", data=json.dumps(probe), timeout=30)
                except requests.RequestException as e:
                    errors.append(repr(e))
                    return
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    seen.append(np.float32([x["score"] for x in r.json()["results"]]))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert server.post("/admin/swap", {"bundle": str(bundles[1])}).status_code == 401  # no token
        bad = server.post("/admin/swap", {"bundle": str(bundles[1])}, headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401
        missing = server.post("/admin/swap", {"bundle": str(bundles[1] / "nope")}, headers=auth)
        assert missing.status_code == 422 and "nope" in missing.text, missing.text
        tampered = tmp_path / "tampered"
        shutil.copytree(bundles[1], tampered)
        trees = next(p for p in (tampered / "trees").iterdir() if p.is_file())
        trees.write_bytes(trees.read_bytes() + b"x")
        refused = server.post("/admin/swap", {"bundle": str(tampered)}, headers=auth)
        assert refused.status_code == 422 and "FRAUD_STATUS_BUNDLE_CHECKSUM" in refused.text, refused.text
        r = server.post("/admin/swap", {"bundle": str(bundles[1])}, headers=auth)
        assert r.status_code == 200, r.text
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and len(seen) > 10
    assert all(np.array_equal(s, a) or np.array_equal(s, b) for s in seen)  # never a mix, never a failure
    assert np.array_equal(seen[0], a) and np.array_equal(seen[-1], b)
    assert requests.get(server.url + "/readyz").json()["bundle_sha256"] == r.json()["bundle_sha256"]


def test_openapi_page_names_the_schemas_columns(idle_server):
    server = idle_server
    spec = requests.get(server.url + "/openapi.json").json()
    body = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    event = body["oneOf"][0]
    assert set(event["properties"]) == {"order_ref", "ts", "total", "cust", "term", "risk_score", "chan"}
    assert event["required"] == ["order_ref", "ts", "total", "cust"]
    assert requests.get(server.url + "/docs").status_code == 200
    assert requests.get(server.url + "/healthz").json() == {"status": "ok"}


def test_read_only_and_workers(bundles, tmp_path):
    r = subprocess.run([sys.executable, "-m", "libfraud", "serve", str(bundles[0]), "--workers", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--read-only" in r.stderr
    s = Server(bundles[0], tmp_path, "--read-only", "--workers", "2")
    try:
        ev = events_json(2, seed=12)
        assert s.post("/score_and_ingest", {"events": ev}).status_code == 403
        assert all(len(scores_of(s.post("/score", {"events": ev}))) == 2 for _ in range(6))
        pids = {next(iter(f.samples)).labels["pid"]
                for _ in range(8)
                for f in prom_parser.text_string_to_metric_families(requests.get(s.url + "/metrics").text)
                if f.name == "libfraud_bundle_info"}
        assert len(pids) >= 1
    finally:
        s.close()


def test_fast_json_path_equals_the_loader():
    """The decoder's direct path and load_events give the same arrays on every value JSON types."""
    schema = Schema.from_json(SCHEMA)
    decoder = EventDecoder(schema, 10_000)
    for seed in range(5):
        evs = events_json(200, seed=seed)
        fast, ids = decoder.events({"events": evs})
        assert decoder._fast(evs, ids) is not None  # these values take the fast path
        slow = load_events(pd.DataFrame.from_records(evs, columns=decoder._columns), schema, labels=False)[0]
        for a, b in zip(fast.args(), slow.args()):
            np.testing.assert_array_equal(a, b)
    text = [dict(e, cust=str(e["cust"]), ts=str(e["ts"])) for e in events_json(5, seed=1)]
    slow_path, _ = decoder.events({"events": text})  # text numbers: the loader's path, same values
    for a, b in zip(slow_path.args(), decoder.events({"events": events_json(5, seed=1)})[0].args()):
        np.testing.assert_array_equal(a, b)
    # the payments preset: -1 is "absent" for optional int entities and "missing" for int codes
    from libfraud.data.declared import load_preset
    pay = EventDecoder(load_preset("payments")[0], 100)
    rng = np.random.default_rng(0)
    evs = [{"txn_id": i, "timestamp_ms": T0 + i, "amount": float(rng.random() * 100), "card_id": int(rng.integers(5)),
            "device_id": int(rng.integers(-1, 3)), "merchant_id": 1, "ip_id": None if i % 3 else -1,
            "country": int(rng.integers(-1, 2)), "mcc": None} for i in range(50)]
    ids = [e["txn_id"] for e in evs]
    assert pay._fast(evs, ids) is not None
    slow = load_events(pd.DataFrame.from_records(evs, columns=pay._columns), pay.schema, labels=False)[0]
    for a, b in zip(pay.events({"events": evs})[0].args(), slow.args()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RequestError) as e:
        decoder.events({"events": [dict(events_json(1, seed=1)[0], total=math.inf)]})
    assert e.value.loc == ["body", "events", 0, "total"]
