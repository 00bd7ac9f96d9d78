"""Point-in-time features for training: the history replayed through the C++ core's own store
and feature code, so training and serving cannot disagree."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .data.schema import coerce_transactions, to_txn_records


@dataclass(frozen=True)
class FeatureConfig:
    """Mirrors the core's FeatureConfig; written into the bundle's manifest (features.config)."""

    windows_ms: tuple[int, ...] = (3_600_000, 86_400_000, 604_800_000)
    distinct_window_ms: int = 86_400_000
    # Scans (distinct counts, novelty) read at most this many recent events: bounded cost per score.
    max_scan: int = 1024

    def to_core(self):
        from . import _core
        return _core.FeatureConfig(windows_ms=list(self.windows_ms),
                                   distinct_window_ms=self.distinct_window_ms,
                                   max_scan=self.max_scan)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["windows_ms"] = list(self.windows_ms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(windows_ms=tuple(d["windows_ms"]), distinct_window_ms=d["distinct_window_ms"],
                   max_scan=d["max_scan"])


def feature_names(config: FeatureConfig = FeatureConfig()) -> list[str]:
    from . import _core
    return list(_core.feature_names(config.to_core()))


def replay_features(transactions: pd.DataFrame, config: FeatureConfig = FeatureConfig()) -> pd.DataFrame:
    """Each row's features as the core computes them when that transaction arrives: from the
    history strictly before it. Rows must be in time order (the store refuses otherwise)."""
    from . import _core
    records = to_txn_records(coerce_transactions(transactions))
    store = _core.Store(config.to_core(), expected_transactions=len(records))
    matrix = store.features_and_ingest(records)
    return pd.DataFrame(matrix, columns=list(store.feature_names), index=transactions.index)


def as_matrix(features: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(features.to_numpy(dtype=np.float32))
