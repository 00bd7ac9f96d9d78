"""libfraud.tune: Optuna TPE studies over GbdtParams/GnnParams, resumable from SQLite."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time

import numpy as np
import optuna
import pytest

from libfraud.models.gbdt import GbdtParams, train_gbdt
from libfraud.tune import (NoValidTrialError, TuneBudget, suggest_gbdt, suggest_gnn, tune,
                           write_best)

GBDT_FIELDS = {f.name for f in dataclasses.fields(GbdtParams)}


@pytest.fixture(scope="module")
def tiny_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.8, size=600) > 1.2).astype(np.int8)
    return X[:400], y[:400], X[400:], y[400:]


def gbdt_objective(problem):
    Xt, yt, Xv, yv = problem

    def objective(overrides: dict) -> float:
        # Only the fields GbdtParams has: reg_lambda/reg_alpha/gamma/max_bin are being added to it.
        known = {k: v for k, v in overrides.items() if k in GBDT_FIELDS}
        params = GbdtParams(n_estimators=20, early_stopping_rounds=5, nthread=1, **known)
        return train_gbdt(Xt, yt, Xv, yv, [f"f{i}" for i in range(5)], params).valid_auprc
    return objective


def x_only(trial) -> dict:
    return {"x": trial.suggest_float("x", 0.0, 1.0)}


def test_xgboost_study_writes_tuning_json_and_resumes(tmp_path, tiny_problem):
    storage = tmp_path / "studies" / "study.db"  # parent created
    objective = gbdt_objective(tiny_problem)
    first = tune(objective, suggest_gbdt, budget=TuneBudget(trials=3), storage=storage, seed=1)
    assert (first.n_trials, first.n_complete, first.n_failed, first.n_new) == (3, 3, 0, 3)
    assert set(first.best_params) == {"max_depth", "learning_rate", "subsample", "colsample_bytree",
                                      "min_child_weight", "reg_lambda", "reg_alpha", "gamma", "max_bin"}
    values = [t["value"] for t in first.trials]
    assert first.best_value == max(values) and 0.0 < first.best_value <= 1.0
    assert first.storage == f"sqlite:///{storage}"

    path = write_best(first, tmp_path / "model")
    doc = json.loads(path.read_text())
    assert path.name == "tuning.json" and doc["best_params"] == first.best_params
    assert doc["best_value"] == first.best_value and doc["study_name"] == "libfraud"
    assert [t["number"] for t in doc["trials"]] == [0, 1, 2] and doc["storage"] == first.storage
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["tuning.json"]  # no temp left

    again = tune(objective, suggest_gbdt, budget=TuneBudget(trials=3), storage=storage, seed=1)
    assert (again.n_trials, again.n_complete, again.n_new) == (6, 6, 3)
    assert again.trials[:3] == first.trials
    assert again.best_value == max(t["value"] for t in again.trials) >= first.best_value
    # The resumed run's sampler is re-seeded, so it does not replay the first run's draws.
    firsts = [t["params"] for t in again.trials[:3]]
    assert all(t["params"] not in firsts for t in again.trials[3:])


def test_same_seed_gives_the_same_first_params(tmp_path):
    def first_params(name: str, seed: int) -> dict:
        r = tune(lambda p: 0.5, suggest_gbdt, budget=TuneBudget(trials=2), storage=tmp_path / name, seed=seed)
        return [t["params"] for t in r.trials]
    a, b, c = first_params("a.db", 7), first_params("b.db", 7), first_params("c.db", 8)
    assert a == b and a != c


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    outcomes = iter([ValueError("bad fold 1"), math.nan, 0.25, RuntimeError("oom")])

    def objective(params):
        out = next(outcomes)
        if isinstance(out, Exception):
            raise out
        return out
    r = tune(objective, x_only, budget=TuneBudget(trials=4), storage=tmp_path / "s.db")
    assert (r.n_trials, r.n_complete, r.n_failed) == (4, 1, 3)
    assert [t["error"] for t in r.trials] == ["ValueError: bad fold 1", "the objective returned nan",
                                              None, "RuntimeError: oom"]
    assert r.best_value == 0.25 and r.best_params == r.trials[2]["params"]


def test_no_completed_trial_raises_with_the_messages_and_flags(tmp_path):
    def objective(params):
        raise ValueError("validation split has no fraud")
    with pytest.raises(NoValidTrialError) as err:
        tune(objective, x_only, budget=TuneBudget(trials=2), storage=tmp_path / "s.db")
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert "trial 0: ValueError: validation split has no fraud" in message
    assert "--tune-trials/--tune-minutes" in message


def test_a_bug_in_the_objective_stops_the_search(tmp_path):
    calls = []

    def objective(params):
        calls.append(params)
        raise KeyError("typo")
    with pytest.raises(KeyError):
        tune(objective, x_only, budget=TuneBudget(trials=5), storage=tmp_path / "s.db")
    assert len(calls) == 1


def test_minutes_budget_stops_starting_trials(tmp_path):
    def objective(params):
        time.sleep(0.2)
        return params["x"]
    start = time.monotonic()
    r = tune(objective, x_only, budget=TuneBudget(minutes=0.5 / 60), storage=tmp_path / "s.db")
    elapsed = time.monotonic() - start
    assert 1 <= r.n_trials <= 4 and elapsed < 3.0


def test_fixed_values_are_not_searched(tmp_path):
    seen = []

    def objective(params):
        seen.append(params)
        return params["lr"]
    r = tune(objective, suggest_gnn, budget=TuneBudget(trials=3), storage=tmp_path / "s.db",
             fixed={"hidden": 64, "epochs": 5})
    assert all(p["hidden"] == 64 and p["epochs"] == 5 for p in seen)
    assert r.best_params["hidden"] == 64
    study = optuna.load_study(study_name="libfraud", storage=r.storage)
    assert all("hidden" not in t.params and "lr" in t.params for t in study.trials)


def test_max_bin_can_be_left_out(tmp_path):
    r = tune(lambda p: 1.0, functools.partial(suggest_gbdt, max_bin=False), budget=TuneBudget(trials=1),
             storage=tmp_path / "s.db")
    assert "max_bin" not in r.best_params and "max_depth" in r.best_params


def test_resuming_with_another_search_is_refused(tmp_path):
    storage = tmp_path / "s.db"
    tune(lambda p: 1.0, x_only, budget=TuneBudget(trials=1), storage=storage)
    with pytest.raises(ValueError, match="created searching test_tune.x_only, not libfraud.tune.suggest_gnn"):
        tune(lambda p: 1.0, suggest_gnn, budget=TuneBudget(trials=1), storage=storage)
    with pytest.raises(ValueError, match="created to maximize, not minimize"):
        tune(lambda p: 1.0, x_only, budget=TuneBudget(trials=1), storage=storage, direction="minimize")
    with pytest.raises(ValueError, match="fixing"):
        tune(lambda p: 1.0, x_only, budget=TuneBudget(trials=1), storage=storage, fixed={"y": 1})
    other = tune(lambda p: 1.0, suggest_gnn, budget=TuneBudget(trials=1), storage=storage, study_name="gnn")
    assert other.n_trials == 1


@pytest.mark.parametrize("kwargs, match", [
    ({}, "--tune-trials/--tune-minutes"),
    ({"trials": 0}, "--tune-trials must be an integer >= 1"),
    ({"trials": True}, "--tune-trials"),
    ({"trials": 2.5}, "--tune-trials"),
    ({"minutes": 0}, "--tune-minutes must be a positive number"),
    ({"minutes": float("nan")}, "--tune-minutes"),
])
def test_budget_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TuneBudget(**kwargs)


def test_bad_storage_is_refused_before_anything_runs(tmp_path):
    def objective(params):
        raise AssertionError("must not run")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for storage, match in [("postgresql://h/db", "file path or a sqlite:///"),
                           (tmp_path, "is a directory"),
                           (blocker / "s.db", "cannot create"),
                           (blocker, "exists and is not an SQLite database")]:
        with pytest.raises(ValueError, match=match):
            tune(objective, x_only, budget=TuneBudget(trials=1), storage=storage)
    assert blocker.read_text() == "x"


def test_optuna_logs_only_with_progress_and_its_level_is_restored(tmp_path):
    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    def objective(params):
        if params["x"] < 0.6:  # seed 0 draws 0.549 first
            raise ValueError("noisy failure")
        return 0.5
    before = optuna.logging.get_verbosity()
    records = Records()
    logger = logging.getLogger("optuna")  # Optuna's loggers do not propagate to the root
    logger.addHandler(records)
    try:
        r = tune(objective, x_only, budget=TuneBudget(trials=2), storage=tmp_path / "s.db")
        assert r.n_failed == 1 and records.messages == []
        assert optuna.logging.get_verbosity() == before
        tune(objective, x_only, budget=TuneBudget(trials=1), storage=tmp_path / "s.db", progress=True)
        assert any("Trial 2" in m for m in records.messages)
        assert optuna.logging.get_verbosity() == before
    finally:
        logger.removeHandler(records)
