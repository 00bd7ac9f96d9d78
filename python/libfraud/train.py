"""Training: replay history through the core's features, split by time, fit the trees, evaluate,
and save everything `libfraud compile` needs (model, feature configuration, threshold, held-out rows)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .features import FeatureConfig, as_matrix, replay_features
from .models.gbdt import GbdtParams, TrainedGbdt, train_gbdt
from .splits import time_split

#: The decision threshold flags at most this false-positive rate on validation data.
THRESHOLD_FPR = 0.01


@dataclass(frozen=True)
class TrainResult:
    model: TrainedGbdt
    feature_config: FeatureConfig
    metrics: dict  # {"valid": summary, "test": summary}
    threshold: float
    threshold_rule: str
    X_test: np.ndarray
    y_test: np.ndarray
    test_scores: np.ndarray
    split_rows: dict  # {"train": n, "valid": n, "test": n}
    test_start_ms: int

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save(out / "model.ubj")
        np.save(out / "holdout_X.npy", self.X_test)
        np.save(out / "holdout_y.npy", self.y_test)
        (out / "training.json").write_text(json.dumps({
            "feature_config": self.feature_config.to_dict(),
            "feature_order": list(self.model.feature_names),
            "threshold": self.threshold, "threshold_rule": self.threshold_rule,
            "metrics": self.metrics, "split_rows": self.split_rows,
            "test_start_ms": self.test_start_ms,
        }, indent=2))
        return out


def _labels(transactions: pd.DataFrame) -> np.ndarray:
    if "label" not in transactions.columns:
        raise ValueError("training needs a 'label' column (1 fraud, 0 legitimate)")
    return transactions["label"].to_numpy(dtype=np.int8)


def train(transactions: pd.DataFrame, *, feature_config: FeatureConfig = FeatureConfig(),
          params: GbdtParams = GbdtParams(), fractions=(0.7, 0.15, 0.15),
          progress: bool = False) -> TrainResult:
    y = _labels(transactions)
    features = replay_features(transactions, feature_config)  # whole history, point in time
    X = as_matrix(features)
    train_idx, valid_idx, test_idx = time_split(transactions["timestamp_ms"].to_numpy(), fractions)
    model = train_gbdt(X[train_idx], y[train_idx], X[valid_idx], y[valid_idx],
                       list(features.columns), params, progress=progress)
    valid_scores = model.predict_proba(X[valid_idx])
    test_scores = model.predict_proba(X[test_idx])
    # +inf means "flag nothing"; probabilities never exceed 1, and JSON has no infinity.
    threshold = min(metrics.threshold_at_fpr(y[valid_idx], valid_scores, THRESHOLD_FPR), 1.0)
    return TrainResult(
        model=model, feature_config=feature_config,
        metrics={"valid": metrics.summary(y[valid_idx], valid_scores),
                 "test": metrics.summary(y[test_idx], test_scores)},
        threshold=float(threshold),
        threshold_rule=f"highest recall at <= {THRESHOLD_FPR:.0%} false-positive rate on validation",
        X_test=X[test_idx], y_test=y[test_idx], test_scores=test_scores,
        split_rows={"train": len(train_idx), "valid": len(valid_idx), "test": len(test_idx)},
        test_start_ms=int(transactions["timestamp_ms"].to_numpy()[test_idx].min()),
    )


def load_trained(model_dir: str | Path) -> tuple[TrainedGbdt, dict, np.ndarray]:
    """(model, training.json contents, held-out feature rows) from a `libfraud train` output."""
    model_dir = Path(model_dir)
    if not (model_dir / "training.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a `libfraud train` output (no training.json)")
    info = json.loads((model_dir / "training.json").read_text())
    return (TrainedGbdt.load(model_dir / "model.ubj"), info,
            np.load(model_dir / "holdout_X.npy"))
