"""JSON events and labels to the core's arrays, by the bundle's declared schema.

A request body holds events as JSON objects keyed by the user's own column names (the schema's
``column`` of each field), exactly as a CSV row would. Values JSON already types the way the
schema declares (integer ids and codes, string ids and codes, numbers, ``null`` for missing or
absent) are converted here directly; anything else (text numbers, date-time text, a value the
schema refuses) goes through :func:`libfraud.data.declared.load_events`, the one loader of the
package, which converts it the same way or names the event, the column and what is wrong. So the
fast path only decides *when* to convert; what a value means is load_events' rule, and the tests
hold the two to the same arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.declared import DeclaredError, Schema, hash_ids, load_events
from ..data.declared_load import load_labels
from ..events import ABSENT, MISSING_CODE, EventArrays, LabelArrays

__all__ = ["EventDecoder", "RequestError"]

_INT64_MAX = 2 ** 63 - 1
_PER_MS = {"s": 1000, "ms": 1}


class RequestError(ValueError):
    """A request value the service refuses: ``loc`` is its place in the body (FastAPI's 422
    convention: ``["body", "events", 3, "amount"]``), ``msg`` says what is wrong."""

    def __init__(self, loc: list, msg: str, kind: str = "value_error"):
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind

    def detail(self) -> list[dict]:
        return [{"loc": self.loc, "msg": self.msg, "type": self.kind}]


class _Slow(Exception):
    """A value outside the fast path: convert the whole batch with load_events."""


def _is_int(v) -> bool:
    return type(v) is int and -2 ** 63 <= v <= _INT64_MAX


def _is_number(v) -> bool:
    return (type(v) is int and abs(v) < 2 ** 53) or (type(v) is float and math.isfinite(v))


@dataclass(frozen=True)
class _Spec:
    column: str
    kind: str          # "int" | "string" (ids and codes), "number"
    required: bool = True


class EventDecoder:
    """Converts lists of JSON objects (dicts) to EventArrays / LabelArrays for one schema."""

    def __init__(self, schema: Schema, max_events: int):
        self.schema, self.max_events = schema, max_events
        self._id = _Spec(schema.event_id.column, schema.event_id.ids)
        self._time_unit = schema.time.unit
        self._entities = [_Spec(e.column, e.ids, e.required) for e in schema.entities]
        self._numeric = [x.column for x in schema.numeric]
        self._categorical = [_Spec(c.column, c.codes) for c in schema.categorical]
        # Every declared column, so that a key left out of an event reads as null on both paths.
        self._columns = [self._id.column, schema.time.column] + ([schema.amount] if schema.amount else []) + [
            s.column for s in self._entities] + self._numeric + [s.column for s in self._categorical]

    def _records(self, body, key: str) -> list:
        """The body's list under ``key`` (``{"events": [...]}``), or a single object as one."""
        if isinstance(body, dict) and key in body:
            records = body[key]
            if not isinstance(records, list):
                raise RequestError(["body", key], f"'{key}' must be a list of objects")
        elif isinstance(body, dict):
            records = [body]
        else:
            raise RequestError(["body"], f"expected a JSON object (one event, or {{\"{key}\": [...]}})")
        if not records:
            raise RequestError(["body", key], f"'{key}' is empty")
        if len(records) > self.max_events:
            raise RequestError(["body", key], f"{len(records)} {key} in one request; at most {self.max_events} "
                                              f"(--max-batch)")
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise RequestError(["body", key, i], f"{key} {i} is not a JSON object")
        return records

    def events(self, body) -> tuple[EventArrays, list]:
        """(the core's arrays, the event ids as sent) of a request body."""
        records = self._records(body, "events")
        ids = [r.get(self._id.column) for r in records]
        try:
            return self._fast(records, ids), ids
        except _Slow:
            pass
        try:
            frame = pd.DataFrame.from_records(records, columns=self._columns)
            return load_events(frame, self.schema, path="request", labels=False)[0], ids
        except DeclaredError as e:
            raise _located(e, "events") from None

    def labels(self, body) -> LabelArrays:
        if self.schema.label is None:
            raise RequestError(["body"], "the bundle's schema declares no [label]: it takes no labels")
        records = self._records(body, "labels")
        try:
            frame = pd.DataFrame.from_records(records)
            return load_labels(frame, self.schema, path="request")
        except DeclaredError as e:
            raise _located(e, "labels") from None

    # The fast path: JSON values already of the declared type; anything else raises _Slow.
    def _fast(self, records: list, ids: list) -> EventArrays:
        n = len(records)
        if self._time_unit == "datetime":
            raise _Slow
        event_id = self._ids(ids, self._id.kind, 0)
        if len(set(event_id.tolist())) != n:
            raise _Slow  # a duplicate: load_events names both rows
        t = [r.get(self.schema.time.column) for r in records]
        if not all(_is_int(v) for v in t):
            raise _Slow
        time_ms = np.array(t, np.int64)
        time_ms = time_ms // 1000 if self._time_unit == "us" else time_ms * _PER_MS[self._time_unit]
        if n > 1 and bool(np.any(time_ms[1:] < time_ms[:-1])):
            raise _Slow
        amount = None
        if self.schema.amount is not None:
            a = [r.get(self.schema.amount) for r in records]
            if not all(_is_number(v) and v >= 0 for v in a):
                raise _Slow
            amount = np.array(a, np.float64)
        ent = np.empty((n, len(self._entities)), np.int64)
        for k, s in enumerate(self._entities):
            ent[:, k] = self._ids([r.get(s.column) for r in records], s.kind, 0 if s.required else ABSENT)
        num = np.empty((n, len(self._numeric)))
        for k, c in enumerate(self._numeric):
            col = [r.get(c) for r in records]
            if not all(v is None or _is_number(v) for v in col):
                raise _Slow
            num[:, k] = [math.nan if v is None else v for v in col]
        cat = np.empty((n, len(self._categorical)), np.int64)
        for k, s in enumerate(self._categorical):
            cat[:, k] = self._ids([r.get(s.column) for r in records], s.kind, MISSING_CODE, missing=MISSING_CODE)
        return EventArrays.make(event_id, time_ms, amount, ent, num, cat)

    @staticmethod
    def _ids(values: list, kind: str, least: int, missing: int = ABSENT) -> np.ndarray:
        """int64 ids or codes: ints >= ``least`` (0 when required; -1, the "absent" or "missing"
        value, when not) or strings to hash; None = ``missing`` where allowed (``least`` < 0)."""
        if least >= 0 and any(v is None for v in values):
            raise _Slow
        if kind == "string":
            if not all(v is None or (type(v) is str and v.strip()) for v in values):
                raise _Slow
            given = [v for v in values if v is not None]
            hashed = iter(hash_ids(given).tolist())
            return np.array([missing if v is None else next(hashed) for v in values], np.int64)
        if not all(v is None or (_is_int(v) and v >= least) for v in values):
            raise _Slow
        return np.array([missing if v is None else v for v in values], np.int64)


def _located(e: DeclaredError, key: str) -> RequestError:
    """load_events' error as a body location: row = the index in the list, column = the key."""
    loc = ["body", key]
    if e.row is not None:
        loc.append(e.row)
    if e.column is not None:
        loc.append(e.column)
    reason = e.reason if e.row is not None or e.column is not None else str(e)
    return RequestError(loc, reason)
