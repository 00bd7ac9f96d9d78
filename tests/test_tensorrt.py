"""The TensorRT path, as far as a machine without a GPU or TensorRT can check it.

What runs here: the CMake option (OFF prints the skip message; ON fails clearly without NvInfer.h),
export/tensorrt_engine.py's ImportError without the `tensorrt` package, `bash -n` on
export/gpu_check.sh, _core.GnnModel("tensorrt", ...) without the plugin, and a -fsyntax-only parse
of cpp/backends/tensorrt/tensorrt_backend.cpp against throwaway declarations of the TensorRT 10
API written into tmp (they check the plugin against this file's reading of the API, not against
NVIDIA's headers). Engines, FP16 parity and timings need a GPU: export/gpu_check.sh.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from libfraud import _core

ROOT = Path(__file__).resolve().parents[1]
TRT_DIR = ROOT / "cpp" / "backends" / "tensorrt"
SKIP_MESSAGE = "libfraud: TensorRT GNN backend: skipped (LIBFRAUD_WITH_TENSORRT=OFF; needs TensorRT and CUDA)"


def _configure(tmp_path: Path, *defines: str) -> subprocess.CompletedProcess:
    """CMake configure of the project alone (no Python module, tests or torch plugin): about 1 s."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("no cmake on PATH")
    return subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), "-DLIBFRAUD_BUILD_PYTHON=OFF",
         "-DLIBFRAUD_BUILD_TESTS=OFF", "-DLIBFRAUD_WITH_TORCH=OFF", f"-DPython_EXECUTABLE={sys.executable}",
         *defines],
        capture_output=True, text=True, timeout=120)


def test_cmake_off_by_default_prints_the_skip_message(tmp_path):
    r = _configure(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert SKIP_MESSAGE in r.stdout
    assert not (tmp_path / "build" / "libfraud_tensorrt.so").exists()


def test_cmake_on_without_tensorrt_fails_clearly(tmp_path):
    r = _configure(tmp_path, "-DLIBFRAUD_WITH_TENSORRT=ON", f"-DTENSORRT_ROOT={tmp_path / 'no-tensorrt'}")
    if r.returncode == 0:
        pytest.skip("TensorRT and CUDA are installed here: ON configures (the GPU check builds it)")
    assert "LIBFRAUD_WITH_TENSORRT=ON but" in r.stderr, r.stderr
    assert "NvInfer.h" in r.stderr or "libnvinfer" in r.stderr or "CUDA toolkit" in r.stderr, r.stderr


def _load_tensorrt_engine_module():
    """libfraud.export.tensorrt_engine, or the source file when the installed package predates it."""
    if importlib.util.find_spec("libfraud.export.tensorrt_engine") is not None:
        return importlib.import_module("libfraud.export.tensorrt_engine")
    spec = importlib.util.spec_from_file_location("_tensorrt_engine_src", ROOT / "export" / "tensorrt_engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_without_tensorrt_says_what_is_missing(monkeypatch):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT's Python package is installed here")
    monkeypatch.delitem(sys.modules, "libfraud.export.tensorrt_engine", raising=False)
    with pytest.raises(ImportError, match=r"needs TensorRT's Python package `tensorrt`.*tensorrt-cu12"):
        _load_tensorrt_engine_module()


def test_gpu_check_script_parses():
    script = ROOT / "export" / "gpu_check.sh"
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # The embedded Python driver must compile too (bash -n does not look inside the heredoc).
    text = script.read_text()
    start = text.index("<<'PY'\n") + len("<<'PY'\n")
    compile(text[start:text.index("\nPY\n", start)], "gpu_check.sh:python", "exec")


def test_tensorrt_kind_without_the_plugin_is_backend_unavailable(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not an engine")
    with pytest.raises(_core.FraudError) as info:
        _core.GnnModel("tensorrt", str(plan), 8, plugin_dir=str(tmp_path))
    assert info.value.status == "FRAUD_STATUS_BACKEND_UNAVAILABLE"
    assert "libfraud_tensorrt.so" in str(info.value)


# --- -fsyntax-only against throwaway TensorRT 10 declarations (never in the tree) --------------

_NVINFER_STUB = r"""
#pragma once
#include <cstddef>
#include <cstdint>
typedef struct CUstream_st* cudaStream_t;
namespace nvinfer1 {
using AsciiChar = char;
class Dims64 { public: static constexpr int32_t MAX_DIMS{8}; int32_t nbDims; int64_t d[MAX_DIMS]; };
using Dims = Dims64;
enum class DataType : int32_t { kFLOAT = 0, kHALF = 1, kINT8 = 2, kINT32 = 3, kBOOL = 4 };
enum class TensorIOMode : int32_t { kNONE = 0, kINPUT = 1, kOUTPUT = 2 };
enum class OptProfileSelector : int32_t { kMIN = 0, kOPT = 1, kMAX = 2 };
enum class ExecutionContextAllocationStrategy : int32_t { kSTATIC = 0, kON_PROFILE_CHANGE = 1, kUSER_MANAGED = 2 };
class ILogger {
public:
    enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1, kWARNING = 2, kINFO = 3, kVERBOSE = 4 };
    virtual void log(Severity severity, AsciiChar const* msg) noexcept = 0;
    virtual ~ILogger() = default;
};
class IExecutionContext {
public:
    virtual ~IExecutionContext() noexcept;
    bool setInputShape(char const* tensorName, Dims const& dims) noexcept;
    bool setTensorAddress(char const* tensorName, void* data) noexcept;
    bool enqueueV3(cudaStream_t stream) noexcept;
};
class ICudaEngine {
public:
    virtual ~ICudaEngine() noexcept;
    int32_t getNbIOTensors() const noexcept;
    char const* getIOTensorName(int32_t index) const noexcept;
    TensorIOMode getTensorIOMode(char const* tensorName) const noexcept;
    DataType getTensorDataType(char const* tensorName) const noexcept;
    Dims getTensorShape(char const* tensorName) const noexcept;
    int32_t getNbOptimizationProfiles() const noexcept;
    Dims getProfileShape(char const* tensorName, int32_t profileIndex, OptProfileSelector select) const noexcept;
    IExecutionContext* createExecutionContext(
        ExecutionContextAllocationStrategy strategy = ExecutionContextAllocationStrategy::kSTATIC) noexcept;
};
class IRuntime {
public:
    virtual ~IRuntime() noexcept;
    ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept;
};
IRuntime* createInferRuntime(ILogger& logger) noexcept;
}  // namespace nvinfer1
extern "C" int32_t getInferLibVersion() noexcept;
"""

# Only when the real CUDA headers are missing: the subset of cuda_runtime_api.h the plugin uses.
_CUDA_STUB = r"""
#pragma once
#include <cstddef>
typedef struct CUstream_st* cudaStream_t;
enum cudaError { cudaSuccess = 0 };
typedef enum cudaError cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
#define cudaStreamNonBlocking 0x01
struct cudaDeviceProp { char name[256]; int major; int minor; };
cudaError_t cudaGetDevice(int*); cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp*, int);
const char* cudaGetErrorName(cudaError_t); const char* cudaGetErrorString(cudaError_t);
cudaError_t cudaMalloc(void**, size_t); cudaError_t cudaFree(void*);
cudaError_t cudaMemcpyAsync(void*, const void*, size_t, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t*, unsigned int);
cudaError_t cudaStreamSynchronize(cudaStream_t); cudaError_t cudaStreamDestroy(cudaStream_t);
"""


def _nlohmann_include() -> Path | None:
    try:
        import nlohmann_json  # the build requirement that carries the headers
    except ImportError:
        return None
    inc = Path(nlohmann_json.__file__).parent / "include"
    return inc if (inc / "nlohmann" / "json.hpp").exists() else None


def test_plugin_source_parses_against_the_tensorrt10_api(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    json_inc = _nlohmann_include()
    if cxx is None or json_inc is None:
        pytest.skip("needs g++ and the nlohmann-json package's headers")
    stub = tmp_path / "stub-include"
    stub.mkdir()
    (stub / "NvInfer.h").write_text(_NVINFER_STUB)
    cuda_inc = Path("/usr/local/cuda/include")
    if (cuda_inc / "cuda_runtime_api.h").exists():
        # The real CUDA header defines cudaStream_t; drop the stub's copy of the typedef.
        (stub / "NvInfer.h").write_text(_NVINFER_STUB.replace("typedef struct CUstream_st* cudaStream_t;\n",
                                                              "#include <cuda_runtime_api.h>\n", 1))
        includes = ["-I", str(stub), "-isystem", str(cuda_inc)]
    else:
        (stub / "cuda_runtime_api.h").write_text(_CUDA_STUB)
        includes = ["-I", str(stub)]
    r = subprocess.run(
        [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         *includes, "-isystem", str(json_inc), "-I", str(ROOT / "cpp" / "src"),
         "-I", str(ROOT / "cpp" / "include"), str(TRT_DIR / "tensorrt_backend.cpp")],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
