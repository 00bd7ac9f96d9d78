"""GBDT training, trimming, persistence and input checks; report plots."""

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from libfraud import metrics
from libfraud.models.gbdt import GbdtParams, TrainedGbdt, train_gbdt
from libfraud.plots import plot_latency_histogram, plot_pr_curve

FEATURES = tuple(f"f{i}" for i in range(8))
# Small, fast, and aggressive enough that early stopping fires well before n_estimators.
PARAMS = GbdtParams(n_estimators=300, max_depth=4, learning_rate=0.3, early_stopping_rounds=10, nthread=2)


def make_data(n, seed):
    """A learnable problem with ~1% positives and ~10% NaN per feature (missingness is informative)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    logit = 2.0 * X[:, 0] - 1.5 * X[:, 1] + 1.0 * X[:, 2] * X[:, 3] - 8.0
    missing = rng.random(X.shape) < 0.10
    logit += 1.5 * missing[:, 4]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    X[missing] = np.nan
    return X, y


@pytest.fixture(scope="module")
def data():
    return make_data(40_000, 1), make_data(15_000, 2)


@pytest.fixture(scope="module")
def model(data):
    (Xt, yt), (Xv, yv) = data
    return train_gbdt(Xt, yt, Xv, yv, FEATURES, PARAMS)


def test_data_is_what_the_tests_assume(data):
    (Xt, yt), _ = data
    assert 0.003 < yt.mean() < 0.03
    assert np.isnan(Xt).mean() > 0.05


def test_learns_well_above_base_rate(model, data):
    _, (Xv, yv) = data
    assert model.valid_auprc > 10 * yv.mean()
    assert model.valid_auprc == pytest.approx(metrics.auprc(yv, model.predict_proba(Xv)))


def test_scale_pos_weight_is_neg_over_pos(model, data):
    (_, yt), _ = data
    assert model.scale_pos_weight == pytest.approx((yt == 0).sum() / (yt == 1).sum())


def test_booster_is_trimmed(model):
    assert model.n_trees == model.best_iteration + 1
    assert model.booster.num_boosted_rounds() == model.n_trees
    assert model.n_trees < PARAMS.n_estimators  # early stopping fired, so trimming did something
    assert model.booster.feature_names == list(FEATURES)
    assert model.feature_names == FEATURES


def test_predict_proba_matches_dmatrix_predict(model, data):
    _, (Xv, _) = data
    p = model.predict_proba(Xv)
    assert p.dtype == np.float32 and p.shape == (Xv.shape[0],)
    assert np.all((p >= 0) & (p <= 1))
    ref = model.booster.predict(xgb.DMatrix(Xv, missing=np.nan, feature_names=list(FEATURES)))
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-6)


def test_save_load_round_trip(model, data, tmp_path):
    _, (Xv, _) = data
    path = tmp_path / "gbdt.ubj"
    model.save(path)
    meta = json.loads((tmp_path / "gbdt.ubj.meta.json").read_text())
    assert meta["feature_names"] == list(FEATURES)
    assert meta["best_iteration"] == model.best_iteration
    assert meta["xgboost_version"] == xgb.__version__
    assert meta["params"]["max_depth"] == PARAMS.max_depth

    loaded = TrainedGbdt.load(path)
    assert loaded.feature_names == FEATURES
    assert loaded.booster.feature_names == list(FEATURES)  # kept in the UBJSON itself
    assert xgb.Booster(model_file=str(path)).feature_names == list(FEATURES)
    assert loaded.params == PARAMS
    assert (loaded.n_trees, loaded.best_iteration) == (model.n_trees, model.best_iteration)
    assert loaded.scale_pos_weight == model.scale_pos_weight
    np.testing.assert_array_equal(loaded.predict_proba(Xv), model.predict_proba(Xv))

    with pytest.raises(ValueError, match=r"\.ubj"):
        model.save(tmp_path / "gbdt.json")


def test_dataframe_inputs(model, data):
    _, (Xv, _) = data
    df = pd.DataFrame(Xv[:200], columns=list(FEATURES))
    np.testing.assert_array_equal(model.predict_proba(df), model.predict_proba(Xv[:200]))
    swapped = df[["f1", "f0", *FEATURES[2:]]]
    with pytest.raises(ValueError, match="column 0 is 'f1' but the model expects 'f0'"):
        model.predict_proba(swapped)
    with pytest.raises(ValueError, match="columns"):
        model.predict_proba(df.iloc[:, :5])


def test_input_checks(model, data):
    (Xt, yt), (Xv, yv) = data
    with pytest.raises(ValueError, match="inf"):
        model.predict_proba(np.full((1, len(FEATURES)), np.inf, dtype=np.float32))
    with pytest.raises(ValueError, match="model expects 8"):
        model.predict_proba(Xv[:, :3])
    with pytest.raises(ValueError, match="one class"):
        train_gbdt(Xt, np.zeros_like(yt), Xv, yv, FEATURES, PARAMS)
    with pytest.raises(ValueError, match="duplicate"):
        train_gbdt(Xt, yt, Xv, yv, ("a",) * 8, PARAMS)


def test_progress_bar_runs(data, capsys):
    (Xt, yt), (Xv, yv) = data
    small = GbdtParams(n_estimators=5, max_depth=2, early_stopping_rounds=5, nthread=1)
    m = train_gbdt(Xt[:5000], yt[:5000], Xv[:5000], yv[:5000], FEATURES, small, progress=True)
    assert m.n_trees == m.best_iteration + 1 <= 5
    assert "gbdt" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_estimators": 0},
        {"max_depth": 0},
        {"learning_rate": 0.0},
        {"learning_rate": 1.5},
        {"subsample": 0.0},
        {"colsample_bytree": 1.1},
        {"min_child_weight": -1.0},
        {"early_stopping_rounds": 0},
        {"nthread": 0},
        {"n_estimators": 2.5},
        {"nthread": True},
    ],
)
def test_params_are_validated(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"GbdtParams.{name}"):
        GbdtParams(**kwargs)


def test_plots_write_png(model, data, tmp_path):
    _, (Xv, yv) = data
    pr = plot_pr_curve(
        yv, {"gbdt": model.predict_proba(Xv), "f0 only": np.nan_to_num(Xv[:, 0], nan=-9)}, tmp_path / "pr.png"
    )
    rng = np.random.default_rng(0)
    lat = plot_latency_histogram(
        {"tl2cgen": rng.lognormal(1.6, 0.3, 5000), "xgboost": rng.lognormal(5.2, 0.2, 5000)},
        tmp_path / "sub" / "latency.png",
    )
    for path in (pr, lat):
        data_bytes = path.read_bytes()
        assert len(data_bytes) > 1000 and data_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="> 0"):
        plot_latency_histogram({"bad": np.array([1.0, 0.0])}, tmp_path / "bad.png")
