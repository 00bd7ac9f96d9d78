"""Report figures (PNG via matplotlib's Agg renderer; no display, no pyplot global state).

Every ``plot_*`` function draws one Figure and ends the same way: given ``path`` it writes the PNG
there (creating folders) and returns the Path; with ``path=None`` it returns the PNG bytes, which is
what the HTML report inlines.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from sklearn.metrics import precision_recall_curve

from libfraud import metrics

__all__ = [
    "plot_daily_precision",
    "plot_feature_importance",
    "plot_latency_histogram",
    "plot_pr_curve",
    "plot_reliability",
    "plot_score_distributions",
]

DPI = 120
#: Tableau colours by position, so a scorer keeps its colour across figures of one report.
_COLORS = [f"C{i}" for i in range(10)]


def _new_figure(ncols: int = 1, width: float = 6.0, height: float = 4.5) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: works with no screen
    axes = np.atleast_1d(fig.subplots(1, ncols))
    return fig, axes


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _finish(fig: Figure, path: str | Path | None) -> Path | bytes:
    if path is not None:
        return _save(fig, path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _text(s: object) -> str:
    """User text for a label: a lone '$' would otherwise start matplotlib mathtext."""
    return str(s).replace("$", r"\$")


def _labels_scores(y, scores, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validate through metrics' own check (same messages as every metric), via auprc."""
    metrics.auprc(y, scores)
    return np.asarray(y).astype(np.int8), np.asarray(scores, dtype=np.float64)


def _probabilities(s: np.ndarray, name: str) -> np.ndarray:
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(f"{name!r} scores must be probabilities in [0, 1] for a reliability plot, "
                         f"got range [{s.min():.4g}, {s.max():.4g}]")
    return s


def finite_or_none(value, name: str) -> float | None:
    """None, or ``value`` as a float when it is a finite number (else ValueError naming ``name``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def plot_pr_curve(
    y: np.ndarray,
    scores_by_name: dict[str, np.ndarray],
    path: str | Path | None = None,
    title: str = "Precision-recall",
    *,
    threshold: float | None = None,
) -> Path | bytes:
    """Precision-recall curves of several scorers on the same labels, AUPRC in the legend.

    The dashed line is the base rate (the precision of a random scorer). ``threshold`` is marked
    on the first scorer's curve (the one the threshold was chosen for) as the rule
    ``score >= threshold``.
    """
    if not scores_by_name:
        raise ValueError("scores_by_name is empty")
    threshold = finite_or_none(threshold, "threshold")
    y = np.asarray(y)
    fig, (ax,) = _new_figure()
    for i, (name, scores) in enumerate(scores_by_name.items()):
        ap = metrics.auprc(y, scores)  # also validates y and scores
        s = np.asarray(scores, dtype=np.float64)
        precision, recall, _ = precision_recall_curve(y, s)
        color = _COLORS[i % 10]
        ax.step(recall, precision, where="post", color=color, label=_text(f"{name} (AUPRC {ap:.3f})"))
        if i == 0 and threshold is not None:
            flagged = s >= threshold
            if flagged.any():
                tp = int(y[flagged].sum())
                p, r = tp / int(flagged.sum()), tp / int(y.sum())
                ax.plot([r], [p], marker="o", markersize=9, markerfacecolor="white", markeredgewidth=2,
                        color=color, linestyle="none",
                        label=f"threshold {threshold:.4g}: P {p:.3f}, R {r:.3f}")
            else:
                ax.plot([], [], linestyle="none", label=f"threshold {threshold:.4g} flags nothing")
    base = float(np.mean(y))
    ax.axhline(base, color="grey", linestyle="--", linewidth=1, label=f"base rate {base:.4f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=_text(title))
    ax.legend(loc="lower left", fontsize="small")  # where a ranking curve never goes
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_daily_precision(
    daily: Mapping,
    path: str | Path | None = None,
    title: str | None = None,
) -> Path | bytes:
    """Precision among each day's top-k scores as bars, the mean over days dashed.

    ``daily`` is ``{"k": 100, "mean": 0.27, "days": [{"day": "2026-01-08", "precision": 0.3}, ...]}``;
    ``mean`` is recomputed from the days when absent. Extra keys in a day are ignored.
    """
    k, mean, days, values = _daily_series(daily)
    fig, (ax,) = _new_figure(width=max(6.0, min(12.0, 0.28 * len(days) + 3.0)))
    x = np.arange(len(days))
    ax.bar(x, values, color=_COLORS[0], width=0.8, label=f"precision@{k} per day")
    ax.axhline(mean, color=_COLORS[3], linestyle="--", linewidth=1.5, label=f"mean {mean:.3f}")
    step = max(1, math.ceil(len(days) / 16))  # at most ~16 date labels stay readable
    tilt = sum(len(d) for d in days[::step]) > 40  # ISO dates side by side overlap beyond ~5
    ax.set_xticks(x[::step], [_text(d) for d in days[::step]],
                  rotation=35 if tilt else 0, ha="right" if tilt else "center",
                  rotation_mode="anchor" if tilt else "default")
    ax.set(ylabel=f"precision@{k}", ylim=(0, 1.02), xlim=(-0.6, len(days) - 0.4),
           title=_text(title if title is not None else f"Daily precision@{k}"))
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return _finish(fig, path)


def _daily_series(daily: Mapping) -> tuple[int, float, list[str], np.ndarray]:
    """Validate a daily precision dict; return (k, mean, day labels, precisions)."""
    if not isinstance(daily, Mapping):
        raise ValueError(f"daily_precision must be a dict, got {type(daily).__name__}")
    k = daily.get("k")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"daily_precision['k'] must be a positive integer, got {k!r}")
    days = daily.get("days")
    if not isinstance(days, Sequence) or isinstance(days, str) or not days:
        raise ValueError("daily_precision['days'] must be a non-empty list of {'day', 'precision'} dicts")
    labels, values = [], []
    for i, d in enumerate(days):
        if not isinstance(d, Mapping) or "day" not in d or "precision" not in d:
            raise ValueError(f"daily_precision['days'][{i}] must be a dict with 'day' and 'precision', got {d!r}")
        p = d["precision"]
        if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"daily_precision['days'][{i}]['precision'] must be a number in [0, 1], got {p!r}")
        labels.append(str(d["day"]))
        values.append(float(p))
    values = np.asarray(values)
    mean = daily.get("mean")
    if mean is None:
        mean = float(values.mean())
    elif isinstance(mean, bool) or not isinstance(mean, (int, float, np.number)) or not 0.0 <= float(mean) <= 1.0:
        raise ValueError(f"daily_precision['mean'] must be a number in [0, 1], got {mean!r}")
    return int(k), float(mean), labels, values


def plot_reliability(
    y: np.ndarray,
    scores_by_name: dict[str, np.ndarray],
    path: str | Path | None = None,
    title: str = "Reliability",
    *,
    bins: int = 10,
) -> Path | bytes:
    """Mean predicted probability vs observed fraud rate in ``bins`` equal-width bins of [0, 1].

    One curve per scorer (e.g. calibrated and raw), Wilson 95% intervals as error bars so that
    sparse high-score bins read as uncertain; the diagonal is perfect calibration. Below, the rows
    per bin on a log scale. Empty bins are left out. Scores must lie in [0, 1].
    """
    if not scores_by_name:
        raise ValueError("scores_by_name is empty")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    fig = Figure(figsize=(6.0, 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_n = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    width = (edges[1] - edges[0]) / (len(scores_by_name) + 1)
    for i, (name, scores) in enumerate(scores_by_name.items()):
        yy, s = _labels_scores(y, scores)
        _probabilities(s, name)
        # right-closed last bin: a score of exactly 1.0 belongs to it, not to an 11th bin
        idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, int(bins) - 1)
        n = np.bincount(idx, minlength=int(bins))
        pos = np.bincount(idx, weights=yy, minlength=int(bins))
        mean_pred = np.bincount(idx, weights=s, minlength=int(bins))
        keep = n > 0
        n_k, rate = n[keep], pos[keep] / n[keep]
        mean_pred = mean_pred[keep] / n_k
        lo, hi = _wilson(pos[keep], n_k)
        color = _COLORS[i % 10]
        # rounding can put the interval a hair inside an all-0 or all-1 bin's rate
        yerr = [np.maximum(rate - lo, 0.0), np.maximum(hi - rate, 0.0)]
        ax.errorbar(mean_pred, rate, yerr=yerr, color=color, marker="o", markersize=4,
                    capsize=2, linewidth=1.5, label=_text(name))
        ax_n.bar(edges[:-1] + width * (i + 0.5), n, width=width, align="edge", color=color)
    ax.set(ylabel="observed fraud rate", xlim=(0, 1), ylim=(-0.02, 1.02), title=_text(title))
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    ax_n.set(xlabel="predicted probability (bin)", ylabel="rows", yscale="log")
    ax_n.grid(alpha=0.3, axis="y")
    return _finish(fig, path)


def _latency_series(latencies_us: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validated, sorted latencies per backend."""
    if not isinstance(latencies_us, Mapping) or not latencies_us:
        raise ValueError("latencies_us must be a non-empty dict of backend name -> latencies")
    series = {}
    for name, values in latencies_us.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            raise ValueError(f"latencies for {name!r} are empty")
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"latencies for {name!r} must be finite and > 0 (log scale)")
        series[name] = np.sort(v)
    return series


def _plain_log_ticks(axis) -> None:
    """Log-axis labels as 2, 5, 10, 20, 50 (microseconds read better than 2x10^0 crowded by 3x10^0)."""
    def major(v, _pos):
        return f"{v:g}"

    def minor(v, _pos):
        return f"{v:g}" if f"{v:.0e}"[0] in "25" else ""

    axis.set_major_formatter(FuncFormatter(major))
    axis.set_minor_formatter(FuncFormatter(minor))


def _wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes in n trials (sane at 0 and n, unlike k/n +- se)."""
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def plot_score_distributions(
    y: np.ndarray,
    scores: np.ndarray,
    path: str | Path | None = None,
    title: str = "Score distribution by class",
    *,
    threshold: float | None = None,
    bins: int = 50,
) -> Path | bytes:
    """Histograms of legitimate and fraud scores on shared bins, log-y so the rare class shows.

    ``threshold`` is drawn as a vertical line with what it flags of each class.
    """
    y, s = _labels_scores(y, scores)
    threshold = finite_or_none(threshold, "threshold")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    lo, hi = float(s.min()), float(s.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    fig, (ax,) = _new_figure()
    for label, cls, color in (("legitimate", 0, _COLORS[0]), ("fraud", 1, _COLORS[3])):
        v = s[y == cls]
        ax.hist(v, bins=edges, histtype="stepfilled", alpha=0.35, color=color, log=True)
        ax.hist(v, bins=edges, histtype="step", color=color, linewidth=1.5, log=True,
                label=f"{label} (n={v.size:,})")
    if threshold is not None:
        flagged = s >= threshold
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                   label=f"threshold {threshold:.4g}: flags {int(flagged[y == 1].sum()):,} fraud, "
                         f"{int(flagged[y == 0].sum()):,} legit")
    ax.set(xlabel="score", ylabel="rows (log)", title=_text(title))
    ax.legend(loc="upper right", fontsize="small")  # above the thin high-score tail
    ax.grid(alpha=0.3, which="major")
    return _finish(fig, path)


def plot_feature_importance(
    importance: Mapping[str, float],
    path: str | Path | None = None,
    title: str = "Feature importance (gain)",
    *,
    top: int = 20,
) -> Path | bytes:
    """The ``top`` features by importance as horizontal bars, the largest at the top."""
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    items = sorted(_importance_items(importance), key=lambda kv: kv[1], reverse=True)[: int(top)]
    names = [n if len(n) <= 40 else n[:39] + "…" for n, _ in items]  # long names squeeze the bars out
    values = np.array([v for _, v in items])
    # wide: names on the left, bars long enough to compare
    fig, (ax,) = _new_figure(width=10.0, height=max(2.5, 0.24 * len(items) + 1.2))
    pos = np.arange(len(items))[::-1]
    ax.barh(pos, values, color=_COLORS[0])
    ax.set_yticks(pos, [_text(n) for n in names], fontsize="small")
    ax.set(xlabel="importance", title=_text(f"{title}, top {len(items)} of {len(importance)}"))
    ax.grid(alpha=0.3, axis="x")
    return _finish(fig, path)


def _importance_items(importance: Mapping[str, float]) -> list[tuple[str, float]]:
    if not isinstance(importance, Mapping) or not importance:
        raise ValueError("feature importance must be a non-empty dict of feature name -> number")
    items = []
    for name, value in importance.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise ValueError(f"feature importance of {name!r} must be a finite number, got {value!r}")
        items.append((str(name), float(value)))
    return items


def plot_latency_histogram(
    latencies_us: dict[str, np.ndarray],
    path: str | Path | None = None,
    title: str = "Scoring latency",
) -> Path | bytes:
    """Log-x latency histogram and CDF per backend, with p50 (dashed) and p99 (dotted) marked.

    Latencies are microseconds and must be finite and > 0.
    """
    series = _latency_series(latencies_us)
    lo = min(v[0] for v in series.values())
    hi = max(v[-1] for v in series.values())
    bins = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 2, 60)
    fig, (ax_hist, ax_cdf) = _new_figure(ncols=2)
    colors = [f"C{i % 10}" for i in range(len(series))]
    for color, (name, v) in zip(colors, series.items()):
        p50, p99 = np.percentile(v, [50, 99])
        label = _text(f"{name} p50 {p50:.3g} us, p99 {p99:.3g} us")
        ax_hist.hist(v, bins=bins, histtype="step", color=color, label=label)
        ax_cdf.plot(v, np.arange(1, v.size + 1) / v.size, color=color, label=_text(name))
        for ax in (ax_hist, ax_cdf):
            ax.axvline(p50, color=color, linestyle="--", linewidth=1)
            ax.axvline(p99, color=color, linestyle=":", linewidth=1)
    ax_hist.set(xscale="log", xlabel="latency (us)", ylabel="count", title=_text(title))
    ax_cdf.set(xscale="log", xlabel="latency (us)", ylabel="fraction <= x", ylim=(0, 1.01), title="CDF")
    ax_hist.legend(loc="best", fontsize="small")
    ax_cdf.legend(loc="lower right", fontsize="small")
    for ax in (ax_hist, ax_cdf):
        ax.grid(alpha=0.3, which="both")
        _plain_log_ticks(ax.xaxis)
    return _finish(fig, path)
