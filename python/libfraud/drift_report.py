"""`libfraud drift`: how far a file of transactions is from the bundle's training reference.

Each event's features and score are the core's, point in time (every event sees only earlier
ones, as served); the PSI per feature and for the score is the core's own function (the one its
online monitor uses). On top, a chi-square goodness-of-fit test (scipy.stats) of each feature's
binned counts against the reference proportions: the p-value says whether the shift could be
chance; the PSI says how large it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DriftReport", "drift_report", "psi_reading"]

#: The usual PSI reading.
STABLE, MODERATE = 0.1, 0.25
#: Chi-square expects no empty bin: reference proportions are floored at this (the PSI's floor,
#: fraud.h) and renormalised before the expected counts are taken.
EXPECTED_FLOOR = 1e-4


def psi_reading(psi: float) -> str:
    """"stable" (< 0.1), "moderate" (0.1 - 0.25), "significant" (> 0.25); "" for NaN."""
    if psi is None or not math.isfinite(psi):
        return ""
    return "stable" if psi < STABLE else ("moderate" if psi <= MODERATE else "significant")


def _chi_square(counts: np.ndarray, proportions: np.ndarray) -> tuple[float, float]:
    from scipy.stats import chisquare
    n = int(counts.sum())
    if n == 0:
        return math.nan, math.nan
    p = np.maximum(np.asarray(proportions, dtype=np.float64), EXPECTED_FLOOR)
    result = chisquare(counts.astype(np.float64), f_exp=n * p / p.sum())
    return float(result.statistic), float(result.pvalue)


@dataclass
class DriftReport:
    """One row per model feature and one for the score (``feature`` "score"), largest PSI first:
    ``psi``, ``reading``, ``chi2``, ``p_value``, ``missing_share`` (of the file) and
    ``reference_missing_share``."""

    table: pd.DataFrame
    events: int
    bundle: str
    computed_on: dict

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, (float, np.floating)):
                return float(v) if math.isfinite(v) else None
            if isinstance(v, np.integer):
                return int(v)
            return v

        return {"bundle": self.bundle, "events": self.events, "reference": self.computed_on,
                "reading": {"stable_below": STABLE, "significant_above": MODERATE},
                "rows": [{k: clean(v) for k, v in row.items()} for row in self.table.to_dict("records")]}

    def text(self, top: int = 15) -> str:
        shown = self.table.head(top)
        lines = [f"drift of {self.events:,} events against the reference of {self.bundle} "
                 f"({_reference_text(self.computed_on)})",
                 "PSI < 0.1 stable, 0.1 - 0.25 moderate, > 0.25 significant; p: chi-square of the binned counts",
                 f"{'feature':<40} {'psi':>9} {'reading':<12} {'chi2':>11} {'p':>9} {'missing':>8}"]
        for r in shown.itertuples():
            lines.append(f"{r.feature[:40]:<40} {r.psi:>9.4f} {r.reading:<12} {r.chi2:>11.1f} {r.p_value:>9.2g} "
                         f"{r.missing_share:>8.1%}")
        if len(self.table) > top:
            lines.append(f"... {len(self.table) - top} more (all of them in --out)")
        return "\n".join(lines)


def _reference_text(info: dict) -> str:
    parts = [f"{info.get('rows', '?')} rows", str(info.get("source", "?"))]
    if info.get("from_utc"):
        parts.append(f"{info['from_utc']} to {info.get('to_utc', '?')}")
    return ", ".join(parts)


def drift_report(bundle, transactions, *, history=None, labels: bool = False) -> DriftReport:
    """The drift of ``transactions`` (a DataFrame in the bundle's schema's columns, in time order)
    against ``bundle``'s reference. ``history``: earlier transactions stored first (not
    compared). ``labels``: also apply the file's labels at their label times (what label-aware
    features see when a switch is fed labels; default: none, as ``libfraud score``)."""
    from . import _core
    from .export.bundle import read_manifest
    from .scorer import Scorer

    manifest = read_manifest(bundle)
    section = manifest.get("drift")
    if section is None:
        raise ValueError(f"{bundle}: the bundle has no drift reference (compiled without reference rows, "
                         "or by a libfraud older than drift); recompile it with `libfraud compile`")
    scorer = Scorer(bundle)
    if history is not None:
        scorer.warm_up(history)
    events = scorer.events(transactions)
    if len(events) == 0:
        raise ValueError("no transactions to compare with the reference")
    # Stored first, then read back: an event's features and score see only events strictly earlier
    # than it, so these are the rows and scores score_and_ingest would have served, in bulk.
    scorer.ingest(events)
    if labels and isinstance(transactions, pd.DataFrame):
        from .data.declared import load_events
        file_labels = load_events(transactions, scorer.schema)[1]
        if len(file_labels):
            scorer.label(file_labels)
    rows = np.ascontiguousarray(scorer.features(events).to_numpy(dtype=np.float32))
    scores = scorer.score(events)
    names = scorer.feature_names
    core = _core.drift_psi(json.dumps(section), names, rows, scores)

    records = []
    histograms = [*section["features"], section["score"]]
    psis = [*core["feature_psi"], core["score_psi"]]
    counts = [*core["feature_counts"], core["score_counts"]]
    for name, h, psi, c in zip([*names, "score"], histograms, psis, counts):
        c = np.asarray(c, dtype=np.int64)
        chi2, p = _chi_square(c, h["proportions"])
        n = int(c.sum())
        records.append({"feature": name, "psi": float(psi), "reading": psi_reading(float(psi)),
                        "chi2": chi2, "p_value": p,
                        "missing_share": float(c[-1]) / n if n else math.nan,
                        "reference_missing_share": float(h["proportions"][-1]),
                        "bins": len(c)})
    table = pd.DataFrame(records).sort_values("psi", ascending=False, kind="stable", na_position="last")
    return DriftReport(table.reset_index(drop=True), int(len(rows)), str(bundle),
                       dict(section.get("computed_on") or {}))


def write_html(report: DriftReport, path: str | Path, top: int = 30) -> Path:
    """A self-contained page (report_html's style): the PSI of the top features as bars, and the table."""
    import base64
    import datetime as dt

    from . import plots
    from .report_html import _CSS, _e, _table, _write_atomic

    t = report.table
    finite = t[np.isfinite(t["psi"])]
    png = plots.plot_feature_importance(dict(zip(finite["feature"], finite["psi"])), None,
                                        title="Population stability index (PSI)", top=top)
    img = base64.b64encode(png).decode("ascii")
    score = t[t["feature"] == "score"].iloc[0]
    worst = t[t["feature"] != "score"].iloc[0]
    rows = [[r.feature, r.psi, r.reading, r.chi2, r.p_value, r.missing_share, r.reference_missing_share]
            for r in t.itertuples()]
    table = _table("drift-table", "Every feature and the score, largest PSI first",
                   ["feature", "PSI", "reading", "chi-square", "p-value", "missing", "missing (reference)"], rows,
                   note="PSI < 0.1 stable, 0.1 - 0.25 moderate, > 0.25 significant. The p-value (chi-square of "
                        "the binned counts against the reference proportions) says whether a shift could be "
                        "chance; with many events even a small PSI is not.")
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drift against {_e(report.bundle)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header id="summary">
<p class="eyebrow">libfraud drift</p>
<h1>Drift of {report.events:,} events</h1>
<p class="lede">Against the reference of {_e(report.bundle)} ({_e(_reference_text(report.computed_on))}).
Score PSI {score.psi:.4f} ({_e(score.reading)}); the most drifting feature is {_e(worst.feature)}
(PSI {worst.psi:.4f}, {_e(worst.reading)}).</p>
</header>
<section id="figures">
<figure id="psi" class="wide"><h3>PSI, top features</h3><img src="data:image/png;base64,{img}" alt="PSI">
<figcaption>Each bar: the PSI of the file's values against the training reference.</figcaption></figure>
</section>
<section id="tables">
<h2>Tables</h2>
<div class="tables">{table}</div>
</section>
<footer>Generated {_e(generated)} by libfraud.drift_report. Self-contained: no scripts, no external resources.</footer>
</main>
</body>
</html>
"""
    return _write_atomic(Path(path), page)
