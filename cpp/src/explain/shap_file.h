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

// Reads the file once through a sealed copy (engine/sealed_file.h) whose sha256 must be
// expected_sha256 (the manifest's; empty: no check), else FraudError(BUNDLE_CHECKSUM), and checks
// those very bytes: magic, version, sizes that add up to their length exactly, then
// tree_shap_validate. Throws FraudError(LOAD_ERROR) naming the file and what is wrong.
ShapTablesFile read_shap_tables(const std::string& path, const std::string& expected_sha256 = "");

}  // namespace libfraud
