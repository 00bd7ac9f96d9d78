#!/usr/bin/env bash
# The one check of the TensorRT path on a GPU machine (nothing in CI runs it: no GPU there).
#
# Needs: an NVIDIA GPU and driver; the repo built with its .venv (`make install`); TensorRT's
# Python package in that venv (`.venv/bin/pip install tensorrt-cu12` where NVIDIA's wheels are
# reachable); for the C++ plugin step also TensorRT's headers (NvInfer.h: a TensorRT tarball or
# libnvinfer-dev; the pip wheels have none) found via TENSORRT_ROOT, and the CUDA toolkit.
#
# Usage: export/gpu_check.sh [--onnx MODEL.onnx] [--max-batch 256] [--fanout 10]
#                            [--entity-types 4] [--txn-features 5]
#   --onnx  a dense ONNX graph with the seven neighbourhood inputs (export/onnx_export.py);
#           without it a tiny dense GNN with random weights is exported here (parity needs no
#           training; the real model's figures need --onnx), with fanout, E and Ft as given.
#   The check's inputs take K, E and Ft from the built engine (so from --onnx's graph).
# Steps: export (or take) the ONNX; build the FP16 engine; parity of the engine against float32
# (ONNX Runtime, CPU) at batch 1 and 256; Python timings at batch 1 and 256 (p50/p99); build
# libfraud_tensorrt.so (LIBFRAUD_WITH_TENSORRT=ON) and run the same parity and timings through
# _core.GnnModel("tensorrt", plan, D); check the plugin refuses an engine whose sidecar names
# another GPU. Writes results.json to $OUT (or ./gpu-check-out). Exit 0 only if every step passed.
# Budget: a few minutes on an H200 (engine build ~1 min, plugin build ~1 min, timings seconds).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT_DIR=${OUT:-$PWD/gpu-check-out}
BUILD_DIR=${GPU_CHECK_BUILD_DIR:-${TMPDIR:-/tmp}/libfraud-gpu-check-build}
ONNX=""
MAX_BATCH=256
FANOUT=10
ENTITY_TYPES=4
TXN_FEATURES=5

while [ $# -gt 0 ]; do
  case "$1" in
    --onnx) ONNX=$(realpath "$2"); shift 2 ;;
    --max-batch) MAX_BATCH=$2; shift 2 ;;
    --fanout) FANOUT=$2; shift 2 ;;
    --entity-types) ENTITY_TYPES=$2; shift 2 ;;
    --txn-features) TXN_FEATURES=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

mkdir -p "$OUT_DIR"
echo "gpu_check: results in $OUT_DIR"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >"$OUT_DIR/nvidia-smi.txt" 2>&1; then
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi)" >&2; exit 2
fi
if [ ! -x "$PY" ]; then
  echo "gpu_check: no $PY: build the repo first (make install) or set PYTHON" >&2; exit 2
fi
if ! "$PY" -c "import tensorrt" 2>/dev/null; then
  echo "gpu_check: $PY has no 'tensorrt': $PY -m pip install tensorrt-cu12 (NVIDIA's wheels)" >&2; exit 2
fi

# The C++ plugin: its own small build (no Python module, no torch plugin), never the venv's.
PLUGIN_STATUS=failed
CMAKE_ARGS=(-S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DLIBFRAUD_BUILD_PYTHON=OFF
  -DLIBFRAUD_BUILD_TESTS=OFF -DLIBFRAUD_WITH_TORCH=OFF -DLIBFRAUD_WITH_TENSORRT=ON
  "-DPython_EXECUTABLE=$PY")
if [ -n "${TENSORRT_ROOT:-}" ]; then CMAKE_ARGS+=("-DTENSORRT_ROOT=$TENSORRT_ROOT"); fi
# The wheel's libnvinfer.so.10 when no other is named (headers must still come from TENSORRT_ROOT).
WHEEL_LIBDIR=$("$PY" -c "import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))" 2>/dev/null || true)
if [ -z "${TENSORRT_ROOT:-}" ] && [ -n "$WHEEL_LIBDIR" ] && [ -e "$WHEEL_LIBDIR/libnvinfer.so.10" ]; then
  CMAKE_ARGS+=("-DTENSORRT_NVINFER_LIBRARY=$WHEEL_LIBDIR/libnvinfer.so.10")
fi
echo "gpu_check: building libfraud_tensorrt.so (log: $OUT_DIR/plugin-build.log)"
if { cmake "${CMAKE_ARGS[@]}" && cmake --build "$BUILD_DIR" --target fraud_tensorrt -j "$(nproc)"; } \
    >"$OUT_DIR/plugin-build.log" 2>&1; then
  PLUGIN_STATUS=built
else
  echo "gpu_check: plugin build failed; the Python steps still run (see plugin-build.log)" >&2
fi

export GPU_CHECK_ROOT="$ROOT" GPU_CHECK_OUT="$OUT_DIR" GPU_CHECK_ONNX="$ONNX" GPU_CHECK_MAX_BATCH="$MAX_BATCH"
export GPU_CHECK_FANOUT="$FANOUT" GPU_CHECK_PLUGIN_DIR="$BUILD_DIR" GPU_CHECK_PLUGIN_STATUS="$PLUGIN_STATUS"
export GPU_CHECK_ENTITY_TYPES="$ENTITY_TYPES" GPU_CHECK_TXN_FEATURES="$TXN_FEATURES"
exec "$PY" - <<'PY'
import importlib.util, json, os, platform, shutil, sys, time, traceback
from pathlib import Path

import numpy as np

root, out = Path(os.environ["GPU_CHECK_ROOT"]), Path(os.environ["GPU_CHECK_OUT"])
max_batch, fanout = int(os.environ["GPU_CHECK_MAX_BATCH"]), int(os.environ["GPU_CHECK_FANOUT"])
tiny_e, tiny_ft = int(os.environ["GPU_CHECK_ENTITY_TYPES"]), int(os.environ["GPU_CHECK_TXN_FEATURES"])
plugin_dir, plugin_status = os.environ["GPU_CHECK_PLUGIN_DIR"], os.environ["GPU_CHECK_PLUGIN_STATUS"]
work = out / "work"
work.mkdir(parents=True, exist_ok=True)
# The source file, not the installed copy: the venv may predate it.
spec = importlib.util.spec_from_file_location("tensorrt_engine", root / "export" / "tensorrt_engine.py")
te = importlib.util.module_from_spec(spec)
spec.loader.exec_module(te)

results = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
           "python": sys.version.split()[0], "steps": {}}


def step(name, fn):
    t0 = time.perf_counter()
    try:
        value = fn()
        results["steps"][name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 2), "result": value}
        return value
    except Exception as exc:  # noqa: BLE001 - every failure goes into the report
        results["steps"][name] = {"ok": False, "seconds": round(time.perf_counter() - t0, 2),
                                  "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        return None


def neighbourhood(batch, k, seed, E, Ft):
    """Random arrays in the contract's shapes for fanout k, E entity types and Ft transaction
    features; masked slots zero (as the sampler pads)."""
    rng = np.random.default_rng(seed)
    Fe = E + 1
    m = lambda *s: (rng.random(s) < 0.7).astype(np.float32)  # noqa: E731
    target_x = rng.normal(size=(batch, Ft)).astype(np.float32)
    ent1_mask = m(batch, E)
    ent1_x = rng.normal(size=(batch, E, Fe)).astype(np.float32) * ent1_mask[..., None]
    txn2_mask = m(batch, E, k) * ent1_mask[..., None]
    txn2_x = rng.normal(size=(batch, E, k, Ft)).astype(np.float32) * txn2_mask[..., None]
    ent3_mask = m(batch, E, k, E) * txn2_mask[..., None]
    ent3_x = rng.normal(size=(batch, E, k, E, Fe)).astype(np.float32) * ent3_mask[..., None]
    return (target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask)


def tiny_onnx():
    """A dense 3-hop masked-mean GNN (random weights, D=16) for fanout, E and Ft as given, exported
    with a dynamic batch."""
    import torch
    from torch import nn

    def mmean(x, mask, dim):
        w = mask.unsqueeze(-1)
        return (x * w).sum(dim) / w.sum(dim).clamp(min=1.0)

    class Tiny(nn.Module):
        def __init__(self, h=64, d=16):
            super().__init__()
            fe = tiny_e + 1
            self.hop2, self.hop1 = nn.Linear(tiny_ft + fe, h), nn.Linear(fe + h, h)
            self.out, self.head = nn.Linear(tiny_ft + h, d), nn.Linear(d, 1)

        def forward(self, target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask):
            txn2 = torch.relu(self.hop2(torch.cat([txn2_x, mmean(ent3_x, ent3_mask, 3)], -1)))
            ent1 = torch.relu(self.hop1(torch.cat([ent1_x, mmean(txn2, txn2_mask, 2)], -1)))
            emb = torch.tanh(self.out(torch.cat([target_x, mmean(ent1, ent1_mask, 1)], -1)))
            return self.head(emb).squeeze(-1), emb

    torch.manual_seed(0)
    model = Tiny().eval()
    args = tuple(torch.from_numpy(a) for a in neighbourhood(4, fanout, 0, tiny_e, tiny_ft))
    path = work / "tiny.onnx"
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(model, args, str(path), input_names=list(te.INPUT_NAMES),
                      output_names=list(te.OUTPUT_NAMES), dynamo=True, external_data=False,
                      dynamic_shapes={n: {0: batch} for n in te.INPUT_NAMES})
    return str(path)


onnx_path = os.environ["GPU_CHECK_ONNX"] or step("export_tiny_onnx", tiny_onnx)
results["onnx"] = onnx_path
plan = work / "model.plan"
facts = step("build_engine_fp16", lambda: te.build_engine(onnx_path, plan, fp16=True, max_batch=max_batch)) \
    if onnx_path else None
if facts:
    results["engine"] = facts
    k, D, E, Ft = facts["fanout"], facts["embedding_dim"], facts["entity_types"], facts["txn_features"]
    inputs = {b: neighbourhood(b, k, 100 + b, E, Ft) for b in (1, 256)}
    for b, arrays in inputs.items():
        step(f"parity_python_b{b}", lambda a=arrays: te.check_engine_parity(plan, onnx_path, a))
        step(f"timing_python_b{b}", lambda a=arrays: te.time_engine(plan, a, repeats=500, warmup=50))
    # Past the profile's max batch: the runner chunks.
    step("parity_python_b600", lambda: te.check_engine_parity(plan, onnx_path, neighbourhood(600, k, 7, E, Ft)))

    if plugin_status == "built":
        from libfraud import _core

        def gnn():
            return _core.GnnModel("tensorrt", str(plan), D, plugin_dir=plugin_dir)

        model = step("plugin_load", lambda: gnn().plugin_path)
        if model is not None:
            m = gnn()
            for b, arrays in list(inputs.items()) + [(600, neighbourhood(600, k, 7, E, Ft))]:
                step(f"parity_plugin_b{b}", lambda a=arrays: te.check_engine_parity(plan, onnx_path, a, runner=m.run))
            for b, arrays in inputs.items():
                def plugin_timing(a=arrays):
                    us = m.time_run(*a, repeats=500, warmup=50) / 1e3
                    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
                            "mean_us": float(us.mean()), "repeats": 500, "batch": int(a[0].shape[0])}
                step(f"timing_plugin_b{b}", plugin_timing)

            def threads():
                from concurrent.futures import ThreadPoolExecutor
                a = inputs[256]
                want = m.run(*a)
                with ThreadPoolExecutor(8) as pool:
                    got = list(pool.map(lambda _: m.run(*a), range(64)))
                diff = max(float(np.max(np.abs(g[0] - want[0]))) for g in got)
                if diff != 0.0:
                    raise AssertionError(f"8 threads gave logits differing by {diff} from one thread")
                return {"threads": 8, "calls": 64, "max_abs_diff": diff}
            step("plugin_threads", threads)

            def refuses_other_gpu():
                other = work / "other-gpu.plan"
                shutil.copyfile(plan, other)
                side = json.loads(te.sidecar_path(plan).read_text())
                side["gpu_name"] = "NVIDIA Imaginary 9000"
                te.sidecar_path(other).write_text(json.dumps(side))
                try:
                    _core.GnnModel("tensorrt", str(other), D, plugin_dir=plugin_dir)
                except _core.FraudError as exc:
                    if exc.status != "FRAUD_STATUS_LOAD_ERROR" or "built for NVIDIA Imaginary 9000" not in str(exc):
                        raise
                    return {"status": exc.status, "message": str(exc)}
                raise AssertionError("the plugin loaded an engine whose sidecar names another GPU")
            step("plugin_refuses_other_gpu", refuses_other_gpu)
    else:
        results["steps"]["plugin_build"] = {"ok": False, "error": "see plugin-build.log"}

results["ok"] = bool(results["steps"]) and all(s["ok"] for s in results["steps"].values()) \
    and all(s["result"].get("passed", True) for s in results["steps"].values()
            if s["ok"] and isinstance(s.get("result"), dict))
(out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
for name, s in results["steps"].items():
    r = s.get("result")
    brief = {k: v for k, v in r.items() if k in ("max_abs_diff_logit", "max_abs_diff_embedding", "passed",
                                                 "p50_us", "p99_us")} if isinstance(r, dict) else ""
    print(f"{'ok  ' if s['ok'] else 'FAIL'} {name} {brief if s['ok'] else s['error']}")
print(f"gpu_check: {'PASSED' if results['ok'] else 'FAILED'}; {out / 'results.json'}")
sys.exit(0 if results["ok"] else 1)
PY
