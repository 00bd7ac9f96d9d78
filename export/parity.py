"""Parity of a compiled tree library against XGBoost, on held-out rows with missing values.

The compiled side is scored through ``_core.TreeLibrary``, the loader the serving engine uses, so
the check covers the missing-value flag and the zeroed output buffer, not only the generated C.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ParityError", "ParityReport", "check_tree_parity", "MIN_MISSING_FRACTION"]

REFERENCE = "xgboost inplace_predict"
# Below this fraction of rows with a NaN, copies of held-out rows with NaNs are added.
MIN_MISSING_FRACTION = 0.10


class ParityError(RuntimeError):
    """A compiled artifact disagrees with its reference beyond the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    reference: str
    rows: int  # rows compared, added rows with missing values included
    rows_with_missing: int
    max_abs_diff: float  # inf when either side gave a non-finite probability
    worst_row: int  # index into the compared rows (held-out rows first, then the added ones)
    tolerance: float
    passed: bool
    worst_reference: float = math.nan  # the reference's probability at worst_row
    worst_compiled: float = math.nan  # the compiled probability at worst_row

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def require(self) -> "ParityReport":
        """Return self if passed, else raise ParityError naming the max difference and worst row."""
        if not self.passed:
            raise ParityError(
                f"compiled trees disagree with {self.reference}: max abs diff {self.max_abs_diff:.6g} "
                f"> tolerance {self.tolerance:g} at row {self.worst_row} of {self.rows} "
                f"(reference {self.worst_reference:.9g}, compiled {self.worst_compiled:.9g}; "
                f"{self.rows_with_missing} rows had missing values)"
            )
        return self


def _holdout_matrix(X: Any, booster) -> np.ndarray:
    columns = getattr(X, "columns", None)
    names = booster.feature_names
    if columns is not None and names is not None and [str(c) for c in columns] != list(names):
        raise ValueError(f"X_holdout columns {list(columns)} differ from the booster's feature names {names}")
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if X.ndim != 2:
        raise ValueError(f"X_holdout must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X_holdout has no rows")
    if X.shape[1] != booster.num_features():
        raise ValueError(f"X_holdout has {X.shape[1]} columns, the booster expects {booster.num_features()}")
    if np.isinf(X).any():  # the project's policy: +/-inf is refused everywhere, NaN is missing
        raise ValueError("X_holdout contains +/-inf; only NaN (missing) is allowed besides finite values")
    return X


def _with_missing_rows(X: np.ndarray, seed: int) -> np.ndarray:
    """X, plus seeded copies of its rows with random features set to NaN when too few rows have one."""
    n, f = X.shape
    has_missing = np.isnan(X).any(axis=1)
    if has_missing.mean() >= MIN_MISSING_FRACTION:
        return X
    rng = np.random.default_rng(seed)
    n_add = max(f + 1, math.ceil(0.25 * n))
    extra = X[rng.integers(0, n, size=n_add)].copy()
    for i in range(n_add):
        if i < f:  # each feature missing alone once
            extra[i, i] = np.nan
        elif i == f:  # every feature missing
            extra[i, :] = np.nan
        else:
            k = int(rng.integers(1, max(1, f // 2) + 1))
            extra[i, rng.choice(f, size=k, replace=False)] = np.nan
    return np.ascontiguousarray(np.concatenate([X, extra]))


def check_tree_parity(
    booster,
    so_path: str | os.PathLike,
    X_holdout: Any,
    *,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> ParityReport:
    """Compare the library at ``so_path`` with ``booster.inplace_predict`` on ``X_holdout``.

    X_holdout: held-out rows in the booster's feature order (NaN = missing). When fewer than 10% of
    them have a NaN, seeded copies with random features set to NaN are added, so the missing-value
    paths are exercised. The report is returned either way; call ``require()`` to raise on failure.
    """
    from libfraud import _core

    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    X = _with_missing_rows(_holdout_matrix(X_holdout, booster), seed)

    reference = np.asarray(booster.inplace_predict(X), dtype=np.float64)
    library = _core.TreeLibrary(os.fspath(so_path))
    compiled = np.asarray(library.predict(X), dtype=np.float64)
    if reference.shape != compiled.shape:
        raise ParityError(f"reference gave shape {reference.shape}, compiled {compiled.shape}")

    diff = np.abs(reference - compiled)
    diff[~(np.isfinite(reference) & np.isfinite(compiled))] = np.inf
    worst = int(np.argmax(diff))
    max_abs_diff = float(diff[worst])
    return ParityReport(
        reference=REFERENCE,
        rows=int(X.shape[0]),
        rows_with_missing=int(np.isnan(X).any(axis=1).sum()),
        max_abs_diff=max_abs_diff,
        worst_row=worst,
        tolerance=float(tolerance),
        passed=bool(max_abs_diff <= tolerance),
        worst_reference=float(reference[worst]),
        worst_compiled=float(compiled[worst]),
    )
