"""The compiler refuses, naming tree and node, trees XGBoost and Treelite load but TL2cgen must
never see: a cycle (it crashed code generation inside the compiling process), a split on a feature
the model does not have (compiled into a read past the row), and a model of no trees (served 0.5
where xgboost gives its base score)."""

from __future__ import annotations

import json

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

from bundles import payments  # noqa: E402
from libfraud.export import build_bundle  # noqa: E402
from libfraud.export.tree_structure import TreeStructureError, check_tree_structure  # noqa: E402


def _booster(rounds: int = 3, features: int = 6):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, features)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.float32)
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=y),
                     num_boost_round=rounds), X


def _edited(booster, edit):
    model = json.loads(booster.save_raw("json"))
    edit(model["learner"]["gradient_booster"]["model"]["trees"])
    out = xgb.Booster()
    out.load_model(bytearray(json.dumps(model).encode()))
    return out


def _first_split(tree) -> int:
    return next(i for i, c in enumerate(tree["left_children"]) if c != -1 and i > 0) \
        if any(c != -1 for c in tree["left_children"][1:]) else 0


def test_a_sound_booster_passes():
    booster, _ = _booster()
    assert check_tree_structure(booster) == 3


def test_a_cycle_is_refused_naming_tree_and_node():
    booster, _ = _booster()

    def to_root(trees):
        trees[1]["left_children"][_first_split(trees[1])] = 0
    with pytest.raises(TreeStructureError, match=r"tree 1, node \d+: child 0 is not a node of the tree"):
        check_tree_structure(_edited(booster, to_root))

    def to_itself(trees):
        node = _first_split(trees[1])
        trees[1]["right_children"][node] = node
    with pytest.raises(TreeStructureError, match=r"tree 1, node \d+: reached twice from the root"):
        check_tree_structure(_edited(booster, to_itself))


def test_a_split_on_a_missing_feature_is_refused():
    booster, X = _booster()

    def beyond(trees):
        trees[2]["split_indices"][0] = 999
    bad = _edited(booster, beyond)
    with pytest.raises(TreeStructureError, match=r"tree 2, node 0: splits on feature index 999, but the model has 6"):
        check_tree_structure(bad)
    schema, spec = payments()
    names = [f["name"] for f in spec["features"]][:6]
    with pytest.raises(TreeStructureError, match="feature index 999"):
        build_bundle("/nonexistent-never-written", booster=bad, feature_names=names, schema=schema, spec=spec,
                     X_holdout=X, threshold=0.5, threshold_rule="fixed", metrics={})


def test_a_model_of_no_trees_is_refused():
    booster, _ = _booster(rounds=0)
    with pytest.raises(TreeStructureError, match="no trees"):
        check_tree_structure(booster)
