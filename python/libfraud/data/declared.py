"""The user-declared schema (export/SCHEMA.md), read from TOML, written as JSON.

:class:`Schema` says which of the user's columns is the event id, the time, the amount, each entity,
each numeric and categorical field and the label; :class:`FeatureSpec` is the list of features the
core computes, each a dict in the JSON form of SCHEMA.md (durations in ms, string codes hashed).
Both are validated when built, so a bad declaration fails when it is loaded, not when it is scored;
errors (:class:`DeclaredError`) name the file and the TOML key.

This module holds the schema and what both share; the feature spec is in ``declared_spec``,
reading data with a schema (:func:`load_events`) in ``declared_load``, drafting a declaration
from data (:func:`infer_schema`) in ``declared_infer``. All are importable from here.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, NoReturn

import numpy as np

from .schema import SchemaError

__all__ = [
    "CategoricalField", "DeclaredError", "Entity", "EventIdColumn", "FeatureSpec", "LabelColumn",
    "NumericField", "PRESETS", "Schema", "TimeColumn", "default_feature_name", "hash_ids",
    "infer_schema", "load_config", "load_events", "load_labels", "load_preset", "load_schema", "load_spec",
    "parse_duration", "show_value", "utc_offsets", "window_label",
]

SCHEMA_FORMAT, FORMAT_VERSION = "libfraud-schema", 1
MAX_ENTITIES = 16
INT64_MIN = -(2 ** 63)

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
# "amount" is what `field = "amount"` means; a field of that name would be ambiguous.
_RESERVED = frozenset({"amount"})
_DAY = 86_400_000


class DeclaredError(SchemaError):
    """A declaration (schema, feature spec) or a data value that breaks one.

    ``path`` is the file at fault (the TOML file for a declaration, the data file for a value),
    ``key`` the TOML key (``[[entities]] 2 'terminal'``), ``row`` (0-based, header excluded) and
    ``column`` locate a value; ``line`` is the line of a CSV file where that row starts.
    """

    def __init__(self, reason: str, *, path: str | None = None, key: str | None = None,
                 row: int | None = None, column: str | None = None, line: int | None = None):
        self.key = key
        super().__init__(reason, row=row, column=column, line=line,
                         path=None if path is None else str(path))

    def _format(self) -> str:
        parts = [self.path] if self.path else []
        if self.row is not None:
            loc = f"row {self.row}" + (f" (line {self.line})" if self.line is not None else "")
            loc += f", column {self.column!r}" if self.column else ""
            parts.append(loc + (f" ({self.key})" if self.key else ""))
        elif self.key:
            parts.append(self.key)
        return ": ".join(parts + [self.reason])


@dataclass(frozen=True)
class _Ctx:
    """Where a declaration is being read: the file and the key, for error messages."""

    path: str | None
    key: str | None = None

    def at(self, key: str) -> "_Ctx":
        return _Ctx(self.path, f"{self.key}: {key}" if self.key else key)

    def fail(self, reason: str, column: str | None = None) -> NoReturn:
        raise DeclaredError(reason, path=self.path, key=self.key, column=column)


_REQUIRED = object()


class _Table:
    """One TOML table being read: typed keys, and unknown keys refused (they are typos)."""

    def __init__(self, data: Any, ctx: _Ctx):
        if not isinstance(data, Mapping):
            ctx.fail(f"must be a table, got {_type(data)}")
        self.data, self.ctx, self.used = data, ctx, set()

    def get(self, key: str, types: type | tuple, default: Any = _REQUIRED) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                self.ctx.fail(f"missing key {key!r}")
            return default
        v = self.data[key]
        types = _tuple(types)
        if object in types:
            return v
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            want = " or ".join(t.__name__ for t in types)
            self.ctx.fail(f"{key}: expected {want}, got {_type(v)} {v!r}")
        return v

    def done(self) -> None:
        extra = [k for k in self.data if k not in self.used]
        if extra:
            self.ctx.fail(f"unknown key {extra[0]!r} (keys: {', '.join(sorted(self.used))})")


_SHOWN_CHARS = 80  # a value longer than this is cut in messages (a hostile cell may be megabytes)


def show_value(v: Any) -> str:
    """A value as every message shows it: text quoted, numbers plain (12, not np.float64(12.0)),
    long text cut with its length said."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 63:
        v = int(v)
    if isinstance(v, (str, bytes)) and len(v) > _SHOWN_CHARS:
        return f"{v[:_SHOWN_CHARS]!r}... ({len(v):,} characters)"
    text = str(v) if isinstance(v, datetime) else repr(v)  # pd.Timestamp is a datetime
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text):,} characters)"


def _tuple(t) -> tuple:
    return t if isinstance(t, tuple) else (t,)


def _type(v: Any) -> str:
    names = {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
             int: "an integer", float: "a float"}
    return names.get(type(v), type(v).__name__)


# ---------------------------------------------------------------------------------------------
# Durations, window labels, timezones, hashing

_DURATION = re.compile(r"\s*(\d+)\s*(ms|s|m|h|d)\s*\Z")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": _DAY}


def parse_duration(value: Any) -> int:
    """Milliseconds from ``"90s"``, ``"30m"``, ``"1h"``, ``"7d"``, ``"1500ms"`` or an int of ms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{value!r} is not a duration (write \"90s\", \"30m\", \"24h\", \"7d\", "
                         f"\"1500ms\" or an integer number of milliseconds)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def window_label(ms: int) -> str:
    """A window in feature names: the largest unit that divides it (days only from 2 days on)."""
    if ms >= 2 * _DAY and ms % _DAY == 0:
        return f"{ms // _DAY}d"
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _duration_text(ms: int) -> str:
    """A duration as TOML text users read ("7d", "24h", ...): like window_label, days from 1 day."""
    return f"{ms // _DAY}d" if ms and ms % _DAY == 0 else window_label(ms)


@lru_cache(maxsize=64)
def _offsets(tz: str) -> tuple[tuple[int, int], ...]:
    zone = zoneinfo.ZoneInfo(tz)

    def off(t: int) -> int:
        return int(datetime.fromtimestamp(t, zone).utcoffset().total_seconds())

    # Scan 1970-2100 in 6-hour steps (no zone changes twice within 6 hours) and bisect each change
    # to the second; zoneinfo has no public list of transitions.
    step, end = 6 * 3600, int(datetime(2101, 1, 1, tzinfo=timezone.utc).timestamp())
    cur = off(0)
    out, t = [(INT64_MIN, cur)], 0
    while t < end:
        if off(t + step) == cur:
            t += step
            continue
        lo, hi = t, t + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if off(mid) == cur else (lo, mid)
        cur, t = off(hi), hi
        out.append((hi * 1000, cur))
    return tuple(out)


def utc_offsets(tz: str) -> list[list[int]]:
    """The timezone table of SCHEMA.md: ``[[utc_ms_from, offset_seconds], ...]``, 1970-2100."""
    return [list(e) for e in _offsets(tz)]


def hash_ids(strings) -> np.ndarray:
    """int64 ids of strings by the core's ``fraud_hash_id`` (SCHEMA.md "Ids"), one per string."""
    from .. import _core  # lazily, so that declarations without string codes need no core
    strings = [str(s) for s in strings]
    return np.asarray(_core.hash_ids(strings), dtype=np.int64) if strings else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------
# Schema

_UNITS = ("s", "ms", "us", "datetime")
_ID_KINDS = ("int", "string")


@dataclass(frozen=True)
class EventIdColumn:
    column: str
    ids: str = "int"


@dataclass(frozen=True)
class TimeColumn:
    column: str
    unit: str
    timezone: str = "UTC"


@dataclass(frozen=True)
class Entity:
    name: str
    column: str
    ids: str = "int"
    required: bool = True


@dataclass(frozen=True)
class NumericField:
    name: str
    column: str


@dataclass(frozen=True)
class CategoricalField:
    name: str
    column: str
    codes: str = "int"


@dataclass(frozen=True)
class LabelColumn:
    column: str
    time_column: str | None = None
    delay_ms: int = 0


@dataclass(frozen=True)
class Schema:
    """The roles and types of the user's columns. Validated when built (see SCHEMA.md)."""

    event_id: EventIdColumn
    time: TimeColumn
    entities: tuple[Entity, ...]
    amount: str | None = None
    """The amount column, or None: no amount (the core stores 0; amount features are refused)."""
    numeric: tuple[NumericField, ...] = ()
    categorical: tuple[CategoricalField, ...] = ()
    label: LabelColumn | None = None
    name: str = ""
    source: str | None = field(default=None, compare=False)
    """The file it was read from, for error messages."""

    def __post_init__(self):
        for key in ("entities", "numeric", "categorical"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        _check_schema(self, _Ctx(self.source))

    @property
    def entity_names(self) -> list[str]:
        return [e.name for e in self.entities]

    def role(self, name: str) -> str | None:
        """"entity", "numeric" or "categorical" for a declared name, else None."""
        for role, items in (("entity", self.entities), ("numeric", self.numeric),
                            ("categorical", self.categorical)):
            if any(x.name == name for x in items):
                return role
        return None

    def categorical_field(self, name: str) -> CategoricalField:
        return next(c for c in self.categorical if c.name == name)

    def to_json(self) -> dict:
        t, lb = self.time, self.label
        return {
            "format": SCHEMA_FORMAT, "version": FORMAT_VERSION, "name": self.name,
            "event_id": {"column": self.event_id.column, "ids": self.event_id.ids},
            "time": {"column": t.column, "unit": t.unit, "timezone": t.timezone,
                     "utc_offsets": utc_offsets(t.timezone)},
            "amount": None if self.amount is None else {"column": self.amount},
            "entities": [{"name": e.name, "column": e.column, "ids": e.ids, "required": e.required}
                         for e in self.entities],
            "numeric": [{"name": x.name, "column": x.column} for x in self.numeric],
            "categorical": [{"name": c.name, "column": c.column, "codes": c.codes}
                            for c in self.categorical],
            "label": None if lb is None else {"column": lb.column, "time_column": lb.time_column,
                                              "delay_ms": lb.delay_ms},
        }

    @classmethod
    def from_json(cls, d: Mapping, *, source: str | None = None) -> "Schema":
        """The schema of a manifest's ``schema`` object. ``utc_offsets`` is not read back: it is
        recomputed from ``timezone`` (the bundle's table is the core's business)."""
        ctx = _Ctx(source, "schema")
        t = _Table(d, ctx)
        if t.get("format", str) != SCHEMA_FORMAT or t.get("version", int) != FORMAT_VERSION:
            ctx.fail(f"expected format {SCHEMA_FORMAT!r} version {FORMAT_VERSION}, got "
                     f"{d.get('format')!r} version {d.get('version')!r}")
        eid = _Table(t.get("event_id", dict), ctx.at("event_id"))
        tm = _Table(t.get("time", dict), ctx.at("time"))
        time = TimeColumn(tm.get("column", str), tm.get("unit", str), tm.get("timezone", str))
        tm.get("utc_offsets", list, None)
        amount = t.get("amount", (dict, type(None)))
        label = t.get("label", (dict, type(None)))
        out = dict(
            name=t.get("name", str, ""),
            event_id=EventIdColumn(eid.get("column", str), eid.get("ids", str)), time=time,
            amount=None if amount is None else _json_items(amount, ctx.at("amount"),
                                                           column=str)["column"],
            entities=[Entity(**_json_items(e, ctx.at(f"entities[{i}]"),
                                           column=str, ids=str, required=bool, name=str))
                      for i, e in enumerate(t.get("entities", list))],
            numeric=[NumericField(**_json_items(x, ctx.at(f"numeric[{i}]"), name=str, column=str))
                     for i, x in enumerate(t.get("numeric", list))],
            categorical=[CategoricalField(**_json_items(x, ctx.at(f"categorical[{i}]"), name=str,
                                                        column=str, codes=str))
                         for i, x in enumerate(t.get("categorical", list))],
            label=None if label is None else LabelColumn(**_json_items(
                label, ctx.at("label"), column=str, time_column=(str, type(None)), delay_ms=int)),
        )
        for sub in (eid, tm, t):
            sub.done()
        return cls(**out, source=source)


def _json_items(d: Any, ctx: _Ctx, **types) -> dict:
    t = _Table(d, ctx)
    out = {k: t.get(k, ty) for k, ty in types.items()}
    t.done()
    return out


def _check_schema(s: Schema, ctx: _Ctx) -> None:
    eid, tm = s.event_id, s.time
    for key, col in [("[event_id]", eid.column), ("[time]", tm.column)] + (
            [("[amount]", s.amount)] if s.amount is not None else []):
        _check_column(col, ctx.at(f"{key} column"))
    if eid.ids not in _ID_KINDS:
        ctx.at("[event_id] ids").fail(f"{eid.ids!r} is not one of {', '.join(_ID_KINDS)}")
    if tm.unit not in _UNITS:
        ctx.at("[time] unit").fail(f"{tm.unit!r} is not one of {', '.join(_UNITS)}")
    try:
        zoneinfo.ZoneInfo(tm.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        ctx.at("[time] timezone").fail(f"{tm.timezone!r} is not an IANA timezone name "
                                       f"(e.g. \"UTC\", \"Europe/Paris\")")
    if not 1 <= len(s.entities) <= MAX_ENTITIES:
        ctx.at("[[entities]]").fail(f"declare 1 to {MAX_ENTITIES} entities, got {len(s.entities)}")
    seen: dict[str, str] = {}
    for table, items in (("entities", s.entities), ("numeric", s.numeric),
                         ("categorical", s.categorical)):
        for i, x in enumerate(items, 1):
            key = ctx.at(f"[[{table}]] {i} {x.name!r}")
            if not isinstance(x.name, str) or not _NAME.match(x.name):
                key.fail(f"name {x.name!r} must match [a-z][a-z0-9_]*")
            if x.name in _RESERVED:
                key.fail(f"name {x.name!r} is reserved (field = \"amount\" means the [amount])")
            if x.name in seen:
                key.fail(f"name {x.name!r} is already declared in {seen[x.name]}")
            seen[x.name] = f"[[{table}]] {i}"
            _check_column(x.column, key.at("column"))
            if table == "entities":
                if x.ids not in _ID_KINDS:
                    key.at("ids").fail(f"{x.ids!r} is not one of {', '.join(_ID_KINDS)}")
                if not isinstance(x.required, bool):
                    key.at("required").fail(f"expected true or false, got {x.required!r}")
            if table == "categorical" and x.codes not in _ID_KINDS:
                key.at("codes").fail(f"{x.codes!r} is not one of {', '.join(_ID_KINDS)}")
    if s.label is not None:
        _check_column(s.label.column, ctx.at("[label] column"))
        if s.label.time_column is not None:
            _check_column(s.label.time_column, ctx.at("[label] time_column"))
        d = s.label.delay_ms
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            ctx.at("[label] delay").fail(f"must be a duration >= 0, got {d!r}")


def _check_column(col: Any, ctx: _Ctx) -> None:
    if not isinstance(col, str) or not col:
        ctx.fail(f"expected a column name, got {col!r}")


_SCHEMA_TABLES = ("schema", "event_id", "time", "amount", "entities", "numeric", "categorical",
                  "label")
_SPEC_TABLES = ("features", "feature", "preset", "reason")


def _read_toml(path) -> tuple[dict, _Ctx]:
    path = Path(path)
    ctx = _Ctx(path.name)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        ctx.fail(f"not valid TOML: {e}")
    unknown = [k for k in doc if k not in _SCHEMA_TABLES + _SPEC_TABLES]
    if unknown:
        tables = ", ".join(_SCHEMA_TABLES + _SPEC_TABLES)
        ctx.fail(f"unknown table [{unknown[0]}] (tables: {tables})")
    return doc, ctx


def _schema_from_toml(doc: Mapping, ctx: _Ctx) -> Schema:
    if "event_id" not in doc and "time" not in doc:
        ctx.fail("declares no schema (no [event_id] and no [time] table)")

    def table(key: str) -> _Table:
        if key not in doc:
            ctx.fail(f"missing table [{key}]")
        return _Table(doc[key], ctx.at(f"[{key}]"))

    def array(key: str) -> list:
        v = doc.get(key, [])
        if not isinstance(v, list):
            ctx.at(key).fail(f"must be an array of tables: write [[{key}]]")
        return v

    head = _Table(doc.get("schema", {}), ctx.at("[schema]"))
    name = head.get("name", str, "")
    head.done()
    t = table("event_id")
    eid = EventIdColumn(t.get("column", str), t.get("ids", str, "int"))
    t.done()
    t = table("time")
    time = TimeColumn(t.get("column", str), t.get("unit", str), t.get("timezone", str, "UTC"))
    t.done()
    amount = None
    if "amount" in doc:
        t = table("amount")
        amount = t.get("column", str)
        t.done()

    def items(key: str, make, **types):
        out = []
        for i, raw in enumerate(array(key), 1):
            label = raw.get("name") if isinstance(raw, Mapping) else None
            t = _Table(raw, ctx.at(f"[[{key}]] {i}" + (f" {label!r}" if label else "")))
            out.append(make(**{k: t.get(k, *ty) for k, ty in types.items()}))
            t.done()
        return out

    entities = items("entities", Entity, name=(str,), column=(str,), ids=(str, "int"),
                     required=(bool, True))
    numeric = items("numeric", NumericField, name=(str,), column=(str,))
    categorical = items("categorical", CategoricalField, name=(str,), column=(str,),
                        codes=(str, "int"))
    label = None
    if "label" in doc:
        t = table("label")
        column, time_column = t.get("column", str), t.get("time_column", str, None)
        delay = _duration(t, "delay", 0, allow_zero=True)
        t.done()
        label = LabelColumn(column, time_column, delay)
    return Schema(event_id=eid, time=time, entities=entities, amount=amount, numeric=numeric,
                  categorical=categorical, label=label, name=name, source=ctx.path)


def _duration(t: _Table, key: str, default: Any = _REQUIRED, *, allow_zero: bool = False) -> int:
    raw = t.get(key, (str, int), default)
    try:
        ms = parse_duration(raw)
    except ValueError as e:
        t.ctx.fail(f"{key}: {e}")
    if ms < 0 or (ms == 0 and not allow_zero):
        t.ctx.fail(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {raw!r}")
    return ms


def load_schema(path) -> Schema:
    """The schema declared in a TOML file (which may also hold the feature spec)."""
    doc, ctx = _read_toml(path)
    return _schema_from_toml(doc, ctx)


_LAZY = {"FeatureSpec": "declared_spec", "default_feature_name": "declared_spec",
         "load_spec": "declared_spec", "load_config": "declared_spec",
         "load_preset": "declared_spec", "PRESETS": "declared_spec",
         "load_events": "declared_load", "load_labels": "declared_load", "infer_schema": "declared_infer"}


def __getattr__(name: str):
    # The feature spec, loading and inference live in their own modules, which import this one;
    # resolved lazily so that no import cycle runs.
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
