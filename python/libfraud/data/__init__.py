"""Transaction schema, synthetic data generator and file I/O."""

from .generate import DEFAULT_START_MS, generate_transactions, write_transactions
from .generate_cards import generate_card_transactions, write_card_transactions
from .io import SUPPORTED_SUFFIXES, iter_transactions, load_transactions, read_table
from .schema import (
    ABSENT_ID,
    COLUMN_NAMES,
    COLUMNS,
    ENTITY_COLUMNS,
    FRAUD_TYPES,
    TXN_DTYPE,
    ColumnSpec,
    SchemaError,
    coerce_transactions,
    to_txn_records,
    validate_transactions,
)

__all__ = [
    "ABSENT_ID",
    "COLUMNS",
    "COLUMN_NAMES",
    "DEFAULT_START_MS",
    "ENTITY_COLUMNS",
    "FRAUD_TYPES",
    "SUPPORTED_SUFFIXES",
    "TXN_DTYPE",
    "ColumnSpec",
    "SchemaError",
    "coerce_transactions",
    "generate_card_transactions",
    "generate_transactions",
    "read_table",
    "write_card_transactions",
    "iter_transactions",
    "load_transactions",
    "to_txn_records",
    "validate_transactions",
    "write_transactions",
]
