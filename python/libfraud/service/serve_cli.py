"""`libfraud serve`: the command line of the HTTP service."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import CONFIG_ENV, ServiceConfig

__all__ = ["add_serve_parser"]


def add_serve_parser(sub, parents) -> None:
    d = ServiceConfig(bundle="")
    p = sub.add_parser("serve", parents=parents, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="serve a bundle over HTTP: /score, /score_and_ingest, /label, /explain, "
                            "/metrics, /healthz, /readyz, /admin/swap (OpenAPI page at /docs)")
    p.add_argument("bundle")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes; more than 1 needs --read-only (each has its own store)")
    p.add_argument("--read-only", action="store_true",
                   help="serve /score and /explain only: the store changes only by --history at start")
    p.add_argument("--state-dir", default="", help="durable store (snapshot + log), restored at start")
    p.add_argument("--history", action="append", default=[], metavar="FILE",
                   help="earlier events (.csv/.parquet) replayed into the store before /readyz says ready")
    p.add_argument("--admin-token-file", help="file holding the bearer token of /admin/*; without it the "
                                              "admin endpoints are off (LIBFRAUD_ADMIN_TOKEN also works)")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="larger bodies get 413")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout_s,
                   help="seconds a body may take to arrive (then 408)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="most events in one request")
    p.add_argument("--retention", help="evict history older than this (e.g. 90d)")
    p.add_argument("--max-history-per-entity", type=int, default=0)
    p.add_argument("--max-ahead", metavar="DURATION", help="refuse events this far ahead of the store and clock")
    p.add_argument("--trusted-public-key", default="", help="refuse bundles not signed by this ed25519 key")
    p.add_argument("--backend", default="", help="GNN backend (native, aoti, torchscript)")
    p.add_argument("--challenger", default="", metavar="BUNDLE",
                   help="shadow-score every event with this bundle too (responses' \"challenger\", the "
                        "decision log, /metrics); POST /admin/promote makes it the serving bundle")
    p.add_argument("--decision-log", default="", metavar="FILE",
                   help="append every decision as a JSON line: bundle sha256, scores, decision, rule hits, "
                        "reasons, latency (an audit record)")
    p.add_argument("--drift-window", type=int, default=0, metavar="EVENTS",
                   help="recent events behind /metrics' drift PSI (0: the core's default, 10000)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(run=run_serve)


def _token(args) -> str:
    if args.admin_token_file:
        token = Path(args.admin_token_file).read_text().strip()
        if len(token) < 16:
            raise ValueError(f"{args.admin_token_file}: the admin token must be at least 16 characters")
        return token
    return os.environ.get("LIBFRAUD_ADMIN_TOKEN", "")


def run_serve(args) -> int:
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as e:
        print(f"libfraud serve: {e.name} is not installed: pip install 'libfraud[serve]'", file=sys.stderr)
        return 2
    import uvicorn
    from ..data.declared import parse_duration
    config = ServiceConfig(
        bundle=str(Path(args.bundle).resolve()), state_dir=args.state_dir, history=tuple(args.history),
        admin_token=_token(args), max_body_bytes=args.max_body_bytes, body_timeout_s=args.body_timeout,
        max_batch=args.max_batch, workers=args.workers, read_only=args.read_only,
        trusted_public_key=args.trusted_public_key,
        retention_ms=parse_duration(args.retention) if args.retention else 0,
        max_history_per_entity=args.max_history_per_entity,
        max_ahead_ms=parse_duration(args.max_ahead) if args.max_ahead else 0, gnn_backend=args.backend,
        drift_window_events=args.drift_window,
        challenger=str(Path(args.challenger).resolve()) if args.challenger else "",
        decision_log=str(Path(args.decision_log).resolve()) if args.decision_log else "")
    if not (Path(config.bundle) / "manifest.json").is_file():
        raise ValueError(f"{args.bundle}: not a bundle directory (no manifest.json)")
    os.environ[CONFIG_ENV] = config.to_env()
    import logging
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run("libfraud.service.app:create_app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, timeout_keep_alive=5,
                access_log=False, timeout_graceful_shutdown=10)
    return 0
