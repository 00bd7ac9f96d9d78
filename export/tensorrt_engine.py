"""ONNX -> TensorRT engine (target ``tensorrt-fp16``), with the facts a bundle records about it and
a parity check against float32. Needs an NVIDIA GPU and TensorRT's Python package (``tensorrt``,
TensorRT >= 10; ``pip install tensorrt-cu12`` where NVIDIA's wheels are reachable).

NOT verified on a GPU in this repository's CI: export/gpu_check.sh is the one script that checks
it on a GPU machine. See export/BUNDLE.md, "TensorRT engines (unverified here)".

Device memory and streams come from the CUDA driver API through ``ctypes`` (``libcuda.so.1``,
installed with every NVIDIA driver): no CUDA build of torch and no cuda-python are needed, so the
project's CPU-only .venv can build and check engines once ``tensorrt`` is installed.

``build_engine`` writes ``<plan>`` and its sidecar ``<plan>.json`` (the facts it returns); the C++
plugin (libfraud_tensorrt.so) reads the sidecar at load and refuses an engine built for another
GPU model or TensorRT version.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

try:
    import tensorrt as trt
except ImportError as exc:  # the message is the point: say what is missing and where it comes from
    raise ImportError(
        "libfraud.export.tensorrt_engine needs TensorRT's Python package `tensorrt` (TensorRT >= 10) "
        "and an NVIDIA GPU; install it with `pip install tensorrt-cu12` where NVIDIA's wheels are "
        f"reachable (the import failed: {exc})") from exc

__all__ = [
    "FP16_LOGIT_TOLERANCE", "INPUT_NAMES", "OUTPUT_NAMES", "SIDECAR_FORMAT", "TensorRtEngine",
    "build_engine", "check_engine_parity", "gpu_facts", "neighbourhood_dims", "sidecar_path", "time_engine",
]

#: The ONNX graph's inputs (export/onnx_export.py), in the C ABI's order, and its outputs.
INPUT_NAMES = ("target_x", "ent1_x", "ent1_mask", "txn2_x", "txn2_mask", "ent3_x", "ent3_mask")
OUTPUT_NAMES = ("logit", "embedding")
SIDECAR_FORMAT = "libfraud-tensorrt-engine"

#: Max |FP16 engine - float32 reference| on logits and embeddings. FP16 keeps 11 significant bits
#: (unit roundoff 4.9e-4); logits of magnitude up to ~10 through three layers of ~50-wide dot
#: products give errors of order 1e-3 when TensorRT accumulates in FP16. ONNX Runtime's FP16 graph
#: on CPU was within 1.5e-4 of float32 (FACTS.md); 1e-2 leaves room for TensorRT's FP16 tactics.
#: A budget, not a measurement: gpu_check.sh records the measured figure next to it.
FP16_LOGIT_TOLERANCE = 1e-2
FP32_TOLERANCE = 1e-4  # an FP32 engine (TF32 off) against float32


def neighbourhood_dims(row_shapes: Mapping[str, Sequence[int]]) -> tuple[int, int, int]:
    """(E, Ft, K) of the seven inputs' per-row shapes (batch dimension dropped): E from ent1_x
    [E, E+1], Ft from target_x [Ft], K from txn2_x [E, K, Ft]; ValueError unless all seven are the
    contract's for those (cpp/src/backends/gnn_backend.h)."""
    try:
        E, Ft, K = int(row_shapes["ent1_x"][0]), int(row_shapes["target_x"][0]), int(row_shapes["txn2_x"][1])
    except (IndexError, KeyError) as exc:
        raise ValueError(f"inputs {dict(row_shapes)} are not the neighbourhood arrays") from exc
    Fe = E + 1
    want = {"target_x": [Ft], "ent1_x": [E, Fe], "ent1_mask": [E], "txn2_x": [E, K, Ft], "txn2_mask": [E, K],
            "ent3_x": [E, K, E, Fe], "ent3_mask": [E, K, E]}
    for name in INPUT_NAMES:
        if [int(d) for d in row_shapes[name]] != want[name]:
            raise ValueError(f"input {name} has shape [B, {', '.join(map(str, row_shapes[name]))}], expected "
                             f"[B, {', '.join(map(str, want[name]))}] for {E} entity types, {Ft} transaction "
                             f"features and fanout {K}")
    return E, Ft, K


def sidecar_path(plan_path: str | os.PathLike) -> Path:
    """Where build_engine writes the facts the C++ plugin checks: ``<plan>.json``."""
    return Path(str(plan_path) + ".json")


# --- CUDA through the driver API (ctypes) -----------------------------------------------------

_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


class _Cuda:
    """The few CUDA driver calls an engine needs, on device ``device``'s primary context (the one
    the CUDA runtime inside TensorRT uses too)."""

    def __init__(self, device: int = 0) -> None:
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError as exc:
            raise RuntimeError(f"no CUDA driver (libcuda.so.1): {exc}; TensorRT needs an NVIDIA GPU") from exc
        u64, vp, sz = ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t
        sigs = {
            "cuInit": [ctypes.c_uint], "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
            "cuDeviceGetName": [ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
            "cuDeviceGetAttribute": [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int],
            "cuDriverGetVersion": [ctypes.POINTER(ctypes.c_int)],
            "cuDevicePrimaryCtxRetain": [ctypes.POINTER(vp), ctypes.c_int],
            "cuCtxSetCurrent": [vp],
            "cuMemAlloc_v2": [ctypes.POINTER(u64), sz], "cuMemFree_v2": [u64],
            "cuMemcpyHtoDAsync_v2": [u64, vp, sz, vp], "cuMemcpyDtoHAsync_v2": [vp, u64, sz, vp],
            "cuStreamCreate": [ctypes.POINTER(vp), ctypes.c_uint], "cuStreamSynchronize": [vp],
            "cuStreamDestroy_v2": [vp], "cuGetErrorString": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
        }
        for name, argtypes in sigs.items():
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        self.check(self.lib.cuInit(0), "cuInit")
        dev = ctypes.c_int()
        self.check(self.lib.cuDeviceGet(ctypes.byref(dev), device), f"cuDeviceGet({device})")
        self.device = dev.value
        ctx = ctypes.c_void_p()
        self.check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), self.device), "cuDevicePrimaryCtxRetain")
        self.check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            s = ctypes.c_char_p()
            self.lib.cuGetErrorString(rc, ctypes.byref(s))
            raise RuntimeError(f"{what}: CUDA error {rc} ({(s.value or b'?').decode()})")

    def name(self) -> str:
        buf = ctypes.create_string_buffer(256)
        self.check(self.lib.cuDeviceGetName(buf, 256, self.device), "cuDeviceGetName")
        return buf.value.decode()

    def compute_capability(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.check(self.lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                                 self.device), "cuDeviceGetAttribute")
        self.check(self.lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                                 self.device), "cuDeviceGetAttribute")
        return f"{major.value}.{minor.value}"

    def driver_cuda_version(self) -> str:
        v = ctypes.c_int()
        self.check(self.lib.cuDriverGetVersion(ctypes.byref(v)), "cuDriverGetVersion")
        return f"{v.value // 1000}.{(v.value % 1000) // 10}"

    def alloc(self, nbytes: int) -> int:
        p = ctypes.c_uint64()
        self.check(self.lib.cuMemAlloc_v2(ctypes.byref(p), max(int(nbytes), 4)), "cuMemAlloc")
        return p.value

    def free(self, ptr: int) -> None:
        self.lib.cuMemFree_v2(ptr)

    def stream(self) -> int:
        s = ctypes.c_void_p()
        self.check(self.lib.cuStreamCreate(ctypes.byref(s), 0), "cuStreamCreate")
        return s.value or 0

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.check(self.lib.cuMemcpyHtoDAsync_v2(dst, src.ctypes.data, src.nbytes, stream), "cuMemcpyHtoDAsync")

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        self.check(self.lib.cuMemcpyDtoHAsync_v2(dst.ctypes.data, src, dst.nbytes, stream), "cuMemcpyDtoHAsync")

    def sync(self, stream: int) -> None:
        self.check(self.lib.cuStreamSynchronize(stream), "cuStreamSynchronize")


def gpu_facts(device: int = 0) -> dict[str, str]:
    """This machine's GPU and versions, in the sidecar's terms."""
    cuda = _Cuda(device)
    return {"gpu_name": cuda.name(), "compute_capability": cuda.compute_capability(),
            "tensorrt_version": trt.__version__, "cuda_driver_version": cuda.driver_cuda_version()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- Building ---------------------------------------------------------------------------------

def build_engine(onnx_path: str | os.PathLike, plan_path: str | os.PathLike, *, fp16: bool = True,
                 max_batch: int = 256, opt_batch: int = 1, workspace_bytes: int = 1 << 30,
                 device: int = 0) -> dict[str, Any]:
    """Build a TensorRT engine from the dense ONNX graph at ``onnx_path`` and write it to
    ``plan_path`` and its facts to ``<plan_path>.json``; returns those facts (for the manifest).

    One optimization profile: batch 1..``max_batch``, tuned for ``opt_batch``; every other
    dimension (fanout K, entity types E, transaction features Ft) is fixed by the ONNX graph and
    recorded in the facts. ``fp16``: let TensorRT run layers in FP16
    (inputs and outputs stay float32); False builds an FP32 engine with TF32 off.
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= opt_batch <= max_batch, got opt_batch={opt_batch}, max_batch={max_batch}")
    facts = gpu_facts(device)  # also makes the device's primary context current
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # TensorRT 10 has only explicit-batch networks (the flag is deprecated); 8.x needs it.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads model.onnx.data beside it too
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")

    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    if set(inputs) != set(INPUT_NAMES) or set(outputs) != set(OUTPUT_NAMES):
        raise ValueError(f"{onnx_path} has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                         f"expected {list(INPUT_NAMES)} and {list(OUTPUT_NAMES)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        if not builder.platform_has_fast_fp16:
            raise RuntimeError(f"{facts['gpu_name']} has no fast FP16: build with fp16=False")
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    shapes: dict[str, list[int]] = {}
    for name in INPUT_NAMES:
        shape = list(inputs[name].shape)
        if any(d < 0 for d in shape[1:]):
            raise ValueError(f"{onnx_path}: input {name} has shape {shape}; only the batch may be dynamic")
        shapes[name] = shape[1:]
        profile.set_shape(name, [1, *shape[1:]], [opt_batch, *shape[1:]], [max_batch, *shape[1:]])
    config.add_optimization_profile(profile)
    entity_types, txn_features, fanout = neighbourhood_dims(shapes)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_seconds = time.perf_counter() - t0
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see its log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(plan_path, bytes(serialized))

    emb_shape = list(outputs["embedding"].shape)
    out = {
        "format": SIDECAR_FORMAT,
        "format_version": 1,
        "target": "tensorrt-fp16" if fp16 else "tensorrt-fp32",
        "precision": "float16" if fp16 else "float32",
        **facts,
        "profile": {"min_batch": 1, "opt_batch": opt_batch, "max_batch": max_batch},
        "fanout": fanout,
        "entity_types": entity_types,
        "txn_features": txn_features,
        "embedding_dim": int(emb_shape[-1]),
        "input_shapes": {n: ["B", *shapes[n]] for n in INPUT_NAMES},
        "onnx_sha256": _sha256(onnx_path),
        "plan_sha256": _sha256(plan_path),
        "plan_size": plan_path.stat().st_size,
        "build_seconds": round(build_seconds, 3),
    }
    # The sidecar last: a plan without one is refused at load, never half-trusted.
    _write_atomically(sidecar_path(plan_path), (json.dumps(out, indent=2) + "\n").encode())
    return out


# --- Running ----------------------------------------------------------------------------------

class TensorRtEngine:
    """A deserialized engine with one execution context and device buffers for ``max_batch``;
    single-threaded (the C++ plugin is the concurrent runner). ``run(*arrays)`` takes the seven
    float32 arrays and returns (logits [B], embeddings [B, D]) as NumPy arrays."""

    def __init__(self, plan_path: str | os.PathLike, device: int = 0) -> None:
        self.cuda = _Cuda(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT cannot deserialize {plan_path} (built for another GPU or TensorRT?)")
        self.context = self.engine.create_execution_context()
        self.max_batch = int(self.engine.get_tensor_profile_shape(INPUT_NAMES[0], 0)[2][0])
        self.stream = self.cuda.stream()
        self.row_shapes = {n: tuple(self.engine.get_tensor_shape(n))[1:] for n in (*INPUT_NAMES, *OUTPUT_NAMES)}
        self.buffers: dict[str, int] = {}
        for name, rest in self.row_shapes.items():
            self.buffers[name] = self.cuda.alloc(4 * self.max_batch * int(np.prod(rest, dtype=np.int64)))
            self.context.set_tensor_address(name, self.buffers[name])

    def run(self, *arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(arrays) != len(INPUT_NAMES):
            raise ValueError(f"need the {len(INPUT_NAMES)} arrays {INPUT_NAMES}, got {len(arrays)}")
        arrays = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in arrays)
        B = arrays[0].shape[0]
        logits = np.empty((B, *self.row_shapes["logit"]), np.float32)
        emb = np.empty((B, *self.row_shapes["embedding"]), np.float32)
        for start in range(0, B, self.max_batch):
            stop = min(B, start + self.max_batch)
            for name, a in zip(INPUT_NAMES, arrays):
                chunk = np.ascontiguousarray(a[start:stop])
                self.context.set_input_shape(name, chunk.shape)
                self.cuda.h2d(self.buffers[name], chunk, self.stream)
            if not self.context.execute_async_v3(self.stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see its log above)")
            lo, eo = logits[start:stop], emb[start:stop]  # contiguous row ranges: views are fine
            self.cuda.d2h(lo, self.buffers["logit"], self.stream)
            self.cuda.d2h(eo, self.buffers["embedding"], self.stream)
            self.cuda.sync(self.stream)  # also keeps `chunk` alive until its copy is done
        return logits.reshape(B), emb

    def close(self) -> None:
        for p in self.buffers.values():
            self.cuda.free(p)
        self.buffers.clear()

    def __enter__(self) -> "TensorRtEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reference_runner(reference: Any) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """float32 (logits, embeddings) from an ONNX path (ONNX Runtime, CPU), a torch module or a
    callable taking the seven arrays."""
    if isinstance(reference, (str, os.PathLike)):
        import onnxruntime as ort
        sess = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
        return lambda *a: tuple(sess.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, a))))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and isinstance(reference, torch.nn.Module):
        module = reference.eval()

        def run_torch(*a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                out = module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in a))
            return tuple(o.detach().cpu().float().numpy() for o in out)
        return run_torch
    if callable(reference):
        return reference
    raise TypeError(f"reference must be an ONNX path, a torch.nn.Module or a callable, got {type(reference)!r}")


def check_engine_parity(plan_path: str | os.PathLike, reference: Any,
                        inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], *,
                        tolerance_fp16: float = FP16_LOGIT_TOLERANCE,
                        runner: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """Run the engine at ``plan_path`` (or ``runner``, e.g. ``_core.GnnModel("tensorrt", ...).run``)
    and the float32 ``reference`` (an ONNX path run by ONNX Runtime on CPU, a torch module, or a
    callable) on the same ``inputs``; return the max abs differences and whether both are within
    ``tolerance_fp16``. Device work uses the CUDA driver API via ctypes (see the module doc)."""
    arrays = tuple(inputs[n] for n in INPUT_NAMES) if isinstance(inputs, Mapping) else tuple(inputs)
    arrays = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in arrays)
    ref_logits, ref_emb = (np.asarray(x, np.float32) for x in _reference_runner(reference)(*arrays))
    if runner is None:
        with TensorRtEngine(plan_path) as engine:
            logits, emb = engine.run(*arrays)
    else:
        logits, emb = (np.asarray(x, np.float32) for x in runner(*arrays))
    d_logit = float(np.max(np.abs(logits.reshape(-1) - ref_logits.reshape(-1)))) if logits.size else 0.0
    d_emb = float(np.max(np.abs(emb - ref_emb.reshape(emb.shape)))) if emb.size else 0.0
    worst = int(np.argmax(np.abs(logits.reshape(-1) - ref_logits.reshape(-1)))) if logits.size else -1
    return {
        "rows": int(arrays[0].shape[0]),
        "max_abs_diff_logit": d_logit,
        "max_abs_diff_embedding": d_emb,
        "worst_row": worst,
        "max_abs_logit": float(np.max(np.abs(ref_logits))) if ref_logits.size else 0.0,
        "tolerance": tolerance_fp16,
        "passed": bool(d_logit <= tolerance_fp16 and d_emb <= tolerance_fp16),
    }


def time_engine(plan_path: str | os.PathLike, inputs: Sequence[np.ndarray], *, repeats: int = 200,
                warmup: int = 20) -> dict[str, float]:
    """Wall time of one TensorRtEngine.run (host->device, enqueueV3, device->host, sync) from
    Python, in microseconds: p50, p99, mean over ``repeats`` calls after ``warmup``."""
    with TensorRtEngine(plan_path) as engine:
        for _ in range(warmup):
            engine.run(*inputs)
        ns = np.empty(repeats, np.int64)
        for i in range(repeats):
            t0 = time.perf_counter_ns()
            engine.run(*inputs)
            ns[i] = time.perf_counter_ns() - t0
    us = ns / 1e3
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "repeats": repeats, "batch": int(inputs[0].shape[0])}
