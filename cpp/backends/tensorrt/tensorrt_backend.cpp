// libfraud_tensorrt.so: the TensorRT GNN backend plugin. Runs "tensorrt" artifacts (a serialized
// TensorRT 10 engine, .plan, built by export/tensorrt_engine.py) behind gnn_backend.h's C ABI;
// exports only fraud_gnn_backend_v1 (tensorrt_backend.map).
//
// An engine only runs on the GPU model and TensorRT version it was built with. The builder writes
// those facts to a sidecar, <plan>.json (export/BUNDLE.md, "TensorRT engines"); load() reads it,
// compares it with this process's GPU and libnvinfer, and refuses a mismatch with
// "built for <gpu> / TensorRT <v>, found <gpu> / TensorRT <v>" before deserializing anything.
//
// Threads: run() may be called from many threads at once. Each call takes a Slot (an
// IExecutionContext, a CUDA stream and device buffers sized for the profile's max batch) from a
// pool and returns it after; the pool grows to the number of concurrent callers and never shrinks,
// so nothing is allocated on the scoring path after warm-up. A batch larger than the engine's
// max batch is run in chunks. Inputs are copied host -> device, enqueueV3 runs on the slot's
// stream, outputs are copied back and the stream is synchronised before run() returns.
//
// Written against the TensorRT 10 API and never compiled against real TensorRT headers in this
// repository's CI (no GPU machine): tests/test_tensorrt.py only parses it with -fsyntax-only.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/gnn_backend.h"

namespace {

constexpr int kNumInputs = 7;
// The engine's tensor names: the ONNX graph's (export/onnx_export.py), in gnn_backend.h's order.
constexpr const char* kInputNames[kNumInputs] = {"target_x", "ent1_x",    "ent1_mask", "txn2_x",
                                                 "txn2_mask", "ent3_x", "ent3_mask"};
constexpr const char* kLogitName = "logit";
constexpr const char* kEmbeddingName = "embedding";

void set_error(char* err, size_t errlen, const std::string& msg) {
    if (err == nullptr || errlen == 0) return;
    const size_t n = std::min(msg.size(), errlen - 1);
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
}

// The library never prints: TensorRT's errors are kept (per thread) and added to the exception
// of the call that caused them.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity > Severity::kERROR || msg == nullptr) return;
        try {
            last_error() = msg;
        } catch (...) {
        }
    }
    static std::string take() {
        std::string out;
        out.swap(last_error());
        return out;
    }

private:
    static std::string& last_error() {
        thread_local std::string s;
        return s;
    }
};

// TensorRT keeps a reference to the logger for the runtime's whole life: one for the process.
Logger& logger() {
    static Logger* l = new Logger();  // never destroyed: engines may outlive static destructors
    return *l;
}

[[noreturn]] void fail(const std::string& what) {
    const std::string trt = Logger::take();
    throw std::runtime_error(trt.empty() ? what : what + ": " + trt);
}

void check_cuda(cudaError_t rc, const char* what) {
    if (rc != cudaSuccess) {
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(rc) + " (" +
                                 cudaGetErrorString(rc) + ")");
    }
}

// TensorRT 10 encodes its version as major * 10000 + minor * 100 + patch (8.x: major * 1000 + ...).
std::string trt_version_string(int32_t v) {
    const int32_t major = v >= 100000 ? v / 10000 : v / 1000;
    const int32_t minor = v >= 100000 ? (v / 100) % 100 : (v / 100) % 10;
    const int32_t patch = v % 100;
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

// "10.3.0.26" -> "10.3.0": TensorRT checks major.minor.patch; the build number does not matter.
std::string major_minor_patch(const std::string& v) {
    size_t dots = 0, i = 0;
    for (; i < v.size(); ++i) {
        if (v[i] == '.' && ++dots == 3) break;
    }
    return v.substr(0, i);
}

std::string dims_string(const nvinfer1::Dims& d) {
    std::string s;
    for (int32_t i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + std::to_string(d.d[i]);
    return "[" + s + "]";
}

std::vector<char> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// What the engine was built for, from <plan>.json (written by export/tensorrt_engine.py).
struct BuildFacts {
    std::string gpu_name;
    std::string compute_capability;  // "9.0"
    std::string tensorrt_version;    // "10.3.0"
    int64_t embedding_dim = -1;
};

BuildFacts read_sidecar(const std::string& plan_path) {
    const std::string path = plan_path + ".json";
    std::ifstream f(path);
    if (!f) {
        throw std::runtime_error("no " + path + ": a TensorRT engine needs the sidecar its builder "
                                 "wrote (export/tensorrt_engine.py build_engine) to check it fits this GPU");
    }
    nlohmann::json j;
    try {
        f >> j;
    } catch (const std::exception& e) {
        throw std::runtime_error(path + " is not JSON: " + e.what());
    }
    auto text = [&](const char* key) {
        if (!j.contains(key) || !j[key].is_string()) {
            throw std::runtime_error(path + ": missing string key '" + key + "'");
        }
        return j[key].get<std::string>();
    };
    if (!j.is_object() || text("format") != "libfraud-tensorrt-engine") {
        throw std::runtime_error(path + ": 'format' is not \"libfraud-tensorrt-engine\"");
    }
    BuildFacts out;
    out.gpu_name = text("gpu_name");
    out.compute_capability = text("compute_capability");
    out.tensorrt_version = major_minor_patch(text("tensorrt_version"));
    if (j.contains("embedding_dim") && j["embedding_dim"].is_number_integer()) {
        out.embedding_dim = j["embedding_dim"].get<int64_t>();
    }
    return out;
}

// This process's GPU (the current CUDA device) and libnvinfer, in the sidecar's terms.
BuildFacts found_here(int device) {
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    BuildFacts out;
    out.gpu_name = prop.name;
    out.compute_capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    out.tensorrt_version = trt_version_string(getInferLibVersion());
    return out;
}

// Per-caller state: never shared by two run() calls at once.
struct Slot {
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    cudaStream_t stream = nullptr;
    void* inputs[kNumInputs] = {};
    void* logits = nullptr;
    void* embeddings = nullptr;

    Slot() = default;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() {
        // Best effort: a destructor cannot report, and the process may be shutting CUDA down.
        if (stream != nullptr) cudaStreamSynchronize(stream);
        context.reset();
        for (void* p : inputs) cudaFree(p);
        cudaFree(logits);
        cudaFree(embeddings);
        if (stream != nullptr) cudaStreamDestroy(stream);
    }
};

class Model {
public:
    Model(const std::string& path, int64_t embedding_dim) : embedding_dim_(embedding_dim) {
        check_cuda(cudaGetDevice(&device_), "cudaGetDevice");
        const BuildFacts built = read_sidecar(path);
        const BuildFacts here = found_here(device_);
        if (built.gpu_name != here.gpu_name || built.compute_capability != here.compute_capability ||
            built.tensorrt_version != here.tensorrt_version) {
            throw std::runtime_error(
                "engine built for " + built.gpu_name + " (compute " + built.compute_capability +
                ") / TensorRT " + built.tensorrt_version + ", found " + here.gpu_name + " (compute " +
                here.compute_capability + ") / TensorRT " + here.tensorrt_version +
                ": TensorRT engines are not portable; rebuild it on this machine");
        }
        if (built.embedding_dim >= 0 && built.embedding_dim != embedding_dim) {
            throw std::runtime_error("the engine's embedding_dim is " + std::to_string(built.embedding_dim) +
                                     " (" + path + ".json), the caller asked for " +
                                     std::to_string(embedding_dim));
        }

        const std::vector<char> plan = read_file(path);
        runtime_.reset(nvinfer1::createInferRuntime(logger()));
        if (!runtime_) fail("createInferRuntime failed");
        engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
        if (!engine_) fail("deserializeCudaEngine failed for " + path);
        check_io();
    }

    ~Model() {
        // Contexts before the engine, the engine before the runtime (member order does the rest).
        cudaSetDevice(device_);  // best effort: the slots' memory lives on the engine's device
        std::lock_guard<std::mutex> lock(mutex_);
        free_.clear();
    }

    void run(const fraud_gnn_inputs& in, float* logits, float* embeddings) {
        if (in.fanout != fanout_ || in.num_entity_types != entity_types_ || in.txn_features != txn_features_) {
            throw std::runtime_error("the engine was built for fanout " + std::to_string(fanout_) + ", " +
                                     std::to_string(entity_types_) + " entity types and " +
                                     std::to_string(txn_features_) + " transaction features; the inputs have " +
                                     std::to_string(in.fanout) + ", " + std::to_string(in.num_entity_types) +
                                     " and " + std::to_string(in.txn_features));
        }
        check_cuda(cudaSetDevice(device_), "cudaSetDevice");  // the device is per calling thread
        SlotLease lease(*this);
        Slot& s = lease.slot();
        const float* src[kNumInputs] = {in.target_x, in.ent1_x,    in.ent1_mask, in.txn2_x,
                                        in.txn2_mask, in.ent3_x, in.ent3_mask};
        for (int64_t start = 0; start < in.batch; start += max_batch_) {
            const int64_t b = std::min(max_batch_, in.batch - start);
            for (int i = 0; i < kNumInputs; ++i) {
                nvinfer1::Dims d = input_dims_[i];
                d.d[0] = b;
                if (!s.context->setInputShape(kInputNames[i], d)) {
                    fail(std::string("setInputShape(") + kInputNames[i] + ", " + dims_string(d) + ")");
                }
                const size_t row = static_cast<size_t>(row_elems_[i]);
                check_cuda(cudaMemcpyAsync(s.inputs[i], src[i] + start * row_elems_[i],
                                           sizeof(float) * row * static_cast<size_t>(b),
                                           cudaMemcpyHostToDevice, s.stream),
                           "cudaMemcpyAsync (input)");
            }
            if (!s.context->enqueueV3(s.stream)) fail("enqueueV3 failed");
            check_cuda(cudaMemcpyAsync(logits + start, s.logits, sizeof(float) * static_cast<size_t>(b),
                                       cudaMemcpyDeviceToHost, s.stream),
                       "cudaMemcpyAsync (logit)");
            if (embedding_dim_ > 0) {
                const size_t n = static_cast<size_t>(b * embedding_dim_);
                check_cuda(cudaMemcpyAsync(embeddings + start * embedding_dim_, s.embeddings,
                                           sizeof(float) * n, cudaMemcpyDeviceToHost, s.stream),
                           "cudaMemcpyAsync (embedding)");
            }
            // Before the next chunk overwrites the device inputs, and before the caller reads.
            check_cuda(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
        }
    }

private:
    // Borrows a slot for one run() and gives it back, also when run() throws.
    class SlotLease {
    public:
        explicit SlotLease(Model& m) : model_(m), slot_(m.acquire()) {}
        ~SlotLease() { model_.release(std::move(slot_)); }
        Slot& slot() { return *slot_; }

    private:
        Model& model_;
        std::unique_ptr<Slot> slot_;
    };

    // The engine's tensors must be the contract's: 7 float32 inputs, float32 logit [B] (or
    // [B, 1]) and embedding [B, D], one dynamic batch dimension; K, E and Ft fixed at build time.
    void check_io() {
        if (engine_->getNbOptimizationProfiles() < 1) throw std::runtime_error("the engine has no optimization profile");
        for (int i = 0; i < kNumInputs; ++i) {
            const char* name = kInputNames[i];
            if (engine_->getTensorIOMode(name) != nvinfer1::TensorIOMode::kINPUT) {
                throw std::runtime_error(std::string("the engine has no input '") + name + "'");
            }
            if (engine_->getTensorDataType(name) != nvinfer1::DataType::kFLOAT) {
                throw std::runtime_error(std::string("the engine's input '") + name + "' is not float32");
            }
            nvinfer1::Dims d = engine_->getTensorShape(name);
            int64_t row = 1;
            for (int32_t k = 1; k < d.nbDims; ++k) {
                if (d.d[k] < 0) {
                    throw std::runtime_error(std::string("the engine's input '") + name + "' has shape " +
                                             dims_string(d) + ": only the batch may be dynamic");
                }
                row *= d.d[k];
            }
            input_dims_[i] = d;
            row_elems_[i] = row;
        }
        check_neighbourhood_shapes();
        const nvinfer1::Dims maxd =
            engine_->getProfileShape(kInputNames[0], 0, nvinfer1::OptProfileSelector::kMAX);
        if (maxd.nbDims < 1 || maxd.d[0] < 1) throw std::runtime_error("the engine's profile has no max batch");
        max_batch_ = maxd.d[0];

        for (const char* name : {kLogitName, kEmbeddingName}) {
            if (engine_->getTensorIOMode(name) != nvinfer1::TensorIOMode::kOUTPUT) {
                throw std::runtime_error(std::string("the engine has no output '") + name + "'");
            }
            if (engine_->getTensorDataType(name) != nvinfer1::DataType::kFLOAT) {
                throw std::runtime_error(std::string("the engine's output '") + name + "' is not float32");
            }
        }
        const nvinfer1::Dims l = engine_->getTensorShape(kLogitName);
        if (!(l.nbDims == 1 || (l.nbDims == 2 && l.d[1] == 1))) {
            throw std::runtime_error("the engine's logit has shape " + dims_string(l) + ", expected [B]");
        }
        const nvinfer1::Dims e = engine_->getTensorShape(kEmbeddingName);
        if (e.nbDims != 2 || e.d[1] != embedding_dim_) {
            throw std::runtime_error("the engine's embedding has shape " + dims_string(e) + ", expected [B, " +
                                     std::to_string(embedding_dim_) + "]");
        }
    }

    // E from ent1_x [B, E, E+1], Ft from target_x [B, Ft], K from txn2_x [B, E, K, Ft]; then all
    // seven shapes must be the contract's for those (gnn_backend.h).
    void check_neighbourhood_shapes() {
        const nvinfer1::Dims& tx = input_dims_[0];
        const nvinfer1::Dims& e1 = input_dims_[1];
        const nvinfer1::Dims& t2 = input_dims_[3];
        if (tx.nbDims != 2 || e1.nbDims != 3 || t2.nbDims != 4) {
            throw std::runtime_error("the engine's inputs do not have the neighbourhood shapes: target_x " +
                                     dims_string(tx) + ", ent1_x " + dims_string(e1) + ", txn2_x " +
                                     dims_string(t2) + ", expected [B, Ft], [B, E, E+1], [B, E, K, Ft]");
        }
        const int64_t E = e1.d[1], Ft = tx.d[1], K = t2.d[2], Fe = E + 1;
        if (E < 1 || E > FRAUD_GNN_MAX_ENTITY_TYPES || Ft < 1 || K < 1) {
            throw std::runtime_error("the engine's inputs have " + std::to_string(E) + " entity types, " +
                                     std::to_string(Ft) + " transaction features and fanout " +
                                     std::to_string(K) + ": need 1.." +
                                     std::to_string(FRAUD_GNN_MAX_ENTITY_TYPES) + ", >= 1 and >= 1");
        }
        const std::vector<std::vector<int64_t>> want = {
            {Ft}, {E, Fe}, {E}, {E, K, Ft}, {E, K}, {E, K, E, Fe}, {E, K, E}};
        for (int i = 0; i < kNumInputs; ++i) {
            const nvinfer1::Dims& d = input_dims_[i];
            bool ok = d.nbDims == static_cast<int32_t>(want[i].size()) + 1;
            for (size_t k = 0; ok && k < want[i].size(); ++k) ok = d.d[k + 1] == want[i][k];
            if (!ok) {
                std::string w = "B";
                for (int64_t v : want[i]) w += ", " + std::to_string(v);
                throw std::runtime_error(std::string("the engine's input '") + kInputNames[i] + "' has shape " +
                                         dims_string(d) + ", expected [" + w + "] for " + std::to_string(E) +
                                         " entity types, " + std::to_string(Ft) +
                                         " transaction features and fanout " + std::to_string(K));
            }
        }
        entity_types_ = E;
        txn_features_ = Ft;
        fanout_ = K;
    }

    std::unique_ptr<Slot> acquire() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!free_.empty()) {
                std::unique_ptr<Slot> s = std::move(free_.back());
                free_.pop_back();
                return s;
            }
        }
        return make_slot();  // outside the lock: creating a context allocates device memory
    }

    void release(std::unique_ptr<Slot> s) {
        if (!s) return;
        std::lock_guard<std::mutex> lock(mutex_);
        free_.push_back(std::move(s));
    }

    std::unique_ptr<Slot> make_slot() {
        auto s = std::make_unique<Slot>();
        check_cuda(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
        // Every context runs profile 0 (the only one the builder makes); TensorRT >= 8 lets
        // several contexts share a profile.
        s->context.reset(engine_->createExecutionContext());
        if (!s->context) fail("createExecutionContext failed");
        const size_t mb = static_cast<size_t>(max_batch_);
        for (int i = 0; i < kNumInputs; ++i) {
            check_cuda(cudaMalloc(&s->inputs[i], sizeof(float) * mb * static_cast<size_t>(row_elems_[i])),
                       "cudaMalloc (input)");
            if (!s->context->setTensorAddress(kInputNames[i], s->inputs[i])) {
                fail(std::string("setTensorAddress(") + kInputNames[i] + ")");
            }
        }
        check_cuda(cudaMalloc(&s->logits, sizeof(float) * mb), "cudaMalloc (logit)");
        // At least one float: TensorRT wants a non-null address even for an empty tensor.
        const size_t emb = std::max<size_t>(1, mb * static_cast<size_t>(embedding_dim_));
        check_cuda(cudaMalloc(&s->embeddings, sizeof(float) * emb), "cudaMalloc (embedding)");
        if (!s->context->setTensorAddress(kLogitName, s->logits) ||
            !s->context->setTensorAddress(kEmbeddingName, s->embeddings)) {
            fail("setTensorAddress (outputs)");
        }
        return s;
    }

    int64_t embedding_dim_;
    int device_ = 0;
    int64_t fanout_ = 0;
    int64_t entity_types_ = 0;
    int64_t txn_features_ = 0;
    int64_t max_batch_ = 0;
    nvinfer1::Dims input_dims_[kNumInputs] = {};
    int64_t row_elems_[kNumInputs] = {};
    // Declaration order is destruction order in reverse: slots, then engine, then runtime.
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<Slot>> free_;
};

int supports(const char* kind) { return kind != nullptr && std::strcmp(kind, "tensorrt") == 0; }

void* load(const char* kind, const char* path, int64_t embedding_dim, char* err, size_t errlen) {
    try {
        if (kind == nullptr || path == nullptr) throw std::invalid_argument("NULL kind or path");
        if (!supports(kind)) {
            throw std::invalid_argument(std::string("the TensorRT plugin does not run kind '") + kind + "'");
        }
        return new Model(path, embedding_dim);
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown exception");
    }
    return nullptr;
}

int run(void* model, const fraud_gnn_inputs* inputs, float* logits, float* embeddings, char* err,
        size_t errlen) {
    try {
        if (model == nullptr || inputs == nullptr) throw std::invalid_argument("NULL model or inputs");
        if (inputs->batch <= 0) return 0;
        static_cast<Model*>(model)->run(*inputs, logits, embeddings);
        return 0;
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown exception");
    }
    return 1;
}

void free_model(void* model) { delete static_cast<Model*>(model); }

const fraud_gnn_backend kBackend = {FRAUD_GNN_BACKEND_ABI, "tensorrt", supports, load, run, free_model};

}  // namespace

extern "C" __attribute__((visibility("default"))) const fraud_gnn_backend* fraud_gnn_backend_v1(void) {
    return &kBackend;
}
