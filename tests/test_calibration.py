"""Calibrated probabilities (export/BUNDLE.md "calibration"): the fitters on data whose true
probabilities are known, the Calibrator's manifest form and validation, and bundles whose core
serves calibrated scores equal to Calibrator.apply of xgboost's output."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from libfraud import FraudError, Scorer, _core
from libfraud.calibration import CLIP, MAX_POINTS, MAX_SLOPE, Calibrator, _thin, fit_calibrator
from libfraud.export import ParityError, build_bundle, read_manifest, verify_bundle
from libfraud.export.bundle import check_provenance, file_fingerprint

INVALID = "FRAUD_STATUS_BUNDLE_INVALID"
INFLATION = np.log(20.0)  # what scale_pos_weight ~ 20 does to the logit


def _draws(n: int, seed: int):
    """(p_true, y, score): true fraud probabilities around 2%, labels drawn from them, and the
    score an inflated model gives (its logit shifted up by log 20, as scale_pos_weight does)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-4.6, 1.3, n)
    p_true = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < p_true).astype(np.float64)
    score = (1 / (1 + np.exp(-(z + INFLATION)))).astype(np.float32)
    return p_true, y, score


def _brier(p, y) -> float:
    return float(np.mean((np.asarray(p, dtype=np.float64) - y) ** 2))


@pytest.fixture(scope="module")
def draws():
    return _draws(40_000, seed=1), _draws(40_000, seed=2)  # fit, held out


# ------------------------------------------------------------------------------- fitting, applying


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_recovers_the_true_probabilities(draws, method):
    (_, y_fit, s_fit), (p_true, y, s) = draws
    cal = fit_calibrator(y_fit, s_fit, method)
    out = cal.apply(s)
    assert out.dtype == np.float32 and out.shape == s.shape
    raw, calibrated, oracle = _brier(s, y), _brier(out, y), _brier(p_true, y)
    assert s.mean() > 5 * p_true.mean()  # the inflated score overstates fraud
    assert calibrated < 0.3 * raw  # raw ~0.08, calibrated ~0.019
    assert calibrated < oracle * 1.01  # within 1% of the true probabilities' own Brier score
    assert abs(out.mean() - p_true.mean()) < 0.1 * p_true.mean()
    assert np.all(np.diff(out[np.argsort(s, kind="stable")]) >= 0)  # the ranking is kept
    if method == "platt":  # the generator is in Platt's family: a = 1, b = -log 20
        assert abs(cal.a - 1) < 0.05 and abs(cal.b + INFLATION) < 0.15
    assert cal.fitted_on == f"{len(y_fit)} rows, {int(y_fit.sum())} positive"


def test_platt_apply_is_the_documented_formula():
    cal = Calibrator("platt", a=1.3, b=-2.0)
    p = np.array([0.0, 1e-9, 1e-7, 1e-3, 0.5, 0.9, 1.0 - 1e-8, 1.0, np.nan], dtype=np.float32)
    c = np.clip(p.astype(np.float64), CLIP, 1 - CLIP)
    want = 1 / (1 + np.exp(-(1.3 * np.log(c / (1 - c)) - 2.0)))
    np.testing.assert_array_equal(cal.apply(p), want.astype(np.float32))
    assert cal.apply(0.0) == cal.apply(1e-9)  # the clip, below
    assert np.isnan(cal.apply(np.nan))
    # Saturating parameters give 0 or 1, not NaN.
    steep = Calibrator("platt", a=1e300, b=0.0)
    np.testing.assert_array_equal(steep.apply([0.1, 0.5, 0.9]), np.float32([0.0, 0.5, 1.0]))


def test_isotonic_without_slope_limit_equals_sklearn(draws):
    from sklearn.isotonic import IsotonicRegression
    (_, y_fit, s_fit), (_, _, s) = draws
    cal = fit_calibrator(y_fit, s_fit, "isotonic", max_slope=None)
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s_fit.astype(np.float64), y_fit)
    assert cal.x == tuple(iso.X_thresholds_) and cal.y == tuple(iso.y_thresholds_)
    probe = np.concatenate([s, np.float32([0.0, 1.0, s_fit.min(), s_fit.max()])])
    np.testing.assert_allclose(cal.apply(probe), iso.predict(probe.astype(np.float64)), rtol=0, atol=6e-8)


def test_isotonic_slope_is_limited(draws):
    (_, y_fit, s_fit), _ = draws
    free = fit_calibrator(y_fit, s_fit, "isotonic", max_slope=None)
    assert np.max(np.diff(free.y) / np.diff(free.x)) > 10 * MAX_SLOPE  # sklearn's steps are steep
    cal = fit_calibrator(y_fit, s_fit, "isotonic")
    assert np.max(np.diff(cal.y) / np.diff(cal.x)) <= MAX_SLOPE
    assert cal.x[0] >= free.x[0] and cal.x[-1] <= free.x[-1] and len(cal.x) < len(free.x)
    # So a 1-ulp difference between two tree outputs moves the calibrated score by little.
    grid = np.linspace(0.001, 0.999, 5001, dtype=np.float32)
    bumped = np.nextafter(grid, np.float32(1))
    assert np.max(np.abs(cal.apply(bumped).astype(np.float64) - cal.apply(grid))) <= MAX_SLOPE * 6e-8 + 6e-8


def test_thinning_keeps_the_ends_and_the_monotone_shape():
    x = np.linspace(0, 1, 3000)
    y = np.sqrt(x)
    tx, ty = _thin(x, y)
    assert len(tx) == MAX_POINTS and tx[0] == 0 and tx[-1] == 1 and ty[-1] == 1
    assert np.all(np.diff(tx) > 0) and np.all(np.diff(ty) >= 0)
    assert set(tx) <= set(x)  # a subset of the points: chords no steeper than the curve
    Calibrator("isotonic", x=tuple(tx), y=tuple(ty))  # within the core's limits
    small = (np.array([0.1, 0.2]), np.array([0.3, 0.4]))
    assert _thin(*small) == small


def test_fitting_is_deterministic(draws):
    (_, y_fit, s_fit), _ = draws
    for method in ("platt", "isotonic"):
        assert fit_calibrator(y_fit, s_fit, method) == fit_calibrator(y_fit.copy(), s_fit.copy(), method)


# ---------------------------------------------------------------------------- manifest form, errors


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrator_round_trips_through_the_manifest(draws, method):
    (_, y_fit, s_fit), (_, _, s) = draws
    cal = fit_calibrator(y_fit, s_fit, method, fitted_on="valid split")
    section = json.loads(json.dumps(cal.to_manifest(), allow_nan=False))
    assert section["method"] == method and section["fitted_on"] == "valid split"
    assert set(section) == ({"method", "a", "b", "fitted_on"} if method == "platt"
                            else {"method", "x", "y", "fitted_on"})
    again = Calibrator.from_manifest(section)
    assert again == cal
    np.testing.assert_array_equal(again.apply(s), cal.apply(s))


@pytest.mark.parametrize("y, p, words", [
    (np.zeros((4, 1)), np.zeros(4), "1-D"),
    ([0, 1, 0], [0.1, 0.2], "3 labels but p has 2"),
    ([], [], "empty"),
    ([0, 2, 1], [0.1, 0.2, 0.3], "0/1 labels; y[1] = 2.0"),
    ([0, 0.5, 1], [0.1, 0.2, 0.3], "0/1 labels; y[1] = 0.5"),
    (["0", "1"], [0.1, 0.2], "0/1 labels, got dtype"),
    ([1, 1, 1], [0.1, 0.2, 0.3], "only frauds"),
    ([0, 0, 0], [0.1, 0.2, 0.3], "only non-frauds"),
    ([0, 1, 1], [0.1, np.nan, 0.3], "p[1] = nan"),
    ([0, 1, 1], [0.1, 0.2, np.inf], "p[2] = inf"),
    ([0, 1, 1], [0.1, 1.5, 0.3], "in [0, 1]; p[1] = 1.5"),
    ([0, 1, 1], [-0.1, 0.5, 0.3], "p[0] = -0.1"),
    ([0, 1, 1], [0.2, 0.2, 0.2], "single distinct value"),
])
def test_bad_inputs_are_refused_by_name(y, p, words):
    for method in ("platt", "isotonic"):
        with pytest.raises(ValueError) as error:
            fit_calibrator(y, p, method)
        assert words in str(error.value)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="method must be one of platt, isotonic, got 'beta'"):
        fit_calibrator([0, 1], [0.1, 0.9], "beta")
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="max_slope must be"):
            fit_calibrator([0, 1], [0.1, 0.9], "isotonic", max_slope=bad)


@pytest.mark.parametrize("section, words", [
    ([1, 2], "calibration must be an object"),
    ({"method": "beta"}, "calibration.method is 'beta'"),
    ({"a": 1, "b": 0}, "calibration.method is None"),
    ({"method": "platt", "a": 1}, "missing keys ['b']"),
    ({"method": "platt", "a": 1, "b": 0, "clip": 1e-6}, "unknown keys ['clip']"),
    ({"method": "platt", "a": "1", "b": 0}, "calibration.a must be a number"),
    ({"method": "platt", "a": True, "b": 0}, "calibration.a must be a number"),
    ({"method": "platt", "a": float("inf"), "b": 0}, "calibration.a must be finite"),
    ({"method": "platt", "a": 1, "b": float("nan")}, "calibration.b must be finite"),
    ({"method": "platt", "a": 0, "b": 0}, "calibration.a must be > 0"),
    ({"method": "platt", "a": 1, "b": 0, "fitted_on": 3}, "fitted_on must be a string"),
    ({"method": "isotonic", "x": [0, 1]}, "missing keys ['y']"),
    ({"method": "isotonic", "x": "01", "y": [0, 1]}, "calibration.x must be a list"),
    ({"method": "isotonic", "x": [0.5], "y": [0.5]}, "calibration.x has 1 points"),
    ({"method": "isotonic", "x": list(np.linspace(0, 1, MAX_POINTS + 1)), "y": [0.5] * (MAX_POINTS + 1)},
     f"has {MAX_POINTS + 1} points"),
    ({"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 1]}, "calibration.x has 3 points but calibration.y has 2"),
    ({"method": "isotonic", "x": [0, 0.5, 0.5], "y": [0, 0.5, 1]}, "strictly increasing: x[2]"),
    ({"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 0.6, 0.5]}, "non-decreasing: y[2]"),
    ({"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 0.5, 1.5]}, "in [0, 1]: y[2]"),
    ({"method": "isotonic", "x": [0, None, 1], "y": [0, 0.5, 1]}, "calibration.x[1] must be a number"),
    ({"method": "isotonic", "x": [0, 1], "y": [0, 1], "a": 1}, "unknown keys ['a']"),
])
def test_bad_manifest_sections_are_refused_by_name(section, words):
    with pytest.raises(ValueError) as error:
        Calibrator.from_manifest(section)
    assert words in str(error.value)


def test_provenance_is_validated_by_field(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    fp = file_fingerprint(data)
    assert fp.startswith("sha256:") and len(fp) == 71
    good = {"name": "fraud-gbdt", "version": "1.2.0", "data_fingerprint": fp}
    assert check_provenance(good, "2024-05-01T00:00:00Z") == {**good, "source_revision": None,
                                                                "created_utc": "2024-05-01T00:00:00Z"}
    for change, words in [
        ({"name": ""}, "provenance.name must be a non-empty string"),
        ({"version": 3}, "provenance.version must be a non-empty string"),
        ({"data_fingerprint": "md5:00"}, "provenance.data_fingerprint must be 'sha256:'"),
        ({"data_fingerprint": "sha256:" + "A" * 64}, "64 lowercase hex"),
        ({"source_revision": ""}, "provenance.source_revision must be"),
        ({"created_utc": "2024-05-01 00:00"}, "provenance.created_utc must be an ISO-8601"),
        ({"created_utc": "2024-13-01T00:00:00Z"}, "provenance.created_utc is not a valid time"),
        ({"owner": "me"}, "unknown keys ['owner']"),
    ]:
        with pytest.raises(ValueError) as error:
            check_provenance({**good, **change}, "2024-05-01T00:00:00Z")
        assert words in str(error.value)


# ------------------------------------------------------------------------------- bundles, served


def _bundle_args(training, **changes):
    r = training
    args = dict(booster=r.model.booster, feature_names=list(r.model.feature_names), schema=r.schema,
                spec=r.spec, X_holdout=r.X_test[1500:], threshold=r.threshold,
                threshold_rule=r.threshold_rule, metrics=r.metrics)
    args.update(changes)
    return args


@pytest.fixture(scope="module")
def calibrators(small_training):
    """Both methods fitted on the first half of the test rows (the bundles hold out the rest)."""
    r = small_training
    p = r.model.booster.inplace_predict(np.ascontiguousarray(r.X_test[:1500], dtype=np.float32))
    return {m: fit_calibrator(r.y_test[:1500], p, m, fitted_on="test[:1500]") for m in ("platt", "isotonic")}


PROVENANCE = {"name": "fraud-gbdt", "version": "7", "data_fingerprint": "sha256:" + "ab" * 32,
              "source_revision": "21a266a"}


@pytest.fixture(scope="module")
def calibrated_bundles(tmp_path_factory, small_training, calibrators):
    out = tmp_path_factory.mktemp("calibrated")
    bundles = {}
    for method, cal in calibrators.items():
        # A threshold on the calibrated scale: for a monotone calibrator, the raw one mapped.
        threshold = float(cal.apply(small_training.threshold))
        bundles[method] = build_bundle(out / method, **_bundle_args(
            small_training, calibration=cal if method == "platt" else cal.to_manifest(),
            threshold=threshold, provenance=PROVENANCE if method == "platt" else None))
    return bundles


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_a_calibrated_bundle_serves_calibrated_scores(small_training, calibrators, calibrated_bundles, method):
    cal, bundle = calibrators[method], calibrated_bundles[method]
    manifest = read_manifest(bundle)
    assert manifest["calibration"] == json.loads(json.dumps(cal.to_manifest()))
    assert Calibrator.from_manifest(manifest["calibration"]) == cal
    assert verify_bundle(bundle) == []
    rows = np.ascontiguousarray(small_training.X_test, dtype=np.float32)
    trees = small_training.model.booster.inplace_predict(rows)
    reference = cal.apply(trees)
    for served in (_core.Engine(str(bundle)).score_features(rows), Scorer(bundle).score_features(rows)):
        assert served.dtype == np.float32
        assert np.max(np.abs(served.astype(np.float64) - reference)) <= 1e-5
        assert np.max(np.abs(served - trees)) > 1e-2  # calibrated: not the trees' output
    expected = float(cal.apply(small_training.threshold))  # the threshold is on the calibrated scale
    assert Scorer(bundle).threshold == manifest["threshold"] == pytest.approx(expected)


def test_events_are_scored_on_the_calibrated_scale(small_transactions, small_bundle, calibrators, calibrated_bundles):
    # The event path (Model::score), against the uncalibrated bundle of the same trees.
    part = small_transactions.iloc[:3_000]
    raw = Scorer(small_bundle).score_and_ingest(part)
    for method, cal in calibrators.items():
        served = Scorer(calibrated_bundles[method]).score_and_ingest(part)
        assert np.max(np.abs(served.astype(np.float64) - cal.apply(raw))) <= 1e-5
    # Calibration brings the mean score towards the fraud rate (raw: inflated by scale_pos_weight).
    rate = float(part["label"].mean())
    platt = Scorer(calibrated_bundles["platt"]).score_and_ingest(part)
    assert abs(platt.mean() - rate) < abs(raw.mean() - rate)


def test_an_uncalibrated_bundle_has_no_section_and_serves_the_trees(small_training, small_bundle):
    manifest = read_manifest(small_bundle)
    assert "calibration" not in manifest and "name" not in manifest["model"]
    rows = np.ascontiguousarray(small_training.X_test[:500], dtype=np.float32)
    served = _core.Engine(str(small_bundle)).score_features(rows)
    assert np.max(np.abs(served - small_training.model.booster.inplace_predict(rows))) <= 1e-5


def test_provenance_is_written_into_the_model_section(calibrated_bundles):
    manifest = read_manifest(calibrated_bundles["platt"])
    model = manifest["model"]
    assert {k: model[k] for k in PROVENANCE} == PROVENANCE
    assert model["created_utc"] == manifest["created_utc"]  # default: when the bundle was written
    assert model["artifact"] == "trees" and model["kind"] == "gbdt"  # the core's keys are kept


def test_bad_calibration_or_provenance_is_refused_before_compiling(small_training, tmp_path):
    for changes, error in [
        ({"calibration": {"method": "platt", "a": -1, "b": 0}}, "calibration.a must be > 0"),
        ({"calibration": "platt"}, "calibration must be a Calibrator or its manifest dict"),
        # A raw-scale threshold no calibrated score reaches: on the wrong scale.
        ({"calibration": Calibrator("platt", a=1.0, b=-10.0), "threshold": 0.999},
         "above every calibrated score (at most 0.99"),
        ({"provenance": {**PROVENANCE, "name": ""}}, "provenance.name must be a non-empty string"),
        ({"extra": {"calibration": {}}}, "extra may not set the manifest's own keys ['calibration']"),
    ]:
        with pytest.raises(ValueError) as e:
            build_bundle(tmp_path / "b", **_bundle_args(small_training, **changes))
        assert error in str(e.value)
    assert list(tmp_path.iterdir()) == []


class _Skewed(Calibrator):
    """A reference 1e-4 above what the bundle's section (the real calibrator's) makes the core serve."""

    def apply(self, p):
        return (super().apply(p) + np.float32(1e-4)).astype(np.float32)


def test_a_bundle_whose_served_scores_miss_the_reference_is_not_written(small_training, calibrators, tmp_path):
    good = calibrators["platt"]
    skewed = _Skewed("platt", a=good.a, b=good.b)
    with pytest.raises(ParityError, match=r"differ from Calibrator.apply \(platt\) of xgboost's probabilities "
                                          r"by 0.0001 at held-out row \d+"):
        build_bundle(tmp_path / "b", **_bundle_args(small_training, calibration=skewed,
                                                    threshold=float(good.apply(small_training.threshold))))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- corrupt sections, refused


def _corrupt(bundle, tmp_path, edit):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    path = copy / "manifest.json"
    manifest = json.loads(path.read_text())
    text = edit(manifest)
    path.write_text(text if isinstance(text, str) else json.dumps(manifest, indent=2))
    return copy


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["calibration"].update(method="beta"), "'calibration.method' is \"beta\""),
    (lambda m: m["calibration"].update(a="1"), "'calibration.a' must be a number"),
    (lambda m: m["calibration"].update(a=-0.5), "'calibration.a' must be > 0"),
    (lambda m: m["calibration"].pop("b"), "missing key 'calibration.b'"),
    (lambda m: m["calibration"].update(clip=1e-3), "unknown key 'calibration.clip'"),
    (lambda m: json.dumps(m).replace('"a": ', '"a": NaN, "_": '), "near 'calibration.a'"),
    (lambda m: m.update(calibration={"method": "isotonic", "x": [0.1, 0.05], "y": [0.0, 0.5]}),
     "'calibration.x' must be strictly increasing"),
    (lambda m: m.update(calibration={"method": "isotonic", "x": [0.1, 0.5], "y": [0.5, 0.0]}),
     "'calibration.y' must be non-decreasing"),
    (lambda m: m.update(calibration={"method": "isotonic", "x": [0.1, 0.5], "y": [0.0, 1.01]}),
     "'calibration.y' must lie in [0, 1]"),
    (lambda m: m.update(calibration={"method": "isotonic", "x": [0.1, 0.5, 0.7], "y": [0.0, 1.0]}),
     "'calibration.x' has 3 points but 'calibration.y' has 2"),
    (lambda m: m.update(calibration={"method": "isotonic", "x": [0.1], "y": [0.0]}), "'calibration.x' has 1 points"),
    (lambda m: m.update(calibration=[]), "'calibration' must be an object"),
])
def test_a_corrupt_calibration_section_is_refused(calibrated_bundles, tmp_path, edit, words):
    bundle = _corrupt(calibrated_bundles["platt"], tmp_path, edit)
    with pytest.raises(FraudError) as error:
        _core.Engine(str(bundle))
    assert error.value.status == INVALID, str(error.value)
    assert words in str(error.value) and "calibration" in str(error.value), str(error.value)
    with pytest.raises(FraudError, match="calibration"):
        Scorer(bundle)
    if "NaN" not in words and "near" not in words:  # the Python verifier reads it as JSON too
        assert any("calibration" in p for p in verify_bundle(bundle))


def test_a_signed_corrupt_section_is_refused_after_its_signature_verifies(calibrated_bundles, tmp_path):
    # A signer's own mistake, not tampering: the signature verifies, then the parser refuses it.
    pytest.importorskip("cryptography", reason="bundle signing uses the cryptography package")
    from libfraud.export.bundle import BundleError
    from libfraud.export.sign import generate_keypair, sign_bundle, sign_manifest_bytes, write_signature
    private, public = generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    bundle = _corrupt(calibrated_bundles["platt"], tmp_path,
                      lambda m: m.update(calibration={"method": "isotonic", "x": [0.5, 0.1], "y": [0, 1]}))
    with pytest.raises(BundleError, match="refusing to sign a bundle that does not verify: calibration"):
        sign_bundle(bundle, private)
    write_signature(bundle, sign_manifest_bytes((bundle / "manifest.json").read_bytes(), private))
    with pytest.raises(FraudError) as error:
        Scorer(bundle, trusted_public_key=public)
    assert error.value.status == INVALID and "'calibration.x' must be strictly increasing" in str(error.value)


# ------------------------------------------------------ format versions (BUNDLE.md "Versions and compatibility")


def test_a_calibrated_bundle_is_version_3_and_an_uncalibrated_one_stays_2(calibrated_bundles, small_bundle):
    from libfraud.export.bundle import BUNDLE_FORMAT_VERSION, BUNDLE_FORMAT_VERSIONS
    assert BUNDLE_FORMAT_VERSIONS == (2, 3) and BUNDLE_FORMAT_VERSION == 3 == _core.BUNDLE_FORMAT_VERSION
    for bundle in calibrated_bundles.values():  # version 3 with its section: loads
        assert read_manifest(bundle)["format_version"] == 3
        assert verify_bundle(bundle) == []
        assert _core.Engine(str(bundle)).threshold == pytest.approx(read_manifest(bundle)["threshold"])
    # Without calibration: version 2, which a core older than calibration still reads.
    manifest = read_manifest(small_bundle)
    assert manifest["format_version"] == 2 and "calibration" not in manifest
    assert verify_bundle(small_bundle) == []


@pytest.mark.parametrize("which, edit, words", [
    # A version-2 reader ignores unknown keys: it would serve the trees' raw scores.
    ("calibrated", lambda m: m.update(format_version=2),
     "format_version 2 with a 'calibration' section"),
    ("uncalibrated", lambda m: m.update(calibration={"method": "platt", "a": 1.0, "b": 0.0}),
     "format_version 2 with a 'calibration' section"),
    ("calibrated", lambda m: m.pop("calibration"), "format_version 3 without a 'calibration' section"),
    ("uncalibrated", lambda m: m.update(format_version=3), "format_version 3 without a 'calibration' section"),
])
def test_a_version_that_disagrees_with_the_calibration_section_is_refused(
        calibrated_bundles, small_bundle, tmp_path, which, edit, words):
    from libfraud.export.bundle import BundleError
    bundle = _corrupt(calibrated_bundles["platt"] if which == "calibrated" else small_bundle, tmp_path, edit)
    with pytest.raises(FraudError) as error:
        _core.Engine(str(bundle))
    assert error.value.status == INVALID and words in str(error.value), str(error.value)
    with pytest.raises(FraudError, match="format_version"):
        Scorer(bundle)
    with pytest.raises(BundleError, match=words):
        read_manifest(bundle)
    assert any(words in p for p in verify_bundle(bundle))


@pytest.mark.parametrize("version", [1, 4, "3", 3.0, None])
def test_an_unsupported_version_is_refused_listing_the_supported_ones(calibrated_bundles, tmp_path, version):
    from libfraud.export.bundle import BundleError
    bundle = _corrupt(calibrated_bundles["platt"], tmp_path, lambda m: m.update(format_version=version))
    with pytest.raises(FraudError) as error:
        _core.Engine(str(bundle))
    if isinstance(version, int):
        assert error.value.status == "FRAUD_STATUS_BUNDLE_VERSION", str(error.value)
        assert f"format_version {version} is not supported" in str(error.value)
        assert "reads versions 2 to 3" in str(error.value)
    else:  # not an integer: the key is named as malformed
        assert error.value.status == INVALID and "format_version" in str(error.value), str(error.value)
    with pytest.raises(BundleError, match="format_version .* is not supported; this version reads 2 and 3"):
        read_manifest(bundle)


def test_a_signed_version_2_manifest_with_calibration_is_refused_after_its_signature_verifies(
        calibrated_bundles, tmp_path):
    # Re-signed by the signer (not tampering): the signature verifies, then the version is refused.
    pytest.importorskip("cryptography", reason="bundle signing uses the cryptography package")
    from libfraud.export.bundle import BundleError
    from libfraud.export.sign import generate_keypair, sign_bundle, sign_manifest_bytes, write_signature
    private, public = generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    bundle = _corrupt(calibrated_bundles["platt"], tmp_path, lambda m: m.update(format_version=2))
    with pytest.raises(BundleError, match="refusing to sign a bundle that does not verify: .*format_version 2"):
        sign_bundle(bundle, private)
    write_signature(bundle, sign_manifest_bytes((bundle / "manifest.json").read_bytes(), private))
    # INVALID, not CHECKSUM: the signature verified (a bad one is refused first, as BUNDLE_CHECKSUM).
    for open_it in (lambda: Scorer(bundle, trusted_public_key=public),
                    lambda: _core.verify_bundle(str(bundle), str(public))):
        with pytest.raises(FraudError) as error:
            open_it()
        assert error.value.status == INVALID, str(error.value)
        assert "format_version 2 with a 'calibration' section" in str(error.value)
