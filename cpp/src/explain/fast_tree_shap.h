// Exact path-dependent TreeSHAP from per-leaf precomputed tables (after Fast TreeSHAP v2, Yang
// 2021): the same values as tree_shap, an order of magnitude faster per row, for memory built once.
//
// Per leaf, with D distinct features on its path (zero fractions z_k, value v): x only matters
// through which of them are "cold" (x fails one of the feature's conditions on the path). For a
// cold set P (H the hot rest) every cold feature gets t[P] = -v * prod_{k in P} z_k * G(H), with
// G(H) = sum_{S subset of H} w(|S|, D) * prod_{k in H \ S} z_k, w(s, D) = s! (D - s - 1)! / D!,
// and a hot feature k gets -(1 - z_k) / z_k * t[P + k]. So a leaf stores 2^D numbers and D scales,
// and a row costs one comparison per split and D multiply-adds per leaf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "explain/tree_shap.h"

namespace libfraud {

class FastTreeShap {
public:
    // Precomputes from tables that passed tree_shap_validate. Returns nullptr when the
    // precomputed data would exceed max_bytes (the caller then falls back to tree_shap), when
    // a path has more than 31 distinct features (fast_tree_shap_bytes is then SIZE_MAX), or when
    // a leaf value is beyond what float32 tables carry (|v| > 1e30 or 0 < |v| < 1e-30). Keeps its
    // own copies of what it needs: the view may die after build().
    static std::unique_ptr<FastTreeShap> build(const TreeShapTables& tables, size_t max_bytes);

    size_t bytes() const;  // memory held
    size_t num_features() const { return num_features_; }
    size_t scratch_size() const { return scratch_doubles_; }  // doubles contributions() needs

    // Same contract as tree_shap: phi[num_features + 1] overwritten, the last expected_value; the
    // same values up to float32 rounding of the tables (see fast_tree_shap.cpp); no allocation;
    // const and thread-safe (scratch is the caller's, one per thread).
    void contributions(const float* x, double* phi, double* scratch) const;

private:
    // A split: go left when x[feature] < threshold (NaN: default_left). Children are ids into the
    // tree's cold-set array: its splits first (in preorder, root 0), then its leaves.
    struct Split {
        float threshold;
        int32_t feature;
        uint32_t left;
        uint32_t right;
        uint8_t slot;  // this feature's position among the distinct features on the path here
        uint8_t default_left;
    };
    // A leaf's 2^n_slots table entries start at table; its slots (feature, scale) at slot.
    struct Leaf {
        uint64_t table;
        uint64_t slot;
        // Slots whose zero fraction is (almost) 0: the leaf adds nothing when one of them is cold.
        uint32_t tiny_mask;
        uint32_t n_slots;
    };
    struct Tree {
        uint64_t split_begin;
        uint64_t leaf_begin;
        uint32_t n_splits;
        uint32_t n_leaves;
    };

    FastTreeShap() = default;
    template <bool kPrefetch>
    void accumulate(const float* x, double* phi, uint32_t* cold) const;

    size_t num_features_ = 0;
    double expected_value_ = 0;
    size_t scratch_doubles_ = 0;
    std::vector<Tree> trees_;           // trees with at least one split
    std::vector<Split> splits_;
    std::vector<Leaf> leaves_;
    std::vector<int32_t> slot_feature_;
    std::vector<float> slot_scale_;     // -(1 - z) / z, or -1 for a tiny slot
    std::vector<float> table_;

    friend class FastTreeShapBuilder;
};

// Bytes build() would need for these tables (so a caller can report or decide before building);
// SIZE_MAX when they cannot be built at all (a path with more than 31 distinct features).
size_t fast_tree_shap_bytes(const TreeShapTables& tables);

}  // namespace libfraud
