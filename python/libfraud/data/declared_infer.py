"""A first draft of a schema and feature spec, from a look at the data (``libfraud schema infer``).

:func:`infer_schema` gives every column a proposed role from its name, type and values, and
writes the TOML the user then edits: each table says in a comment what was seen, columns it could
not place are listed commented out, and a starter feature section follows (a preset when the
columns are a preset's). The draft always parses back with ``load_config``.
"""

from __future__ import annotations

import json
import re
import warnings
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .declared import (
    MAX_ENTITIES, CategoricalField, DeclaredError, Entity, EventIdColumn, LabelColumn,
    NumericField, Schema, TimeColumn, _Ctx, _duration_text,
)
from .declared_spec import PRESETS, _spec_from_toml, load_preset

__all__ = ["infer_schema"]

_LABEL_NAME = re.compile(r"fraud|label|target|chargeback|is_bad", re.I)
_TIME_NAME = re.compile(r"time|date|timestamp|epoch|(^|_)ts($|_)|_at$", re.I)
_EVENT_NAME = re.compile(r"txn|transaction|event|trans|tx_?id|order|payment", re.I)
# card_id, CUSTOMER_ID, customerId, userID, id, session_key, device_uuid (not "paid", "valid")
_ID_NAME = re.compile(r"(?i:(^|_)(id|key|uuid|hash)($|_))|[a-z0-9](Id|ID)$")
_AMOUNT_NAME = re.compile(r"amount|amt|value|price|total|sum", re.I)
_EPOCH = (("s", 1e8, 1e11), ("ms", 1e11, 1e14), ("us", 1e14, 1e17))
_VOCABULARY = 32  # a string categorical's starter vocabulary: its most frequent values


@dataclass
class _Col:
    """What was seen in one column."""

    name: str
    kind: str  # int, float, bool, datetime, datetime_text, text, other
    n: int
    missing: int
    distinct: int
    integral: bool = False
    lo: float = np.nan
    hi: float = np.nan
    median: float = np.nan
    binary: bool = False
    fraud_share: float = np.nan
    top: tuple = ()  # the most frequent values (text), for a vocabulary

    @property
    def unique(self) -> bool:
        return self.missing == 0 and self.distinct == self.n and self.n > 0

    def epoch_unit(self) -> str | None:
        if self.kind not in ("int", "float") or not self.lo >= 0:
            return None
        return next((u for u, lo, hi in _EPOCH if lo <= self.median < hi), None)

    def describe(self) -> str:
        what = {"datetime_text": "date-time text"}.get(self.kind, self.kind)
        parts = [what, f"{self.distinct} distinct"]
        if self.kind in ("int", "float") and self.n > self.missing:
            parts.append(f"{_num(self.lo)}..{_num(self.hi)}")
        parts.append(f"{self.missing} empty" if self.missing else "no empty cells")
        return ", ".join(parts)


def _num(x: float) -> str:
    return f"{x:.4g}"


def _profile(s: pd.Series) -> _Col:
    n, missing = len(s), int(s.isna().sum())
    present = s.dropna()
    col = _Col(str(s.name), "other", n, missing, int(present.nunique()))
    if pd.api.types.is_bool_dtype(s):
        col.kind = "bool"
    elif pd.api.types.is_datetime64_any_dtype(s):
        col.kind = "datetime"
    elif pd.api.types.is_numeric_dtype(s):
        x = present.to_numpy(dtype=np.float64)
        col.kind = "int" if pd.api.types.is_integer_dtype(s) else "float"
        if len(x):
            col.lo, col.hi, col.median = float(x.min()), float(x.max()), float(np.median(x))
            col.integral = bool(np.all(np.isfinite(x)) and np.all(x == np.floor(x)))
    elif s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        text = present.astype(str).str.strip()
        col.missing += int((text == "").sum())
        text = text[text != ""]
        col.distinct = int(text.nunique())
        col.kind = "datetime_text" if _looks_datetime(text) else "text"
        if col.kind == "text" and col.distinct <= 1000:
            raw = present.astype(str)
            col.top = tuple(raw[raw.str.strip() != ""].value_counts().index[:_VOCABULARY])
    if col.kind in ("bool", "int", "float", "text"):
        vals = set(present.astype(str).str.strip().unique()[:3]) if col.distinct <= 2 else set()
        col.binary = 0 < len(vals) and vals <= {"0", "1", "0.0", "1.0", "True", "False"}
        if col.binary:
            col.fraud_share = float(np.mean(present.astype(str).isin(["1", "1.0", "True"])))
    return col


def _looks_datetime(text: pd.Series) -> bool:
    sample = text.head(200)
    if not len(sample) or not sample.str.contains(r"\d[-/:T ]\d|\d-\d", regex=True).all():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, utc=True, errors="coerce", format="ISO8601")
    return bool(parsed.notna().all())


def _frame(data, max_rows: int, read: dict) -> tuple[pd.DataFrame, str]:
    if isinstance(data, pd.DataFrame):
        return data.head(max_rows), "the data"
    from .input_file import read_table
    path = Path(data)
    return read_table(path, nrows=max_rows, typed=True, **read), path.name


def _name(col: str, taken: set, *, strip_id: bool = False) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", col)  # camelCase -> camel_case
    s = re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")
    if strip_id:
        s = re.sub(r"_?(id|key|uuid)$", "", s) or s
    if not s or not s[0].isalpha():
        s = f"f_{s}"
    if s == "amount":
        s = "amount_field"  # "amount" is reserved for the [amount]
    base, k = s, 2
    while s in taken:
        s, k = f"{base}_{k}", k + 1
    taken.add(s)
    return s


def infer_schema(data, *, name: str | None = None, max_rows: int = 200_000, **read) -> str:
    """A TOML draft of the schema and a starter feature spec for a frame or a .csv/.parquet file
    (the first ``max_rows`` rows are looked at; ``read``: read_table's encoding, max_cell_chars)."""
    df, source = _frame(data, max_rows, read)
    cols = {str(c): _profile(df[c]) for c in df.columns}
    if name is None:
        name = Path(data).stem if not isinstance(data, pd.DataFrame) else "data"
    for preset in PRESETS:
        schema = _preset_schema(preset, cols)
        if schema is not None:
            # the preset's schema, plus the data's other numeric and categorical columns
            free = [c for k, c in cols.items() if k not in _columns_of(schema)]
            taken = {*schema.entity_names, *(x.name for x in schema.numeric + schema.categorical)}
            _, numeric, categorical = _place(free, taken, entities=False)
            schema = replace(schema, name=name, numeric=schema.numeric + tuple(numeric),
                             categorical=schema.categorical + tuple(categorical))
            return _Draft(schema, cols, source, preset=preset,
                          extra=(len(numeric), len(categorical))).render()
    return _Draft(_guess(cols, name), cols, source).render()


def _preset_schema(preset: str, cols: dict[str, _Col]) -> Schema | None:
    """The preset's schema when the data has its columns (the label's may be missing: then
    without a label, if the preset's features do without)."""
    schema, _ = load_preset(preset, columns=list(cols))
    if not _columns_of(replace(schema, label=None)) <= set(cols):
        return None
    if schema.label is not None and schema.label.column not in cols:
        schema = replace(schema, label=None)
        try:
            _spec_from_toml({"preset": [{"name": preset}]}, schema, _Ctx(None))
        except DeclaredError:
            return None
    return schema


def _columns_of(s: Schema) -> set[str]:
    out = {s.event_id.column, s.time.column} | {x.column for x in s.entities}
    out |= {x.column for x in s.numeric} | {x.column for x in s.categorical}
    if s.amount is not None:
        out.add(s.amount)
    if s.label is not None:
        out |= {s.label.column, s.label.time_column} - {None}
    return out


def _pick(cols: list[_Col], *tests) -> _Col | None:
    """The first column passing the first test that any passes (tests in order of preference)."""
    for test in tests:
        for c in cols:
            if test(c):
                return c
    return None


def _guess(cols: dict[str, _Col], name: str) -> Schema:
    free = list(cols.values())

    def take(c: _Col | None) -> _Col | None:
        if c is not None:
            free.remove(c)
        return c

    label = take(_pick(free, lambda c: c.binary and bool(_LABEL_NAME.search(c.name))))
    time = take(_pick(free,
                      lambda c: c.kind in ("datetime", "datetime_text") and _time_named(c),
                      lambda c: c.epoch_unit() is not None and _time_named(c),
                      lambda c: c.kind in ("datetime", "datetime_text")))
    unit = None if time is None else ("datetime" if time.kind.startswith("datetime")
                                      else time.epoch_unit())
    label_time = None
    if label is not None and time is not None:
        label_time = take(_pick(free, lambda c: bool(_LABEL_NAME.search(c.name)) and _time_named(c)
                                and _unit_of(c) == unit))
    def idish(c: _Col) -> bool:
        return c.kind in ("int", "text") and c.unique

    event = take(_pick(free, lambda c: idish(c) and bool(_EVENT_NAME.search(c.name)),
                       lambda c: idish(c) and bool(_ID_NAME.search(c.name)), idish))
    amount = take(_pick(free, lambda c: c.kind in ("float", "int") and c.lo >= 0
                        and c.missing == 0 and bool(_AMOUNT_NAME.search(c.name))
                        and not _ID_NAME.search(c.name)))
    entities, numeric, categorical = _place(free, set(), entities=True)
    if not entities:
        # the core needs one: the category with the most values is the best guess
        best = max(categorical, key=lambda f: cols[f.column].distinct, default=None)
        if best is not None:
            categorical.remove(best)
            c = cols[best.column]
            entities.append(Entity(best.name, best.column, best.codes, c.missing == 0))
        else:
            entities.append(Entity("entity", "EDIT_ME"))
    lb = None
    if label is not None:
        lb = LabelColumn(label.name, None if label_time is None else label_time.name,
                         0 if label_time is not None else 7 * 86_400_000)
    return Schema(
        event_id=EventIdColumn(event.name if event else "EDIT_ME",
                               "int" if event is None or event.kind == "int" else "string"),
        time=TimeColumn(time.name if time else "EDIT_ME", unit or "ms"),
        entities=entities, amount=amount.name if amount else None, numeric=numeric,
        categorical=categorical, label=lb, name=name)


def _place(free: list[_Col], taken: set[str], *, entities: bool):
    """(entities, numeric, categorical) for the columns in ``free`` that have a role; placed
    columns leave ``free``. Without ``entities``, id-like columns stay free."""
    ents: list[Entity] = []
    numeric: list[NumericField] = []
    categorical: list[CategoricalField] = []
    for c in list(free):
        role = _role(c)
        if role == "entity" and entities and len(ents) < MAX_ENTITIES:
            # integer ids >= 0, where -1 is "absent" (as the legacy payments files write it)
            ints = c.kind in ("int", "float") and c.integral and c.lo >= -1
            required = c.missing == 0 and not (ints and c.lo < 0)
            ents.append(Entity(_name(c.name, taken, strip_id=True), c.name,
                               "int" if ints else "string", required))
        elif role == "categorical":
            codes = "int" if c.kind == "bool" or (c.integral and c.lo >= 0) else "string"
            categorical.append(CategoricalField(_name(c.name, taken), c.name, codes))
        elif role == "numeric":
            numeric.append(NumericField(_name(c.name, taken), c.name))
        else:
            continue
        free.remove(c)
    return ents, numeric, categorical


def _time_named(c: _Col) -> bool:
    return bool(_TIME_NAME.search(c.name))


def _unit_of(c: _Col) -> str | None:
    return "datetime" if c.kind.startswith("datetime") else c.epoch_unit()


def _role(c: _Col) -> str | None:
    """entity, categorical, numeric, or None (left to the user, with a reason: _why_not)."""
    if _why_not(c) is not None:
        return None
    low = c.distinct <= min(100, max(10, c.n // 20))
    if _ID_NAME.search(c.name) and (c.kind == "text" or c.integral):
        return "entity"
    if c.kind == "bool":
        return "categorical"
    if c.kind == "text" or (c.kind == "int" and c.lo >= 0):
        return "categorical" if low else "entity"
    if c.kind == "float" and c.integral and c.lo >= 0 and low:
        return "categorical"  # an int column with empty cells reads as floats
    return "numeric" if c.kind in ("int", "float") else None


def _why_not(c: _Col) -> str | None:
    if c.missing == c.n:
        return "always empty"
    if c.distinct <= 1:
        return "constant"
    if _LABEL_NAME.search(c.name):
        return "named like the label: it may leak it into the features"
    if c.kind in ("datetime", "datetime_text"):
        return "another date-time"
    if _time_named(c) and c.kind in ("int", "float"):
        return "named like a time, but not used as the time"
    if c.unique and c.kind in ("int", "text"):
        return "unique per row: no history to learn from"
    if c.kind == "other":
        return "a type the schema has no role for"
    return None


class _Draft:
    """Renders a schema (and a starter feature section) as commented TOML."""

    def __init__(self, schema: Schema, cols: dict[str, _Col], source: str,
                 preset: str | None = None, extra: tuple[int, int] = (0, 0)):
        self.s, self.cols, self.source, self.preset = schema, cols, source, preset
        self.extra = extra  # with a preset: how many numeric and categorical fields were added
        self.lines: list[str] = []

    def out(self, *lines: str) -> None:
        self.lines.extend(lines)

    def kv(self, key: str, value, comment: str = "") -> None:
        text = f"{key} = {_toml(value)}"
        self.out(f"{text:<31} # {comment}" if comment else text)

    def seen(self, column: str) -> str:
        c = self.cols.get(column)
        return c.describe() if c else "EDIT: not found in the data"

    def render(self) -> str:
        s = self.s
        n = next(iter(self.cols.values())).n if self.cols else 0
        self.out(f"# A draft declaration of {self.source} ({n} rows looked at, {len(self.cols)} "
                 f"columns), by libfraud schema infer.",
                 "# Check every role and key; comments say what was seen in each column.")
        if self.preset is not None:
            self.out(f"# The columns are those of the {self.preset!r} preset: its schema and "
                     f"features.")
        self.out("", "[schema]")
        self.kv("name", s.name)
        self.out("", "[event_id]")
        self.kv("column", s.event_id.column, self.seen(s.event_id.column))
        self.kv("ids", s.event_id.ids, '"int" (>= 0) or "string" (hashed)')
        self.out("", "[time]")
        self.kv("column", s.time.column, self.seen(s.time.column))
        self.kv("unit", s.time.unit, self._unit_note())
        self.kv("timezone", s.time.timezone, "IANA name: the calendar features' local time")
        if s.amount is not None:
            self.out("", "[amount]")
            self.kv("column", s.amount, self.seen(s.amount))
        for e in s.entities:
            self.out("", "[[entities]]")
            self.kv("name", e.name)
            self.kv("column", e.column, self.seen(e.column))
            self.kv("ids", e.ids)
            self.kv("required", e.required, "false: an empty cell means no such entity")
        for x in s.numeric:
            self.out("", "[[numeric]]")
            self.kv("name", x.name)
            self.kv("column", x.column, self.seen(x.column))
        for x in s.categorical:
            self.out("", "[[categorical]]")
            self.kv("name", x.name)
            self.kv("column", x.column, self.seen(x.column))
            self.kv("codes", x.codes)
        if s.label is not None:
            self._label()
        self._unplaced()
        self._features()
        return "\n".join(self.lines) + "\n"

    def _unit_note(self) -> str:
        c = self.cols.get(self.s.time.column)
        if c is None:
            return 'EDIT: "s", "ms", "us" (epoch numbers) or "datetime"'
        if c.kind in ("int", "float"):
            return f"epoch numbers around {_num(c.median)}: {self.s.time.unit!r} guessed"
        return "datetime64 or ISO-8601 text; naive = UTC"

    def _label(self) -> None:
        lb = self.s.label
        c = self.cols.get(lb.column)
        share = "" if c is None or math.isnan(c.fraud_share) else f", {c.fraud_share:.2%} are 1"
        self.out("", "[label]")
        self.kv("column", lb.column, f"0/1{share}; empty = unknown")
        if lb.time_column is not None:
            self.kv("time_column", lb.time_column, "when each label became known")
        note = ("used where the label time is empty" if lb.time_column is not None else
                "EDIT: how long after an event its label becomes known")
        self.kv("delay", _duration_text(lb.delay_ms) if lb.delay_ms else "0s", note)

    def _unplaced(self) -> None:
        used = _columns_of(self.s)
        rest = [c for name, c in self.cols.items() if name not in used]
        if not rest:
            return
        self.out("", "# Columns not declared (declare one under a table above to use it):")
        for c in rest:
            why = _why_not(c) or "not placed"
            if why == "not placed" and _role(c) == "entity":
                why = ("past the 16 entities the core takes" if self.preset is None else
                       "id-like: an entity the preset's features do not use")
            self.out(f"#   {_toml(c.name)}: {c.describe()}; {why}")

    def _features(self) -> None:
        self.out("", "[features]")
        self.kv("max_scan", 1024, "scans read at most this many recent events of an entity")
        s = self.s
        if self.preset is not None:
            self.out("", "[[preset]]")
            self.kv("name", self.preset, "expands to the preset's features")
            n_num, n_cat = self.extra
            if n_num or n_cat:
                self.out("", "# The data's other fields, as they are.")
            self._fields(s.numeric[len(s.numeric) - n_num:],
                         s.categorical[len(s.categorical) - n_cat:])
            return
        self.out("", "# A starter set: the event, then per entity its activity, recency"
                 + (" and fraud rate." if s.label is not None else "."))
        if s.amount is not None:
            self.feature(kind="amount")
            self.feature(kind="log_amount")
        self.feature(kind="calendar", part="hour")
        self._fields(s.numeric, s.categorical)
        for e in s.entities:
            for w in ("24h", "7d"):
                self.feature(kind="window", entity=e.name, agg="count", window=w)
            if s.amount is not None:
                self.feature(kind="window", entity=e.name, agg="mean", field="amount", window="7d")
            self.feature(kind="time_since_last", entity=e.name)
            if s.label is not None:
                self.feature(kind="label", entity=e.name, agg="fraud_rate", window="30d",
                             offset="label_delay")

    def _fields(self, numeric, categorical) -> None:
        """Pass-through features of numeric and categorical fields."""
        for x in numeric:
            self.feature(kind="numeric", field=x.name)
        for x in categorical:
            top = self.cols[x.column].top if x.column in self.cols else ()
            if x.codes == "string" and top:
                # a hashed code means nothing as a number: index the frequent values instead
                self.feature(kind="categorical", field=x.name, vocabulary=list(top))
            else:
                self.feature(kind="categorical", field=x.name)

    def feature(self, **keys) -> None:
        self.out("", "[[feature]]")
        for k, v in keys.items():
            self.kv(k, v, "= the [label] delay: labels not known yet stay out" if v == "label_delay"
                    else "")


def _toml(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml, v)) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)  # a JSON string is a TOML basic string
