"""The bundle's drift reference (BUNDLE.md "drift"): per model feature and for the served score,
bin edges from quantiles of the reference rows and the proportion of those rows in each bin.

Binning is the core's (``_core.drift_bin``), so the reference proportions and the live counts the
engine's monitor keeps put a value in the same bin; the PSI itself is computed only by the core.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["DRIFT_FORMAT", "DRIFT_VERSION", "FEATURE_QUANTILES", "SCORE_QUANTILES", "drift_edges",
           "drift_histogram", "drift_section", "sample_rows", "with_missing_as_nan"]

DRIFT_FORMAT = "libfraud-drift"
DRIFT_VERSION = 1
#: Deciles: about 10 value bins per feature (fewer where quantiles coincide), plus the missing bin.
FEATURE_QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 10))
#: The score's deciles and its upper tail, where alerts are.
SCORE_QUANTILES = FEATURE_QUANTILES + (0.95, 0.99)
#: The most reference rows kept (a seeded sample beyond it): enough for ~10 bins' proportions.
MAX_REFERENCE_ROWS = 100_000


def drift_edges(values: np.ndarray, quantiles: Sequence[float]) -> list[float]:
    """Cut points: the ``quantiles`` of the non-missing values (each a value of the data, so exact
    in float32), duplicates dropped; [] when every value is missing."""
    v = np.asarray(values, dtype=np.float32)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return []
    edges = np.unique(np.quantile(v, list(quantiles), method="lower").astype(np.float32))
    return [float(e) for e in edges]


def drift_histogram(values: np.ndarray, quantiles: Sequence[float]) -> dict:
    """{"edges", "proportions"}: proportions of the values in each of len(edges) + 1 value bins,
    then the missing bin, binned by the core."""
    from .. import _core
    v = np.ascontiguousarray(values, dtype=np.float32)
    edges = drift_edges(v, quantiles)
    bins = _core.drift_bin(np.asarray(edges, dtype=np.float64), v)
    counts = np.bincount(bins, minlength=len(edges) + 2)
    return {"edges": edges, "proportions": [float(c) / len(v) for c in counts]}


def drift_section(feature_names: Sequence[str], rows: np.ndarray, scores: np.ndarray,
                  computed_on: Mapping | None = None) -> dict:
    """The manifest's `drift` section for reference ``rows`` [n, F] (NaN = missing) and the core's
    served ``scores`` of them. ``computed_on`` describes the rows (source, period...); ``rows`` is
    added to it."""
    rows = np.asarray(rows, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != len(feature_names):
        raise ValueError(f"drift reference rows must be [n, {len(feature_names)}] (one column per model "
                         f"feature), got shape {rows.shape}")
    if len(rows) == 0:
        raise ValueError("drift reference rows are empty")
    if np.isinf(rows).any():
        col = int(np.argwhere(np.isinf(rows))[0][1])
        raise ValueError(f"drift reference rows hold +/-inf in feature {feature_names[col]!r} (NaN = missing)")
    if scores.shape != (len(rows),) or not np.isfinite(scores).all():
        raise ValueError("drift reference scores must be one finite score per row")
    info = dict(computed_on or {})
    info["rows"] = int(len(rows))
    return {
        "format": DRIFT_FORMAT,
        "version": DRIFT_VERSION,
        "computed_on": info,
        "binning": {"features": list(FEATURE_QUANTILES), "score": list(SCORE_QUANTILES),
                    "quantile_method": "lower"},
        "features": [{"name": name, **drift_histogram(rows[:, j], FEATURE_QUANTILES)}
                     for j, name in enumerate(feature_names)],
        "score": drift_histogram(scores, SCORE_QUANTILES),
    }


def sample_rows(rows: np.ndarray, limit: int = MAX_REFERENCE_ROWS, seed: int = 0) -> np.ndarray:
    """At most ``limit`` of ``rows``, a seeded sample in their order."""
    if len(rows) <= limit:
        return np.asarray(rows)
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=limit, replace=False))
    return np.asarray(rows)[keep]


def with_missing_as_nan(rows: np.ndarray, missing: float) -> np.ndarray:
    """Rows with a training sentinel for missing values (``missing`` not NaN) as the core's rows
    have them: NaN."""
    rows = np.array(rows, dtype=np.float32, copy=True)
    if not math.isnan(missing):
        rows[rows == np.float32(missing)] = np.nan
    return rows
