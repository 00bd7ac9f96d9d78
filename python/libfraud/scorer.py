"""Scorer: a bundle served by the C++ core, from pandas (in the user's own column names, as the
bundle's declared schema names them) or libfraud.events arrays. It calls the same C API a payment
switch calls, so Python and C give the same scores."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import _core
from .events import EventArrays, LabelArrays


_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}
_logger = logging.getLogger("libfraud")


def _forward_log(level: int, message: str) -> None:
    _logger.log(_LEVELS.get(level, logging.ERROR), message)


# The core never prints; its messages go to the "libfraud" logger (the handlers decide what shows).
_core.set_log_callback(_forward_log, 0)


class Scorer:
    """Open a bundle; keep a temporal store; score transactions.

    Thread safety follows the C API: `score` and `features` may run from many threads;
    `ingest` and `score_and_ingest` are exclusive (the core serialises them).
    """

    def __init__(self, bundle: str | os.PathLike, *, expected_transactions: int = 0,
                 gnn_backend: str = "", plugin_dir: str | os.PathLike = "",
                 state_dir: str | os.PathLike = "", fsync_every_ingest: bool = False,
                 retention_ms: int = 0, max_history_per_entity: int = 0,
                 trusted_public_key: str | os.PathLike = ""):
        """gnn_backend: "native", "aoti", "torchscript"... for a GNN bundle; "" = the first of the
        bundle's backends (its default first) that loads on this machine (see `gnn_backend`).
        state_dir: keep the store durable there (snapshot + log of every acknowledged ingest;
        restored on open). retention_ms / max_history_per_entity: bound the store's memory.
        trusted_public_key: an ed25519 PEM; the bundle's manifest must be signed by its key."""
        self.bundle = os.fspath(bundle)
        self._engine = _core.Engine(self.bundle, expected_transactions, gnn_backend,
                                    os.fspath(plugin_dir), os.fspath(state_dir), fsync_every_ingest,
                                    retention_ms, max_history_per_entity, os.fspath(trusted_public_key))
        # The core verified the manifest; its schema maps the user's columns to events.
        from .data.declared import Schema
        manifest = json.loads((Path(self.bundle) / "manifest.json").read_text(encoding="utf-8"))
        self.schema = Schema.from_json(manifest["schema"], source=str(Path(self.bundle) / "manifest.json"))

    def events(self, transactions) -> EventArrays:
        """The core's arrays for a DataFrame in the schema's columns (or EventArrays as they are)."""
        if isinstance(transactions, EventArrays):
            return transactions
        if isinstance(transactions, pd.DataFrame):
            from .data.declared import load_events
            return load_events(transactions, self.schema, labels=False)[0]
        raise TypeError("transactions must be a pandas DataFrame with the schema's columns "
                        "or libfraud.events.EventArrays")

    @property
    def gnn_backend(self) -> str:
        """The GNN backend in use, or "none" for a tree-only bundle."""
        return self._engine.gnn_backend

    @property
    def feature_names(self) -> list[str]:
        return list(self._engine.feature_names)

    @property
    def threshold(self) -> float:
        return self._engine.threshold

    @property
    def store_size(self) -> int:
        return int(self._engine.store_size()[0])

    @property
    def watermark_ms(self) -> int:
        return int(self._engine.store_size()[1])

    def swap_bundle(self, bundle: str | os.PathLike, *, gnn_backend: str = "",
                    plugin_dir: str | os.PathLike = "") -> None:
        """Load and verify another bundle, then serve with it; the store is kept. On failure the
        current bundle keeps serving and FraudError says why."""
        self._engine.swap_bundle(os.fspath(bundle), gnn_backend, os.fspath(plugin_dir))
        self.bundle = os.fspath(bundle)

    def snapshot(self) -> None:
        """Write the store's snapshot to the state directory and truncate its log."""
        self._engine.snapshot()

    def stats(self) -> dict:
        """Counters: scored, ingested, rejected (by status), swaps, store size, recent p50/p99 us."""
        return self._engine.stats()

    def ingest(self, transactions) -> None:
        self._engine.ingest(*self.events(transactions).args())

    def score(self, transactions) -> np.ndarray:
        """Probabilities against the store as it stands; nothing is stored."""
        return self._engine.score(*self.events(transactions).args())

    def score_and_ingest(self, transactions) -> np.ndarray:
        """The serving call: each transaction scored, then stored, in order."""
        return self._engine.score_and_ingest(*self.events(transactions).args())

    def label(self, labels) -> None:
        """Labels for stored events (fraud_engine_label): LabelArrays, or a DataFrame in the
        schema's columns with its event id, label and (when declared) label time columns.
        All or nothing; a changed label, an unknown event or a label time before its event raise
        FraudError naming it."""
        if isinstance(labels, pd.DataFrame):
            from .data.declared import load_labels
            labels = load_labels(labels, self.schema)
        if not isinstance(labels, LabelArrays):
            raise TypeError("labels must be libfraud.events.LabelArrays or a DataFrame")
        self._engine.label(*labels.args())

    def features(self, transactions) -> pd.DataFrame:
        rows = self._engine.features(*self.events(transactions).args())
        return pd.DataFrame(rows, columns=self.feature_names)

    def score_features(self, rows: np.ndarray) -> np.ndarray:
        """The compiled trees alone on rows in the bundle's feature order (NaN = missing)."""
        return self._engine.score_features(np.ascontiguousarray(rows, dtype=np.float32))

    def score_and_ingest_timed(self, transactions) -> tuple[np.ndarray, np.ndarray]:
        """As score_and_ingest, one C API call per transaction; also each call's latency in ns
        measured inside the core's caller (no Python overhead in the figure)."""
        return self._engine.score_and_ingest_timed(*self.events(transactions).args())
