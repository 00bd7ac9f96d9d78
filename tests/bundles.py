"""Test helpers: declared schemas and specs in JSON form, small bundles of them, and events edited
past the Python-side checks (to reach the core's own validation).

random_bundle compiles an XGBoost model on random rows of a spec's features through build_bundle,
so each bundle is one the core opened (and scored) before it was written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from libfraud.data.declared import FeatureSpec, Schema, load_preset
from libfraud.events import EventArrays

DAY = 86_400_000


def payments() -> tuple[dict, dict]:
    """(schema, spec) of the payments preset, JSON forms."""
    schema, spec = load_preset("payments")
    return schema.to_json(), spec.to_json()


def spec_json(schema: dict | Schema, features, max_scan: int = 1024) -> dict:
    """A feature spec's JSON form from feature dicts (names required), checked against the schema."""
    if not isinstance(schema, Schema):
        schema = Schema.from_json(schema)
    return FeatureSpec(tuple(features), max_scan).validate(schema).to_json()


def random_bundle(out: Path, schema: dict, spec: dict, names=None, *, seed: int = 0, rounds: int = 4,
                  X=None, **build_args) -> Path:
    """A bundle of the schema and spec whose trees read ``names`` (default: all the spec's
    features, in its order), trained on ``X`` (default: random normal rows) with a label made of
    the first and last inputs, so that scores vary with those two."""
    import xgboost as xgb

    from libfraud.export import build_bundle
    names = list(names if names is not None else [f["name"] for f in spec["features"]])
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, len(names))) if X is None else np.asarray(X)
    X = X.astype(np.float32)
    z = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, -1])
    y = (z > np.median(z)).astype(np.float32)
    booster = xgb.train({"max_depth": 2, "objective": "binary:logistic", "nthread": 1, "seed": seed},
                        xgb.DMatrix(X, label=y, feature_names=names), num_boost_round=rounds)
    args = dict(booster=booster, feature_names=names, schema=schema, spec=spec, X_holdout=X[:100],
                threshold=0.5, threshold_rule="fixed", metrics={})
    args.update(build_args)
    return build_bundle(out, **args)


def edited(events: EventArrays, **columns) -> EventArrays:
    """A copy of ``events`` with each named array replaced by ``fn(copy of it)``'s result, e.g.
    ``edited(ev, amount=lambda a: set_at(a, 3, np.nan))``: values the schema loader would refuse,
    for the core to refuse."""
    changes = {k: fn(np.array(getattr(events, k), copy=True)) for k, fn in columns.items()}
    return dataclasses.replace(events, **changes)


def set_at(a: np.ndarray, index, value) -> np.ndarray:
    a[index] = value
    return a
