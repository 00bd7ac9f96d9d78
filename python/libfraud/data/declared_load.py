"""Events and labels from a pandas DataFrame in the user's own columns, by a declared schema.

:func:`load_events` converts each declared column to the core's layout (``libfraud.events``):
time to UTC epoch ms, string ids and codes hashed by the core, empty cells to the schema's
"absent"/"missing" values. A bad value raises :class:`DeclaredError` naming the data file, the
row (0-based position in the frame), the column and the schema key that declared it; for a frame
read by ``read_table`` the file and, in a CSV, the line come from the frame itself.
"""

from __future__ import annotations

import warnings
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from ..events import ABSENT, MISSING_CODE, EventArrays, LabelArrays
from .declared import DeclaredError, Schema, hash_ids, show_value as _show

__all__ = ["load_events"]

_INT64_MAX = np.iinfo(np.int64).max
_EXACT = 2.0 ** 53  # from here on a float64 stands for more than one integer (2**53 + 1 reads as 2**53)
_PER_MS = {"s": 1000, "ms": 1}  # "us" divides by 1000


class _Column:
    """One declared column of the frame: its cells, and errors that locate them."""

    def __init__(self, df: pd.DataFrame, name: str, key: str, path: str | None, line_of=None):
        self.s, self.name, self.key, self.path, self.line_of = df[name], name, key, path, line_of

    def fail(self, row, reason: str):
        line = self.line_of(int(row)) if self.line_of else None
        raise DeclaredError(reason, path=self.path, key=self.key, row=int(row), column=self.name, line=line)

    def not_ids_of(self, kind: str, what: str) -> None:
        """Fails for a column of booleans or bytes: ids are integers or text, and hashing
        ``True`` or ``b'x'`` would store ids no switch computes."""
        found = self.s.dtype.kind == "b" and "boolean"
        if not found and self.s.dtype == object:
            found = {"boolean": "boolean", "bytes": "bytes"}.get(pd.api.types.infer_dtype(self.s, skipna=True))
        if found:
            self.fail(int(np.argmax(~self.empty())),  # the first cell with a value
                      f"a {found} column ({self.s.dtype}), but {what} are integers or strings "
                      f"(ids = \"{kind}\"): convert the column")

    def first(self, mask: np.ndarray, reason) -> None:
        """Fails at the first row of ``mask``; ``reason(row)`` says why."""
        if mask.any():
            i = int(np.argmax(mask))
            self.fail(i, reason(i))

    def empty(self) -> np.ndarray:
        """Cells with no value: NA/NaN, or a blank string."""
        na = pd.isna(self.s).to_numpy(dtype=bool)
        if _is_text(self.s):
            text = self.s.to_numpy(dtype=object)
            na = na | np.array([isinstance(v, str) and not v.strip() for v in text], dtype=bool)
        return na

    def numbers(self) -> tuple[np.ndarray, np.ndarray]:
        """(float64 values, empty mask); a cell that is not a number fails."""
        empty = self.empty()
        if self.s.dtype.kind == "b":
            self.fail(0, f"a boolean column ({self.s.dtype}), expected numbers")
        if _is_text(self.s):
            x = pd.to_numeric(self.s.where(~empty, None), errors="coerce").to_numpy(np.float64)
            self.first(np.isnan(x) & ~empty, lambda i: f"{_show(self.s.iat[i])} is not a number")
        else:
            try:
                x = self.s.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                self.fail(0, f"cannot read a {self.s.dtype} column as numbers")
        return np.where(empty, np.nan, x), empty

    def ints(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(int64 values, empty mask) of an integer column: ints, integral floats or their text."""
        empty = self.empty()
        kind = self.s.dtype.kind
        hint = f" (declare {what} = \"string\" to hash values that are not integers)"
        if kind in "iub":
            vals = self.s.to_numpy(dtype=object if kind == "u" else np.int64, na_value=0)
            if kind == "u":
                self.first(vals > _INT64_MAX, lambda i: f"{vals[i]} overflows int64")
            return vals.astype(np.int64), empty
        if kind == "f":
            x = np.where(empty, 0.0, self.s.to_numpy(dtype=np.float64, na_value=np.nan))
            self.first(~np.isfinite(x) | (x != np.floor(x)),
                       lambda i: f"{_show(self.s.iat[i])} is not an integer{hint}")
            self._exact_floats(x)
            return x.astype(np.int64), empty
        if not _is_text(self.s):
            self.fail(0, f"cannot read a {self.s.dtype} column as integers{hint}")
        # Text: parse each distinct value once, exactly (floats would lose digits past 2**53).
        codes, uniques = pd.factorize(self.s.where(~empty, None))
        parsed = np.zeros(len(uniques), np.int64)
        for k, u in enumerate(uniques):
            v = _parse_int(str(u).strip())
            if v is None:
                self.fail(int(np.argmax(codes == k)), f"{_show(u)} is not an integer{hint}")
            if not -2 ** 63 <= v <= _INT64_MAX:
                self.fail(int(np.argmax(codes == k)), f"{_show(u)} overflows int64")
            parsed[k] = v
        return np.where(codes >= 0, parsed[np.maximum(codes, 0)] if len(parsed) else 0, 0), empty

    def _exact_floats(self, x: np.ndarray) -> None:
        """Fails at a float id or code past 2**53: it no longer names one integer (the file's
        9007199254740993 reads as ...992), so two ids could merge silently."""
        self.first(np.isfinite(x) & (np.abs(x) >= _EXACT),
                   lambda i: f"{float(x[i])!r} is a float at or past 2**53, where floats skip integers "
                             f"(9007199254740993 reads as 9007199254740992): store the column as "
                             f"integers or text")

    def hashed(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 hashed ids, empty mask): each distinct string hashed once by the core."""
        empty = self.empty()
        values = self.s.to_numpy(dtype=object)
        if self.s.dtype.kind == "f":
            # an int column with empty cells reads as floats: hash "12" as the file says, not "12.0"
            self._exact_floats(np.where(empty, 0.0, self.s.to_numpy(dtype=np.float64, na_value=np.nan)))
            values = np.array([_int_text(v) for v in values], dtype=object)
        codes, uniques = pd.factorize(pd.Series(values).where(~empty, None), use_na_sentinel=True)
        ids = hash_ids([str(u) for u in uniques])
        out = np.where(codes >= 0, ids[np.maximum(codes, 0)] if len(ids) else 0, 0)
        return out.astype(np.int64), empty


def _parse_int(text: str) -> int | None:
    """The integer a cell's text writes ("12", "12.0", "1.2e3"), read exactly: through a float,
    "9007199254740993.0" would silently become ...992."""
    try:
        return int(text)
    except ValueError:
        pass
    if len(text) > 400:  # no int64 needs more; Decimal's exponent arithmetic stays cheap
        return None
    try:
        x = Decimal(text)
    except InvalidOperation:
        return None
    if not x.is_finite() or abs(x.adjusted()) > 400 or x != x.to_integral_value():
        return None
    return int(x)


def _int_text(v):
    if isinstance(v, float) and np.isfinite(v) and v == int(v):
        return str(int(v))
    return v


def _is_text(s: pd.Series) -> bool:
    return s.dtype == object or isinstance(s.dtype, pd.StringDtype)


def load_events(df: pd.DataFrame, schema: Schema, *, path=None, sort: bool = False,
                labels: bool | None = None) -> tuple[EventArrays, LabelArrays | None]:
    """The frame's events (and labels) in the core's layout.

    ``path`` names the data file in errors. Rows must be sorted by time (ties allowed); with
    ``sort=True`` they are sorted (stably) instead, and errors still give the frame's row numbers.
    ``labels``: None loads them when the label column is in the frame, True requires it, False
    skips them; the labels are None when not loaded (the data can be scored, not trained on).
    Labels are only the rows with a label (an empty label cell is "unknown").
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    path, line_of = _source(df, path)
    if df.columns.duplicated().any():
        dup = str(df.columns[df.columns.duplicated()][0])
        raise DeclaredError(f"column {dup!r} appears more than once", path=path)
    lb = schema.label
    want_labels = lb is not None and (labels is True
                                      or (labels is None and lb.column in df.columns))
    if labels is True and lb is None:
        raise DeclaredError("labels were asked for, but the schema declares no [label]",
                            path=schema.source)
    cols = _declared_columns(schema, want_labels)
    missing = [(key, c) for key, c in cols if c not in df.columns]
    if missing:
        key, c = missing[0]
        shown = ", ".join(map(str, df.columns[:40])) + (", ..." if len(df.columns) > 40 else "")
        raise DeclaredError(f"column {c!r} not in {path or 'the data'} (columns: {shown})",
                            path=schema.source, key=key, column=c)
    col = {key: _Column(df, c, key, path, line_of) for key, c in cols}
    event_id = _event_ids(col["[event_id]"], schema.event_id.ids)
    time_ms = _times(col["[time]"], schema.time.unit)
    amount = _amounts(col["[amount]"]) if schema.amount is not None else None
    n = len(df)
    ent = np.empty((n, len(schema.entities)), np.int64)
    for k, e in enumerate(schema.entities):
        ent[:, k] = _entity(col[_key("entities", k, e.name)], e)
    num = np.empty((n, len(schema.numeric)))
    for k, x in enumerate(schema.numeric):
        num[:, k] = _numeric(col[_key("numeric", k, x.name)])
    cat = np.empty((n, len(schema.categorical)), np.int64)
    for k, c in enumerate(schema.categorical):
        cat[:, k] = _categorical(col[_key("categorical", k, c.name)], c.codes)
    label_rows, label_arrays = None, None
    if want_labels:
        label_rows, label_arrays = _labels(col, schema, event_id, time_ms)
    order = _order(time_ms, col["[time]"], sort)
    events = EventArrays.make(event_id, time_ms, amount, ent, num, cat)
    if order is not None:
        events = events.take(order)
        if label_arrays is not None:
            # labels follow their events into the new order
            rank = np.empty(n, np.int64)
            rank[order] = np.arange(n)
            label_arrays = label_arrays.take(np.argsort(rank[label_rows], kind="stable"))
    return events, label_arrays


def _source(df: pd.DataFrame, path) -> tuple[str | None, object]:
    """(the file named in errors, row -> CSV line or None): ``path`` when given, else the file
    read_table read the frame from."""
    from .input_file import source_of
    file, line_of = source_of(df)
    if path is not None and str(path) != file:
        return str(path), None
    return file, line_of


def _key(table: str, k: int, name: str) -> str:
    return f"[[{table}]] {k + 1} {name!r}"


def _declared_columns(schema: Schema, labels: bool) -> list[tuple[str, str]]:
    """(schema key, column) of every declared column, in schema order."""
    cols = [("[event_id]", schema.event_id.column), ("[time]", schema.time.column)]
    if schema.amount is not None:
        cols.append(("[amount]", schema.amount))
    for table in ("entities", "numeric", "categorical"):
        cols += [(_key(table, k, x.name), x.column) for k, x in enumerate(getattr(schema, table))]
    if labels:
        cols.append(("[label]", schema.label.column))
        if schema.label.time_column is not None:
            cols.append(("[label] time_column", schema.label.time_column))
    return cols


def _event_ids(c: _Column, ids: str) -> np.ndarray:
    c.not_ids_of(ids, "event ids")
    v, empty = c.hashed() if ids == "string" else c.ints("ids")
    c.first(empty, lambda i: "empty event id")
    c.first(v < 0, lambda i: f"event id {v[i]} is negative: integer ids must be >= 0")
    dup = pd.Series(v).duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        j = int(np.argmax(v == v[i]))
        collision = ids == "string" and str(c.s.iat[i]) != str(c.s.iat[j])
        c.fail(i, f"duplicate event id {_show(c.s.iat[i])} (first at row {j})"
                  + (f": {_show(c.s.iat[j])} hashes to the same id" if collision else ""))
    return v


def _times(c: _Column, unit: str) -> np.ndarray:
    """UTC epoch ms of a time column (also used for the label time column: same unit)."""
    if unit != "datetime":
        if pd.api.types.is_datetime64_any_dtype(c.s):
            c.fail(0, f"a datetime column, but [time] unit = {unit!r}: declare unit = \"datetime\"")
        x, empty = c.numbers()
        c.first(empty, lambda i: "empty time")
        c.first(~np.isfinite(x), lambda i: f"time {_show(c.s.iat[i])} is not finite")
        if c.s.dtype.kind in "iu":  # exact: int64 epochs of us exceed a float's 2**53
            v = c.s.to_numpy(np.int64)
            return v // 1000 if unit == "us" else v * _PER_MS[unit]
        return np.floor(x / 1000 if unit == "us" else x * _PER_MS[unit]).astype(np.int64)
    s = c.s
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_datetime64_any_dtype(s):
        c.fail(0, "numbers, but [time] unit = \"datetime\": declare unit = \"s\", \"ms\" or \"us\"")
    if not pd.api.types.is_datetime64_any_dtype(s):
        empty = c.empty()
        c.first(empty, lambda i: "empty time")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns on mixed offsets; utc=True handles them
            parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        c.first(parsed.isna().to_numpy(),
                lambda i: f"{_show(s.iat[i])} is not an ISO-8601 date-time")
        s = parsed
    elif s.dt.tz is None:
        s = s.dt.tz_localize("UTC")  # naive = UTC, as SCHEMA.md says
    c.first(s.isna().to_numpy(), lambda i: "empty time")
    s = s.dt.tz_convert("UTC")
    unit_ns = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}[s.dt.unit]
    raw = s.dt.tz_localize(None).to_numpy().view(np.int64)
    # floor to ms whatever the resolution (a date-time before 1970 rounds down, too)
    if unit_ns >= 10 ** 6:
        return raw * (unit_ns // 10 ** 6)
    return np.floor_divide(raw, 10 ** 6 // unit_ns)


def _order(time_ms: np.ndarray, c: _Column, sort: bool) -> np.ndarray | None:
    back = np.flatnonzero(time_ms[1:] < time_ms[:-1])
    if not len(back):
        return None
    if sort:
        return np.argsort(time_ms, kind="stable")
    i = int(back[0]) + 1
    c.fail(i, f"time {_show(c.s.iat[i])} is earlier than the previous row's "
              f"{_show(c.s.iat[i - 1])}: rows must be sorted by time "
              f"(load_events(..., sort=True) sorts them)")


def _amounts(c: _Column) -> np.ndarray:
    x, empty = c.numbers()
    c.first(empty, lambda i: "empty amount: the schema declares an [amount], so every event "
                             "has one")
    c.first(np.isinf(x), lambda i: f"amount {_show(x[i])} is not finite")
    c.first(x < 0, lambda i: f"amount {_show(x[i])} is negative (it must be >= 0)")
    return x


def _entity(c: _Column, e) -> np.ndarray:
    c.not_ids_of(e.ids, f"ids of entity {e.name!r}")
    v, empty = c.hashed() if e.ids == "string" else c.ints("ids")
    if e.required:
        c.first(empty, lambda i: f"empty cell, and entity {e.name!r} is required "
                                 f"(declare required = false if it may be absent)")
        c.first(v < 0, lambda i: f"id {v[i]} is negative, and entity {e.name!r} is required")
    else:
        # -1 is the reserved "absent" id (the legacy payments files write it)
        c.first(v < ABSENT, lambda i: f"id {v[i]} is negative: ids must be >= 0 (-1 = absent)")
    v[empty] = ABSENT
    return v


def _numeric(c: _Column) -> np.ndarray:
    x, _ = c.numbers()
    c.first(np.isinf(x),
            lambda i: f"{_show(x[i])} is not finite (leave the cell empty for missing)")
    return x


def _categorical(c: _Column, codes: str) -> np.ndarray:
    v, empty = c.hashed() if codes == "string" else c.ints("codes")
    c.first(~empty & (v < MISSING_CODE),
            lambda i: f"code {v[i]} is negative: int codes must be >= 0 (-1 = missing)")
    v[empty] = MISSING_CODE
    return v


def _labels(col: dict, schema: Schema, event_id: np.ndarray,
            time_ms: np.ndarray) -> tuple[np.ndarray, LabelArrays]:
    """(the labelled rows, their labels)."""
    c = col["[label]"]
    if c.s.dtype.kind == "b":
        x, empty = c.s.to_numpy(np.float64, na_value=np.nan), c.empty()
    else:
        x, empty = c.numbers()
    c.first(~empty & (x != 0) & (x != 1), lambda i: f"label {_show(c.s.iat[i])} is not 0 or 1")
    label_time = time_ms + schema.label.delay_ms
    tc = col.get("[label] time_column")
    if tc is not None:
        given = ~tc.empty()
        if given.any():
            # empty label times fall back on time + delay; parse only the given ones
            sub = _Column(tc.s[given].to_frame(), tc.name, tc.key, tc.path)  # rows mapped back below
            given_rows = np.flatnonzero(given)
            try:
                t = _times(sub, schema.time.unit)
            except DeclaredError as e:
                tc.fail(given_rows[e.row], e.reason)
            label_time[given_rows] = t
        bad = ~empty & (label_time < time_ms)
        tc.first(bad, lambda i: f"label time {_show(tc.s.iat[i])} is before its event's time "
                                f"{_show(col['[time]'].s.iat[i])}")
    rows = np.flatnonzero(~empty)
    return rows, LabelArrays.make(event_id[rows], x[rows].astype(np.int8), label_time[rows])


def load_labels(df: pd.DataFrame, schema: Schema, *, path=None) -> LabelArrays:
    """Labels arriving after their events (``libfraud label``, ``Scorer.label``): a frame with the
    schema's event id and label columns, and the label time column when the schema declares one
    (else the event time column, for time + delay). Empty label cells are skipped."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    path, line_of = _source(df, path)
    lb = schema.label
    if lb is None:
        raise DeclaredError("the schema declares no [label]", path=schema.source)
    cols = [("[event_id]", schema.event_id.column), ("[label]", lb.column)]
    if lb.time_column is not None and lb.time_column in df.columns:
        cols.append(("[label] time_column", lb.time_column))
    elif schema.time.column in df.columns:
        cols.append(("[time]", schema.time.column))
    else:
        wanted = lb.time_column or schema.time.column
        raise DeclaredError(f"column {wanted!r} not in {path or 'the labels'}: a label needs its label time "
                            f"(or its event's time, for time + delay)", path=schema.source, column=wanted)
    missing = [(key, c) for key, c in cols if c not in df.columns]
    if missing:
        key, c = missing[0]
        raise DeclaredError(f"column {c!r} not in {path or 'the labels'}", path=schema.source, key=key, column=c)
    col = {key: _Column(df, c, key, path, line_of) for key, c in cols}
    event_id = _event_ids(col["[event_id]"], schema.event_id.ids)
    if "[time]" in col:
        time_ms = _times(col["[time]"], schema.time.unit)
        return _labels(col, schema, event_id, time_ms)[1]
    # Label times given: the core checks them against the stored events' times.
    tc = col["[label] time_column"]
    label_time = _times(tc, schema.time.unit)
    c = col["[label]"]
    x, empty = c.numbers()
    c.first(~empty & (x != 0) & (x != 1), lambda i: f"label {_show(c.s.iat[i])} is not 0 or 1")
    rows = np.flatnonzero(~empty)
    return LabelArrays.make(event_id[rows], x[rows].astype(np.int8), label_time[rows])
