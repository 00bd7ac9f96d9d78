"""Report figures (PNG via matplotlib's Agg renderer; no display, no pyplot global state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from libfraud import metrics

__all__ = ["plot_latency_histogram", "plot_pr_curve"]


def _new_figure(ncols: int = 1, width: float = 6.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: works with no screen
    axes = np.atleast_1d(fig.subplots(1, ncols))
    return fig, axes


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_pr_curve(
    y: np.ndarray,
    scores_by_name: dict[str, np.ndarray],
    path: str | Path,
    title: str = "Precision-recall",
) -> Path:
    """Precision-recall curves of several scorers on the same labels, AUPRC in the legend.

    The dashed line is the base rate (the precision of a random scorer). Returns ``path``.
    """
    if not scores_by_name:
        raise ValueError("scores_by_name is empty")
    y = np.asarray(y)
    fig, (ax,) = _new_figure()
    for name, scores in scores_by_name.items():
        ap = metrics.auprc(y, scores)  # also validates y and scores
        precision, recall, _ = precision_recall_curve(y, np.asarray(scores, dtype=np.float64))
        ax.step(recall, precision, where="post", label=f"{name} (AUPRC {ap:.3f})")
    base = float(np.mean(y))
    ax.axhline(base, color="grey", linestyle="--", linewidth=1, label=f"base rate {base:.4f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_latency_histogram(
    latencies_us: dict[str, np.ndarray],
    path: str | Path,
    title: str = "Scoring latency",
) -> Path:
    """Log-x latency histogram and CDF per backend, with p50 (dashed) and p99 (dotted) marked.

    Latencies are microseconds and must be finite and > 0. Returns ``path``.
    """
    if not latencies_us:
        raise ValueError("latencies_us is empty")
    series = {}
    for name, values in latencies_us.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            raise ValueError(f"latencies for {name!r} are empty")
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"latencies for {name!r} must be finite and > 0 (log scale)")
        series[name] = np.sort(v)

    lo = min(v[0] for v in series.values())
    hi = max(v[-1] for v in series.values())
    bins = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 2, 60)
    fig, (ax_hist, ax_cdf) = _new_figure(ncols=2)
    colors = [f"C{i % 10}" for i in range(len(series))]
    for color, (name, v) in zip(colors, series.items()):
        p50, p99 = np.percentile(v, [50, 99])
        label = f"{name} p50 {p50:.3g} us, p99 {p99:.3g} us"
        ax_hist.hist(v, bins=bins, histtype="step", color=color, label=label)
        ax_cdf.plot(v, np.arange(1, v.size + 1) / v.size, color=color, label=name)
        for ax in (ax_hist, ax_cdf):
            ax.axvline(p50, color=color, linestyle="--", linewidth=1)
            ax.axvline(p99, color=color, linestyle=":", linewidth=1)
    ax_hist.set(xscale="log", xlabel="latency (us)", ylabel="count", title=title)
    ax_cdf.set(xscale="log", xlabel="latency (us)", ylabel="fraction <= x", ylim=(0, 1.01), title="CDF")
    ax_hist.legend(loc="upper right", fontsize="small")
    ax_cdf.legend(loc="lower right", fontsize="small")
    for ax in (ax_hist, ax_cdf):
        ax.grid(alpha=0.3, which="both")
    return _save(fig, path)
