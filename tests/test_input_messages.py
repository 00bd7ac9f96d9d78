"""Bad input files (issue 12, item 9): each is refused with a message naming the file and, where
it can, the row (0-based, header excluded), the CSV line and the column; never a traceback, never
a value read wrong. Through read_table / load_events and through the CLI's main()."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libfraud.cli import main
from libfraud.data import read_table, write_transactions
from libfraud.data.declared import DeclaredError, load_events, load_preset
from libfraud.data.schema import SchemaError

MIB = 1 << 20


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> list[str]:
    """A small payments CSV, as lines (header first)."""
    path = write_transactions(tmp_path_factory.mktemp("csv") / "t.csv", 40, seed=3)
    return path.read_text().splitlines()


def _write(path, lines, *, encoding="utf-8"):
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _with_cell(lines, row: int, column: str, text: str) -> list[str]:
    """The lines with data row ``row``'s cell of ``column`` replaced (no quoting: plain cells)."""
    out = list(lines)
    header = out[0].split(",")
    cells = out[row + 1].split(",")
    cells[header.index(column)] = text
    out[row + 1] = ",".join(cells)
    return out


def _refused(path, **options) -> DeclaredError:
    with pytest.raises(DeclaredError) as e:
        read_table(path, **options)
    return e.value


def _train(capsys, data, tmp_path, *extra) -> tuple[int, str]:
    """`libfraud train` on data: the exit status and standard error (input errors come before training)."""
    rc = main(["-q", "train", str(data), "--out", str(tmp_path / "model"), "--no-gnn", "--no-track", *extra])
    return rc, capsys.readouterr().err


def _payments(df: pd.DataFrame):
    schema, _ = load_preset("payments", df.columns)
    return load_events(df, schema)


# ------------------------------------------------------------------------------ duplicate columns

def test_a_duplicate_csv_column_is_refused_naming_both_positions(tmp_path, lines, capsys):
    dup = [lines[0] + ",amount"] + [line + ",5" for line in lines[1:]]
    path = _write(tmp_path / "dup.csv", dup)
    e = _refused(path)
    assert "dup.csv" in str(e) and "'amount' appears twice in the header, as columns 3 and 13" in str(e)
    rc, err = _train(capsys, path, tmp_path)
    assert rc == 2 and "dup.csv: column 'amount' appears twice" in err and "Traceback" not in err


def test_a_name_pandas_would_give_a_duplicate_is_not_one(tmp_path):
    path = _write(tmp_path / "ok.csv", ["a,a.1,b", "1,2,3"])
    assert list(read_table(path).columns) == ["a", "a.1", "b"]
    bom = _write(tmp_path / "bom.csv", ["\ufeffa,a", "1,2"])  # the mark is not part of the name
    assert "'a' appears twice in the header, as columns 1 and 2" in str(_refused(bom))


def test_a_duplicate_parquet_column_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array([1, 2]), pa.array([3, 4]), pa.array([5, 6])],
                            names=["txn_id", "amount", "amount"]), path)
    e = _refused(path)
    assert "dup.parquet" in str(e) and "'amount' appears twice" in str(e) and "columns 2 and 3" in str(e)


# ------------------------------------------------------------------------------------- encodings

def test_bytes_not_in_the_encoding_are_located(tmp_path, lines, capsys):
    bad = _with_cell(lines, 4, "fraud_type", "caf\u00e9")
    path = _write(tmp_path / "latin.csv", bad, encoding="latin-1")
    offset = sum(len(line) + 1 for line in bad[:5]) + bad[5].index("caf") + 3
    e = _refused(path)
    assert (e.row, e.line, e.column) == (4, 6, "fraud_type")
    text = str(e)
    assert text.startswith(f"{path}: row 4 (line 6), column 'fraud_type': ")
    assert f"byte 0xe9 at byte offset {offset:,}" in text and "not utf-8" in text
    assert "iconv" in text and "--encoding" in text
    rc, err = _train(capsys, path, tmp_path)
    assert rc == 2 and "row 4 (line 6), column 'fraud_type'" in err and "iconv" in err
    # ... and read as the encoding it is in
    assert read_table(path, encoding="latin-1")["fraud_type"].iat[4] == "caf\u00e9"


def test_a_bad_byte_in_the_header_says_so(tmp_path, lines):
    path = _write(tmp_path / "h.csv", ["txn_\u00efd" + lines[0][6:]] + lines[1:], encoding="latin-1")
    e = _refused(path)
    assert e.row is None and "in the header, byte 0xef at byte offset 4" in str(e)


def test_an_unknown_encoding_is_named(tmp_path, lines, capsys):
    path = _write(tmp_path / "t.csv", lines)
    rc, err = _train(capsys, path, tmp_path, "--encoding", "no-such-codec")
    assert rc == 2 and "unknown encoding 'no-such-codec'" in err


def test_schema_infer_reads_another_encoding_when_told(tmp_path, lines, capsys):
    path = _write(tmp_path / "latin.csv", _with_cell(lines, 2, "fraud_type", "\u00e9"), encoding="latin-1")
    assert main(["-q", "schema", "infer", str(path)]) == 2
    assert "latin.csv: row 2 (line 4)" in capsys.readouterr().err
    assert main(["-q", "schema", "infer", str(path), "--encoding", "latin-1"]) == 0
    assert "[event_id]" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ cell sizes

def test_a_cell_past_the_limit_is_refused_naming_it(tmp_path, lines, capsys):
    path = _write(tmp_path / "big.csv", _with_cell(lines, 6, "fraud_type", "x" * (MIB + 1)))
    e = _refused(path)
    assert (e.row, e.line, e.column) == (6, 8, "fraud_type")
    assert f"a cell of {MIB + 1:,} characters, more than the limit of {MIB:,}" in str(e)
    rc, err = _train(capsys, path, tmp_path)
    assert rc == 2 and "big.csv: row 6 (line 8), column 'fraud_type': a cell of" in err
    assert len(err) < 1000  # the cell is not echoed
    assert read_table(path, max_cell_chars=MIB + 1)["fraud_type"].iat[6] == "x" * (MIB + 1)


def test_the_limit_is_configurable_and_counts_column_names(tmp_path, capsys):
    path = _write(tmp_path / "t.csv", ["id,v", "1,abc", "2,abcdef"])
    e = _refused(path, max_cell_chars=5)
    assert (e.row, e.line, e.column) == (1, 3, "v")
    rc, err = _train(capsys, path, tmp_path, "--max-cell-chars", "5")
    assert rc == 2 and "t.csv: row 1 (line 3), column 'v': a cell of 6 characters, more than the limit of 5" in err
    assert "column 1's name has 2 characters" in str(_refused(path, max_cell_chars=1))
    with pytest.raises(ValueError, match="max_cell_chars"):
        read_table(path, max_cell_chars=0)


def test_a_long_value_is_cut_in_messages(tmp_path, lines):
    path = _write(tmp_path / "t.csv", _with_cell(lines, 2, "amount", "9" * 5000 + "x"))
    with pytest.raises(DeclaredError) as e:
        _payments(read_table(path))
    assert "(5,001 characters) is not a number" in str(e.value) and len(str(e.value)) < 400


# ------------------------------------------------------------------------- missing, directories

def test_a_missing_file_a_directory_and_an_unreadable_one_are_said(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "nowhere.parquet"
    rc, err = _train(capsys, missing, tmp_path)
    assert rc == 2 and f"input file not found: {missing}" in err
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    rc, err = _train(capsys, folder, tmp_path)
    assert rc == 2 and f"input is a directory, not a file: {folder}" in err

    import builtins

    import libfraud.data.input_file as input_file
    locked = _write(tmp_path / "locked.csv", ["a", "1"])

    def no_access(path, *args, **kwargs):  # chmod does not stop root: refuse as the OS would
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(input_file, "open", no_access, raising=False)
    rc, err = _train(capsys, locked, tmp_path)
    assert rc == 2 and f"input file not readable (permission denied): {locked}" in err


def test_an_empty_file_and_a_broken_parquet_file_are_named(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv: empty file" in str(_refused(tmp_path / "empty.csv"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert "bad.parquet: not a readable Parquet file" in str(_refused(tmp_path / "bad.parquet"))


def test_a_row_longer_than_the_header_is_refused(tmp_path):
    # pandas would take the first field as an index and shift every value right
    for rows, row in ((["1,2,3", "4,5,6"], 0), (["1,2", "", "3,4,5"], 1)):
        e = _refused(_write(tmp_path / "r.csv", ["a,b", *rows]))
        assert (e.row, e.line) == (row, row + 2 + (row == 1)), str(e)
        assert "3 fields, more than the header's 2" in str(e)


# ----------------------------------------------------------------------------- values, messages

def test_load_errors_name_the_file_and_the_line_of_the_row(tmp_path, lines):
    # a quoted cell over two lines and a blank line: the row's line is counted, not guessed
    bad = _with_cell(lines, 7, "amount", "-3")
    bad[2] = bad[2].rsplit(",", 1)[0] + ',"two\nlines"'
    bad.insert(4, "")
    path = _write(tmp_path / "neg.csv", bad)
    with pytest.raises(DeclaredError) as e:
        _payments(read_table(path))
    assert str(e.value).startswith(f"{path}: row 7 (line 11), column 'amount' ([amount]): amount -3 is negative")
    # a frame cut from it has other row positions: no file and no line rather than wrong ones
    with pytest.raises(DeclaredError) as e:
        _payments(read_table(path).iloc[3:])
    assert e.value.row == 4 and e.value.line is None and "neg.csv" not in str(e.value)


def test_values_in_messages_are_plain_python_values(tmp_path):
    from libfraud.data.declared import show_value
    assert [show_value(v) for v in (np.float64(0.0), np.int64(-5), np.float64(0.25), np.str_("a"),
                                    np.bool_(True))] == ["0", "-5", "0.25", "'a'", "True"]
    assert show_value("y" * 200).endswith("... (200 characters)")
    df = pd.read_csv(_write(tmp_path / "t.csv", ["txn_id,timestamp_ms,amount,card_id,device_id,"
                                                 "merchant_id,ip_id,country,mcc",
                                                 "1,10,1.5,1,,1,,1,1", "2,20,-0.5,1,,1,,1,1"]))
    df.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DeclaredError) as e:
        _payments(read_table(tmp_path / "t.parquet"))
    assert "amount -0.5 is negative" in str(e.value) and "np." not in str(e.value)
    assert str(e.value).startswith(f"{tmp_path / 't.parquet'}: row 1, column 'amount'")


def _parquet(tmp_path, lines, name: str, **columns) -> str:
    df = pd.read_csv(_write(tmp_path / "src.csv", lines))
    for column, values in columns.items():
        df[column] = values(df)
    df.to_parquet(tmp_path / name)
    return tmp_path / name


def test_a_boolean_id_column_is_refused(tmp_path, lines, capsys):
    path = _parquet(tmp_path, lines, "b.parquet", card_id=lambda df: df["card_id"] % 2 == 0)
    rc, err = _train(capsys, path, tmp_path)
    assert rc == 2 and "b.parquet: row 0, column 'card_id'" in err
    assert "a boolean column (bool), but ids of entity 'card' are integers or strings" in err
    path = _parquet(tmp_path, lines, "e.parquet", txn_id=lambda df: df["txn_id"] % 2 == 0)
    rc, err = _train(capsys, path, tmp_path)
    assert rc == 2 and "column 'txn_id' ([event_id]): a boolean column (bool), but event ids" in err


def test_a_float_id_past_2_to_the_53_is_refused(tmp_path, lines, capsys):
    def ids(df):
        x = df["txn_id"].astype(float)
        x.iat[5] = 9007199254740993.0  # reads as ...992: the file cannot say which integer it was
        return x
    path = _parquet(tmp_path, lines, "f.parquet", txn_id=ids)
    rc, err = _train(capsys, path, tmp_path)
    assert rc == 2 and "f.parquet: row 5, column 'txn_id' ([event_id]): 9007199254740992.0 is a float" in err
    assert "2**53" in err
    # entity ids declared as strings, in a float column, likewise (hashing "...992" would be wrong)
    df = pd.DataFrame({"txn_id": [1, 2, 3], "timestamp_ms": [1, 2, 3], "card_id": [1.0, 2.0 ** 53, np.nan]})
    from libfraud.data.declared import Entity, EventIdColumn, Schema, TimeColumn
    schema = Schema(EventIdColumn("txn_id"), TimeColumn("timestamp_ms", "ms"), [Entity("card", "card_id", "string")])
    with pytest.raises(DeclaredError, match="column 'card_id'.*at or past 2\\*\\*53"):
        load_events(df, schema)


def test_integer_text_is_read_exactly(tmp_path, lines):
    big = _with_cell(lines, 3, "card_id", "9007199254740993.0")
    df = _payments(read_table(_write(tmp_path / "exact.csv", big)))[0]
    assert int(df.entity_id[3, 0]) == 9007199254740993  # not ...992, as through a float
    path = _write(tmp_path / "half.csv", _with_cell(lines, 3, "card_id", "9007199254740993.5"))
    with pytest.raises(SchemaError, match="row 3 \\(line 5\\), column 'card_id'.*is not an integer"):
        _payments(read_table(path))


def test_score_names_the_input_file(small_bundle, tmp_path, lines, capsys):
    path = _parquet(tmp_path, lines, "b.parquet", card_id=lambda df: df["card_id"] % 2 == 0)
    assert main(["-q", "score", str(small_bundle), str(path)]) == 2
    err = capsys.readouterr().err
    assert "b.parquet: row 0, column 'card_id'" in err and "a boolean column" in err
    neg = _write(tmp_path / "neg.csv", _with_cell(lines, 2, "amount", "-1"))
    assert main(["-q", "score", str(small_bundle), str(neg)]) == 2
    assert "neg.csv: row 2 (line 4), column 'amount'" in capsys.readouterr().err
