// The data-driven tree predictor: every tree's nodes packed into one array built in memory from the
// bundle's node tables (explain/shap_file.h, export/BUNDLE.md "Node tables"), walked by a loop whose
// code stays a few hundred bytes whatever the model's size. The compiled if-else library
// (engine/tree_library.h) overflows the instruction cache from a few hundred trees; this does not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "explain/tree_shap.h"

namespace libfraud {

// Immutable once built; const calls are thread-safe and allocate nothing.
class FlatForest {
public:
    // Rows per block of the batch kernel: 64 rows' indices and sums stay in registers/L1 while one
    // tree (a few KiB) is walked for all of them.
    static constexpr size_t kBlock = 64;
    // Trees walked side by side for one row: independent chains of loads the CPU overlaps.
    static constexpr size_t kGroup = 8;

    // Copies the trees of `tables` (which must have passed tree_shap_validate) into the packed
    // layout; base_margin: the booster's base score in log-odds, added after the trees' sum.
    FlatForest(const TreeShapTables& tables, double base_margin);

    size_t num_features() const { return num_features_; }
    size_t num_trees() const { return root_.size(); }
    size_t num_nodes() const { return nodes_.size(); }
    size_t bytes() const;

    // The probability of one row of num_features() floats (NaN = missing): trees walked kGroup at a
    // time, leaves added in tree order in float32, then the base margin (in double, rounded to
    // float32, as TL2cgen's code does) and the sigmoid in float32.
    float predict_row(const float* row) const;
    // out[i] for rows[i * num_features() ...]: predict_row's arithmetic (same sums, bit for bit),
    // kBlock rows at a time through each tree (with AVX2 when the CPU has it).
    void predict_block(const float* rows, size_t n, float* out) const;
    // predict_row for n < kBlock / 4 (a block would walk mostly empty slots), else predict_block.
    void predict_rows(const float* rows, size_t n, float* out) const;

private:
    // 12 bytes. A split goes to the next node (its left child, laid out depth-first) when
    // x < threshold, or when x is NaN and the missing bit is set; else to `right`. A leaf has
    // threshold NaN, the missing bit clear and right = itself, so walking past it stays on it: every
    // tree is walked exactly depth_ steps, without a branch on "is this a leaf".
    struct Node {
        float threshold;
        uint32_t right;
        uint32_t feature;  // bit 31: missing goes left
    };
    static_assert(sizeof(Node) == 12, "Node is packed to 12 bytes");

    float finish(float sum) const;
    void prefetch_tree(size_t t) const;
    // sum[r] = the leaves of row r of block (m <= kBlock rows), eight rows per AVX2 instruction.
    void block_avx2(const float* block, size_t m, float* sum) const;

    std::vector<Node> nodes_;
    std::vector<float> leaf_value_;    // per node; read only at the leaf a walk ends on
    std::vector<uint32_t> root_;       // per tree
    std::vector<uint8_t> depth_;       // per tree: its deepest leaf's depth
    std::vector<uint8_t> group_depth_; // per kGroup trees: their deepest
    size_t num_features_ = 0;
    double base_margin_ = 0.0;
    bool avx2_ = false;  // the CPU has AVX2 (checked at run time): predict_block uses block_avx2
};

}  // namespace libfraud
