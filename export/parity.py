"""Parity of a compiled tree library against XGBoost, on held-out rows with missing values.

The compiled side is scored through ``_core.TreeLibrary``, the loader the serving engine uses, so
the check covers the missing-value flag and the zeroed output buffer, not only the generated C; the
flat predictor through ``_core.FlatForest``, built from the bundle's node tables as the engine does.

The core's one missing marker is NaN. A model trained with another (``DMatrix(missing=-999)``)
treats that value as missing, the core as a value: xgboost does not record it in the model, so it
is declared (``missing_value``), and the reference then reads it as training did while the compiled
side is given the rows as the core would be, sentinel rows added. The mismatch (0.95 on a model
whose missing values mattered) is then a parity failure, not a silently wrong served score.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ParityError", "ParityReport", "check_flat_parity", "check_missing_value", "check_tree_parity",
           "MIN_MISSING_FRACTION"]

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
    missing_value: float = math.nan  # the value that marked missing in training (NaN: none but NaN)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def require(self) -> "ParityReport":
        """Return self if passed, else raise ParityError naming the max difference and worst row."""
        if not self.passed:
            sentinel = ""
            if not math.isnan(self.missing_value):
                m = f"{self.missing_value:g}"
                sentinel = (f". The model was trained with missing={m}: xgboost reads {m} as missing, the core "
                            f"only NaN, and scores {m} as a value. Serve NaN where {m} marks a missing value, and "
                            f"compile with X_holdout's {m} replaced by NaN and missing_value=NaN (xgboost reads NaN "
                            "as missing whatever `missing` it was trained with: the booster need not change)")
            raise ParityError(
                f"compiled trees disagree with {self.reference}: max abs diff {self.max_abs_diff:.6g} "
                f"> tolerance {self.tolerance:g} at row {self.worst_row} of {self.rows} "
                f"(reference {self.worst_reference:.9g}, compiled {self.worst_compiled:.9g}; "
                f"{self.rows_with_missing} rows had missing values){sentinel}"
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


def check_missing_value(missing_value: Any) -> float:
    """The declared missing value as the float32 the rows hold: NaN, or a finite number."""
    if isinstance(missing_value, bool) or not isinstance(missing_value, (int, float, np.integer, np.floating)):
        raise ValueError(f"missing_value must be a number (NaN, or the sentinel that marked missing values in "
                         f"training), got {missing_value!r}")
    with np.errstate(over="ignore"):
        value = float(np.float32(missing_value))  # xgboost compares float32 rows with a float32 missing
    if math.isinf(value):
        raise ValueError(f"missing_value must be NaN or a finite float32 number, got {missing_value!r} "
                         "(+/-inf is refused everywhere)")
    return value


def _missing_copies(X: np.ndarray, seed: int, marker: float) -> np.ndarray:
    """Seeded copies of X's rows with features set to ``marker``: each feature alone once, all of
    them once, then random sets."""
    n, f = X.shape
    rng = np.random.default_rng(seed)
    n_add = max(f + 1, math.ceil(0.25 * n))
    extra = X[rng.integers(0, n, size=n_add)].copy()
    for i in range(n_add):
        if i < f:  # each feature missing alone once
            extra[i, i] = marker
        elif i == f:  # every feature missing
            extra[i, :] = marker
        else:
            k = int(rng.integers(1, max(1, f // 2) + 1))
            extra[i, rng.choice(f, size=k, replace=False)] = marker
    return extra


def _with_missing_rows(X: np.ndarray, seed: int) -> np.ndarray:
    """X, plus seeded copies of its rows with random features set to NaN when too few rows have one."""
    if np.isnan(X).any(axis=1).mean() >= MIN_MISSING_FRACTION:
        return X
    return np.ascontiguousarray(np.concatenate([X, _missing_copies(X, seed, np.nan)]))


def _parity_rows(booster, X_holdout, seed: int, missing: float) -> np.ndarray:
    """The rows every predictor is compared on: held-out rows, NaN copies when too few have one,
    and copies carrying a declared sentinel."""
    held_out = _holdout_matrix(X_holdout, booster)
    X = _with_missing_rows(held_out, seed)
    if not math.isnan(missing):
        X = np.ascontiguousarray(np.concatenate([X, _missing_copies(held_out, seed + 1, missing)]))
    return X


def _compare(reference: np.ndarray, compiled: np.ndarray, X: np.ndarray, missing: float,
             tolerance: float) -> ParityReport:
    if reference.shape != compiled.shape:
        raise ParityError(f"reference gave shape {reference.shape}, compiled {compiled.shape}")
    diff = np.abs(reference - compiled)
    diff[~(np.isfinite(reference) & np.isfinite(compiled))] = np.inf
    worst = int(np.argmax(diff))
    max_abs_diff = float(diff[worst])
    return ParityReport(
        reference=REFERENCE,
        rows=int(X.shape[0]),
        rows_with_missing=int((np.isnan(X) | (X == missing)).any(axis=1).sum()),
        max_abs_diff=max_abs_diff,
        worst_row=worst,
        tolerance=float(tolerance),
        passed=bool(max_abs_diff <= tolerance),
        worst_reference=float(reference[worst]),
        worst_compiled=float(compiled[worst]),
        missing_value=missing,
    )


def _checked_tolerance(tolerance: Any) -> None:
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")


def check_tree_parity(
    booster,
    so_path: str | os.PathLike,
    X_holdout: Any,
    *,
    tolerance: float = 1e-5,
    seed: int = 0,
    missing_value: float = math.nan,
) -> ParityReport:
    """Compare the library at ``so_path`` with ``booster.inplace_predict`` on ``X_holdout``.

    X_holdout: held-out rows in the booster's feature order (NaN = missing). When fewer than 10% of
    them have a NaN, seeded copies with random features set to NaN are added, so the missing-value
    paths are exercised. ``missing_value``: the value that marked missing in training if not NaN
    (xgboost does not record it); the reference then reads it as missing, the compiled side as the
    core does (a value), on the rows plus seeded copies carrying it. The report is returned either
    way; call ``require()`` to raise on failure.
    """
    from libfraud import _core

    _checked_tolerance(tolerance)
    missing = check_missing_value(missing_value)
    X = _parity_rows(booster, X_holdout, seed, missing)
    reference = np.asarray(booster.inplace_predict(X, missing=missing), dtype=np.float64)
    library = _core.TreeLibrary(os.fspath(so_path))
    compiled = np.asarray(library.predict(X), dtype=np.float64)
    return _compare(reference, compiled, X, missing, tolerance)


def check_flat_parity(
    booster,
    tables_path: str | os.PathLike,
    base_margin: float,
    X_holdout: Any,
    *,
    tolerance: float = 1e-5,
    seed: int = 0,
    missing_value: float = math.nan,
) -> ParityReport:
    """``check_tree_parity`` for the core's flat predictor (``_core.FlatForest``) over the node
    tables at ``tables_path``: both of its kernels, one row at a time and in blocks of rows, each on
    the same rows; the report is the worse of the two."""
    from libfraud import _core

    _checked_tolerance(tolerance)
    missing = check_missing_value(missing_value)
    X = _parity_rows(booster, X_holdout, seed, missing)
    reference = np.asarray(booster.inplace_predict(X, missing=missing), dtype=np.float64)
    forest = _core.FlatForest(os.fspath(tables_path), float(base_margin))
    reports = [_compare(reference, np.asarray(forest.predict(X, kernel=k), dtype=np.float64), X, missing, tolerance)
               for k in ("row", "block")]
    return max(reports, key=lambda r: r.max_abs_diff)
