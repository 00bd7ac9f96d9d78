"""What `libfraud serve` is started with: one frozen value, passed to every worker process."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

__all__ = ["ServiceConfig", "CONFIG_ENV"]

CONFIG_ENV = "LIBFRAUD_SERVE_CONFIG"
"""Worker processes read their configuration from this environment variable (JSON)."""


@dataclass(frozen=True)
class ServiceConfig:
    bundle: str
    # Durable store (snapshot + log); one writer, so one worker process.
    state_dir: str = ""
    # Files of earlier events replayed into the store before the service is ready.
    history: tuple[str, ...] = ()
    # POST /admin/* needs "Authorization: Bearer <token>"; "" disables the admin endpoints.
    admin_token: str = ""
    max_body_bytes: int = 4 << 20
    # A request body must arrive within this many seconds (a slow client gets 408, not a worker).
    body_timeout_s: float = 10.0
    max_batch: int = 10_000
    workers: int = 1
    # Serve /score and /explain only (no store changes): what lets several worker processes
    # share a port, each with its own copy of the warmed store.
    read_only: bool = False
    trusted_public_key: str = ""
    retention_ms: int = 0
    max_history_per_entity: int = 0
    max_ahead_ms: int = 0
    gnn_backend: str = ""
    # Events in the drift window behind /metrics' PSI figures (0 = the core's default, 10,000).
    drift_window_events: int = 0
    # A second bundle scored beside the serving one on every event (shadow): its scores go to the
    # responses' "challenger" and the decision records, never to the decision.
    challenger: str = ""
    # Every decision as a JSON line (the core's decision log): an audit can replay why.
    decision_log: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.workers > 1 and not self.read_only:
            raise ValueError(
                "--workers > 1 needs --read-only: each worker process has its own store, so events "
                "ingested by one would be missing from the others' features. Run one writer per "
                "store (shard entities across services), or serve /score only with --read-only")
        if self.max_body_bytes < 1024:
            raise ValueError(f"--max-body-bytes must be >= 1024, got {self.max_body_bytes}")
        if self.max_batch < 1:
            raise ValueError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.body_timeout_s <= 0:
            raise ValueError(f"--body-timeout must be > 0 seconds, got {self.body_timeout_s}")

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "ServiceConfig":
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start the service with `libfraud serve BUNDLE`")
        d = json.loads(text)
        d["history"] = tuple(d.get("history", ()))
        return cls(**d)
