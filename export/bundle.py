"""The bundle writer and a Python-side verifier (the format is specified in export/BUNDLE.md).

A bundle is written into a temporary directory beside its target, checked (parity), given its
manifest last, and renamed into place, so a directory at the target path is always a whole bundle.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import math
import os
import platform
import re
import shutil
import stat
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from ..calibration import Calibrator
from .decision import DECISION_VERSION, check_decision
from .explanation import SHAP_ARTIFACT, check_served_contributions, prepare_explanation, write_node_tables
from .parity import ParityError, check_flat_parity, check_missing_value, check_tree_parity
from .shap_tables import ShapTables, ShapTablesError, shap_tables
from .trees import compile_trees

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_FORMAT_VERSIONS",
    "BundleError",
    "build_bundle",
    "check_format_version",
    "file_fingerprint",
    "format_version_for",
    "read_manifest",
    "verify_bundle",
]

BUNDLE_FORMAT = "libfraud-bundle"
# export/BUNDLE.md "Versions and compatibility": 2 is a bundle without a `calibration` section (what
# cores older than calibration read too), 3 one with it (those cores refuse it rather than ignore
# the section). fraud.h: FRAUD_BUNDLE_FORMAT_VERSION_MIN / _MAX; BUNDLE_FORMAT_VERSION is the newest.
BUNDLE_FORMAT_VERSION_UNCALIBRATED = 2
BUNDLE_FORMAT_VERSION_CALIBRATED = 3
BUNDLE_FORMAT_VERSIONS = (BUNDLE_FORMAT_VERSION_UNCALIBRATED, BUNDLE_FORMAT_VERSION_CALIBRATED)
BUNDLE_FORMAT_VERSION = max(BUNDLE_FORMAT_VERSIONS)  # FRAUD_BUNDLE_FORMAT_VERSION in fraud.h
MANIFEST = "manifest.json"
TREES_ARTIFACT = "trees"
SOURCE_ARTIFACT = "xgboost"
REQUIRED_KEYS = (
    "format", "format_version", "created_utc", "schema", "features", "model",
    "threshold", "threshold_rule", "artifacts", "parity", "metrics", "tools",
)
# Optional sections build_bundle writes itself (extra may not set them).
OPTIONAL_KEYS = ("calibration", "explanation", "decision", "drift")
# The model's provenance (build_bundle's ``provenance``), written into the manifest's `model`.
PROVENANCE_KEYS = ("name", "version", "data_fingerprint", "source_revision", "created_utc")
SERVED_CHECK_ROWS = 4096  # held-out rows the core scores before a bundle is moved into place
_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")

class BundleError(ValueError):
    """A bundle that cannot be read, or a target that must not be overwritten."""


# ---------------------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mode_problem(mode: int) -> str | None:
    """Why a file of this mode is no artifact file, or None for a regular file (the core's words:
    cpp/src/engine/sealed_file.cpp)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    return next((f"is {name} (not a regular file)" for test, name in kinds if test(mode)), "is not a regular file")


def _checked_artifact(path: Path) -> tuple[str | None, int, str]:
    """(problem, size, sha256) of an artifact from one open descriptor: its type checked on the
    descriptor, then its bytes hashed, so nothing can be swapped in between. O_NONBLOCK: opening a
    FIFO never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "is missing", 0, ""
    except OSError as e:
        return f"cannot be opened ({e.strerror})", 0, ""
    try:
        info = os.fstat(fd)
        problem = _mode_problem(info.st_mode)
        if problem:
            return problem, 0, ""
        h = hashlib.sha256()
        for block in iter(lambda: os.read(fd, 1 << 20), b""):
            h.update(block)
        return None, info.st_size, h.hexdigest()
    finally:
        os.close(fd)


def file_fingerprint(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes: a ``data_fingerprint`` for build_bundle's provenance."""
    return "sha256:" + _sha256(Path(path))


def _utc(value: Any, name: str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime {value!r}")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not isinstance(value, str) or not _UTC.fullmatch(value):
        raise ValueError(f"{name} must be an ISO-8601 UTC time 'YYYY-MM-DDTHH:MM:SSZ', got {value!r}")
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError as e:
        raise ValueError(f"{name} is not a valid time: {value!r} ({e})") from None
    return value


def check_provenance(provenance: Mapping, created_utc: str | None = None) -> dict:
    """The `model` section's provenance fields (BUNDLE.md "model") from ``provenance``, validated:
    ``name`` and ``version`` non-empty strings, ``data_fingerprint`` ``"sha256:<64 hex>"`` (e.g.
    file_fingerprint of the training data), ``source_revision`` a non-empty string or None (absent:
    None), ``created_utc`` when the model was made (a UTC datetime or ``YYYY-MM-DDTHH:MM:SSZ``;
    absent: ``created_utc``, the bundle's time). ValueError naming the field otherwise."""
    if not isinstance(provenance, Mapping):
        raise ValueError(f"provenance must be a dict, got {type(provenance).__name__}")
    unknown = sorted(set(provenance) - set(PROVENANCE_KEYS))
    if unknown:
        raise ValueError(f"provenance: unknown keys {unknown}; known: {list(PROVENANCE_KEYS)}")
    out: dict[str, Any] = {}
    for key in ("name", "version"):
        v = provenance.get(key)
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"provenance.{key} must be a non-empty string, got {v!r}")
        out[key] = v
    fp = provenance.get("data_fingerprint")
    if not isinstance(fp, str) or not _FINGERPRINT.fullmatch(fp):
        raise ValueError(f"provenance.data_fingerprint must be 'sha256:' and 64 lowercase hex digits "
                         f"(file_fingerprint(path) gives one), got {fp!r}")
    out["data_fingerprint"] = fp
    rev = provenance.get("source_revision")
    if rev is not None and (not isinstance(rev, str) or not rev.strip()):
        raise ValueError(f"provenance.source_revision must be a non-empty string or None, got {rev!r}")
    out["source_revision"] = rev
    when = provenance.get("created_utc", created_utc)
    if when is None:
        raise ValueError("provenance.created_utc is missing")
    out["created_utc"] = _utc(when, "provenance.created_utc")
    return out


def format_version_for(manifest: Mapping) -> int:
    """The format version a manifest must carry: 3 with a `calibration` section, else 2."""
    return BUNDLE_FORMAT_VERSION_CALIBRATED if "calibration" in manifest else BUNDLE_FORMAT_VERSION_UNCALIBRATED


def check_format_version(manifest: Mapping, where: str = MANIFEST) -> None:
    """BundleError unless ``format_version`` is one this reads and agrees with the `calibration`
    section: version 3 without it, or version 2 with it, is refused (a version-2 reader would
    ignore the section and serve uncalibrated scores against a calibrated-scale threshold)."""
    version = manifest.get("format_version")
    if type(version) is not int or version not in BUNDLE_FORMAT_VERSIONS:
        raise BundleError(f"{where}: format_version {version!r} is not supported; this version reads "
                          f"{' and '.join(map(str, BUNDLE_FORMAT_VERSIONS))} (2: without 'calibration', "
                          "3: with it)")
    expected = format_version_for(manifest)
    if version == expected:
        return
    if version == BUNDLE_FORMAT_VERSION_CALIBRATED:
        raise BundleError(f"{where}: format_version 3 without a 'calibration' section: version 3 means a "
                          "calibrated bundle (an uncalibrated bundle is written as version 2)")
    raise BundleError(f"{where}: format_version 2 with a 'calibration' section: a calibrated bundle must be "
                      "version 3 (a version-2 reader would ignore the section and serve uncalibrated scores "
                      "against a calibrated-scale threshold)")


def _calibrator(calibration: Any) -> Calibrator | None:
    if calibration is None or isinstance(calibration, Calibrator):
        return calibration
    if not isinstance(calibration, Mapping):
        raise ValueError(f"calibration must be a Calibrator or its manifest dict, got {type(calibration).__name__}")
    return Calibrator.from_manifest(calibration)


def _tool_versions(compiler: str) -> dict[str, str]:
    from importlib import metadata

    import numpy
    import tl2cgen
    import treelite
    import xgboost

    try:
        libfraud_version = metadata.version("libfraud")
    except metadata.PackageNotFoundError:
        libfraud_version = "dev"
    return {
        "libfraud": libfraud_version,
        "xgboost": xgboost.__version__,
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
        "compiler": compiler,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }


def align_spec(spec: Mapping, names: Sequence[str], gnn_outputs: Sequence[str] = ()) -> dict:
    """The feature spec (SCHEMA.md JSON) with its features in the model's order, ``names`` minus the
    trailing GNN outputs: the core computes the spec's features in order, so they must be the
    model's first columns. A model feature the spec does not define is refused by name (the core
    could not compute it); spec features the model does not read are dropped."""
    if not isinstance(spec, Mapping) or spec.get("format") != "libfraud-features":
        raise ValueError("spec must be a feature spec in its JSON form (format 'libfraud-features')")
    by_name = {f["name"]: f for f in spec.get("features", [])}
    core_names = list(names[:len(names) - len(gnn_outputs)]) if gnn_outputs else list(names)
    missing = [n for n in core_names if n not in by_name]
    if missing:
        known = ", ".join(list(by_name)[:12]) + (" ..." if len(by_name) > 12 else "")
        raise ValueError(f"the model reads feature {missing[0]!r}, which the feature spec does not define, so the "
                         f"core cannot compute it ({len(missing)} such: {missing[:5]}); the spec has: {known}")
    if not core_names:
        raise ValueError("the model reads no feature the core computes")
    return {**spec, "features": [by_name[n] for n in core_names]}


NODE_TABLES_PARITY = "node_tables"  # the flat predictor's entry in the manifest's `parity`
NODE_TABLES_SUM = ("leaves in tree order in float32, then base_margin (added in float64, rounded to float32), "
                   "then 1 / (1 + exp(-x)) in float32")


def _node_tables(booster) -> tuple[ShapTables | None, str | None]:
    """The booster's node tables, or None and why when it has none (categorical splits, another
    objective): such a bundle is served by its compiled trees alone, and carries no reasons."""
    try:
        return shap_tables(booster), None
    except ShapTablesError as e:
        return None, str(e)


def _explanation(booster, names: list[str], aligned: dict, gnn: dict | None, X_holdout,
                 tables: ShapTables | None, why_not: str | None):
    if tables is None:
        warnings.warn(f"the bundle carries no reasons: {why_not}", stacklevel=3)
        return None
    gnn_outputs = list((gnn or {}).get("output_features", ()))
    try:
        return prepare_explanation(booster, names, aligned["features"], X_holdout, gnn_outputs=gnn_outputs,
                                   declared_reasons=aligned.get("reasons", ()), tables=tables)
    except ShapTablesError as e:
        warnings.warn(f"the bundle carries no reasons: {e}", stacklevel=3)
        return None


def _parity_entry(report, missing: float, **more) -> dict:
    parity = {k: v for k, v in report.to_dict().items()
              if k in ("reference", "rows", "rows_with_missing", "max_abs_diff", "tolerance", "passed")}
    if not math.isnan(missing):  # parity held with rows carrying the training's sentinel
        parity["missing_value"] = missing
    return {**parity, **more}


def _check_served(bundle: Path, booster, X_holdout, calibrator: Calibrator | None = None,
                  explanation=None, missing_value: float = math.nan) -> dict:
    """Open the written bundle with the core itself and score held-out rows: a bundle the engine
    refuses, or whose served scores differ from the reference (xgboost's, reading
    ``missing_value`` as missing, through ``calibrator.apply`` when the bundle calibrates) by more
    than 1e-5, is never moved into place."""
    import numpy as np

    from libfraud import _core
    try:
        engine = _core.Engine(str(bundle))
    except Exception as e:  # noqa: BLE001 - any refusal stops the write, with the core's reason
        raise BundleError(f"the core refuses the bundle it was about to write: {e}") from e
    rows = np.ascontiguousarray(np.asarray(X_holdout, dtype=np.float32)[:SERVED_CHECK_ROWS])
    if len(rows) == 0:
        return {"rows": 0}
    served = np.asarray(engine.score_features(rows), dtype=np.float64)
    trees = booster.inplace_predict(rows, missing=missing_value)
    expected = np.asarray(calibrator.apply(trees) if calibrator else trees, dtype=np.float64)
    diffs = np.abs(served - expected)
    diffs[np.isnan(diffs)] = np.inf
    worst = int(np.argmax(diffs))
    diff = float(diffs[worst])
    if not diff <= 1e-5:
        what = (f"Calibrator.apply ({calibrator.method}) of xgboost's probabilities" if calibrator
                else "xgboost's probabilities")
        raise ParityError(f"the engine's scores differ from {what} by {diff:.3g} at held-out row {worst} "
                          f"(xgboost {float(trees[worst]):.9g}, expected {expected[worst]:.9g}, "
                          f"served {served[worst]:.9g})")
    if explanation is not None:
        check_served_contributions(engine, explanation)
    return {"rows": int(len(rows)), "max_abs_diff": diff, "backend": engine.gnn_backend}


def _unwrap_estimator(booster, missing_value: float | None) -> tuple[Any, float]:
    """(Booster, missing value): an sklearn-style XGBoost estimator gives its booster and its
    ``missing`` (what its fit read as missing; the booster does not record it)."""
    import xgboost as xgb

    declared = None if missing_value is None else check_missing_value(missing_value)
    if not isinstance(booster, xgb.XGBModel):
        return booster, math.nan if declared is None else declared
    learned = check_missing_value(booster.missing)
    if declared is not None and not (declared == learned or (math.isnan(declared) and math.isnan(learned))):
        raise ValueError(f"missing_value={declared!r} differs from the estimator's missing={learned!r}, "
                         "what its fit read as missing")
    return booster.get_booster(), learned


def _booster_facts(booster) -> tuple[int, float]:
    """(best_iteration, scale_pos_weight) of a trimmed booster."""
    try:
        best = int(booster.best_iteration)
    except AttributeError:  # trimmed by slicing, or trained without early stopping
        best = booster.num_boosted_rounds() - 1
    objective = json.loads(booster.save_config())["learner"]["objective"]
    spw = float(objective.get("reg_loss_param", {}).get("scale_pos_weight", 1.0))
    return best, spw


def _is_bundle(path: Path) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT


def _check_target(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BundleError(f"{out} exists and is not a directory; refusing to overwrite it")
    if out.is_dir() and any(out.iterdir()) and not _is_bundle(out):
        raise BundleError(f"{out} is a non-empty directory that is not a libfraud bundle; refusing to overwrite it")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _move_into_place(tmp: Path, out: Path) -> None:
    _check_target(out)  # again: the target may have appeared while compiling
    if out.is_dir() and any(out.iterdir()):
        if _exchange(tmp, out):  # out is now the new bundle, tmp the old one
            shutil.rmtree(tmp)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)  # old is an empty directory: replaced
        os.replace(tmp, out)
        shutil.rmtree(old)
        return
    os.replace(tmp, out)  # out missing or an empty directory


# ------------------------------------------------------------------------------------------ public


def build_bundle(
    out_dir: str | os.PathLike,
    *,
    booster,
    feature_names: Sequence[str],
    schema: Mapping,
    spec: Mapping,
    X_holdout,
    threshold: float,
    threshold_rule: str,
    metrics: dict,
    extra: dict | None = None,
    gnn: dict | None = None,
    calibration: dict | Calibrator | None = None,
    provenance: dict | None = None,
    jobs: int = 2,
    progress: bool = False,
    sign_key: str | os.PathLike | None = None,
    explain: bool = True,
    missing_value: float | None = None,
    source: str | None = None,
    decision: Mapping | None = None,
    drift_reference=None,
    drift_reference_info: Mapping | None = None,
) -> Path:
    """Compile ``booster`` and write the bundle directory ``out_dir``; return its path.

    Parity of the compiled trees against ``booster.inplace_predict`` on ``X_holdout`` (missing values
    added when too few) must hold within 1e-5, else ParityError and nothing is written. An existing
    bundle at ``out_dir`` is replaced; any other existing non-empty directory or file is refused
    (BundleError). ``extra``: more top-level manifest keys (not the spec's own).

    ``schema`` and ``spec``: the declared schema and feature spec in their JSON forms
    (export/SCHEMA.md). Every model feature must be one the spec defines (align_spec: the compiler
    names the first that is not); the bundle carries the spec in the model's order. Before the
    bundle is moved into place the core opens it and scores held-out rows through it.

    ``gnn`` (optional; see BUNDLE.md "gnn"): ``sampler``, ``embedding_dim``, ``output_features``
    (the trailing names of ``feature_names``), ``default_backend`` and ``backends``: a list of
    ``{kind, path, parity, cpu_flags?}`` whose ``path`` is the exported artifact to copy in and
    whose ``parity`` (C++ backend against PyTorch) must have passed.

    ``calibration`` (optional; BUNDLE.md "calibration"): a ``libfraud.calibration.Calibrator`` or
    its ``to_manifest()`` dict; the core then applies it to every score, and ``threshold`` must be
    on the calibrated scale (a threshold no calibrated score can reach is refused). The served
    check compares the core's scores with ``calibration.apply(booster.inplace_predict(rows))``.

    ``provenance`` (optional; BUNDLE.md "model"): ``name``, ``version``, ``data_fingerprint``,
    ``source_revision``, ``created_utc``, validated by check_provenance and written into the
    manifest's ``model`` section.

    ``sign_key`` (optional): an ed25519 private key (PEM, from ``libfraud keygen``); the bundle then
    carries ``manifest.json.sig`` (BUNDLE.md "Security"), written before the manifest.

    ``explain`` (default on; BUNDLE.md "explanation"): the bundle carries exact TreeSHAP tables of
    the trees and the reason families of its features (``spec``'s ``reasons`` and features'
    ``reason`` keys, else by kind; GNN outputs are ``graph``), after the core's contributions
    matched xgboost's ``pred_contribs`` within 1e-4 (ParityError otherwise). A booster the tables
    cannot describe (categorical splits) gets a bundle without them, with a warning.

    ``booster``: an ``xgboost.Booster``, or an sklearn-style estimator (``XGBClassifier``), whose
    ``missing`` then is the missing value. ``missing_value`` (default NaN): the value that marked
    missing values in training (``DMatrix(missing=...)``), which xgboost does not record in the
    booster. The core's one missing marker is NaN and it scores any other value as a value, so
    parity reads a declared sentinel as training did and fails where the served scores would
    differ (BUNDLE.md "Missing and infinite values"). ``source`` names the model in the compiler's
    errors (its file, say; default: the bundle path).

    ``decision`` (optional; BUNDLE.md "decision"): score bands and rules the core evaluates after
    the model, e.g. ``{"review_from": 0.3, "decline_from": 0.8, "rules": [{"code": 1001, "name":
    "big_and_fast", "when": "amount > 5000 and card_count_1h > 3", "action": "decline"}]}``;
    compiled by the core against ``feature_names`` and ``schema`` before anything else is compiled
    (ValueError with the core's message naming the rule); ``version`` defaults to 1. It never
    changes a score.

    ``drift_reference`` (optional; BUNDLE.md "drift"): reference feature rows [n, F] in the model's
    order (a seeded sample of the training rows; at most 100,000 kept). The bundle then carries,
    per feature and for the score, quantile bin edges and the rows' proportion in each bin; the
    score's are of the core's own served (calibrated) scores of those rows. ``drift_reference_info``
    says what the rows are (e.g. ``{"source": "training", "from_utc": ..., "to_utc": ...}``),
    written into the section's ``computed_on``.
    """
    booster, missing = _unwrap_estimator(booster, missing_value)
    out = Path(out_dir).absolute()
    names = [feature_names] if isinstance(feature_names, str) else list(feature_names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError("feature_names must be a non-empty list of non-empty strings")
    if len(set(names)) != len(names):
        raise ValueError("feature_names has duplicates")
    if len(names) != booster.num_features():
        raise ValueError(f"{len(names)} feature_names for a booster of {booster.num_features()} features")
    if booster.feature_names is not None and list(booster.feature_names) != names:
        raise ValueError(f"feature_names differ from the booster's {booster.feature_names}")
    if not isinstance(schema, Mapping) or schema.get("format") != "libfraud-schema":
        raise ValueError("schema must be a declared schema in its JSON form (format 'libfraud-schema')")
    aligned = align_spec(spec, names, (gnn or {}).get("output_features", ()))
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    if not isinstance(threshold_rule, str) or not threshold_rule:
        raise ValueError("threshold_rule must be a non-empty string saying how the threshold was chosen")
    calibrator = _calibrator(calibration)
    if calibrator is not None:
        top = float(calibrator.apply(1.0))  # calibrators are non-decreasing: the largest score
        if threshold > top:
            raise ValueError(f"threshold {threshold!r} is above every calibrated score (at most {top:.6g}): "
                             "with a calibrator the threshold must be on the calibrated scale")
    decision_section = None
    if decision is not None:
        section = {"version": DECISION_VERSION, **decision} if isinstance(decision, Mapping) else decision
        decision_section = check_decision(section, names, schema, threshold)
    created_utc = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    model_provenance = check_provenance(provenance, created_utc) if provenance is not None else {}
    extra = dict(extra or {})
    clash = sorted(set(extra) & (set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)))
    if clash:
        raise ValueError(f"extra may not set the manifest's own keys {clash}")
    json.dumps({"metrics": metrics, "extra": extra}, allow_nan=False)  # fail before compiling
    if gnn is not None:
        _check_gnn(gnn, names)
    _check_target(out)
    if sign_key is not None:
        from .sign import _load_private_key
        _load_private_key(sign_key)  # a bad key fails before compiling

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "trees").mkdir()
        so = tmp / "trees" / "model.so"
        ubj = tmp / "trees" / "model.ubj"
        compiled = compile_trees(booster, so, jobs=jobs, progress=progress,
                                 source=source or f"the model for {out}")
        report = check_tree_parity(booster, so, X_holdout, missing_value=missing).require()
        booster.save_model(str(ubj))

        artifacts = []
        for name, path, target in (
            (TREES_ARTIFACT, so, "tl2cgen-c-shared"),
            (SOURCE_ARTIFACT, ubj, "xgboost-ubjson"),
        ):
            artifacts.append({
                "name": name,
                "path": path.relative_to(tmp).as_posix(),
                "target": target,
                "precision": "float32",
                "sha256": _sha256(path),
                "size": path.stat().st_size,
            })
        gnn_section, gnn_parity = (_add_gnn_artifacts(gnn, tmp, artifacts) if gnn is not None
                                   else (None, {}))
        # The node tables serve the flat predictor (and reasons): written whenever the booster has
        # them, and checked against xgboost on the trees' parity rows before anything else uses them.
        tables, why_not = _node_tables(booster)
        node_tables, flat_parity = None, None
        if tables is not None:
            if tables.num_features != compiled.num_features:
                raise ParityError(f"the node tables read {tables.num_features} features, the compiled trees "
                                  f"{compiled.num_features}")
            artifacts.append(write_node_tables(tables, tmp))
            flat_parity = check_flat_parity(booster, tmp / artifacts[-1]["path"], tables.base_margin, X_holdout,
                                            missing_value=missing).require()
            node_tables = {"artifact": SHAP_ARTIFACT, "base_margin": tables.base_margin, "sum": NODE_TABLES_SUM}
        explanation = (_explanation(booster, names, aligned, gnn, X_holdout, tables, why_not)
                       if explain else None)
        best_iteration, scale_pos_weight = _booster_facts(booster)
        parity = _parity_entry(report, missing)
        manifest = {
            "format": BUNDLE_FORMAT,
            # 3 with a calibration section (older cores must refuse it, not ignore it), else 2.
            "format_version": (BUNDLE_FORMAT_VERSION_CALIBRATED if calibrator is not None
                               else BUNDLE_FORMAT_VERSION_UNCALIBRATED),
            "created_utc": created_utc,
            "schema": dict(schema),
            "features": {"spec": aligned, "order": names},
            "model": {
                "kind": "gbdt",
                "artifact": TREES_ARTIFACT,
                "num_features": compiled.num_features,
                "n_trees": compiled.n_trees,
                "best_iteration": best_iteration,
                "scale_pos_weight": scale_pos_weight,
                **({"node_tables": node_tables} if node_tables is not None else {}),
                **model_provenance,
            },
            **({"calibration": calibrator.to_manifest()} if calibrator is not None else {}),
            "threshold": float(threshold),
            "threshold_rule": threshold_rule,
            "artifacts": artifacts,
            "parity": {TREES_ARTIFACT: parity, **gnn_parity,
                       **({NODE_TABLES_PARITY: _parity_entry(flat_parity, missing, kernels=["row", "block"])}
                          if flat_parity is not None else {}),
                       **({SHAP_ARTIFACT: explanation.parity} if explanation is not None else {})},
            **({"explanation": explanation.section} if explanation is not None else {}),
            **({"gnn": gnn_section} if gnn_section else {}),
            **({"decision": decision_section} if decision_section is not None else {}),
            "metrics": metrics,
            "tools": _tool_versions(compiled.compiler),
            **extra,
        }
        if drift_reference is not None:
            manifest["drift"] = _drift(tmp, manifest, names, drift_reference, drift_reference_info, missing)
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
        if sign_key is not None:  # before the manifest: a manifest still means a whole bundle
            from .sign import sign_manifest_bytes, write_signature
            write_signature(tmp, sign_manifest_bytes(text.encode("utf-8"), sign_key))
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:  # last: a manifest means a whole bundle
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _check_served(tmp, booster, X_holdout, calibrator, explanation, missing)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _drift(tmp: Path, manifest: dict, names: list[str], rows, info: Mapping | None, missing: float) -> dict:
    """The `drift` section: the reference rows' bins, and their scores as the core serves them (the
    bundle so far opened in the core, unsigned and without the section, to score them)."""
    import numpy as np

    from libfraud import _core

    from .drift import drift_section, sample_rows, with_missing_as_nan
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise ValueError(f"drift_reference must be rows [n, {len(names)}] in the model's feature order, "
                         f"got shape {rows.shape}")
    rows = np.ascontiguousarray(with_missing_as_nan(sample_rows(rows), missing))
    with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    try:
        scores = _core.Engine(str(tmp)).score_features(rows)
    except Exception as e:  # noqa: BLE001 - the core's reason, named
        raise BundleError(f"the core could not score the drift reference rows: {e}") from e
    finally:
        (tmp / MANIFEST).unlink()
    return drift_section(names, rows, scores, info)


GNN_KINDS = {"native": "gnn/model.lfnative", "aoti": "gnn/model.aoti.pt2", "torchscript": "gnn/model.ts.pt"}


def _check_gnn(gnn: dict, names: list[str]) -> None:
    missing = [k for k in ("sampler", "embedding_dim", "output_features", "default_backend", "backends")
               if k not in gnn]
    if missing:
        raise ValueError(f"gnn: missing keys {missing}")
    outputs = list(gnn["output_features"])
    if names[-len(outputs):] != outputs:
        raise ValueError("gnn.output_features must be the last names of feature_names")
    kinds = [b["kind"] for b in gnn["backends"]]
    unknown = sorted(set(kinds) - set(GNN_KINDS))
    if unknown:
        raise ValueError(f"gnn: unknown backend kinds {unknown}; known: {sorted(GNN_KINDS)}")
    if gnn["default_backend"] not in kinds:
        raise ValueError(f"gnn.default_backend {gnn['default_backend']!r} is not among {kinds}")
    for b in gnn["backends"]:
        if not b.get("parity", {}).get("passed"):
            raise ParityError(f"gnn backend {b['kind']!r} did not pass parity: {b.get('parity')}")


def _add_gnn_artifacts(gnn: dict, tmp: Path, artifacts: list) -> tuple[dict, dict]:
    """Copy the GNN artifacts in, checksum them; the manifest's gnn section and parity entries."""
    (tmp / "gnn").mkdir(exist_ok=True)
    backends, parity = [], {}
    for b in gnn["backends"]:
        name = f"gnn_{b['kind']}"
        dest = tmp / GNN_KINDS[b["kind"]]
        shutil.copyfile(b["path"], dest)
        artifacts.append({"name": name, "path": dest.relative_to(tmp).as_posix(),
                          "target": b["kind"], "precision": "float32",
                          "sha256": _sha256(dest), "size": dest.stat().st_size})
        entry = {"kind": b["kind"], "artifact": name}
        if b.get("cpu_flags") is not None:
            entry["cpu_flags"] = list(b["cpu_flags"])
        backends.append(entry)
        parity[name] = b["parity"]
    exports = []
    for e in gnn.get("exports", []):  # artifacts for other machines (ONNX for TensorRT), not served here
        name = f"gnn_{e['target'].replace('-', '_')}"
        dest = tmp / "gnn" / Path(e["path"]).name
        shutil.copyfile(e["path"], dest)
        artifacts.append({"name": name, "path": dest.relative_to(tmp).as_posix(), "target": e["target"],
                          "precision": "float16" if e["target"].endswith("fp16") else "float32",
                          "sha256": _sha256(dest), "size": dest.stat().st_size})
        exports.append({"artifact": name, "target": e["target"], **e.get("facts", {})})
        parity[name] = e["parity"]
    section = {"sampler": dict(gnn["sampler"]), "embedding_dim": int(gnn["embedding_dim"]),
               "output_features": list(gnn["output_features"]),
               "default_backend": gnn["default_backend"], "backends": backends}
    if exports:
        section["exports"] = exports
    return section, parity


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of the bundle directory ``path`` (or of the manifest file itself).

    Raises BundleError if it is unreadable, not a libfraud bundle, of a format version this does
    not read, or of a version that disagrees with its `calibration` section (check_format_version).
    """
    p = Path(path)
    file = p / MANIFEST if p.is_dir() else p
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{file}: cannot read the manifest: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{file}: not a libfraud bundle manifest (format != {BUNDLE_FORMAT!r})")
    check_format_version(manifest, str(file))
    return manifest


def verify_bundle(path: str | os.PathLike) -> list[str]:
    """Every problem found in the bundle at ``path`` (an empty list: it verifies).

    Checks what a loader checks before loading anything (manifest keys, format version, every
    artifact's path, size and sha256) plus the manifest's own consistency.
    """
    root = Path(path)
    try:
        manifest = read_manifest(root)
    except BundleError as e:
        return [str(e)]
    problems = [f"manifest: missing key {k!r}" for k in REQUIRED_KEYS if k not in manifest]

    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        return problems + ["manifest: 'artifacts' must be a non-empty list"]
    names = set()
    real_root = root.resolve()
    threshold = manifest.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        problems.append(f"threshold must be a score in [0, 1], got {threshold!r}")
    for i, a in enumerate(artifacts):
        if not isinstance(a, dict):
            problems.append(f"artifacts[{i}]: not an object")
            continue
        missing = [k for k in ("name", "path", "target", "precision", "sha256", "size") if k not in a]
        if missing:
            problems.append(f"artifacts[{i}]: missing keys {missing}")
            continue
        if a["name"] in names:
            problems.append(f"artifacts[{i}]: name {a['name']!r} appears twice")
        names.add(a["name"])
        rel = PurePosixPath(str(a["path"]))
        if rel.is_absolute() or ".." in rel.parts or not str(a["path"]):
            problems.append(f"{a['path']}: artifact path must be relative without '..'")
            continue
        file = root / rel
        resolved = file.resolve()
        if resolved != real_root and real_root not in resolved.parents:  # '.' is the bundle itself
            problems.append(f"{a['path']}: resolves outside the bundle")
            continue
        kind, size, digest = _checked_artifact(file)
        if kind:
            problems.append(f"artifact {a['name']!r} path {a['path']!r} {kind}")
            continue
        if size != a["size"]:
            problems.append(f"{a['path']}: size {size} bytes, manifest says {a['size']}")
            continue
        if digest != a["sha256"]:
            problems.append(f"{a['path']}: sha256 {digest}, manifest says {a['sha256']}")

    model = manifest.get("model") or {}
    artifact = model.get("artifact")
    if artifact not in names:
        problems.append(f"model.artifact {artifact!r} names no artifact")
    parity = (manifest.get("parity") or {}).get(artifact)
    if not isinstance(parity, dict) or parity.get("passed") is not True:
        problems.append(f"parity[{artifact!r}] missing or not passed")
    node_tables = model.get("node_tables") if isinstance(model, dict) else None
    if node_tables is not None:
        by_name = {a.get("name"): a for a in artifacts if isinstance(a, dict)}
        target = (by_name.get((node_tables or {}).get("artifact")) or {}).get("target") \
            if isinstance(node_tables, dict) else None
        if target != "libfraud-tree-shap":
            problems.append(f"model.node_tables must name an artifact of target 'libfraud-tree-shap', got {node_tables!r}")
        elif not isinstance(node_tables.get("base_margin"), (int, float)) or isinstance(node_tables.get("base_margin"), bool) \
                or not math.isfinite(node_tables["base_margin"]):
            problems.append(f"model.node_tables.base_margin must be a finite number, got {node_tables.get('base_margin')!r}")
    order = (manifest.get("features") or {}).get("order")
    if not isinstance(order, list) or len(order) != model.get("num_features"):
        problems.append("features.order length differs from model.num_features")
    if "calibration" in manifest:
        try:
            Calibrator.from_manifest(manifest["calibration"])
        except ValueError as e:
            problems.append(f"calibration: {e}")
    if "decision" in manifest:
        try:
            check_decision(manifest["decision"], order if isinstance(order, list) else [],
                           manifest.get("schema") or {}, threshold if isinstance(threshold, (int, float)) else 0.5)
        except ValueError as e:
            problems.append(str(e))
    if "drift" in manifest and isinstance(order, list):
        import numpy as np

        from libfraud import _core
        try:  # the core's own checks of the section (BUNDLE.md "drift"), on no rows
            _core.drift_psi(json.dumps(manifest["drift"]), [str(n) for n in order],
                            np.empty((0, len(order)), np.float32), np.empty(0, np.float32))
        except _core.FraudError as e:
            problems.append(f"drift: {e}")
    if isinstance(model, dict) and any(k in model for k in PROVENANCE_KEYS):
        try:
            check_provenance({k: model[k] for k in PROVENANCE_KEYS if k in model})
        except ValueError as e:
            problems.append(f"model: {e}")
    return problems
