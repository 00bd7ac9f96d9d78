"""The transaction schema shared with the C++ core, and its validation.

A transaction table has the columns of :data:`COLUMNS`, in that order; other columns are kept
and ignored. :func:`coerce_transactions` fixes the structure (presence, parse, dtype) and
:func:`validate_transactions` the value ranges; both raise :class:`SchemaError` naming the first
bad row and column. :data:`TXN_DTYPE` is the C record layout of one transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "ABSENT_ID",
    "COLUMNS",
    "COLUMN_NAMES",
    "ENTITY_COLUMNS",
    "FRAUD_TYPES",
    "ColumnSpec",
    "SchemaError",
    "TXN_DTYPE",
    "coerce_transactions",
    "to_txn_records",
    "validate_transactions",
]

ABSENT_ID = -1
"""Value of an absent optional entity (device_id, ip_id); an empty CSV cell reads as this."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the transaction schema."""

    name: str
    dtype: np.dtype
    required: bool
    """False only for ``label``: a frame may omit the column entirely."""
    absent: int | None
    """Value an empty/NaN cell becomes (``-1`` for device_id/ip_id); None: a value is required."""
    min_value: int | float | None
    max_value: int | float | None
    """Inclusive range checked by :func:`validate_transactions` (amount: finite and > 0 instead)."""
    description: str


_I8, _I4, _I1, _F8 = np.dtype("int64"), np.dtype("int32"), np.dtype("int8"), np.dtype("float64")

COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("txn_id", _I8, True, None, None, None, "unique transaction id"),
    ColumnSpec("timestamp_ms", _I8, True, None, None, None,
               "unix epoch milliseconds; rows sorted ascending (ties allowed)"),
    ColumnSpec("amount", _F8, True, None, None, None, "finite, > 0"),
    ColumnSpec("card_id", _I8, True, None, 0, None, "card, >= 0"),
    ColumnSpec("device_id", _I8, True, ABSENT_ID, ABSENT_ID, None, "device, >= 0, or -1 = absent"),
    ColumnSpec("merchant_id", _I8, True, None, 0, None, "merchant, >= 0"),
    ColumnSpec("ip_id", _I8, True, ABSENT_ID, ABSENT_ID, None, "IP address, >= 0, or -1 = absent"),
    ColumnSpec("country", _I4, True, None, 1, 999, "ISO-3166 numeric country, 1..999"),
    ColumnSpec("mcc", _I4, True, None, 0, 9999, "merchant category code, 0..9999"),
    ColumnSpec("label", _I1, False, None, 0, 1, "optional: 1 fraud, 0 legit"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
_SPEC = {c.name: c for c in COLUMNS}

ENTITY_COLUMNS: tuple[str, ...] = ("card_id", "device_id", "merchant_id", "ip_id")
"""Order of the C ``fraud_entity`` enum and of ``TXN_DTYPE['entity_id']``."""

FRAUD_TYPES: tuple[str, ...] = ("", "ring", "card_testing", "account_takeover", "merchant_collusion",
                                "compromised_merchant")
"""Values of the generator's diagnostic ``fraud_type`` column ("" = legitimate)."""

# The C `fraud_txn` struct: 64 bytes, no padding.
TXN_DTYPE = np.dtype({
    "names": ["txn_id", "timestamp_ms", "amount", "entity_id", "country", "mcc"],
    "formats": ["<i8", "<i8", "<f8", ("<i8", (4,)), "<i4", "<i4"],
    "offsets": [0, 8, 16, 24, 56, 60],
    "itemsize": 64,
})


class SchemaError(ValueError):
    """A transaction table that breaks the schema.

    ``row`` is the 0-based row position in the frame (the data row number in a file, header
    excluded) or None; ``column`` the column name or None; ``reason`` the bare message.
    """

    def __init__(self, reason: str, *, row: int | None = None, column: str | None = None,
                 txn_id: int | None = None, line: int | None = None, path: str | None = None):
        self.reason, self.row, self.column = reason, row, column
        self.txn_id, self.line, self.path = txn_id, line, path
        super().__init__(self._format())

    def _format(self) -> str:
        loc = ""
        if self.row is not None:
            extras = []
            if self.line is not None:
                extras.append(f"line {self.line} of {self.path}" if self.path else f"line {self.line}")
            if self.txn_id is not None:
                extras.append(f"txn_id={self.txn_id}")
            loc = f"row {self.row}" + (f" ({', '.join(extras)})" if extras else "")
        elif self.path is not None:
            loc = str(self.path)
        if self.column is not None:
            loc = f"{loc}, column {self.column!r}" if loc else f"column {self.column!r}"
        return f"{loc}: {self.reason}" if loc else self.reason

    def relocated(self, *, row_offset: int = 0, path: str | None = None,
                  header_lines: int | None = None) -> "SchemaError":
        """The same error with rows shifted by ``row_offset``; ``header_lines`` adds the file line."""
        row = None if self.row is None else self.row + row_offset
        line = None if row is None or header_lines is None else row + header_lines + 1
        return SchemaError(self.reason, row=row, column=self.column, txn_id=self.txn_id,
                           line=line, path=path)


# ---------------------------------------------------------------------------------------------
# Structural coercion


def _is_stringish(s: pd.Series) -> bool:
    return s.dtype == object or isinstance(s.dtype, pd.StringDtype)


def _parse_int_str(text: str) -> int:
    """Python int from a cell; raises ValueError with the reason."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{text!r} is not a finite integer")
    if x != math.floor(x):
        raise ValueError(f"{text!r} is not an integer")
    return int(x)


class _Coercer:
    """Coerces one frame column by column; knows the parsed txn_ids for error messages."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.txn_id: np.ndarray | None = None

    def fail(self, row: int, column: str, reason: str):
        tid = None
        if self.txn_id is not None and column != "txn_id":
            tid = int(self.txn_id[row])
        raise SchemaError(reason, row=int(row), column=column, txn_id=tid)

    def column(self, spec: ColumnSpec) -> np.ndarray:
        s = self.df[spec.name]
        if _is_stringish(s):
            return self._from_strings(spec, s)
        if spec.dtype.kind == "f":
            return self._float_from_numbers(spec, s)
        return self._int_from_numbers(spec, s)

    def _missing(self, spec: ColumnSpec, missing: np.ndarray, out: np.ndarray) -> None:
        if missing.any():
            if spec.absent is None:
                what = "required column" if spec.required else "optional column that is present"
                self.fail(int(np.argmax(missing)), spec.name, f"empty cell in {what}")
            out[missing] = spec.absent

    def _from_strings(self, spec: ColumnSpec, s: pd.Series) -> np.ndarray:
        na = pd.isna(s).to_numpy(dtype=bool)
        text = s.to_numpy(dtype=object).copy()
        text[na] = ""
        text = np.char.strip(text.astype(str))
        missing = text == ""
        text[missing] = "0"
        if spec.dtype.kind == "f":
            try:
                out = text.astype(np.float64)
            except ValueError:
                out = np.empty(len(text), np.float64)
                for i, t in enumerate(text.tolist()):
                    try:
                        out[i] = float(t)
                    except ValueError:
                        self.fail(i, spec.name, f"{t!r} is not a number")
        else:
            try:
                wide = text.astype(np.int64)
            except (ValueError, OverflowError):
                wide = np.empty(len(text), np.int64)
                lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
                for i, t in enumerate(text.tolist()):
                    try:
                        v = _parse_int_str(t)
                    except ValueError as e:
                        self.fail(i, spec.name, str(e))
                    if not lo <= v <= hi:
                        self.fail(i, spec.name, f"{t!r} overflows int64")
                    wide[i] = v
            out = self._narrow(spec, wide, text)
        self._missing(spec, missing, out)
        return out

    def _narrow(self, spec: ColumnSpec, wide: np.ndarray, shown) -> np.ndarray:
        if spec.dtype == wide.dtype:
            return wide
        info = np.iinfo(spec.dtype)
        bad = (wide < info.min) | (wide > info.max)
        if bad.any():
            i = int(np.argmax(bad))
            self.fail(i, spec.name, f"{str(shown[i])!r} overflows {spec.dtype}")
        return wide.astype(spec.dtype)

    def _float_from_numbers(self, spec: ColumnSpec, s: pd.Series) -> np.ndarray:
        if s.dtype.kind == "b":
            self.fail(0, spec.name, f"boolean column, expected {spec.dtype}")
        missing = pd.isna(s).to_numpy(dtype=bool)
        out = s.to_numpy(dtype=np.float64, na_value=np.nan).copy()
        # A NaN amount is a value error (validate_transactions), except a truly empty (NA) cell.
        if isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
            self._missing(spec, missing, out)
        return out

    def _int_from_numbers(self, spec: ColumnSpec, s: pd.Series) -> np.ndarray:
        missing = pd.isna(s).to_numpy(dtype=bool)
        kind = s.dtype.kind
        if kind in "iub":
            vals = s.to_numpy(dtype=object if kind == "u" else np.int64, na_value=0)
            if kind == "u":
                big = np.array([int(v) > np.iinfo(np.int64).max for v in vals], dtype=bool)
                if big.any():
                    i = int(np.argmax(big))
                    self.fail(i, spec.name, f"{vals[i]} overflows int64")
            wide = vals.astype(np.int64)
        elif kind == "f":
            x = s.to_numpy(dtype=np.float64, na_value=np.nan)
            x = np.where(missing, 0.0, x)
            bad = ~np.isfinite(x)
            if bad.any():
                i = int(np.argmax(bad))
                self.fail(i, spec.name, f"{x[i]!r} is not a finite integer")
            bad = x != np.floor(x)
            if bad.any():
                i = int(np.argmax(bad))
                self.fail(i, spec.name, f"{x[i]!r} is not an integer")
            bad = (x < -(2.0 ** 63)) | (x >= 2.0 ** 63)
            if bad.any():
                i = int(np.argmax(bad))
                self.fail(i, spec.name, f"{x[i]!r} overflows int64")
            wide = x.astype(np.int64)
        else:
            self.fail(0, spec.name, f"cannot convert a {s.dtype} column to {spec.dtype}")
        out = self._narrow(spec, wide, wide)
        self._missing(spec, missing, out)
        return out


def _is_canonical(df: pd.DataFrame) -> bool:
    names = [c for c in COLUMN_NAMES if c in df.columns]
    return (list(df.columns[: len(names)]) == names
            and all(df[c].dtype == _SPEC[c].dtype for c in names))


def coerce_transactions(df: pd.DataFrame) -> pd.DataFrame:
    """Check the structure of ``df`` and return a copy with the canonical column order and dtypes.

    Raises SchemaError for: a missing required column; a cell that does not parse as its column's
    type; an empty cell in a required column; a non-integral or non-finite value in an integer
    column; a value that overflows the column's type. Empty/NaN device_id and ip_id become -1.
    Extra columns follow the schema columns, unchanged. Value ranges are not checked here.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    present = set(df.columns)
    for spec in COLUMNS:
        if spec.required and spec.name not in present:
            raise SchemaError(f"required column is missing (columns present: {list(df.columns)})",
                              column=spec.name)
    if df.columns.duplicated().any():
        dup = df.columns[df.columns.duplicated()][0]
        raise SchemaError("column appears more than once", column=str(dup))
    co = _Coercer(df)
    data: dict[str, object] = {}
    for spec in COLUMNS:
        if spec.name not in present:
            continue
        arr = co.column(spec)
        if spec.name == "txn_id":
            co.txn_id = arr
        data[spec.name] = arr
    for name in df.columns:
        if name not in data:
            data[name] = df[name].copy()
    return pd.DataFrame(data, index=df.index.copy())


# ---------------------------------------------------------------------------------------------
# Value ranges


def _range_violations(df: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(first bad row, column, reason) for every violated rule, one per rule."""
    found: list[tuple[int, str, str]] = []

    def first(mask: np.ndarray, column: str, reason) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            found.append((i, column, reason(i)))

    tid = df["txn_id"].to_numpy()
    dup = pd.Series(tid).duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        j = int(np.argmax(tid == tid[i]))
        found.append((i, "txn_id", f"duplicate txn_id {tid[i]} (first at row {j})"))
    ts = df["timestamp_ms"].to_numpy()
    if len(ts) > 1:
        back = np.concatenate([[False], ts[1:] < ts[:-1]])
        first(back, "timestamp_ms", lambda i: f"timestamp_ms {ts[i]} is earlier than the previous "
                                              f"row's {ts[i - 1]}: rows must be sorted by time")
    amt = df["amount"].to_numpy()
    first(np.isnan(amt), "amount", lambda i: "amount is NaN")
    first(np.isinf(amt), "amount", lambda i: f"amount {amt[i]} is not finite")
    first(amt <= 0, "amount", lambda i: f"amount {amt[i]!r} must be > 0")
    for spec in COLUMNS:
        if spec.name not in df.columns or spec.dtype.kind != "i":
            continue
        v = df[spec.name].to_numpy()
        lo, hi = spec.min_value, spec.max_value
        if lo is not None:
            rule = f">= 0 or {ABSENT_ID} (absent)" if spec.absent is not None else f">= {lo}"
            if hi is not None:
                rule = f"in {lo}..{hi}"
            first(v < lo, spec.name, lambda i, v=v, rule=rule: f"{v[i]} is out of range: must be {rule}")
        if hi is not None:
            first(v > hi, spec.name, lambda i, v=v, lo=lo, hi=hi:
                  f"{v[i]} is out of range: must be in {lo}..{hi}")
    return found


def validate_transactions(df: pd.DataFrame) -> None:
    """Check the value rules on a frame (coerced first if its dtypes are not canonical).

    Rules: unique txn_id; timestamp_ms non-decreasing; amount finite and > 0; card_id and
    merchant_id >= 0; device_id and ip_id >= 0 or -1; country 1..999; mcc 0..9999; label 0 or 1.
    Raises SchemaError for the lowest bad row (ties: schema column order).
    """
    if not _is_canonical(df):
        df = coerce_transactions(df)
    found = _range_violations(df)
    if found:
        order = {n: k for k, n in enumerate(COLUMN_NAMES)}
        row, column, reason = min(found, key=lambda f: (f[0], order[f[1]]))
        tid = int(df["txn_id"].iat[row]) if column != "txn_id" else None
        raise SchemaError(reason, row=row, column=column, txn_id=tid)


def to_txn_records(df: pd.DataFrame) -> np.ndarray:
    """C-contiguous array of :data:`TXN_DTYPE` records from a (coerced) transaction frame."""
    if not _is_canonical(df):
        df = coerce_transactions(df)
    rec = np.empty(len(df), dtype=TXN_DTYPE)
    rec["txn_id"] = df["txn_id"].to_numpy()
    rec["timestamp_ms"] = df["timestamp_ms"].to_numpy()
    rec["amount"] = df["amount"].to_numpy()
    for k, name in enumerate(ENTITY_COLUMNS):
        rec["entity_id"][:, k] = df[name].to_numpy()
    rec["country"] = df["country"].to_numpy()
    rec["mcc"] = df["mcc"].to_numpy()
    return rec
