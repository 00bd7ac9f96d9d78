"""libfraud.tracking: MLflow runs in a local SQLite store, and failing fast on a bad --mlflow-uri."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from libfraud import tracking
from libfraud.tracking import check_reachable, log_run, read_run, resolve_uri

PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"

# These tests also use MlflowClient directly, outside tracking's own narrow filter for the one
# warning MLflow 3.17's SQLite store raises under SQLAlchemy 2.1 (see tracking._quiet_mlflow).
pytestmark = pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def first_use(tmp_path_factory) -> tuple[str, subprocess.CompletedProcess]:
    """A store set up by a first run in a fresh interpreter with warnings as errors, so that
    MLflow's one-time set-up (ORM configuration, table creation) is seen by tracking's own filters
    and nothing else. One store for the module: a new MLflow database takes seconds to set up."""
    uri = resolve_uri(None, tmp_path_factory.mktemp("tracking"))
    code = ("import sys; from libfraud import tracking; "
            "tracking.log_run(sys.argv[1], experiment='first', run_name='r', params={'a': 1}, "
            "metrics={'m': 1.0}, dicts={'d': {}})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PYTHON_DIR), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code, uri], env=env,
                          capture_output=True, text=True, timeout=120)
    return uri, proc


@pytest.fixture(scope="module")
def store(first_use) -> str:
    uri, proc = first_use
    assert proc.returncode == 0, proc.stderr
    return uri


def test_first_use_of_a_store_is_quiet_and_warning_free(first_use):
    uri, proc = first_use
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert Path(uri[len("sqlite:///"):]).is_file()


@pytest.fixture
def bundle(tmp_path) -> Path:
    d = tmp_path / "bundle-0001"
    (d / "model").mkdir(parents=True)
    (d / "manifest.json").write_text('{"version": 1}\n')
    (d / "model" / "trees.bin").write_bytes(bytes(range(256)))
    return d


def test_a_run_reads_back_as_written(store, bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow must not put anything in the working directory
    report = tmp_path / "training.json"
    report.write_text('{"threshold": 0.7}\n')
    schema = {"fields": [{"name": "amount", "type": "numeric"}], "label": "is_fraud"}
    run_id = log_run(
        store, experiment="libfraud-test", run_name="train-1",
        params={"gbdt": {"max_depth": 4, "learning_rate": 0.1}, "fractions": [0.7, 0.15, 0.15],
                "note": None, "spec": "x" * 7000},
        metrics={"test": {"auprc": 0.5, "roc_auc": 0.9, "pr_curve": [0.1, 0.2]},
                 "valid": {"auprc": float("nan"), "rows": 300, "brier": float("inf")},
                 "by_fraud_type": {"card testing/burst": {"auprc_stacked": 0.25}},
                 "passed": True, "preset": "payments"},
        artifacts={"": report, "bundle": bundle}, dicts={"schema": schema},
        tags={"preset": "payments"})

    run = read_run(store, run_id)
    assert run["status"] == "FINISHED" and run["run_name"] == "train-1"
    assert run["experiment"] == "libfraud-test" and run["url"] is None
    params = run["params"]
    assert params["gbdt.max_depth"] == "4" and params["gbdt.learning_rate"] == "0.1"
    assert params["fractions"] == "[0.7, 0.15, 0.15]" and params["note"] == "None"
    assert len(params["spec"]) == 6000 and params["spec"].endswith("...[truncated]")
    assert run["metrics"] == {"test.auprc": 0.5, "test.roc_auc": 0.9, "valid.rows": 300.0,
                              "by_fraud_type.card testing_burst.auprc_stacked": 0.25}
    assert run["tags"] == {"preset": "payments"}
    assert run["artifacts"] == ["bundle/manifest.json", "bundle/model/trees.bin", "schema.json",
                                "training.json"]

    got = Path(MlflowClient(tracking_uri=store).download_artifacts(run_id, "", str(tmp_path / "dl")))
    assert (got / "bundle" / "model" / "trees.bin").read_bytes() == bytes(range(256))
    assert (got / "training.json").read_text() == report.read_text()
    assert json.loads((got / "schema.json").read_text()) == schema

    # The store is the directory's database with artifacts beside it, not ./mlruns.
    db = Path(store[len("sqlite:///"):])
    assert db.name == "mlflow.db" and db.parent.name == "mlruns" and db.is_file()
    assert run["artifact_uri"].startswith((db.parent / "artifacts").as_uri())
    assert sorted(os.listdir(tmp_path)) == ["bundle-0001", "dl", "training.json"]


def test_a_directory_in_a_list_keeps_its_name_and_runs_share_the_experiment(store, bundle):
    a = log_run(store, experiment="shared", run_name="a", params={}, metrics={"m": 1}, artifacts=[bundle])
    b = log_run(store, experiment="shared", run_name="b", params={}, metrics={"m": 2})
    ra, rb = read_run(store, a), read_run(store, b)
    assert ra["experiment_id"] == rb["experiment_id"] and a != b
    assert ra["artifacts"] == ["bundle-0001/manifest.json", "bundle-0001/model/trees.bin"]
    assert rb["artifacts"] == [] and rb["metrics"] == {"m": 2.0}


def test_bad_input_is_refused_before_a_run_exists(store, tmp_path):
    def runs() -> int:
        client = MlflowClient(tracking_uri=store)
        exp = client.get_experiment_by_name("refused")
        return 0 if exp is None else len(client.search_runs([exp.experiment_id]))
    bad = [
        ({"artifacts": [tmp_path / "missing.bin"]}, "does not exist"),
        ({"dicts": {"spec": {"when": object()}}}, r"dicts\['spec'\] is not JSON-serializable"),
        ({"dicts": {"../x": {}}}, "plain file name"),
        ({"params": {"a.b": 1, "a": {"b": 2}}}, "both logged as 'a.b'"),
        ({"metrics": {"x" * 300: 1.0}}, "1..250 characters"),
        ({"artifacts": str(tmp_path)}, "not one path"),
    ]
    for kwargs, match in bad:
        args = {"params": {}, "metrics": {}, **kwargs}
        with pytest.raises(ValueError, match=match):
            log_run(store, experiment="refused", run_name="r", **args)
    assert runs() == 0


def test_reading_an_unknown_run_fails_clearly(store):
    with pytest.raises(ValueError, match="run 'nope' not found"):
        read_run(store, "nope")


def test_resolve_uri_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_uri(None, tmp_path / "out") == f"sqlite:///{tmp_path}/out/mlruns/mlflow.db"
    assert resolve_uri("runs", tmp_path / "unused") == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert resolve_uri(tmp_path / "runs", "x") == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert resolve_uri((tmp_path / "runs").as_uri(), "x") == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert resolve_uri("sqlite:///rel.db", "x") == f"sqlite:///{tmp_path}/rel.db"
    assert resolve_uri(f"sqlite:///{tmp_path}/a.db", "x") == f"sqlite:///{tmp_path}/a.db"
    assert resolve_uri("http://mlflow.internal:5000/", "x") == "http://mlflow.internal:5000"
    assert resolve_uri("HTTPS://h/prefix", "x") == "HTTPS://h/prefix"
    for bad, match in [("ftp://h/x", "unsupported scheme"), ("http://", "no host"),
                       ("sqlite://", "sqlite:///"), ("", "is empty"), ("a?b", "may not contain")]:
        with pytest.raises(ValueError, match=f"--mlflow-uri.*{match}"):
            resolve_uri(bad, tmp_path)


def test_a_legacy_file_store_is_refused(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "meta.yaml").write_text("name: Default\n")
    with pytest.raises(ValueError, match="--mlflow-uri.*MLflow file store.*migrate"):
        resolve_uri(tmp_path, "x")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_fails_fast_before_anything_is_logged(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"--mlflow-uri {uri}: cannot reach it"):
        check_reachable(uri)
    with pytest.raises(ValueError, match="--mlflow-uri.*cannot reach it"):
        log_run(uri, experiment="e", run_name="r", params={}, metrics={"m": 1.0})
    assert time.monotonic() - start < 10


def test_a_server_that_never_answers_times_out():
    with socket.socket() as s:  # accepts connections (backlog) but never replies
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        start = time.monotonic()
        with pytest.raises(ValueError, match="cannot reach it"):
            check_reachable(f"http://127.0.0.1:{s.getsockname()[1]}", timeout_s=0.5)
        assert time.monotonic() - start < 3


class _Server:
    """A stand-in tracking server: answers path -> (status, body); records Authorization."""

    def __init__(self, routes: dict[str, tuple[int, bytes]]):
        seen = self.auth = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.headers.get("Authorization"))
                status, body = routes.get(self.path.split("?")[0], (404, b"<html>not found</html>"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


API = "/api/2.0/mlflow/experiments/get-by-name"


def test_a_healthy_server_passes_and_gets_the_credentials(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0k")
    with _Server({"/health": (200, b"OK"), API: (200, b'{"experiment": {}}')}) as server:
        check_reachable(server.uri + "/")
    assert server.auth == [None, "Bearer t0k"]  # /health gets no credentials


def test_a_server_under_a_static_prefix_passes_by_its_rest_api():
    body = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no Default"}'
    with _Server({API: (404, body)}) as server:
        check_reachable(server.uri)


def test_refused_credentials_and_other_servers_fail_clearly():
    with _Server({"/health": (200, b"OK"), API: (401, b"")}) as server:
        with pytest.raises(ValueError, match="refused access.*MLFLOW_TRACKING_TOKEN"):
            check_reachable(server.uri)
    with _Server({}) as server:
        with pytest.raises(ValueError, match="not an MLflow tracking server"):
            check_reachable(server.uri)


def test_an_unwritable_local_store_fails_clearly(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="--mlflow-uri.*a-file is not a directory"):
        check_reachable(resolve_uri(blocker / "runs", "x"))
    with pytest.raises(ValueError, match="--mlflow-uri.*a-file is not a directory"):
        log_run(resolve_uri(blocker / "runs", "x"), experiment="e", run_name="r", params={}, metrics={})
    with pytest.raises(ValueError, match="--mlflow-uri.*is not an SQLite database"):
        check_reachable(f"sqlite:///{blocker}")
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only directory")
def test_a_read_only_directory_fails_clearly(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="--mlflow-uri: cannot write to"):
            check_reachable(resolve_uri(ro / "runs", "x"))
    finally:
        ro.chmod(0o700)


def test_constants_match_mlflow():
    from mlflow.utils import validation
    assert tracking.MAX_PARAM_VALUE == validation.MAX_PARAM_VAL_LENGTH
    assert tracking.MAX_KEY == validation.MAX_ENTITY_KEY_LENGTH
    assert tracking.MAX_TAG_VALUE == validation.MAX_TAG_VAL_LENGTH
