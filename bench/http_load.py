"""The HTTP service under load, side by side with the core it wraps, in one run.

    python -m bench.http_load                      # ~3 min: wrk against `libfraud serve` on localhost
    python -m bench.http_load --duration 5         # shorter runs

The load generator is wrk (Debian's `wrk` package), driven by a Lua script that cycles through
real request bodies. Each configuration runs for ``--duration`` seconds with ``--connections``
open connections: requests/s, events/s and wrk's latency percentiles (p50/p90/p99, per request).
Configurations: /score of single events and of batches of 100 at 1 and 2 worker processes
(``--read-only``: each worker warms its own copy of the store from the same history), and
/score_and_ingest at 1 worker (one writer per store). Beside them, the same events through the
core in-process (``Scorer``, one call per event and per 100), so the HTTP overhead is the
difference. The bundle and traffic are bench/report.py's (the demo: GNN + 500 trees on the
payments preset); the store holds its history before the timed runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

LUA = r"""
-- Each wrk thread takes every k-th body (k = the thread count, args[2]). Ingest bodies hold the
-- token __ID__ for each event id: each request gets fresh ids (args[3] = the first), unique across
-- threads, however many times the bodies cycle.
local bodies, n, i, threads_made, issued = {}, 0, 0, 0, 0
function setup(thread)
  thread:set("tid", threads_made)
  threads_made = threads_made + 1
end
function init(args)
  local k, every = 0, tonumber(args[2])
  every_thread = every
  id_base = tonumber(args[3])
  for line in io.lines(args[1]) do
    if k % every == tid then n = n + 1; bodies[n] = line end
    k = k + 1
  end
end
local function fresh_id()
  issued = issued + 1
  return string.format("%d", id_base + issued * every_thread + tid)
end
function request()
  i = i % n + 1
  local body = bodies[i]
  if id_base then body = body:gsub("__ID__", fresh_id) end
  return wrk.format("POST", args_path, {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  io.write(string.format('{"requests":%d,"seconds":%.3f,"non2xx":%d,"socket_errors":%d,"timeouts":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(99.9) / 1e3, latency.max / 1e3))
end
"""


def log(msg: str) -> None:
    print(f"[http_load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(frame, columns: list[str]) -> list[dict]:
    out = []
    for row in frame[columns].itertuples(index=False):
        out.append({c: (None if v is None or (isinstance(v, float) and v != v) else
                        (int(v) if isinstance(v, (np.integer,)) else float(v) if isinstance(v, np.floating) else v))
                    for c, v in zip(columns, row)})
    return out


def bodies_file(path: Path, events: list[dict], batch: int, *, unique_from: int | None = None,
                id_col: str = "", time_col: str = "", t_live: int = 0) -> Path:
    """One JSON body per line. ``unique_from`` (ingest): every event id is the token __ID__, which
    the Lua script replaces with a fresh id per request, and every event has one shared time (any
    order of arrival keeps the store's time order)."""
    lines, mark = [], 987_654_321_987_654  # stands for __ID__ until the line is written
    for start in range(0, len(events) - batch + 1, batch):
        chunk = events[start:start + batch]
        if unique_from is not None:
            chunk = [dict(e, **{id_col: mark, time_col: t_live}) for e in chunk]
        lines.append(json.dumps({"events": chunk}, separators=(",", ":")).replace(str(mark), "__ID__"))
    path.write_text("\n".join(lines) + "\n")
    return path


class Service:
    def __init__(self, bundle: Path, history: Path, workers: int, read_only: bool, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "libfraud", "serve", str(bundle), "--port", str(self.port),
               "--workers", str(workers), "--history", str(history), "--log-level", "warning"]
        if read_only:
            cmd.append("--read-only")
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.workers = workers
        import urllib.request
        deadline = time.monotonic() + 120
        ready = set()
        while time.monotonic() < deadline and len(ready) < workers:
            if self.proc.poll() is not None:
                raise RuntimeError(f"libfraud serve exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/metrics", timeout=2) as r:
                    text = r.read().decode()
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        ready |= set(re.findall(r'libfraud_bundle_info\{[^}]*pid="(\d+)"', text))
            except OSError:
                pass
            time.sleep(0.2)
        if len(ready) < workers:
            raise RuntimeError(f"{workers} workers not ready: {log_path.read_text()[-2000:]}")

    def close(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def wrk(url: str, path: str, bodies: Path, script: Path, duration: int, connections: int, threads: int,
        id_base: int | None) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script),
           url + path, "--", str(bodies), str(threads)] + ([str(id_base)] if id_base is not None else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed: {p.stderr}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1]
    r = json.loads(line)
    r["requests_per_s"] = r["requests"] / r["seconds"]
    return r


def core_baseline(bundle: Path, history, live, batch: int, n: int) -> dict:
    """The same events through the core in-process: per call, as the service makes them."""
    from libfraud import Scorer
    scorer = Scorer(bundle)
    scorer.ingest(history)
    ev = scorer.events(live.iloc[:n])
    times = []
    for start in range(0, n - batch + 1, batch):
        part = ev.slice(start, start + batch)
        t = time.perf_counter_ns()
        scorer._engine.score(*part.args())
        times.append(time.perf_counter_ns() - t)
    t_ms = np.array(times) / 1e6
    return {"calls": len(times), "p50_ms": float(np.percentile(t_ms, 50)), "p99_ms": float(np.percentile(t_ms, 99)),
            "events_per_s_one_thread": batch * len(times) / (t_ms.sum() / 1e3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per configuration")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    if not shutil.which("wrk"):
        print("bench.http_load: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    import pandas as pd
    import report
    from libfraud.scorer import _bundle_schema

    out, _ = report.build_bundle("quick", report.MODES["quick"], False, log)
    bundle = out / "bundle"
    tx = pd.read_parquet(out / "transactions.parquet")
    schema = _bundle_schema(bundle)
    columns = [schema.event_id.column, schema.time.column, schema.amount] + [e.column for e in schema.entities] + \
        [x.column for x in schema.numeric] + [c.column for c in schema.categorical]
    cut = int(len(tx) * 0.8)
    history, live = tx.iloc[:cut], tx.iloc[cut:]
    live_records = records(live, columns)
    result = {"benchmark": "bench.http_load", "command": "python -m bench.http_load " + " ".join(argv or sys.argv[1:]),
              "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "bundle": str(bundle), "history_events": len(history), "duration_s": a.duration,
              "connections": a.connections, "wrk_threads": a.threads, "cpus": os.cpu_count(),
              "loadavg_before": [round(x, 2) for x in os.getloadavg()], "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        tmp = Path(tmp)
        hist = tmp / "history.parquet"
        history.to_parquet(hist)
        script = tmp / "load.lua"
        t_live = int(tx[schema.time.column].max()) + 1
        max_id = int(tx[schema.event_id.column].max()) + 1
        for batch in (1, 100):
            result.setdefault("core", {})[str(batch)] = core_baseline(bundle, history, live, batch, 2_000)
        # (workers, endpoint, batch, connections): one connection first, the latency without queueing
        for workers, path, batch, conns in ((1, "/score", 1, 1), (1, "/score", 1, a.connections),
                                            (2, "/score", 1, a.connections), (1, "/score", 100, a.connections),
                                            (2, "/score", 100, a.connections),
                                            (1, "/score_and_ingest", 1, a.connections),
                                            (1, "/score_and_ingest", 100, a.connections)):
            ingest = path == "/score_and_ingest"
            bodies = bodies_file(tmp / f"b{batch}{path.replace('/', '_')}.jsonl", live_records,
                                 batch, unique_from=max_id if ingest else None, id_col=schema.event_id.column,
                                 time_col=schema.time.column, t_live=t_live)
            script.write_text(LUA.replace("args_path", json.dumps(path)))
            log(f"{path} batch {batch}, {workers} worker(s)")
            svc = Service(bundle, hist, workers, not ingest, tmp / "serve.log")
            try:
                r = wrk(svc.url, path, bodies, script, a.duration, conns, min(a.threads, conns),
                        max_id if ingest else None)
            finally:
                svc.close()
            r.update(workers=workers, path=path, batch=batch, connections=conns,
                     events_per_s=r["requests_per_s"] * batch)
            result["runs"].append(r)
            log(f"  {r['requests_per_s']:.0f} req/s, {r['events_per_s']:.0f} events/s, p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, non-2xx {r['non2xx']}")
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    md = markdown(result)
    print(md)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    stem = a.out_dir / f"{dt.date.today().isoformat()}-http"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(md)
    return 0


def markdown(r: dict) -> str:
    lines = [f"HTTP service, `{r['command']}`, {r['date_utc']}, {r['cpus']} CPUs shared by wrk and the service, "
             f"wrk {r['wrk_threads']} threads, {r['duration_s']} s each, load before {r['loadavg_before']}",
             "", "| endpoint | batch | workers | connections | requests/s | events/s | p50 ms | p90 ms | p99 ms | "
                 "non-2xx |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["runs"]:
        lines.append(f"| {x['path']} | {x['batch']} | {x['workers']} | {x['connections']} | {x['requests_per_s']:.0f} | "
                     f"{x['events_per_s']:.0f} | {x['p50_ms']:.2f} | {x['p90_ms']:.2f} | {x['p99_ms']:.2f} | "
                     f"{x['non2xx'] + x['socket_errors']} |")
    lines += ["", "| the core in-process (one thread) | batch | p50 ms per call | p99 ms | events/s |", "|---|---|---|---|---|"]
    for batch, c in r["core"].items():
        lines.append(f"| `Scorer` score | {batch} | {c['p50_ms']:.3f} | {c['p99_ms']:.3f} | "
                     f"{c['events_per_s_one_thread']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
