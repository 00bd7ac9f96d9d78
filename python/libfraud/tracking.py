"""MLflow tracked runs: one training (or compile) recorded as params, metrics and artifacts.

Stores. ``--mlflow-uri`` takes an ``http(s)://`` tracking server, a ``sqlite:///`` database, or a
directory. A directory (and the default, ``<default_dir>/mlruns``) holds ``mlflow.db`` with
artifacts under ``artifacts/`` beside it: view it with
``mlflow ui --backend-store-uri sqlite:///<dir>/mlflow.db``. A database rather than MLflow's
``./mlruns`` file store because MLflow 3 refuses new file stores unless MLFLOW_ALLOW_FILE_STORE is
set (the backend is in maintenance mode); the SQLite store needs SQLAlchemy and alembic, which
mlflow-skinny does not declare but optuna (also in the ``train`` extra) does.

Fail fast. MLflow's HTTP client retries an unreachable server for minutes, so ``check_reachable``
makes its own short request, and the CLI calls it before training. ``log_run`` repeats it, and
validates everything it was given, before it creates a run.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import math
import numbers
import os
import posixpath
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

__all__ = ["check_reachable", "log_run", "read_run", "resolve_uri"]

STORE_DIR_NAME = "mlruns"  # resolve_uri(None, d) -> d/mlruns
DB_NAME = "mlflow.db"
ARTIFACTS_DIR_NAME = "artifacts"
# MLflow's limits (mlflow.utils.validation); longer values are refused unless
# MLFLOW_TRUNCATE_LONG_VALUES is set, so they are cut here, visibly.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_TAG_VALUE = 8000
TRUNCATED = "...[truncated]"

_FLAG = "--mlflow-uri"
# MLflow allows letters, digits, _ - . space : and /; "/" is replaced too, so that a name from the
# data (a fraud type in by_fraud_type) never becomes a path.
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :]")


# ---- where the store is ---------------------------------------------------------------------

def resolve_uri(uri: str | os.PathLike | None, default_dir: str | os.PathLike) -> str:
    """The tracking URI for ``--mlflow-uri``: ``http(s)://host[:port][/path]`` (trailing slash
    dropped) or ``sqlite:////absolute/path.db``. None means ``<default_dir>/mlruns``; a directory
    (or ``file:`` URI) means ``sqlite:///<dir>/mlflow.db``. Checks the form only; reachability is
    ``check_reachable``'s job. Raises ValueError naming --mlflow-uri."""
    if uri is None:
        return _normalize(str(Path(default_dir) / STORE_DIR_NAME))
    return _normalize(uri)


def _normalize(uri: str | os.PathLike) -> str:
    text = os.fspath(uri).strip()
    if not text:
        raise ValueError(f"{_FLAG} is empty")
    low = text.lower()
    if low.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(text)
        if not parts.hostname:
            raise ValueError(f"{_FLAG} {text!r}: no host name")
        if parts.query or parts.fragment:
            raise ValueError(f"{_FLAG} {text!r}: a tracking server URI takes no query or fragment")
        return text.rstrip("/")
    if low.startswith("sqlite:"):
        if not low.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise ValueError(f"{_FLAG} {text!r}: expected sqlite:///relative.db or sqlite:////absolute.db")
        return "sqlite:///" + str(_local_path(text[len("sqlite:///"):], text))
    if low.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        return _store_dir_uri(_local_path(path, text))
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        raise ValueError(f"{_FLAG} {text!r}: unsupported scheme; give a directory, sqlite:///file.db "
                         f"or an http(s):// tracking server")
    return _store_dir_uri(_local_path(text, text))


def _local_path(path: str, shown: str) -> Path:
    if not path:
        raise ValueError(f"{_FLAG} {shown!r}: empty path")
    if any(c in path for c in "?#%"):  # would be read as URL syntax by SQLAlchemy
        raise ValueError(f"{_FLAG} {shown!r}: the path may not contain '?', '#' or '%'")
    return Path(path).expanduser().absolute()


def _store_dir_uri(directory: Path) -> str:
    if directory.is_dir() and any(directory.glob("[0-9]*/meta.yaml")):
        raise ValueError(
            f"{_FLAG} {directory}: holds an MLflow file store, which MLflow 3 no longer opens; "
            f"migrate it (`mlflow migrate-filestore`) or give another directory")
    return "sqlite:///" + str(directory / DB_NAME)


def _is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def _db_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):])


def _artifact_root(uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside the database, never the working directory
    (MLflow's default for a SQLite store is ./mlruns relative to wherever it runs)."""
    if _is_http(uri):
        return None  # the server decides
    return (_db_path(uri).parent / ARTIFACTS_DIR_NAME).as_uri()


# ---- reachability ---------------------------------------------------------------------------

def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raise ValueError naming --mlflow-uri unless the store can be used, within ``timeout_s``.

    http(s): GET /health (MLflow serves it without credentials), then one REST call with the
    credentials MLflow would send (MLFLOW_TRACKING_TOKEN, or _USERNAME and _PASSWORD), so a
    refused login fails now, not after training. Local: the database's directory must exist or be
    creatable, and be writable (tried with a temporary file); nothing is left behind."""
    uri = _normalize(uri)
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if _is_http(uri):
        _check_server(uri, float(timeout_s))
    else:
        _check_local(_db_path(uri))


def _check_local(db: Path) -> None:
    if db.exists() and not db.is_file():
        raise ValueError(f"{_FLAG}: {db} exists and is not a file")
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise ValueError(f"{_FLAG}: cannot write to {db}")
    if db.is_file() and db.stat().st_size:
        with open(db, "rb") as f:  # SQLite would silently turn a short non-database file into one
            if f.read(16) != b"SQLite format 3\x00":
                raise ValueError(f"{_FLAG}: {db} exists and is not an SQLite database")
    for target in (db.parent, db.parent / ARTIFACTS_DIR_NAME):
        existing = target
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"{_FLAG}: cannot create {target}: {existing} is not a directory")
        try:  # a real write: os.access says yes to root on any mode
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as e:
            raise ValueError(f"{_FLAG}: cannot write to {existing} (for {target}): {e.strerror or e}") from None


def _check_server(uri: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    health, _ = _get(uri + "/health", deadline, uri, auth=False)
    code, body = _get(uri + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
                      deadline, uri, auth=True)
    if code in (401, 403):
        raise ValueError(
            f"{_FLAG} {uri}: the server refused access (HTTP {code}); set MLFLOW_TRACKING_TOKEN "
            f"or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    # /health moves under the server's --static-prefix, the REST API does not; MLflow answers
    # REST errors (a missing Default experiment: 404) as JSON with an error_code.
    if health == 200 or code == 200 or b'"error_code"' in body:
        return
    raise ValueError(f"{_FLAG} {uri}: reachable, but not an MLflow tracking server "
                     f"(HTTP {health} from /health, HTTP {code} from the REST API)")


def _get(url: str, deadline: float, uri: str, *, auth: bool) -> tuple[int, bytes]:
    """(status, first bytes of the body); ValueError("cannot reach") on no HTTP answer in time."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise ValueError(f"{_FLAG} {uri}: cannot reach it: no answer in time")
    request = urllib.request.Request(url, headers=_auth_headers() if auth else {})
    context = None
    if url.lower().startswith("https://"):
        # The two TLS settings MLflow's client honours, so the check accepts what MLflow would.
        context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))
        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=left, context=context) as response:
            return response.status, response.read(4096)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read(4096)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        # refused, DNS, TLS, timeout, or something that does not speak HTTP
        reason = getattr(e, "reason", None) or e
        raise ValueError(f"{_FLAG} {uri}: cannot reach it: {reason}") from None


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


# ---- writing a run --------------------------------------------------------------------------

def log_run(uri: str, *, experiment: str, run_name: str, params: Mapping[str, Any],
            metrics: Mapping[str, Any], artifacts: Iterable[str | os.PathLike]
            | Mapping[str, str | os.PathLike] = (), dicts: Mapping[str, Any] | None = None,
            tags: Mapping[str, Any] | None = None) -> str:
    """Record one finished run; returns its run id. The experiment is created when missing.

    - params: nested dicts flattened to ``"gbdt.max_depth"``; values stringified (lists as JSON),
      those over MLflow's 6000 characters cut, ending in ``...[truncated]``.
    - metrics: flattened the same way; only finite numbers are logged (bools, strings, lists, NaN
      and infinities are left out).
    - Key characters MLflow refuses (anything but letters, digits, ``_ - . : space``) become ``_``.
    - artifacts: paths, a file at the artifact root and a directory as a folder of its own name;
      or a mapping ``{folder: path}`` (``""`` is the root), e.g. ``{"bundle": bundle_dir}``.
    - dicts: ``{"schema": {...}}`` is logged as ``schema.json``.

    Everything is validated before the run exists; a failure while logging leaves the run marked
    FAILED, never FINISHED."""
    uri = _normalize(uri)
    if not isinstance(experiment, str) or not experiment.strip():
        raise ValueError(f"experiment must be a non-empty name, got {experiment!r}")
    if not isinstance(run_name, str) or not run_name.strip():
        raise ValueError(f"run_name must be a non-empty name, got {run_name!r}")
    flat_params = _keyed(((n, _param_value(v)) for n, v in _flatten(params, "params")), "params")
    flat_metrics = _keyed(((n, float(v)) for n, v in _flatten(metrics, "metrics") if _is_metric(v)),
                          "metrics")
    flat_tags = _keyed(((str(k), _cut(str(v), MAX_TAG_VALUE)) for k, v in (tags or {}).items()), "tags")
    files = _artifact_list(artifacts)
    texts = _dict_texts(dicts or {})
    check_reachable(uri)

    from mlflow.entities import Metric, Param, RunTag

    with _quiet_mlflow():
        client = _client(uri)
        experiment_id = _experiment_id(client, uri, experiment)
        run = client.create_run(experiment_id, run_name=run_name)
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            client.log_batch(run_id,
                             metrics=[Metric(k, v, now, 0) for k, v in flat_metrics.items()],
                             params=[Param(k, v) for k, v in flat_params.items()],
                             tags=[RunTag(k, v) for k, v in flat_tags.items()])
            for folder, path in files:
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), artifact_path=folder or None)
                else:
                    client.log_artifact(run_id, str(path), artifact_path=folder or None)
            for name, text in texts.items():
                client.log_text(run_id, text, name)
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
    return run_id


def log_to_run(uri: str, run_id: str, *, artifacts: Iterable[str | os.PathLike]
               | Mapping[str, str | os.PathLike] = (), tags: Mapping[str, Any] | None = None) -> None:
    """Add artifacts (e.g. the compiled bundle, as folder ``bundle``) and tags to a finished run."""
    uri = _normalize(uri)
    files = _artifact_list(artifacts)
    flat_tags = _keyed(((str(k), _cut(str(v), MAX_TAG_VALUE)) for k, v in (tags or {}).items()), "tags")
    check_reachable(uri)
    with _quiet_mlflow():
        client = _client(uri)
        for key, value in flat_tags.items():
            client.set_tag(run_id, key, value)
        for folder, path in files:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=folder or None)
            else:
                client.log_artifact(run_id, str(path), artifact_path=folder or None)


def _flatten(tree: Mapping[str, Any], what: str) -> list[tuple[str, Any]]:
    """{"test": {"auprc": x}} -> [("test.auprc", x)]; clashing names are reported by _keyed."""
    if not isinstance(tree, Mapping):
        raise ValueError(f"{what} must be a dict, got {type(tree).__name__}")
    out: list[tuple[str, Any]] = []

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, Mapping):
                walk(v, f"{prefix}{k}.")
            else:
                out.append((f"{prefix}{k}", v))

    walk(tree, "")
    return out


def _keyed(names: Iterable[tuple[str, Any]], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in names:
        key = _key(name, what)
        if key in out:
            raise ValueError(f"{what}: two entries are both logged as {key!r}")
        out[key] = value
    return out


def _key(name: str, what: str) -> str:
    key = _BAD_KEY_CHARS.sub("_", name)
    if not key or len(key) > MAX_KEY:
        raise ValueError(f"{what}: key {name!r} must be 1..{MAX_KEY} characters")
    if posixpath.normpath(key) != key or key.startswith("."):  # MLflow stores some keys as paths
        raise ValueError(f"{what}: key {name!r} is not a valid MLflow name")
    return key


def _param_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        try:
            text = json.dumps(list(v))
        except (TypeError, ValueError):
            text = str(list(v))
    else:
        text = str(v)
    return _cut(text, MAX_PARAM_VALUE)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - len(TRUNCATED)] + TRUNCATED


def _is_metric(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _artifact_list(artifacts) -> list[tuple[str, Path]]:
    if isinstance(artifacts, (str, os.PathLike)):
        raise ValueError("artifacts must be a list of paths or a {folder: path} dict, not one path")
    if isinstance(artifacts, Mapping):
        pairs = [(str(folder), Path(p)) for folder, p in artifacts.items()]
    else:
        pairs = [(Path(p).name if Path(p).is_dir() else "", Path(p)) for p in artifacts]
    for folder, path in pairs:
        if not path.exists():
            raise ValueError(f"artifact {path} does not exist")
        if folder and (posixpath.normpath(folder) != folder or folder.startswith((".", "/"))):
            raise ValueError(f"artifact folder {folder!r} must be a plain relative path")
    return pairs


def _dict_texts(dicts: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name, value in dicts.items():
        if not isinstance(name, str) or not re.fullmatch(r"[\w.\-]+", name) or name.startswith("."):
            raise ValueError(f"dicts: name {name!r} must be a plain file name (letters, digits, _ . -)")
        try:  # NaN is written as in training.json; anything JSON cannot hold is refused now
            text = json.dumps(value, indent=2)
        except (TypeError, ValueError) as e:
            raise ValueError(f"dicts[{name!r}] is not JSON-serializable: {e}") from None
        out[name if name.endswith(".json") else name + ".json"] = text + "\n"
    return out


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's store chatter, kept out of the CLI's output and out of pytest's warnings=error.

    MLflow 3.17's SQLite store configures its ORM with SQLAlchemy's ``noload`` strategy, which
    SQLAlchemy 2.1 deprecates; the warning concerns MLflow's code, and ours cannot act on it.
    Its first use of a new database logs table creation at INFO."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated",
                                category=DeprecationWarning)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        try:
            yield
        finally:
            logger.setLevel(level)


def _client(uri: str):
    from mlflow.tracking import MlflowClient
    if not _is_http(uri):
        _db_path(uri).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, uri: str, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, artifact_location=_artifact_root(uri))
    if found.lifecycle_stage != "active":
        raise ValueError(f"MLflow experiment {name!r} in {uri} is deleted; restore it "
                         f"(`mlflow experiments restore`) or use another experiment name")
    return found.experiment_id


# ---- reading a run back ---------------------------------------------------------------------

def read_run(uri: str, run_id: str) -> dict:
    """A logged run: ``run_id, run_name, experiment_id, experiment, status, params, metrics, tags``
    (without MLflow's own ``mlflow.*``), ``artifacts`` (every file, relative, sorted),
    ``artifact_uri``, and ``url``: the run's page on a tracking server (None for a local store;
    open that with ``mlflow ui --backend-store-uri <uri>``). ValueError for an unknown run."""
    uri = _normalize(uri)
    check_reachable(uri)
    from mlflow.exceptions import MlflowException

    with _quiet_mlflow():
        client = _client(uri)
        try:
            run = client.get_run(run_id)
        except MlflowException as e:
            raise ValueError(f"run {run_id!r} not found in {uri}: {e.message}") from None
        experiment = client.get_experiment(run.info.experiment_id)
        artifacts: list[str] = []
        pending = [None]
        while pending:
            for info in client.list_artifacts(run_id, pending.pop()):
                (pending if info.is_dir else artifacts).append(info.path)
    eid = run.info.experiment_id
    return {
        "run_id": run_id,
        "run_name": run.info.run_name,
        "experiment_id": eid,
        "experiment": experiment.name,
        "status": run.info.status,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "artifacts": sorted(artifacts),
        "artifact_uri": run.info.artifact_uri,
        "url": f"{uri}/#/experiments/{eid}/runs/{run_id}" if _is_http(uri) else None,
    }
