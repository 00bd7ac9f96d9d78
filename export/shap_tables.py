"""XGBoost booster -> flat tree tables for the core's exact TreeSHAP (``_core.tree_shap``).

Read from the booster's JSON (``save_raw("json")``, XGBoost 3.2): per tree ``left_children``,
``right_children`` (-1 at leaves), ``split_indices``, ``split_conditions`` (the threshold, or the
leaf value at a leaf, learning rate included), ``default_left`` and ``sum_hessian`` (the cover).
XGBoost goes left when ``x < threshold`` in float32 and sends a missing value (NaN) to the default
child. Nodes are renumbered depth-first, root first, so every child follows its parent, as the core
checks. ``base_score`` is stored as a probability for ``binary:logistic``; its logit is the base margin.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SHAP_TABLES_MAGIC", "ShapTables", "ShapTablesError", "shap_tables"]

# The file the bundle carries (export/BUNDLE.md "explanation"; cpp/src/explain/shap_file.cpp reads
# it): this magic, uint32 version 1, uint32 0, uint64 n_trees, n_nodes, num_features, max_depth,
# float64 expected_value, then int64 tree_offsets[n_trees + 1], float64 cover[n], float64 value[n],
# int32 feature[n], int32 left[n], int32 right[n], float32 threshold[n], uint8 default_left[n];
# little-endian, no padding, nothing after.
SHAP_TABLES_MAGIC = b"LFSHAP1\0"
SHAP_TABLES_VERSION = 1

_SUPPORTED_OBJECTIVES = ("binary:logistic",)


class ShapTablesError(ValueError):
    """The booster is one these tables cannot describe (objective, booster kind, categorical splits)."""


@dataclass(frozen=True)
class ShapTables:
    """Every tree's nodes, flattened; tree t is ``[tree_offsets[t], tree_offsets[t + 1])``, root first."""

    feature: np.ndarray  # int32: split feature (0 at leaves)
    threshold: np.ndarray  # float32: go left when x < threshold (NaN at leaves)
    left: np.ndarray  # int32: global child ids, -1 at leaves
    right: np.ndarray  # int32
    default_left: np.ndarray  # uint8: 1 when a missing value goes left
    cover: np.ndarray  # float64: training hessian sum reaching the node
    value: np.ndarray  # float64: leaf output in margin (0 at internal nodes)
    tree_offsets: np.ndarray  # int64 [n_trees + 1]
    tree_expected: np.ndarray  # float64 [n_trees]: each tree's cover-weighted mean leaf value
    base_margin: float  # the booster's base score, in margin (log-odds)
    num_features: int
    max_depth: int  # the deepest node's depth, root = 0

    @property
    def n_trees(self) -> int:
        return len(self.tree_offsets) - 1

    @property
    def expected_value(self) -> float:
        """The mean margin over the training cover: the contributions' last column."""
        return float(self.base_margin + self.tree_expected.sum())

    def to_bytes(self) -> bytes:
        """The tables as the bundle's file (layout: SHAP_TABLES_MAGIC above)."""
        header = (SHAP_TABLES_MAGIC
                  + np.array([SHAP_TABLES_VERSION, 0], dtype="<u4").tobytes()
                  + np.array([self.n_trees, len(self.feature), self.num_features, self.max_depth],
                             dtype="<u8").tobytes()
                  + np.array([self.expected_value], dtype="<f8").tobytes())
        arrays = [(self.tree_offsets, "<i8"), (self.cover, "<f8"), (self.value, "<f8"),
                  (self.feature, "<i4"), (self.left, "<i4"), (self.right, "<i4"),
                  (self.threshold, "<f4"), (self.default_left, "u1")]
        return header + b"".join(np.ascontiguousarray(a, dtype=t).tobytes() for a, t in arrays)

    def contributions(self, X: np.ndarray, method: str = "recursive") -> np.ndarray:
        """TreeSHAP of X (float32 [n, num_features], NaN = missing) from the core: float64
        [n, num_features + 1], the last column the expected value; each row sums to its margin.
        ``method``: the core's kernels, "recursive" (tree_shap) or "tables" (FastTreeShap, the
        one the engine serves with when its tables fit; ValueError when they cannot be built)."""
        from libfraud import _core

        return _core.tree_shap(self.feature, self.threshold, self.left, self.right, self.default_left,
                               self.cover, self.value, self.tree_offsets, self.num_features,
                               self.max_depth, self.expected_value,
                               np.ascontiguousarray(X, dtype=np.float32), method=method)


def _base_margin(learner: dict) -> float:
    # XGBoost 3.x writes the base score as a vector, "[4.18E-1]"; older versions a bare number.
    raw = learner["learner_model_param"]["base_score"].strip().strip("[]")
    scores = [float(s) for s in raw.split(",") if s.strip()]
    if len(scores) != 1:
        raise ShapTablesError(f"expected one base score (a binary model), got {len(scores)}")
    p = scores[0]
    if not 0.0 < p < 1.0:
        raise ShapTablesError(f"base_score {p} is not a probability in (0, 1)")
    return math.log(p / (1.0 - p))


def shap_tables(booster) -> ShapTables:
    """The tables of a ``binary:logistic`` gbtree booster with numerical splits."""
    model = json.loads(booster.save_raw("json"))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    if objective not in _SUPPORTED_OBJECTIVES:
        raise ShapTablesError(f"objective {objective!r} is not supported; supported: "
                              f"{', '.join(_SUPPORTED_OBJECTIVES)}")
    gbm = learner["gradient_booster"]
    if gbm["name"] != "gbtree":
        raise ShapTablesError(f"booster {gbm['name']!r} is not supported; supported: gbtree")
    num_features = int(learner["learner_model_param"]["num_feature"])
    trees = gbm["model"]["trees"]

    columns: dict[str, list] = {k: [] for k in
                                ("feature", "threshold", "left", "right", "default_left", "cover", "value")}
    offsets = [0]
    expected = []
    max_depth = 0
    for t, tree in enumerate(trees):
        if any(int(s) != 0 for s in tree["split_type"]):
            raise ShapTablesError(f"tree {t} has categorical splits, which are not supported")
        lc, rc = tree["left_children"], tree["right_children"]
        cond, hess = tree["split_conditions"], tree["sum_hessian"]
        base = offsets[-1]
        # Depth-first, left subtree first: new id = base + position in this order.
        order: list[int] = []
        depth: dict[int, int] = {0: 0}
        stack = [0]
        while stack:
            n = stack.pop()
            order.append(n)
            if lc[n] != -1:
                depth[lc[n]] = depth[rc[n]] = depth[n] + 1
                stack.extend((rc[n], lc[n]))
        new_id = {n: base + i for i, n in enumerate(order)}
        for n in order:
            leaf = lc[n] == -1
            columns["feature"].append(0 if leaf else tree["split_indices"][n])
            columns["threshold"].append(math.nan if leaf else cond[n])
            columns["left"].append(-1 if leaf else new_id[lc[n]])
            columns["right"].append(-1 if leaf else new_id[rc[n]])
            columns["default_left"].append(0 if leaf else int(tree["default_left"][n]))
            columns["cover"].append(hess[n])
            columns["value"].append(cond[n] if leaf else 0.0)
        max_depth = max(max_depth, max(depth.values()))
        # The tree's mean output over the training cover, children before parents (reverse order).
        mean: dict[int, float] = {}
        for n in reversed(order):
            if lc[n] == -1:
                mean[n] = float(cond[n])
            else:
                mean[n] = (mean[lc[n]] * hess[lc[n]] + mean[rc[n]] * hess[rc[n]]) / hess[n]
        expected.append(mean[0])
        offsets.append(base + len(order))

    return ShapTables(
        feature=np.asarray(columns["feature"], dtype=np.int32),
        threshold=np.asarray(columns["threshold"], dtype=np.float32),
        left=np.asarray(columns["left"], dtype=np.int32),
        right=np.asarray(columns["right"], dtype=np.int32),
        default_left=np.asarray(columns["default_left"], dtype=np.uint8),
        # XGBoost keeps covers and leaves in float32: round there first, as it computes with them.
        cover=np.asarray(columns["cover"], dtype=np.float32).astype(np.float64),
        value=np.asarray(columns["value"], dtype=np.float32).astype(np.float64),
        tree_offsets=np.asarray(offsets, dtype=np.int64),
        tree_expected=np.asarray(expected, dtype=np.float64),
        base_margin=_base_margin(learner),
        num_features=num_features,
        max_depth=max_depth,
    )
