// Exact path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2) over flat tree tables built by
// export/shap_tables.py from an XGBoost booster: per-feature contributions in margin (log-odds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace libfraud {

// A non-owning view of every tree's nodes, flattened: node ids are global (tree t's nodes are
// [tree_offsets[t], tree_offsets[t + 1]), its root first); a leaf has left == -1. The caller owns
// the arrays and keeps them alive and unchanged while the view is used; const use is thread-safe.
struct TreeShapTables {
    const int32_t* feature = nullptr;      // split feature per node (ignored at leaves)
    const float* threshold = nullptr;      // go left when x < threshold (XGBoost's float32 rule)
    const int32_t* left = nullptr;         // child ids, global; -1 at leaves
    const int32_t* right = nullptr;
    const uint8_t* default_left = nullptr; // 1: a missing value (NaN) goes left
    const double* cover = nullptr;         // training hessian sum reaching the node (> 0)
    const double* value = nullptr;         // leaf output, margin (ignored at internal nodes)
    const int64_t* tree_offsets = nullptr; // n_trees + 1 entries, tree_offsets[0] == 0
    size_t n_trees = 0;
    size_t num_features = 0;
    size_t max_depth = 0;        // the deepest leaf's depth (root = 0): sizes the scratch
    double expected_value = 0.0; // base margin + every tree's cover-weighted mean leaf value
};

// Throws FraudError(FRAUD_STATUS_INVALID_ARGUMENT, what is wrong) unless each tree is a tree whose
// children are later nodes of it (one parent each), split features are < num_features, split covers
// are > 0 (leaf covers >= 0) and no node is deeper than max_depth: tree_shap trusts them after this.
void tree_shap_validate(const TreeShapTables& tables, size_t n_nodes);

// Doubles of scratch tree_shap needs for trees of max_depth: the path for each recursion level.
size_t tree_shap_scratch_size(size_t max_depth);

// phi[num_features + 1] = the contributions of one row x[num_features] (NaN = missing), the last
// being expected_value; they sum to the row's margin. Overwrites phi. scratch:
// tree_shap_scratch_size(max_depth) doubles, so a call allocates nothing.
void tree_shap(const TreeShapTables& tables, const float* x, double* phi, double* scratch);

}  // namespace libfraud
