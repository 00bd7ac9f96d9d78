#include "engine/tree_library.h"

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace libfraud {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw FraudError(FRAUD_STATUS_LOAD_ERROR, path + ": " + what);
}

std::string last_dlerror() {
    const char* e = dlerror();
    return e ? e : "unknown dlerror";
}

template <typename Fn>
Fn symbol(void* handle, const std::string& path, const char* name) {
    dlerror();  // clear a stale error so a NULL symbol is told apart from a failure
    void* sym = dlsym(handle, name);
    if (sym == nullptr) {
        fail(path, std::string("not a TL2cgen tree library: no symbol '") + name + "' (" +
                       last_dlerror() + ")");
    }
    return reinterpret_cast<Fn>(sym);
}

}  // namespace

void TreeLibrary::Closer::operator()(void* handle) const {
    if (handle != nullptr) dlclose(handle);
}

TreeLibrary::TreeLibrary(const std::string& so_path, const std::string& expected_sha256)
    : path_(so_path), sealed_(so_path, expected_sha256) {
    // RTLD_LOCAL: the library's generic names (predict, postprocess) never bind other objects.
    handle_.reset(dlopen(sealed_.load_path().c_str(), RTLD_NOW | RTLD_LOCAL));
    if (!handle_) fail(path_, "cannot load: " + last_dlerror());
    void* h = handle_.get();

    predict_ = symbol<PredictFn>(h, path_, "predict");
    auto get_num_feature = symbol<int32_t (*)(void)>(h, path_, "get_num_feature");
    auto get_threshold_type = symbol<const char* (*)(void)>(h, path_, "get_threshold_type");
    auto get_leaf_output_type = symbol<const char* (*)(void)>(h, path_, "get_leaf_output_type");

    // Entry and the output buffer are float only when both types are float32.
    const char* threshold_type = get_threshold_type();
    const char* leaf_type = get_leaf_output_type();
    if (threshold_type == nullptr || std::strcmp(threshold_type, "float32") != 0 ||
        leaf_type == nullptr || std::strcmp(leaf_type, "float32") != 0) {
        fail(path_, std::string("threshold/leaf types are ") +
                        (threshold_type ? threshold_type : "null") + "/" +
                        (leaf_type ? leaf_type : "null") + ", expected float32/float32");
    }

    // One binary target: get_num_target() == 1 and one class (TL2cgen 1.0); older libraries
    // export get_num_class() returning the count.
    dlerror();
    void* num_target_sym = dlsym(h, "get_num_target");
    if (num_target_sym != nullptr) {
        const int32_t num_target = reinterpret_cast<int32_t (*)(void)>(num_target_sym)();
        if (num_target != 1) {
            fail(path_, "model has " + std::to_string(num_target) + " targets, expected 1");
        }
        auto get_num_class = symbol<void (*)(int32_t*)>(h, path_, "get_num_class");
        int32_t num_class = 0;
        get_num_class(&num_class);
        if (num_class != 1) {
            fail(path_, "model has " + std::to_string(num_class) +
                            " classes, expected 1 (a binary classifier)");
        }
    } else {
        auto get_num_class = symbol<size_t (*)(void)>(h, path_, "get_num_class");
        const size_t num_class = get_num_class();
        if (num_class != 1) {
            fail(path_, "model has " + std::to_string(num_class) +
                            " classes, expected 1 (a binary classifier)");
        }
    }

    const int32_t nf = get_num_feature();
    if (nf <= 0) fail(path_, "get_num_feature() returned " + std::to_string(nf));
    num_features_ = static_cast<size_t>(nf);
}

TreeLibrary::~TreeLibrary() = default;

float TreeLibrary::predict_row(const float* row, TreeEntry* scratch) const {
    for (size_t j = 0; j < num_features_; ++j) {
        if (std::isnan(row[j])) {
            scratch[j].missing = -1;
        } else {
            scratch[j].fvalue = row[j];
        }
    }
    float out = 0.0f;  // predict ADDS into its output
    predict_(scratch, /*pred_margin=*/0, &out);
    return out;
}

void TreeLibrary::predict_rows(const float* rows, size_t n, float* out) const {
    thread_local std::vector<TreeEntry> scratch;
    if (scratch.size() < num_features_) scratch.resize(num_features_);
    for (size_t i = 0; i < n; ++i) {
        out[i] = predict_row(rows + i * num_features_, scratch.data());
    }
}

}  // namespace libfraud
