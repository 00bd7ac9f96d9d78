"""The example switch (examples/switch_client.c) built against the INSTALLED package, two ways
(CMake find_package and pkg-config make), with nothing from the source tree but examples/ itself.

Checks: its scores equal libfraud.Scorer's on the same transactions exactly (same float32, printed
with %.9g), for the payments preset and for a bundle of another declared schema (the client maps
its CSV columns by the engine's schema names); bad rows are reported (row and field), counted,
skipped, and leave the other scores as they are; a tampered bundle is refused with the checksum
status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import libfraud
from libfraud.data.declared import (CategoricalField, Entity, EventIdColumn, NumericField, Schema,
                                    TimeColumn)
from libfraud.data.io import load_transactions, read_table

from bundles import random_bundle, spec_json

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


def _scores(text: str, id_column: str = "txn_id") -> dict[int, str]:
    lines = text.splitlines()
    assert lines[0] == f"{id_column},score"
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
    assert f"events: {len(expected)}" in proc.stderr
    assert "rejected: 0" in proc.stderr and "p99.9=" in proc.stderr
    # stdout gives the same lines as --scores
    proc = _client(clients, build, small_bundle, small_transactions_csv)
    assert proc.returncode == 0, proc.stderr
    assert _scores(proc.stdout) == expected


def test_client_reasons_equal_scorers(clients, small_bundle, small_transactions_csv, tmp_path):
    """--reasons K: alerts carry the reasons Scorer gives for the same served scores, from C."""
    out = tmp_path / "reasons.csv"
    proc = _client(clients, "make", small_bundle, small_transactions_csv, "--scores", out, "--reasons", "2")
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == ("txn_id,score,reason_1,reason_1_code,reason_1_contribution,"
                        "reason_2,reason_2_code,reason_2_contribution")
    df = load_transactions(small_transactions_csv)
    scorer = libfraud.Scorer(small_bundle)
    frame = scorer.score_and_ingest_explained(df, 2, min_score=scorer.threshold)
    explained = 0
    for line, (_, row) in zip(lines[1:], frame.iterrows()):
        fields = line.split(",")
        assert fields[1] == "%.9g" % float(row["score"])
        for j in (1, 2):
            name, code, contribution = fields[3 * j - 1: 3 * j + 2]
            if row["n_reasons"] >= j:
                assert (name, int(code)) == (row[f"reason_{j}"], row[f"reason_{j}_code"])
                assert contribution == "%.9g" % row[f"reason_{j}_contribution"]
                explained += 1
            else:
                assert (name, code, contribution) == ("", "", "")
    assert explained > 0
    bad = _client(clients, "make", small_bundle, small_transactions_csv, "--reasons", "60")
    assert bad.returncode == 2 and "reason families" in bad.stderr


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
        assert line.startswith(f"row {row} (id={txn_id}): FRAUD_STATUS_INVALID_TRANSACTION: "), line
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


# A schema of the user's own: string ids and codes (hashed with fraud_hash_id on both sides), an
# optional entity, a numeric field with missing cells, no label. Columns named as the schema's
# fields, which is how the client finds them (the C API gives names, not the user's columns).
GENERIC = Schema(
    event_id=EventIdColumn("event_id"), time=TimeColumn("time_ms", "ms"), amount="amount",
    entities=[Entity("customer", "customer", ids="string"), Entity("terminal", "terminal_id"),
              Entity("device", "device", ids="string", required=False)],
    numeric=[NumericField("risk", "risk")], categorical=[CategoricalField("channel", "channel", "string")])


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    """(bundle, csv) of the GENERIC schema."""
    import pandas as pd
    d = tmp_path_factory.mktemp("generic")
    spec = spec_json(GENERIC, [
        {"kind": "amount", "name": "amount"},
        {"kind": "numeric", "field": "risk", "name": "risk"},
        {"kind": "categorical", "field": "channel", "name": "channel_code"},
        {"kind": "window", "entity": "customer", "agg": "count", "window_ms": 3_600_000, "name": "c_count_1h"},
        {"kind": "window", "entity": "terminal", "agg": "sum", "field": "amount", "window_ms": 86_400_000,
         "name": "t_sum_24h"},
        {"kind": "window", "entity": "customer", "agg": "mean", "field": "risk", "window_ms": 86_400_000,
         "name": "c_risk_mean_24h"},
        {"kind": "distinct", "entity": "customer", "of": {"entity": "device"}, "window_ms": 86_400_000,
         "name": "c_devices_24h"},
        {"kind": "novelty", "entity": "customer", "of": {"categorical": "channel"}, "name": "c_new_channel"},
    ])
    rng = np.random.default_rng(5)
    n = 1500
    risk = np.round(rng.normal(size=n), 3).astype(object)
    risk[rng.random(n) < 0.2] = ""
    device = np.array([f"dev-{i}" for i in rng.integers(0, 60, n)], dtype=object)
    device[rng.random(n) < 0.3] = ""
    frame = pd.DataFrame({
        "event_id": np.arange(n) * 7 + 3, "time_ms": 1_700_000_000_000 + np.cumsum(rng.integers(0, 120_000, n)),
        "amount": np.round(rng.lognormal(3, 1, n), 2), "customer": [f"cust-{i}" for i in rng.integers(0, 80, n)],
        "terminal_id": rng.integers(0, 30, n), "device": device, "risk": risk,
        "channel": rng.choice(["ecom", "pos", "moto"], n)})
    frame.to_csv(d / "events.csv", index=False)
    from libfraud.data.declared import load_events
    from libfraud.features import replay
    rows = replay(load_events(read_table(d / "events.csv"), GENERIC)[0], None, GENERIC, spec).features
    bundle = random_bundle(d / "bundle", GENERIC.to_json(), spec, seed=4, rounds=10, X=rows)
    return bundle, d / "events.csv"


@pytest.mark.parametrize("build", BUILDS)
def test_client_serves_another_schema_as_scorer_does(clients, build, generic, tmp_path):
    bundle, csv = generic
    frame = read_table(csv)  # the user's columns, as `libfraud score` reads them
    scorer = libfraud.Scorer(bundle)
    features = scorer.features(frame)
    assert features["c_count_1h"].isna().sum() == 0 and features["risk"].isna().any()
    want = {int(i): "%.9g" % float(s) for i, s in zip(frame["event_id"], scorer.score_and_ingest(frame))}
    assert len(set(want.values())) >= 5  # the trees see varied rows
    proc = _client(clients, build, bundle, csv, "--scores", tmp_path / "scores.csv")
    assert proc.returncode == 0, proc.stderr
    assert _scores((tmp_path / "scores.csv").read_text(), "event_id") == want
    assert f"events: {len(frame)}" in proc.stderr and "rejected: 0" in proc.stderr


@pytest.mark.parametrize("build", BUILDS)
def test_client_names_a_schema_column_the_csv_lacks(clients, build, generic, tmp_path):
    bundle, csv = generic
    lines = csv.read_text().splitlines()
    lines[0] = lines[0].replace("channel", "chan")
    (tmp_path / "renamed.csv").write_text("\n".join(lines) + "\n")
    proc = _client(clients, build, bundle, tmp_path / "renamed.csv")
    assert proc.returncode == 2 and "'channel'" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_client_explains_the_demos_alerts_as_the_demo_did(clients, small_demo, tmp_path):
    """The demo's bundle (GNN + trees): the C client's reasons for its alerts are the demo's."""
    report, out = small_demo
    df = pd.read_parquet(out / "transactions.parquet")
    csv = tmp_path / "events.csv"
    df.to_csv(csv, index=False)
    scored = tmp_path / "scored.csv"
    proc = _client(clients, "make", out / "bundle", csv, "--scores", scored, "--reasons", "3")
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(scored)
    demo = pd.read_csv(out / report["reasons"]["file"])  # the test period's alerts, explained in Python
    alerts = got.set_index("txn_id").loc[demo["txn_id"]]
    np.testing.assert_allclose(alerts["score"].to_numpy(), demo["score"].to_numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(alerts["reason_1_code"].fillna(0).to_numpy(), demo["reason_1_code"].to_numpy())
    np.testing.assert_allclose(alerts["reason_1_contribution"].fillna(0).to_numpy(),
                               demo["reason_1_contribution"].fillna(0).to_numpy(), rtol=1e-5, atol=1e-6)
