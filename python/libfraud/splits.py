"""Time-ordered train/validation/test splits.

Fraud models are judged on the future, so a split is a cut in time, never a shuffle: every training
row happens no later than every validation row, which happens no later than every test row.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["time_split"]


def time_split(
    timestamps_ms: np.ndarray,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows into (train_idx, valid_idx, test_idx) by time.

    The indices point into ``timestamps_ms`` and are listed in time order (ties in input order).
    A boundary that would fall inside a run of equal timestamps moves to the end of that run, so
    rows with the same timestamp always land in the same part; the parts may therefore be a little
    larger or smaller than ``fractions`` asks.

    Raises ValueError for bad fractions (three finite values > 0 summing to 1), a non 1-D or
    non-finite timestamp array, or too few rows / distinct timestamps for three non-empty parts.
    """
    ts = np.asarray(timestamps_ms)
    if ts.ndim != 1:
        raise ValueError(f"timestamps_ms must be 1-D, got shape {ts.shape}")
    if not (np.issubdtype(ts.dtype, np.integer) or np.issubdtype(ts.dtype, np.floating)):
        raise ValueError(f"timestamps_ms must be numeric, got dtype {ts.dtype}")
    if np.issubdtype(ts.dtype, np.floating) and not np.all(np.isfinite(ts)):
        raise ValueError("timestamps_ms contains NaN or infinite values")

    fr = tuple(fractions)
    if len(fr) != 3:
        raise ValueError(f"fractions must have 3 values (train, valid, test), got {len(fr)}")
    if not all(isinstance(f, (int, float)) and math.isfinite(f) and f > 0 for f in fr):
        raise ValueError(f"every fraction must be a finite number > 0, got {fr}")
    if not math.isclose(sum(fr), 1.0, rel_tol=0.0, abs_tol=1e-9):
        raise ValueError(f"fractions must sum to 1, got {fr} (sum {sum(fr)!r})")

    n = ts.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 rows for a train/valid/test split, got {n}")

    order = np.argsort(ts, kind="stable")
    sorted_ts = ts[order]

    def cut_at(position: float) -> int:
        cut = min(max(int(round(position)), 1), n)
        # Push the cut past every row sharing the timestamp just before it: ties never straddle.
        return int(np.searchsorted(sorted_ts, sorted_ts[cut - 1], side="right"))

    cut1 = cut_at(n * fr[0])
    cut2 = max(cut_at(n * (fr[0] + fr[1])), cut1)
    if cut2 == cut1 and cut1 < n:
        # The validation cut landed inside the train tie run: give validation the next run.
        cut2 = int(np.searchsorted(sorted_ts, sorted_ts[cut1], side="right"))

    sizes = (cut1, cut2 - cut1, n - cut2)
    if min(sizes) == 0:
        raise ValueError(
            f"cannot make three non-empty time-ordered parts from {n} rows with "
            f"{np.unique(sorted_ts).size} distinct timestamps and fractions {fr} "
            f"(sizes after moving cuts to the end of tie runs: {sizes})"
        )
    return order[:cut1].copy(), order[cut1:cut2].copy(), order[cut2:].copy()
