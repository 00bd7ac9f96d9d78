"""Training the GNN over sampled neighbourhoods, and stacking its outputs under the trees.

Neighbourhoods come from the C++ sampler replayed over the whole history (``sample_neighbourhoods``):
each transaction sees only transactions strictly before it, exactly as when it is served.

Stacking without leakage (``train_stacked``). Trees that consume GNN outputs must never be trained
on a row with outputs of a GNN that was fit on that row: there its outputs are over-confident, and
the trees would learn to trust them more than they deserve on new data. Yet the trees should see
the whole training period, like the trees-alone baseline. So the GNN outputs of the trees' training
rows are out-of-fold, by forward chaining over ``folds`` time blocks of the training period:

    training period:  [ block 0 | block 1 | ... | block F-1 ]  validation  test
    stage 0           GNN fit on block 0                     -> outputs for block 1
    stage b           same GNN, trained on, blocks 0..b-1    -> outputs for block b
    stage F-1 (final) same GNN, trained on, all blocks       -> outputs for validation, test, serving
    stacked trees     whole training period: features + stage outputs (NaN on block 0, which no
                      earlier GNN has seen past), early-stopped on validation (final GNN's outputs)
    GBDT-only         whole training period, early-stopped on validation (the baseline)

Each stage holds out the last 20% of its rows to early-stop on. Stages after the first continue
from the previous stage's weights for at most ``GnnParams.stage_epochs`` epochs: cheaper than a
fresh fit, and it keeps the embedding coordinates of consecutive stages close, which the trees need,
since they learn splits on the stage outputs and are served the final GNN's. Every stage only ever
fits on rows strictly earlier than the block it scores. Both tree models are scored on the same
test rows, which neither the GNNs nor the trees have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics
from .models.gbdt import GbdtParams, TrainedGbdt, train_gbdt
from .models.gnn import INPUT_NAMES, FraudGnn, input_shapes

__all__ = [
    "GnnParams",
    "StackedResult",
    "TrainedGnn",
    "array_shape",
    "gnn_outputs",
    "sample_neighbourhoods",
    "stacked_feature_names",
    "train_gnn",
    "train_stacked",
]

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class GnnParams:
    """GNN training configuration; every field is range-checked on construction."""

    hidden: int = 48
    embedding_dim: int = 16
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    lr: float = 3e-3
    batch_size: int = 256
    patience: int = 5  # epochs without a validation AUPRC gain before stopping
    seed: int = 0
    dropout: float = 0.1
    weight_decay: float = 1e-5
    threads: int = 1  # torch intra-op threads while training (restored afterwards)
    # pos_weight = (negatives/positives) ** balance: 1 fully rebalances, 0 not at all.
    balance: float = 0.5
    # Epochs of each warm-started forward-chaining stage after the first (train_stacked).
    stage_epochs: int = 4

    @classmethod
    def from_mapping(cls, values: dict, source: str = "GNN parameters") -> "GnnParams":
        from .config_values import dataclass_from_mapping
        return dataclass_from_mapping(cls, values, source)

    def __post_init__(self) -> None:
        for name, lo in (("hidden", 1), ("embedding_dim", 1), ("epochs", 1), ("batch_size", 1),
                         ("patience", 1), ("seed", 0), ("threads", 1), ("stage_epochs", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"GnnParams.{name} must be an integer >= {lo}, got {v!r}")
        for name, lo, hi in (("lr", 0.0, 1.0), ("dropout", 0.0, 1.0), ("weight_decay", 0.0, 1.0)):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not (lo <= v < hi) or (name == "lr" and v == 0):
                raise ValueError(f"GnnParams.{name} must be a number in [{lo}, {hi}), got {v!r}"
                                 + (" and > 0" if name == "lr" else ""))
        b = self.balance
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not (0.0 <= b <= 1.0):
            raise ValueError(f"GnnParams.balance must be a number in [0, 1], got {b!r}")


@dataclass(frozen=True)
class TrainedGnn:
    """A trained model (eval mode, CPU) and how it got there."""

    model: FraudGnn
    params: GnnParams
    best_epoch: int  # 0-based epoch whose weights were kept
    epochs_run: int
    valid_auprc: float  # of the kept weights, on the early-stopping rows
    pos_weight: float  # negatives/positives of the training rows, in BCEWithLogitsLoss

    @property
    def embedding_dim(self) -> int:
        return self.model.embedding_dim


@dataclass(frozen=True)
class StackedResult:
    """Both tree models, the GNN under the stacked one, and their test metrics."""

    gnn: TrainedGnn
    gbdt_only: TrainedGbdt  # features only, whole training period
    stacked: TrainedGbdt  # features + stacked_feature_names(D), tree part of the training period
    metrics: dict  # {"gbdt_only": summary, "stacked": summary, "gnn_only": summary} on test rows
    split_rows: dict  # {"gnn_fit", "gnn_stop", "trees", "valid", "test"}: row counts
    feature_names: tuple[str, ...]  # the stacked model's input order


def stacked_feature_names(embedding_dim: int) -> list[str]:
    """Names of the GNN's outputs as tree features: ["gnn_logit", "gnn_emb_0", ...]."""
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, (int, np.integer)) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
    return ["gnn_logit"] + [f"gnn_emb_{i}" for i in range(int(embedding_dim))]


def sample_neighbourhoods(events, store, sampler_config: Any, graph_fields=()) -> dict[str, np.ndarray]:
    """Every event's sampled neighbourhood, as the serving engine would sample it, from ``store``
    (a ``_core.Store`` holding exactly these events, e.g. after features.replay), in one call: the
    sampler uses only stored events strictly before each target's time. ``sampler_config`` is a
    ``_core.SamplerConfig`` or anything with ``to_core()`` returning one; ``graph_fields``: the
    schema's numeric/categorical fields appended to the transaction node features. Returns the
    arrays of ``INPUT_NAMES`` (float32) and the sampler's int64 id arrays (ent1_id, txn2_id, ent3_id).
    """
    from . import _core

    if store.size != len(events):
        raise ValueError(f"the store holds {store.size} events, the batch has {len(events)}")
    cfg = sampler_config.to_core() if hasattr(sampler_config, "to_core") else sampler_config
    out = dict(_core.Sampler(store, cfg, list(graph_fields)).sample(store, *events.args()))
    _check_arrays(out)
    return out


def _check_arrays(arrays: Arrays, model: FraudGnn | None = None) -> int:
    """Validate the contract's shapes (and, given a model, its E and Ft); return the number of rows."""
    missing = [n for n in INPUT_NAMES if n not in arrays]
    if missing:
        raise ValueError(f"neighbourhood arrays lack {missing}; expected {list(INPUT_NAMES)}")
    n = arrays["target_x"].shape[0]
    k = arrays["txn2_x"].shape[2] if arrays["txn2_x"].ndim == 4 else -1
    E, Ft = array_shape(arrays)
    for name, shape in input_shapes(n, k, E, Ft).items():
        if tuple(arrays[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(arrays[name].shape)}, the contract says {shape}")
    if model is not None and (model.num_entity_types, model.txn_features) != (E, Ft):
        raise ValueError(f"the arrays have {E} entity types and {Ft} transaction features, the model "
                         f"{model.num_entity_types} and {model.txn_features}")
    return n


def array_shape(arrays: Arrays) -> tuple[int, int]:
    """(E, Ft) of neighbourhood arrays: entity types from ent1_x [N, E, E+1], transaction
    features from target_x [N, Ft] (the sampler's configuration decides both)."""
    e1, tx = arrays["ent1_x"], arrays["target_x"]
    if e1.ndim != 3 or tx.ndim != 2:
        raise ValueError(f"ent1_x has shape {tuple(e1.shape)} and target_x {tuple(tx.shape)}; "
                         "expected [N, E, E+1] and [N, Ft]")
    return int(e1.shape[1]), int(tx.shape[1])


def _tensors(arrays: Arrays, idx: np.ndarray | slice) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(arrays[n][idx], dtype=np.float32)) for n in INPUT_NAMES]


class _Threads:
    """Set torch's intra-op threads for a block, then restore them."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.saved)


def gnn_outputs(model: FraudGnn, arrays: Arrays, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N] float32, embeddings [N, D] float32), in eval mode without gradients."""
    n = _check_arrays(arrays, model)
    was_training = model.training
    model.eval()
    logits, embs = [], []
    try:
        with torch.no_grad():
            for lo in range(0, n, batch_size):
                logit, emb = model(*_tensors(arrays, slice(lo, lo + batch_size)))
                logits.append(logit.numpy())
                embs.append(emb.numpy())
    finally:
        model.train(was_training)
    if not logits:
        return np.zeros(0, np.float32), np.zeros((0, model.embedding_dim), np.float32)
    return np.concatenate(logits), np.concatenate(embs)


def _labels(y: Any, idx: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y)[idx]
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{what} labels must be 0/1")
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError(f"{what} rows have only one class; need both fraud (1) and legitimate (0)")
    return y.astype(np.float32)


def _set_input_scaling(model: FraudGnn, arrays: Arrays, rows: np.ndarray, max_rows: int = 20_000) -> None:
    """Standardise the model's inputs with statistics of (at most max_rows of) the fitting rows."""
    rows = rows[np.linspace(0, rows.size - 1, min(rows.size, max_rows)).astype(np.int64)]
    txn = arrays["txn2_x"][rows][arrays["txn2_mask"][rows] > 0]
    ents = [arrays["ent1_x"][rows][arrays["ent1_mask"][rows] > 0],
            arrays["ent3_x"][rows][arrays["ent3_mask"][rows] > 0]]
    model.set_input_scaling(torch.from_numpy(np.ascontiguousarray(arrays["target_x"][rows])),
                            torch.from_numpy(np.ascontiguousarray(txn)),
                            torch.from_numpy(np.concatenate(ents)))


def train_gnn(arrays: Arrays, y: Any, train_idx: Sequence[int], valid_idx: Sequence[int],
              params: GnnParams = GnnParams(), progress: bool = False, *,
              init: FraudGnn | None = None, epochs: int | None = None) -> TrainedGnn:
    """Fit a FraudGnn with Adam on ``train_idx``, early-stopped on validation AUPRC.

    Class imbalance: ``pos_weight`` = (negatives/positives of the training rows) ** params.balance.
    Inputs are standardised with the training rows' statistics (inside the model). ``init``: start
    from a copy of these weights (and keep their scaling) instead of a fresh model; its validation
    AUPRC is then the bar an epoch must beat. ``epochs`` overrides ``params.epochs``. Deterministic
    for a given ``params.seed`` (and thread count). The weights of the best validation epoch are kept.
    The model's E and Ft are the arrays' (``array_shape``).
    """
    if not isinstance(params, GnnParams):
        raise TypeError(f"params must be a GnnParams, got {type(params).__name__}")
    _check_arrays(arrays, init)
    E, Ft = array_shape(arrays)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    valid_idx = np.asarray(valid_idx, dtype=np.int64)
    yt = _labels(y, train_idx, "training")
    yv = _labels(y, valid_idx, "validation").astype(np.int8)
    pos_weight = float(((yt.size - yt.sum()) / yt.sum()) ** params.balance)
    valid_arrays = {n: arrays[n][valid_idx] for n in INPUT_NAMES}
    epochs = params.epochs if epochs is None else epochs

    with _Threads(params.threads):
        torch.manual_seed(params.seed)
        model = FraudGnn(params.hidden, params.embedding_dim, params.dropout, num_entity_types=E,
                         txn_features=Ft)
        if init is None:
            _set_input_scaling(model, arrays, train_idx)
        else:
            model.load_state_dict(init.state_dict())
        optimiser = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
        rng = np.random.default_rng(params.seed)
        start = -1.0 if init is None else metrics.auprc(yv, gnn_outputs(model, valid_arrays)[0])
        best = (start, -1, {k: v.clone() for k, v in model.state_dict().items()})
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=epochs, desc="gnn", unit="epoch")
        epoch = -1
        try:
            for epoch in range(epochs):
                model.train()
                order = train_idx[rng.permutation(train_idx.size)]
                for lo in range(0, order.size, params.batch_size):
                    batch = np.sort(order[lo:lo + params.batch_size])
                    logit, _ = model(*_tensors(arrays, batch))
                    loss = loss_fn(logit, torch.from_numpy(np.asarray(y)[batch].astype(np.float32)))
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                scores, _ = gnn_outputs(model, valid_arrays)
                auprc = metrics.auprc(yv, scores)
                if auprc > best[0]:
                    best = (auprc, epoch, {k: v.clone() for k, v in model.state_dict().items()})
                if bar is not None:
                    bar.set_postfix(valid_auprc=f"{auprc:.4f}", refresh=False)
                    bar.update(1)
                if epoch - best[1] >= params.patience:
                    break
        finally:
            if bar is not None:
                bar.close()
    model.load_state_dict(best[2])
    model.eval()
    return TrainedGnn(model=model, params=params, best_epoch=best[1], epochs_run=epoch + 1,
                      valid_auprc=float(best[0]), pos_weight=pos_weight)


def train_stacked(features: pd.DataFrame, arrays: Arrays, y: Any,
                  splits: tuple[Sequence[int], Sequence[int], Sequence[int]], *,
                  folds: int = 3, gnn_params: GnnParams = GnnParams(),
                  gbdt_params: GbdtParams = GbdtParams(), progress: bool = False) -> StackedResult:
    """GBDT-only and GNN-stacked trees on the same time split, with test metrics for both.

    ``features``: one row per transaction (e.g. ``replay_features``), columns = tree features.
    ``arrays``: ``sample_neighbourhoods`` of the same rows. ``splits``: (train, valid, test) indices
    from ``splits.time_split`` (time-ordered within each part). ``folds``: time blocks of the
    training period for the forward chaining. See the module docstring for which model sees which rows.
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    train_idx, valid_idx, test_idx = (np.asarray(s, dtype=np.int64) for s in splits)
    n = _check_arrays(arrays)
    if len(features) != n:
        raise ValueError(f"features has {len(features)} rows, arrays {n}")
    y = np.asarray(y)
    X = np.ascontiguousarray(features.to_numpy(dtype=np.float32))
    names = [str(c) for c in features.columns]

    # Forward chaining: stage b fits on blocks 0..b-1 (warm-started from stage b-1) and gives block b
    # its outputs; the last stage fits on the whole training period and serves everything else.
    ends = [int(round(train_idx.size * (b + 1) / folds)) for b in range(folds)]
    D = gnn_params.embedding_dim
    oof = np.full((train_idx.size, 1 + D), np.nan, np.float32)
    gnn: TrainedGnn | None = None
    for b in range(folds):
        seen = train_idx[:ends[b]]
        stop = int(round(seen.size * 0.8))
        gnn = train_gnn(arrays, y, seen[:stop], seen[stop:], gnn_params, progress=progress,
                        init=None if gnn is None else gnn.model,
                        epochs=None if gnn is None else gnn_params.stage_epochs)
        if b + 1 < folds:
            block = slice(ends[b], ends[b + 1])
            logit, emb = gnn_outputs(gnn.model, {k: v[train_idx[block]] for k, v in arrays.items()
                                                 if k in INPUT_NAMES})
            oof[block, 0], oof[block, 1:] = logit, emb
    assert gnn is not None
    gnn_fit, gnn_stop = train_idx[:stop], train_idx[stop:]

    logits, embs = gnn_outputs(gnn.model, arrays)
    stacked_names = names + stacked_feature_names(gnn.embedding_dim)
    XS = np.concatenate([X, logits[:, None], embs], axis=1)
    XS_train = np.concatenate([X[train_idx], oof], axis=1)

    gbdt_only = train_gbdt(X[train_idx], y[train_idx], X[valid_idx], y[valid_idx], names, gbdt_params,
                           progress=progress)
    stacked = train_gbdt(XS_train, y[train_idx], XS[valid_idx], y[valid_idx],
                         stacked_names, gbdt_params, progress=progress)
    yt = y[test_idx]
    result_metrics = {
        "gbdt_only": metrics.summary(yt, gbdt_only.predict_proba(X[test_idx])),
        "stacked": metrics.summary(yt, stacked.predict_proba(XS[test_idx])),
        "gnn_only": metrics.summary(yt, logits[test_idx]),
    }
    return StackedResult(
        gnn=gnn, gbdt_only=gbdt_only, stacked=stacked, metrics=result_metrics,
        split_rows={"gnn_fit": int(gnn_fit.size), "gnn_stop": int(gnn_stop.size),
                    "trees": int(train_idx.size), "trees_oof": int(train_idx.size - ends[0]),
                    "valid": int(valid_idx.size), "test": int(test_idx.size)},
        feature_names=tuple(stacked_names),
    )
