#include "engine/flat_forest.h"

#include <algorithm>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>

#include "common/error.h"

namespace libfraud {
namespace {

constexpr uint32_t kMissingLeft = uint32_t{1} << 31;

}  // namespace

FlatForest::FlatForest(const TreeShapTables& t, double base_margin)
    : num_features_(t.num_features), base_margin_(base_margin) {
    if (t.n_trees == 0 || t.num_features == 0 || t.num_features >= kMissingLeft || !std::isfinite(base_margin))
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "flat forest: no trees, no features or a non-finite base margin");
    const size_t n_nodes = static_cast<size_t>(t.tree_offsets[t.n_trees]);
    nodes_.reserve(n_nodes);
    leaf_value_.reserve(n_nodes);
    root_.reserve(t.n_trees);
    depth_.reserve(t.n_trees);
    // Re-laid out depth-first, left child first, so a left child is always the next node whatever
    // order the tables use (tree_shap_validate only promises children after their parent).
    // Preorder with an explicit stack: a right child, when placed, patches its parent's link.
    std::vector<std::pair<int32_t, size_t>> pending;  // (table node, packed parent or SIZE_MAX)
    std::vector<uint32_t> depth_of;                   // parallel to pending
    for (size_t tree = 0; tree < t.n_trees; ++tree) {
        root_.push_back(static_cast<uint32_t>(nodes_.size()));
        uint32_t deepest = 0;
        pending.assign(1, {static_cast<int32_t>(t.tree_offsets[tree]), SIZE_MAX});
        depth_of.assign(1, 0);
        while (!pending.empty()) {
            const auto [n, parent_right] = pending.back();
            const uint32_t d = depth_of.back();
            pending.pop_back();
            depth_of.pop_back();
            const uint32_t here = static_cast<uint32_t>(nodes_.size());
            if (parent_right != SIZE_MAX) nodes_[parent_right].right = here;
            if (t.left[n] < 0) {
                nodes_.push_back({std::numeric_limits<float>::quiet_NaN(), here, 0});
                leaf_value_.push_back(static_cast<float>(t.value[n]));
                deepest = std::max(deepest, d);
            } else {
                const uint32_t f = static_cast<uint32_t>(t.feature[n]) | (t.default_left[n] ? kMissingLeft : 0);
                nodes_.push_back({t.threshold[n], 0, f});
                leaf_value_.push_back(0.0f);
                pending.push_back({t.right[n], here});  // patched when the right child is placed
                depth_of.push_back(d + 1);
                pending.push_back({t.left[n], SIZE_MAX});  // popped first: the next node
                depth_of.push_back(d + 1);
            }
        }
        if (deepest > 255)
            throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "flat forest: tree " + std::to_string(tree) +
                                                               " is deeper than 255");
        depth_.push_back(static_cast<uint8_t>(deepest));
    }
    if (nodes_.size() != n_nodes || nodes_.size() > std::numeric_limits<uint32_t>::max())
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "flat forest: the tables' trees do not cover their nodes");
#if defined(__x86_64__) && defined(__GNUC__)
    // Gathers index 32-bit words: 3 per node must stay below 2^31. LIBFRAUD_NO_AVX2 (any value):
    // the portable kernel, to compare the two.
    avx2_ = __builtin_cpu_supports("avx2") && nodes_.size() < (size_t{1} << 29) &&
            num_features_ * kBlock < (size_t{1} << 30) && std::getenv("LIBFRAUD_NO_AVX2") == nullptr;
#endif
    for (size_t g = 0; g < depth_.size(); g += kGroup)
        group_depth_.push_back(*std::max_element(depth_.begin() + g, depth_.begin() + std::min(g + kGroup, depth_.size())));
}

size_t FlatForest::bytes() const {
    return nodes_.size() * (sizeof(Node) + sizeof(float)) + root_.size() * (sizeof(uint32_t) + 1);
}

float FlatForest::finish(float sum) const {
    // TL2cgen's order and types: the trees' float32 sum, then `result += <double base score>` (the
    // sum in double, rounded to float32), then 1 / (1 + exp(-x)) in float32.
    const float margin = static_cast<float>(static_cast<double>(sum) + base_margin_);
    return 1.0f / (1.0f + std::exp(-margin));
}

namespace {

// One step down: (x < threshold) is false for a NaN x, so NaN takes the missing bit. Written as
// integer masks, not a ?: the compiler turns into a branch: a tree's directions are data, and a
// mispredicted branch per node cost more than the whole step.
template <typename Node>
inline uint32_t step(const Node* nodes, uint32_t i, const float* row) {
    const Node& n = nodes[i];
    const float x = row[n.feature & ~kMissingLeft];
    const uint32_t left = static_cast<uint32_t>(x < n.threshold) |
                          (static_cast<uint32_t>(std::isnan(x)) & (n.feature >> 31));
    const uint32_t mask = 0u - left;  // all ones: left
    return ((i + 1) & mask) | (n.right & ~mask);
}

}  // namespace

float FlatForest::predict_row(const float* row) const {
    const Node* nodes = nodes_.data();
    const float* value = leaf_value_.data();
    const size_t n_trees = root_.size();
    float sum = 0.0f;
    size_t t = 0;
    for (; t + kGroup <= n_trees; t += kGroup) {
        uint32_t at[kGroup];
        for (size_t g = 0; g < kGroup; ++g) at[g] = root_[t + g];
        for (unsigned s = group_depth_[t / kGroup]; s > 0; --s)
            for (size_t g = 0; g < kGroup; ++g) at[g] = step(nodes, at[g], row);
        for (size_t g = 0; g < kGroup; ++g) sum += value[at[g]];  // tree order
    }
    for (; t < n_trees; ++t) {
        uint32_t at = root_[t];
        for (unsigned s = depth_[t]; s > 0; --s) at = step(nodes, at, row);
        sum += value[at];
    }
    return finish(sum);
}

void FlatForest::prefetch_tree(size_t t) const {
    // A block walks a tree whose nodes are in L3 or memory once it leaves L2: the next tree's lines
    // are fetched while this one is walked (misses inside a gather serialise it).
    if (t >= root_.size()) return;
    const size_t end = t + 1 < root_.size() ? root_[t + 1] : nodes_.size();
    const char* first = reinterpret_cast<const char*>(nodes_.data() + root_[t]);
    const char* last = reinterpret_cast<const char*>(nodes_.data() + end);
    for (const char* p = first; p < last; p += 64) __builtin_prefetch(p);
    const char* leaves = reinterpret_cast<const char*>(leaf_value_.data() + root_[t]);
    const char* leaves_end = reinterpret_cast<const char*>(leaf_value_.data() + end);
    for (const char* p = leaves; p < leaves_end; p += 64) __builtin_prefetch(p);
}

#if defined(__x86_64__) && defined(__GNUC__)
// The block kernel with AVX2 (chosen at run time; the library itself targets baseline x86-64): eight
// rows step through a tree per instruction, nodes and row values fetched with gathers. Each lane
// adds its row's leaves in tree order in float32, as the scalar kernel does: the same bits.
__attribute__((target("avx2"))) void FlatForest::block_avx2(const float* block, size_t m, float* sum) const {
    const size_t lanes = (m + 7) / 8;
    const int* words = reinterpret_cast<const int*>(nodes_.data());
    const float* value = leaf_value_.data();
    __m256i offset[kBlock / 8];  // each lane's row start; lanes past m repeat the last row
    __m256 acc[kBlock / 8];
    for (size_t g = 0; g < lanes; ++g) {
        alignas(32) int32_t o[8];
        for (size_t l = 0; l < 8; ++l) o[l] = static_cast<int32_t>(std::min(g * 8 + l, m - 1) * num_features_);
        offset[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(o));
        acc[g] = _mm256_setzero_ps();
    }
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i feature_bits = _mm256_set1_epi32(0x7fffffff);
    __m256i at[kBlock / 8];
    for (size_t t = 0; t < root_.size(); ++t) {
        prefetch_tree(t + 1);
        for (size_t g = 0; g < lanes; ++g) at[g] = _mm256_set1_epi32(static_cast<int>(root_[t]));
        for (unsigned s = depth_[t]; s > 0; --s) {
            for (size_t g = 0; g < lanes; ++g) {
                const __m256i word = _mm256_add_epi32(at[g], _mm256_slli_epi32(at[g], 1));  // 3 words a node
                const __m256 threshold = _mm256_i32gather_ps(reinterpret_cast<const float*>(words), word, 4);
                const __m256i right = _mm256_i32gather_epi32(words + 1, word, 4);
                const __m256i feature = _mm256_i32gather_epi32(words + 2, word, 4);
                const __m256i column = _mm256_add_epi32(offset[g], _mm256_and_si256(feature, feature_bits));
                const __m256 x = _mm256_i32gather_ps(block, column, 4);
                const __m256 missing_left = _mm256_and_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q),
                                                          _mm256_castsi256_ps(_mm256_srai_epi32(feature, 31)));
                const __m256 left = _mm256_or_ps(_mm256_cmp_ps(x, threshold, _CMP_LT_OQ), missing_left);
                at[g] = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(right),
                                                             _mm256_castsi256_ps(_mm256_add_epi32(at[g], one)), left));
            }
        }
        for (size_t g = 0; g < lanes; ++g) acc[g] = _mm256_add_ps(acc[g], _mm256_i32gather_ps(value, at[g], 4));
    }
    for (size_t g = 0; g < lanes; ++g) {
        alignas(32) float v[8];
        _mm256_store_ps(v, acc[g]);
        for (size_t l = 0; l < 8 && g * 8 + l < m; ++l) sum[g * 8 + l] = v[l];
    }
}
#endif

void FlatForest::predict_block(const float* rows, size_t n, float* out) const {
#if defined(__x86_64__) && defined(__GNUC__)
    if (avx2_) {
        for (size_t b = 0; b < n; b += kBlock) {
            const size_t m = std::min(kBlock, n - b);
            float sum[kBlock];
            block_avx2(rows + b * num_features_, m, sum);
            for (size_t r = 0; r < m; ++r) out[b + r] = finish(sum[r]);
        }
        return;
    }
#endif
    const Node* nodes = nodes_.data();
    const float* value = leaf_value_.data();
    const size_t nf = num_features_;
    for (size_t b = 0; b < n; b += kBlock) {
        const size_t m = std::min(kBlock, n - b);
        const float* block = rows + b * nf;
        float sum[kBlock] = {};
        uint32_t at[kBlock];
        for (size_t t = 0; t < root_.size(); ++t) {
            prefetch_tree(t + 1);
            const uint32_t root = root_[t];
            for (size_t r = 0; r < m; ++r) at[r] = root;
            for (unsigned s = depth_[t]; s > 0; --s)
                for (size_t r = 0; r < m; ++r) at[r] = step(nodes, at[r], block + r * nf);
            for (size_t r = 0; r < m; ++r) sum[r] += value[at[r]];
        }
        for (size_t r = 0; r < m; ++r) out[b + r] = finish(sum[r]);
    }
}

void FlatForest::predict_rows(const float* rows, size_t n, float* out) const {
    if (n < kBlock / 4) {
        for (size_t i = 0; i < n; ++i) out[i] = predict_row(rows + i * num_features_);
        return;
    }
    predict_block(rows, n, out);
}

}  // namespace libfraud
