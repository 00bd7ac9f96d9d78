"""The report's view of reasons: parity of the core's TreeSHAP with XGBoost's ``pred_contribs``, and
global importance, the mean |contribution| to the margin per feature and per reason family (a
family's contribution in a row is the sum of its features'), over test rows."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["IMPORTANCE_ROWS", "explanation_report"]

IMPORTANCE_ROWS = 2_000  # a bounded sample: exact TreeSHAP is exact, not free


def explanation_report(booster, feature_names: Sequence[str], spec: Mapping, X, *, seed: int = 0) -> dict:
    """{"parity", "explains", "rows", "expected_value", "features": {name: mean |phi|} (largest
    first), "families": [{"name", "code", "text", "mean_abs_contribution"}] (largest first)}, or
    {"skipped": why} for a booster the tables cannot describe."""
    from .export.bundle import align_spec
    from .export.explanation import prepare_explanation
    from .export.shap_tables import ShapTablesError

    names = list(feature_names)
    core = {f["name"] for f in spec["features"]}
    gnn_outputs = [n for n in names if n not in core]
    aligned = align_spec(spec, names, gnn_outputs)
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    try:
        explanation = prepare_explanation(booster, names, aligned["features"], X, gnn_outputs=gnn_outputs,
                                          declared_reasons=aligned.get("reasons", ()), seed=seed)
    except ShapTablesError as e:
        return {"skipped": str(e)}
    rng = np.random.default_rng(seed)
    sample = X if len(X) <= IMPORTANCE_ROWS else X[np.sort(rng.choice(len(X), IMPORTANCE_ROWS, replace=False))]
    try:
        phi = explanation.tables.contributions(sample, method="tables")[:, :-1]
    except ValueError:  # too big to precompute: the same values, slower
        phi = explanation.tables.contributions(sample)[:, :-1]
    section = explanation.section
    feature_family = np.asarray(section["feature_family"])
    per_feature = np.abs(phi).mean(axis=0)
    families = []
    for i, family in enumerate(section["families"]):
        summed = phi[:, feature_family == i].sum(axis=1)
        families.append({**family, "mean_abs_contribution": float(np.abs(summed).mean())})
    families.sort(key=lambda f: -f["mean_abs_contribution"])
    order = np.argsort(-per_feature, kind="stable")
    return {
        "parity": explanation.parity,
        "explains": "margin (log-odds of the trees, before calibration)",
        "rows": int(len(sample)),
        "expected_value": section["expected_value"],
        "features": {names[i]: float(per_feature[i]) for i in order},
        "families": families,
    }
