"""Data: the declared schema (libfraud.data.declared), the synthetic generators and file I/O."""

from .generate import DEFAULT_START_MS, generate_transactions, write_transactions
from .generate_cards import generate_card_transactions, write_card_transactions
from .io import SUPPORTED_SUFFIXES, load_transactions, payments_frame, read_table
from .schema import ABSENT_ID, COLUMN_NAMES, ENTITY_COLUMNS, FRAUD_TYPES, TXN_DTYPE, SchemaError, to_txn_records

__all__ = [
    "ABSENT_ID",
    "COLUMN_NAMES",
    "DEFAULT_START_MS",
    "ENTITY_COLUMNS",
    "FRAUD_TYPES",
    "SUPPORTED_SUFFIXES",
    "TXN_DTYPE",
    "SchemaError",
    "generate_card_transactions",
    "generate_transactions",
    "load_transactions",
    "payments_frame",
    "read_table",
    "to_txn_records",
    "write_card_transactions",
    "write_transactions",
]
