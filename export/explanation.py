"""The bundle's explanation data (export/BUNDLE.md "explanation"): exact TreeSHAP tables of the
trees, parity-checked against XGBoost's own ``pred_contribs``, and the reason families.

Contributions explain the trees' margin (log-odds) before any calibration: the calibrator is
monotone, so it never reorders reasons, and the margin is what XGBoost's contributions sum to.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..reasons import explanation_families
from .parity import ParityError, _holdout_matrix, _with_missing_rows
from .shap_tables import ShapTables, ShapTablesError, shap_tables

__all__ = ["EXPLANATION_FORMAT", "SHAP_ARTIFACT", "SHAP_TARGET", "PARITY_ROWS", "TOLERANCE",
           "Explanation", "check_served_contributions", "prepare_explanation", "write_node_tables"]

EXPLANATION_FORMAT = "libfraud-reasons"
SHAP_ARTIFACT = "shap_tables"
SHAP_TARGET = "libfraud-tree-shap"
SHAP_PATH = "explain/shap_tables.bin"
TOLERANCE = 1e-4  # per feature against pred_contribs, and for each row's sum against the margin
# Exact TreeSHAP costs about a millisecond a row at 500 trees: a bounded sample is checked.
PARITY_ROWS = 512
# The served kernel against the same kernel run in Python: one code, bit-identical here; the
# slack covers another libm or compiler's rounding.
SERVED_TOLERANCE = 1e-9
REFERENCE = "xgboost predict(pred_contribs=True)"


class Explanation:
    """What build_bundle writes: the tables file's bytes, the manifest section and its parity."""

    def __init__(self, tables: ShapTables, section: dict, parity: dict, rows: np.ndarray,
                 contributions: dict):
        self.tables = tables
        self.section = section
        self.parity = parity
        self.rows = rows  # the rows parity was checked on, for the served check
        self.contributions = contributions  # each kernel's contributions of those rows

    def write(self, bundle_dir: Path) -> dict:
        """Write the tables file into the bundle being built; its artifact entry."""
        return write_node_tables(self.tables, bundle_dir)


def write_node_tables(tables: ShapTables, bundle_dir: Path) -> dict:
    """The node tables file (BUNDLE.md "Node tables": the trees for the flat predictor and for
    TreeSHAP, one file) written into the bundle being built; its artifact entry."""
    path = bundle_dir / SHAP_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    data = tables.to_bytes()
    path.write_bytes(data)
    return {"name": SHAP_ARTIFACT, "path": SHAP_PATH, "target": SHAP_TARGET, "precision": "float64",
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _diffs(ours: np.ndarray, theirs: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    per_feature = np.abs(ours - theirs)
    per_feature[~np.isfinite(per_feature)] = np.inf
    sums = np.abs(ours.sum(axis=1) - margin)
    sums[~np.isfinite(sums)] = np.inf
    return per_feature, sums


def _parity(booster, tables: ShapTables, X: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    """Both of the core's kernels against xgboost: the engine serves with the precomputed tables
    when they fit its budget, else with the recursive algorithm, so each must hold."""
    import xgboost as xgb

    dm = xgb.DMatrix(X, missing=np.nan, feature_names=booster.feature_names)
    theirs = np.asarray(booster.predict(dm, pred_contribs=True), dtype=np.float64)
    margin = np.asarray(booster.predict(dm, output_margin=True), dtype=np.float64)
    ours = {"recursive": tables.contributions(X)}
    try:
        ours["tables"] = tables.contributions(X, method="tables")
    except ValueError as e:  # too big to precompute here: the engine would serve recursively too
        skipped = str(e)
    else:
        skipped = None
    kernels, worst = {}, (-1.0, 0, 0, 0.0)
    for name, phi in ours.items():
        per_feature, sums = _diffs(phi, theirs, margin)
        at = np.unravel_index(int(np.argmax(per_feature)), per_feature.shape)
        kernels[name] = {"max_abs_diff": float(per_feature.max()), "max_abs_sum_vs_margin": float(sums.max())}
        if per_feature.max() > worst[0]:
            worst = (float(per_feature.max()), int(at[0]), int(at[1]), float(sums.max()))
    report = {
        "reference": REFERENCE,
        "rows": int(X.shape[0]),
        "rows_with_missing": int(np.isnan(X).any(axis=1).sum()),
        "max_abs_diff": worst[0],
        "max_abs_sum_vs_margin": max(k["max_abs_sum_vs_margin"] for k in kernels.values()),
        "worst_row": worst[1],
        "worst_feature": worst[2],
        "kernels": kernels,
        **({"tables_skipped": skipped} if skipped else {}),
        "tolerance": TOLERANCE,
        "explains": "margin",
    }
    report["passed"] = bool(report["max_abs_diff"] <= TOLERANCE and report["max_abs_sum_vs_margin"] <= TOLERANCE)
    return report, ours


def prepare_explanation(booster, feature_names: Sequence[str], features: Sequence[Mapping],
                        X_holdout, *, gnn_outputs: Sequence[str] = (),
                        declared_reasons: Sequence[Mapping] = (), seed: int = 0,
                        tables: ShapTables | None = None) -> Explanation:
    """Tables, families and parity for ``booster``. ``features``: the spec's features (JSON form) in
    the model's order. ShapTablesError for a booster the tables cannot describe; ParityError when
    the core's contributions differ from XGBoost's by more than TOLERANCE (per feature, or a row's
    sum against its margin): no bundle should carry them then. ``tables``: shap_tables(booster)
    when the caller has them already."""
    tables = shap_tables(booster) if tables is None else tables
    if tables.num_features != len(feature_names):
        raise ShapTablesError(f"the booster reads {tables.num_features} features, feature_names has "
                              f"{len(feature_names)}")
    X = _holdout_matrix(X_holdout, booster)
    rng = np.random.default_rng(seed)
    if len(X) > PARITY_ROWS:
        X = X[np.sort(rng.choice(len(X), size=PARITY_ROWS, replace=False))]
    X = _with_missing_rows(X, seed)
    parity, ours = _parity(booster, tables, X)
    if not parity["passed"]:
        raise ParityError(
            f"TreeSHAP tables disagree with {REFERENCE}: max abs diff {parity['max_abs_diff']:.3g} "
            f"(row {parity['worst_row']}, feature {feature_names[parity['worst_feature']] if parity['worst_feature'] < len(feature_names) else 'bias'}), "
            f"row sum vs margin {parity['max_abs_sum_vs_margin']:.3g}; tolerance {TOLERANCE:g}")
    families, feature_family = explanation_families(features, feature_names, gnn_outputs, declared_reasons)
    section = {
        "format": EXPLANATION_FORMAT,
        "version": 1,
        "artifact": SHAP_ARTIFACT,
        "method": "exact path-dependent TreeSHAP",
        "explains": "margin",  # log-odds of the trees, before calibration
        "expected_value": tables.expected_value,
        "families": [f.to_json() for f in families],
        "feature_family": feature_family,
    }
    return Explanation(tables, section, parity, X, ours)


def check_served_contributions(engine, explanation: Explanation) -> dict:
    """The engine, reading the bundle's file, gives one of the checked kernels' contributions (the
    same code, so to rounding): anything else means the file did not round-trip. ParityError
    otherwise."""
    served = np.asarray(engine.contributions(explanation.rows), dtype=np.float64)
    if not len(served):
        return {"rows": 0}
    diff = min(float(np.max(np.abs(served - phi))) for phi in explanation.contributions.values())
    if not (math.isfinite(diff) and diff <= SERVED_TOLERANCE):
        raise ParityError(f"the engine's contributions differ from the checked tables' by {diff:.3g}: the "
                          f"bundle's {SHAP_PATH} does not hold the tables that passed parity")
    return {"rows": int(len(served)), "max_abs_diff": diff}
