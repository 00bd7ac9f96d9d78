"""Shared fixtures: a small synthetic data set, a model trained on it, and its bundle.
Built once per session from the project's own generator (never ../shared/data)."""

from __future__ import annotations

import pandas as pd
import pytest

from libfraud.data import generate_transactions
from libfraud.models.gbdt import GbdtParams
from libfraud.train import train


@pytest.fixture(scope="session")
def small_transactions() -> pd.DataFrame:
    return pd.concat(list(generate_transactions(20_000, seed=7, fraud_rate=0.03)), ignore_index=True)


@pytest.fixture(scope="session")
def small_training(small_transactions):
    return train(small_transactions, params=GbdtParams(n_estimators=60, max_depth=4, seed=1))


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory, small_training):
    from libfraud.export import build_bundle
    r = small_training
    return build_bundle(tmp_path_factory.mktemp("bundles") / "small",
                        booster=r.model.booster, feature_names=list(r.model.feature_names),
                        schema=r.schema, spec=r.spec, X_holdout=r.X_test,
                        threshold=r.threshold, threshold_rule=r.threshold_rule, metrics=r.metrics)


@pytest.fixture(scope="session")
def other_bundle(small_training, tmp_path_factory):
    """The same schema and features as small_bundle, another model (more trees): scores differ."""
    import xgboost as xgb

    from libfraud.export import build_bundle
    r = small_training
    names = list(r.model.feature_names)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 9, "nthread": 2},
                        xgb.DMatrix(r.X_test, label=r.y_test, feature_names=names), num_boost_round=30)
    return build_bundle(tmp_path_factory.mktemp("other") / "bundle", booster=booster, feature_names=names,
                        schema=r.schema, spec=r.spec, X_holdout=r.X_test, threshold=0.5,
                        threshold_rule="test", metrics={})


@pytest.fixture(scope="session")
def small_transactions_csv(tmp_path_factory, small_transactions):
    path = tmp_path_factory.mktemp("csv") / "transactions.csv"
    small_transactions.head(3_000).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A whole `libfraud demo` on a small data set with the graph path: (report, output dir)."""
    pytest.importorskip("torch", reason="the graph path needs torch")
    pytest.importorskip("torch_geometric", reason="the graph path needs torch_geometric")
    from libfraud.demo import run_demo
    out = tmp_path_factory.mktemp("demo")
    report = run_demo(out, n=20_000, seed=3, trees=60, gnn=True, gnn_epochs=3, progress=False)
    return report, out
