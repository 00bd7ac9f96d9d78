"""The flat tree predictor (cpp/src/engine/flat_forest.h) against XGBoost, against the compiled
trees, and the engine's choice between them (engine/tree_predictor.h).

Tolerance: 1e-5 absolute on probabilities, the bundle's parity tolerance (export/parity.py); the
flat predictor's two kernels add the same leaves in the same order, so they agree bit for bit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from libfraud import FraudError, _core
from libfraud.export import shap_tables
from libfraud.export.bundle import read_manifest
from libfraud.export.trees import compile_trees

from bundles import payments, random_bundle

TOL = 1e-5
BLOCK = 64  # FlatForest::kBlock


def forest_of(booster, tmp_path: Path) -> "_core.FlatForest":
    tables = shap_tables(booster)
    path = tmp_path / "tables.bin"
    path.write_bytes(tables.to_bytes())
    return _core.FlatForest(str(path), tables.base_margin)


def random_model(seed: int, depth: int, trees: int, features: int = 7, missing: float = 0.2,
                 rows: int = 600) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    X[:, 1] = np.round(X[:, 1])  # ties: many rows sit exactly on a threshold
    y = ((X[:, 0] + np.abs(X[:, 2]) * X[:, 1] + rng.normal(scale=0.5, size=rows)) > 0).astype(np.float32)
    # Missing values in training make XGBoost learn default directions both ways.
    X[rng.random(X.shape) < missing] = np.nan
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": 1,
                         "seed": seed, "min_child_weight": 0.0, "base_score": 0.3},
                        xgb.DMatrix(X, label=y, missing=np.nan), num_boost_round=trees)
    return booster, X


def edge_rows(booster: xgb.Booster, X: np.ndarray, seed: int) -> np.ndarray:
    """X plus rows on every threshold exactly (x == threshold goes right), +-0.0, huge values and
    NaN in every column."""
    tables = shap_tables(booster)
    rng = np.random.default_rng(seed)
    extra = []
    splits = np.flatnonzero(tables.left >= 0)
    for n in splits[:200]:
        r = X[rng.integers(len(X))].copy()
        r[tables.feature[n]] = tables.threshold[n]
        extra.append(r)
    for v in (0.0, -0.0, 3.0e38, -3.0e38, 1e-38, np.nan):
        r = X[rng.integers(len(X))].copy()
        r[rng.integers(X.shape[1])] = v
        extra.append(r)
        extra.append(np.full(X.shape[1], v, dtype=np.float32))
    return np.ascontiguousarray(np.vstack([X, np.array(extra, dtype=np.float32)]))


@pytest.mark.parametrize("seed,depth,trees", [(0, 1, 3), (1, 3, 20), (2, 6, 40), (3, 8, 15), (4, 10, 5)])
def test_matches_xgboost_on_random_models(tmp_path, seed, depth, trees):
    booster, X = random_model(seed, depth, trees)
    rows = edge_rows(booster, X, seed)
    reference = booster.inplace_predict(rows, missing=np.nan)
    forest = forest_of(booster, tmp_path)
    tables = shap_tables(booster)
    assert set(np.unique(tables.default_left[tables.left >= 0])) == {0, 1}  # both directions exercised
    for kernel in ("row", "block", "auto"):
        got = forest.predict(rows, kernel=kernel)
        np.testing.assert_allclose(got, reference, rtol=0, atol=TOL, err_msg=kernel)


def test_single_leaf_trees(tmp_path):
    # No split is worth its loss (gamma): every tree is one leaf (depth 0), walked zero steps.
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "gamma": 1e9,
                         "base_score": 0.5}, xgb.DMatrix(X, label=y), num_boost_round=3)
    tables = shap_tables(booster)
    assert (np.diff(tables.tree_offsets) == 1).all()
    forest = forest_of(booster, tmp_path)
    np.testing.assert_allclose(forest.predict(X, kernel="row"), booster.inplace_predict(X), atol=TOL, rtol=0)
    np.testing.assert_allclose(forest.predict(X, kernel="block"), booster.inplace_predict(X), atol=TOL, rtol=0)


def test_mixed_single_leaf_and_deep_trees(tmp_path):
    # A stump-only first round (min_split_loss huge) then deep rounds, in one forest: groups of trees
    # of different depths walk together.
    booster, X = random_model(5, 6, 30)
    stump = xgb.train({"objective": "binary:logistic", "max_depth": 6, "nthread": 1, "gamma": 1e9,
                       "base_score": 0.3}, xgb.DMatrix(X, label=(np.nan_to_num(X[:, 0]) > 0).astype(np.float32)),
                      num_boost_round=1, xgb_model=booster)
    tables = shap_tables(stump)
    assert np.diff(tables.tree_offsets)[-1] == 1
    forest = forest_of(stump, tmp_path)
    ref = stump.inplace_predict(X, missing=np.nan)
    np.testing.assert_allclose(forest.predict(X, kernel="row"), ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("n", [1, 2, BLOCK // 4 - 1, BLOCK // 4, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5])
def test_kernels_agree_bitwise_on_awkward_sizes(tmp_path, n):
    booster, X = random_model(7, 6, 50, rows=max(n, 50))
    rows = np.ascontiguousarray(X[:n])
    forest = forest_of(booster, tmp_path)
    one_by_one = np.concatenate([forest.predict(rows[i:i + 1], kernel="row") for i in range(n)])
    assert np.array_equal(forest.predict(rows, kernel="block"), one_by_one)
    assert np.array_equal(forest.predict(rows, kernel="row"), one_by_one)
    assert np.array_equal(forest.predict(rows), one_by_one)


def test_portable_block_kernel_matches(tmp_path, monkeypatch):
    # LIBFRAUD_NO_AVX2: the scalar block kernel, which CPUs without AVX2 run; the same bits.
    booster, X = random_model(11, 6, 30)
    rows = edge_rows(booster, X, 11)
    fast = forest_of(booster, tmp_path).predict(rows, kernel="block")
    monkeypatch.setenv("LIBFRAUD_NO_AVX2", "1")
    portable = forest_of(booster, tmp_path)
    assert np.array_equal(portable.predict(rows, kernel="block"), fast)
    assert np.array_equal(portable.predict(rows, kernel="row"), fast)


def test_flat_and_compiled_agree(tmp_path):
    booster, X = random_model(8, 6, 60)
    rows = edge_rows(booster, X, 8)
    compiled = compile_trees(booster, tmp_path / "model.so", jobs=1)
    library = _core.TreeLibrary(str(compiled.path))
    forest = forest_of(booster, tmp_path)
    for n in (1, BLOCK - 1, BLOCK + 1, len(rows)):
        np.testing.assert_allclose(forest.predict(rows[:n]), library.predict(np.ascontiguousarray(rows[:n])),
                                   atol=TOL, rtol=0)


def test_empty_batch(tmp_path):
    booster, X = random_model(9, 3, 5)
    forest = forest_of(booster, tmp_path)
    assert forest.predict(np.empty((0, X.shape[1]), dtype=np.float32)).shape == (0,)


# ------------------------------------------------------------------------------ corrupt tables

def test_corrupt_or_truncated_tables_are_refused(tmp_path):
    booster, _ = random_model(10, 4, 6)
    tables = shap_tables(booster)
    good = tables.to_bytes()
    path = tmp_path / "t.bin"
    cases = {
        "truncated": good[:-3],
        "magic": b"XXXXXXX\0" + good[8:],
        "longer": good + b"\0",
        "empty": b"",
    }
    # A left child pointing back at the root: a cycle, which the walk must never see.
    bad = tables.to_bytes()
    n = len(tables.feature)
    offsets_end = 56 + 8 * (tables.n_trees + 1)
    left_at = offsets_end + 8 * n + 8 * n + 4 * n
    split = int(np.flatnonzero(tables.left >= 0)[1])
    b = bytearray(bad)
    b[left_at + 4 * split:left_at + 4 * split + 4] = np.array([0], dtype="<i4").tobytes()
    cases["cycle"] = bytes(b)
    # A split on a feature beyond the row.
    feature_at = offsets_end + 16 * n
    b = bytearray(good)
    b[feature_at:feature_at + 4] = np.array([tables.num_features + 5], dtype="<i4").tobytes()
    cases["feature out of range"] = bytes(b)
    for name, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(FraudError, match=re.escape(str(path))) as e:
            _core.FlatForest(str(path), tables.base_margin)
        assert "TreeSHAP tables" in str(e.value), name
    path.write_bytes(good)
    with pytest.raises(FraudError, match="sha256|checksum|altered"):
        _core.FlatForest(str(path), tables.base_margin, expected_sha256="0" * 64)
    _core.FlatForest(str(path), tables.base_margin)


# ------------------------------------------------------------------------------- in the engine

@pytest.fixture(scope="module")
def forest_bundle(tmp_path_factory):
    schema, spec = payments()
    return random_bundle(tmp_path_factory.mktemp("forest") / "b", schema, spec, rounds=30)


def test_bundle_carries_node_tables_and_their_parity(forest_bundle):
    m = read_manifest(forest_bundle)
    node_tables = m["model"]["node_tables"]
    by_name = {a["name"]: a for a in m["artifacts"]}
    assert by_name[node_tables["artifact"]]["target"] == "libfraud-tree-shap"
    assert m["explanation"]["artifact"] == node_tables["artifact"]  # one file for both
    parity = m["parity"]["node_tables"]
    assert parity["passed"] and parity["max_abs_diff"] <= TOL and parity["kernels"] == ["row", "block"]
    assert parity["rows_with_missing"] > 0


def test_bundle_without_reasons_still_carries_node_tables(tmp_path):
    schema, spec = payments()
    b = random_bundle(tmp_path / "b", schema, spec, rounds=5, explain=False)
    m = read_manifest(b)
    assert "explanation" not in m and "node_tables" in m["model"]
    assert _core._tree_layouts(str(b), [1, 1024])["flat"]


def test_engine_chooses_each_layout(forest_bundle, monkeypatch):
    monkeypatch.delenv("LIBFRAUD_TREE_LAYOUT", raising=False)
    auto = _core._tree_layouts(str(forest_bundle), [1, 15, 16, 1024])
    # A small model: compiled for every call shape (a score never depends on its batch).
    assert auto["num_nodes"] <= _core.TREE_FLAT_MIN_NODES
    assert auto["layouts"] == ["compiled"] * 4 and auto["compiled_loaded"]
    monkeypatch.setenv("LIBFRAUD_TREE_LAYOUT", "flat")
    forced = _core._tree_layouts(str(forest_bundle), [1, 1024])
    assert forced["layouts"] == ["flat", "flat"] and not forced["compiled_loaded"]
    monkeypatch.setenv("LIBFRAUD_TREE_LAYOUT", "compiled")
    assert _core._tree_layouts(str(forest_bundle), [1, 1024])["layouts"] == ["compiled", "compiled"]
    monkeypatch.setenv("LIBFRAUD_TREE_LAYOUT", "fastest")
    with pytest.raises(FraudError, match="auto, compiled, flat"):
        _core._tree_layouts(str(forest_bundle), [1])


def test_big_model_is_flat_for_every_call(tmp_path, monkeypatch):
    from libfraud.export import build_bundle

    monkeypatch.delenv("LIBFRAUD_TREE_LAYOUT", raising=False)
    schema, spec = payments()
    names = [f["name"] for f in spec["features"]]
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, len(names))).astype(np.float32)
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "nthread": 1, "min_child_weight": 0.0},
                        xgb.DMatrix(X, label=y, feature_names=names), num_boost_round=60)
    b = build_bundle(tmp_path / "big", booster=booster, feature_names=names, schema=schema, spec=spec,
                     X_holdout=X[:200], threshold=0.5, threshold_rule="fixed", metrics={}, explain=False)
    info = _core._tree_layouts(str(b), [1, 1024])
    assert info["num_nodes"] > _core.TREE_FLAT_MIN_NODES
    # Flat for every call: the compiled library is never loaded.
    assert info["layouts"] == ["flat", "flat"] and not info["compiled_loaded"]
    engine = _core.Engine(str(b))
    batch = np.asarray(engine.score_features(X[:100]))
    np.testing.assert_allclose(batch, booster.inplace_predict(X[:100]), atol=TOL, rtol=0)
    # Flat's row and block kernels: a score does not depend on the batch it came in, to the bit.
    assert np.array_equal(batch, np.concatenate([engine.score_features(X[i:i + 1]) for i in range(100)]))


def test_layouts_score_alike_in_the_engine(forest_bundle, monkeypatch):
    m = read_manifest(forest_bundle)
    rows = np.random.default_rng(3).normal(size=(BLOCK + 1, len(m["features"]["order"]))).astype(np.float32)
    rows[::3, 2] = np.nan
    scores = {}
    for layout in ("compiled", "flat", "auto"):
        monkeypatch.setenv("LIBFRAUD_TREE_LAYOUT", layout)
        engine = _core.Engine(str(forest_bundle))
        scores[layout] = (np.asarray(engine.score_features(rows)),
                          np.concatenate([engine.score_features(rows[i:i + 1]) for i in range(len(rows))]))
    for layout in ("flat", "auto"):
        for batch, single in zip(scores[layout], scores["compiled"]):
            np.testing.assert_allclose(batch, single, atol=TOL, rtol=0)


def test_bundle_without_node_tables_is_compiled_only(tmp_path, monkeypatch):
    schema, spec = payments()
    b = random_bundle(tmp_path / "b", schema, spec, rounds=3, explain=False)
    # An older bundle: no model.node_tables (the artifact itself may stay, unreferenced).
    m = json.loads((b / "manifest.json").read_text())
    del m["model"]["node_tables"]
    (b / "manifest.json").write_text(json.dumps(m))
    monkeypatch.delenv("LIBFRAUD_TREE_LAYOUT", raising=False)
    info = _core._tree_layouts(str(b), [1, 1024])
    assert info["layouts"] == ["compiled", "compiled"] and not info["flat"]
    monkeypatch.setenv("LIBFRAUD_TREE_LAYOUT", "flat")
    with pytest.raises(FraudError, match="no node tables"):
        _core._tree_layouts(str(b), [1])


def test_categorical_model_is_compiled_only(tmp_path, monkeypatch):
    """A booster the node tables cannot describe (categorical splits): the bundle carries the
    compiled trees alone, and the core serves every call with them."""
    from libfraud.export import build_bundle

    schema, spec = payments()
    names = [f["name"] for f in spec["features"]]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, len(names))).astype(np.float32)
    X[:, 0] = rng.integers(0, 5, size=400)
    y = (X[:, 0] == 2).astype(np.float32)
    types = ["c"] + ["q"] * (len(names) - 1)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "max_cat_to_onehot": 1},
                        xgb.DMatrix(X, label=y, feature_names=names, feature_types=types, enable_categorical=True),
                        num_boost_round=4)
    with pytest.warns(UserWarning, match="categorical"):
        b = build_bundle(tmp_path / "cat", booster=booster, feature_names=names, schema=schema, spec=spec,
                         X_holdout=X[:100], threshold=0.5, threshold_rule="fixed", metrics={})
    m = read_manifest(b)
    assert "node_tables" not in m["model"] and "node_tables" not in m["parity"]
    monkeypatch.delenv("LIBFRAUD_TREE_LAYOUT", raising=False)
    assert _core._tree_layouts(str(b), [1, 1024])["layouts"] == ["compiled", "compiled"]
