// The bundle's TreeSHAP tables file (export/BUNDLE.md "explanation"; written by
// export/shap_tables.py): every tree's nodes, flattened, read into memory the core owns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "explain/tree_shap.h"

namespace libfraud {

struct ShapTablesFile {
    std::vector<int64_t> tree_offsets;
    std::vector<int32_t> feature, left, right;
    std::vector<float> threshold;
    std::vector<double> cover, value;
    std::vector<uint8_t> default_left;
    size_t num_features = 0;
    size_t max_depth = 0;
    double expected_value = 0.0;

    // A view of the arrays above: valid while this object lives and is not changed.
    TreeShapTables view() const;
};

// Reads and checks the file: magic, version, sizes that add up to the file's length exactly, then
// tree_shap_validate. Throws FraudError(LOAD_ERROR) naming the file and what is wrong.
ShapTablesFile read_shap_tables(const std::string& path);

}  // namespace libfraud
