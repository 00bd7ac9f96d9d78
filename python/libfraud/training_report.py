"""report.json and report.html of a training run: what a fraud desk reads before going live."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["write_training_report", "daily_precision_of"]


def daily_precision_of(summary: dict) -> dict | None:
    """The per-day precision@k record of a metrics.desk_summary, if it has one."""
    daily = summary.get("daily")
    return daily if isinstance(daily, dict) and daily.get("days") is not None else None


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    return value


def _reliability(y, scores, result) -> dict:
    from . import metrics
    out = {"calibrated" if result.calibration else "scores": metrics.reliability_curve(y, scores)}
    if result.calibration and result.test_raw_scores is not None:
        evaluated = result.test_evaluated if result.test_evaluated is not None else slice(None)
        out["uncalibrated"] = metrics.reliability_curve(y, result.test_raw_scores[evaluated])
    return out


def write_training_report(result, out_dir: str | Path, *, latency_us: dict | None = None,
                          title: str | None = None, write_json: bool = True) -> dict:
    """Write report.json (unless ``write_json`` is false: a caller with its own) and the
    self-contained report.html into ``out_dir``; return the report."""
    from .report_html import write_html_report
    out = Path(out_dir)
    evaluated = result.test_evaluated if result.test_evaluated is not None else np.ones(len(result.y_test), bool)
    y = result.y_test[evaluated]
    scores = result.test_scores[evaluated]
    importance = {k: float(v) for k, v in result.model.booster.get_score(importance_type="gain").items()}
    from .explain_report import explanation_report
    explanation = explanation_report(result.model.booster, result.model.feature_names, result.spec,
                                     result.X_test)
    provenance = result.provenance or {}
    report = {
        "model": {**provenance, "n_trees": result.model.n_trees,
                  "num_features": len(result.model.feature_names),
                  "tree_method": result.model.params.resolved_tree_method(result.split_rows.get("train", 0))},
        "periods": result.periods, "rows": result.split_rows,
        "threshold": {"value": result.threshold, "rule": result.threshold_rule},
        "calibration": result.calibration,
        "metrics": result.metrics,
        "reliability": _reliability(y, scores, result),
        "feature_importance_gain": dict(sorted(importance.items(), key=lambda kv: -kv[1])),
        "explanation": explanation,
        **({"latency_us": {k: {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
                           for k, v in latency_us.items()}} if latency_us else {}),
    }
    report = _json_safe(report)
    if write_json:
        (out / "report.json").write_text(json.dumps(report, indent=2))
    other = {}
    if result.gbdt_only_test_scores is not None:
        other["trees alone"] = result.gbdt_only_test_scores[evaluated]
    periods = result.periods or {}
    facts = {"model": f"{provenance.get('name', '?')} version {provenance.get('version', '?')}",
             "data fingerprint": str(provenance.get("data_fingerprint", "")),
             "source revision": str(provenance.get("source_revision") or "unknown"),
             "train": f"{periods.get('train_start', '?')} .. {periods.get('valid_start', '?')}",
             "validation": f"{periods.get('valid_start', '?')} .. {periods.get('valid_end', '?')}",
             "test": f"{periods.get('test_start', '?')} .. {periods.get('test_end', '?')}",
             "label cutoff": str(periods.get("label_cutoff", "")),
             "threshold": f"{result.threshold:.6g}: {result.threshold_rule}",
             "calibration": (result.calibration or {}).get("method", "none"),
             "trees": f"{result.model.n_trees} ({report['model']['tree_method']})"}
    write_html_report(out / "report.html", title=title or f"libfraud: {provenance.get('name', 'model')}",
                      y=y, scores=scores, threshold=result.threshold,
                      metrics={"test": result.metrics["test"], "validation": result.metrics["valid"],
                               **({"test, trees alone": result.metrics["test_gbdt_only"]}
                                  if "test_gbdt_only" in result.metrics else {})},
                      other_scores=other or None,
                      daily_precision=daily_precision_of(result.metrics["test"]),
                      raw_scores=(result.test_raw_scores[evaluated] if result.calibration else None),
                      feature_importance=importance, latency_us=latency_us, facts=facts,
                      reason_importance=({f"{f['name']} ({f['code']})": f["mean_abs_contribution"]
                                          for f in explanation["families"]} if "families" in explanation else None))
    return report
