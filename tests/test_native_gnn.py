"""The built-in "native" GNN backend: export/native.py's artifact run by cpp/src/backends/native_gnn.cpp
through _core.GnnModel("native", path, D), with no plugin library.

Parity against FraudGnn in PyTorch eager (the message-passing form) on random neighbourhoods, float32,
absolute tolerance 1e-5, for several (entity types E, transaction features Ft): cold starts, partly
masked slots, batch 1 and 64, two fanouts, every ISA variant of the kernel, a width without a
compiled specialisation, max aggregation. Then the refusals: corrupt or mismatched artifacts at load
(FRAUD_STATUS_LOAD_ERROR, naming the path and the fault), inputs of another E or Ft at run time, and
layers the format cannot express at write time; and 4 threads giving bitwise-equal results.
"""

from __future__ import annotations

import json
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: no FraudGnn to export")

from libfraud import _core  # noqa: E402
from libfraud.export.native import (NATIVE_VERSION, NativeExportError, native_reference,  # noqa: E402
                                    read_native, write_native)
from libfraud.models.gnn import FraudGnn  # noqa: E402

TOL = 1e-5  # float32, absolute, logits and embeddings
# (E, Ft): today's 4 entity types and 5 transaction features, then generic neighbourhoods.
SHAPES = [(4, 5), (1, 4), (2, 6), (7, 4)]
DEFAULT = (4, 5)


def _model(hidden: int = 48, embedding_dim: int = 16, seed: int = 0, shape=DEFAULT) -> FraudGnn:
    E, Ft = shape
    torch.manual_seed(seed)
    m = FraudGnn(hidden=hidden, embedding_dim=embedding_dim, num_entity_types=E, txn_features=Ft)
    Fe = E + 1
    g = torch.Generator().manual_seed(seed + 1)
    # Trained-like input scaling (not the identity), so the buffers are exercised.
    m.set_input_scaling(torch.randn(64, Ft, generator=g) * 3 + 1, torch.randn(64, Ft, generator=g) * 2,
                        torch.rand(64, Fe, generator=g))
    return m.eval()


def _neighbourhood(rng: np.random.Generator, batch: int, fanout: int, p: float = 0.7,
                   shape=DEFAULT) -> list[np.ndarray]:
    E, Ft = shape
    Fe = E + 1
    m1 = (rng.random((batch, E)) < 0.85).astype(np.float32)
    m2 = (rng.random((batch, E, fanout)) < p).astype(np.float32) * m1[..., None]
    m3 = (rng.random((batch, E, fanout, E)) < 0.8).astype(np.float32) * m2[..., None]
    x = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    arrays = [x(batch, Ft), x(batch, E, Fe) * m1[..., None], m1, x(batch, E, fanout, Ft) * m2[..., None], m2,
              x(batch, E, fanout, E, Fe) * m3[..., None], m3]
    if batch > 1:  # row 0 a cold start: every mask 0, only its own features
        for i in (1, 2, 3, 4, 5, 6):
            arrays[i][0] = 0.0
    return arrays


def _eager(model: FraudGnn, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        logit, emb = model(*(torch.from_numpy(a) for a in arrays))
    return logit.numpy(), emb.numpy()


def _max_diff(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    return max(float(np.abs(a[0] - b[0]).max()), float(np.abs(a[1] - b[1]).max()))


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"E{s[0]}-Ft{s[1]}")
def shape(request) -> tuple[int, int]:
    return request.param


@pytest.fixture(scope="module")
def model(shape) -> FraudGnn:
    return _model(shape=shape)


def _write(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("native") / "gnn.lfnative"
    report = write_native(model, path)
    return path, report


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, model):
    return _write(tmp_path_factory, model)


@pytest.fixture(scope="module")
def default_artifact(tmp_path_factory):
    """For the refusals, which do not depend on the shape."""
    return _write(tmp_path_factory, _model())


def test_write_returns_manifest_fields(artifact, model, shape):
    path, report = artifact
    assert report["target"] == "native" and report["precision"] == "float32"
    assert report["format_version"] == NATIVE_VERSION
    assert (report["hidden"], report["embedding_dim"]) == (48, 16)
    assert (report["entity_types"], report["txn_features"]) == shape
    assert report["size"] == path.stat().st_size and report["size"] % 64 == 0
    assert report["self_check_max_abs_diff"] < 1e-5
    header, tensors = read_native(path)
    arch = header["architecture"]
    assert (arch["entity_types"], arch["txn_features"], arch["ent_features"]) == (*shape, shape[0] + 1)
    assert arch["aggregation"] == {"ent_to_txn": "mean", "txn_to_ent": "mean", "ent_to_target": "mean"}
    for name, t in model.state_dict().items():
        np.testing.assert_array_equal(tensors[name], t.numpy())
    assert all(t["offset"] % 64 == 0 for t in header["tensors"])


@pytest.mark.parametrize("batch,fanout", [(1, 10), (64, 10), (1, 3), (64, 3), (5, 1)])
def test_parity_with_eager(artifact, model, shape, batch, fanout):
    native = _core.GnnModel("native", str(artifact[0]), 16)
    assert native.plugin_path == "(built-in)"
    rng = np.random.default_rng(batch * 100 + fanout)
    for p in (0.0, 0.4, 1.0):  # no hop-2 neighbours at all, partly masked, all present
        arrays = _neighbourhood(rng, batch, fanout, p, shape)
        got = native.run(*arrays)
        assert got[0].shape == (batch,) and got[1].shape == (batch, 16)
        assert _max_diff(got, _eager(model, arrays)) <= TOL


def test_cold_start_batch_one(artifact, model, shape):
    native = _core.GnnModel("native", str(artifact[0]), 16)
    arrays = _neighbourhood(np.random.default_rng(3), 1, 10, shape=shape)
    for i in (1, 2, 3, 4, 5, 6):
        arrays[i][:] = 0.0
    assert _max_diff(native.run(*arrays), _eager(model, arrays)) <= TOL


def test_masked_slots_never_reach_the_output(artifact, shape):
    native = _core.GnnModel("native", str(artifact[0]), 16)
    arrays = _neighbourhood(np.random.default_rng(4), 32, 10, shape=shape)
    before = native.run(*arrays)
    noisy = [a.copy() for a in arrays]
    rng = np.random.default_rng(5)
    for x, m in ((1, 2), (3, 4), (5, 6)):  # garbage in every masked slot's features
        mask = noisy[m][..., None] == 0
        noisy[x] = np.where(mask, rng.normal(size=noisy[x].shape) * 100, noisy[x]).astype(np.float32)
    after = native.run(*noisy)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_isa_variant(artifact, model, shape, isa, monkeypatch):
    # LIBFRAUD_NATIVE_ISA caps the kernel chosen at load (a CPU without the ISA falls back lower).
    monkeypatch.setenv("LIBFRAUD_NATIVE_ISA", isa)
    native = _core.GnnModel("native", str(artifact[0]), 16)
    arrays = _neighbourhood(np.random.default_rng(6), 64, 10, shape=shape)
    assert _max_diff(native.run(*arrays), _eager(model, arrays)) <= TOL


@pytest.mark.parametrize("hidden,embedding_dim", [(20, 8), (64, 16)])
def test_other_widths(tmp_path, shape, hidden, embedding_dim):
    # 20 has no compiled specialisation (the runtime-width loop); 64 has one.
    m = _model(hidden, embedding_dim, seed=2, shape=shape)
    path = tmp_path / "w.lfnative"
    write_native(m, path)
    native = _core.GnnModel("native", str(path), embedding_dim)
    arrays = _neighbourhood(np.random.default_rng(7), 64, 5, shape=shape)
    assert _max_diff(native.run(*arrays), _eager(m, arrays)) <= TOL


def test_max_aggregation(tmp_path, shape):
    from torch_geometric.nn import SAGEConv
    m = _model(seed=3, shape=shape)
    torch.manual_seed(9)
    m.txn_to_ent = torch.nn.ModuleList([SAGEConv((48, m.ent_features), 48, aggr="max")
                                        for _ in range(m.num_entity_types)]).eval()
    path = tmp_path / "max.lfnative"
    assert write_native(m, path)["aggregation"]["txn_to_ent"] == "max"
    native = _core.GnnModel("native", str(path), 16)
    arrays = _neighbourhood(np.random.default_rng(8), 64, 10, shape=shape)
    assert _max_diff(native.run(*arrays), _eager(m, arrays)) <= TOL


def test_numpy_reference_matches_eager(artifact, model, shape):
    header, tensors = read_native(artifact[0])
    arrays = _neighbourhood(np.random.default_rng(10), 16, 4, shape=shape)
    assert _max_diff(native_reference(arrays, tensors, header["architecture"]), _eager(model, arrays)) <= TOL


def test_four_threads_identical(artifact, shape):
    native = _core.GnnModel("native", str(artifact[0]), 16)
    batches = [_neighbourhood(np.random.default_rng(20 + i), 64, 10, shape=shape) for i in range(8)]
    want = [native.run(*b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda b: native.run(*b), batches))
            for (gl, ge), (wl, we) in zip(got, want):
                np.testing.assert_array_equal(gl, wl)
                np.testing.assert_array_equal(ge, we)


# --- refusals at load ---------------------------------------------------------------------------

def _load_error(path, match: str, dim: int = 16) -> None:
    with pytest.raises(_core.FraudError, match=match) as e:
        _core.GnnModel("native", str(path), dim)
    assert e.value.status == "FRAUD_STATUS_LOAD_ERROR"
    assert str(path) in str(e.value)


def test_inputs_of_another_shape_refused(artifact, shape):
    native = _core.GnnModel("native", str(artifact[0]), 16)
    other = (3, 5) if shape != (3, 5) else (4, 5)
    with pytest.raises(_core.FraudError, match=(
            f"the inputs have {other[0]} entity types and {other[1]} transaction features, "
            f"the model was exported for {shape[0]} and {shape[1]}")) as e:
        native.run(*_neighbourhood(np.random.default_rng(11), 4, 3, shape=other))
    assert e.value.status == "FRAUD_STATUS_INTERNAL"
    with pytest.raises(_core.FraudError, match="1 <= entity types <= 16") as e:  # E = 0: the core refuses
        native.run(*_zero_entity_inputs(2, 3, shape[1]))
    assert e.value.status == "FRAUD_STATUS_INVALID_ARGUMENT"


def _zero_entity_inputs(batch: int, fanout: int, txn_features: int) -> list[np.ndarray]:
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    return [z(batch, txn_features), z(batch, 0, 1), z(batch, 0), z(batch, 0, fanout, txn_features),
            z(batch, 0, fanout), z(batch, 0, fanout, 0, 1), z(batch, 0, fanout, 0)]


def test_corrupt_artifacts_refused(default_artifact, tmp_path):
    raw = default_artifact[0].read_bytes()
    bad = tmp_path / "bad.lfnative"

    bad.write_bytes(b"NOTNATIV" + raw[8:])
    _load_error(bad, "bad magic")
    bad.write_bytes(raw[:8] + struct.pack("<I", NATIVE_VERSION + 1) + raw[12:])
    _load_error(bad, f"format version {NATIVE_VERSION + 1}, this libfraud reads version {NATIVE_VERSION}")
    for cut in (10, 200, len(raw) - 4):
        bad.write_bytes(raw[:cut])
        _load_error(bad, "truncated")
    hlen = struct.unpack_from("<I", raw, 12)[0]
    bad.write_bytes(raw[:32] + b"{" * hlen + raw[32 + hlen:])
    _load_error(bad, "corrupt JSON header")
    _load_error(tmp_path / "missing.lfnative", "cannot open")


def test_embedding_dim_mismatch_refused(default_artifact):
    _load_error(default_artifact[0], "shape mismatch: the artifact's embedding_dim is 16, the caller expects 8", dim=8)


def _rewrite_header(raw: bytes, edit) -> bytes:
    hlen, w_off, w_len = struct.unpack_from("<IQQ", raw, 12)
    header = json.loads(raw[32:32 + hlen])
    edit(header)
    h = json.dumps(header, separators=(",", ":")).encode()
    new_off = (32 + len(h) + 63) // 64 * 64
    return (raw[:8] + struct.pack("<IIQQ", NATIVE_VERSION, len(h), new_off, w_len) + h +
            b"\0" * (new_off - 32 - len(h)) + raw[w_off:])


def test_header_inconsistencies_refused(default_artifact, tmp_path):
    raw = default_artifact[0].read_bytes()
    bad = tmp_path / "bad.lfnative"

    def wrong_shape(h):
        next(t for t in h["tensors"] if t["name"] == "embed.weight")["shape"] = [16, 47]
    bad.write_bytes(_rewrite_header(raw, wrong_shape))
    _load_error(bad, r"tensor 'embed.weight' is \[16, 47\]")

    def unknown_aggr(h):
        h["architecture"]["layers"][2]["aggr"] = "lstm"
    bad.write_bytes(_rewrite_header(raw, unknown_aggr))
    _load_error(bad, "aggregation 'lstm' is not supported")

    def extra_layer(h):
        h["architecture"]["layers"].insert(5, {"name": "norm", "op": "layer_norm"})
    bad.write_bytes(_rewrite_header(raw, extra_layer))
    _load_error(bad, "layer list has 7 entries")

    def arch(**kv):
        return lambda h: h["architecture"].update(kv)
    for edit in (arch(entity_types=17, ent_features=18), arch(ent_features=4), arch(txn_features=0)):
        bad.write_bytes(_rewrite_header(raw, edit))
        _load_error(bad, "need 1..16 entity types, entity features = entity types \\+ 1, 1..256 transaction")

    bad.write_bytes(_rewrite_header(raw, arch(entity_types=3, ent_features=4)))  # tensors are for 4
    _load_error(bad, r"tensor '.*' is \[.*\]; hidden 48, embedding_dim 16, 3 entity types and 5 transaction")


# --- refusals at write --------------------------------------------------------------------------

def test_unsupported_layer_refused(tmp_path):
    m = _model()
    m.norm = torch.nn.LayerNorm(48)
    with pytest.raises(NativeExportError, match=r"cannot express layer 'norm'.*Supported: ent_to_txn"):
        write_native(m, tmp_path / "x.lfnative")
    assert not (tmp_path / "x.lfnative").exists()


def test_unsupported_conv_options_refused(tmp_path):
    from torch_geometric.nn import SAGEConv
    m = _model()
    m.ent_to_target[2] = SAGEConv((48, m.txn_features), 48, aggr="mean", normalize=True)
    with pytest.raises(NativeExportError, match=r"layer 'ent_to_target\.2': normalize=True"):
        write_native(m, tmp_path / "x.lfnative")
    m = _model()
    m.txn_to_ent[0] = SAGEConv((48, m.ent_features), 48, aggr="min")
    with pytest.raises(NativeExportError, match=r"layer 'txn_to_ent\.0': aggregation 'min'"):
        write_native(m, tmp_path / "x.lfnative")


def test_changed_forward_refused(tmp_path):
    class Tanh(FraudGnn):  # same layers, different forward: only the self-check can see it
        def forward(self, *inputs):
            logit, emb = super().forward(*inputs)
            return torch.tanh(logit), emb

    m = Tanh()
    m.load_state_dict(_model().state_dict())
    with pytest.raises(NativeExportError, match="FraudGnn.forward computes something the native program does not"):
        write_native(m.eval(), tmp_path / "x.lfnative")
