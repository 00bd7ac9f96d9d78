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
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from .parity import ParityError, check_tree_parity
from .trees import compile_trees

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BundleError",
    "build_bundle",
    "read_manifest",
    "verify_bundle",
]

BUNDLE_FORMAT = "libfraud-bundle"
BUNDLE_FORMAT_VERSION = 1  # FRAUD_BUNDLE_FORMAT_VERSION in fraud.h
MANIFEST = "manifest.json"
ENTITIES = ("card", "device", "merchant", "ip")  # the order of fraud_txn.entity_id
FEATURE_CONFIG_KEYS = ("windows_ms", "distinct_window_ms", "max_scan")
TREES_ARTIFACT = "trees"
SOURCE_ARTIFACT = "xgboost"
REQUIRED_KEYS = (
    "format", "format_version", "created_utc", "schema", "features", "model",
    "threshold", "threshold_rule", "artifacts", "parity", "metrics", "tools",
)

# fraud_txn (fraud.h) column by column, used when libfraud.data.schema is not available.
_FALLBACK_COLUMNS = (
    {"name": "txn_id", "dtype": "int64", "rule": "unique within the store"},
    {"name": "timestamp_ms", "dtype": "int64", "rule": "unix epoch milliseconds; not older than the store's watermark"},
    {"name": "amount", "dtype": "float64", "rule": "finite and > 0"},
    {"name": "card_id", "dtype": "int64", "rule": ">= 0"},
    {"name": "device_id", "dtype": "int64", "rule": ">= 0, or -1 (absent)"},
    {"name": "merchant_id", "dtype": "int64", "rule": ">= 0"},
    {"name": "ip_id", "dtype": "int64", "rule": ">= 0, or -1 (absent)"},
    {"name": "country", "dtype": "int32", "rule": "1..999 (ISO 3166 numeric)"},
    {"name": "mcc", "dtype": "int32", "rule": "0..9999"},
)


class BundleError(ValueError):
    """A bundle that cannot be read, or a target that must not be overwritten."""


# ---------------------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _schema_columns() -> list[dict[str, str]]:
    try:
        from libfraud.data.schema import COLUMNS  # written alongside; optional until it lands
    except ImportError:
        return [dict(c) for c in _FALLBACK_COLUMNS]
    items = COLUMNS.items() if isinstance(COLUMNS, Mapping) else ((None, c) for c in COLUMNS)
    columns = []
    for key, c in items:
        get = c.get if isinstance(c, Mapping) else (lambda k, d=None, c=c: getattr(c, k, d))
        name = get("name") or key
        dtype = get("dtype")
        if name is None or dtype is None:
            raise BundleError(f"libfraud.data.schema.COLUMNS entry {c!r} has no name or dtype")
        try:
            import numpy as np

            dtype = np.dtype(dtype).name
        except TypeError:
            dtype = str(dtype)
        if get("required", True) is False:  # e.g. label: in training tables, not in fraud_txn
            continue
        rule = get("rule") or get("description") or ""
        columns.append({"name": str(name), "dtype": dtype, "rule": str(rule)})
    return columns


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


def _check_feature_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ValueError(f"feature_config must be a dict with keys {list(FEATURE_CONFIG_KEYS)}")
    if set(config) != set(FEATURE_CONFIG_KEYS):
        raise ValueError(
            f"feature_config keys {sorted(config)} differ from the bundle's {list(FEATURE_CONFIG_KEYS)}"
        )

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    windows = config["windows_ms"]
    if isinstance(windows, (str, bytes)) or not isinstance(windows, Sequence) or not windows \
            or not all(integer(w) for w in windows):
        raise ValueError(f"feature_config['windows_ms'] must be a non-empty list of positive ints, got {windows!r}")
    for key in ("distinct_window_ms", "max_scan"):
        if not integer(config[key]):
            raise ValueError(f"feature_config[{key!r}] must be a positive int, got {config[key]!r}")
    return {"windows_ms": [int(w) for w in windows],
            "distinct_window_ms": int(config["distinct_window_ms"]),
            "max_scan": int(config["max_scan"])}


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
    feature_config: dict,
    X_holdout,
    threshold: float,
    threshold_rule: str,
    metrics: dict,
    extra: dict | None = None,
    gnn: dict | None = None,
    jobs: int = 2,
    progress: bool = False,
    sign_key: str | os.PathLike | None = None,
) -> Path:
    """Compile ``booster`` and write the bundle directory ``out_dir``; return its path.

    Parity of the compiled trees against ``booster.inplace_predict`` on ``X_holdout`` (missing values
    added when too few) must hold within 1e-5, else ParityError and nothing is written. An existing
    bundle at ``out_dir`` is replaced; any other existing non-empty directory or file is refused
    (BundleError). ``extra``: more top-level manifest keys (not the spec's own).

    ``gnn`` (optional; see BUNDLE.md "gnn"): ``sampler``, ``embedding_dim``, ``output_features``
    (the trailing names of ``feature_names``), ``default_backend`` and ``backends``: a list of
    ``{kind, path, parity, cpu_flags?}`` whose ``path`` is the exported artifact to copy in and
    whose ``parity`` (C++ backend against PyTorch) must have passed.

    ``sign_key`` (optional): an ed25519 private key (PEM, from ``libfraud keygen``); the bundle then
    carries ``manifest.json.sig`` (BUNDLE.md "Security"), written before the manifest.
    """
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
    config = _check_feature_config(feature_config)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    if not isinstance(threshold_rule, str) or not threshold_rule:
        raise ValueError("threshold_rule must be a non-empty string saying how the threshold was chosen")
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(REQUIRED_KEYS))
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
        compiled = compile_trees(booster, so, jobs=jobs, progress=progress)
        report = check_tree_parity(booster, so, X_holdout).require()
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
        best_iteration, scale_pos_weight = _booster_facts(booster)
        parity = {k: v for k, v in report.to_dict().items()
                  if k in ("reference", "rows", "rows_with_missing", "max_abs_diff", "tolerance", "passed")}
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "schema": {"columns": _schema_columns(), "entities": list(ENTITIES), "timestamp_unit": "ms"},
            "features": {"config": config, "order": names},
            "model": {
                "kind": "gbdt",
                "artifact": TREES_ARTIFACT,
                "num_features": compiled.num_features,
                "n_trees": compiled.n_trees,
                "best_iteration": best_iteration,
                "scale_pos_weight": scale_pos_weight,
            },
            "threshold": float(threshold),
            "threshold_rule": threshold_rule,
            "artifacts": artifacts,
            "parity": {TREES_ARTIFACT: parity, **gnn_parity},
            **({"gnn": gnn_section} if gnn_section else {}),
            "metrics": metrics,
            "tools": _tool_versions(compiled.compiler),
            **extra,
        }
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
        if sign_key is not None:  # before the manifest: a manifest still means a whole bundle
            from .sign import sign_manifest_bytes, write_signature
            write_signature(tmp, sign_manifest_bytes(text.encode("utf-8"), sign_key))
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:  # last: a manifest means a whole bundle
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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

    Raises BundleError if it is unreadable, not a libfraud bundle, or of another format version.
    """
    p = Path(path)
    file = p / MANIFEST if p.is_dir() else p
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{file}: cannot read the manifest: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{file}: not a libfraud bundle manifest (format != {BUNDLE_FORMAT!r})")
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{file}: format_version {manifest.get('format_version')!r}, this version reads {BUNDLE_FORMAT_VERSION}"
        )
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
    for i, a in enumerate(artifacts):
        if not isinstance(a, dict):
            problems.append(f"artifacts[{i}]: not an object")
            continue
        missing = [k for k in ("name", "path", "target", "precision", "sha256", "size") if k not in a]
        if missing:
            problems.append(f"artifacts[{i}]: missing keys {missing}")
            continue
        names.add(a["name"])
        rel = PurePosixPath(str(a["path"]))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            problems.append(f"{a['path']}: artifact path must be relative without '..'")
            continue
        file = root / rel
        if real_root not in file.resolve().parents:
            problems.append(f"{a['path']}: resolves outside the bundle")
            continue
        if not file.is_file():
            problems.append(f"{a['path']}: missing")
            continue
        size = file.stat().st_size
        if size != a["size"]:
            problems.append(f"{a['path']}: size {size} bytes, manifest says {a['size']}")
            continue
        digest = _sha256(file)
        if digest != a["sha256"]:
            problems.append(f"{a['path']}: sha256 {digest}, manifest says {a['sha256']}")

    model = manifest.get("model") or {}
    artifact = model.get("artifact")
    if artifact not in names:
        problems.append(f"model.artifact {artifact!r} names no artifact")
    parity = (manifest.get("parity") or {}).get(artifact)
    if not isinstance(parity, dict) or parity.get("passed") is not True:
        problems.append(f"parity[{artifact!r}] missing or not passed")
    order = (manifest.get("features") or {}).get("order")
    if not isinstance(order, list) or len(order) != model.get("num_features"):
        problems.append("features.order length differs from model.num_features")
    return problems
