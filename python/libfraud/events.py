"""Events and labels as the core takes them: columnar NumPy arrays laid out by a declared schema.

One row per event: ``event_id`` and ``time_ms`` (int64, UTC epoch ms), ``amount`` (float64; 0 when
the schema has no amount), ``entity_id`` (int64 [n, E], -1 = absent), ``numeric`` (float64 [n, N],
NaN = missing) and ``categorical`` (int64 [n, C], -1 = missing), E/N/C and their order from the
schema (export/SCHEMA.md). The bindings read these arrays without copying.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ABSENT", "MISSING_CODE", "EventArrays", "LabelArrays"]

ABSENT = -1
"""An absent entity id."""
MISSING_CODE = -1
"""A missing categorical code."""


def _column(a, dtype, name: str, n: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name}: expected {n} rows, got {len(a)}")
    return a


def _matrix(a, dtype, name: str, n: int) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.ndim == 1 and n == 0:
        a = a.reshape(0, 0)
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n}, k), got {a.shape}")
    return a


@dataclass(frozen=True)
class EventArrays:
    """A batch of events in the core's layout (see the module docstring)."""

    event_id: np.ndarray
    time_ms: np.ndarray
    amount: np.ndarray
    entity_id: np.ndarray
    numeric: np.ndarray
    categorical: np.ndarray

    @classmethod
    def make(cls, event_id, time_ms, amount=None, entity_id=None, numeric=None,
             categorical=None) -> "EventArrays":
        event_id = _column(event_id, np.int64, "event_id")
        n = len(event_id)
        time_ms = _column(time_ms, np.int64, "time_ms", n)
        amount = np.zeros(n) if amount is None else _column(amount, np.float64, "amount", n)
        empty_i = np.zeros((n, 0), np.int64)
        entity_id = _matrix(empty_i if entity_id is None else entity_id, np.int64, "entity_id", n)
        numeric = _matrix(np.zeros((n, 0)) if numeric is None else numeric, np.float64, "numeric", n)
        categorical = _matrix(empty_i if categorical is None else categorical, np.int64,
                              "categorical", n)
        return cls(event_id, time_ms, amount, entity_id, numeric, categorical)

    def __len__(self) -> int:
        return len(self.event_id)

    def slice(self, start: int, stop: int) -> "EventArrays":
        s = slice(start, stop)
        return EventArrays(self.event_id[s], self.time_ms[s], self.amount[s], self.entity_id[s],
                           self.numeric[s], self.categorical[s])

    def take(self, index) -> "EventArrays":
        return EventArrays.make(self.event_id[index], self.time_ms[index], self.amount[index],
                                self.entity_id[index], self.numeric[index],
                                self.categorical[index])

    @classmethod
    def concat(cls, parts) -> "EventArrays":
        """The events of ``parts`` one after the other (empty batches skipped)."""
        parts = [p for p in parts if len(p)]
        if len(parts) <= 1:
            return parts[0] if parts else cls.make([], [])
        return cls.make(*(np.concatenate(columns) for columns in zip(*(p.args() for p in parts))))

    def args(self) -> tuple:
        """The arrays in the order the bindings take them."""
        return (self.event_id, self.time_ms, self.amount, self.entity_id, self.numeric,
                self.categorical)


@dataclass(frozen=True)
class LabelArrays:
    """Labels for stored events: ``label`` 0/1 (int8), known from ``label_time_ms``."""

    event_id: np.ndarray
    label: np.ndarray
    label_time_ms: np.ndarray

    @classmethod
    def make(cls, event_id, label, label_time_ms) -> "LabelArrays":
        event_id = _column(event_id, np.int64, "event_id")
        n = len(event_id)
        return cls(event_id, _column(label, np.int8, "label", n),
                   _column(label_time_ms, np.int64, "label_time_ms", n))

    def __len__(self) -> int:
        return len(self.event_id)

    @classmethod
    def concat(cls, parts) -> "LabelArrays | None":
        """The labels of ``parts`` (None and empty ones skipped); None when there are none."""
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else cls.make(*(np.concatenate(c) for c in zip(*(p.args() for p in parts))))

    def take(self, index) -> "LabelArrays":
        return LabelArrays.make(self.event_id[index], self.label[index], self.label_time_ms[index])

    def args(self) -> tuple:
        return (self.event_id, self.label, self.label_time_ms)
