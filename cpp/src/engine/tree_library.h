// A compiled tree library (bundle target "tl2cgen-c-shared", see export/BUNDLE.md), loaded with
// dlopen and called through the per-handle symbols it exports.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "engine/sealed_file.h"

namespace libfraud {

// TL2cgen 1.0's `union Entry { int missing; float fvalue; int qvalue; }` for float32 thresholds:
// a present value goes in fvalue, a missing one sets missing = -1 (NaN as a value takes the wrong
// branch wherever XGBoost learned "missing goes left").
union TreeEntry {
    int missing;
    float fvalue;
    int qvalue;
};
static_assert(sizeof(TreeEntry) == 4, "TreeEntry must match TL2cgen's union Entry");

// Thread-safe: const members may run from many threads at once (the generated predict keeps no
// global state). Owns the dlopen handle; closes it on destruction. Non-copyable.
class TreeLibrary {
public:
    // dlopen(RTLD_NOW | RTLD_LOCAL) of a sealed private copy (engine/sealed_file.h) and dlsym per
    // handle (the file is loaded afresh even when a library of the same path is already loaded);
    // accepts one binary target with float32 thresholds and leaves. Throws
    // FraudError(FRAUD_STATUS_LOAD_ERROR, "<path>: <what is wrong>"), or SealedFile's errors:
    // expected_sha256 (lowercase hex; the manifest's) must be the sha256 of the exact bytes
    // mapped, else BUNDLE_CHECKSUM before dlopen, so a file swapped after verify_artifacts never
    // runs. Empty: no check (libraries loaded outside a bundle).
    explicit TreeLibrary(const std::string& so_path, const std::string& expected_sha256 = "");
    ~TreeLibrary();
    TreeLibrary(const TreeLibrary&) = delete;
    TreeLibrary& operator=(const TreeLibrary&) = delete;

    size_t num_features() const { return num_features_; }
    const std::string& path() const { return path_; }

    // Probability for one row of num_features() floats (NaN = missing). scratch: num_features()
    // entries owned by the caller, overwritten; nothing is allocated.
    float predict_row(const float* row, TreeEntry* scratch) const;

    // out[i] = probability of row i; rows is n * num_features() floats, row-major. Uses a
    // thread_local scratch (allocated once per thread).
    void predict_rows(const float* rows, size_t n, float* out) const;

private:
    using PredictFn = void (*)(TreeEntry* row, int pred_margin, float* out);
    struct Closer {
        void operator()(void* handle) const;
    };

    std::string path_;
    // The library's sealed private copy, open for the library's life, loaded as /proc/self/fd/<fd>.
    // glibc hands back an already-loaded object when a path OR a file identity matches one it has
    // (and keeps every name it was opened under as an alias): a new bundle at an old path, or an
    // fd number reused after another load, would score with the wrong model. A fresh memfd is a
    // new file each load, named by an fd we hold until dlclose.
    SealedFile sealed_;  // declared before handle_: closed after dlclose
    std::unique_ptr<void, Closer> handle_;
    PredictFn predict_ = nullptr;
    size_t num_features_ = 0;
};

}  // namespace libfraud
