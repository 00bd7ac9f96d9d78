"""The compiler and the rows path against hostile or mistaken input (issue 12, items 2 and 4): a
crash in TL2cgen is an error of the compiling process, a model trained with a sentinel missing
value fails parity instead of serving wrong scores, a corrupt model file is an error naming it,
+/-inf in caller rows is refused by the core as it is by training and parity, and a model of no
trees is refused naming its file."""

from __future__ import annotations

import json
import math
import re
import signal

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

from bundles import payments, random_bundle  # noqa: E402
from libfraud.export import ParityError, TreeCompileError, build_bundle, check_tree_parity, compile_trees  # noqa: E402
from libfraud.export import trees as trees_module  # noqa: E402
from libfraud.export.tree_structure import TreeStructureError  # noqa: E402
from libfraud.models import gbdt  # noqa: E402
from libfraud.models.gbdt import ModelFileError, TrainedGbdt, read_booster  # noqa: E402


def _booster(rounds: int = 3, features: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, features)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.float32)
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                     xgb.DMatrix(X, label=y), num_boost_round=rounds), X


# ------------------------------------------------------------------------- a. TL2cgen in a child


@pytest.mark.parametrize("signum", [signal.SIGSEGV, signal.SIGABRT])
def test_a_crash_in_code_generation_is_an_error_and_the_compiler_survives(tmp_path, monkeypatch, signum):
    booster, X = _booster()
    # The child dies as TL2cgen did on a cyclic tree, before generating anything.
    monkeypatch.setattr(trees_module, "_CODEGEN_CHILD", f"import os; os.kill(os.getpid(), {int(signum)})")
    with pytest.raises(TreeCompileError, match=rf"TL2cgen crashed generating code for m/model\.ubj: "
                                               rf"signal {int(signum)} \({signum.name}\)"):
        compile_trees(booster, tmp_path / "x.so", source="m/model.ubj")
    assert not (tmp_path / "x.so").exists()
    monkeypatch.undo()
    result = compile_trees(booster, tmp_path / "x.so")  # the same process compiles on
    assert result.n_trees == 3 and result.num_features == 4
    assert check_tree_parity(booster, result.path, X).passed


def test_tl2cgen_segfaulting_on_a_cyclic_tree_is_an_error(tmp_path, monkeypatch):
    booster, _ = _booster()
    model = json.loads(booster.save_raw("json"))
    tree = model["learner"]["gradient_booster"]["model"]["trees"][1]
    node = next(i for i, c in enumerate(tree["left_children"]) if c != -1 and i > 0)
    tree["right_children"][node] = 0  # back to the root
    cyclic = xgb.Booster()
    cyclic.load_model(bytearray(json.dumps(model).encode()))
    # The structure check refuses this tree; without it TL2cgen recursed until it segfaulted,
    # which killed the compiling process (pytest here) before code generation moved to a child.
    monkeypatch.setattr(trees_module, "check_tree_structure", lambda *args: 0)
    with pytest.raises(TreeCompileError, match=r"TL2cgen crashed generating code for .*x\.so: signal 11 \(SIGSEGV\)"):
        compile_trees(cyclic, tmp_path / "x.so")


def test_a_failing_child_gives_its_reason(tmp_path, monkeypatch):
    booster, _ = _booster()
    monkeypatch.setattr(trees_module, "_CODEGEN_CHILD", "raise SystemExit('treelite: model is not valid')")
    with pytest.raises(TreeCompileError, match=r"TL2cgen failed generating code for .*x\.so \(exit code 1\):\n"
                                               r"treelite: model is not valid"):
        compile_trees(booster, tmp_path / "x.so")


# ------------------------------------------------------------------ b. a sentinel missing value


def _sentinel_model(sentinel: float = -999.0):
    """Trained with DMatrix(missing=sentinel) on rows where feature 1's missingness is the label."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    missing = rng.random(X.shape) < 0.15
    y = ((X[:, 0] > 0.5) | missing[:, 1]).astype(np.float32)
    X[missing] = sentinel
    names = [f["name"] for f in payments()[1]["features"]][:5]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
                        xgb.DMatrix(X, label=y, missing=sentinel, feature_names=names), num_boost_round=20)
    return booster, X, names


def test_parity_with_the_declared_sentinel_catches_what_serving_would_get_wrong(tmp_path):
    booster, X, _ = _sentinel_model()
    so = compile_trees(booster, tmp_path / "x.so").path
    # Undeclared, the sentinel is a value on both sides: parity passes while serving is wrong.
    assert check_tree_parity(booster, so, X[:300]).passed
    truth = booster.inplace_predict(X[:300], missing=-999.0)  # as training read the rows
    assert np.abs(booster.inplace_predict(X[:300]) - truth).max() > 0.5
    report = check_tree_parity(booster, so, X[:300], missing_value=-999)
    assert not report.passed and report.max_abs_diff > 0.5 and report.missing_value == -999.0
    with pytest.raises(ParityError, match=r"trained with missing=-999: xgboost reads -999 as missing, the core only "
                                          r"NaN, and scores -999 as a value.*replaced by NaN"):
        report.require()
    # Held-out rows without the sentinel: the seeded copies carrying it still catch it.
    clean = X[:300][(X[:300] != -999).all(axis=1)]
    assert not check_tree_parity(booster, so, clean, missing_value=-999).passed


def test_a_sentinel_model_bundle_is_refused_until_served_with_nan(tmp_path):
    booster, X, names = _sentinel_model()
    schema, spec = payments()
    args = dict(booster=booster, feature_names=names, schema=schema, spec=spec, X_holdout=X[:300],
                threshold=0.5, threshold_rule="fixed", metrics={}, explain=False)
    with pytest.raises(ParityError, match="trained with missing=-999"):
        build_bundle(tmp_path / "declared", missing_value=-999, **args)
    assert not (tmp_path / "declared").exists()
    # The sklearn estimator knows its missing value: no declaration needed.
    estimator = xgb.XGBClassifier(n_estimators=20, max_depth=4, n_jobs=1, missing=-999.0)
    estimator.fit(X, ((X[:, 0] > 0.5) | (X[:, 1] == -999)).astype(int))
    estimator.get_booster().feature_names = names
    with pytest.raises(ParityError, match="trained with missing=-999"):
        build_bundle(tmp_path / "estimator", **{**args, "booster": estimator})
    with pytest.raises(ValueError, match=r"missing_value=nan differs from the estimator's missing=-999"):
        build_bundle(tmp_path / "estimator", missing_value=math.nan, **{**args, "booster": estimator})
    # The remedy the message gives: the same booster, NaN where -999 marked a missing value.
    X_nan = np.where(X == -999, np.nan, X)
    bundle = build_bundle(tmp_path / "nan", **{**args, "X_holdout": X_nan[:300]})
    from libfraud import Scorer
    served = Scorer(bundle).score_features(X_nan[:300])
    np.testing.assert_allclose(served, booster.inplace_predict(X[:300], missing=-999.0), atol=1e-5)


def test_a_sentinel_the_trees_send_where_missing_values_go_passes_and_is_recorded(tmp_path):
    # Exact splits with nothing missing in training send missing values left, where -999 (below
    # every threshold) goes too: the served scores agree, and the manifest says what was checked.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    names = [f["name"] for f in payments()[1]["features"]][:5]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "tree_method": "exact"},
                        xgb.DMatrix(X, label=(X[:, 0] > 0.5), missing=-999.0, feature_names=names), 5)
    schema, spec = payments()
    bundle = build_bundle(tmp_path / "b", booster=booster, feature_names=names, schema=schema, spec=spec,
                          X_holdout=X[:300], threshold=0.5, threshold_rule="fixed", metrics={}, explain=False,
                          missing_value=-999)
    from libfraud import Scorer
    from libfraud.export import read_manifest
    assert read_manifest(bundle)["parity"]["trees"]["missing_value"] == -999.0
    rows = X[:50].copy()
    rows[::3, 0] = -999
    np.testing.assert_allclose(Scorer(bundle).score_features(rows), booster.inplace_predict(rows, missing=-999.0),
                               atol=1e-5)


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e39, "NaN", True, None])
def test_a_missing_value_must_be_nan_or_a_finite_float32(tmp_path, value):
    # check_tree_parity's own argument (build_bundle's None means NaN)
    booster, X = _booster()
    with pytest.raises(ValueError, match="missing_value must be"):
        check_tree_parity(booster, tmp_path / "never-read.so", X, missing_value=value)


# ---------------------------------------------------------------------- c. corrupt model files


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    booster, X = _booster(rounds=5)
    booster.save_model(str(d / "model.ubj"))
    booster.save_model(str(d / "model.json"))
    return d, booster, X


def _corrupt(saved_model, tmp_path) -> dict:
    d, _, _ = saved_model
    ubj, js = (d / "model.ubj").read_bytes(), (d / "model.json").read_bytes()
    files = {"truncated.ubj": ubj[: len(ubj) // 2], "truncated.json": js[: len(js) // 2],
             "garbage.ubj": b"\x00\xffgarbage" * 40, "empty.ubj": b"", "text.json": b"not a model"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return files


def test_a_corrupt_model_file_is_an_error_naming_it(saved_model, tmp_path):
    d, booster, X = saved_model
    for name in _corrupt(saved_model, tmp_path):
        with pytest.raises(ModelFileError, match=rf"^cannot read XGBoost model {tmp_path / name}: \S") as e:
            read_booster(tmp_path / name)
        assert "\n" not in str(e.value) and "Stack trace" not in str(e.value) and "[bt]" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_booster(tmp_path / "absent.ubj")
    for good in ("model.ubj", "model.json"):  # a sound file reads as the booster it was
        np.testing.assert_array_equal(read_booster(d / good).inplace_predict(X), booster.inplace_predict(X))


def test_a_crash_reading_a_model_file_is_an_error(saved_model, tmp_path, monkeypatch):
    # Truncated UBJSON files made xgboost segfault (or ask for gigabytes): the child dies instead.
    d, _, _ = saved_model
    monkeypatch.setattr(gbdt, "_READ_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ModelFileError, match=r"cannot read XGBoost model .*model\.ubj: xgboost crashed reading it "
                                             r"\(signal 11, SIGSEGV\)"):
        read_booster(d / "model.ubj")


def test_the_compile_command_names_a_corrupt_model_file(saved_model, tmp_path, capsys):
    from libfraud.cli import main
    from libfraud.models.gbdt import GbdtParams, train_gbdt

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    model = train_gbdt(X[:300], y[:300], X[300:], y[300:], ["a", "b", "c"], GbdtParams(n_estimators=5, nthread=1))
    model_dir = tmp_path / "trained"
    model_dir.mkdir()
    model.save(model_dir / "model.ubj")
    (model_dir / "training.json").write_text("{}")
    assert TrainedGbdt.load(model_dir / "model.ubj").n_trees == model.n_trees
    data = (model_dir / "model.ubj").read_bytes()
    (model_dir / "model.ubj").write_bytes(data[: len(data) // 3])
    assert main(["compile", str(model_dir), "--out", str(tmp_path / "bundle")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"libfraud compile: cannot read XGBoost model {model_dir / 'model.ubj'}: ")
    assert "Traceback" not in err and "Stack trace" not in err
    (model_dir / "model.ubj").write_bytes(data)
    (model_dir / "model.ubj.meta.json").write_text('{"format_version": 1, ')
    assert main(["compile", str(model_dir), "--out", str(tmp_path / "bundle")]) == 2
    assert f"cannot read {model_dir / 'model.ubj.meta.json'}: " in capsys.readouterr().err


# ---------------------------------------------------------------- d. +/-inf in the caller's rows


@pytest.fixture(scope="module")
def rows_bundle(tmp_path_factory):
    schema, spec = payments()
    return random_bundle(tmp_path_factory.mktemp("inf") / "b", schema, spec, rounds=3)


@pytest.mark.parametrize("value,shown", [(math.inf, "+inf"), (-math.inf, "-inf")])
def test_score_features_refuses_inf_naming_row_and_feature(rows_bundle, value, shown):
    from libfraud import FraudError, Scorer
    scorer = Scorer(rows_bundle)
    rows = np.zeros((4, len(scorer.feature_names)), dtype=np.float32)
    rows[1, 0] = np.nan  # NaN is missing, not refused
    good = scorer.score_features(rows)
    assert np.isfinite(good).all()
    rows[2, 3] = value
    name = scorer.feature_names[3]
    for call in (scorer.score_features, scorer.contributions):
        with pytest.raises(FraudError, match=rf": row 2, feature 3 \({re.escape(name)}\): is {re.escape(shown)} ") as e:
            call(rows)
        assert e.value.status == "FRAUD_STATUS_INVALID_TRANSACTION"


def test_parity_refuses_inf_in_held_out_rows_as_the_core_does(tmp_path):
    booster, X = _booster()
    X = X.copy()
    X[5, 2] = np.inf
    with pytest.raises(ValueError, match=r"X_holdout contains \+/-inf"):
        check_tree_parity(booster, tmp_path / "never-read.so", X)


# -------------------------------------------------------------------------------- e. no trees


def test_a_model_of_no_trees_is_refused_naming_the_file_and_the_lost_base_score(tmp_path):
    booster, X = _booster(rounds=0)
    with pytest.raises(TreeStructureError, match=r"^m/model\.ubj: the model has no trees: xgboost would serve one "
                                                 r"constant, 0\.62\d*, for every row .* the compiled library 0\.5 "
                                                 r"\(it loses the base score\)"):
        compile_trees(booster, tmp_path / "x.so", source="m/model.ubj")
    schema, spec = payments()
    names = [f["name"] for f in spec["features"]][:4]
    booster.feature_names = names
    with pytest.raises(TreeStructureError, match=rf"^the model for {tmp_path / 'b'}: the model has no trees"):
        build_bundle(tmp_path / "b", booster=booster, feature_names=names, schema=schema, spec=spec,
                     X_holdout=X, threshold=0.5, threshold_rule="fixed", metrics={})


def test_the_compile_command_reports_a_compile_error_without_a_traceback(monkeypatch, tmp_path, capsys):
    from libfraud import cli, compile as compile_module
    from libfraud.export import TreeCompileError

    def crash(*args, **kwargs):
        raise TreeCompileError("TL2cgen crashed generating code for m/model.ubj: signal 11 (SIGSEGV)")
    monkeypatch.setattr(compile_module, "compile_model_dir", crash)
    assert cli.main(["compile", str(tmp_path / "m"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "libfraud compile: TL2cgen crashed" in err and "Traceback" not in err
