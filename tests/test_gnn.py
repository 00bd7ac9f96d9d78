"""The GNN: its masking semantics, its exported artifacts against PyTorch eager (TorchScript 1e-6,
AOTInductor 1e-5) for several (entity types E, transaction features Ft), and that training learns a
pattern only the neighbourhood carries."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from libfraud.models.gnn import INPUT_NAMES, FraudGnn, input_shapes  # noqa: E402

B, K = 16, 5
# (E, Ft): today's 4 entity types and 5 transaction features, then generic neighbourhoods.
SHAPES = [(4, 5), (1, 4), (2, 6), (7, 4)]
DEFAULT = (4, 5)


def random_neighbourhoods(n: int, k: int = K, seed: int = 0, keep: float = 0.7,
                          shape: tuple[int, int] = DEFAULT) -> dict[str, np.ndarray]:
    """Arrays of the contract's shapes for (E, Ft): nested masks (a masked parent masks its subtree),
    zero features under mask 0, one-hot entity types, log1p(degree)."""
    rng = np.random.default_rng(seed)
    E = shape[0]
    s = input_shapes(n, k, *shape)
    m1 = (rng.random(s["ent1_mask"]) < keep).astype(np.float32)
    m2 = (rng.random(s["txn2_mask"]) < keep).astype(np.float32) * m1[:, :, None]
    m3 = (rng.random(s["ent3_mask"]) < keep).astype(np.float32) * m2[..., None]
    eye = np.eye(E, dtype=np.float32)

    def entities(shape: tuple[int, ...]) -> np.ndarray:
        x = np.zeros(shape, np.float32)
        x[..., :E] = eye  # the type axis is the second-to-last
        x[..., E] = np.log1p(rng.integers(0, 50, shape[:-1]))
        return x

    a = {
        "target_x": rng.normal(size=s["target_x"]).astype(np.float32),
        "ent1_x": entities(s["ent1_x"]) * m1[..., None], "ent1_mask": m1,
        "txn2_x": rng.normal(size=s["txn2_x"]).astype(np.float32) * m2[..., None], "txn2_mask": m2,
        "ent3_x": entities(s["ent3_x"]) * m3[..., None], "ent3_mask": m3,
    }
    return a


def run(model, arrays):
    with torch.no_grad():
        return model(*[torch.as_tensor(arrays[n]) for n in INPUT_NAMES])


def make_model(shape: tuple[int, int] = DEFAULT) -> FraudGnn:
    E, Ft = shape
    torch.manual_seed(0)
    m = FraudGnn(hidden=32, embedding_dim=16, num_entity_types=E, txn_features=Ft).eval()
    # Non-trivial input scaling, so the exports are checked with it too.
    m.set_input_scaling(torch.randn(64, Ft) * 3 + 2, torch.randn(64, Ft) + 5, torch.rand(64, E + 1) * 4)
    return m


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"E{s[0]}-Ft{s[1]}")
def shape(request) -> tuple[int, int]:
    return request.param


@pytest.fixture(scope="module")
def model(shape):
    return make_model(shape)


def test_forward_shapes(model, shape):
    logit, emb = run(model, random_neighbourhoods(B, shape=shape))
    assert logit.shape == (B,) and emb.shape == (B, 16)
    assert logit.dtype == torch.float32 and torch.isfinite(logit).all() and torch.isfinite(emb).all()
    assert model.input_shapes(B, K) == input_shapes(B, K, *shape)
    assert input_shapes(B, K) == input_shapes(B, K, 4, 5)  # today's defaults


def test_inputs_of_another_shape_are_refused(model, shape):
    other = (3, 5) if shape != (3, 5) else (4, 5)
    with pytest.raises(ValueError, match=f"inputs have {other[0]} entity types and {other[1]} transaction "
                                         f"features, the model {shape[0]} and {shape[1]}"):
        run(model, random_neighbourhoods(2, shape=other))


def test_shape_arguments_are_checked():
    for bad in ({"num_entity_types": 0}, {"num_entity_types": 17}, {"txn_features": 0},
                {"num_entity_types": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FraudGnn(**bad)


def test_masked_slots_do_not_change_outputs(model, shape):
    a = random_neighbourhoods(B, seed=1, shape=shape)
    b = {k: v.copy() for k, v in a.items()}
    rng = np.random.default_rng(2)
    for x, m in (("ent1_x", "ent1_mask"), ("txn2_x", "txn2_mask"), ("ent3_x", "ent3_mask")):
        noise = rng.normal(size=b[x].shape).astype(np.float32) * 100
        b[x] = np.where(b[m][..., None] > 0, b[x], noise)
    # A masked parent hides its subtree even where the child's own mask says 1.
    b["ent3_mask"] = np.maximum(b["ent3_mask"], 1 - b["txn2_mask"][..., None])
    b["ent3_x"] = np.where(b["txn2_mask"][..., None, None] > 0, b["ent3_x"], 7.0)
    (la, ea), (lb, eb) = run(model, a), run(model, b)
    assert torch.equal(la, lb) and torch.equal(ea, eb)


def test_cold_start_is_finite_and_uses_only_the_target(model, shape):
    a = random_neighbourhoods(B, seed=3, keep=0.0, shape=shape)
    assert not any(a[n].any() for n in INPUT_NAMES if n != "target_x")
    logit, emb = run(model, a)
    assert torch.isfinite(logit).all() and torch.isfinite(emb).all()
    model.train()
    try:
        torch.manual_seed(0)
        logit, _ = model(*[torch.from_numpy(a[n]) for n in INPUT_NAMES])
    finally:
        model.eval()
    assert torch.isfinite(logit).all()


def test_input_scaling_is_in_the_state_dict_and_keeps_masking(shape):
    E, Ft = shape
    a = random_neighbourhoods(B, seed=12, shape=shape)
    scaled = make_model(shape)
    plain = FraudGnn(hidden=32, embedding_dim=16, num_entity_types=E, txn_features=Ft).eval()
    assert not torch.equal(run(scaled, a)[0], run(plain, a)[0])
    copy = FraudGnn(hidden=32, embedding_dim=16, num_entity_types=E, txn_features=Ft).eval()
    copy.load_state_dict(scaled.state_dict())
    assert torch.equal(run(copy, a)[0], run(scaled, a)[0])
    # Scaled padding is no longer zero, yet a masked slot still reaches no real node.
    b = {k: v.copy() for k, v in a.items()}
    b["txn2_x"] = np.where(b["txn2_mask"][..., None] > 0, b["txn2_x"], 50.0).astype(np.float32)
    assert torch.equal(run(scaled, a)[0], run(scaled, b)[0])


def test_batch_independence(model, shape):
    a = random_neighbourhoods(B, seed=4, shape=shape)
    other = random_neighbourhoods(B, seed=5, shape=shape)
    mixed = {n: np.concatenate([other[n][:3], a[n][5:6], other[n][3:]]) for n in INPUT_NAMES}
    alone = {n: a[n][5:6] for n in INPUT_NAMES}
    full_l, full_e = run(model, a)
    mix_l, mix_e = run(model, mixed)
    one_l, one_e = run(model, alone)
    torch.testing.assert_close(mix_l[3], full_l[5], rtol=0, atol=1e-6)
    torch.testing.assert_close(one_l[0], full_l[5], rtol=0, atol=1e-6)
    torch.testing.assert_close(one_e[0], full_e[5], rtol=0, atol=1e-6)


def test_torchscript_round_trip(model, shape, tmp_path):
    from libfraud.export.gnn import check_gnn_parity, export_torchscript, torchscript_runner

    path = export_torchscript(model, tmp_path / "gnn.ts")
    report = check_gnn_parity(model, torchscript_runner(path), random_neighbourhoods(B, seed=6, shape=shape),
                              tolerance=1e-6)
    assert report["passed"], report
    # Any fanout: TorchScript does not bake K in.
    report = check_gnn_parity(model, torchscript_runner(path), random_neighbourhoods(3, k=2, shape=shape), 1e-6)
    assert report["passed"], report


@pytest.mark.slow
def test_aoti_package(model, shape, tmp_path):
    from libfraud.export.gnn import aoti_runner, check_gnn_parity, export_aoti

    result = export_aoti(model, tmp_path / "gnn.pt2", random_neighbourhoods(4, seed=7, shape=shape))
    assert result.path.is_file() and result.fanout == K and result.max_batch == 4096
    assert (result.entity_types, result.txn_features) == shape
    assert isinstance(result.isa_flags, tuple)
    meta = torch._inductor.aoti_load_package(str(result.path)).get_metadata()  # what the plugin checks
    assert (meta["libfraud.fanout"], meta["libfraud.entity_types"], meta["libfraud.txn_features"]) == \
        (str(K), str(shape[0]), str(shape[1]))
    runner = aoti_runner(result.path)
    for n in (1, 2, 100):  # the batch dimension is dynamic
        report = check_gnn_parity(model, runner, random_neighbourhoods(n, seed=8 + n, shape=shape), tolerance=1e-5)
        assert report["passed"], report


def test_exports_refuse_arrays_of_another_shape(tmp_path):
    from libfraud.export.gnn import check_gnn_parity, export_aoti

    model = make_model((2, 6))
    wrong = random_neighbourhoods(4, shape=(3, 6))
    with pytest.raises(ValueError, match=r"ent1_x has shape \[4, 3, 4\], expected \[4, 2, 3\] for a model of 2 "):
        check_gnn_parity(model, lambda *a: None, wrong)
    with pytest.raises(ValueError, match="for a model of 2 entity types and 6 transaction features"):
        export_aoti(model, tmp_path / "x.pt2", wrong)


def test_parity_check_catches_a_wrong_runner(model, shape):
    from libfraud.export.gnn import GnnParityError, check_gnn_parity, require_gnn_parity

    def off_by_a_little(*arrays):
        logit, emb = run(model, dict(zip(INPUT_NAMES, arrays)))
        return logit.numpy() + 1e-3, emb.numpy()

    report = check_gnn_parity(model, off_by_a_little, random_neighbourhoods(B, shape=shape))
    assert not report["passed"] and report["max_abs_diff_logit"] == pytest.approx(1e-3, rel=1e-2)
    with pytest.raises(GnnParityError):
        require_gnn_parity(report)


def structural_task(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Label 1 when the card's earlier transactions mostly used high-degree (shared) devices: a
    hop-3 pattern. Target and hop-2 transaction features are noise, independent of the label."""
    rng = np.random.default_rng(seed)
    a = random_neighbourhoods(n, seed=seed, keep=0.9)
    y = (rng.random(n) < 0.1).astype(np.int8)
    a["ent1_mask"][:, 0] = 1  # every target has a card ...
    a["ent1_x"][:, 0, :4] = np.eye(4, dtype=np.float32)[0]
    a["txn2_mask"][:, 0, :] = 1  # ... with K earlier transactions, each with a device
    a["ent3_mask"][:, 0, :, 1] = 1
    a["txn2_x"][:, 0] = rng.normal(size=a["txn2_x"][:, 0].shape)
    shared = rng.random((n, K)) < np.where(y[:, None] == 1, 0.8, 0.15)
    degree = np.where(shared, rng.integers(30, 200, (n, K)), rng.integers(0, 4, (n, K)))
    dev = a["ent3_x"][:, 0, :, 1]
    dev[..., :4] = np.eye(4, dtype=np.float32)[1]
    dev[..., 4] = np.log1p(degree)
    return a, y


def test_training_learns_a_neighbourhood_pattern():
    from libfraud import metrics
    from libfraud.train_gnn import GnnParams, gnn_outputs, train_gnn

    a, y = structural_task(3000, seed=11)
    params = GnnParams(hidden=32, epochs=8, batch_size=128, patience=3, lr=5e-3, seed=0)
    trained = train_gnn(a, y, np.arange(0, 2000), np.arange(2000, 2500), params)
    logits, emb = gnn_outputs(trained.model, {n: v[2500:] for n, v in a.items()})
    assert emb.shape == (500, 16)
    base_rate = y[2500:].mean()
    auprc = metrics.auprc(y[2500:], logits)
    assert auprc > 0.7 > 3 * base_rate, (auprc, base_rate)
    # Deterministic for a seed.
    again = train_gnn(a, y, np.arange(0, 2000), np.arange(2000, 2500), params)
    assert again.best_epoch == trained.best_epoch
    for p, q in zip(trained.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)


def test_training_reads_the_shape_from_the_arrays():
    from libfraud.train_gnn import GnnParams, array_shape, gnn_outputs, train_gnn

    a = random_neighbourhoods(600, seed=13, shape=(2, 6))
    y = (np.random.default_rng(13).random(600) < 0.2).astype(np.int8)
    assert array_shape(a) == (2, 6)
    trained = train_gnn(a, y, np.arange(400), np.arange(400, 600), GnnParams(hidden=8, epochs=1))
    assert (trained.model.num_entity_types, trained.model.txn_features) == (2, 6)
    logits, emb = gnn_outputs(trained.model, a)
    assert logits.shape == (600,) and emb.shape == (600, 16)
    with pytest.raises(ValueError, match="the arrays have 4 entity types and 5 transaction features, "
                                         "the model 2 and 6"):
        gnn_outputs(trained.model, random_neighbourhoods(8))


def test_stacked_feature_names():
    from libfraud.train_gnn import stacked_feature_names

    assert stacked_feature_names(3) == ["gnn_logit", "gnn_emb_0", "gnn_emb_1", "gnn_emb_2"]
    assert len(stacked_feature_names(16)) == 17
    with pytest.raises(ValueError):
        stacked_feature_names(0)


def test_params_are_checked():
    from libfraud.train_gnn import GnnParams

    with pytest.raises(ValueError, match="hidden"):
        GnnParams(hidden=0)
    with pytest.raises(ValueError, match="lr"):
        GnnParams(lr=0.0)


@pytest.fixture(scope="module")
def sampled(small_transactions):
    from libfraud import _core
    from libfraud.train_gnn import sample_neighbourhoods

    from libfraud.data.declared import load_events, load_preset
    from libfraud.features import replay

    # The payments preset with mcc as a graph field: 4 entity types, 5 transaction features.
    schema, spec = load_preset("payments", small_transactions.columns)
    events, labels = load_events(small_transactions, schema)
    store = replay(events, labels, schema, spec).store
    return sample_neighbourhoods(events, store, _core.SamplerConfig(fanout=K), ["mcc"])


def test_sampled_neighbourhoods_follow_the_contract(small_transactions, sampled):
    n = len(small_transactions)
    for name, shape in input_shapes(n, K).items():
        assert sampled[name].shape == shape and sampled[name].dtype == np.float32, name
    assert sampled["txn2_mask"][0].sum() == 0  # the first transaction has no past
    for x, m in (("ent1_x", "ent1_mask"), ("txn2_x", "txn2_mask"), ("ent3_x", "ent3_mask")):
        assert not sampled[x][sampled[m] == 0].any(), f"{x} is not zero under mask 0"


@pytest.mark.slow
def test_stacked_training_on_sampled_neighbourhoods(small_transactions, sampled):
    from libfraud.features import replay_features
    from libfraud.models.gbdt import GbdtParams
    from libfraud.splits import time_split
    from libfraud.train_gnn import GnnParams, stacked_feature_names, train_stacked

    features = replay_features(small_transactions)
    splits = time_split(small_transactions["timestamp_ms"].to_numpy())
    result = train_stacked(features, sampled, small_transactions["label"].to_numpy(), splits,
                           gnn_params=GnnParams(hidden=32, epochs=3, batch_size=512, patience=2),
                           gbdt_params=GbdtParams(n_estimators=40, max_depth=4, seed=1))
    assert result.feature_names == tuple(features.columns) + tuple(stacked_feature_names(16))
    assert result.stacked.feature_names == result.feature_names
    rows = result.split_rows
    # The final GNN fits on the whole training period; the trees train on all of it too, with
    # out-of-fold GNN outputs on every row after the first block.
    assert rows["gnn_fit"] + rows["gnn_stop"] == rows["trees"] == len(splits[0])
    assert 0 < rows["trees_oof"] < rows["trees"]
    for name in ("gbdt_only", "stacked", "gnn_only"):
        assert 0.0 <= result.metrics[name]["auprc"] <= 1.0
        assert result.metrics[name]["n"] == len(splits[2])


def test_gnn_knobs_are_searched(tmp_path):
    """A 2-trial Optuna search of the GNN's knobs on the structural task: the best trial's
    parameters are ones the search tried, and its value is that trial's validation AP."""
    from libfraud.train_gnn import GnnParams
    from libfraud.tune_train import Tuning, tune_gnn

    a, y = structural_task(1500, seed=3)
    base = GnnParams(epochs=3, batch_size=128, patience=2, seed=0)
    result, best = tune_gnn(a, y, np.arange(0, 1000), np.arange(1000, 1500), base,
                            Tuning(trials=2, storage=tmp_path / "study.db", gnn=True))
    assert result.n_complete == 2 and result.study_name == "libfraud-gnn"
    assert best.hidden == result.best_params["hidden"] and best.epochs == 3  # fixed knobs kept
    values = [t["value"] for t in result.trials if t.get("value") is not None]
    assert result.best_value == max(values) and 0.0 < result.best_value <= 1.0
