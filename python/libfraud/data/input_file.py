"""Reading the user's input files (.csv, .parquet): the one place that opens them.

:func:`read_table` refuses, naming the file (and the row, line and column where it can), what
would otherwise fail later with a bare traceback or be read wrong: a missing file, a directory, a
duplicate column name (pandas would silently rename the second ``amount.1``), bytes that are not
in the file's encoding, a cell longer than ``max_cell_chars``, a malformed CSV or Parquet file.
The frame it returns remembers its file (``frame.attrs``), so the declared schema's loader names
the file and the CSV line of a bad value without its callers passing the path along.
"""

from __future__ import annotations

import codecs
import csv
import os
import sys
from pathlib import Path

import pandas as pd

from .declared import DeclaredError

__all__ = ["MAX_CELL_CHARS", "SUPPORTED_SUFFIXES", "read_table", "source_of"]

SUPPORTED_SUFFIXES = (".csv", ".parquet")
MAX_CELL_CHARS = 1 << 20
"""The longest cell (and column name) read_table accepts: 1 MiB of text, far above any id or
value, low enough that a hostile file cannot exhaust memory downstream (hashing, messages)."""

_SOURCE = "libfraud.source"  # frame.attrs key: {"path", "rows", "encoding" (None for Parquet)}


def read_table(path: str | os.PathLike, *, encoding: str = "utf-8", max_cell_chars: int = MAX_CELL_CHARS,
               nrows: int | None = None, typed: bool = False) -> pd.DataFrame:
    """A .csv or .parquet file as it is, in its own columns: CSV cells as strings (empty = missing),
    so the declared schema's loader (libfraud.data.declared.load_events) converts each column and
    names a bad cell by row and column, instead of pandas guessing a type (``typed=True``: let
    pandas guess, as ``libfraud schema infer`` wants; ``nrows``: the first rows only).

    Raises FileNotFoundError / IsADirectoryError / PermissionError ("input file not found: PATH"),
    ValueError for an unsupported suffix, DeclaredError for a file that cannot be read as it claims.
    """
    if max_cell_chars < 1:
        raise ValueError(f"max_cell_chars (--max-cell-chars) must be >= 1, got {max_cell_chars}")
    path = Path(path)
    kind = _kind(path)
    _check_readable(path)
    try:
        if kind == "csv":
            df = _read_csv(path, encoding, nrows, typed)
        else:
            df = _read_parquet(path)
            df = df.head(nrows) if nrows is not None else df
    except MemoryError:
        raise DeclaredError(f"out of memory reading it ({path.stat().st_size:,} bytes)",
                            path=str(path)) from None
    df.attrs[_SOURCE] = {"path": str(path), "rows": len(df), "encoding": encoding if kind == "csv" else None}
    _check_cells(df, max_cell_chars)
    return df


def source_of(df: pd.DataFrame) -> tuple[str | None, object]:
    """(file, line_of) for a frame as read_table returned it: line_of(row) is the CSV line where a
    row starts (None for Parquet). (None, None) for any other frame, or one since sliced or
    reordered, whose row positions are no longer the file's."""
    src = df.attrs.get(_SOURCE)
    if not src or len(df) != src["rows"] or not df.index.equals(pd.RangeIndex(src["rows"])):
        return None, None
    if src["encoding"] is None:
        return src["path"], None
    return src["path"], lambda row: _csv_line(src["path"], src["encoding"], row)


def _kind(path: Path) -> str:
    if path.is_dir():
        raise IsADirectoryError(f"input is a directory, not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"cannot read {str(path)!r}: unsupported suffix {suffix!r}; "
                         f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    return suffix[1:]


def _check_readable(path: Path) -> None:
    # pyarrow says only the path for a missing file; say what is wrong with it, one way for both.
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise FileNotFoundError(f"input file not found: {path}") from None
    except PermissionError:
        raise PermissionError(f"input file not readable (permission denied): {path}") from None
    except OSError as e:
        raise OSError(f"input file cannot be opened: {path}: {e.strerror or e}") from None


def _fail(path: Path, reason: str, **where) -> None:
    raise DeclaredError(reason, path=str(path), **where)


# ---------------------------------------------------------------------------------------------- CSV

def _read_csv(path: Path, encoding: str, nrows: int | None, typed: bool) -> pd.DataFrame:
    try:
        codecs.lookup(encoding)
    except LookupError:
        _fail(path, f"unknown encoding {encoding!r} (--encoding: a Python codec name such as "
                    f"utf-8, latin-1, cp1252)")
    options = dict(low_memory=False) if typed else dict(dtype=str, keep_default_na=False)
    try:
        _check_header(path, encoding)
        df = pd.read_csv(path, nrows=nrows, encoding=encoding, **options)
        if not isinstance(df.index, pd.RangeIndex):
            _longer_rows(path, encoding)
            _fail(path, "rows have more fields than the header")
        return df
    except UnicodeDecodeError as e:
        _undecodable(path, encoding, e)
    except pd.errors.EmptyDataError:
        _fail(path, "empty file: no header row")
    except pd.errors.ParserError as e:
        _longer_rows(path, encoding)
        _fail(path, f"not a well-formed CSV file: {e}")


def _check_header(path: Path, encoding: str) -> None:
    """Duplicate column names, which pandas would rename (``amount``, ``amount.1``) and use silently."""
    try:
        header = next((fields for _, _, fields in _csv_records(path, encoding)), [])
    except csv.Error as e:
        _fail(path, f"cannot read the header row: {e}")
    seen: dict[str, int] = {}
    for k, name in enumerate(header):
        if name in seen and name.strip():
            _fail(path, f"column {name!r} appears twice in the header, as columns {seen[name] + 1} and "
                        f"{k + 1} (counted from 1): rename or drop one")
        seen.setdefault(name, k)


def _longer_rows(path: Path, encoding: str) -> None:
    """Fails at the first row with more fields than the header (pandas makes the extra leading
    fields of a first such row an index, shifting every value one column to the right)."""
    header: list[str] = []
    try:
        for row, line, fields in _csv_records(path, encoding):
            header = fields if row < 0 else header
            if len(fields) > len(header):
                break
        else:
            return
    except (UnicodeDecodeError, csv.Error):
        return  # the caller's own message then
    _fail(path, f"{len(fields)} fields, more than the header's {len(header)}: a field holds an "
                f"unquoted comma, or the header lacks a name", row=row, line=line)


def _csv_records(path: Path, encoding: str, errors: str = "strict"):
    """(row, first line, fields) of each record as pandas reads them (blank lines skipped); the
    header is row -1. The csv module's dialect is pandas' default: comma, double quotes."""
    csv.field_size_limit(sys.maxsize)  # pandas has no such limit; read_table bounds cells itself
    with open(path, encoding=encoding, errors=errors, newline="") as f:
        reader = csv.reader(f)
        row, line = -1, 1
        for fields in reader:
            first, line = line, reader.line_num + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if row < 0:
                fields[0] = fields[0].removeprefix("\ufeff")  # a byte order mark, as pandas drops it
            yield row, first, fields
            row += 1


def _csv_line(path: str, encoding: str, row: int) -> int | None:
    """The line of the CSV file where data row ``row`` (0-based, header excluded) starts."""
    try:
        for r, line, _ in _csv_records(Path(path), encoding):
            if r == row:
                return line
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # the file changed since it was read: no line rather than a wrong one
    return None


def _undecodable(path: Path, encoding: str, error: UnicodeDecodeError) -> None:
    """Fails naming the first byte that is not ``encoding``: its offset, and its row and column."""
    where = str(error)
    with open(path, "rb") as f:
        start = 0
        for raw in f:
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as e:
                where = f"byte 0x{raw[e.start:e.start + 1].hex()} at byte offset {start + e.start:,}"
                break
            start += len(raw)
    at: dict = {}
    names: list[str] = []
    # Decoding with surrogateescape keeps the bad bytes visible, so the record holding them is found.
    for row, line, fields in _csv_records(path, encoding, errors="surrogateescape"):
        bad = next((k for k, v in enumerate(fields) if any("\udc80" <= ch <= "\udcff" for ch in v)), None)
        names = fields if row < 0 else names
        if bad is not None:
            at = {"row": row, "line": line, "column": names[bad] if bad < len(names) else None}
            if row < 0:
                at, where = {}, f"in the header, {where}"
            break
    _fail(path, f"{where} is not {encoding} text: convert the file (`iconv -f CP1252 -t UTF-8 in.csv > "
                f"out.csv`, with the file's real encoding) or name its encoding (--encoding cp1252)", **at)


# ------------------------------------------------------------------------------------------ Parquet

def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as e:
        _fail(path, f"not a readable Parquet file: {e}")
    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        if name in seen:
            _fail(path, f"column {name!r} appears twice in the schema, as columns {seen[name] + 1} and "
                        f"{k + 1} (counted from 1): rename or drop one")
        seen[name] = k
    try:
        return pd.read_parquet(path).reset_index(drop=True)
    except (pa.ArrowException, OSError) as e:
        _fail(path, f"not a readable Parquet file: {e}")


# ------------------------------------------------------------------------------------------- cells

def _check_cells(df: pd.DataFrame, limit: int) -> None:
    """No cell longer than ``limit`` characters; the first such one is named (by row, then column)."""
    path, line_of = source_of(df)
    first = None
    for k, name in enumerate(df.columns):
        if len(str(name)) > limit:
            _fail(Path(path), f"column {k + 1}'s name has {len(str(name)):,} characters, more than the "
                              f"limit of {limit:,} (--max-cell-chars)")
        s = df[name]
        if not (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
            continue
        try:
            over = (s.str.len() > limit).to_numpy(dtype=bool, na_value=False)
        except (AttributeError, TypeError):  # an object column of no text (Parquet lists, numbers)
            continue
        if over.any():
            row = int(over.argmax())
            if first is None or row < first[0]:
                first = (row, name, len(s.iat[row]))
    if first is not None:
        row, name, n = first
        raise DeclaredError(f"a cell of {n:,} characters, more than the limit of {limit:,} (--max-cell-chars "
                            f"raises it)", path=path, row=row, column=str(name),
                            line=line_of(row) if line_of else None)
