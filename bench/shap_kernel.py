"""TreeSHAP kernels side by side: explain/tree_shap (recursive) vs explain/fast_tree_shap (tables).

    python bench/shap_kernel.py [--rows 2000] [--sizes 100x6,500x6,1000x8]

Trains binary:logistic boosters on synthetic data (30 features, 5% missing), writes their
export/shap_tables.py tables and held-out rows to a temporary directory, and times both kernels in
C++ (bench/shap_kernel.cpp, compiled here with -O3 and no -march, as the library is): one thread,
each row timed alone after a warm-up pass, medians. Prints a table; under a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

N_FEATURES = 30


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[:, :6] = np.round(X[:, :6] * 2) / 2  # coarse columns: ties with thresholds
    w = rng.normal(size=N_FEATURES) * 0.4
    logit = X @ w + X[:, 0] * X[:, 1] - 0.8 * X[:, 2] * X[:, 3] + 0.5 * np.sin(3 * X[:, 4])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


def compile_driver(out: Path) -> Path:
    exe = out / "shap_kernel"
    src = ROOT / "cpp" / "src"
    subprocess.run(["c++", "-O3", "-std=c++17", "-DNDEBUG", f"-I{src}", f"-I{ROOT / 'cpp' / 'include'}",
                    str(HERE / "shap_kernel.cpp"), str(src / "explain" / "tree_shap.cpp"),
                    str(src / "explain" / "fast_tree_shap.cpp"), "-o", str(exe)], check=True)
    return exe


def write_tables(tables, rows: np.ndarray, out: Path) -> None:
    out.mkdir(parents=True)
    for name in ("feature", "threshold", "left", "right", "default_left", "cover", "value", "tree_offsets"):
        getattr(tables, name).tofile(out / name)
    np.ascontiguousarray(rows, dtype=np.float32).tofile(out / "rows")
    (out / "meta.txt").write_text(f"{tables.num_features} {tables.max_depth} {tables.expected_value!r}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000, help="at most this many rows timed per kernel")
    ap.add_argument("--sizes", default="100x6,500x6,1000x8", help="trees x depth, comma separated")
    ap.add_argument("--train-rows", type=int, default=20_000)
    args = ap.parse_args()

    import xgboost as xgb

    from libfraud.export import shap_tables

    X, y = synthetic(args.train_rows, seed=1)
    rows, _ = synthetic(args.rows, seed=2)
    work = Path(tempfile.mkdtemp(prefix="shap_kernel_"))
    try:
        exe = compile_driver(work)
        print(f"{'model':>8} {'leaves':>7} {'recursive us':>13} {'tables us':>10} {'speedup':>8} "
              f"{'build ms':>9} {'MB':>7} {'max |diff|':>11}")
        for size in args.sizes.split(","):
            trees, depth = (int(v) for v in size.split("x"))
            # max_bin 64 (of 256) keeps training 1000 trees a few seconds; the trees are alike.
            booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.1,
                                 "seed": 1, "tree_method": "hist", "max_bin": 64, "nthread": 2},
                                xgb.DMatrix(X, label=y), num_boost_round=trees)
            tables = shap_tables(booster)
            write_tables(tables, rows, work / size)
            # About a second of each kernel: the rows timed shrink with the model.
            recursive_rows = max(20, min(500, int(2e5 / (trees * 2 ** depth))))
            table_rows = max(200, min(args.rows, int(2e7 / (trees * 2 ** depth))))
            start = time.perf_counter()
            command = [str(exe), str(work / size), str(recursive_rows), str(table_rows)]
            r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            assert r["bytes"] == r["bytes_predicted"], r
            leaves = int((tables.left < 0).sum())
            print(f"{size:>8} {leaves:>7} {r['recursive_us']:>13.1f} {r['tables_us']:>10.1f} "
                  f"{r['recursive_us'] / r['tables_us']:>7.1f}x {r['build_ms']:>9.1f} "
                  f"{r['bytes'] / 2**20:>7.1f} {r['max_abs_diff']:>11.2g}   ({time.perf_counter() - start:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
