// Error: table entries and slot scales are float32 (each rounded to a relative 2^-24), products and
// sums are double, so each leaf's share of a contribution carries a relative error below ~1.2e-7
// and a feature's error is below ~1.2e-7 times the sum of its shares' magnitudes (in practice
// ~1e-8 absolute on boosters of hundreds of trees; see test_fast_tree_shap). A slot whose zero
// fraction is below kTinyZeroFraction (a child with ~0 cover) is treated as exactly 0, which
// changes the leaf's shares by at most that fraction times its value.
#include "explain/fast_tree_shap.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace libfraud {
namespace {

constexpr size_t kMaxSlots = 31;  // cold sets are uint32 bit masks
constexpr double kTinyZeroFraction = 1e-20;
constexpr size_t kPrefetchAboveBytes = size_t{16} << 20;  // tables larger than this: prefetch
constexpr uint32_t kPrefetchLeaves = 8;                  // how many leaves ahead

// A distinct feature on the path to a node: the product of its splits' child / parent cover.
struct PathSlot {
    int32_t feature;
    double zero_fraction;
};

// Depth first over the subtree at node, left child first, with path[0, n_slots) the distinct
// features above it (path has room for max_depth + 1). The visitor numbers nodes:
// split(node, slot) and leaf(node, path, n_slots) return ids, link(split id, left id, right id).
template <class Visitor>
uint32_t walk(const TreeShapTables& t, int32_t node, PathSlot* path, size_t n_slots,
              Visitor& visitor) {
    if (t.left[node] < 0) return visitor.leaf(node, path, n_slots);
    const int32_t feature = t.feature[node];
    size_t slot = 0;
    while (slot < n_slots && path[slot].feature != feature) ++slot;
    const uint32_t id = visitor.split(node, slot);
    const int32_t children[2] = {t.left[node], t.right[node]};
    uint32_t child_ids[2];
    for (int c = 0; c < 2; ++c) {
        const double fraction = t.cover[children[c]] / t.cover[node];
        if (slot == n_slots) {
            path[slot] = {feature, fraction};
            child_ids[c] = walk(t, children[c], path, n_slots + 1, visitor);
        } else {
            // A repeated feature: one player whose zero fraction is the product over its splits.
            const double above = path[slot].zero_fraction;
            path[slot].zero_fraction = above * fraction;
            child_ids[c] = walk(t, children[c], path, n_slots, visitor);
            path[slot].zero_fraction = above;
        }
    }
    visitor.link(id, child_ids[0], child_ids[1]);
    return id;
}

uint32_t count_splits(const TreeShapTables& t, size_t tree) {
    uint32_t n = 0;
    for (int64_t node = t.tree_offsets[tree]; node < t.tree_offsets[tree + 1]; ++node) {
        n += t.left[node] >= 0;
    }
    return n;
}

// What build() allocates, counted by a walk that builds nothing.
struct Sizes {
    uint64_t trees = 0, splits = 0, leaves = 0, slots = 0, table = 0, scratch_ids = 0;
    bool too_many_slots = false;

    uint32_t split(int32_t, size_t) { ++splits; return 0; }
    uint32_t leaf(int32_t, const PathSlot*, size_t n_slots) {
        ++leaves;
        if (n_slots > kMaxSlots) {
            too_many_slots = true;
        } else {
            slots += n_slots;
            table += uint64_t{1} << n_slots;
        }
        return 0;
    }
    void link(uint32_t, uint32_t, uint32_t) {}
};

Sizes count(const TreeShapTables& t) {
    Sizes sizes;
    std::vector<PathSlot> path(t.max_depth + 1);
    for (size_t tree = 0; tree < t.n_trees; ++tree) {
        const auto root = static_cast<int32_t>(t.tree_offsets[tree]);
        if (t.left[root] < 0) continue;  // a lone leaf adds only to the expected value
        const uint64_t before = sizes.splits + sizes.leaves;
        ++sizes.trees;
        walk(t, root, path.data(), 0, sizes);
        sizes.scratch_ids = std::max(sizes.scratch_ids, sizes.splits + sizes.leaves - before);
    }
    return sizes;
}

// a * b + c, or SIZE_MAX on overflow.
size_t mul_add(uint64_t a, size_t b, size_t c) {
    size_t product, sum;
    if (__builtin_mul_overflow(a, b, &product) || __builtin_add_overflow(product, c, &sum)) {
        return std::numeric_limits<size_t>::max();
    }
    return sum;
}

// yes ? a : b without a branch: compilers branch on a ternary of doubles, and here it is a coin
// flip.
inline double choose(uint32_t yes, double a, double b) {
    uint64_t a_bits, b_bits;
    std::memcpy(&a_bits, &a, sizeof a);
    std::memcpy(&b_bits, &b, sizeof b);
    const uint64_t mask = uint64_t{0} - static_cast<uint64_t>(yes != 0);
    const uint64_t bits = (a_bits & mask) | (b_bits & ~mask);
    double out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

// Fills a leaf's table: for each cold set (bit k: slot k cold) the share of every cold slot,
// -(leaf value) * prod_{cold k} cold_factor_k * G(hot), G as in fast_tree_shap.h. Recursion level k
// decides slot k; poly level k holds the elementary symmetric polynomials of the hot zero
// fractions decided so far, so G costs O(d) per entry and the table O(d 2^d). One filler serves
// every leaf, so its buffers are allocated once per build.
class TableFiller {
public:
    explicit TableFiller(size_t max_slots)
        : poly_((max_slots + 1) * (max_slots + 1)), weight_(max_slots) {}

    void fill(const double* zero, const double* cold_factor, size_t d, double minus_leaf_value,
              float* table) {
        zero_ = zero;
        cold_factor_ = cold_factor;
        d_ = d;
        table_ = table;
        // w(s, d) = s! (d - s - 1)! / d!, the Shapley weight of a coalition of s of d players.
        if (d > 0) weight_[0] = 1.0 / static_cast<double>(d);
        for (size_t s = 1; s < d; ++s) {
            weight_[s] = weight_[s - 1] * static_cast<double>(s) / static_cast<double>(d - s);
        }
        poly_[0] = 1;
        fill(0, 0, 0, minus_leaf_value);
    }

private:
    void fill(size_t k, uint32_t cold, size_t hot, double scale) {
        const double* e = poly_.data() + k * (d_ + 1);
        if (k == d_) {
            // No cold slot: nobody reads this entry (a hot slot reads the entry with itself cold).
            double g = 0;
            if (hot < d_) {
                for (size_t s = 0; s <= hot; ++s) g += weight_[s] * e[hot - s];
            }
            // Below float's normal range the share is < 1.2e-38 (1e-18 after the largest scale):
            // stored as 0, so the kernel never meets a subnormal (slow on some CPUs).
            const double share = scale * g;
            const bool subnormal = std::abs(share) < std::numeric_limits<float>::min();
            table_[cold] = subnormal ? 0.0f : static_cast<float>(share);
            return;
        }
        double* next = poly_.data() + (k + 1) * (d_ + 1);
        for (size_t j = 0; j <= hot; ++j) next[j] = e[j];
        fill(k + 1, cold | (1u << k), hot, scale * cold_factor_[k]);
        // Slot k hot: multiply by (1 + z_k t), from e, which the cold branch left intact.
        const double z = zero_[k];
        next[0] = e[0];
        for (size_t j = 1; j <= hot; ++j) next[j] = e[j] + z * e[j - 1];
        next[hot + 1] = z * e[hot];
        fill(k + 1, cold, hot + 1, scale);
    }

    const double* zero_ = nullptr;
    const double* cold_factor_ = nullptr;
    size_t d_ = 0;
    float* table_ = nullptr;
    std::vector<double> poly_;
    std::vector<double> weight_;
};

}  // namespace

class FastTreeShapBuilder {
public:
    FastTreeShapBuilder(const TreeShapTables& t, FastTreeShap& out)
        : t_(t), out_(out), filler_(kMaxSlots) {}

    void add_tree(size_t tree, PathSlot* path) {
        const auto root = static_cast<int32_t>(t_.tree_offsets[tree]);
        if (t_.left[root] < 0) return;
        tree_ = {out_.splits_.size(), out_.leaves_.size(), count_splits(t_, tree), 0};
        walk(t_, root, path, 0, *this);
        tree_.n_leaves = static_cast<uint32_t>(out_.leaves_.size() - tree_.leaf_begin);
        out_.trees_.push_back(tree_);
    }

    uint32_t split(int32_t node, size_t slot) {
        const auto id = static_cast<uint32_t>(out_.splits_.size() - tree_.split_begin);
        out_.splits_.push_back({t_.threshold[node], t_.feature[node], 0, 0,
                                static_cast<uint8_t>(slot),
                                static_cast<uint8_t>(t_.default_left[node] != 0)});
        return id;
    }

    uint32_t leaf(int32_t node, const PathSlot* path, size_t n_slots) {
        const auto id =
            static_cast<uint32_t>(tree_.n_splits + out_.leaves_.size() - tree_.leaf_begin);
        FastTreeShap::Leaf leaf{out_.table_.size(), out_.slot_feature_.size(), 0,
                                static_cast<uint32_t>(n_slots)};
        double zero[kMaxSlots], cold_factor[kMaxSlots];
        for (size_t k = 0; k < n_slots; ++k) {
            const double z = path[k].zero_fraction;
            zero[k] = z;
            const bool tiny = z < kTinyZeroFraction;
            // A tiny slot's hot share is stored, unscaled, in the entry with it cold, which no
            // pattern reads as a cold share: with it cold the leaf is skipped.
            cold_factor[k] = tiny ? 1.0 : z;
            if (tiny) leaf.tiny_mask |= 1u << k;
            out_.slot_feature_.push_back(path[k].feature);
            out_.slot_scale_.push_back(static_cast<float>(tiny ? -1.0 : -(1.0 - z) / z));
        }
        out_.table_.resize(out_.table_.size() + (size_t{1} << n_slots));
        filler_.fill(zero, cold_factor, n_slots, -t_.value[node], out_.table_.data() + leaf.table);
        out_.leaves_.push_back(leaf);
        return id;
    }

    void link(uint32_t id, uint32_t left, uint32_t right) {
        FastTreeShap::Split& s = out_.splits_[tree_.split_begin + id];
        s.left = left;
        s.right = right;
    }

    // What build() holds for tables of these sizes; SIZE_MAX when they cannot be built.
    static size_t bytes_of(const Sizes& s) {
        if (s.too_many_slots) return std::numeric_limits<size_t>::max();
        size_t bytes = sizeof(FastTreeShap);
        bytes = mul_add(s.trees, sizeof(FastTreeShap::Tree), bytes);
        bytes = mul_add(s.splits, sizeof(FastTreeShap::Split), bytes);
        bytes = mul_add(s.leaves, sizeof(FastTreeShap::Leaf), bytes);
        bytes = mul_add(s.slots, sizeof(int32_t) + sizeof(float), bytes);
        return mul_add(s.table, sizeof(float), bytes);
    }

private:
    const TreeShapTables& t_;
    FastTreeShap& out_;
    TableFiller filler_;
    FastTreeShap::Tree tree_{};
};

size_t fast_tree_shap_bytes(const TreeShapTables& tables) {
    return FastTreeShapBuilder::bytes_of(count(tables));
}

// float32 tables hold a leaf's value times cover fractions: a leaf value float32 cannot carry with
// headroom (XGBoost's own leaves are float32, far inside this) is left to the recursive kernel.
bool leaves_fit_float32(const TreeShapTables& t) {
    constexpr double kLargest = 1e30, kSmallest = 1e-30;
    const size_t n = static_cast<size_t>(t.tree_offsets[t.n_trees]);
    for (size_t i = 0; i < n; ++i) {
        if (t.left[i] >= 0) continue;
        const double v = std::fabs(t.value[i]);
        if (v > kLargest || (v != 0.0 && v < kSmallest)) return false;
    }
    return true;
}

std::unique_ptr<FastTreeShap> FastTreeShap::build(const TreeShapTables& tables, size_t max_bytes) {
    if (!leaves_fit_float32(tables)) return nullptr;
    const Sizes sizes = count(tables);
    const size_t need = FastTreeShapBuilder::bytes_of(sizes);
    if (need == std::numeric_limits<size_t>::max() || need > max_bytes) return nullptr;

    std::unique_ptr<FastTreeShap> out(new FastTreeShap());
    out->num_features_ = tables.num_features;
    out->expected_value_ = tables.expected_value;
    // Cold sets are uint32, two to a double.
    out->scratch_doubles_ = static_cast<size_t>((sizes.scratch_ids + 1) / 2);
    out->trees_.reserve(sizes.trees);
    out->splits_.reserve(sizes.splits);
    out->leaves_.reserve(sizes.leaves);
    out->slot_feature_.reserve(sizes.slots);
    out->slot_scale_.reserve(sizes.slots);
    out->table_.reserve(sizes.table);

    std::vector<PathSlot> path(tables.max_depth + 1);
    FastTreeShapBuilder builder(tables, *out);
    for (size_t tree = 0; tree < tables.n_trees; ++tree) builder.add_tree(tree, path.data());
    return out;
}

size_t FastTreeShap::bytes() const {
    return sizeof(*this) + trees_.capacity() * sizeof(Tree) + splits_.capacity() * sizeof(Split) +
           leaves_.capacity() * sizeof(Leaf) + slot_feature_.capacity() * sizeof(int32_t) +
           slot_scale_.capacity() * sizeof(float) + table_.capacity() * sizeof(float);
}

void FastTreeShap::contributions(const float* x, double* phi, double* scratch) const {
    for (size_t k = 0; k < num_features_; ++k) phi[k] = 0;
    phi[num_features_] = expected_value_;
    // The scratch holds cold sets, never read as doubles (storage reuse, as tree_shap's path).
    auto* cold = reinterpret_cast<uint32_t*>(scratch);
    // Tables past the last-level cache are read from memory at random: prefetching a few leaves
    // ahead then pays (1000 trees of depth 8, 51 MB: ~1.7x faster here); in cache it costs ~5%.
    if (table_.size() * sizeof(float) > kPrefetchAboveBytes) {
        accumulate<true>(x, phi, cold);
    } else {
        accumulate<false>(x, phi, cold);
    }
}

template <bool kPrefetch>
void FastTreeShap::accumulate(const float* x, double* phi, uint32_t* cold) const {
    const Split* splits = splits_.data();
    const Leaf* leaves = leaves_.data();
    const int32_t* slot_feature = slot_feature_.data();
    const float* slot_scale = slot_scale_.data();
    const float* table = table_.data();
    for (const Tree& tree : trees_) {
        // Each split once, parents first: a child's cold set is its parent's plus this split's
        // slot when x goes the other way. Branch-free: x's side is a coin flip to the predictor.
        const Split* split = splits + tree.split_begin;
        const uint32_t n_splits = tree.n_splits;
        const uint32_t n_leaves = tree.n_leaves;
        cold[0] = 0;
        for (uint32_t i = 0; i < n_splits; ++i) {
            const Split& s = split[i];
            const float v = x[s.feature];
            const uint32_t go_left = static_cast<uint32_t>(v < s.threshold) |
                                     (static_cast<uint32_t>(std::isnan(v)) & s.default_left);
            const uint32_t here = cold[i];
            cold[s.left] = here | ((go_left ^ 1u) << s.slot);
            cold[s.right] = here | (go_left << s.slot);
        }
        const uint32_t* leaf_cold = cold + n_splits;
        const Leaf* leaf = leaves + tree.leaf_begin;
        double root_share = 0;
        for (uint32_t l = 0; l < n_leaves; ++l) {
            if (kPrefetch && l + kPrefetchLeaves < n_leaves) {
                // The lines this leaf will read: its cold entry's, and one per slot past the
                // first line's 16 entries (a hot slot there reads another line).
                const Leaf& ahead = leaf[l + kPrefetchLeaves];
                const float* entries = table + ahead.table;
                const uint32_t c = leaf_cold[l + kPrefetchLeaves];
                __builtin_prefetch(entries + c);
                for (uint32_t k = 4; k < ahead.n_slots; ++k) {
                    __builtin_prefetch(entries + (c | (1u << k)));
                }
            }
            const uint32_t c = leaf_cold[l];
            if (c & leaf[l].tiny_mask) continue;
            const float* entries = table + leaf[l].table;
            const int32_t* feature = slot_feature + leaf[l].slot;
            const float* scale = slot_scale + leaf[l].slot;
            const uint32_t n_slots = leaf[l].n_slots;
            // A cold slot takes the leaf's shared cold entry, a hot one the entry with itself
            // cold, scaled: both computed, one kept without a branch. Slot 0 is the root's
            // feature in every leaf: summed in a register, added once per tree.
            const double cold_share = static_cast<double>(entries[c]);
            const double root_hot =
                static_cast<double>(entries[c | 1u]) * static_cast<double>(scale[0]);
            root_share += choose(c & 1u, cold_share, root_hot);
            uint32_t bit = 2;
            for (uint32_t k = 1; k < n_slots; ++k, bit <<= 1) {
                const double hot_share =
                    static_cast<double>(entries[c | bit]) * static_cast<double>(scale[k]);
                phi[feature[k]] += choose(c & bit, cold_share, hot_share);
            }
        }
        phi[split[0].feature] += root_share;
    }
}

}  // namespace libfraud
