"""What the tree compiler must refuse before it generates code: a booster's trees as XGBoost's JSON
holds them, checked node by node. TL2cgen trusts its input: a cyclic tree (a child pointing back up)
crashes its code generation inside the compiling process, and a split on a feature index past the
model's features compiles into a read past the row. XGBoost and Treelite load both."""

from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["TreeStructureError", "check_tree_structure"]


class TreeStructureError(ValueError):
    """A tree that is not a tree of this model: the message names the tree, the node and why."""


def check_tree_structure(booster, source: str | None = None) -> int:
    """Every tree is a tree over the model's features, with finite leaves: each node reached at
    most once from the root (no cycle, no shared child), children inside the tree, split features below
    ``num_feature``, split thresholds and leaf values finite, and at least one tree. Returns the tree
    count. ``source`` (the model's file, say) prefixes every message."""
    def refuse(message: str) -> TreeStructureError:
        return TreeStructureError(f"{source}: {message}" if source else message)

    model = json.loads(booster.save_raw("json"))["learner"]
    num_features = int(model["learner_model_param"]["num_feature"])
    trees = model["gradient_booster"]["model"]["trees"]
    if not trees:
        # Refused, not served as a constant: one score for every row ranks nothing, and the
        # compiled library would not even carry it (TL2cgen drops the base score of a tree-less model).
        constant = float(booster.inplace_predict(np.zeros((1, num_features), dtype=np.float32))[0])
        raise refuse(f"the model has no trees: xgboost would serve one constant, {constant:.6g}, for every row "
                     "(its base score alone) and the compiled library 0.5 (it loses the base score); a constant "
                     "ranks nothing: train at least one boosting round")
    for t, tree in enumerate(trees):
        left, right = tree["left_children"], tree["right_children"]
        cond, index = tree["split_conditions"], tree["split_indices"]
        n = len(left)
        if not n or len(right) != n or len(cond) != n or len(index) != n:
            raise refuse(f"tree {t}: node arrays of different lengths or empty")
        seen = [False] * n
        stack = [0]
        while stack:
            node = stack.pop()
            if seen[node]:
                raise refuse(f"tree {t}, node {node}: reached twice from the root (a cycle or a "
                             "shared child): not a tree")
            seen[node] = True
            where = f"tree {t}, node {node}"
            if left[node] == -1:
                if right[node] != -1:
                    raise refuse(f"{where}: a leaf (left child -1) with a right child {right[node]}")
                if not math.isfinite(cond[node]):
                    raise refuse(f"{where}: leaf value {cond[node]!r} is not finite")
                continue
            if not 0 <= index[node] < num_features:
                raise refuse(f"{where}: splits on feature index {index[node]}, but the model has "
                             f"{num_features} features (0..{num_features - 1})")
            if not math.isfinite(cond[node]):
                raise refuse(f"{where}: split threshold {cond[node]!r} is not finite")
            for child in (left[node], right[node]):
                if not 0 < child < n:
                    raise refuse(f"{where}: child {child} is not a node of the tree (1..{n - 1})")
                stack.append(child)
        # Nodes no path reaches are allowed: XGBoost's pruning leaves them in the arrays, and
        # Treelite imports from the root.
    return len(trees)
