"""Point-in-time features for training: the history, and its labels at their label times, replayed
through the C++ core's own store and feature plan, so training and serving cannot disagree.

The features are the user's declared feature spec (export/SCHEMA.md) over their declared schema;
``libfraud.data.declared`` reads both from TOML, and ``load_preset("payments")`` is the generator's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .events import EventArrays, LabelArrays

__all__ = ["Replayed", "as_json", "make_store", "replay", "replay_features", "as_matrix"]


def as_json(declared: Any) -> dict:
    """A Schema / FeatureSpec (libfraud.data.declared) or its JSON form, as the JSON form."""
    if isinstance(declared, Mapping):
        return dict(declared)
    return declared.to_json()


def make_store(schema: Any, spec: Any, *, expected_events: int = 0, retention_ms: int = 0,
               max_history_per_entity: int = 0):
    """An empty ``_core.Store`` of the schema, computing the spec's features."""
    from . import _core
    return _core.Store(json.dumps(as_json(schema)), json.dumps(as_json(spec)), expected_events,
                       retention_ms=retention_ms, max_history_per_entity=max_history_per_entity)


@dataclass
class Replayed:
    """Features of every event, computed just before it was stored, and the store after them all
    (the GNN sampler reads the same store)."""

    features: np.ndarray  # float32 [n, F]
    names: list[str]
    store: Any  # _core.Store

    def frame(self, index=None) -> pd.DataFrame:
        return pd.DataFrame(self.features, columns=self.names, index=index)


def replay(events: EventArrays, labels: LabelArrays | None, schema: Any, spec: Any, *,
           store=None, chunk_size: int = 200_000, progress: bool = False) -> Replayed:
    """Replay events in time order through the core, each label stored right after its event:
    label-aware features count a label only once its label time is strictly before the scored
    event's time, so this is exactly what serving computes with labels arriving at their label
    times. Events must be in time order (the store refuses otherwise)."""
    store = store or make_store(schema, spec, expected_events=len(events))
    labels = labels if labels is not None else LabelArrays.make([], [], [])
    out = np.empty((len(events), store.num_features), dtype=np.float32)
    # Labels go with the chunk holding their event, so the replay can run in bounded pieces.
    label_row = rows_of(events.event_id, labels.event_id)
    unknown = labels.take(label_row < 0)
    if len(unknown):
        store.label(*unknown.args())  # labels of events already in the store (else the core says why)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(events), unit="event", desc="replaying features")
    for start in range(0, len(events), chunk_size):
        stop = min(start + chunk_size, len(events))
        mine = (label_row >= start) & (label_row < stop)
        out[start:stop] = store.replay(*events.slice(start, stop).args(), *labels.take(mine).args())
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    return Replayed(out, list(store.feature_names), store)


def rows_of(event_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each of ``ids`` in ``event_ids`` (unique), -1 where absent."""
    if len(event_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(event_ids, kind="stable")
    pos = np.minimum(np.searchsorted(event_ids[order], ids), len(order) - 1)
    return np.where(event_ids[order][pos] == ids, order[pos], -1)


def replay_features(transactions: pd.DataFrame, schema: Any = None, spec: Any = None) -> pd.DataFrame:
    """Each row's features as the core computes them when that event arrives (its history and the
    labels known strictly before it). ``transactions`` in the schema's own column names; the
    payments preset when no schema is given."""
    from .data.declared import Schema, load_events, load_preset
    if schema is None:
        schema, default_spec = load_preset("payments", transactions.columns)
        spec = spec if spec is not None else default_spec
    if isinstance(schema, Mapping):
        schema = Schema.from_json(schema)
    events, labels = load_events(transactions, schema)
    return replay(events, labels, schema, spec).frame(transactions.index)


def as_matrix(features: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(features.to_numpy(dtype=np.float32))
