"""The tree model's hyper-parameter search on the time-ordered validation (tune.py runs Optuna).

Each trial trains on every prequential fold's training period and scores average precision on its
validation period (periods.prequential_folds: the timeline shifted back by the validation length);
the objective is the mean. The final model is fitted afterwards with the best parameters."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .models.gbdt import GbdtParams, train_gbdt
from .periods import Periods, assign, prequential_folds


@dataclass(frozen=True)
class Tuning:
    """The search: a budget (trials and/or minutes), where the study lives, how many folds."""

    trials: int | None = None
    minutes: float | None = None
    storage: str | Path | None = None  # an SQLite file; a rerun with the same file resumes
    study_name: str = "libfraud-gbdt"
    folds: int = 1
    seed: int = 0
    gnn: bool = False  # also search the GNN's knobs (its own study, the same budget), before the trees


def tune_gbdt(X: np.ndarray, y: np.ndarray, known_ms: np.ndarray, time_ms: np.ndarray, periods: Periods,
              names: list[str], params: GbdtParams, tuning: Tuning, *, unknown: str = "legitimate",
              progress: bool = False):
    """(tune.TuneResult, the best GbdtParams) over ``tuning.folds`` time-shifted folds."""
    from .tune import TuneBudget, suggest_gbdt, tune
    if tuning.storage is None:
        raise ValueError("tuning needs a study file (--tune-storage)")
    splits = [assign(p, time_ms, y, known_ms, unknown=unknown) for p in prequential_folds(periods, tuning.folds)]
    rows = max(s.train.size for s in splits)
    exact = params.resolved_tree_method(rows) == "exact"

    def fitted(overrides: dict) -> GbdtParams:
        return dataclasses.replace(params, **overrides)

    def objective(overrides: dict) -> float:
        p = fitted(overrides)
        return float(np.mean([train_gbdt(X[s.train], s.y[s.train], X[s.valid], s.y[s.valid], names, p).valid_auprc
                              for s in splits]))

    result = tune(objective, functools.partial(suggest_gbdt, max_bin=not exact), budget=TuneBudget(trials=tuning.trials, minutes=tuning.minutes),
                  storage=tuning.storage, study_name=tuning.study_name, seed=tuning.seed, progress=progress)
    return result, fitted(result.best_params)


def tune_gnn(arrays: dict, y: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray, params,
             tuning: Tuning, *, progress: bool = False):
    """(tune.TuneResult, the best GnnParams): each trial fits the GNN on the training period and
    scores its average precision on validation (the GNN alone; the trees are searched after)."""
    from .train_gnn import train_gnn
    from .tune import TuneBudget, suggest_gnn, tune
    if tuning.storage is None:
        raise ValueError("tuning needs a study file (--tune-storage)")

    def objective(overrides: dict) -> float:
        return float(train_gnn(arrays, y, train_idx, valid_idx, dataclasses.replace(params, **overrides)).valid_auprc)

    result = tune(objective, suggest_gnn, budget=TuneBudget(trials=tuning.trials, minutes=tuning.minutes),
                  storage=tuning.storage, study_name=_gnn_study(tuning.study_name), seed=tuning.seed,
                  progress=progress)
    return result, dataclasses.replace(params, **result.best_params)


def _gnn_study(name: str) -> str:
    """The GNN's study beside the trees' in the same file (a study holds one search space)."""
    return name.replace("gbdt", "gnn") if "gbdt" in name else f"{name}-gnn"
