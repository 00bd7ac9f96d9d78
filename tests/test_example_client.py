"""The example switch (examples/switch_client.c) built against the INSTALLED package, two ways
(CMake find_package and pkg-config make), with nothing from the source tree but examples/ itself.

Checks: its scores equal libfraud.Scorer's on the same transactions exactly (same float32, printed
with %.9g); bad rows are reported (row and field), counted, skipped, and leave the other scores as
they are; a tampered bundle is refused with the checksum status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import libfraud
from libfraud.data.io import load_transactions

# Fixtures from conftest.py: small_bundle (a bundle directory), small_transactions_csv (its CSV).

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCES = ("switch_client.c", "CMakeLists.txt", "Makefile")
BUILDS = ("cmake", "make")


def _run(cmd, cwd: Path, env: dict | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def clients(tmp_path_factory) -> dict[str, Path]:
    """The client built each way, from copies of the example sources only."""
    root = tmp_path_factory.mktemp("switch_client")
    env = {k: v for k, v in os.environ.items()
           if k not in ("CMAKE_PREFIX_PATH", "PKG_CONFIG_PATH", "CPATH", "C_INCLUDE_PATH",
                        "LIBRARY_PATH", "LD_LIBRARY_PATH")}
    built = {}

    src = root / "cmake-src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy(EXAMPLES / name, src / name)
    _run(["cmake", "-S", src, "-B", root / "cmake-build", "-DCMAKE_BUILD_TYPE=Release",
          f"-DCMAKE_PREFIX_PATH={libfraud.cmake_prefix_path}"], cwd=root, env=env)
    _run(["cmake", "--build", root / "cmake-build"], cwd=root, env=env)
    built["cmake"] = root / "cmake-build" / "switch_client"

    src = root / "make-src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy(EXAMPLES / name, src / name)
    _run(["make"], cwd=src, env={**env, "PKG_CONFIG_PATH": libfraud.pkgconfig_path})
    built["make"] = src / "switch_client"
    return built


def _client(clients: dict[str, Path], build: str, *args) -> subprocess.CompletedProcess:
    # No LD_LIBRARY_PATH: the binary must find the package's libfraud.so by itself (rpath).
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    return subprocess.run([clients[build], *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def _scores(text: str) -> dict[int, str]:
    lines = text.splitlines()
    assert lines[0] == "txn_id,score"
    out = {}
    for line in lines[1:]:
        txn_id, score = line.split(",")
        out[int(txn_id)] = score
    return out


@pytest.fixture(scope="module")
def expected(small_bundle, small_transactions_csv) -> dict[int, str]:
    """Scorer's scores, formatted as the client prints a float32 (%.9g)."""
    df = load_transactions(small_transactions_csv)
    scores = libfraud.Scorer(small_bundle).score_and_ingest(df)
    assert scores.dtype == np.float32 and len(scores) == len(df)
    return {int(t): "%.9g" % float(s) for t, s in zip(df["txn_id"], scores)}


@pytest.mark.parametrize("build", BUILDS)
def test_client_links_the_installed_library(clients, build):
    ldd = subprocess.run(["ldd", clients[build]], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    line = next(l for l in ldd.stdout.splitlines() if "libfraud.so" in l)
    resolved = Path(line.split("=>")[1].split("(")[0].strip())
    # The package's lib/ (a wheel holds copies, not symlinks, of libfraud.so and its SONAME file).
    assert resolved.resolve().parent == Path(libfraud.library_path).resolve().parent, ldd.stdout


@pytest.mark.parametrize("build", BUILDS)
def test_client_scores_equal_scorer(clients, build, small_bundle, small_transactions_csv,
                                    expected, tmp_path):
    out = tmp_path / "scores.csv"
    proc = _client(clients, build, small_bundle, small_transactions_csv, "--scores", out)
    assert proc.returncode == 0, proc.stderr
    got = _scores(out.read_text())
    assert got == expected
    assert f"transactions: {len(expected)}" in proc.stderr
    assert "rejected: 0" in proc.stderr and "p99.9=" in proc.stderr
    # stdout gives the same lines as --scores
    proc = _client(clients, build, small_bundle, small_transactions_csv)
    assert proc.returncode == 0, proc.stderr
    assert _scores(proc.stdout) == expected


def _with_bad_rows(csv: Path, out: Path) -> list[tuple[int, int, str]]:
    """Copy csv with three bad rows inserted; returns (data row number, txn_id, field) of each."""
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    col = {name: i for i, name in enumerate(header)}
    rows = lines[1:]
    next_id = max(int(r.split(",")[col["txn_id"]]) for r in rows) + 1
    corruptions = [("amount", "abc", "amount"), ("amount", "NaN", "amount"),
                   ("card_id", "-3", "card")]
    bad = []
    for k, (column, value, field) in enumerate(corruptions):
        at = (k + 1) * len(rows) // 4  # insert after rows[at - 1], copying its timestamp: in order
        fields = rows[at - 1].split(",")
        fields[col["txn_id"]] = str(next_id + k)
        fields[col[column]] = value
        rows.insert(at, ",".join(fields))
        bad.append((at + 1, next_id + k, field))  # rows are numbered from 1, header excluded
    out.write_text("\n".join([lines[0], *rows]) + "\n")
    return bad


@pytest.mark.parametrize("build", BUILDS)
def test_bad_rows_reported_and_skipped(clients, build, small_bundle, small_transactions_csv,
                                       expected, tmp_path):
    csv = tmp_path / "with_bad_rows.csv"
    bad = _with_bad_rows(small_transactions_csv, csv)
    proc = _client(clients, build, small_bundle, csv)
    assert proc.returncode == 1, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("row ")]
    assert len(errors) == len(bad), proc.stderr
    for line, (row, txn_id, field) in zip(errors, bad):
        assert line.startswith(f"row {row} (txn_id={txn_id}): FRAUD_STATUS_INVALID_TRANSACTION: "), line
        assert field in line.split(": ", 2)[2], line
    assert "rejected: 3" in proc.stderr
    # The core left its store unchanged for each bad row: every other score is as without them.
    assert _scores(proc.stdout) == expected


@pytest.mark.parametrize("build", BUILDS)
def test_tampered_bundle_refused(clients, build, small_bundle, small_transactions_csv, tmp_path):
    bundle = tmp_path / "tampered"
    shutil.copytree(small_bundle, bundle)
    so = bundle / "trees" / "model.so"
    data = bytearray(so.read_bytes())
    data[len(data) // 2] ^= 0x01
    so.write_bytes(bytes(data))
    proc = _client(clients, build, bundle, small_transactions_csv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "FRAUD_STATUS_BUNDLE_CHECKSUM" in proc.stderr, proc.stderr
    assert "sha256" in proc.stderr and "model.so" in proc.stderr, proc.stderr


@pytest.mark.parametrize("build", BUILDS)
def test_usage_and_missing_files(clients, build, small_bundle, tmp_path):
    assert _client(clients, build).returncode == 2
    proc = _client(clients, build, small_bundle, tmp_path / "no-such.csv")
    assert proc.returncode == 2 and "no-such.csv" in proc.stderr
    proc = _client(clients, build, tmp_path / "no-bundle", tmp_path / "no-such.csv")
    assert proc.returncode == 2 and "FRAUD_STATUS_" in proc.stderr
