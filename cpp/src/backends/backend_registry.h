// GNN backends as plugins: finds the plugin library for an artifact kind, loads it and the artifact.
// The core never includes a framework header; everything heavy lives behind gnn_backend.h's C ABI.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/gnn_backend.h"

namespace libfraud {

class SealedFile;  // engine/sealed_file.h

// The plugin library that runs an artifact kind ("torchscript", "aoti" -> "libfraud_torch.so"),
// or nullptr for a kind no plugin is known for or one built into the core ("native").
const char* gnn_plugin_library(const std::string& kind);

// Whether `kind` runs on a backend built into the core (no plugin library): "native".
bool gnn_kind_is_builtin(const std::string& kind);

// The plugin_path() of a model on a built-in backend.
constexpr const char* kBuiltinPath = "(built-in)";

// The known artifact kinds, for error messages: "torchscript, aoti, onnxruntime, ...".
std::string gnn_known_kinds();

// A loaded GNN artifact behind its plugin, or behind a backend built into the core ("native":
// cpp/src/backends/native_gnn.h: the same fraud_gnn_backend table, without a dlopen).
// Shareable across threads: run() is const and may be called concurrently (the plugin contract says so). Plugins, once loaded, stay loaded for the
// life of the process (libtorch cannot be unloaded safely); a model frees its own state.
class GnnModel {
public:
    // A built-in kind ("native") loads directly; plugin_dir is ignored for it. Otherwise finds the
    // plugin for `kind` in plugin_dir if given, else beside the library holding this code
    // (<dir>/ and <dir>/lib/: the core is both libfraud.so in <pkg>/lib and _core*.so in <pkg>),
    // loads it (RTLD_NOW | RTLD_LOCAL), checks its ABI version, then loads the artifact. A kind
    // whose backend reads the artifact file alone (torchscript, aoti, native) is given its sealed
    // private copy (engine/sealed_file.h, kept for the model's life) by its /proc/self/fd path,
    // so expected_sha256 (the manifest's; empty: no check) is checked on the very bytes it loads.
    // Throws FraudError: INVALID_ARGUMENT for an unknown kind; BACKEND_UNAVAILABLE when the plugin
    // is not found (naming the library and the directories searched) or cannot be loaded (with
    // dlerror's text, e.g. the missing libtorch); BUNDLE_CHECKSUM when the bytes are not the
    // expected ones ("altered after verification") or not a regular file; LOAD_ERROR with the
    // plugin's message when the artifact cannot be read or loaded.
    static std::unique_ptr<GnnModel> load(const std::string& kind, const std::string& artifact_path,
                                          int64_t embedding_dim, const std::string& plugin_dir = "",
                                          const std::string& expected_sha256 = "");
    ~GnnModel();
    GnnModel(const GnnModel&) = delete;
    GnnModel& operator=(const GnnModel&) = delete;

    // logits [batch], embeddings [batch, embedding_dim], caller-owned. Throws FraudError:
    // INVALID_ARGUMENT for a null array or a bad batch/fanout/E/Ft, INTERNAL with the plugin's
    // message when the model fails (e.g. an artifact exported for other shapes).
    void run(const fraud_gnn_inputs& inputs, float* logits, float* embeddings) const;

    const std::string& kind() const { return kind_; }
    int64_t embedding_dim() const { return embedding_dim_; }
    // The library loaded, or kBuiltinPath for a built-in backend.
    const std::string& plugin_path() const { return plugin_path_; }

private:
    GnnModel();
    struct Artifact {
        std::string path;
        std::string sha256;  // expected; empty: no check
        bool one_file;       // the backend reads it alone: load it from a sealed copy
    };
    static std::unique_ptr<GnnModel> load_with(const fraud_gnn_backend* backend, const std::string& kind,
                                               const Artifact& artifact, int64_t embedding_dim,
                                               const std::string& found);
    struct Freer {
        Freer() noexcept : backend(nullptr) {}
        explicit Freer(const fraud_gnn_backend* b) noexcept : backend(b) {}
        void operator()(void* model) const;
        const fraud_gnn_backend* backend;
    };

    std::string kind_;
    int64_t embedding_dim_ = 0;
    std::string plugin_path_;
    const fraud_gnn_backend* backend_ = nullptr;
    std::unique_ptr<SealedFile> sealed_;  // before model_: closed after the model is freed
    std::unique_ptr<void, Freer> model_;
};

// The flags of `required` (e.g. {"avx512f", "avx512bw"}) this CPU lacks, from /proc/cpuinfo; empty
// when it has them all or when /proc/cpuinfo cannot be read (nothing to check against).
std::vector<std::string> missing_cpu_flags(const std::vector<std::string>& required);

}  // namespace libfraud
