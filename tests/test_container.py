"""The container (docker/Dockerfile). No container engine runs on CI machines, so the image's two
stages are tested as the scripts they run: docker/build-wheel.sh builds the wheel from the tracked
files, docker/install-runtime.sh installs it into a fresh venv (no compiler, no torch), and the
service started from that venv serves a bundle as the repository's own install does. The
Dockerfile itself is checked for what the image promises: a build stage with compilers and a
runtime stage without, a non-root user, the bundle read-only and the state as a volume."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bundles import payments, random_bundle

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPILERS = ("gcc", "g++", "clang", "cmake", "ninja-build", "build-essential", "libssl-dev", "make")


def stages() -> list[dict]:
    """The Dockerfile's stages: name, base image and instructions (continuations joined)."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    out: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            words = rest.split()
            out.append({"base": words[0], "name": words[2] if len(words) > 2 else "", "ops": []})
        elif out:
            out[-1]["ops"].append((op, rest.strip()))
    return out


def test_dockerfile_runtime_stage_has_no_compilers_and_runs_as_a_user():
    build, runtime = stages()
    assert build["name"] == "build" and runtime["name"] == "runtime"
    build_runs = " ".join(rest for op, rest in build["ops"] if op == "RUN")
    assert "g++" in build_runs and "docker/build-wheel.sh" in build_runs
    run_ops = [rest for op, rest in runtime["ops"] if op == "RUN"]
    assert run_ops and all(not any(f" {c} " in f" {r} " for c in COMPILERS) for r in run_ops), run_ops
    assert "install-runtime.sh" in run_ops[0] and "useradd" in run_ops[0]
    copies = [rest for op, rest in runtime["ops"] if op == "COPY"]
    # from the build stage, only the wheel; from the context, only the install script
    assert [c for c in copies if c.startswith("--from=")] == ["--from=build /wheels/*.whl /wheels/"]
    assert all(c.startswith("--from=") or c.startswith("docker/install-runtime.sh") for c in copies)
    user = [rest for op, rest in runtime["ops"] if op == "USER"]
    assert user and user[-1] not in ("0", "root")
    assert ("VOLUME", '["/state"]') in runtime["ops"]
    entry = json.loads(dict(runtime["ops"])["ENTRYPOINT"])
    assert entry[:3] == ["libfraud", "serve", "/bundle"] and entry[entry.index("--state-dir") + 1] == "/state"
    assert "HEALTHCHECK" in dict(runtime["ops"]) and "/healthz" in dict(runtime["ops"])["HEALTHCHECK"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "build"} <= set(ignored)


def tracked_tree(dest: Path) -> Path:
    """The files git tracks (and new ones not ignored): what a clean clone and the docker context hold."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file() and not src.is_symlink():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_container_build_steps_give_a_runtime_that_serves(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (the build context is its tracked files)")
    src = tracked_tree(tmp_path / "src")
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", str(DOCKER / "build-wheel.sh"), str(src), str(wheels)], check=True, env=env,
                   timeout=1800)
    wheel = next(wheels.glob("libfraud-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "libfraud/_core" in " ".join(names) and "libfraud/include/libfraud/fraud.h" in names
    assert not [n for n in names if "/tests/" in n or n.endswith("_test") or "test_" in Path(n).name
                and not n.endswith(".py")], "test binaries in the wheel"

    runtime = tmp_path / "runtime"
    base = subprocess.run([sys.executable, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                          text=True, check=True).stdout.strip()
    renv = {**env, "PYTHON": str(Path(base) / "bin" / "python3")}
    subprocess.run(["bash", str(DOCKER / "install-runtime.sh"), str(wheels), str(runtime)], check=True,
                   env=renv, timeout=1800)
    py = runtime / "bin" / "python"
    for absent in ("torch", "xgboost", "treelite"):
        r = subprocess.run([str(py), "-c", f"import {absent}"], capture_output=True, text=True)
        assert r.returncode != 0, f"{absent} is importable in the runtime"

    bundle = random_bundle(tmp_path / "bundle", *payments(), seed=3)
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    proc = subprocess.Popen([str(runtime / "bin" / "libfraud"), "serve", str(bundle), "--port", str(port),
                             "--state-dir", str(state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={k: v for k, v in env.items() if k != "PYTHONPATH"}, cwd=tmp_path)
    try:
        import requests
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        event = {"txn_id": 1, "timestamp_ms": 1_700_000_000_000, "amount": 42.0, "card_id": 1, "device_id": 2,
                 "merchant_id": 3, "ip_id": -1, "country": 4, "mcc": 5411}
        r = requests.post(url + "/score_and_ingest", json=event, timeout=10)
        assert r.status_code == 200, r.text
        from libfraud import Scorer
        import pandas as pd
        want = Scorer(bundle).score(pd.DataFrame([event]))
        assert np.float32(r.json()["results"][0]["score"]) == want[0]
        assert any(state.iterdir())  # the durable store wrote its log in the state directory
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "Traceback" not in out, out
