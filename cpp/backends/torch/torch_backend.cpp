// libfraud_torch.so: the libtorch GNN backend plugin. Runs "torchscript" (torch::jit::load) and
// "aoti" (an AOTInductor .pt2 package) artifacts behind gnn_backend.h's C ABI; exports only
// fraud_gnn_backend_v1 (torch_backend.map).
//
// Threads: libtorch's intra-op pool is set to ONE thread at the first load, for batch-1 latency
// (a GNN call is small; a pool of N threads costs more in hand-off than it saves, and with other
// cores busy it stalls: FACTS.md "Measuring"). Serving parallelism comes from concurrent run()
// calls instead. The pool is process-wide: LIBFRAUD_TORCH_NUM_THREADS=n overrides the 1.
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backends/gnn_backend.h"

namespace {

void set_error(char* err, size_t errlen, const std::string& msg) {
    if (err == nullptr || errlen == 0) return;
    const size_t n = std::min(msg.size(), errlen - 1);
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
}

std::string message_of(const std::exception& e) {
    // c10::Error's what() carries a C++ backtrace; the message alone is what a user needs.
    if (const auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
    return e.what();
}

int configured_threads() {
    const char* env = std::getenv("LIBFRAUD_TORCH_NUM_THREADS");
    if (env != nullptr) {
        const int n = std::atoi(env);
        if (n > 0) return n;
    }
    return 1;
}

void set_threads_once() {
    static std::once_flag once;
    std::call_once(once, [] { at::set_num_threads(configured_threads()); });
    // OpenMP keeps the thread count per calling thread: carry the setting into each new caller.
    thread_local bool initialised = false;
    if (!initialised) {
        at::init_num_threads();
        initialised = true;
    }
}

class Model {
public:
    explicit Model(int64_t embedding_dim) : embedding_dim_(embedding_dim) {}
    virtual ~Model() = default;

    void run(const fraud_gnn_inputs& in, float* logits, float* embeddings) const {
        check_shape(in);
        set_threads_once();
        c10::InferenceMode guard;
        // Shapes from the inputs: the model itself refuses an E or Ft it was not exported for.
        const int64_t B = in.batch, K = in.fanout, E = in.num_entity_types, Ft = in.txn_features;
        const int64_t Fe = E + 1;  // one-hot type, log1p(degree)
        // Non-owning views of the caller's arrays; the models never write their inputs.
        auto view = [](const float* p, std::vector<int64_t> shape) {
            return torch::from_blob(const_cast<float*>(p), shape, torch::kFloat32);
        };
        std::vector<at::Tensor> inputs = {
            view(in.target_x, {B, Ft}),
            view(in.ent1_x, {B, E, Fe}),
            view(in.ent1_mask, {B, E}),
            view(in.txn2_x, {B, E, K, Ft}),
            view(in.txn2_mask, {B, E, K}),
            view(in.ent3_x, {B, E, K, E, Fe}),
            view(in.ent3_mask, {B, E, K, E}),
        };
        std::vector<at::Tensor> out = forward(std::move(inputs));
        if (out.size() != 2) {
            throw std::runtime_error("the model returned " + std::to_string(out.size()) +
                                     " tensors, expected 2 (logit [B], embedding [B, D])");
        }
        copy_out(out[0], B, 1, "logit", logits);
        copy_out(out[1], B, embedding_dim_, "embedding", embeddings);
    }

protected:
    virtual std::vector<at::Tensor> forward(std::vector<at::Tensor> inputs) const = 0;
    // Refuses inputs of other shapes than the artifact's, where the artifact itself would not.
    virtual void check_shape(const fraud_gnn_inputs&) const {}

private:
    static void copy_out(const at::Tensor& t, int64_t B, int64_t width, const char* name, float* dst) {
        const bool shape_ok = (width == 1 && t.dim() == 1 && t.size(0) == B) ||
                              (t.dim() == 2 && t.size(0) == B && t.size(1) == width);
        if (!shape_ok) {
            std::string got;
            for (int64_t s : t.sizes()) got += (got.empty() ? "" : ", ") + std::to_string(s);
            throw std::runtime_error(std::string("the model's ") + name + " has shape [" + got +
                                     "], expected [" + std::to_string(B) +
                                     (width == 1 ? "" : ", " + std::to_string(width)) + "]");
        }
        if (width == 0) return;
        const at::Tensor c = t.to(torch::kFloat32).contiguous();
        std::memcpy(dst, c.data_ptr<float>(), sizeof(float) * static_cast<size_t>(B * width));
    }

    int64_t embedding_dim_;
};

class TorchScriptModel final : public Model {
public:
    TorchScriptModel(const std::string& path, int64_t embedding_dim)
        : Model(embedding_dim), module_(torch::jit::load(path, torch::kCPU)) {
        module_.eval();
    }

protected:
    std::vector<at::Tensor> forward(std::vector<at::Tensor> inputs) const override {
        std::vector<c10::IValue> args(inputs.begin(), inputs.end());
        // Module::forward is not const, but running a method is safe from many threads at once.
        c10::IValue r = const_cast<torch::jit::Module&>(module_).forward(std::move(args));
        std::vector<at::Tensor> out;
        if (r.isTuple()) {
            for (const auto& e : r.toTupleRef().elements()) out.push_back(e.toTensor());
        } else if (r.isTensorList()) {
            for (const at::Tensor& t : r.toTensorVector()) out.push_back(t);
        } else {
            throw std::runtime_error("the TorchScript model returned " + r.tagKind() +
                                     ", expected a tuple (logit, embedding)");
        }
        return out;
    }

private:
    torch::jit::Module module_;
};

// One runner per hardware thread (up to 8): AOTInductor's container hands a free runner to each
// concurrent call and makes the rest wait, so fewer runners than callers would serialise them.
size_t aoti_runners() {
    const unsigned hw = std::thread::hardware_concurrency();
    return std::clamp<size_t>(hw == 0 ? 1 : hw, 1, 8);
}

// An AOTInductor package does not check its inputs' sizes (it reads out of bounds instead), so the
// shape export/gnn.py baked in is read from the package's metadata ("libfraud.fanout",
// "libfraud.entity_types", "libfraud.txn_features") and checked here; -1 where a key is absent.
class AotiModel final : public Model {
public:
    AotiModel(const std::string& path, int64_t embedding_dim)
        : Model(embedding_dim),
          loader_(std::make_unique<torch::inductor::AOTIModelPackageLoader>(
              path, "model", /*run_single_threaded=*/false, aoti_runners())) {
        const auto meta = loader_->get_metadata();
        fanout_ = metadata_int(meta, "libfraud.fanout");
        entity_types_ = metadata_int(meta, "libfraud.entity_types");
        txn_features_ = metadata_int(meta, "libfraud.txn_features");
    }

protected:
    std::vector<at::Tensor> forward(std::vector<at::Tensor> inputs) const override {
        return loader_->run(inputs);
    }

    void check_shape(const fraud_gnn_inputs& in) const override {
        const bool ok = (fanout_ < 0 || in.fanout == fanout_) &&
                        (entity_types_ < 0 || in.num_entity_types == entity_types_) &&
                        (txn_features_ < 0 || in.txn_features == txn_features_);
        if (!ok) {
            auto txt = [](int64_t v) { return v < 0 ? std::string("?") : std::to_string(v); };
            throw std::invalid_argument(
                "the AOTInductor package was exported for fanout " + txt(fanout_) + ", " + txt(entity_types_) +
                " entity types and " + txt(txn_features_) + " transaction features; the inputs have " +
                std::to_string(in.fanout) + ", " + std::to_string(in.num_entity_types) + " and " +
                std::to_string(in.txn_features));
        }
    }

private:
    static int64_t metadata_int(const std::unordered_map<std::string, std::string>& meta, const char* key) {
        const auto it = meta.find(key);
        if (it == meta.end()) return -1;
        char* end = nullptr;
        const long long v = std::strtoll(it->second.c_str(), &end, 10);
        if (it->second.empty() || *end != '\0' || v < 1) {
            throw std::invalid_argument(std::string("package metadata ") + key + " = '" + it->second +
                                        "' is not a positive integer");
        }
        return v;
    }

    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
    int64_t fanout_ = -1;
    int64_t entity_types_ = -1;
    int64_t txn_features_ = -1;
};

int supports(const char* kind) {
    return kind != nullptr && (std::strcmp(kind, "torchscript") == 0 || std::strcmp(kind, "aoti") == 0);
}

void* load(const char* kind, const char* path, int64_t embedding_dim, char* err, size_t errlen) {
    try {
        if (kind == nullptr || path == nullptr) throw std::invalid_argument("NULL kind or path");
        set_threads_once();
        if (std::strcmp(kind, "torchscript") == 0) return new TorchScriptModel(path, embedding_dim);
        if (std::strcmp(kind, "aoti") == 0) return new AotiModel(path, embedding_dim);
        throw std::invalid_argument(std::string("the torch plugin does not run kind '") + kind + "'");
    } catch (const std::exception& e) {
        set_error(err, errlen, message_of(e));
    } catch (...) {
        set_error(err, errlen, "unknown exception");
    }
    return nullptr;
}

int run(void* model, const fraud_gnn_inputs* inputs, float* logits, float* embeddings, char* err,
        size_t errlen) {
    try {
        if (model == nullptr || inputs == nullptr) throw std::invalid_argument("NULL model or inputs");
        static_cast<const Model*>(model)->run(*inputs, logits, embeddings);
        return 0;
    } catch (const std::exception& e) {
        set_error(err, errlen, message_of(e));
    } catch (...) {
        set_error(err, errlen, "unknown exception");
    }
    return 1;
}

void free_model(void* model) { delete static_cast<Model*>(model); }

const fraud_gnn_backend kBackend = {FRAUD_GNN_BACKEND_ABI, "torch", supports, load, run, free_model};

}  // namespace

extern "C" __attribute__((visibility("default"))) const fraud_gnn_backend* fraud_gnn_backend_v1(void) {
    return &kBackend;
}
