#include "backends/backend_registry.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <unordered_set>

#include "backends/native_gnn.h"
#include "common/error.h"
#include "common/log.h"
#include "engine/sealed_file.h"

namespace libfraud {
namespace {

struct KindEntry {
    const char* kind;
    const char* library;                       // the plugin, or nullptr for a built-in backend
    const fraud_gnn_backend* (*builtin)();     // a backend linked into the core, or nullptr
    // The backend reads the artifact file alone, so it is given a sealed copy (engine/sealed_file.h);
    // false where it also reads files beside it (TensorRT's <plan>.json, ONNX's external data).
    bool one_file;
};
// One row per artifact kind; a new backend is a row here and either a plugin exporting
// fraud_gnn_backend_v1 or a built-in table (no framework: the native kernels).
constexpr KindEntry kKinds[] = {
    {"torchscript", "libfraud_torch.so", nullptr, true},
    {"aoti", "libfraud_torch.so", nullptr, true},  // a .pt2 zip: the loader extracts it itself
    {"onnxruntime", "libfraud_onnxruntime.so", nullptr, false},
    {"tensorrt", "libfraud_tensorrt.so", nullptr, false},
    {"native", nullptr, &native_gnn_backend, true},
};

const KindEntry* find_kind(const std::string& kind) {
    for (const auto& k : kKinds) {
        if (kind == k.kind) return &k;
    }
    return nullptr;
}

constexpr const char* kWithHint[][2] = {
    {"libfraud_torch.so", "build libfraud with torch (LIBFRAUD_WITH_TORCH=ON)"},
};

std::string build_hint(const std::string& library) {
    for (const auto& h : kWithHint) {
        if (library == h[0]) return h[1];
    }
    return "this build of libfraud has no such plugin";
}

// The directory of the shared object holding this code (libfraud.so or the Python module).
std::string own_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<const void*>(&own_directory), &info) == 0 || info.dli_fname == nullptr) {
        return "";
    }
    std::string path = info.dli_fname;
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return path.substr(0, slash);
}

// Loaded plugins by path. Never dlclose'd: libtorch registers global state it cannot unregister.
struct Loaded {
    const fraud_gnn_backend* backend = nullptr;
};
std::mutex g_mutex;
std::map<std::string, Loaded> g_loaded;

const fraud_gnn_backend* open_plugin(const std::string& path, const std::string& kind) {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_loaded.find(path);
    if (it != g_loaded.end()) return it->second.backend;

    // The real path, never /proc/self/fd/N (tree_library's trick): the plugin's RUNPATH uses
    // $ORIGIN to find the wheel's libtorch. RTLD_LOCAL: libtorch's symbols bind nothing else.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* e = dlerror();
        throw FraudError(FRAUD_STATUS_BACKEND_UNAVAILABLE,
                         "GNN backend '" + kind + "': " + path + " cannot be loaded: " +
                             (e ? e : "unknown dlerror"));
    }
    dlerror();
    void* sym = dlsym(handle, FRAUD_GNN_BACKEND_ENTRY);
    if (sym == nullptr) {
        const char* e = dlerror();
        dlclose(handle);
        throw FraudError(FRAUD_STATUS_BACKEND_UNAVAILABLE,
                         "GNN backend '" + kind + "': " + path + " is not a libfraud GNN plugin: no " +
                             FRAUD_GNN_BACKEND_ENTRY + " (" + (e ? e : "") + ")");
    }
    const fraud_gnn_backend* backend = reinterpret_cast<fraud_gnn_backend_entry_fn>(sym)();
    if (backend == nullptr || backend->abi_version != FRAUD_GNN_BACKEND_ABI) {
        const std::string got = backend ? std::to_string(backend->abi_version) : "none";
        dlclose(handle);  // nothing of it is in use yet
        throw FraudError(FRAUD_STATUS_BACKEND_UNAVAILABLE,
                         "GNN backend '" + kind + "': " + path + " has plugin ABI " + got +
                             ", this libfraud needs " + std::to_string(FRAUD_GNN_BACKEND_ABI));
    }
    g_loaded.emplace(path, Loaded{backend});
    return backend;
}

std::string error_text(const char* err) {
    return err[0] != '\0' ? std::string(err) : std::string("no message from the plugin");
}

}  // namespace

const char* gnn_plugin_library(const std::string& kind) {
    const KindEntry* k = find_kind(kind);
    return k != nullptr ? k->library : nullptr;
}

bool gnn_kind_is_builtin(const std::string& kind) {
    const KindEntry* k = find_kind(kind);
    return k != nullptr && k->builtin != nullptr;
}

std::string gnn_known_kinds() {
    std::string out;
    for (const auto& k : kKinds) out += (out.empty() ? "" : ", ") + std::string(k.kind);
    return out;
}

void GnnModel::Freer::operator()(void* model) const {
    if (model != nullptr && backend != nullptr) backend->free_model(model);
}

std::unique_ptr<GnnModel> GnnModel::load(const std::string& kind, const std::string& artifact_path,
                                         int64_t embedding_dim, const std::string& plugin_dir,
                                         const std::string& expected_sha256) {
    const KindEntry* entry = find_kind(kind);
    if (entry == nullptr) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "unknown GNN backend kind '" + kind + "'; known: " + gnn_known_kinds());
    }
    if (embedding_dim < 0) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "embedding_dim must be >= 0, got " + std::to_string(embedding_dim));
    }
    const Artifact artifact{artifact_path, expected_sha256, entry->one_file};
    if (entry->builtin != nullptr) return load_with(entry->builtin(), kind, artifact, embedding_dim, kBuiltinPath);
    const char* library = entry->library;

    std::vector<std::string> dirs;
    if (!plugin_dir.empty()) {
        dirs.push_back(plugin_dir);
    } else {
        const std::string own = own_directory();
        if (!own.empty()) {
            dirs.push_back(own);
            dirs.push_back(own + "/lib");
        }
    }
    std::string found;
    for (const auto& d : dirs) {
        const std::string candidate = d + "/" + library;
        if (access(candidate.c_str(), F_OK) == 0) {
            found = candidate;
            break;
        }
    }
    if (found.empty()) {
        std::string searched;
        for (const auto& d : dirs) searched += (searched.empty() ? "" : ", ") + d;
        throw FraudError(FRAUD_STATUS_BACKEND_UNAVAILABLE,
                         "GNN backend '" + kind + "' needs " + library + ": not found in " +
                             (searched.empty() ? std::string("(no directory)") : searched) + "; " +
                             build_hint(library));
    }

    return load_with(open_plugin(found, kind), kind, artifact, embedding_dim, found);
}

std::unique_ptr<GnnModel> GnnModel::load_with(const fraud_gnn_backend* backend, const std::string& kind,
                                              const Artifact& artifact, int64_t embedding_dim,
                                              const std::string& found) {
    if (backend->supports == nullptr || !backend->supports(kind.c_str())) {
        throw FraudError(FRAUD_STATUS_BACKEND_UNAVAILABLE,
                         "GNN backend '" + kind + "': " + found + " does not run this kind");
    }
    std::unique_ptr<GnnModel> out(new GnnModel());
    std::string load_path = artifact.path;
    if (artifact.one_file) {
        try {
            out->sealed_ = std::make_unique<SealedFile>(artifact.path, artifact.sha256);
        } catch (const FraudError& e) {
            if (e.status() == FRAUD_STATUS_BUNDLE_CHECKSUM) throw;  // altered: the bundle's fault
            throw FraudError(FRAUD_STATUS_LOAD_ERROR, "GNN backend '" + kind + "': " + e.what());
        }
        load_path = out->sealed_->load_path();
    } else if (!artifact.sha256.empty()) {
        // The plugin opens the files itself: verify_artifacts checked them (all artifacts) before.
        log(FRAUD_LOG_WARN, "GNN backend '" + kind + "' reads " + artifact.path + " and the files beside it " +
                                "itself: checked before loading, not loaded from a sealed copy");
    }

    char err[2048] = {0};
    void* model = backend->load(kind.c_str(), load_path.c_str(), embedding_dim, err, sizeof err);
    if (model == nullptr) {
        throw FraudError(FRAUD_STATUS_LOAD_ERROR,
                         "GNN backend '" + kind + "' cannot load " + artifact.path + ": " +
                             error_text(err));
    }
    out->model_ = std::unique_ptr<void, Freer>(model, Freer{backend});
    out->kind_ = kind;
    out->embedding_dim_ = embedding_dim;
    out->plugin_path_ = found;
    out->backend_ = backend;
    return out;
}

GnnModel::GnnModel() = default;
GnnModel::~GnnModel() = default;

void GnnModel::run(const fraud_gnn_inputs& in, float* logits, float* embeddings) const {
    if (in.batch < 0 || in.fanout <= 0 || in.num_entity_types < 1 ||
        in.num_entity_types > FRAUD_GNN_MAX_ENTITY_TYPES || in.txn_features < 1) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "GNN inputs: batch " + std::to_string(in.batch) + ", fanout " +
                             std::to_string(in.fanout) + ", entity types " +
                             std::to_string(in.num_entity_types) + ", transaction features " +
                             std::to_string(in.txn_features) +
                             " (need batch >= 0, fanout > 0, 1 <= entity types <= " +
                             std::to_string(FRAUD_GNN_MAX_ENTITY_TYPES) + ", transaction features > 0)");
    }
    if (in.batch == 0) return;
    if (!in.target_x || !in.ent1_x || !in.ent1_mask || !in.txn2_x || !in.txn2_mask || !in.ent3_x ||
        !in.ent3_mask || !logits || (embedding_dim_ > 0 && !embeddings)) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "GNN inputs: a NULL array");
    }
    char err[2048];
    err[0] = '\0';  // not zero-filled: 2 KiB of memset per call shows at microsecond latencies
    if (backend_->run(model_.get(), &in, logits, embeddings, err, sizeof err) != 0) {
        throw FraudError(FRAUD_STATUS_INTERNAL,
                         "GNN backend '" + kind_ + "' failed: " + error_text(err));
    }
}

std::vector<std::string> missing_cpu_flags(const std::vector<std::string>& required) {
    std::vector<std::string> missing;
    if (required.empty()) return missing;
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    std::unordered_set<std::string> have;
    bool read = false;
    while (std::getline(cpuinfo, line)) {
        // "flags\t\t: fpu vme ..." on x86; the first CPU's line stands for all (same ISA).
        if (line.compare(0, 5, "flags") != 0) continue;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::istringstream words(line.substr(colon + 1));
        std::string w;
        while (words >> w) have.insert(w);
        read = true;
        break;
    }
    if (!read) return missing;
    for (const auto& flag : required) {
        std::string f = flag;
        std::transform(f.begin(), f.end(), f.begin(), [](unsigned char c) { return std::tolower(c); });
        if (have.count(f) == 0) missing.push_back(flag);
    }
    return missing;
}

}  // namespace libfraud
