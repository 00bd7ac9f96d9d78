"""Concurrency stress: 8 scoring threads, 1 ingest thread and a bundle hot swap every 100 ms, through
the C API (bench/stress.c), for 60 s. Requests served, failed (must be 0), p99 latency during swaps.

    python bench/stress.py                       # the committed figure: 60 s, 8 scorers, 100 ms swaps
    python bench/stress.py --seconds 5           # a quick look
    python bench/stress.py --sanitize thread --seconds 10   # under ThreadSanitizer (builds libfraud)

Writes bench/results/<date>-stress.json (--out to change). Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

import libfraud
from libfraud.data.declared import load_preset
from libfraud.data.generate import generate_transactions
from libfraud.data.schema import to_txn_records  # fraud_txn records: stress.c's input
from libfraud.export import build_bundle
from libfraud.features import as_matrix, replay_features

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def make_bundles(work: Path, n: int) -> tuple[Path, Path, pd.DataFrame]:
    """Two tree bundles of the same features (the payments preset, different seeds), so each swap
    really changes model; stress.c drives them through the fraud_txn functions."""
    df = pd.concat(list(generate_transactions(n, seed=11, fraud_rate=0.02)), ignore_index=True)
    schema, spec = load_preset("payments", df.columns)
    features = replay_features(df, schema, spec)
    X = as_matrix(features)
    y = df["label"].to_numpy(dtype=np.float32)
    names = list(features.columns)
    cut = int(0.8 * n)
    bundles = []
    for seed in (1, 2):
        booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "seed": seed, "subsample": 0.8,
                             "nthread": 2}, xgb.DMatrix(X[:cut], label=y[:cut], feature_names=names),
                            num_boost_round=200)
        bundles.append(build_bundle(work / f"bundle-{seed}", booster=booster, feature_names=names,
                                    schema=schema.to_json(), spec=spec.to_json(), X_holdout=X[cut:], threshold=0.5,
                                    threshold_rule="stress model: fixed 0.5", metrics={}))
    return bundles[0], bundles[1], df


def build_stress(work: Path, sanitize: str | None) -> tuple[Path, dict]:
    cc = os.environ.get("CC", "cc")
    out = work / "stress"
    flags = ["-std=c11", "-O2", "-pthread", f"-I{HERE}"]
    env = dict(os.environ)
    if sanitize:
        # The library itself must be instrumented too: build it from source with the sanitizer.
        build = ROOT / "build" / f"sanitize-{sanitize}"
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja", "-DLIBFRAUD_BUILD_PYTHON=OFF",
                        "-DLIBFRAUD_BUILD_TESTS=OFF", "-DLIBFRAUD_WITH_TORCH=OFF",
                        f"-DLIBFRAUD_SANITIZE={sanitize}", f"-DPython_EXECUTABLE={sys.executable}",
                        "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), "--target", "fraud"], check=True, stdout=subprocess.DEVNULL)
        link = [f"-I{ROOT / 'cpp' / 'include'}", f"-L{build}", "-lfraud", f"-Wl,-rpath,{build}",
                f"-fsanitize={sanitize}", "-g"]
    else:
        env["PKG_CONFIG_PATH"] = libfraud.pkgconfig_path
        pc = subprocess.run(["pkg-config", "--cflags", "--libs", "libfraud"], env=env, check=True,
                            capture_output=True, text=True).stdout.split()
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "libfraud"], env=env, check=True,
                                capture_output=True, text=True).stdout.strip()
        link = [*pc, f"-Wl,-rpath,{libdir}"]
    subprocess.run([cc, *flags, str(HERE / "stress.c"), "-o", str(out), *link], check=True)
    return out, {"cc": cc, "sanitize": sanitize or "none"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--scorers", type=int, default=8)
    p.add_argument("--swap-ms", type=int, default=100)
    p.add_argument("--transactions", type=int, default=200_000)
    p.add_argument("--sanitize", choices=("thread", "address"), help="build libfraud and the harness with it")
    p.add_argument("--out", type=Path, help="JSON result path (default bench/results/<date>-stress.json)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="libfraud-stress-") as tmp:
        work = Path(tmp)
        bundle_a, bundle_b, df = make_bundles(work, a.transactions)
        txns = work / "txns.bin"
        to_txn_records(df).tofile(txns)
        exe, build = build_stress(work, a.sanitize)
        env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=0 second_deadlock_stack=1"}
        run = subprocess.run([str(exe), str(bundle_a), str(bundle_b), str(txns), str(a.seconds),
                              str(a.scorers), str(a.swap_ms)], capture_output=True, text=True, env=env)
    if not run.stdout.strip():
        print(run.stderr, file=sys.stderr)
        return 2
    result = json.loads(run.stdout)
    result["sanitizer_reports"] = run.stderr.count("WARNING: ThreadSanitizer") + run.stderr.count("ERROR: AddressSanitizer")
    result["build"] = build
    result["machine"] = {"cpu": _cpu(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
                         "libfraud": libfraud.__version__}
    result["command"] = "python bench/stress.py " + " ".join(sys.argv[1:])
    out = a.out or HERE / "results" / f"{dt.date.today().isoformat()}-stress{'-' + a.sanitize if a.sanitize else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if result["sanitizer_reports"]:
        print(run.stderr[-4000:], file=sys.stderr)
    return 0 if run.returncode == 0 and not result["sanitizer_reports"] else 1


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
