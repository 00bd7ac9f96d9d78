"""Training: replay history through the core's features (and, for the graph path, its temporal
sampler), split by time, fit the models, evaluate, and save everything `libfraud compile` needs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import metrics
from .events import EventArrays, LabelArrays
from .features import as_json, replay, rows_of
from .models.gbdt import GbdtParams, TrainedGbdt, train_gbdt
from .splits import time_split

#: The decision threshold flags at most this false-positive rate on validation data.
THRESHOLD_FPR = 0.01
#: Rows of sampled test neighbourhoods kept for the GNN artifacts' parity check at compile time.
GNN_PARITY_ROWS = 2048


@dataclass(frozen=True)
class SamplerSettings:
    """Mirrors the core's SamplerConfig; written into the bundle's manifest (gnn.sampler)."""

    fanout: int = 10
    strategy: str = "most_recent"  # or "uniform"
    seed: int = 0
    # Numeric / categorical fields of the schema appended to the transaction node features.
    graph_fields: tuple[str, ...] = ()

    def to_core(self):
        from . import _core
        return _core.SamplerConfig(fanout=self.fanout, strategy=self.strategy, seed=self.seed)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["graph_fields"] = list(self.graph_fields)
        return d


@dataclass(frozen=True)
class TrainResult:
    model: TrainedGbdt  # the trees that ship: stacked on the GNN's outputs when there is a GNN
    schema: dict  # the declared schema and feature spec, JSON forms (export/SCHEMA.md)
    spec: dict
    metrics: dict  # valid, test (the shipped model); test_gbdt_only, test_gnn_only with a GNN
    threshold: float
    threshold_rule: str
    X_test: np.ndarray  # the shipped trees' input rows of the test period
    y_test: np.ndarray
    test_scores: np.ndarray
    split_rows: dict
    test_start_ms: int
    gnn: Any = None  # train_gnn.TrainedGnn
    sampler: SamplerSettings | None = None
    gnn_parity_arrays: dict | None = None  # sampled test neighbourhoods, for the artifacts' parity
    gbdt_only_test_scores: np.ndarray | None = None  # the trees-alone baseline, with a GNN

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save(out / "model.ubj")
        np.save(out / "holdout_X.npy", self.X_test)
        np.save(out / "holdout_y.npy", self.y_test)
        info = {
            "schema": self.schema, "spec": self.spec,
            "feature_order": list(self.model.feature_names),
            "threshold": self.threshold, "threshold_rule": self.threshold_rule,
            "metrics": self.metrics, "split_rows": self.split_rows,
            "test_start_ms": self.test_start_ms,
        }
        if self.gnn is not None:
            import torch
            torch.save({"state_dict": self.gnn.model.state_dict(), "params": asdict(self.gnn.params)},
                       out / "gnn.pt")
            np.savez(out / "gnn_parity_arrays.npz", **self.gnn_parity_arrays)
            info["sampler"] = self.sampler.to_dict()
            info["gnn"] = {"best_epoch": self.gnn.best_epoch, "epochs_run": self.gnn.epochs_run,
                           "valid_auprc": self.gnn.valid_auprc}
        (out / "training.json").write_text(json.dumps(info, indent=2))
        return out


def _labels(events: EventArrays, labels: LabelArrays | None) -> np.ndarray:
    """Each event's label: 1 fraud, 0 legitimate, -1 unknown (replayed for history, not trained on)."""
    if labels is None or len(labels) == 0:
        raise ValueError("training needs labels: declare [label] in the schema (1 fraud, 0 legitimate)")
    y = np.full(len(events), -1, dtype=np.int8)
    rows = rows_of(events.event_id, labels.event_id)
    y[rows[rows >= 0]] = labels.label[rows >= 0]
    return y


def _threshold(y_valid: np.ndarray, valid_scores: np.ndarray) -> float:
    # +inf means "flag nothing"; probabilities never exceed 1, and JSON has no infinity.
    return float(min(metrics.threshold_at_fpr(y_valid, valid_scores, THRESHOLD_FPR), 1.0))


THRESHOLD_RULE = f"highest recall at <= {THRESHOLD_FPR:.0%} false-positive rate on validation"


def _labelled_split(time_ms: np.ndarray, y: np.ndarray, fractions) -> tuple:
    """time_split over the labelled events only (indices into all events)."""
    known = np.flatnonzero(y >= 0)
    parts = time_split(time_ms[known], fractions)
    return tuple(known[p] for p in parts)


def train(transactions: pd.DataFrame, *, schema: Any = None, spec: Any = None,
          params: GbdtParams = GbdtParams(), fractions=(0.7, 0.15, 0.15),
          gnn_params: Any = None, sampler: SamplerSettings | None = None,
          progress: bool = False) -> TrainResult:
    """Tree model on the declared features (the payments preset when no schema is given); with
    ``gnn_params`` (train_gnn.GnnParams) also a GNN on the sampled neighbourhoods whose outputs
    feed the shipped trees (see train_gnn: stacking). ``transactions`` in the schema's columns."""
    from .data.declared import Schema, load_events, load_preset
    if isinstance(schema, dict):
        schema = Schema.from_json(schema)
    if schema is None:
        schema, preset_spec = load_preset("payments", transactions.columns)
        spec = spec if spec is not None else preset_spec
    if spec is None:
        raise ValueError("a schema needs a feature spec (see export/SCHEMA.md)")
    events, label_arrays = load_events(transactions, schema)
    y = _labels(events, label_arrays)
    replayed = replay(events, label_arrays, schema, spec, progress=progress)  # point in time
    features = replayed.frame()
    X = replayed.features
    splits = _labelled_split(events.time_ms, y, fractions)
    train_idx, valid_idx, test_idx = splits
    test_start_ms = int(events.time_ms[test_idx].min())
    schema_json, spec_json = as_json(schema), as_json(spec)
    if gnn_params is None:
        model = train_gbdt(X[train_idx], y[train_idx], X[valid_idx], y[valid_idx],
                           list(features.columns), params, progress=progress)
        valid_scores = model.predict_proba(X[valid_idx])
        test_scores = model.predict_proba(X[test_idx])
        return TrainResult(
            model=model, schema=schema_json, spec=spec_json,
            metrics={"valid": metrics.summary(y[valid_idx], valid_scores),
                     "test": metrics.summary(y[test_idx], test_scores)},
            threshold=_threshold(y[valid_idx], valid_scores), threshold_rule=THRESHOLD_RULE,
            X_test=X[test_idx], y_test=y[test_idx], test_scores=test_scores,
            split_rows={"train": len(train_idx), "valid": len(valid_idx), "test": len(test_idx)},
            test_start_ms=test_start_ms)

    from .train_gnn import gnn_outputs, sample_neighbourhoods, train_stacked
    sampler = sampler or SamplerSettings()
    arrays = sample_neighbourhoods(events, replayed.store, sampler, sampler.graph_fields)
    stacked = train_stacked(features, arrays, y, splits, gnn_params=gnn_params, gbdt_params=params,
                            progress=progress)
    logits, embeddings = gnn_outputs(stacked.gnn.model, arrays)
    XS = np.concatenate([X, logits[:, None], embeddings], axis=1)
    valid_scores = stacked.stacked.predict_proba(XS[valid_idx])
    test_scores = stacked.stacked.predict_proba(XS[test_idx])
    baseline_scores = stacked.gbdt_only.predict_proba(X[test_idx])
    # Spread over the whole test period, so the rows hold some fraud for the FP16 score effect.
    picked = np.unique(np.linspace(0, len(test_idx) - 1, min(GNN_PARITY_ROWS, len(test_idx))).astype(np.int64))
    parity_rows = test_idx[picked]
    from .models.gnn import INPUT_NAMES
    return TrainResult(
        model=stacked.stacked, schema=schema_json, spec=spec_json,
        metrics={"valid": metrics.summary(y[valid_idx], valid_scores),
                 "test": metrics.summary(y[test_idx], test_scores),
                 "test_gbdt_only": stacked.metrics["gbdt_only"],
                 "test_gnn_only": stacked.metrics["gnn_only"],
                 "by_fraud_type": _auprc_by_type(transactions, test_idx, test_scores, baseline_scores)},
        threshold=_threshold(y[valid_idx], valid_scores), threshold_rule=THRESHOLD_RULE,
        X_test=XS[test_idx], y_test=y[test_idx], test_scores=test_scores,
        split_rows=stacked.split_rows, test_start_ms=test_start_ms,
        gnn=stacked.gnn, sampler=sampler,
        gnn_parity_arrays={**{k: arrays[k][parity_rows] for k in INPUT_NAMES}, "holdout_rows": picked},
        gbdt_only_test_scores=baseline_scores)


def _auprc_by_type(transactions: pd.DataFrame, test_idx: np.ndarray, stacked_scores: np.ndarray,
                    gbdt_scores: np.ndarray) -> dict:
    """Per fraud typology (synthetic data only): AUPRC of each model on that type against all
    legitimate test rows, so a typology the graph helps with shows up."""
    if "fraud_type" not in transactions.columns:
        return {}
    kinds = transactions["fraud_type"].to_numpy()[test_idx].astype(str)
    y = transactions["label"].to_numpy()[test_idx]
    out = {}
    for kind in sorted(set(kinds[y == 1])):
        keep = (y == 0) | (kinds == kind)
        yk = (kinds[keep] == kind).astype(np.int8)
        out[kind] = {"positives": int(yk.sum()),
                     "auprc_gbdt_only": metrics.auprc(yk, gbdt_scores[keep]),
                     "auprc_stacked": metrics.auprc(yk, stacked_scores[keep])}
    return out


def load_trained(model_dir: str | Path) -> tuple[TrainedGbdt, dict, np.ndarray]:
    """(model, training.json contents, held-out feature rows) from a `libfraud train` output."""
    model_dir = Path(model_dir)
    if not (model_dir / "training.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a `libfraud train` output (no training.json)")
    info = json.loads((model_dir / "training.json").read_text())
    return (TrainedGbdt.load(model_dir / "model.ubj"), info,
            np.load(model_dir / "holdout_X.npy"))


def load_trained_gnn(model_dir: str | Path):
    """(FraudGnn in eval mode, parity arrays) saved by TrainResult.save for a GNN model."""
    import torch

    from .models.gnn import FraudGnn
    saved = torch.load(Path(model_dir) / "gnn.pt", weights_only=True)
    p, state = saved["params"], saved["state_dict"]
    # E and Ft from the weights' shapes (ent_shift [E + 1], target_shift [Ft]).
    model = FraudGnn(hidden=p["hidden"], embedding_dim=p["embedding_dim"], dropout=p["dropout"],
                     num_entity_types=len(state["ent_shift"]) - 1, txn_features=len(state["target_shift"]))
    model.load_state_dict(state)
    model.eval()
    with np.load(Path(model_dir) / "gnn_parity_arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return model, arrays  # INPUT_NAMES arrays, and holdout_rows: their rows in holdout_X / holdout_y
