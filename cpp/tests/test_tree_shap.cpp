// explain/tree_shap against a brute-force reference written for clarity: Shapley values over every
// feature subset of the path-dependent value function v(S) (features in S follow x, the others
// split by cover), on random trees with repeated features, NaNs and ties; plus the scratch bound,
// no allocation per call, and tree_shap_validate's refusals. (Parity with XGBoost's own TreeSHAP:
// tests/test_tree_shap.py.) Plain program: prints "N passed, N failed" last.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "explain/tree_shap.h"
#include "shap_forest.h"

using namespace libfraud;

namespace {

struct Forest : ForestTables {
    // A random subtree in preorder (children after their parent); returns its id.
    int32_t grow(std::mt19937& rng, size_t depth, size_t limit, size_t num_features, double c) {
        const int32_t id = add_node(depth, c);
        std::uniform_real_distribution<double> u(0, 1);
        if (depth == limit || (depth > 0 && u(rng) < 0.2)) {
            value[id] = u(rng) * 2 - 1;
            return id;
        }
        feature[id] = static_cast<int32_t>(rng() % num_features);
        threshold[id] = static_cast<float>(std::round((u(rng) * 2 - 1) * 4) / 4);  // ties with x
        default_left[id] = static_cast<uint8_t>(rng() % 2);
        const double share = 0.05 + 0.9 * u(rng);
        const int32_t l = grow(rng, depth + 1, limit, num_features, c * share);
        const int32_t r = grow(rng, depth + 1, limit, num_features, c * (1 - share));
        left[id] = l;
        right[id] = r;
        return id;
    }

};

// v(S): the tree's output when the features in mask are known (they follow x) and the others
// are averaged over the training cover.
double value_of(const Forest& f, int32_t n, const float* x, unsigned mask) {
    if (f.left[n] < 0) return f.value[n];
    const int32_t j = f.feature[n];
    if (mask & (1u << j)) {
        const bool go_left = std::isnan(x[j]) ? f.default_left[n] != 0 : x[j] < f.threshold[n];
        return value_of(f, go_left ? f.left[n] : f.right[n], x, mask);
    }
    const int32_t l = f.left[n], r = f.right[n];
    return (f.cover[l] * value_of(f, l, x, mask) + f.cover[r] * value_of(f, r, x, mask)) / f.cover[n];
}

// Shapley values of v summed over the trees, bias last: 2^F subsets per feature.
std::vector<double> reference(const Forest& f, size_t num_features, const float* x) {
    std::vector<double> phi(num_features + 1, 0.0);
    std::vector<double> fact(num_features + 1, 1.0);
    for (size_t k = 1; k <= num_features; ++k) fact[k] = fact[k - 1] * static_cast<double>(k);
    for (size_t t = 0; t + 1 < f.tree_offsets.size(); ++t) {
        const auto root = static_cast<int32_t>(f.tree_offsets[t]);
        phi[num_features] += value_of(f, root, x, 0);
        for (size_t i = 0; i < num_features; ++i) {
            for (unsigned s = 0; s < (1u << num_features); ++s) {
                if (s & (1u << i)) continue;
                const auto size = static_cast<size_t>(__builtin_popcount(s));
                const double w = fact[size] * fact[num_features - size - 1] / fact[num_features];
                phi[i] += w * (value_of(f, root, x, s | (1u << i)) - value_of(f, root, x, s));
            }
        }
    }
    return phi;
}

}  // namespace

int main() {
    std::mt19937 rng(42);
    const size_t num_features = 5;  // few features, deep trees: a feature repeats on most paths
    for (size_t limit : {1, 3, 6, 9}) {
        Forest f;
        for (int t = 0; t < 6; ++t) {
            f.grow(rng, 0, limit, num_features, 100.0);
            f.tree_offsets.push_back(static_cast<int64_t>(f.feature.size()));
        }
        const TreeShapTables tables = f.tables(num_features, 0.0);
        tree_shap_validate(tables, f.feature.size());
        // Guards past the scratch's end catch a size formula that is too small.
        const size_t need = tree_shap_scratch_size(f.max_depth);
        std::vector<double> scratch(need + 64, 12345.0);
        std::vector<double> phi(num_features + 1);
        double worst = 0;
        for (int row = 0; row < 200; ++row) {
            float x[num_features];
            for (float& v : x) {
                const unsigned r = rng() % 10;
                v = r == 0 ? NAN : static_cast<float>(static_cast<int>(rng() % 17) - 8) / 4;
            }
            const long before = g_allocations;
            tree_shap(tables, x, phi.data(), scratch.data());
            CHECK(g_allocations == before);
            const std::vector<double> want = reference(f, num_features, x);
            // The reference's bias is each tree's mean; tree_shap's is the caller's expected value.
            double bias = 0;
            for (size_t t = 0; t + 1 < f.tree_offsets.size(); ++t) {
                bias += value_of(f, static_cast<int32_t>(f.tree_offsets[t]), x, 0);
            }
            for (size_t k = 0; k < num_features; ++k) worst = std::max(worst, std::abs(phi[k] - want[k]));
            double total = 0, full = 0;
            for (size_t k = 0; k < num_features; ++k) total += phi[k];
            for (size_t t = 0; t + 1 < f.tree_offsets.size(); ++t) {
                full += value_of(f, static_cast<int32_t>(f.tree_offsets[t]), x, (1u << num_features) - 1);
            }
            CHECK(std::abs(total + bias - full) < 1e-9);  // local accuracy
            CHECK(std::abs(want[num_features] - bias) < 1e-12);
        }
        bool guards_intact = true;
        for (size_t k = need; k < scratch.size(); ++k) guards_intact &= scratch[k] == 12345.0;
        CHECK(guards_intact);
        std::printf("depth <= %zu (deepest %zu): max |tree_shap - brute force| = %.3g\n", limit,
                    f.max_depth, worst);
        CHECK(worst < 1e-9);
    }

    Forest f;
    f.grow(rng, 0, 3, num_features, 10.0);
    f.tree_offsets.push_back(static_cast<int64_t>(f.feature.size()));
    const size_t n = f.feature.size();
    TreeShapTables t = f.tables(num_features, 0.0);
    t.max_depth = f.max_depth - 1;
    CHECK_THROWS(tree_shap_validate(t, n), FRAUD_STATUS_INVALID_ARGUMENT, "exceeds max_depth");
    t = f.tables(num_features, 0.0);
    CHECK_THROWS(tree_shap_validate(t, n + 1), FRAUD_STATUS_INVALID_ARGUMENT, "tree_offsets");
    std::vector<int64_t> tree_offsets{0, static_cast<int64_t>(n) + 7, static_cast<int64_t>(n)};
    t.tree_offsets = tree_offsets.data();
    t.n_trees = 2;
    CHECK_THROWS(tree_shap_validate(t, n), FRAUD_STATUS_INVALID_ARGUMENT, "must increase");
    t = f.tables(num_features, 0.0);
    std::vector<int32_t> bad = f.left;
    bad[0] = 0;
    t.left = bad.data();
    CHECK_THROWS(tree_shap_validate(t, n), FRAUD_STATUS_INVALID_ARGUMENT, "children must be later");
    t = f.tables(num_features - 1, 0.0);
    std::vector<int32_t> feat = f.feature;
    feat[0] = static_cast<int32_t>(num_features - 1);
    t.feature = feat.data();
    CHECK_THROWS(tree_shap_validate(t, n), FRAUD_STATUS_INVALID_ARGUMENT, "out of range");
    return report_checks();
}
