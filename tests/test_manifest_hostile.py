"""Hostile manifests the core must refuse with a clear status, never a crash: deep nesting (whose
error message once recursed through nlohmann's dump() until the stack overflowed, killing a serving
process in a hot swap), huge values in messages, out-of-range thresholds, duplicate artifact names,
a byte order mark, and artifact paths that are no file (the bundle directory, a FIFO)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from bundles import payments, random_bundle
from libfraud import _core


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    schema, spec = payments()
    return random_bundle(tmp_path_factory.mktemp("hostile") / "good", schema, spec, rounds=3, explain=False)


def _with_text(good, tmp_path, name, edit):
    bad = tmp_path / name
    shutil.copytree(good, bad)
    path = bad / "manifest.json"
    path.write_bytes(edit(path.read_text()))
    return bad


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_deep_nesting_is_refused_even_on_a_small_thread_stack_during_a_swap(good, tmp_path):
    manifest = json.loads((good / "manifest.json").read_text())
    text = json.dumps(manifest).replace('"format_version": 2', '"format_version": ' + _deep(60_000))
    bad = _with_text(good, tmp_path, "deep", lambda _: text.encode())
    # In a child process: before the fix this killed the process (a swap on a 256 KiB thread).
    script = textwrap.dedent(f"""
        import threading
        from libfraud import _core
        engine = _core.Engine({str(good)!r})
        out = {{}}
        def swap():
            try:
                engine.swap_bundle({str(bad)!r})
                out["status"] = "OK"
            except _core.FraudError as e:
                out["status"], out["message"] = e.status, str(e)
        threading.stack_size(256 * 1024)
        t = threading.Thread(target=swap)
        t.start(); t.join()
        print(out["status"]); print(out["message"])
        print(engine.score_features(__import__("numpy").zeros((1, engine.num_features), "float32"))[0])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status, message, score = proc.stdout.splitlines()[:3]
    assert status == "FRAUD_STATUS_BUNDLE_INVALID"
    assert "nested more than 64 levels deep" in message and len(message) < 2200
    assert 0.0 <= float(score) <= 1.0  # the old bundle kept serving


def test_messages_stay_short_whatever_a_value_holds(good, tmp_path):
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["threshold"] = list(range(2_000_000))
    bad = _with_text(good, tmp_path, "huge", lambda _: json.dumps(manifest).encode())
    with pytest.raises(_core.FraudError, match=r"'threshold' must be a number, got \[0,1,2") as e:
        _core.Engine(str(bad))
    assert len(str(e.value)) < 2200 and "characters)" in str(e.value)


@pytest.mark.parametrize("value", [-1e308, 1.5, -0.01])
def test_a_threshold_outside_0_1_is_refused(good, tmp_path, value):
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["threshold"] = value
    bad = _with_text(good, tmp_path, f"t{value}", lambda _: json.dumps(manifest).encode())
    with pytest.raises(_core.FraudError, match=r"'threshold' must be a score in \[0, 1\]") as e:
        _core.Engine(str(bad))
    assert e.value.status == "FRAUD_STATUS_BUNDLE_INVALID"
    from libfraud.export import verify_bundle
    assert any("threshold" in p for p in verify_bundle(bad))


def test_duplicate_artifact_names_are_refused(good, tmp_path):
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["artifacts"].append(dict(manifest["artifacts"][0]))
    bad = _with_text(good, tmp_path, "dup", lambda _: json.dumps(manifest).encode())
    with pytest.raises(_core.FraudError, match=r"name' 'trees' is also an earlier artifact's"):
        _core.Engine(str(bad))
    from libfraud.export import verify_bundle
    assert any("twice" in p for p in verify_bundle(bad))


def test_a_byte_order_mark_is_refused_by_c_and_python_alike(good, tmp_path):
    bad = _with_text(good, tmp_path, "bom", lambda text: b"\xef\xbb\xbf" + text.encode())
    with pytest.raises(_core.FraudError, match="byte order mark"):
        _core.Engine(str(bad))
    from libfraud.export import BundleError, read_manifest
    with pytest.raises(BundleError):
        read_manifest(bad)


def test_a_long_array_of_objects_is_refused_in_linear_time(good, tmp_path):
    # nlohmann's parse with a depth callback rescans a list at the end of each object in it: 150,000
    # objects at artifacts[0] (a 2 MB manifest) held a load or a swap for minutes (fuzz_manifest_shapes).
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["artifacts"][0] = [{"name": "x"}] * 300_000
    bad = _with_text(good, tmp_path, "wide", lambda _: json.dumps(manifest).encode())
    script = textwrap.dedent(f"""
        from libfraud import _core
        try:
            _core.Engine({str(bad)!r})
        except _core.FraudError as e:
            print(e.status)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "FRAUD_STATUS_BUNDLE_INVALID", proc.stderr[-2000:]


@pytest.mark.parametrize("where, value, key", [
    (("schema", "format"), {"a": 1}, "schema.format"),
    (("schema", "entities", 0, "ids"), ["int"], "schema.entities[0].ids"),
    (("schema", "entities", 0, "ids"), "uuid", "schema.entities[0].ids"),
    (("schema", "categorical", 0, "codes"), 7, "schema.categorical[0].codes"),
    (("schema", "event_id", "ids"), None, "schema.event_id.ids"),
    (("features", "spec", "format"), 3, "features.spec.format"),
])
def test_a_schema_or_spec_key_of_the_wrong_type_is_refused_by_name(good, tmp_path, where, value, key):
    # json::value() threw a type_error for these (FRAUD_STATUS_INTERNAL without the key).
    manifest = json.loads((good / "manifest.json").read_text())
    node = manifest
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    bad = _with_text(good, tmp_path, "typed", lambda _: json.dumps(manifest).encode())
    with pytest.raises(_core.FraudError) as e:
        _core.Engine(str(bad))
    assert e.value.status == "FRAUD_STATUS_BUNDLE_INVALID" and key in str(e.value), str(e.value)


def test_a_huge_name_in_the_schema_gives_a_short_message(good, tmp_path):
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["schema"]["entities"][0]["name"] = "é" * 1_000_000  # cut inside no UTF-8 sequence
    bad = _with_text(good, tmp_path, "name", lambda _: json.dumps(manifest, ensure_ascii=False).encode())
    with pytest.raises(_core.FraudError, match="must match") as e:
        _core.Engine(str(bad))
    assert len(str(e.value)) < 2200 and "characters)" in str(e.value)


@pytest.mark.parametrize("case", ["dot", "fifo"])
def test_an_artifact_that_is_no_file_is_named_by_c_and_python_alike(good, tmp_path, case):
    """'.' was reported as a symlink leaving the bundle and a FIFO as missing. In a child: opening
    a FIFO that nobody writes must never block (the timeout fails the test if it does)."""
    manifest = json.loads((good / "manifest.json").read_text())
    trees = next(a for a in manifest["artifacts"] if a["name"] == "trees")
    if case == "dot":
        trees["path"] = "."
    bad = _with_text(good, tmp_path, case, lambda _: json.dumps(manifest).encode())
    if case == "fifo":
        (bad / trees["path"]).unlink()
        os.mkfifo(bad / trees["path"])
    words = (f"artifact 'trees' path '{trees['path']}' " +
             ("is a directory, not a file" if case == "dot" else "is a FIFO (not a regular file)"))
    code = textwrap.dedent(f"""
        from libfraud import _core
        from libfraud.export import verify_bundle
        try:
            _core.Engine({str(bad)!r})
        except _core.FraudError as e:
            print(e.status); print(e)
        print(verify_bundle({str(bad)!r}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    status, message, python = done.stdout.splitlines()[:3]
    assert status == "FRAUD_STATUS_BUNDLE_CHECKSUM" and words in message, done.stdout
    assert words in python, python
