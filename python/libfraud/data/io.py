"""Reading and writing transaction files (.csv, .parquet).

``read_table`` (from ``input_file``, the one place that opens input files) reads any file as it
is (CSV cells as text, so the declared schema's loader converts each column and names a bad cell
by row and column); ``load_transactions`` reads a payments file (the generator's columns) through
the declared ``payments`` preset into a typed frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .input_file import SUPPORTED_SUFFIXES, read_table

__all__ = ["SUPPORTED_SUFFIXES", "load_transactions", "payments_frame", "read_table", "write_chunks"]


def write_chunks(path: str | os.PathLike, chunks, *, total: int, empty: pd.DataFrame,
                 fmt: str | None = None, progress: bool = False, csv_view=None,
                 csv_options: dict | None = None) -> Path:
    """Write a stream of frames into one .csv or .parquet file (``fmt`` defaults to the suffix),
    chunk by chunk with a tqdm bar; ``empty`` (no rows) when the stream is. ``csv_view(frame)``:
    what goes into the CSV (e.g. absent ids as empty cells); ``csv_options``: for ``to_csv``."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unsupported format {fmt!r} for {path}: use 'csv' or 'parquet' "
                         f"(or a .csv/.parquet suffix)")
    from tqdm.auto import tqdm

    view = csv_view or (lambda df: df)
    options = dict(csv_options or {})
    with tqdm(total=total, unit="txn", disable=not progress, desc=path.name) as bar:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for chunk in chunks:
                    table = pa.Table.from_pandas(chunk, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(path, table.schema)
                    writer.write_table(table)
                    bar.update(len(chunk))
                if writer is None:
                    pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), path)
            finally:
                if writer is not None:
                    writer.close()
        else:
            first = True
            for chunk in chunks:
                view(chunk).to_csv(path, mode="w" if first else "a", header=first, index=False, **options)
                first = False
                bar.update(len(chunk))
            if first:
                view(empty).to_csv(path, index=False, **options)
    return path


def payments_frame(df: pd.DataFrame, *, path=None) -> pd.DataFrame:
    """A payments frame (the generator's columns, any types: text from a CSV included) checked and
    converted by the declared ``payments`` preset: typed columns, an absent device/ip as -1, other
    columns kept as they are. Raises DeclaredError naming the row and column of a bad cell."""
    from .declared import load_events, load_preset
    schema, _ = load_preset("payments", df.columns)
    events, labels = load_events(df, schema, path=path)
    ent, cat = events.entity_id, events.categorical
    out = pd.DataFrame({"txn_id": events.event_id, "timestamp_ms": events.time_ms, "amount": events.amount,
                        "card_id": ent[:, 0], "device_id": ent[:, 1], "merchant_id": ent[:, 2],
                        "ip_id": ent[:, 3], "country": cat[:, 0].astype(np.int32),
                        "mcc": cat[:, 1].astype(np.int32)}, index=df.index)
    if labels is not None:
        from ..features import rows_of
        rows = rows_of(events.event_id, labels.event_id)
        if len(rows) == len(df):  # every row labelled (the generator's files)
            label = np.empty(len(df), np.int8)
            label[rows] = labels.label
            out["label"] = label
            if "label_time_ms" in df.columns:
                t = np.empty(len(df), np.int64)
                t[rows] = labels.label_time_ms
                out["label_time_ms"] = t
    for col in df.columns:
        if col not in out.columns:
            out[col] = df[col].to_numpy()
    return out


def load_transactions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a payments .csv or .parquet file through the declared ``payments`` preset (see
    :func:`payments_frame`). Raises DeclaredError naming the file, row and column of the first bad
    cell, ValueError for an unsupported suffix (and what read_table raises)."""
    path = Path(path)
    return payments_frame(read_table(path), path=path)
