"""The dense lowering and its ONNX artifacts: dense == PyG (float32, 1e-5) for mean and max
aggregation on random, cold-start and partly masked neighbourhoods, for several (entity types E,
transaction features Ft); refusal of layers it cannot lower; ONNX Runtime == PyTorch (1e-5); FP16
within FP16_TOLERANCE of float32 and finite on huge inputs; every op in TensorRT's allow-list."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from libfraud.export.gnn import check_gnn_parity  # noqa: E402
from libfraud.export.lower import (  # noqa: E402
    FP16_MAX, PROBE_TOLERANCE, DenseGnn, LoweringMismatchError, UnsupportedLayerError, lower,
)
from libfraud.export.onnx_export import (  # noqa: E402
    FP16_TOLERANCE, ONNX_OPSET, TENSORRT_ONNX_OPS, OnnxExportError, convert_fp16, export_onnx,
    fp16_score_effect, onnx_runner, tensorrt_op_problems,
)
from libfraud.models.gnn import INPUT_NAMES, TORCHSCRIPT_DEPRECATION, FraudGnn, input_shapes  # noqa: E402

with warnings.catch_warnings():
    # PyG's import path calls torch.jit.script (deprecated upstream in torch >= 2.11).
    warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
    from torch_geometric.nn import SAGEConv  # noqa: E402

K = 5
STAGES = ("ent_to_txn", "txn_to_ent", "ent_to_target")
# (E, Ft): today's 4 entity types and 5 transaction features, then generic neighbourhoods.
SHAPES = [(4, 5), (1, 4), (2, 6), (7, 4)]
DEFAULT = (4, 5)
shape_ids = pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"E{s[0]}-Ft{s[1]}")


def neighbourhoods(n: int, k: int = K, seed: int = 0, keep: float = 0.7,
                   shape: tuple[int, int] = DEFAULT) -> dict[str, np.ndarray]:
    """The contract's arrays for (E, Ft): nested masks, zero padding, one-hot entity types,
    log1p(degree), realistic transaction features; row 0 is a cold start (every mask 0)."""
    rng = np.random.default_rng(seed)
    E, Ft = shape
    s = input_shapes(n, k, E, Ft)
    m1 = (rng.random(s["ent1_mask"]) < keep).astype(np.float32)
    m2 = (rng.random(s["txn2_mask"]) < keep).astype(np.float32) * m1[:, :, None]
    m3 = (rng.random(s["ent3_mask"]) < keep).astype(np.float32) * m2[..., None]
    m1[0], m2[0], m3[0] = 0, 0, 0

    def entities(shape):
        x = np.zeros(shape, np.float32)
        x[..., :E] = np.eye(E, dtype=np.float32)
        x[..., E] = np.log1p(rng.integers(0, 500, shape[:-1]))
        return x

    def txns(shape):  # log1p(amount), sin/cos(hour), log1p(age_s), then graph fields (like mcc / 10000)
        x = np.empty(shape, np.float32)
        x[..., 0] = np.log1p(rng.lognormal(3.5, 1.2, shape[:-1]))
        hour = rng.uniform(0, 24, shape[:-1])
        x[..., 1], x[..., 2] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
        x[..., 3] = np.log1p(rng.exponential(86400 * 3, shape[:-1]))
        x[..., 4:] = rng.integers(1000, 9999, (*shape[:-1], Ft - 4)) / 10000
        return x

    target = txns(s["target_x"])
    target[..., 3] = 0.0
    return {"target_x": target, "ent1_x": entities(s["ent1_x"]) * m1[..., None], "ent1_mask": m1,
            "txn2_x": txns(s["txn2_x"]) * m2[..., None], "txn2_mask": m2,
            "ent3_x": entities(s["ent3_x"]) * m3[..., None], "ent3_mask": m3}


def make_model(aggr: str = "mean", seed: int = 0, shape: tuple[int, int] = DEFAULT) -> FraudGnn:
    """A FraudGnn with input scaling set from data; aggr != "mean" swaps every SAGEConv for one with
    that aggregation and the same weights (FraudGnn itself builds mean convs)."""
    torch.manual_seed(seed)
    model = FraudGnn(hidden=32, embedding_dim=16, num_entity_types=shape[0], txn_features=shape[1])
    a = {n: torch.as_tensor(v) for n, v in neighbourhoods(256, seed=100 + seed, shape=shape).items()}
    model.set_input_scaling(a["target_x"], a["txn2_x"][a["txn2_mask"] > 0], a["ent1_x"][a["ent1_mask"] > 0])
    if aggr != "mean":
        for stage in STAGES:
            convs = getattr(model, stage)
            for i, conv in enumerate(convs):
                swapped = SAGEConv(conv.in_channels, conv.out_channels, aggr=aggr)
                swapped.load_state_dict(conv.state_dict())
                convs[i] = swapped
    return model.eval()


def dense_runner(dense: DenseGnn):
    def run(*arrays):
        with torch.no_grad():
            logit, emb = dense(*(torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in arrays))
        return logit.numpy(), emb.numpy()
    return run


# -- the lowering -------------------------------------------------------------------------------

@shape_ids
@pytest.mark.parametrize("aggr", ["mean", "max"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_matches_pyg(aggr, seed, shape):
    model = make_model(aggr, seed, shape)
    dense = lower(model)
    assert dense.aggr == (aggr,) * 3
    assert (dense.num_entity_types, dense.txn_features) == shape
    # check_gnn_parity adds a cold-start row and a partly masked copy of every row.
    report = check_gnn_parity(model, dense_runner(dense), neighbourhoods(64, seed=seed, shape=shape),
                              tolerance=PROBE_TOLERANCE)
    assert report["passed"], report
    cold = {n: np.zeros_like(v) if n != "target_x" else v
            for n, v in neighbourhoods(8, seed=seed, shape=shape).items()}
    assert check_gnn_parity(model, dense_runner(dense), cold, tolerance=PROBE_TOLERANCE)["passed"]


@pytest.mark.parametrize("aggr", ["mean", "max"])
def test_unsaturated_dense_matches_pyg_beyond_fp16_range(aggr):
    """saturate=None is PyG's float32 arithmetic for any input; the default clamps at FP16_MAX."""
    model = make_model(aggr)
    a = neighbourhoods(16, seed=5)
    a["target_x"] = a["target_x"] * 1e5
    got = dense_runner(lower(model, saturate=None))(*a.values())
    with torch.no_grad():
        want = model(*(torch.as_tensor(v) for v in a.values()))
    assert float(want[0].abs().max()) > 10 * FP16_MAX ** 0.5  # really outside the usual range
    for g, w in zip(got, want):  # float32 rounding at these magnitudes: relative tolerance
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-3)


@shape_ids
def test_masked_slots_never_leak_into_dense_outputs(shape):
    dense = lower(make_model("max", shape=shape))
    a = neighbourhoods(16, seed=3, shape=shape)
    b = {n: v.copy() for n, v in a.items()}
    for x, m in (("ent1_x", "ent1_mask"), ("txn2_x", "txn2_mask"), ("ent3_x", "ent3_mask")):
        b[x][b[m] == 0] = 1e4  # garbage under mask 0
    got_a, got_b = dense_runner(dense)(*a.values()), dense_runner(dense)(*b.values())
    np.testing.assert_array_equal(got_a[0], got_b[0])
    np.testing.assert_array_equal(got_a[1], got_b[1])


def test_unsupported_layer_is_refused_by_name():
    model = make_model()
    model.norm = nn.LayerNorm(32)
    with pytest.raises(UnsupportedLayerError) as err:
        lower(model)
    msg = str(err.value)
    assert "'norm'" in msg and "torch.nn.modules.normalization.LayerNorm" in msg and "Supported:" in msg
    assert "SAGEConv" in msg and err.value.layer_name == "norm"


@pytest.mark.parametrize("kwargs, where", [({"aggr": "std"}, "ent_to_txn.0.aggr_module"),
                                           ({"aggr": "mean", "project": True}, "ent_to_txn.0")])
def test_unsupported_conv_option_is_refused(kwargs, where):
    model = make_model()
    conv = model.ent_to_txn[0]
    model.ent_to_txn[0] = SAGEConv(conv.in_channels, conv.out_channels, **kwargs)
    with pytest.raises(UnsupportedLayerError) as err:
        lower(model)
    assert err.value.layer_name == where and "Supported:" in str(err.value)


def test_changed_forward_is_refused(monkeypatch):
    class Variant(FraudGnn):  # a subclass may override forward: refused by type
        pass

    with pytest.raises(UnsupportedLayerError, match="FraudGnn itself"):
        lower(Variant(hidden=8, embedding_dim=4))
    model = make_model()
    original = FraudGnn.forward

    def changed(self, *args):  # a forward edit the lowering does not know (no new layer)
        logit, emb = original(self, *args)
        return logit, torch.tanh(emb)

    monkeypatch.setattr(FraudGnn, "forward", changed)
    with pytest.raises(LoweringMismatchError, match="differs"):
        lower(model)


def test_dense_form_uses_no_data_dependent_indexing():
    dense = lower(make_model("max"))
    args = tuple(torch.as_tensor(v) for v in neighbourhoods(4).values())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)  # torch 2.13's own export path
        program = torch.export.export(dense, args)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    banned = [t for t in targets if any(w in t for w in ("scatter", "gather", "index", "nonzero"))]
    assert not banned, banned


# -- ONNX ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["mean", "max"])
def exported(request, tmp_path_factory):
    model = make_model(request.param, seed=3)
    out = tmp_path_factory.mktemp(f"onnx-{request.param}")
    onnx32 = export_onnx(lower(model), out / "gnn.onnx", fanout=K)
    onnx16 = convert_fp16(onnx32.path, out / "gnn.fp16.onnx")
    print(f"\n[{request.param}] export {onnx32.seconds:.1f} s, fp16 conversion {onnx16.seconds:.2f} s; "
          f"ops {dict(onnx32.ops)}")
    return model, onnx32, onnx16


def test_onnx_is_one_file_with_recorded_opset_and_ops(exported):
    _, onnx32, onnx16 = exported
    assert (onnx32.entity_types, onnx32.txn_features) == (onnx16.entity_types, onnx16.txn_features) == DEFAULT
    assert sorted(p.name for p in onnx32.path.parent.iterdir()) == ["gnn.fp16.onnx", "gnn.onnx"]
    assert onnx32.opset == ONNX_OPSET and onnx32.target == "onnx" and onnx32.precision == "float32"
    assert onnx16.target == "onnx-fp16" and onnx16.precision == "float16" and onnx16.fanout == K
    assert [op for op, _ in onnx32.ops] == sorted(op for op, _ in onnx32.ops)
    m = onnx32.manifest()
    assert m["opset"] == ONNX_OPSET and m["ops"]["MatMul"] > 0 and m["saturate"] == FP16_MAX
    proto = onnx.load(str(onnx32.path))
    assert [i.name for i in proto.graph.input] == list(INPUT_NAMES)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


@pytest.mark.parametrize("which", ["float32", "fp16"])
def test_onnx_ops_are_in_tensorrt_allow_list(exported, which):
    onnx_export = exported[1] if which == "float32" else exported[2]
    assert tensorrt_op_problems(onnx_export.path) == []
    assert {op for op, _ in onnx_export.ops} <= TENSORRT_ONNX_OPS
    assert not {"ScatterND", "ScatterElements", "NonZero", "Loop", "If", "Gather"} & {op for op, _ in onnx_export.ops}


def test_op_check_flags_known_trouble():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("ScatterND", ["x", "nz", "x"], ["s"], reduction="add"),
             helper.make_node("Softplus", ["s"], ["t"]),
             helper.make_node("Magic", ["t"], ["y"], domain="com.example")]
    problems = tensorrt_op_problems(helper.make_model(helper.make_graph(nodes, "g", [x], [y])))
    text = " | ".join(problems)
    assert len(problems) == 4 and "NonZero" in text and "ScatterND" in text and "Softplus" in text
    assert "com.example::Magic" in text and "custom domain" in text


def test_onnx_runtime_matches_pytorch(exported):
    model, onnx32, _ = exported
    for seed, n in ((0, 1), (1, 7), (2, 300)):  # dynamic batch
        report = check_gnn_parity(model, onnx_runner(onnx32.path), neighbourhoods(n, seed=seed))
        assert report["passed"], report


@shape_ids
def test_onnx_and_fp16_match_pytorch_for_each_shape(shape, tmp_path):
    model = make_model("mean", seed=4, shape=shape)
    onnx32 = export_onnx(lower(model), tmp_path / "gnn.onnx", fanout=K)
    onnx16 = convert_fp16(onnx32.path, tmp_path / "gnn.fp16.onnx")
    for exported in (onnx32, onnx16):
        assert (exported.entity_types, exported.txn_features) == shape
        assert tensorrt_op_problems(exported.path) == []
    proto = onnx.load(str(onnx32.path))
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim][1:] for i in proto.graph.input}
    assert dims == {n: list(s[1:]) for n, s in input_shapes(1, K, *shape).items()}
    for exported, tolerance in ((onnx32, PROBE_TOLERANCE), (onnx16, FP16_TOLERANCE)):
        for seed, n in ((0, 1), (1, 64)):
            report = check_gnn_parity(model, onnx_runner(exported.path), neighbourhoods(n, seed=seed, shape=shape),
                                      tolerance=tolerance)
            assert report["passed"], (exported.target, report)


def test_fp16_within_tolerance_of_float32(exported):
    model, _, onnx16 = exported
    proto = onnx.load(str(onnx16.path))
    # keep_io_types=True: the FP16 graph is fed and read in float32, like the float32 one.
    assert {i.type.tensor_type.elem_type for i in list(proto.graph.input) + list(proto.graph.output)} \
        == {onnx.TensorProto.FLOAT}
    worst = 0.0
    for seed in range(3):
        report = check_gnn_parity(model, onnx_runner(onnx16.path), neighbourhoods(256, seed=seed),
                                  tolerance=FP16_TOLERANCE)
        assert report["passed"], report
        worst = max(worst, report["max_abs_diff_logit"], report["max_abs_diff_embedding"])
    print(f"\nFP16 vs float32 max abs diff {worst:.3g} (tolerance {FP16_TOLERANCE:g})")


@pytest.mark.parametrize("value", [1e30, -1e30, 7e4, FP16_MAX, float("inf")])
def test_huge_inputs_give_finite_fp16_outputs(exported, value):
    _, onnx32, onnx16 = exported
    a = neighbourhoods(32, seed=9)
    rng = np.random.default_rng(0)
    for name in ("target_x", "ent1_x", "txn2_x", "ent3_x"):
        hit = rng.random(a[name].shape) < 0.3
        a[name] = np.where(hit, np.float32(value) * np.sign(rng.normal(size=a[name].shape)), a[name]).astype(np.float32)
    a["target_x"][0] = value  # one row entirely at the value
    for path in (onnx16.path, onnx32.path):
        logit, emb = onnx_runner(path)(*(a[n] for n in INPUT_NAMES))
        assert np.isfinite(logit).all() and np.isfinite(emb).all(), path.name


def test_fp16_refuses_an_unsaturated_graph(tmp_path):
    plain = export_onnx(lower(make_model(), saturate=None), tmp_path / "plain.onnx", fanout=2)
    with pytest.raises(OnnxExportError, match="saturat"):
        convert_fp16(plain.path, tmp_path / "plain.fp16.onnx")
    assert not (tmp_path / "plain.fp16.onnx").exists()


def test_export_refuses_a_pyg_model(tmp_path):
    with pytest.raises(TypeError, match="DenseGnn"):
        export_onnx(make_model(), tmp_path / "x.onnx", fanout=K)


def test_fp16_score_effect_on_synthetic_scores(exported):
    model, onnx32, onnx16 = exported
    a = neighbourhoods(2000, seed=11)
    out32 = onnx_runner(onnx32.path)(*(a[n] for n in INPUT_NAMES))
    out16 = onnx_runner(onnx16.path)(*(a[n] for n in INPUT_NAMES))
    rng = np.random.default_rng(1)
    # Labels that depend on the GNN's outputs, so the AUPRC is informative (neither 0 nor 1).
    z = (out32[0] - out32[0].mean()) / (out32[0].std() + 1e-9) + out32[1][:, 0] * 0.5
    y = (z + rng.normal(0, 1.0, z.shape) > 2.0).astype(np.int8)
    effect = fp16_score_effect(y, out32, out16)
    assert effect["rows"] == 2000 and 0 < effect["auprc_fp32"] < 1
    assert abs(effect["auprc_delta"]) < 5e-3 and effect["max_abs_gnn_diff"] <= FP16_TOLERANCE

    def stacked(g):  # a stand-in for the trees on [features, gnn outputs]
        return 1 / (1 + np.exp(-(g[:, 0] + g[:, 1:].sum(axis=1) * 0.1)))

    effect = fp16_score_effect(y, np.column_stack([out32[0], out32[1]]), out16, score=stacked)
    assert abs(effect["auprc_delta"]) < 5e-3
    with pytest.raises(ValueError, match="labels"):
        fp16_score_effect(y[:10], out32, out16)
