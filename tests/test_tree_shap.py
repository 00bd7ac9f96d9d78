"""The core's exact TreeSHAP against XGBoost's own (``pred_contribs=True``): per feature and bias
within 1e-4, and each row summing to the margin (``output_margin=True``) within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

from libfraud import _core  # noqa: E402
from libfraud.export import ShapTablesError, shap_tables  # noqa: E402

TOL = 1e-4


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


def _check(booster, X_eval: np.ndarray) -> float:
    tables = shap_tables(booster)
    ours = tables.contributions(X_eval)
    dm = xgb.DMatrix(X_eval)
    theirs = booster.predict(dm, pred_contribs=True)
    margin = booster.predict(dm, output_margin=True)
    assert ours.shape == theirs.shape == (len(X_eval), X_eval.shape[1] + 1)
    diff = float(np.abs(ours - theirs).max())
    assert diff < TOL, f"max |ours - xgboost| = {diff}"
    np.testing.assert_allclose(ours.sum(axis=1), margin, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours[:, -1], tables.expected_value, rtol=0, atol=0)
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
    args = dict(feature=tables.feature, threshold=tables.threshold, left=tables.left,
                right=tables.right, default_left=tables.default_left, cover=tables.cover,
                value=tables.value, tree_offsets=tables.tree_offsets,
                num_features=tables.num_features, max_depth=tables.max_depth,
                expected_value=tables.expected_value, rows=X)
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


def test_rejects_other_objectives():
    X, y = _data(300, 4, seed=2, missing=0.0)
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 2}, xgb.DMatrix(X, label=y), 2)
    with pytest.raises(ShapTablesError, match="binary:logistic"):
        shap_tables(booster)
