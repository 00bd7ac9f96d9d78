// Trees grown by hand for the TreeSHAP tests, in the loader's own owning struct
// (explain/shap_file.h), so the kernels see exactly what a bundle's file gives them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "explain/shap_file.h"

namespace libfraud {

struct ForestTables : ShapTablesFile {
    ForestTables() { tree_offsets = {0}; }

    // A new leaf of cover c at depth (root 0): value 0, no split yet; its id.
    int32_t add_node(size_t depth, double c) {
        const auto id = static_cast<int32_t>(feature.size());
        feature.push_back(0);
        threshold.push_back(0);
        left.push_back(-1);
        right.push_back(-1);
        default_left.push_back(0);
        cover.push_back(c);
        value.push_back(0);
        max_depth = std::max(max_depth, depth);
        return id;
    }

    void end_tree() { tree_offsets.push_back(static_cast<int64_t>(feature.size())); }

    TreeShapTables tables(size_t features, double expected) const {
        TreeShapTables t = view();
        t.num_features = features;
        t.expected_value = expected;
        return t;
    }
};

}  // namespace libfraud
