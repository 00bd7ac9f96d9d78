"""Reading transaction files (.csv, .parquet) into validated frames.

CSV cells are read as strings, so a bad cell is reported with its data row (0-based, header
excluded), its file line (row + 2, assuming no quoted newlines) and its column, instead of
silently becoming NaN.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .schema import SchemaError, coerce_transactions, validate_transactions

__all__ = ["SUPPORTED_SUFFIXES", "iter_transactions", "load_transactions", "read_table", "write_chunks"]

SUPPORTED_SUFFIXES = (".csv", ".parquet")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"cannot read {str(path)!r}: unsupported suffix {suffix!r}; "
                         f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    return suffix[1:]


def _check(df: pd.DataFrame, *, validate: bool, kind: str, path: Path, row_offset: int = 0):
    try:
        df = coerce_transactions(df)
        if validate:
            validate_transactions(df)
    except SchemaError as e:
        raise e.relocated(row_offset=row_offset, path=str(path),
                          header_lines=1 if kind == "csv" else None) from None
    return df


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


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A .csv or .parquet file as it is, in its own columns: CSV cells as strings (empty = missing),
    so the declared schema's loader (libfraud.data.declared.load_events) converts each column and
    names a bad cell by row and column, instead of pandas guessing a type."""
    path = Path(path)
    if _kind(path) == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.read_parquet(path).reset_index(drop=True)


def load_transactions(path: str | os.PathLike, *, validate: bool = True) -> pd.DataFrame:
    """Read a .csv or .parquet transaction file, coerce it to the schema and (by default) validate.

    Raises SchemaError naming the first bad row (data row, 0-based; CSV also gives the file
    line) and column, ValueError for an unsupported suffix.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        df = pd.read_parquet(path)
    return _check(df.reset_index(drop=True), validate=validate, kind=kind, path=path)


def iter_transactions(path: str | os.PathLike, chunk_size: int = 100_000, *,
                      validate: bool = True) -> Iterator[pd.DataFrame]:
    """Yield a big transaction file as coerced frames of up to ``chunk_size`` rows.

    With ``validate``, the rules hold across chunks too (time order, unique txn_id); error rows
    are numbered from the start of the file. Each frame keeps its file row numbers as index.
    """
    path = Path(path)
    kind = _kind(path)
    with _open_chunks(path, kind, chunk_size) as frames:
        offset = 0
        last_ts: int | None = None
        seen = np.zeros(0, np.int64)  # sorted txn_ids of earlier chunks
        for raw in frames:
            raw = raw.reset_index(drop=True)
            df = _check(raw, validate=validate, kind=kind, path=path, row_offset=offset)
            if validate and len(df):
                _check_across(df, offset, last_ts, seen, kind, path)
                last_ts = int(df["timestamp_ms"].iat[-1])
                seen = np.union1d(seen, df["txn_id"].to_numpy())
            df.index = pd.RangeIndex(offset, offset + len(df))
            offset += len(df)
            yield df


@contextlib.contextmanager
def _open_chunks(path: Path, kind: str, chunk_size: int) -> Iterator[Iterator[pd.DataFrame]]:
    """Chunk iterator over the file, closed on exit even when a chunk is rejected."""
    if kind == "csv":
        with pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_size) as reader:
            yield iter(reader)
    else:
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as pf:
            yield (b.to_pandas() for b in pf.iter_batches(batch_size=chunk_size))


def _check_across(df, offset, last_ts, seen, kind, path) -> None:
    header = 1 if kind == "csv" else None
    ts = df["timestamp_ms"].to_numpy()
    tid = df["txn_id"].to_numpy()
    errors = []
    if last_ts is not None and ts[0] < last_ts:
        errors.append(SchemaError(f"timestamp_ms {ts[0]} is earlier than the previous row's "
                                  f"{last_ts}: rows must be sorted by time",
                                  row=0, column="timestamp_ms", txn_id=int(tid[0])))
    if len(seen):
        pos = np.minimum(np.searchsorted(seen, tid), len(seen) - 1)
        dup = seen[pos] == tid
        if dup.any():
            i = int(np.argmax(dup))
            errors.append(SchemaError(f"duplicate txn_id {tid[i]} (first in an earlier chunk)",
                                      row=i, column="txn_id"))
    if errors:
        e = min(errors, key=lambda e: e.row)
        raise e.relocated(row_offset=offset, path=str(path), header_lines=header)
