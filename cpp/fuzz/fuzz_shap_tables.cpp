// bytes -> a TreeSHAP tables file (export/BUNDLE.md "explanation": explain/shap_tables.bin) ->
// read_shap_tables; when it accepts the file, tree_shap on a few rows, each checked against a plain
// walk of the trees: the contributions are finite and sum to the row's margin. A FraudError with
// FRAUD_STATUS_LOAD_ERROR is the expected answer to a bad file; any other status, exception, crash
// or UB, or a broken check, is a finding.
// Input: the file itself (little-endian): "LFSHAP1\0", u32 version 1, u32 0, u64 n_trees, n_nodes,
// num_features, max_depth, f64 expected_value, then i64 tree_offsets[n_trees + 1], f64
// cover[n_nodes], f64 value[n_nodes], i32 feature[n_nodes], i32 left[n_nodes], i32
// right[n_nodes], f32 threshold[n_nodes], u8 default_left[n_nodes] (cpp/src/explain/shap_file.cpp).
// A header asking for more than 2^20 nodes is skipped before the reader (which allocates
// the arrays before it sees that the file is too short), and the rows are only scored for at most
// 2^16 features, so no input makes the target allocate much. LIBFRAUD_FUZZ_VERBOSE=1 prints what
// the reader said.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "explain/fast_tree_shap.h"
#include "explain/shap_file.h"
#include "explain/tree_shap.h"
#include "fuzz_util.h"

namespace {


constexpr uint64_t kMaxNodes = uint64_t{1} << 20;
constexpr uint64_t kMaxFeatures = uint64_t{1} << 16;
constexpr double kRelTolerance = 1e-6;

std::string g_path;

uint64_t u64_at(const uint8_t* data, size_t size, size_t at) {
    uint64_t v = 0;
    if (size >= at + 8) std::memcpy(&v, data + at, 8);
    return v;
}

// The leaf a row reaches, walking from the root: left when x < threshold, NaN to default_left.
int64_t walk(const libfraud::TreeShapTables& t, int64_t root, const float* x) {
    int64_t n = root;
    while (t.left[n] >= 0) {
        const float v = x[t.feature[n]];
        if (std::isnan(v)) n = t.default_left[n] ? t.left[n] : t.right[n];
        else n = v < t.threshold[n] ? t.left[n] : t.right[n];
    }
    return n;
}

// Per tree: its cover-weighted mean leaf value (what TreeSHAP's empty coalition sees: a leaf's
// weight is the product of cover[child] / cover[parent] down its path, cover[leaf] / cover[root];
// a single-leaf tree's is its value), and a bound on the size of the terms the contributions are
// made of (for the tolerance): every coalition weighs a leaf by a product of 0s, 1s and some of
// the cover ratios down its path, at most the product of max(1, ratio), so the sum over leaves of
// |value| times that (just |value| when no child outweighs its parent). The exact contributions
// can be that large while they sum to a small margin: a double holds them only to its precision.
struct TreeMean {
    double mean = 0, size = 0;
};

TreeMean tree_mean(const libfraud::TreeShapTables& t, int64_t begin, int64_t end, std::vector<double>& growth) {
    TreeMean m;
    if (t.left[begin] < 0) {
        m.mean = t.value[begin];
        m.size = std::fabs(t.value[begin]);
        return m;
    }
    growth.assign(static_cast<size_t>(end - begin), 1.0);
    for (int64_t n = begin; n < end; ++n) {
        const double g = growth[static_cast<size_t>(n - begin)];
        if (t.left[n] >= 0) {  // children are later nodes of the tree (the reader checked)
            for (const int32_t c : {t.left[n], t.right[n]})
                growth[static_cast<size_t>(c - begin)] = g * std::fmax(1.0, t.cover[c] / t.cover[n]);
            continue;
        }
        m.mean += t.cover[n] / t.cover[begin] * t.value[n];
        m.size += g * std::fabs(t.value[n]);
    }
    return m;
}

void check_rows(const libfraud::ShapTablesFile& f) {
    const libfraud::TreeShapTables t = f.view();
    const size_t nf = t.num_features;
    if (nf > kMaxFeatures) return;

    std::vector<TreeMean> means(t.n_trees);
    std::vector<double> growth;
    double sizes = 0;
    for (size_t tree = 0; tree < t.n_trees; ++tree) {
        means[tree] = tree_mean(t, t.tree_offsets[tree], t.tree_offsets[tree + 1], growth);
        sizes += means[tree].size;
    }

    // The rows: all zeros, all NaN, alternating large / small values (either sign, infinities),
    // and every feature at the threshold of its first and of its last split (the x < threshold
    // edge: both walks must go right).
    const float big = std::numeric_limits<float>::max(), inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::vector<float>> rows;
    rows.emplace_back(nf, 0.0f);
    rows.emplace_back(nf, nan);
    const float pairs[][2] = {{big, -big}, {1e-38f, -1e-38f}, {-inf, inf}, {1e6f, 1e-6f}};
    for (const auto& pair : pairs) {
        std::vector<float> r(nf);
        for (size_t k = 0; k < nf; ++k) r[k] = pair[k % 2];
        rows.push_back(std::move(r));
    }
    std::vector<float> first(nf, 0.0f), last(nf, 0.0f);
    std::vector<uint8_t> seen(nf, 0);
    const size_t n_nodes = static_cast<size_t>(t.tree_offsets[t.n_trees]);
    for (size_t n = 0; n < n_nodes; ++n) {
        if (t.left[n] < 0) continue;
        const size_t feat = static_cast<size_t>(t.feature[n]);
        if (!seen[feat]) first[feat] = t.threshold[n];
        seen[feat] = 1;
        last[feat] = t.threshold[n];
    }
    rows.push_back(std::move(first));
    rows.push_back(std::move(last));

    std::vector<double> phi(nf + 1), fast_phi(nf + 1);
    std::vector<double> scratch(libfraud::tree_shap_scratch_size(t.max_depth));
    // The engine's fast kernel over the same tables, when they fit a small budget: the same values.
    const std::unique_ptr<libfraud::FastTreeShap> fast = libfraud::FastTreeShap::build(t, size_t{64} << 20);
    std::vector<double> fast_scratch(fast ? fast->scratch_size() : 0);
    for (const std::vector<float>& x : rows) {
        // margin = expected_value + sum over trees of (leaf reached - tree mean): the file holds the
        // expected value (base margin + every tree's mean), not the base margin itself.
        double margin = t.expected_value, scale = std::fabs(t.expected_value) + sizes;
        for (size_t tree = 0; tree < t.n_trees; ++tree) {
            const double leaf = t.value[walk(t, t.tree_offsets[tree], x.data())];
            margin += t.left[t.tree_offsets[tree]] < 0 ? 0.0 : leaf - means[tree].mean;
            scale += std::fabs(leaf);
        }
        // Leaf values near DBL_MAX, or cover ratios far above 1: the exact contributions (or the
        // margin) need not be doubles; nothing to compare (the run must still be free of UB).
        const bool representable = std::isfinite(margin) && std::isfinite(scale) && scale < 1e300;
        libfraud::tree_shap(t, x.data(), phi.data(), scratch.data());
        if (!representable) continue;
        double sum = 0;
        for (size_t k = 0; k <= nf; ++k) {
            if (!std::isfinite(phi[k])) {
                std::fprintf(stderr, "fuzz_shap_tables: phi[%zu] = %g (num_features %zu, margin %g)\n", k,
                             phi[k], nf, margin);
                FUZZ_CHECK(std::isfinite(phi[k]));
            }
            sum += phi[k];
        }
        FUZZ_CHECK(phi[nf] == t.expected_value);
        if (fast) {
            fast->contributions(x.data(), fast_phi.data(), fast_scratch.data());
            for (size_t k = 0; k <= nf; ++k) {
                // float32 tables: within float32 rounding of the terms' size (fast_tree_shap.cpp).
                // (plus 1e-30: products of tiny cover shares underflow float32, a meaningless log-odds)
                if (!(std::fabs(fast_phi[k] - phi[k]) <= 1e-6 * scale + 1e-30)) {
                    std::fprintf(stderr, "fuzz_shap_tables: fast phi[%zu] = %.17g, recursive %.17g (scale %g)\n", k,
                                 fast_phi[k], phi[k], scale);
                    FUZZ_CHECK(std::fabs(fast_phi[k] - phi[k]) <= 1e-6 * scale + 1e-30);
                }
            }
        }
        if (!(std::fabs(sum - margin) <= kRelTolerance * scale + std::numeric_limits<double>::min())) {
            std::fprintf(stderr, "fuzz_shap_tables: contributions sum to %.17g, the walk's margin is %.17g (scale %g)\n",
                         sum, margin, scale);
            FUZZ_CHECK(std::fabs(sum - margin) <= kRelTolerance * scale);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (g_path.empty()) g_path = libfraud_fuzz::make_temp_dir("fuzz-shap-tables") + "/shap_tables.bin";
    // n_nodes at byte 24 (n_trees, at 16, must not exceed it): the reader allocates the arrays the
    // header asks for before it finds the file too short.
    if (u64_at(data, size, 24) > kMaxNodes) return 0;
    libfraud_fuzz::write_file(g_path, data, size);
    libfraud::ShapTablesFile f;
    try {
        f = libfraud::read_shap_tables(g_path);
    } catch (const libfraud::FraudError& e) {
        if (e.status() != FRAUD_STATUS_LOAD_ERROR) {
            std::fprintf(stderr, "fuzz_shap_tables: status %d: %s\n", static_cast<int>(e.status()), e.what());
            __builtin_trap();
        }
        if (std::getenv("LIBFRAUD_FUZZ_VERBOSE")) std::fprintf(stderr, "refused: %s\n", e.what());
        return 0;
    }
    // What the reader promises once it accepted a file.
    FUZZ_CHECK(f.tree_offsets.size() >= 2 && f.tree_offsets.front() == 0);
    const size_t n = static_cast<size_t>(f.tree_offsets.back());
    FUZZ_CHECK(f.feature.size() == n && f.left.size() == n && f.right.size() == n && f.threshold.size() == n &&
               f.cover.size() == n && f.value.size() == n && f.default_left.size() == n);
    FUZZ_CHECK(f.max_depth <= 64 && f.num_features > 0 && std::isfinite(f.expected_value));
    if (std::getenv("LIBFRAUD_FUZZ_VERBOSE"))
        std::fprintf(stderr, "accepted: %zu trees, %zu nodes, %zu features, max_depth %zu\n",
                     f.tree_offsets.size() - 1, f.cover.size(), f.num_features, f.max_depth);
    check_rows(f);
    return 0;
}
