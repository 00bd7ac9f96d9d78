"""Gradient-boosted trees (XGBoost) for fraud scoring.

The booster this module returns is the one the exporter compiles: it is trimmed to the best
early-stopping iteration, because Treelite/TL2cgen and a raw Booster use every tree in the model while
sklearn-style predictors honour ``best_iteration`` (untrimmed "identical" models differed by 0.33 in
probability). Its ``feature_names`` fix the feature order the compiled model expects.

Missing values are NaN. +/-inf is refused, in training and in prediction alike: XGBoost's DMatrix
rejects it while inplace_predict and the compiled predictors accept it, so allowing it would make
training and serving disagree.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xgboost as xgb

from libfraud import metrics

__all__ = ["GbdtParams", "ModelFileError", "TrainedGbdt", "read_booster", "train_gbdt"]

_META_FORMAT_VERSION = 1
TREE_METHODS = ("auto", "exact", "hist", "approx")
#: "auto" uses exact splits up to this many training rows (bench/tree_method.py measures the cost).
EXACT_MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class GbdtParams:
    """Training configuration; every field is range-checked on construction."""

    n_estimators: int = 500  # upper bound on boosting rounds; early stopping usually ends sooner
    max_depth: int = 6
    learning_rate: float = 0.1
    early_stopping_rounds: int = 30  # rounds without a validation AUPRC gain before stopping
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0  # L2 on leaf weights
    reg_alpha: float = 0.0  # L1 on leaf weights
    gamma: float = 0.0  # minimum loss reduction to split
    # "auto": exact splits up to EXACT_MAX_ROWS training rows, else histograms of max_bin bins.
    # Histograms blur sharp rules on heavy-tailed amounts (256 bins lost a rule at amount > 220).
    tree_method: str = "auto"
    max_bin: int = 1024
    # None: negatives / positives of the training rows (the probabilities are calibrated after).
    scale_pos_weight: float | None = None
    seed: int = 0
    nthread: int = 2

    def __post_init__(self) -> None:
        def integer(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"GbdtParams.{name} must be an integer >= {lo}, got {v!r}")

        def real(name: str, lo: float, hi: float, lo_open: bool) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
            ok = ok and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
            if not ok:
                rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
                raise ValueError(f"GbdtParams.{name} must be a number in {rng}, got {v!r}")

        integer("n_estimators", 1)
        integer("max_depth", 1)
        integer("early_stopping_rounds", 1)
        integer("seed", 0)
        integer("nthread", 1)
        integer("max_bin", 2)
        real("learning_rate", 0.0, 1.0, lo_open=True)
        real("subsample", 0.0, 1.0, lo_open=True)
        real("colsample_bytree", 0.0, 1.0, lo_open=True)
        real("min_child_weight", 0.0, math.inf, lo_open=False)
        real("reg_lambda", 0.0, math.inf, lo_open=False)
        real("reg_alpha", 0.0, math.inf, lo_open=False)
        real("gamma", 0.0, math.inf, lo_open=False)
        if self.scale_pos_weight is not None:
            real("scale_pos_weight", 0.0, math.inf, lo_open=True)
        if self.tree_method not in TREE_METHODS:
            raise ValueError(f"GbdtParams.tree_method must be one of {', '.join(TREE_METHODS)}, "
                             f"got {self.tree_method!r}")

    @classmethod
    def from_mapping(cls, values: dict, source: str = "xgboost parameters") -> "GbdtParams":
        """From a config table or ``--xgb key=value`` pairs (a few XGBoost spellings accepted)."""
        from libfraud.config_values import dataclass_from_mapping
        return dataclass_from_mapping(cls, values, source, {
            "trees": "n_estimators", "depth": "max_depth", "eta": "learning_rate", "lambda": "reg_lambda",
            "alpha": "reg_alpha", "threads": "nthread"})

    def resolved_tree_method(self, train_rows: int) -> str:
        if self.tree_method != "auto":
            return self.tree_method
        return "exact" if train_rows <= EXACT_MAX_ROWS else "hist"


def _check_feature_names(feature_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(feature_names, str):
        raise ValueError("feature_names must be a sequence of names, not one string")
    names = tuple(feature_names)
    if not names:
        raise ValueError("feature_names is empty")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"every feature name must be a non-empty string, got {name!r}")
        if any(c in name for c in "[]<,"):
            raise ValueError(f"feature name {name!r} contains one of '[', ']', '<', ',' (XGBoost refuses them)")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate feature name {name!r}")
        seen.add(name)
    return names


def _as_matrix(X: Any, feature_names: tuple[str, ...], what: str = "X") -> np.ndarray:
    """Return X as a C-contiguous float32 matrix in ``feature_names`` order, or raise ValueError."""
    columns = getattr(X, "columns", None)
    if columns is not None:  # a DataFrame: its column order must be the model's feature order
        cols = [str(c) for c in columns]
        if len(cols) != len(feature_names):
            raise ValueError(f"{what} has {len(cols)} columns, the model expects {len(feature_names)}")
        for i, (got, want) in enumerate(zip(cols, feature_names)):
            if got != want:
                raise ValueError(
                    f"{what} column {i} is {got!r} but the model expects {want!r} there "
                    f"(columns must be in feature_names order)"
                )
        X = X.to_numpy(dtype=np.float32, na_value=np.nan)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[1] != len(feature_names):
        raise ValueError(f"{what} has {X.shape[1]} columns, the model expects {len(feature_names)}")
    if np.isinf(X).any():
        raise ValueError(f"{what} contains +/-inf; use NaN for missing values")
    return X


def _as_labels(y: Any, n_rows: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ValueError(f"{what} must be 1-D with {n_rows} labels, got shape {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{what} must hold 0/1 labels")
    y = y.astype(np.float32)
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError(f"{what} has only one class; need both fraud (1) and legitimate (0) rows")
    return y


class ModelFileError(ValueError):
    """A model file XGBoost cannot read: the message names the file and gives xgboost's reason."""


# Reads the model file in a child process and writes it back as XGBoost's own UBJSON: xgboost's
# parser trusts the bytes, and truncated UBJSON files made it allocate gigabytes, throw, or
# segfault here. The parent then only ever parses bytes xgboost itself wrote.
_READ_CHILD = """
import resource, sys
limit = int(sys.argv[3])  # address space: a corrupt length field asks for gigabytes at once
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.modules["sklearn"] = None  # xgboost then skips importing it (1 s of the child's start)
import xgboost
try:
    booster = xgboost.Booster(model_file=sys.argv[1])
except UnicodeDecodeError:  # xgboost decoding its own message, which quoted the garbage
    sys.exit("\\nREASON: xgboost's error message is not UTF-8 (the file is corrupt)")
except Exception as e:  # its first line: the rest is a C++ stack trace
    sys.exit("\\nREASON: " + (str(e).strip().splitlines() or [type(e).__name__])[0])
with open(sys.argv[2], "wb") as f:
    f.write(booster.save_raw("ubj"))
"""
_READ_MEMORY_BASE = 4 << 30
_READ_MEMORY_PER_BYTE = 64
_XGBOOST_LOCATION = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # "[18:06:25] src/x.cc:409: "


def read_booster(path: str | os.PathLike) -> xgb.Booster:
    """The XGBoost model in the file ``path`` (JSON or UBJSON), read in a child process first.
    ModelFileError "cannot read XGBoost model PATH: <xgboost's reason, first line>" if XGBoost
    cannot read it or crashes reading it; FileNotFoundError if there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"XGBoost model {path}: no such file")
    limit = _READ_MEMORY_BASE + _READ_MEMORY_PER_BYTE * path.stat().st_size
    with tempfile.TemporaryDirectory(prefix="libfraud-model-") as tmp:
        copy = Path(tmp) / "model.ubj"
        proc = subprocess.run([sys.executable, "-c", _READ_CHILD, str(path), str(copy), str(limit)],
                              capture_output=True, text=True, errors="replace", check=False)
        if proc.returncode == 0:
            return xgb.Booster(model_file=bytearray(copy.read_bytes()))
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = "unknown signal"
        reason = f"xgboost crashed reading it (signal {-proc.returncode}, {name})"
    else:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        reasons = [line[len("REASON: "):] for line in lines if line.startswith("REASON: ")]
        reason = (reasons or lines or [f"exit code {proc.returncode}"])[-1].strip()
        reason = _XGBOOST_LOCATION.sub("", reason)
        if reason == "std::bad_alloc":
            reason += " (a length in the file asks for more memory than any model of its size needs)"
    raise ModelFileError(f"cannot read XGBoost model {path}: {reason}")


class _TqdmProgress(xgb.callback.TrainingCallback):
    """A tqdm bar over boosting rounds, showing the latest validation AUPRC."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self._total = total
        self._bar: Any = None

    def before_training(self, model: xgb.Booster) -> xgb.Booster:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self._total, desc="gbdt", unit="round")
        return model

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        history = evals_log.get("valid", {}).get("aucpr", [])
        if history:
            self._bar.set_postfix(valid_aucpr=f"{float(history[-1]):.4f}", refresh=False)
        self._bar.update(1)
        return False

    def after_training(self, model: xgb.Booster) -> xgb.Booster:
        if self._bar is not None:
            self._bar.close()
        return model


@dataclass(frozen=True)
class TrainedGbdt:
    """A trained, trimmed booster and what is needed to use it again.

    ``booster`` holds exactly ``n_trees == best_iteration + 1`` trees; ``valid_auprc`` is the average
    precision (``metrics.auprc``) of that trimmed model on the validation set.
    """

    booster: xgb.Booster
    feature_names: tuple[str, ...]
    params: GbdtParams
    scale_pos_weight: float
    best_iteration: int
    n_trees: int
    valid_auprc: float

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of fraud per row, float32 of shape (rows,). NaN means missing."""
        X = _as_matrix(X, self.feature_names)
        return np.asarray(self.booster.inplace_predict(X, missing=np.nan), dtype=np.float32)

    def save(self, path: str | Path) -> None:
        """Write the booster as UBJSON to ``path`` (must end in .ubj) and ``<path>.meta.json``."""
        path = Path(path)
        if path.suffix != ".ubj":
            raise ValueError(f"model path must end in .ubj (XGBoost picks the format by suffix), got {path}")
        self.booster.save_model(str(path))
        meta = {
            "format_version": _META_FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "params": dataclasses.asdict(self.params),
            "scale_pos_weight": self.scale_pos_weight,
            "best_iteration": self.best_iteration,
            "n_trees": self.n_trees,
            "valid_auprc": self.valid_auprc,
            "xgboost_version": xgb.__version__,
        }
        Path(f"{path}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainedGbdt":
        """Read a model written by ``save``; checks the booster against its sidecar."""
        path = Path(path)
        meta_path = Path(f"{path}.meta.json")
        if not meta_path.is_file():
            raise FileNotFoundError(f"missing sidecar {meta_path} for model {path}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFileError(f"cannot read {meta_path}: {e}") from None
        if not isinstance(meta, dict):
            raise ModelFileError(f"cannot read {meta_path}: not a JSON object")
        if meta.get("format_version") != _META_FORMAT_VERSION:
            raise ValueError(
                f"{meta_path}: format_version {meta.get('format_version')!r}, expected {_META_FORMAT_VERSION}"
            )
        params = GbdtParams(**meta["params"])
        booster = read_booster(path)
        booster.set_param({"nthread": params.nthread})  # runtime setting, not stored in the model
        names = tuple(meta["feature_names"])
        if tuple(booster.feature_names or ()) != names:
            raise ValueError(f"{path}: booster feature names {booster.feature_names} differ from {meta_path}")
        n_trees = booster.num_boosted_rounds()
        if n_trees != meta["n_trees"] or n_trees != meta["best_iteration"] + 1:
            raise ValueError(
                f"{path}: {n_trees} trees, sidecar says n_trees={meta['n_trees']}, "
                f"best_iteration={meta['best_iteration']}"
            )
        return cls(
            booster=booster,
            feature_names=names,
            params=params,
            scale_pos_weight=float(meta["scale_pos_weight"]),
            best_iteration=int(meta["best_iteration"]),
            n_trees=n_trees,
            valid_auprc=float(meta["valid_auprc"]),
        )


def train_gbdt(
    X_train: Any,
    y_train: Any,
    X_valid: Any,
    y_valid: Any,
    feature_names: Sequence[str],
    params: GbdtParams = GbdtParams(),
    progress: bool = False,
) -> TrainedGbdt:
    """Train a binary fraud classifier with early stopping on validation AUPRC, then trim it.

    ``scale_pos_weight`` is negatives/positives of the training set. X is a float32-convertible 2-D
    array or a DataFrame whose columns are exactly ``feature_names``, in order.
    """
    if not isinstance(params, GbdtParams):
        raise TypeError(f"params must be a GbdtParams, got {type(params).__name__}")
    names = _check_feature_names(feature_names)
    Xt = _as_matrix(X_train, names, "X_train")
    Xv = _as_matrix(X_valid, names, "X_valid")
    yt = _as_labels(y_train, Xt.shape[0], "y_train")
    yv = _as_labels(y_valid, Xv.shape[0], "y_valid")

    positives = float(yt.sum())
    scale_pos_weight = (params.scale_pos_weight if params.scale_pos_weight is not None
                        else (yt.size - positives) / positives)
    tree_method = params.resolved_tree_method(Xt.shape[0])
    booster_params = {
        "objective": "binary:logistic",
        "tree_method": tree_method,
        **({"max_bin": params.max_bin} if tree_method != "exact" else {}),
        "reg_lambda": params.reg_lambda,
        "reg_alpha": params.reg_alpha,
        "gamma": params.gamma,
        "eval_metric": "aucpr",
        "scale_pos_weight": scale_pos_weight,
        "max_depth": params.max_depth,
        "learning_rate": params.learning_rate,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "min_child_weight": params.min_child_weight,
        "seed": params.seed,
        "nthread": params.nthread,
    }
    dtrain = xgb.DMatrix(Xt, label=yt, missing=np.nan, feature_names=list(names), nthread=params.nthread)
    dvalid = xgb.DMatrix(Xv, label=yv, missing=np.nan, feature_names=list(names), nthread=params.nthread)
    callbacks: list[xgb.callback.TrainingCallback] = [
        xgb.callback.EarlyStopping(
            rounds=params.early_stopping_rounds,
            metric_name="aucpr",
            data_name="valid",
            maximize=True,
            save_best=False,  # trimmed explicitly below, where it is visible
        )
    ]
    if progress:
        callbacks.append(_TqdmProgress(params.n_estimators))
    full = xgb.train(
        booster_params,
        dtrain,
        num_boost_round=params.n_estimators,
        evals=[(dvalid, "valid")],
        callbacks=callbacks,
        verbose_eval=False,
    )
    best_iteration = int(full.best_iteration)
    booster = full[: best_iteration + 1]
    booster.feature_names = list(names)
    booster.set_param({"nthread": params.nthread})
    n_trees = booster.num_boosted_rounds()
    if n_trees != best_iteration + 1:  # slicing semantics changed upstream: refuse to hand it on
        raise RuntimeError(f"trimmed booster has {n_trees} rounds, expected {best_iteration + 1}")

    model = TrainedGbdt(
        booster=booster,
        feature_names=names,
        params=params,
        scale_pos_weight=float(scale_pos_weight),
        best_iteration=best_iteration,
        n_trees=n_trees,
        valid_auprc=0.0,
    )
    valid_auprc = metrics.auprc(yv.astype(np.int8), model.predict_proba(Xv))
    return dataclasses.replace(model, valid_auprc=valid_auprc)
