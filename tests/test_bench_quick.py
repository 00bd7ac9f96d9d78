"""`python -m bench --mode smoke`: the report's command runs end to end, bounded, and writes a JSON
with the issue's keys and a markdown that renders. Times are reported, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_smoke_writes_json_and_markdown(tmp_path):
    # The bundle is kept under build/bench/report/ and shared with quick mode: ~70 s cold, ~30 s warm.
    proc = subprocess.run([sys.executable, "-m", "bench", "--mode", "smoke", "--quiet", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (js,) = tmp_path.glob("*.json")
    r = json.loads(js.read_text())
    for key in ("p50_us", "p99_us", "p999_us"):
        assert r["end_to_end"][key] > 0
    assert r["ratios"]["python_pipeline_over_libfraud"] > 0
    for key in ("machine", "latency_us", "components_us", "throughput", "accuracy", "targets",
                "breakdown_p50_us", "parity"):
        assert key in r
    assert {"loadavg_before", "loadavg_after", "cpu"} <= set(r["machine"])
    assert r["throughput"]["batch_sweep"] and r["throughput"]["thread_sweep"]
    assert "auprc" in r["accuracy"]["synthetic"]["stacked_served"]
    assert "skipped" in r["accuracy"]["eth_phishing"]  # full mode only
    # Same models, same rows: the comparison paths compute the same scores.
    assert max(r["parity"]["trees_max_abs_diff_vs_libfraud"].values()) < 1e-4
    assert r["parity"]["python_pipeline_max_abs_diff_vs_libfraud"] < 1e-4
    md = js.with_suffix(".md").read_text()
    assert md.startswith("# libfraud benchmark report")
    assert "| path | p50 us |" in md and "## Targets" in md
    for png in r["plots"]:
        assert (tmp_path / png).stat().st_size > 0


@pytest.mark.slow
def test_explain_bench_quick_times_every_path_and_states_parity(tmp_path):
    """bench/explain.py --quick: each path side by side in one run, with parity beside the times."""
    out = tmp_path / "explain.json"
    proc = subprocess.run([sys.executable, "-m", "bench.explain", "--quick", "--no-shap", "--out", str(out),
                           "--bundle-dir", str(tmp_path / "bundles")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    parity = r["parity_max_abs_diff"]
    assert parity["core_c_vs_pred_contribs"] <= 1e-4 and parity["core_row_sum_vs_xgb_margin"] <= 1e-4
    assert parity["e2e_explain_all_scores_vs_score_and_ingest"] == 0  # reasons never move a score
    assert set(r["skipped"]) == {"shap_tree_explainer", "shap_tree_explainer_internal"}  # --no-shap
    for op in ("c_explain_all", "c_explain_alerts", "python_explain_all"):
        assert r["added_by_explaining"][op]["p50_us"] == r["added_by_explaining"][op]["p50_us"]  # a number
    assert {"every_event", "alerts_only"} <= set(r["target"])
