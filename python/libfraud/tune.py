"""Bayesian hyper-parameter search (Optuna's TPE) over GbdtParams or GnnParams.

A study lives in an SQLite file, so a rerun with the same storage and study name resumes it: its
budget is then that many *more* trials (or minutes), and the best is over every trial the study
holds. A study remembers what it searches (the suggest function, the fixed values, the direction);
resuming it with different ones is refused rather than mixing incomparable trials.

The objective gets a dict of overrides (``suggest``'s values plus ``fixed``) and returns the value
to maximize (by default), e.g. validation AUPRC. A trial whose objective raises ValueError or
RuntimeError, or returns NaN/inf, is recorded as failed with its message, and the search goes on;
any other exception (a bug) stops it.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["NoValidTrialError", "TuneBudget", "TuneResult", "suggest_gbdt", "suggest_gnn", "tune",
           "write_best"]

TUNING_FILE = "tuning.json"
_FORMAT_VERSION = 1
_FLAGS = "--tune-trials/--tune-minutes"
# Study user attributes: what a resumed study must match.
_ATTR_SUGGEST, _ATTR_FIXED, _ATTR_PARAMS, _ATTR_ERROR = (
    "libfraud.suggest", "libfraud.fixed", "libfraud.params", "libfraud.error")


class NoValidTrialError(ValueError):
    """No trial of the study completed; the message lists the first failures."""


@dataclass(frozen=True)
class TuneBudget:
    """Stop after ``trials`` more trials or once ``minutes`` have passed (no new trial starts after
    that; a running one finishes), whichever comes first. At least one is required."""

    trials: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.trials is None and self.minutes is None:
            raise ValueError(f"a tuning budget needs {_FLAGS} (a number of trials, minutes, or both)")
        t = self.trials
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise ValueError(f"--tune-trials must be an integer >= 1, got {t!r}")
        m = self.minutes
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float))
                              or not math.isfinite(m) or m <= 0):
            raise ValueError(f"--tune-minutes must be a positive number, got {m!r}")


@dataclass(frozen=True)
class TuneResult:
    best_params: dict  # the overrides the best trial's objective got (suggested + fixed)
    best_value: float
    n_trials: int  # in the study, over all runs, whatever their state
    n_complete: int
    n_failed: int
    n_new: int  # trials this call ran
    direction: str
    storage: str  # sqlite:/// URL
    study_name: str
    trials: list[dict]  # number, state, value, params, error, duration_s; by number


# ---- search spaces ---------------------------------------------------------------------------

def suggest_gbdt(trial: Any, *, max_bin: bool = True) -> dict:
    """Overrides for GbdtParams. ``max_bin`` only matters to the hist tree method: a caller using
    another one passes ``functools.partial(suggest_gbdt, max_bin=False)``."""
    params = {
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
        "gamma": trial.suggest_float("gamma", 0.0, 5.0),
    }
    if max_bin:
        params["max_bin"] = trial.suggest_int("max_bin", 128, 4096, log=True)
    return params


def suggest_gnn(trial: Any) -> dict:
    """Overrides for GnnParams."""
    return {
        "hidden": trial.suggest_int("hidden", 16, 128),
        "embedding_dim": trial.suggest_int("embedding_dim", 4, 32),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "balance": trial.suggest_float("balance", 0.0, 1.0),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
    }


class _Pinned:
    """A trial whose suggest_* return the fixed value for a fixed name, without asking Optuna, so
    TPE never models a dimension that cannot matter."""

    def __init__(self, trial: Any, fixed: Mapping[str, Any]) -> None:
        self._trial, self._fixed = trial, fixed

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
            return self._fixed[param] if param in self._fixed else attr(param, *args, **kwargs)
        return suggest


def _describe(suggest: Callable) -> str:
    if isinstance(suggest, functools.partial):
        kw = ", ".join(f"{k}={v!r}" for k, v in sorted(suggest.keywords.items()))
        return f"{_describe(suggest.func)}({kw})"
    return f"{getattr(suggest, '__module__', '?')}.{getattr(suggest, '__qualname__', repr(suggest))}"


# ---- the search ------------------------------------------------------------------------------

class _TrialFailed(Exception):
    """The objective failed in an expected way: Optuna records the trial as failed, goes on."""


_SQLITE_HEADER = b"SQLite format 3\x00"


def _header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(len(_SQLITE_HEADER))


def _storage_url(storage: str | os.PathLike) -> str:
    text = os.fspath(storage).strip()
    if text.lower().startswith("sqlite:///"):
        path = text[len("sqlite:///"):]
    elif "://" in text or text.lower().startswith("sqlite:"):
        raise ValueError(f"tuning storage {text!r}: give a file path or a sqlite:///path.db URL")
    else:
        path = text
    if not path or any(c in path for c in "?#%"):  # would be read as URL syntax by SQLAlchemy
        raise ValueError(f"tuning storage {text!r}: need a file path without '?', '#' or '%'")
    db = Path(path).expanduser().absolute()
    if db.is_dir():
        raise ValueError(f"tuning storage {db} is a directory; give a file such as {db / 'study.db'}")
    if db.is_file() and db.stat().st_size and _header(db) != _SQLITE_HEADER:
        # SQLite would silently turn a short non-database file into a new database
        raise ValueError(f"tuning storage {db} exists and is not an SQLite database")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"tuning storage {db}: cannot create {db.parent}: {e.strerror or e}") from None
    return f"sqlite:///{db}"


def tune(objective: Callable[[dict], float], suggest: Callable[[Any], dict], *, budget: TuneBudget,
         storage: str | os.PathLike, study_name: str = "libfraud", seed: int = 0,
         direction: str = "maximize", progress: bool = False,
         fixed: Mapping[str, Any] | None = None) -> TuneResult:
    """Run ``budget`` more trials of the study ``study_name`` in ``storage`` (a file path or
    ``sqlite:///path.db``; created with its directory; resumed when it exists).

    Each trial calls ``objective(params)`` with ``params = suggest(trial) | fixed``; a name in
    ``fixed`` is never searched. The sampler is TPE seeded with ``seed`` plus the number of trials
    the study already holds, so a fresh study is reproducible and a resumed one does not replay
    its first random draws. Optuna logs only with ``progress`` (which also shows its bar). Raises
    NoValidTrialError when the study holds no completed trial afterwards."""
    if not isinstance(budget, TuneBudget):
        raise TypeError(f"budget must be a TuneBudget, got {type(budget).__name__}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    if not isinstance(study_name, str) or not study_name.strip():
        raise ValueError(f"study_name must be a non-empty string, got {study_name!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    fixed = dict(fixed or {})
    try:
        fixed_json = json.dumps(fixed, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"fixed values must be JSON numbers/strings (they go into {TUNING_FILE}): {e}") from None
    url = _storage_url(storage)

    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if progress else optuna.logging.ERROR)
    try:
        try:
            study = optuna.create_study(storage=url, study_name=study_name, direction=direction,
                                        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=seed))
        except SQLAlchemyError as e:
            raise ValueError(f"tuning storage {url}: cannot open it as an Optuna study database: "
                             f"{e.__class__.__name__}: {e.orig if getattr(e, 'orig', None) else e}") from None
        _check_resumable(study, url, direction, _describe(suggest), fixed_json)
        n_before = len(study.get_trials(deepcopy=False))
        if n_before:  # a fresh sampler with the same seed would repeat the first run's draws
            study.sampler = optuna.samplers.TPESampler(seed=seed + n_before)

        def run_trial(trial: optuna.Trial) -> float:
            params = {**suggest(_Pinned(trial, fixed)), **fixed}
            trial.set_user_attr(_ATTR_PARAMS, params)
            try:
                value = objective(dict(params))
            except (ValueError, RuntimeError) as e:
                message = f"{type(e).__name__}: {e}"
                trial.set_user_attr(_ATTR_ERROR, message)
                raise _TrialFailed(message) from e
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                # not a failed trial but a bug in the objective: stop the search
                raise TypeError(f"the objective returned {type(value).__name__}, not a number")
            if not math.isfinite(value):
                message = f"the objective returned {value!r}"
                trial.set_user_attr(_ATTR_ERROR, message)
                raise _TrialFailed(message)
            return float(value)

        study.optimize(run_trial, n_trials=budget.trials,
                       timeout=None if budget.minutes is None else budget.minutes * 60.0,
                       catch=(_TrialFailed,), show_progress_bar=progress)
        trials = study.get_trials(deepcopy=False)
    finally:
        optuna.logging.set_verbosity(verbosity)

    table = [_row(t) for t in sorted(trials, key=lambda t: t.number)]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [r for r in table if r["state"] == "FAIL"]
    if not complete:
        shown = "; ".join(f"trial {r['number']}: {r['error']}" for r in failed[:3]) or "none ran"
        raise NoValidTrialError(
            f"no tuning trial completed in study {study_name!r} ({len(failed)} failed): {shown}. "
            f"Fix the cause, or give a larger budget with {_FLAGS}")
    best = study.best_trial
    return TuneResult(
        best_params=dict(best.user_attrs.get(_ATTR_PARAMS, best.params)),
        best_value=float(best.value), n_trials=len(trials), n_complete=len(complete),
        n_failed=len(failed), n_new=len(trials) - n_before, direction=direction,
        storage=url, study_name=study_name, trials=table)


def _check_resumable(study: Any, url: str, direction: str, suggest: str, fixed_json: str) -> None:
    where = f"tuning study {study.study_name!r} in {url}"
    have = study.direction.name.lower()
    if have != direction:
        raise ValueError(f"{where} was created to {have}, not {direction}; use another study name")
    attrs = study.user_attrs
    for key, want, what in ((_ATTR_SUGGEST, suggest, "searching"), (_ATTR_FIXED, fixed_json, "fixing")):
        if key not in attrs:
            study.set_user_attr(key, want)
        elif attrs[key] != want:
            raise ValueError(f"{where} was created {what} {attrs[key]}, not {want}; "
                             f"use another study name or storage")


def _row(trial: Any) -> dict:
    done = trial.datetime_complete
    start = trial.datetime_start
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value if trial.state.name == "COMPLETE" else None,
        "params": dict(trial.user_attrs.get(_ATTR_PARAMS, trial.params)),
        "error": trial.user_attrs.get(_ATTR_ERROR),
        "duration_s": (done - start).total_seconds() if done and start else None,
    }


def write_best(result: TuneResult, model_dir: str | os.PathLike) -> Path:
    """Write ``<model_dir>/tuning.json`` (best params and value, the trial table, the storage and
    study name), atomically; returns its path."""
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "format_version": _FORMAT_VERSION,
        "study_name": result.study_name, "storage": result.storage, "direction": result.direction,
        "best_value": result.best_value, "best_params": result.best_params,
        "n_trials": result.n_trials, "n_complete": result.n_complete, "n_failed": result.n_failed,
        "trials": result.trials,
    }
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    path = out / TUNING_FILE
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{TUNING_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
