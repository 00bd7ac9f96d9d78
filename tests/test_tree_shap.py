"""The core's exact TreeSHAP against XGBoost's own (``pred_contribs=True``): per feature and bias
within 1e-4, and each row summing to the margin (``output_margin=True``) within 1e-4. Both methods:
``method="recursive"`` (the default) and ``method="tables"`` (FastTreeShap's precomputed tables,
float32), which must also match the recursive method within 1e-6."""

from __future__ import annotations

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

from libfraud import _core  # noqa: E402
from libfraud.export import ShapTablesError, shap_tables  # noqa: E402

TOL = 1e-4
TABLES_VS_RECURSIVE = 1e-6


def _data(n: int, f: int, seed: int, missing: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    # A few coarse columns so thresholds tie with values and x == threshold goes right.
    X[:, : f // 4] = np.round(X[:, : f // 4] * 2) / 2
    logit = X[:, 0] - 0.8 * X[:, 1] * X[:, 2] + 0.5 * np.sin(3 * X[:, 3])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
    return X, y


def _booster(X, y, depth: int, trees: int, seed: int, **params):
    return xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed,
                      "tree_method": "hist", "nthread": 2, **params},
                     xgb.DMatrix(X, label=y), num_boost_round=trees)


def _args(tables) -> dict:
    return dict(feature=tables.feature, threshold=tables.threshold, left=tables.left,
                right=tables.right, default_left=tables.default_left, cover=tables.cover,
                value=tables.value, tree_offsets=tables.tree_offsets,
                num_features=tables.num_features, max_depth=tables.max_depth,
                expected_value=tables.expected_value)


def _check(booster, X_eval: np.ndarray) -> float:
    tables = shap_tables(booster)
    ours = tables.contributions(X_eval)
    fast = _core.tree_shap(**_args(tables), rows=np.ascontiguousarray(X_eval), method="tables")
    dm = xgb.DMatrix(X_eval)
    theirs = booster.predict(dm, pred_contribs=True)
    margin = booster.predict(dm, output_margin=True)
    assert ours.shape == fast.shape == theirs.shape == (len(X_eval), X_eval.shape[1] + 1)
    diff = float(np.abs(ours - theirs).max())
    assert diff < TOL, f"max |ours - xgboost| = {diff}"
    fast_diff = float(np.abs(fast - theirs).max())
    assert fast_diff < TOL, f"max |tables - xgboost| = {fast_diff}"
    between = float(np.abs(fast - ours).max())
    assert between < TABLES_VS_RECURSIVE, f"max |tables - recursive| = {between}"
    for contribs in (ours, fast):
        np.testing.assert_allclose(contribs.sum(axis=1), margin, rtol=0, atol=TOL)
        np.testing.assert_allclose(contribs[:, -1], tables.expected_value, rtol=0, atol=0)
    return diff


@pytest.mark.parametrize(("depth", "trees"), [(2, 50), (4, 120), (6, 200), (8, 60)])
def test_matches_xgboost_on_rows_with_nans(depth, trees):
    # Trained without missing values: every NaN at scoring follows XGBoost's default child.
    X, y = _data(3_000, 12, seed=depth, missing=0.0)
    booster = _booster(X, y, depth, trees, seed=depth)
    X_eval, _ = _data(400, 12, seed=100 + depth, missing=0.15)
    _check(booster, X_eval)


def test_matches_xgboost_when_trained_with_missing_values():
    X, y = _data(4_000, 10, seed=11, missing=0.25)
    booster = _booster(X, y, 6, 150, seed=3)
    X_eval, _ = _data(500, 10, seed=12, missing=0.25)
    X_eval[:5] = np.nan  # all missing: the default path everywhere
    _check(booster, X_eval)


def test_repeated_features_and_tied_values():
    # Few features and deep trees: one feature splits many times on a path (UNWIND's case).
    X, y = _data(3_000, 4, seed=5, missing=0.05)
    booster = _booster(X, y, 7, 80, seed=5, min_child_weight=0.1)
    X_eval = np.concatenate([_data(300, 4, seed=6, missing=0.1)[0], X[:100]])
    _check(booster, X_eval)


def test_rejects_bad_inputs():
    X, y = _data(500, 4, seed=1, missing=0.0)
    tables = shap_tables(_booster(X, y, 3, 5, seed=1))
    with pytest.raises(ValueError, match="columns"):
        tables.contributions(X[:, :3])
    args = dict(**_args(tables), rows=X)
    with pytest.raises(ValueError, match="cover must be a 1-D C-contiguous float64"):
        _core.tree_shap(**{**args, "cover": tables.cover.astype(np.float32)})
    with pytest.raises(_core.FraudError, match="exceeds max_depth"):
        _core.tree_shap(**{**args, "max_depth": tables.max_depth - 1})
    bad = tables.left.copy()
    bad[0] = 0  # a cycle back to the root
    with pytest.raises(_core.FraudError, match="children must be later nodes"):
        _core.tree_shap(**{**args, "left": bad})
    bad = tables.feature.copy()
    bad[0] = 4
    with pytest.raises(_core.FraudError, match="out of range"):
        _core.tree_shap(**{**args, "feature": bad})


def test_tables_method_refusals():
    X, y = _data(500, 4, seed=1, missing=0.0)
    args = dict(**_args(shap_tables(_booster(X, y, 3, 5, seed=1))), rows=X)
    with pytest.raises(ValueError, match="method must be 'recursive' or 'tables'"):
        _core.tree_shap(**args, method="fast")
    # A chain of distinct features: 2^28 float32 entries for its last leaf, over the 1 GiB budget;
    # past 31 distinct features a leaf cannot be indexed at all. Both refused before allocating.
    for length, message in ((28, "over the 1024 MiB budget"), (32, "more than 31 distinct features")):
        chain = _chain(length)
        rows = np.zeros((2, length), dtype=np.float32)
        with pytest.raises(ValueError, match=message):
            _core.tree_shap(**chain, rows=rows, method="tables")
        recursive = _core.tree_shap(**chain, rows=rows)  # the fallback still works
        np.testing.assert_allclose(recursive.sum(axis=1), 1.0, rtol=0, atol=1e-9)


def _chain(length: int) -> dict:
    """A tree splitting on features 0..length-1 in turn, x < 0.5 going down the chain; leaf value 1."""
    n = 2 * length + 1
    feature = np.zeros(n, dtype=np.int32)
    left = np.full(n, -1, dtype=np.int32)
    right = np.full(n, -1, dtype=np.int32)
    cover = np.empty(n, dtype=np.float64)
    node, c = 0, 1e6
    for depth in range(length):
        feature[node] = depth
        left[node], right[node] = node + 2, node + 1  # preorder: the side leaf first, then the chain
        cover[node] = c
        cover[node + 1] = 0.1 * c
        c *= 0.9
        node += 2
    cover[node] = c
    return dict(feature=feature, threshold=np.full(n, 0.5, dtype=np.float32), left=left, right=right,
                default_left=np.zeros(n, dtype=np.uint8), cover=cover, value=np.ones(n),
                tree_offsets=np.array([0, n], dtype=np.int64), num_features=length, max_depth=length,
                expected_value=1.0)


def test_rejects_other_objectives():
    X, y = _data(300, 4, seed=2, missing=0.0)
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 2}, xgb.DMatrix(X, label=y), 2)
    with pytest.raises(ShapTablesError, match="binary:logistic"):
        shap_tables(booster)
