"""No check-then-use gap (export/BUNDLE.md "Security"): every artifact the engine loads (the tree
library, the native GNN weights, the TorchScript GNN through the torch plugin, the TreeSHAP tables)
is read from a sealed private copy whose sha256 is checked, never from the bundle's file again.

A test-only hook (_core._set_after_verify_hook, engine/model.h) runs after the bundle verifies and
before anything is loaded: it alters an artifact in exactly the window a racing writer would hit
(before the fix, 62 and 92 of 400 opens served swapped native GNN weights). The open must then be
refused as altered, or, for a file nothing loads, go on serving what was verified."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the GNN artifacts are exported from FraudGnn")
pytest.importorskip("xgboost")

from bundles import payments, random_bundle  # noqa: E402
from libfraud import FraudError, Scorer, _core  # noqa: E402
from libfraud.data import generate_transactions  # noqa: E402
from libfraud.export.gnn import export_torchscript  # noqa: E402
from libfraud.export.native import write_native  # noqa: E402
from libfraud.models.gnn import FraudGnn  # noqa: E402
from libfraud.train_gnn import stacked_feature_names  # noqa: E402

CHECKSUM = "FRAUD_STATUS_BUNDLE_CHECKSUM"
D = 4


def _gnn(seed: int, E: int, Ft: int) -> FraudGnn:
    torch.manual_seed(seed)
    return FraudGnn(hidden=16, embedding_dim=D, num_entity_types=E, txn_features=Ft).eval()


@pytest.fixture(scope="module")
def gnn_bundle(tmp_path_factory):
    """A payments bundle whose trees read a GNN's outputs, served natively or by TorchScript; and,
    beside it, another model's weights of the same shapes (what a swap would put in)."""
    schema, spec = payments()
    E, Ft = len(schema["entities"]), 4  # the sampler's transaction features without graph fields
    work = tmp_path_factory.mktemp("sealed")
    model, other = _gnn(1, E, Ft), _gnn(2, E, Ft)
    write_native(model, work / "model.lfnative")
    write_native(other, work / "other.lfnative")
    export_torchscript(model, work / "model.ts.pt")
    export_torchscript(other, work / "other.ts.pt")
    outputs = stacked_feature_names(D)
    gnn = {"sampler": {"fanout": 4, "strategy": "most_recent", "seed": 0, "graph_fields": []},
           "embedding_dim": D, "output_features": outputs, "default_backend": "native",
           "backends": [{"kind": kind, "path": str(work / f"model.{ext}"), "parity": {"passed": True}}
                        for kind, ext in (("native", "lfnative"), ("torchscript", "ts.pt"))]}
    names = [f["name"] for f in spec["features"]] + outputs
    bundle = random_bundle(work / "bundle", schema, spec, names, gnn=gnn)
    return bundle, {"gnn_native": work / "other.lfnative", "gnn_torchscript": work / "other.ts.pt"}


@pytest.fixture(scope="module")
def transactions():
    return next(generate_transactions(400, seed=5))


@pytest.fixture
def bundle(gnn_bundle, tmp_path):
    return shutil.copytree(gnn_bundle[0], tmp_path / "bundle")


@pytest.fixture
def after_verify():
    """Sets the hook for one test; always removed after it."""
    yield _core._set_after_verify_hook
    _core._set_after_verify_hook(None)


def _artifacts(bundle) -> dict[str, dict]:
    return {a["name"]: a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]}


def _scores(bundle, transactions, backend: str) -> np.ndarray:
    scorer = Scorer(bundle, gnn_backend=backend)
    assert scorer.gnn_backend == backend
    return scorer.score_and_ingest(transactions)


def test_the_fixture_serves_and_its_gnn_matters(bundle, transactions, gnn_bundle):
    native, torchscript = _scores(bundle, transactions, "native"), _scores(bundle, transactions, "torchscript")
    np.testing.assert_allclose(native, torchscript, atol=1e-4)
    # The swap the tests make changes scores (a silent wrong result before the fix): here the
    # manifest is made to list the other weights, so they load and serve.
    path = bundle / "gnn" / "model.lfnative"
    shutil.copyfile(gnn_bundle[1]["gnn_native"], path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["name"] == "gnn_native")
    entry["sha256"], entry["size"] = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert np.abs(_scores(bundle, transactions, "native") - native).max() > 1e-3


@pytest.mark.parametrize("name, backend", [("trees", "native"), ("gnn_native", "native"),
                                           ("gnn_torchscript", "torchscript"), ("shap_tables", "native")])
def test_an_artifact_altered_after_verification_is_refused(bundle, transactions, gnn_bundle, after_verify,
                                                          name, backend):
    artifact = _artifacts(bundle)[name]
    path = bundle / artifact["path"]
    original = path.read_bytes()
    expected = _scores(bundle, transactions, backend)
    replacement = gnn_bundle[1].get(name)
    swapped = replacement.read_bytes() if replacement else original[:-1] + bytes([original[-1] ^ 0x01])

    def replace_with(data):
        def swap(bundle_dir):  # what a writer racing the open does, deterministically
            assert bundle_dir == str(bundle)
            tmp = path.with_name(path.name + ".new")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return swap

    after_verify(replace_with(swapped))
    with pytest.raises(FraudError) as error:
        Scorer(bundle, gnn_backend=backend)
    assert error.value.status == CHECKSUM, str(error.value)
    assert str(path) in str(error.value) and "altered after verification" in str(error.value)

    path.write_bytes(original)
    after_verify(replace_with(original))  # a new file of the verified bytes: served as before
    np.testing.assert_array_equal(_scores(bundle, transactions, backend), expected)


def test_an_artifact_nothing_loads_may_change_without_effect(bundle, transactions, after_verify):
    expected = _scores(bundle, transactions, "native")
    source = bundle / _artifacts(bundle)["xgboost"]["path"]  # xgboost-ubjson: checksummed, never loaded
    after_verify(lambda _: source.write_bytes(b"not a model"))
    np.testing.assert_array_equal(_scores(bundle, transactions, "native"), expected)


@pytest.mark.parametrize("name", ["trees", "gnn_native"])
def test_a_fifo_swapped_in_is_refused_without_blocking(bundle, name):
    """In a child: before the fix, opening the FIFO (nobody writes it) blocked the load forever."""
    path = bundle / _artifacts(bundle)[name]["path"]
    code = textwrap.dedent(f"""
        import os
        from libfraud import _core
        def swap(_):
            os.unlink({str(path)!r})
            os.mkfifo({str(path)!r})
        _core._set_after_verify_hook(swap)
        try:
            _core.Engine({str(bundle)!r})
            print("OPENED")
        except _core.FraudError as e:
            print(e.status)
            print(e)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    status, message = done.stdout.split("\n", 1)
    assert status == CHECKSUM, done.stdout
    assert f"{path} is a FIFO (not a regular file)" in message
