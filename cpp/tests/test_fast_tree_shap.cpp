// explain/fast_tree_shap against explain/tree_shap (itself checked against brute-force Shapley
// values in test_tree_shap): random forests of depth 0..12 with repeated features on a path, NaNs,
// x == threshold ties, lone leaves, chains, zero and tiny covers; local accuracy; the byte budget;
// no allocation per call; tables that outlive the view they were built from. Plain program:
// prints "N passed, N failed" last.
//
// Tolerance: the tables are float32, so each leaf's share of a contribution is off by a relative
// ~1.2e-7 at most (observed: ~1e-8 of the scale below); a feature's contribution is checked to
// within 1e-7 * (the sum over trees of each tree's largest |leaf value|), a bound on the sum of its
// shares' magnitudes.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "explain/fast_tree_shap.h"
#include "explain/tree_shap.h"
#include "shap_forest.h"

using namespace libfraud;

namespace {

struct Forest : ForestTables {
    void make_split(std::mt19937& rng, int32_t id, size_t num_features) {
        std::uniform_real_distribution<double> u(0, 1);
        feature[id] = static_cast<int32_t>(rng() % num_features);
        threshold[id] = static_cast<float>(std::round((u(rng) * 2 - 1) * 8) / 4);  // ties with x
        default_left[id] = static_cast<uint8_t>(rng() % 2);
    }

    // A random subtree in preorder (children after their parent); returns its id. Leaves stop
    // early with probability stop (unbalanced trees); limit 0 is a lone leaf.
    int32_t grow(std::mt19937& rng, size_t depth, size_t limit, size_t num_features, double c,
                 double stop) {
        const int32_t id = add_node(depth, c);
        std::uniform_real_distribution<double> u(0, 1);
        if (depth == limit || (depth > 0 && u(rng) < stop)) {
            value[id] = u(rng) * 2 - 1;
            return id;
        }
        make_split(rng, id, num_features);
        const double share = 0.05 + 0.9 * u(rng);
        const int32_t l = grow(rng, depth + 1, limit, num_features, c * share, stop);
        const int32_t r = grow(rng, depth + 1, limit, num_features, c * (1 - share), stop);
        left[id] = l;
        right[id] = r;
        return id;
    }

    // A chain: every split has a leaf on one side. feature_of(depth) picks each split's feature.
    template <class FeatureOf>
    void chain(std::mt19937& rng, size_t length, size_t num_features, FeatureOf feature_of) {
        std::uniform_real_distribution<double> u(0, 1);
        double c = 1000;
        int32_t node = add_node(0, c);
        for (size_t depth = 0; depth < length; ++depth) {
            make_split(rng, node, num_features);
            feature[node] = feature_of(depth);
            const double share = 0.1 + 0.8 * u(rng);
            const bool leaf_left = rng() % 2;
            const int32_t a = add_node(depth + 1, c * (leaf_left ? share : 1 - share));
            const int32_t b = add_node(depth + 1, c * (leaf_left ? 1 - share : share));
            left[node] = a;
            right[node] = b;
            value[leaf_left ? a : b] = u(rng) * 2 - 1;
            node = leaf_left ? b : a;
            c = cover[node];
        }
        value[node] = u(rng) * 2 - 1;
        end_tree();
    }


    double margin(const float* x) const {
        double total = 0;
        for (size_t t = 0; t + 1 < tree_offsets.size(); ++t) {
            auto n = static_cast<int32_t>(tree_offsets[t]);
            while (left[n] >= 0) {
                const float v = x[feature[n]];
                n = (std::isnan(v) ? default_left[n] != 0 : v < threshold[n]) ? left[n] : right[n];
            }
            total += value[n];
        }
        return total;
    }

    // Bounds the magnitude of a feature's shares: the sum of each tree's largest |leaf value|.
    double scale() const {
        double total = 0;
        for (size_t t = 0; t + 1 < tree_offsets.size(); ++t) {
            double largest = 0;
            for (int64_t n = tree_offsets[t]; n < tree_offsets[t + 1]; ++n) {
                if (left[n] < 0) largest = std::max(largest, std::abs(value[n]));
            }
            total += largest;
        }
        return total;
    }
};

// The expected value that makes contributions sum to the margin (mean is cover-consistent only
// when covers add up; tree_shap weights by child / parent cover, so use that).
double path_mean(const Forest& f, int32_t n) {
    if (f.left[n] < 0) return f.value[n];
    const int32_t l = f.left[n], r = f.right[n];
    return (f.cover[l] * path_mean(f, l) + f.cover[r] * path_mean(f, r)) / f.cover[n];
}

double expected_of(const Forest& f) {
    double e = 0;
    for (size_t t = 0; t + 1 < f.tree_offsets.size(); ++t) {
        e += path_mean(f, static_cast<int32_t>(f.tree_offsets[t]));
    }
    return e;
}

std::vector<float> random_row(std::mt19937& rng, size_t num_features) {
    std::vector<float> x(num_features);
    for (float& v : x) {
        // A quarter grid in [-2, 2]: thresholds are on it too, so x == threshold often.
        v = rng() % 10 == 0 ? NAN : static_cast<float>(static_cast<int>(rng() % 17) - 8) / 4;
    }
    return x;
}

// Checks fast against tree_shap (and both against the margin) on rows; returns the worst
// |fast - tree_shap| / scale.
double compare(const Forest& f, size_t num_features, std::mt19937& rng, int rows,
               const char* what) {
    const TreeShapTables tables = f.tables(num_features, expected_of(f));
    tree_shap_validate(tables, f.feature.size());
    const auto fast = FastTreeShap::build(tables, std::numeric_limits<size_t>::max());
    CHECK(fast != nullptr);
    if (!fast) return INFINITY;
    CHECK(fast->num_features() == num_features);
    CHECK(fast->bytes() == fast_tree_shap_bytes(tables));
    std::vector<double> scratch_ref(tree_shap_scratch_size(f.max_depth));
    // Guards past the scratch's end catch a scratch_size that is too small.
    std::vector<double> scratch(fast->scratch_size() + 64, 12345.0);
    std::vector<double> want(num_features + 1), got(num_features + 1);
    const double scale = std::max(1.0, f.scale());
    double worst = 0;
    bool exact_bias = true, sums_to_margin = true, no_allocation = true;
    for (int row = 0; row < rows; ++row) {
        const std::vector<float> x = random_row(rng, num_features);
        tree_shap(tables, x.data(), want.data(), scratch_ref.data());
        const long before = g_allocations;
        fast->contributions(x.data(), got.data(), scratch.data());
        no_allocation &= g_allocations == before;
        double total = 0;
        for (size_t k = 0; k < num_features; ++k) {
            worst = std::max(worst, std::abs(got[k] - want[k]) / scale);
            total += got[k];
        }
        exact_bias &= got[num_features] == tables.expected_value;
        sums_to_margin &= std::abs(total + got[num_features] - f.margin(x.data())) < 1e-7 * scale;
    }
    bool guards_intact = true;
    for (size_t k = fast->scratch_size(); k < scratch.size(); ++k) {
        guards_intact &= scratch[k] == 12345.0;
    }
    CHECK(exact_bias);
    CHECK(sums_to_margin);
    CHECK(no_allocation);
    CHECK(guards_intact);
    std::printf("%-44s trees %3zu, deepest %2zu, %8zu bytes: "
                "max |fast - tree_shap| / scale = %.3g\n",
                what, f.tree_offsets.size() - 1, f.max_depth, fast->bytes(), worst);
    CHECK(worst < 1e-7);
    return worst;
}

}  // namespace

int main() {
    std::mt19937 rng(7);

    // Random forests: few features (repeats on most paths) and many, balanced and unbalanced,
    // each with a lone leaf among its trees.
    struct Config {
        size_t num_features, limit, trees;
        double stop;
    };
    for (const Config c : {Config{5, 1, 10, 0.0}, Config{5, 3, 10, 0.2}, Config{5, 6, 10, 0.2},
                           Config{3, 10, 6, 0.1}, Config{5, 10, 6, 0.05}, Config{40, 6, 20, 0.0},
                           Config{40, 10, 6, 0.1}, Config{12, 8, 30, 0.3},
                           // Over 16 MiB of tables: the kernel's prefetching path.
                           Config{40, 10, 20, 0.0}}) {
        Forest f;
        for (size_t t = 0; t < c.trees; ++t) {
            f.grow(rng, 0, t == 1 ? 0 : c.limit, c.num_features, 100.0, c.stop);
            f.end_tree();
        }
        char what[64];
        std::snprintf(what, sizeof what, "%zu features, depth <= %zu, stop %.2f", c.num_features,
                      c.limit, c.stop);
        compare(f, c.num_features, rng, c.trees > 10 && c.limit == 10 ? 40 : 200, what);
    }

    {  // Chains (maximally unbalanced): distinct features, then one feature split on repeatedly.
        Forest f;
        f.chain(rng, 12, 20, [](size_t depth) { return static_cast<int32_t>(depth); });
        f.chain(rng, 12, 20, [](size_t) { return 3; });
        f.chain(rng, 12, 20, [](size_t depth) { return static_cast<int32_t>(depth % 3); });
        compare(f, 20, rng, 300, "chains");
    }

    {  // Leaves with zero and tiny cover (the tiny-slot path; tree_shap weights them exactly).
        Forest f;
        for (int t = 0; t < 10; ++t) {
            f.grow(rng, 0, 6, 6, 100.0, 0.1);
            f.end_tree();
        }
        int zeroed = 0;
        for (size_t n = 0; n < f.feature.size(); ++n) {
            if (f.left[n] >= 0 || rng() % 4 != 0) continue;
            f.cover[n] = (zeroed++ % 2) ? 0.0 : 1e-30 * f.cover[n];
        }
        CHECK(zeroed > 10);
        compare(f, 6, rng, 300, "zero and tiny leaf covers");
    }

    {  // The byte budget: refused one byte short, built at exactly the estimate.
        Forest f;
        for (int t = 0; t < 5; ++t) {
            f.grow(rng, 0, 7, 10, 100.0, 0.1);
            f.end_tree();
        }
        const TreeShapTables tables = f.tables(10, 0.0);
        const size_t need = fast_tree_shap_bytes(tables);
        CHECK(FastTreeShap::build(tables, need - 1) == nullptr);
        const auto fast = FastTreeShap::build(tables, need);
        CHECK(fast != nullptr && fast->bytes() == need);
    }

    {  // 31 distinct features on a path: 2^31 entries for one leaf, refused before allocating;
       // 32 cannot be built at all.
        Forest f;
        f.chain(rng, 31, 40, [](size_t depth) { return static_cast<int32_t>(depth); });
        TreeShapTables tables = f.tables(40, 0.0);
        tree_shap_validate(tables, f.feature.size());
        const size_t need = fast_tree_shap_bytes(tables);
        CHECK(need > (size_t{8} << 30) && need != std::numeric_limits<size_t>::max());
        const long before = g_allocations;
        CHECK(FastTreeShap::build(tables, size_t{1} << 30) == nullptr);
        CHECK(g_allocations - before < 10);  // the sizing walk's path only

        Forest g;
        g.chain(rng, 32, 40, [](size_t depth) { return static_cast<int32_t>(depth); });
        tables = g.tables(40, 0.0);
        CHECK(fast_tree_shap_bytes(tables) == std::numeric_limits<size_t>::max());
        CHECK(FastTreeShap::build(tables, std::numeric_limits<size_t>::max()) == nullptr);
    }

    {  // The tables may die after build(): the kernel keeps its own copies.
        auto owned = std::make_unique<Forest>();
        for (int t = 0; t < 8; ++t) {
            owned->grow(rng, 0, 6, 8, 100.0, 0.1);
            owned->end_tree();
        }
        const Forest kept = *owned;
        auto fast = FastTreeShap::build(owned->tables(8, 0.5), std::numeric_limits<size_t>::max());
        owned.reset();
        const TreeShapTables tables = kept.tables(8, 0.5);
        std::vector<double> scratch(fast->scratch_size());
        std::vector<double> scratch_ref(tree_shap_scratch_size(kept.max_depth));
        std::vector<double> want(9), got(9);
        double worst = 0;
        for (int row = 0; row < 50; ++row) {
            const std::vector<float> x = random_row(rng, 8);
            tree_shap(tables, x.data(), want.data(), scratch_ref.data());
            fast->contributions(x.data(), got.data(), scratch.data());
            for (size_t k = 0; k <= 8; ++k) worst = std::max(worst, std::abs(got[k] - want[k]));
        }
        CHECK(worst < 1e-7 * kept.scale());
    }

    {  // Only lone leaves: nothing but the expected value, and no scratch needed.
        Forest f;
        for (int t = 0; t < 3; ++t) {
            f.grow(rng, 0, 0, 4, 10.0, 0.0);
            f.end_tree();
        }
        const auto fast =
            FastTreeShap::build(f.tables(4, 1.25), std::numeric_limits<size_t>::max());
        std::vector<double> phi(5, 99.0);
        const float x[4] = {0, 1, NAN, 2};
        fast->contributions(x, phi.data(), nullptr);
        CHECK(phi[0] == 0 && phi[1] == 0 && phi[2] == 0 && phi[3] == 0 && phi[4] == 1.25);
    }
    return report_checks();
}
