"""What the payments world needs beyond its declared preset (presets/payments.toml): the error type
every loader raises, the generator's columns and fraud typologies, and ``fraud_txn``, the preset's
C record, for the C harnesses that read binary files of it.

Columns, types and value rules are the declared schema's business (libfraud.data.declared); a
payments file is read through it like any other (libfraud.data.io.load_transactions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ABSENT_ID", "COLUMN_NAMES", "ENTITY_COLUMNS", "FRAUD_TYPES", "SchemaError", "TXN_DTYPE",
           "to_txn_records"]

ABSENT_ID = -1
"""Value of an absent optional entity (device_id, ip_id); an empty CSV cell reads as this."""

COLUMN_NAMES: tuple[str, ...] = ("txn_id", "timestamp_ms", "amount", "card_id", "device_id", "merchant_id",
                                 "ip_id", "country", "mcc", "label")
"""The generator's columns, in order (then label_time_ms and fraud_type)."""

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



def to_txn_records(df: pd.DataFrame) -> np.ndarray:
    """C-contiguous :data:`TXN_DTYPE` records from a payments frame with integer columns (as
    :func:`libfraud.data.io.load_transactions` or the generator gives it)."""
    rec = np.empty(len(df), dtype=TXN_DTYPE)
    rec["txn_id"] = df["txn_id"].to_numpy(np.int64)
    rec["timestamp_ms"] = df["timestamp_ms"].to_numpy(np.int64)
    rec["amount"] = df["amount"].to_numpy(np.float64)
    for k, name in enumerate(ENTITY_COLUMNS):
        rec["entity_id"][:, k] = df[name].to_numpy(np.int64)
    rec["country"] = df["country"].to_numpy(np.int32)
    rec["mcc"] = df["mcc"].to_numpy(np.int32)
    return rec
