"""One self-contained HTML page for a scored period: headline numbers, figures, tables.

The page has inline CSS and inline base64 PNGs, no JavaScript and no external references, so it can
be mailed, attached to a ticket or opened from an artifact store as it is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from libfraud import metrics, plots

__all__ = ["write_html_report"]

_MISSING = "—"


def write_html_report(
    path: str | Path,
    *,
    title: str,
    y,
    scores,
    threshold: float | None = None,
    metrics: dict[str, dict] | None = None,
    other_scores: dict[str, np.ndarray] | None = None,
    daily_precision: dict | None = None,
    raw_scores=None,
    reliability_bins: int = 10,
    feature_importance: dict[str, float] | None = None,
    latency_us: dict[str, np.ndarray] | None = None,
    facts: dict[str, str] | None = None,
    scores_name: str = "model",
    n_days: float | None = None,
    reason_importance: dict[str, float] | None = None,
) -> Path:
    """Write the report for labels ``y`` and ``scores`` (higher = more likely fraud) to ``path``.

    ``threshold`` is the operating rule ``score >= threshold``. ``metrics`` maps a section name
    ("test", "valid", ...) to a dict: sections' flat numbers and strings are compared side by side,
    a nested dict of flat dicts (e.g. per fraud type) becomes its own table, deeper values are
    shown compactly. ``other_scores`` are more scorers on the same rows (extra PR curves);
    ``raw_scores`` the uncalibrated scores, drawn next to ``scores`` in the reliability plot.
    ``daily_precision`` is ``{"k", "mean", "days": [{"day", "precision", ...}]}``. ``facts`` are
    provenance lines shown under the title. ``reason_importance``: mean |TreeSHAP contribution| per
    reason family (libfraud.explain_report). Alerts per day divide the flagged rows by ``n_days``,
    or by the number of days in ``daily_precision`` when that is not given.

    Everything is validated before anything is written; the file is replaced atomically. Returns
    the path written.
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if not isinstance(scores_name, str) or not scores_name.strip():
        raise ValueError(f"scores_name must be a non-empty string, got {scores_name!r}")
    y, s = _labels_and_scores(y, scores)
    threshold = plots.finite_or_none(threshold, "threshold")
    others = {}
    for name, other in (other_scores or {}).items():
        if not isinstance(name, str) or not name or name == scores_name:
            raise ValueError(f"other_scores names must be non-empty strings other than {scores_name!r}, "
                             f"got {name!r}")
        others[name] = _scores_like(other, y, f"other_scores[{name!r}]")
    raw = None if raw_scores is None else _scores_like(raw_scores, y, "raw_scores")
    if raw is not None and (raw.min() < 0.0 or raw.max() > 1.0):
        raise ValueError(f"raw_scores must be probabilities in [0, 1] for the reliability plot, "
                         f"got range [{raw.min():.4g}, {raw.max():.4g}]")
    if isinstance(reliability_bins, bool) or not isinstance(reliability_bins, (int, np.integer)) \
            or reliability_bins < 2:
        raise ValueError(f"reliability_bins must be an integer >= 2, got {reliability_bins!r}")
    daily = None if daily_precision is None else plots._daily_series(daily_precision)
    n_days = plots.finite_or_none(n_days, "n_days")
    if n_days is not None and n_days <= 0:
        raise ValueError(f"n_days must be > 0, got {n_days!r}")
    if n_days is None and daily is not None:
        n_days = float(len(daily[2]))
    for importance in (feature_importance, reason_importance):
        if importance is not None:
            plots._importance_items(importance)
    latency = None if latency_us is None else plots._latency_series(latency_us)
    if metrics is not None and not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict of sections, got {type(metrics).__name__}")
    for section, values in (metrics or {}).items():
        if not isinstance(values, Mapping):
            raise ValueError(f"metrics[{section!r}] must be a dict, got {type(values).__name__}")
    if facts is not None and not isinstance(facts, Mapping):
        raise ValueError(f"facts must be a dict, got {type(facts).__name__}")

    figures = _figures(y, s, threshold, scores_name, others, raw, int(reliability_bins),
                       daily_precision, daily, feature_importance, latency_us, reason_importance)
    page = _page(title=title, y=y, s=s, threshold=threshold, scores_name=scores_name, others=others,
                 daily=daily, daily_raw=daily_precision, n_days=n_days, metrics=metrics or {},
                 latency=latency, facts=facts or {}, figures=figures)
    return _write_atomic(Path(path), page)


# ---------------------------------------------------------------- validation


def _labels_and_scores(y, scores) -> tuple[np.ndarray, np.ndarray]:
    y, s = metrics.labels_and_scores(y, scores)
    positives = int(y.sum())
    if positives == 0:
        raise ValueError(f"y has no positives (fraud) among {y.size} rows; the report's metrics are undefined")
    if positives == y.size:
        raise ValueError(f"y has no negatives among {y.size} rows; the report's metrics are undefined")
    return y, _scores_like(s, y, "scores")


def _scores_like(values, y: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values)
    if v.shape != y.shape:
        raise ValueError(f"{name} has shape {v.shape}, y has {y.shape}: they must be the same rows")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {v.dtype}")
    v = v.astype(np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        raise ValueError(f"{name} contain {int(bad.sum())} NaN or infinite values "
                         f"(first at row {int(np.flatnonzero(bad)[0])})")
    return v




# ---------------------------------------------------------------- figures


def _figures(y, s, threshold, scores_name, others, raw, bins, daily_raw, daily, importance, latency_us,
             reasons=None):
    """(id, heading, caption, png bytes or None, note, wide) per figure, in page order."""
    figs = []
    curves = {scores_name: s, **others}
    ring = (f"the ring is the operating point (score ≥ threshold) on the {scores_name} curve; "
            if threshold is not None else "")
    figs.append(("fig-pr", "Precision-recall", (
        f"Up and to the right is better; {ring}dashed grey is the base rate, what random ranking gets."),
        plots.plot_pr_curve(y, curves, None, title="Precision-recall", threshold=threshold), None, False))
    figs.append(("fig-scores", "Score distribution by class", (
        "Rows per score bin on a log scale, so the rare fraud class is visible; the less the red and "
        "blue masses overlap, the better the ranking"
        + ("; everything right of the dashed line is flagged." if threshold is not None else ".")),
        plots.plot_score_distributions(y, s, None, title="Scores by class", threshold=threshold),
        None, False))

    calib: dict[str, np.ndarray] = {}
    if s.min() >= 0.0 and s.max() <= 1.0:
        calib[f"{scores_name} (calibrated)" if raw is not None else scores_name] = s
    if raw is not None:
        calib[f"{scores_name} (raw)"] = raw
    caption = ("On the diagonal a predicted 0.2 is fraud 20% of the time; below it the scores "
               "over-predict. Bars are rows per bin (log): wide intervals on sparse bins are expected.")
    if calib:
        figs.append(("fig-reliability", "Reliability", caption,
                     plots.plot_reliability(y, calib, None, title=f"Reliability, {bins} bins", bins=bins),
                     None, False))
    else:
        figs.append(("fig-reliability", "Reliability", caption, None,
                     f"Not drawn: the scores span [{s.min():.4g}, {s.max():.4g}], not probabilities, "
                     "and no raw_scores were given.", False))

    if daily is not None:
        k = daily[0]
        figs.append(("fig-daily", f"Daily precision@{k}", (
            f"Share of fraud among each day's {k} highest scores, what a team reviewing {k} alerts a day "
            "would see; dashed is the mean over days. Look for trends and single bad days."),
            plots.plot_daily_precision(daily_raw, None), None, len(daily[2]) > 14))
    if importance is not None:
        figs.append(("fig-importance", "Feature importance", (
            f"Total gain per feature, top {min(20, len(importance))}: what the trees rely on most. "
            "An ID-like or leaking feature at the top is a red flag."),
            plots.plot_feature_importance(importance, None, top=20), None, True))
    if reasons is not None:
        figs.append(("fig-reasons", "Reasons: what moves the scores", (
            "Mean |contribution| of each reason family to the trees' log-odds over test rows (exact "
            "TreeSHAP, as the core returns with each score; a family sums its features). The codes "
            "are what analysts and case systems see."),
            plots.plot_feature_importance(reasons, None, title="Reason families (mean |log-odds|)",
                                          top=20), None, True))
    if latency_us is not None:
        figs.append(("fig-latency", "Scoring latency", (
            "Per-call latency, log x; dashed p50, dotted p99. Right: the fraction of calls at most "
            "that slow; a long flat tail before 1.0 is the p99 problem."),
            plots.plot_latency_histogram(latency_us, None, title="Scoring latency"), None, True))
    return figs


# ---------------------------------------------------------------- formatting


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, np.generic))


def _fmt(v) -> str:
    """A value as display text (not yet escaped)."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None:
        return _MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if abs(v) >= 1e4:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, Mapping):
        text = "; ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    elif isinstance(v, (list, tuple)):
        text = ", ".join(_fmt(x) for x in v)
    else:
        text = str(v)
    return text if len(text) <= 160 else text[:159] + "…"  # compact: a table cell, not a dump


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))


def _table(tid: str, caption: str, header: Sequence[str], rows: Sequence[Sequence], note: str = "") -> str:
    """First column as row headers; a column of numbers (blanks allowed) is right-aligned, header too."""
    ncols = len(header)
    numeric = [j > 0 and any(_is_num(r[j]) for r in rows) and all(r[j] is None or _is_num(r[j]) for r in rows)
               for j in range(ncols)]
    num = [' class="num"' if x else "" for x in numeric]
    head = "".join(f"<th{num[j]}>{_e(h)}</th>" for j, h in enumerate(header))
    body = "".join("<tr>" + f'<th scope="row">{_e(_fmt(r[0]))}</th>'
                   + "".join(f"<td{num[j]}>{_e(_fmt(r[j]))}</td>" for j in range(1, ncols)) + "</tr>"
                   for r in rows)
    note_html = f'<p class="note">{_e(note)}</p>' if note else ""
    return (f'<div class="tbl" id="{_e(tid)}"><h3>{_e(caption)}</h3>{note_html}<div class="scroll">'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></div>")


def _metric_tables(metrics: Mapping[str, Mapping]) -> list[str]:
    """Sections' flat entries side by side; dicts of flat dicts as matrices; the rest compact."""
    columns: dict[str, dict] = {}
    matrices: list[tuple[str, dict]] = []
    compact: list[tuple[str, object]] = []
    for section, values in metrics.items():
        flat = {k: v for k, v in values.items() if _scalar(v)}
        if flat:
            columns[str(section)] = flat
        nested = {k: v for k, v in values.items() if not _scalar(v)}
        if nested and all(isinstance(v, Mapping) and all(_scalar(x) for x in v.values()) for v in nested.values()):
            if flat:  # e.g. test: {auprc, ..., confusion: {tp, fp}}: a side detail, shown compactly
                compact.extend((f"{section}.{k}", v) for k, v in nested.items())
            else:     # e.g. by_fraud_type: {card_testing: {auprc, ...}, ...}: a table of its own
                matrices.append((str(section), nested))
        else:
            compact.extend((f"{section}.{k}", v) for k, v in nested.items())
    out = []
    if columns:
        keys: list[str] = []
        for flat in columns.values():
            keys.extend(k for k in flat if k not in keys)
        rows = [[k] + [columns[c].get(k) for c in columns] for k in keys]
        out.append(_table("metrics", "Metrics by section", ["metric", *columns], rows,
                          "Blank (—) where a section does not report the metric."))
    for name, nested in matrices:
        keys = []
        for row in nested.values():
            keys.extend(k for k in row if k not in keys)
        rows = [[r] + [vals.get(k) for k in keys] for r, vals in nested.items()]
        out.append(_table(f"metrics-{name}", f"Metrics: {name}", [name, *keys], rows))
    if compact:
        out.append(_table("metrics-other", "Other metric entries", ["entry", "value"],
                          [[k, _fmt(v)] for k, v in compact]))
    return out


# ---------------------------------------------------------------- page


def _page(*, title, y, s, threshold, scores_name, others, daily, daily_raw, n_days, metrics, latency,
          facts, figures) -> str:
    n, pos = int(y.size), int(y.sum())
    base = pos / n
    ap = float(average_precision_score(y, s))
    auroc = float(roc_auc_score(y, s))

    cards = [("Average precision", _fmt(ap), f"random ranking: {base:.4f}"),
             ("AUROC", _fmt(auroc), "0.5 is random")]
    if daily is not None:
        k, mean, _, values = daily
        cards.append((f"Daily precision@{k}", _fmt(mean),
                      f"mean of {len(values)} days, min {values.min():.3f}, max {values.max():.3f}"))
    op_line = ""
    if threshold is not None:
        flagged = s >= threshold
        n_flag, tp = int(flagged.sum()), int(y[flagged].sum())
        precision = tp / n_flag if n_flag else None
        cards.append(("Recall at threshold", _fmt(tp / pos), f"{tp:,} of {pos:,} fraud caught"))
        cards.append(("Precision at threshold", _fmt(precision),
                      f"{tp:,} of {n_flag:,} alerts are fraud" if n_flag else "the threshold flags nothing"))
        if n_days is not None:
            cards.append(("Alerts per day", _fmt(n_flag / n_days), f"{n_flag:,} alerts over {n_days:g} days"))
        op_line = (f"Operating point: score ≥ {threshold:.6g} flags {n_flag:,} rows ({n_flag / n:.3%}): "
                   f"{tp:,} fraud caught, {n_flag - tp:,} false alarms, {pos - tp:,} fraud missed.")
    scorer_rows = [[name, float(average_precision_score(y, v)), float(roc_auc_score(y, v))]
                   for name, v in {scores_name: s, **others}.items()]

    facts_html = ""
    if facts:
        items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(_fmt(v))}</dd></div>" for k, v in facts.items())
        facts_html = f'<dl class="facts" id="facts">{items}</dl>'
    cards_html = "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div>'
                         f'<div class="s">{_e(sub)}</div></div>' for k, v, sub in cards)

    fig_html = []
    for fid, heading, caption, png, note, wide in figures:
        cls = ' class="wide"' if wide else ""
        if png is None:
            body = f'<p class="note">{_e(note)}</p>'
        else:
            b64 = base64.b64encode(png).decode("ascii")
            body = f'<img src="data:image/png;base64,{b64}" alt="{_e(heading)}">'
        fig_html.append(f'<figure id="{fid}"{cls}><h3>{_e(heading)}</h3>{body}'
                        f"<figcaption>{_e(caption)}</figcaption></figure>")

    tables = [_table("scorers", "Scorers on the same rows", ["scorer", "average precision", "AUROC"],
                     scorer_rows)]
    tables.extend(_metric_tables(metrics))
    if daily is not None:
        days = daily_raw["days"]
        keys = ["precision"]
        for d in days:
            keys.extend(k for k in d if k not in keys and k != "day" and _scalar(d[k]))
        tables.append(_table("daily-table", f"Daily precision@{daily[0]}", ["day", *keys],
                             [[d["day"]] + [d.get(k) for k in keys] for d in days]))
    if latency is not None:
        rows = []
        for name, v in latency.items():
            rows.append([name, int(v.size), float(v.mean()),
                         *(float(q) for q in np.percentile(v, [50, 90, 99, 99.9])), float(v.max())])
        tables.append(_table("latency-table", "Scoring latency (µs)",
                             ["backend", "calls", "mean", "p50", "p90", "p99", "p99.9", "max"], rows))

    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header id="summary">
<p class="eyebrow">libfraud report</p>
<h1>{_e(title)}</h1>
<p class="lede">{n:,} rows scored, {pos:,} fraud (base rate {base:.3%}). {_e(op_line)}</p>
<div class="cards" id="headline">{cards_html}</div>
{facts_html}
</header>
<section id="figures">
<h2>Figures</h2>
<div class="grid">
{"".join(fig_html)}
</div>
</section>
<section id="tables">
<h2>Tables</h2>
<div class="tables">{"".join(tables)}</div>
</section>
<footer>Generated {_e(generated)} by libfraud.report_html.
Self-contained: no scripts, no external resources.</footer>
</main>
</body>
</html>
"""


_CSS = """
:root { --fg: #1c2230; --muted: #5d6676; --line: #e2e5ea; --panel: #f5f6f8; --accent: #3b4cc0; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
        "Liberation Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 28px 48px; }
header { border-bottom: 1px solid var(--line); padding-bottom: 18px; margin-bottom: 8px; }
.eyebrow { margin: 0; color: var(--accent); font-size: 12px; font-weight: 600; letter-spacing: .08em;
  text-transform: uppercase; }
h1 { font-size: 28px; line-height: 1.2; margin: 4px 0 6px; font-weight: 700; }
h2 { font-size: 19px; margin: 30px 0 12px; font-weight: 650; }
h3 { font-size: 15px; margin: 0 0 8px; font-weight: 600; }
.lede { margin: 0 0 16px; color: var(--muted); max-width: 80ch; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(165px, 1fr)); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-left: 4px solid var(--accent);
  border-radius: 8px; padding: 10px 14px 12px; }
.card .k { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 28px; font-weight: 700; font-variant-numeric: tabular-nums; line-height: 1.25; }
.card .s { font-size: 12.5px; color: var(--muted); }
.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 4px 24px;
  margin: 16px 0 0; font-size: 13.5px; }
.facts div { display: flex; gap: 8px; border-bottom: 1px dotted var(--line); padding: 3px 0; min-width: 0; }
.facts dt { color: var(--muted); flex: 0 0 auto; }
.facts dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12.5px; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 18px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; width: 100%; height: auto; }
figure.wide img { max-width: 1100px; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 8px; }
.note { color: var(--muted); font-size: 13.5px; margin: 0 0 8px; }
.tables { display: flex; flex-wrap: wrap; gap: 0 36px; align-items: flex-start; }
.tbl { margin: 0 0 22px; max-width: 100%; }
.scroll { display: inline-block; max-width: 100%; overflow-x: auto; border: 1px solid var(--line);
  border-radius: 8px; vertical-align: top; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 12px; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
thead th { background: var(--panel); font-weight: 600; color: var(--muted); font-size: 12.5px; }
tbody th { font-weight: 500; }
th.num, td.num { text-align: right; }
td.num { min-width: 7ch; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:last-child th, tbody tr:last-child td { border-bottom: 0; }
footer { margin-top: 36px; color: var(--muted); font-size: 12.5px; }
@media (max-width: 860px) { .grid { grid-template-columns: 1fr; } main { padding: 18px; } }
@media print { main { max-width: none; } figure, .tbl { break-inside: avoid; } }
"""


def _write_atomic(path: Path, text: str) -> Path:
    """Temp file in the same folder, then rename: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from its readers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
