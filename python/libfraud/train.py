"""Training: replay history through the core's features (and, for the graph path, its temporal
sampler), split by time, fit the models, evaluate, and save everything `libfraud compile` needs."""

from __future__ import annotations

import dataclasses
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
from .periods import PeriodSpec

#: Rows of sampled test neighbourhoods kept for the GNN artifacts' parity check at compile time.
GNN_PARITY_ROWS = 2048
#: Training rows kept (a seeded sample) for the bundle's drift reference (export/BUNDLE.md "drift").
DRIFT_REFERENCE_ROWS = 5000
DRIFT_REFERENCE_SEED = 0


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
class Decision:
    """How raw tree scores become the probabilities and the flag a desk acts on."""

    calibration: str = "platt"  # "platt", "isotonic" or "none"
    threshold: str = "fpr:0.01"  # thresholds.choose: fpr:F, alerts_per_day:N, cost:MISSED:REVIEW, value:T

    def __post_init__(self) -> None:
        if self.calibration not in ("platt", "isotonic", "none"):
            raise ValueError(f"--calibration must be platt, isotonic or none, got {self.calibration!r}")


@dataclass(frozen=True)
class Evaluation:
    """How the test period is judged (metrics.desk_summary)."""

    k: int = 100  # daily precision@k: the investigators' capacity per day
    entity: str | None = None  # the entity type ranked per day (default: the schema's first)
    drop_known_compromised: bool = False  # drop test events of entities with fraud known before the test
    fpr: float = 0.01  # recall at this false-positive rate

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"--k must be an integer >= 1, got {self.k!r}")


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
    test_scores: np.ndarray  # calibrated (what the core serves)
    split_rows: dict
    test_start_ms: int
    periods: dict | None = None
    calibration: dict | None = None  # the bundle's calibration section (calibration.Calibrator)
    test_raw_scores: np.ndarray | None = None  # the trees' own output, before calibration
    test_time_ms: np.ndarray | None = None
    test_entity_ids: np.ndarray | None = None  # the evaluation entity of each test row
    test_evaluated: np.ndarray | None = None  # bool: rows the test metrics count (known compromised dropped)
    gnn: Any = None  # train_gnn.TrainedGnn
    sampler: SamplerSettings | None = None
    gnn_parity_arrays: dict | None = None  # sampled test neighbourhoods, for the artifacts' parity
    gbdt_only_test_scores: np.ndarray | None = None  # the trees-alone baseline, with a GNN
    provenance: dict | None = None  # the bundle's model section (name, version, data fingerprint)
    tuning: Any = None  # tune.TuneResult when the parameters were searched
    X_reference: np.ndarray | None = None  # a seeded sample of the training rows: the drift reference
    reference_info: dict | None = None  # what X_reference is (source, rows, period), for the bundle

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save(out / "model.ubj")
        np.save(out / "holdout_X.npy", self.X_test)
        np.save(out / "holdout_y.npy", self.y_test)
        if self.X_reference is not None:
            np.save(out / "reference_X.npy", self.X_reference)
        info = {
            "schema": self.schema, "spec": self.spec,
            "feature_order": list(self.model.feature_names),
            "threshold": self.threshold, "threshold_rule": self.threshold_rule,
            "calibration": self.calibration, "periods": self.periods, "provenance": self.provenance,
            "metrics": self.metrics, "split_rows": self.split_rows,
            "test_start_ms": self.test_start_ms,
            **({"drift_reference": self.reference_info} if self.reference_info is not None else {}),
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


def _labels(events: EventArrays, labels: LabelArrays | None) -> tuple[np.ndarray, np.ndarray]:
    """Each event's label (1 fraud, 0 legitimate, -1 unknown: replayed for history, not trained
    on) and its label time (int64 max where unknown)."""
    if labels is None or len(labels) == 0:
        raise ValueError("training needs labels: declare [label] in the schema (1 fraud, 0 legitimate)")
    y = np.full(len(events), -1, dtype=np.int8)
    label_time = np.full(len(events), np.iinfo(np.int64).max, dtype=np.int64)
    rows = rows_of(events.event_id, labels.event_id)
    y[rows[rows >= 0]] = labels.label[rows >= 0]
    label_time[rows[rows >= 0]] = labels.label_time_ms[rows >= 0]
    return y, label_time


def _entity_column(schema, evaluation: Evaluation) -> int:
    names = [e.name for e in schema.entities]
    if evaluation.entity is None:
        return 0
    if evaluation.entity not in names:
        raise ValueError(f"--k-entity {evaluation.entity!r} is not an entity of the schema; it has: "
                         f"{', '.join(names)}")
    return names.index(evaluation.entity)


def _known_compromised(entity: np.ndarray, y: np.ndarray, known_ms: np.ndarray, time_ms: np.ndarray,
                       test_idx: np.ndarray, since_ms: int) -> np.ndarray:
    """Test rows whose entity was known compromised before the row's day began: it had a fraud
    (from ``since_ms``, the training start, on) whose label time is before that day's midnight
    UTC. The card-fraud protocol drops them: a blocked card is not scored again."""
    from .data.schema import ABSENT_ID
    from .periods import DAY_MS
    fraud = (y == 1) & (time_ms >= since_ms) & (entity != ABSENT_ID)
    first_known: dict = {}
    for e, k in zip(entity[fraud].tolist(), known_ms[fraud].tolist()):
        if k < first_known.get(e, np.iinfo(np.int64).max):
            first_known[e] = k
    if not first_known:
        return np.zeros(test_idx.size, dtype=bool)
    ids = np.fromiter(first_known, dtype=np.int64, count=len(first_known))
    when = np.fromiter(first_known.values(), dtype=np.int64, count=len(first_known))
    order = np.argsort(ids)
    ids, when = ids[order], when[order]
    e = entity[test_idx]
    pos = np.clip(np.searchsorted(ids, e), 0, ids.size - 1)
    day_start = (time_ms[test_idx] // DAY_MS) * DAY_MS
    return (ids[pos] == e) & (when[pos] < day_start)


def fingerprint(frame: pd.DataFrame, schema_json: dict, spec_json: dict, inputs: list[str] | None = None) -> str:
    """sha256 over the training inputs (the files' bytes when known, else the frame's values), the
    schema and the spec: the same data and declarations give the same fingerprint."""
    import hashlib
    h = hashlib.sha256()
    if inputs:
        for path in inputs:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    else:
        h.update(json.dumps([str(c) for c in frame.columns]).encode())
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    h.update(json.dumps(schema_json, sort_keys=True).encode())
    h.update(json.dumps(spec_json, sort_keys=True).encode())
    return "sha256:" + h.hexdigest()


def _source_revision() -> str | None:
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _with_history(history: pd.DataFrame, events: EventArrays, labels: LabelArrays | None, schema,
                  spec: PeriodSpec):
    """History events before the training data, as warm-up: the training period starts at the
    data's first event unless given."""
    from dataclasses import replace

    from .data.declared import load_events
    from .periods import PeriodError
    past, past_labels = load_events(history, schema)
    if len(past) and len(events) and past.time_ms[-1] > events.time_ms[0]:
        raise PeriodError("--history must end before the training data starts (its last event is later "
                          "than the data's first)")
    joined = EventArrays.concat([past, events])
    joined_labels = LabelArrays.concat([past_labels, labels])
    if spec.train_end is None:
        raise PeriodError("--history needs --train-end (the training period; the history is warm-up)")
    if spec.train_start is None and len(events):
        spec = replace(spec, train_start=pd.Timestamp(int(events.time_ms[0]), unit="ms", tz="UTC").isoformat())
    return joined, joined_labels, spec


def train(transactions: pd.DataFrame, *, schema: Any = None, spec: Any = None,
          params: GbdtParams = GbdtParams(), periods: PeriodSpec | None = None,
          fractions=(0.7, 0.15, 0.15), decision: Decision = Decision(),
          evaluation: Evaluation = Evaluation(), gnn_params: Any = None,
          sampler: SamplerSettings | None = None, tuning: Any = None,
          name: str = "libfraud-model", version: str | None = None, inputs: list[str] | None = None,
          history: pd.DataFrame | None = None, progress: bool = False) -> TrainResult:
    """Tree model on the declared features (the payments preset when no schema is given); with
    ``gnn_params`` (train_gnn.GnnParams) also a GNN on the sampled neighbourhoods whose outputs
    feed the shipped trees (see train_gnn: stacking). ``transactions`` in the schema's columns.

    ``periods``: the timeline (libfraud.periods); without it, ``fractions`` of the labelled events
    by time. ``history``: earlier events (same columns) fed to the store before ``transactions``
    as warm-up (``periods.unknown_labels``: what a training label not yet known at the cutoff
    is, see periods.assign). ``decision``: calibration on validation and the threshold rule. ``tuning``
    (tune_settings.Tuning): an Optuna search of the tree parameters before the final fit."""
    from datetime import datetime, timezone

    from .data.declared import Schema, load_events, load_preset
    from .periods import PeriodSpec as _Spec, assign, effective_label_time, resolve
    if isinstance(schema, dict):
        schema = Schema.from_json(schema)
    if schema is None:
        schema, preset_spec = load_preset("payments", transactions.columns)
        spec = spec if spec is not None else preset_spec
    if spec is None:
        raise ValueError("a schema needs a feature spec (see export/SCHEMA.md)")
    events, label_arrays = load_events(transactions, schema)
    spec_given = periods or _Spec()
    frame = transactions
    if history is not None:
        events, label_arrays, spec_given = _with_history(history, events, label_arrays, schema, spec_given)
        frame = pd.concat([history, transactions], ignore_index=True)
    y, label_time = _labels(events, label_arrays)
    resolved = resolve(spec_given, events.time_ms, y, default_delay_ms=schema.label.delay_ms if schema.label else 0,
                       fractions=fractions)
    known_ms = effective_label_time(events.time_ms, label_time, resolved.label_delay_ms)
    unknown_labels = spec_given.unknown_labels
    split = assign(resolved, events.time_ms, y, known_ms, unknown=unknown_labels)
    truth, y = y, split.y  # y from here on: labels as known at the cutoff (test rows: the truth)
    # Nothing after the test period matters to any feature of it: do not replay it.
    keep = int(np.searchsorted(events.time_ms, resolved.test_end_ms, side="left"))
    if keep < len(events):
        events = events.slice(0, keep)
        y, truth, known_ms = y[:keep], truth[:keep], known_ms[:keep]
        rows_kept = rows_of(events.event_id, label_arrays.event_id) >= 0
        label_arrays = label_arrays.take(rows_kept)
    replayed = replay(events, label_arrays, schema, spec, progress=progress)  # point in time
    features = replayed.frame()
    X = replayed.features
    train_idx, valid_idx, test_idx = split.train, split.valid, split.test
    schema_json, spec_json = as_json(schema), as_json(spec)
    names = list(features.columns)

    tuning_result = None
    if tuning is not None:
        from .tune_train import tune_gbdt
        tuning_result, params = tune_gbdt(X, truth, known_ms, events.time_ms, resolved, names, params,
                                          tuning, unknown=unknown_labels, progress=progress)
    extra_metrics: dict = {}
    gnn_fields: dict = {}
    if gnn_params is None:
        model = train_gbdt(X[train_idx], y[train_idx], X[valid_idx], y[valid_idx], names, params,
                           progress=progress)
        XS = X
        gbdt_only_scores = None
    else:
        from .train_gnn import gnn_outputs, sample_neighbourhoods, train_stacked
        sampler = sampler or SamplerSettings()
        arrays = sample_neighbourhoods(events, replayed.store, sampler, sampler.graph_fields)
        if tuning is not None and tuning.gnn:
            from .tune_train import tune_gnn
            gnn_tuning, gnn_params = tune_gnn(arrays, y, train_idx, valid_idx, gnn_params, tuning,
                                              progress=progress)
            extra_metrics["tuning_gnn"] = {"best_value": gnn_tuning.best_value, "trials": gnn_tuning.n_trials,
                                           "complete": gnn_tuning.n_complete, "best_params": gnn_tuning.best_params}
        stacked = train_stacked(features, arrays, y, (train_idx, valid_idx, test_idx), gnn_params=gnn_params,
                                gbdt_params=params, progress=progress)
        logits, embeddings = gnn_outputs(stacked.gnn.model, arrays)
        XS = np.concatenate([X, logits[:, None], embeddings], axis=1)
        model = stacked.stacked
        gbdt_only_scores = stacked.gbdt_only.predict_proba(X[test_idx])
        extra_metrics = {**extra_metrics, "test_gbdt_only": stacked.metrics["gbdt_only"],
                         "test_gnn_only": stacked.metrics["gnn_only"]}
        # Spread over the whole test period, so the rows hold some fraud for the FP16 score effect.
        picked = np.unique(np.linspace(0, len(test_idx) - 1, min(GNN_PARITY_ROWS, len(test_idx))).astype(np.int64))
        from .models.gnn import INPUT_NAMES
        gnn_fields = {"gnn": stacked.gnn, "sampler": sampler,
                      "gnn_parity_arrays": {**{k: arrays[k][test_idx[picked]] for k in INPUT_NAMES},
                                            "holdout_rows": picked}}
        split = dataclasses.replace(split, counts={**split.counts, "stacking": stacked.split_rows})

    # Calibrate and choose the threshold on validation; judge on the test period.
    raw_valid = model.predict_proba(XS[valid_idx])
    raw_test = model.predict_proba(XS[test_idx])
    if gbdt_only_scores is not None:  # ranking only: the trees' own outputs
        extra_metrics["by_fraud_type"] = _auprc_by_type(frame, test_idx, raw_test, gbdt_only_scores)
    calibrator = None
    if decision.calibration != "none":
        from .calibration import fit_calibrator
        calibrator = fit_calibrator(y[valid_idx], raw_valid, method=decision.calibration)
    valid_scores = calibrator.apply(raw_valid) if calibrator else raw_valid
    test_scores = calibrator.apply(raw_test) if calibrator else raw_test
    from .thresholds import choose
    threshold = choose(decision.threshold, y=y[valid_idx], scores=valid_scores,
                       time_ms=events.time_ms[valid_idx])

    entity_col = _entity_column(schema, evaluation)
    entity = events.entity_id[:, entity_col]
    entity_name = schema.entities[entity_col].name
    evaluated = np.ones(test_idx.size, dtype=bool)
    if evaluation.drop_known_compromised:
        evaluated = ~_known_compromised(entity, truth, known_ms, events.time_ms, test_idx,
                                        resolved.train_start_ms)
    judged = test_idx[evaluated]

    def desk(idx, scores):
        return metrics.desk_summary(y[idx], scores, time_ms=events.time_ms[idx], entity_ids=entity[idx],
                                    threshold=threshold.value, k=evaluation.k, fpr=evaluation.fpr,
                                    entity_name=entity_name)

    result_metrics = {
        "valid": desk(valid_idx, valid_scores),
        "test": desk(judged, test_scores[evaluated]),
        "test_uncalibrated": {"brier": metrics.brier(y[judged], raw_test[evaluated]),
                              "mean_score": float(np.mean(raw_test[evaluated]))},
        "test_fraud_rate": float(np.mean(y[judged])),
        **({"test_dropped_known_compromised": int((~evaluated).sum())}
           if evaluation.drop_known_compromised else {}),
        **extra_metrics,
    }
    if gbdt_only_scores is not None:  # the trees-alone baseline, calibrated the same way
        if calibrator:
            from .calibration import fit_calibrator
            only = fit_calibrator(y[valid_idx], stacked.gbdt_only.predict_proba(X[valid_idx]),
                                  method=decision.calibration)
            gbdt_only_scores = only.apply(gbdt_only_scores)
        result_metrics["test_gbdt_only"] = desk(judged, gbdt_only_scores[evaluated])
    if tuning_result is not None:
        result_metrics["tuning"] = {"best_value": tuning_result.best_value, "trials": tuning_result.n_trials,
                                    "complete": tuning_result.n_complete}
    version = version or datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    provenance = {"name": name, "version": version,
                  "data_fingerprint": fingerprint(frame, schema_json, spec_json, inputs),
                  "source_revision": _source_revision()}
    reference_rows, reference_info = _drift_reference(XS, train_idx, events.time_ms)
    return TrainResult(
        model=model, schema=schema_json, spec=spec_json, metrics=result_metrics,
        threshold=threshold.value, threshold_rule=threshold.rule,
        X_test=XS[test_idx], y_test=y[test_idx], test_scores=test_scores,
        split_rows=split.rows(), test_start_ms=resolved.test_start_ms,
        periods={**resolved.to_json(), "threshold_details": threshold.details}, tuning=tuning_result,
        calibration=calibrator.to_manifest() if calibrator else None,
        test_raw_scores=raw_test, test_time_ms=events.time_ms[test_idx], test_entity_ids=entity[test_idx],
        test_evaluated=evaluated, gbdt_only_test_scores=gbdt_only_scores, provenance=provenance,
        X_reference=reference_rows, reference_info=reference_info, **gnn_fields)


def _drift_reference(XS: np.ndarray, train_idx: np.ndarray, time_ms: np.ndarray) -> tuple[np.ndarray, dict]:
    """A seeded sample of the training rows (the shipped trees' inputs) and what it is: the bundle's
    drift reference (export/BUNDLE.md "drift")."""
    from datetime import datetime, timezone
    rng = np.random.default_rng(DRIFT_REFERENCE_SEED)
    n = min(DRIFT_REFERENCE_ROWS, len(train_idx))
    rows = train_idx[np.sort(rng.choice(len(train_idx), size=n, replace=False))] if n else train_idx[:0]

    def utc(ms) -> str:
        return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    info = {"source": "training", "sample_of_rows": int(len(train_idx)), "seed": DRIFT_REFERENCE_SEED}
    if len(train_idx):
        info.update(from_utc=utc(time_ms[train_idx].min()), to_utc=utc(time_ms[train_idx].max()))
    return np.ascontiguousarray(XS[rows], dtype=np.float32), info


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


def load_drift_reference(model_dir: str | Path, info: dict, holdout: np.ndarray) -> tuple[np.ndarray, dict]:
    """(rows, what they are) for the bundle's drift reference: the training sample saved by
    TrainResult.save, or, for a model directory from before it, the held-out (test period) rows."""
    path = Path(model_dir) / "reference_X.npy"
    if path.is_file():
        return np.load(path), dict(info.get("drift_reference") or {"source": "training"})
    return holdout, {"source": "holdout (the test period: this model directory has no training sample)"}


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
