"""The tree exporter: XGBoost -> compiled library -> bundle, checked against xgboost itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from libfraud import _core
from libfraud.data.declared import Entity, EventIdColumn, FeatureSpec, NumericField, Schema, TimeColumn
from libfraud.export import (
    BundleError,
    ParityError,
    build_bundle,
    check_tree_parity,
    compile_trees,
    read_manifest,
    verify_bundle,
)
from libfraud.export.bundle import REQUIRED_KEYS

N_FEATURES = 8
NAMES = [f"f{i}" for i in range(N_FEATURES)]
# The trees read 8 pass-through numeric fields: a declared schema and spec the core computes them by.
SCHEMA = Schema(event_id=EventIdColumn("id"), time=TimeColumn("t", "ms"), entities=[Entity("account", "acct")],
                numeric=[NumericField(f"x{i}", f"X{i}") for i in range(N_FEATURES)]).to_json()
SPEC = FeatureSpec(tuple({"kind": "numeric", "field": f"x{i}", "name": n} for i, n in enumerate(NAMES)),
                   max_scan=256).to_json()
ALLOWED_SYMBOLS = {"predict", "get_num_feature", "get_num_target", "get_num_class",
                   "get_threshold_type", "get_leaf_output_type"}


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows where a missing f0 means fraud as often as a LOW f0 does, so XGBoost learns
    "missing goes left" (the branch NaN-as-a-value would miss)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    f0 = np.where(np.isnan(X[:, 0]), -2.0, X[:, 0])
    logit = -1.5 * f0 + np.nan_to_num(X[:, 1]) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    X, y = _data(3000, seed=1)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 2, "seed": 0}
    return xgb.train(params, xgb.DMatrix(X, label=y, feature_names=NAMES), num_boost_round=40)


@pytest.fixture(scope="module")
def compiled(booster, tmp_path_factory):
    return compile_trees(booster, tmp_path_factory.mktemp("trees") / "model.so", jobs=2)


@pytest.fixture(scope="module")
def holdout() -> np.ndarray:
    X, _ = _data(500, seed=2)
    return X


def _bundle_args(booster, holdout, **overrides):
    args = dict(booster=booster, feature_names=NAMES, schema=SCHEMA, spec=SPEC, X_holdout=holdout,
                threshold=0.5, threshold_rule="max F1 on valid", metrics={"valid": {"auprc": 0.5}})
    args.update(overrides)
    return args


def test_compile_result(compiled):
    assert compiled.path.is_file()
    assert compiled.num_features == N_FEATURES
    assert compiled.n_trees == 40
    assert compiled.translation_units >= 2  # main.c + at least one tree unit
    assert compiled.compiler


def test_parity_with_missing_values(booster, compiled, holdout):
    report = check_tree_parity(booster, compiled.path, holdout)
    assert report.passed, report
    assert report.max_abs_diff <= 1e-5
    assert report.reference == "xgboost inplace_predict"
    assert report.rows == len(holdout)
    assert report.rows_with_missing >= 0.1 * report.rows
    assert report.to_dict()["passed"] is True
    assert report.require() is report


def test_parity_adds_missing_rows_to_a_dense_holdout(booster, compiled, holdout):
    dense = np.nan_to_num(holdout, nan=0.25)
    report = check_tree_parity(booster, compiled.path, dense)
    assert report.rows > len(dense)  # copies with NaNs were added
    assert report.rows_with_missing >= 0.1 * report.rows
    assert report.passed, report


def test_missing_value_takes_xgboost_branch(booster, compiled):
    # f0 missing must follow the learned default direction, not "NaN < threshold is false".
    lib = _core.TreeLibrary(str(compiled.path))
    rows = np.zeros((4, N_FEATURES), dtype=np.float32)
    rows[0, 0] = np.nan
    rows[1, :] = np.nan
    rows[2, [0, 3, 5]] = np.nan
    rows[3, 0] = 5.0  # a present, high f0: the other branch
    got = lib.predict(rows)
    want = booster.inplace_predict(rows)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert abs(got[0] - got[3]) > 0.1  # the row with NaN is not scored like a large value


def test_predict_is_repeatable_and_row_by_row_equal(compiled, holdout):
    lib = _core.TreeLibrary(str(compiled.path))
    first = lib.predict(holdout)
    second = lib.predict(holdout)  # predict ADDS into its output: it must be zeroed each row
    np.testing.assert_array_equal(first, second)
    one_by_one = np.concatenate([lib.predict(holdout[i:i + 1]) for i in range(20)])
    np.testing.assert_array_equal(one_by_one, first[:20])
    assert first.dtype == np.float32 and first.shape == (len(holdout),)
    assert np.all((first > 0) & (first < 1))


def test_predict_from_many_threads(compiled, holdout):
    lib = _core.TreeLibrary(str(compiled.path))
    want = lib.predict(holdout)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: lib.predict(holdout), range(8)))
    for got in results:
        np.testing.assert_array_equal(got, want)


def test_predict_refuses_bad_input(compiled):
    lib = _core.TreeLibrary(str(compiled.path))
    assert lib.num_features == N_FEATURES
    with pytest.raises(ValueError, match="columns"):
        lib.predict(np.zeros((3, N_FEATURES + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        lib.predict(np.zeros(N_FEATURES, dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        lib.predict(np.zeros((3, N_FEATURES), dtype=np.float64))
    assert lib.predict(np.zeros((0, N_FEATURES), dtype=np.float32)).shape == (0,)


def test_exports_only_the_entry_points(compiled):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not installed")
    out = subprocess.run([nm, "-D", "--defined-only", str(compiled.path)],
                         capture_output=True, text=True, check=True).stdout
    symbols = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert {"predict", "get_num_feature"} <= symbols
    assert symbols <= ALLOWED_SYMBOLS, symbols - ALLOWED_SYMBOLS


def test_each_load_gets_its_own_library(compiled, tmp_path):
    # glibc returns an already-loaded object when a name it was ever opened under (or the file's
    # identity) matches. Two live loads of one library, then a different library: it must be the
    # different one, whatever names and fd numbers the loader reused.
    X, y = _data(500, seed=5)
    other = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                      xgb.DMatrix(X[:, :3], label=y), num_boost_round=5)
    other_so = compile_trees(other, tmp_path / "other.so", jobs=1).path
    first, second = _core.TreeLibrary(str(compiled.path)), _core.TreeLibrary(str(compiled.path))
    del first
    assert _core.TreeLibrary(str(other_so)).num_features == 3
    del second
    assert _core.TreeLibrary(str(other_so)).num_features == 3


def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.so"
    with pytest.raises(_core.FraudError, match=str(missing)):
        _core.TreeLibrary(str(missing))
    text = tmp_path / "not_a_library.so"
    text.write_text("hello\n")
    with pytest.raises(_core.FraudError, match=str(text)):
        _core.TreeLibrary(str(text))


def test_library_without_entry_points_is_refused(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "other.c"
    src.write_text("int something(void) { return 1; }\n")
    so = tmp_path / "other.so"
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    with pytest.raises(_core.FraudError, match="predict"):
        _core.TreeLibrary(str(so))


def test_untrimmed_early_stopped_booster_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = (rng.random(400) < 0.3).astype(np.float32)  # noise: stops early
    dtrain, dvalid = xgb.DMatrix(X[:300], label=y[:300]), xgb.DMatrix(X[300:], label=y[300:])
    bst = xgb.train({"objective": "binary:logistic", "nthread": 2, "max_depth": 2}, dtrain, num_boost_round=50,
                    evals=[(dvalid, "valid")], early_stopping_rounds=3, verbose_eval=False)
    assert bst.num_boosted_rounds() != bst.best_iteration + 1
    with pytest.raises(ValueError, match="best_iteration"):
        compile_trees(bst, tmp_path / "m.so")
    assert not (tmp_path / "m.so").exists()
    trimmed = bst[: bst.best_iteration + 1]
    result = compile_trees(trimmed, tmp_path / "m.so")
    assert result.n_trees == bst.best_iteration + 1


def test_other_objective_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 3)).astype(np.float32)
    bst = xgb.train({"objective": "reg:squarederror", "nthread": 2}, xgb.DMatrix(X, label=X[:, 0]), 2)
    with pytest.raises(ValueError, match="binary:logistic"):
        compile_trees(bst, tmp_path / "m.so")


def test_build_bundle_writes_a_verified_manifest(booster, holdout, tmp_path):
    out = build_bundle(tmp_path / "bundle", **_bundle_args(booster, holdout, extra={"dataset": {"rows": 3000}}))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == read_manifest(out)
    for key in REQUIRED_KEYS:
        assert key in manifest, key
    # format_version 2 (export/SCHEMA.md): the manifest carries the declared schema and spec.
    assert manifest["format"] == "libfraud-bundle" and manifest["format_version"] == 2
    assert manifest["dataset"] == {"rows": 3000}
    assert manifest["features"] == {"spec": SPEC, "order": NAMES}
    assert manifest["schema"] == SCHEMA
    assert [e["name"] for e in manifest["schema"]["entities"]] == ["account"]
    assert manifest["schema"]["time"]["unit"] == "ms"
    model = manifest["model"]
    assert model["kind"] == "gbdt" and model["num_features"] == N_FEATURES and model["n_trees"] == 40
    assert model["best_iteration"] == 39
    assert set(manifest["tools"]) == {"libfraud", "xgboost", "treelite", "tl2cgen", "compiler", "python", "numpy"}

    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert by_name[model["artifact"]]["target"] == "tl2cgen-c-shared"
    assert {a["target"] for a in manifest["artifacts"]} == {"tl2cgen-c-shared", "xgboost-ubjson",
                                                          "libfraud-tree-shap"}
    import hashlib
    for a in manifest["artifacts"]:
        data = (out / a["path"]).read_bytes()
        assert len(data) == a["size"]
        assert hashlib.sha256(data).hexdigest() == a["sha256"]
    parity = manifest["parity"][model["artifact"]]
    assert parity["passed"] is True and parity["max_abs_diff"] <= parity["tolerance"] == 1e-5
    assert parity["rows_with_missing"] > 0
    assert verify_bundle(out) == []

    # the compiled library in the bundle scores like the booster saved beside it
    saved = xgb.Booster(model_file=str(out / "trees" / "model.ubj"))
    lib = _core.TreeLibrary(str(out / by_name[model["artifact"]]["path"]))
    np.testing.assert_allclose(lib.predict(holdout), saved.inplace_predict(holdout), rtol=0, atol=1e-5)

    # tampering is found (the library is closed first: rewriting a mapped library crashes)
    del lib
    so = out / by_name["trees"]["path"]
    blob = bytearray(so.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    so.write_bytes(bytes(blob))
    problems = verify_bundle(out)
    assert len(problems) == 1 and "model.so" in problems[0] and "sha256" in problems[0]


def test_build_bundle_replaces_without_an_atomic_exchange(booster, holdout, tmp_path, monkeypatch):
    from libfraud.export import bundle

    out = tmp_path / "bundle"
    build_bundle(out, **_bundle_args(booster, holdout, threshold=0.3))
    monkeypatch.setattr(bundle, "_exchange", lambda a, b: False)  # a kernel without renameat2
    build_bundle(out, **_bundle_args(booster, holdout, threshold=0.6))
    assert read_manifest(out)["threshold"] == 0.6
    assert verify_bundle(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_build_bundle_replaces_a_bundle_but_not_other_directories(booster, holdout, tmp_path):
    out = tmp_path / "bundle"
    build_bundle(out, **_bundle_args(booster, holdout, threshold=0.3))
    old_lib = _core.TreeLibrary(str(out / "trees" / "model.so"))  # still loaded during the swap
    smaller = booster[:20]
    build_bundle(out, **_bundle_args(smaller, holdout, threshold=0.7))
    assert read_manifest(out)["threshold"] == 0.7
    assert read_manifest(out)["model"]["n_trees"] == 20
    assert verify_bundle(out) == []
    # same path, new file: the loader must not hand back the library already loaded from it
    new_lib = _core.TreeLibrary(str(out / "trees" / "model.so"))
    np.testing.assert_allclose(new_lib.predict(holdout), smaller.inplace_predict(holdout), rtol=0, atol=1e-5)
    np.testing.assert_allclose(old_lib.predict(holdout), booster.inplace_predict(holdout), rtol=0, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temporary directories left

    other = tmp_path / "precious"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a libfraud bundle"):
        build_bundle(other, **_bundle_args(booster, holdout))
    assert (other / "data.txt").read_text() == "keep me"


def test_failed_parity_writes_no_bundle(booster, holdout, tmp_path, monkeypatch):
    real = _core.TreeLibrary

    class Skewed:  # the compiled predictor, off by 1e-3
        def __init__(self, path):
            self._lib = real(path)

        def predict(self, X):
            return self._lib.predict(X) + np.float32(1e-3)

    monkeypatch.setattr(_core, "TreeLibrary", Skewed)
    out = tmp_path / "bundle"
    with pytest.raises(ParityError, match=r"max abs diff .* at row \d+"):
        build_bundle(out, **_bundle_args(booster, holdout))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_verify_bundle_reports_a_broken_manifest(tmp_path):
    assert verify_bundle(tmp_path)  # no manifest
    # Version 2 is current now (declared schemas): version 1 is the one refused.
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "libfraud-bundle", "format_version": 1}))
    with pytest.raises(BundleError, match="format_version"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format": "libfraud-bundle", "format_version": 2,
        "artifacts": [{"name": "trees", "path": "../x.so", "target": "tl2cgen-c-shared",
                       "precision": "float32", "sha256": "0" * 64, "size": 1}],
    }))
    problems = verify_bundle(tmp_path)
    assert any("'..'" in p for p in problems)
    assert any("missing key 'parity'" in p for p in problems)


# ------------------------------------------------------------------- bring your own model

BYOM_TOML = """
[schema]
name = "byom"

[event_id]
column = "ID"

[time]
column = "TS"
unit = "ms"

[amount]
column = "AMT"

[[entities]]
name = "customer"
column = "CUST"

[[entities]]
name = "terminal"
column = "TERM"

[[numeric]]
name = "risk"
column = "RISK"

[[categorical]]
name = "channel"
column = "CHAN"
codes = "string"

[label]
column = "FRAUD"
delay = "1d"

[[feature]]
kind = "amount"

[[feature]]
kind = "log_amount"

[[feature]]
kind = "calendar"
part = "hour"

[[feature]]
kind = "window"
entity = "customer"
agg = "count"
window = "1d"

[[feature]]
kind = "window"
entity = "customer"
agg = "mean"
field = "amount"
window = "7d"

[[feature]]
kind = "window"
entity = "terminal"
agg = "count"
window = "1d"

[[feature]]
kind = "time_since_last"
entity = "customer"

[[feature]]
kind = "distinct"
entity = "customer"
of = { entity = "terminal" }
window = "7d"

[[feature]]
kind = "label"
entity = "terminal"
agg = "fraud_count"
window = "7d"
offset = "1d"

[[feature]]
kind = "categorical"
field = "channel"

[[feature]]
kind = "numeric"
field = "risk"
"""
# The user's own choice: a subset of the spec's features, in another order, with the
# pass-through numeric field among them.
BYOM_ORDER = ["risk", "terminal_fraud_count_7d_after_24h", "customer_count_24h", "amount",
              "customer_amount_mean_7d", "customer_distinct_terminals_7d"]


def _byom_frame(n: int, seed: int):
    """Card-like events in the schema's columns: fraud is likelier with a high risk, a big amount,
    and at terminals that had fraud."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.cumsum(rng.integers(0, 600_000, n))
    cust, term = rng.integers(0, 200, n), rng.integers(0, 40, n)
    amount = np.round(rng.lognormal(3, 1, n), 2)
    risk = rng.normal(size=n)
    risk[rng.random(n) < 0.1] = np.nan
    bad_terms = term < 4
    logit = -4 + 1.5 * np.nan_to_num(risk) + 0.01 * amount + 2.0 * bad_terms
    fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return pd.DataFrame({"ID": np.arange(n) + 10, "TS": ts, "AMT": amount, "CUST": cust, "TERM": term,
                         "RISK": risk, "CHAN": rng.choice(["ecom", "pos", "atm"], n), "FRAUD": fraud})


@pytest.fixture(scope="module")
def byom(tmp_path_factory):
    """(schema, spec, frame, booster): XGBoost trained by the user, outside libfraud.train, on
    features replayed through the core (libfraud.features.replay)."""
    from libfraud.data.declared import load_config, load_events
    from libfraud.features import replay
    d = tmp_path_factory.mktemp("byom")
    (d / "byom.toml").write_text(BYOM_TOML)
    schema, spec = load_config(d / "byom.toml")
    frame = _byom_frame(4000, seed=3)
    events, labels = load_events(frame, schema)
    X = replay(events, labels, schema, spec).frame()[BYOM_ORDER].to_numpy(np.float32)
    y = frame["FRAUD"].to_numpy()
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 2, "seed": 0},
                        xgb.DMatrix(X[:3000], label=y[:3000], feature_names=BYOM_ORDER), num_boost_round=30)
    return schema.to_json(), spec.to_json(), frame, booster, X


def _byom_args(byom, **overrides):
    schema, spec, _, booster, X = byom
    args = dict(booster=booster, feature_names=BYOM_ORDER, schema=schema, spec=spec, X_holdout=X[3000:],
                threshold=0.5, threshold_rule="the user's", metrics={})
    args.update(overrides)
    return args


def test_your_own_model_on_a_subset_of_the_spec_serves_its_scores(byom, tmp_path):
    from libfraud import Scorer
    from libfraud.data.declared import Schema, load_labels
    schema, spec, frame, booster, X = byom
    out = build_bundle(tmp_path / "bundle", **_byom_args(byom))
    manifest = read_manifest(out)
    # The bundle's spec is the model's features, in the model's order, each as the user declared it.
    by_name = {f["name"]: f for f in spec["features"]}
    assert manifest["features"]["order"] == BYOM_ORDER
    assert manifest["features"]["spec"]["features"] == [by_name[n] for n in BYOM_ORDER]
    assert manifest["features"]["spec"]["max_scan"] == spec["max_scan"]
    assert verify_bundle(out) == []

    scorer = Scorer(out)
    assert scorer.feature_names == BYOM_ORDER
    labels = load_labels(frame, Schema.from_json(schema))
    served, rows = [], []
    for i in range(len(frame)):  # as a switch serves: score, store, then the label when known
        event = frame.iloc[i:i + 1]
        rows.append(scorer.features(event).to_numpy())
        served.append(scorer.score_and_ingest(event))
        scorer.label(labels.take(labels.event_id == frame["ID"].iat[i]))
    served, rows = np.concatenate(served), np.concatenate(rows)
    # The training replay's rows exactly, and xgboost's own scores on them (the bundle's tolerance).
    np.testing.assert_array_equal(rows, X)
    assert np.isnan(X[:, 0]).any() and (X[:, 1] > 0).any()  # missing risk, and terminal frauds, are seen
    assert np.max(np.abs(served - booster.inplace_predict(X))) <= 1e-5
    assert scorer.stats()["store_labels"] == len(frame)


def test_a_model_reading_a_feature_the_spec_lacks_is_refused_by_name(byom, tmp_path):
    _, _, _, booster, X = byom
    names = BYOM_ORDER[:2] + ["merchant_count_1h"] + BYOM_ORDER[3:]
    renamed = xgb.Booster(model_file=bytearray(booster.save_raw("ubj")))
    renamed.feature_names = names
    with pytest.raises(ValueError, match="the model reads feature 'merchant_count_1h', which the feature spec "
                                         "does not define"):
        build_bundle(tmp_path / "bundle", **_byom_args(byom, booster=renamed, feature_names=names))
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary directory left


@pytest.mark.parametrize("change, words", [
    ("unknown_entity", "'merchant' is not an entity of the schema"),
    ("no_amount", "the schema has no amount"),
    ("too_many_entities", "schema.entities: must be a list of 1 to 16 entity types"),
])
def test_the_compiler_refuses_a_bundle_the_core_would_refuse(byom, tmp_path, change, words):
    # Past the Python-side checks (JSON forms edited by hand): the core's own refusal stops the
    # write, with its reason, and nothing is left behind.
    schema, spec, *_ = byom
    schema, spec = json.loads(json.dumps(schema)), json.loads(json.dumps(spec))
    by_name = {f["name"]: f for f in spec["features"]}
    if change == "unknown_entity":
        by_name["customer_count_24h"]["entity"] = "merchant"
    elif change == "no_amount":
        schema["amount"] = None
    else:
        schema["entities"] += [{"name": f"e{i}", "column": f"E{i}", "ids": "int", "required": True}
                               for i in range(15)]
    with pytest.raises(BundleError, match="the core refuses the bundle it was about to write") as error:
        build_bundle(tmp_path / "bundle", **_byom_args(byom, schema=schema, spec=spec))
    assert error.value.__cause__ is not None
    assert getattr(error.value.__cause__, "status", None) == "FRAUD_STATUS_BUNDLE_INVALID", str(error.value)
    assert words in str(error.value), str(error.value)
    assert list(tmp_path.iterdir()) == []
