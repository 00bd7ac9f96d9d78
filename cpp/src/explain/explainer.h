// Reasons for a score: exact TreeSHAP contributions of the model's features (in the trees' margin,
// log-odds, before any calibration), summed per reason family and ranked. Immutable once built;
// const calls are thread-safe and allocate nothing after a thread's first call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/manifest.h"
#include "explain/fast_tree_shap.h"
#include "explain/shap_file.h"
#include "libfraud/fraud.h"

namespace libfraud {

class Explainer {
public:
    // tables_path: the bundle's artifact, read by read_shap_tables against expected_sha256 (the
    // manifest's); section: its manifest entry (families and the feature -> family map, checked by
    // read_manifest). LOAD_ERROR unless the tables read num_features features. The fast kernel's
    // tables (explain/fast_tree_shap.h) are built when they fit in table_bytes, else every call
    // runs the recursive tree_shap.
    Explainer(const std::string& tables_path, const std::string& expected_sha256, const ExplanationSection& section,
              size_t num_features, size_t table_bytes);
    // The same from tables already read by read_shap_tables (the engine reads the bundle's node
    // tables once for the trees and the reasons); tables_path names them in messages.
    Explainer(ShapTablesFile tables, const std::string& tables_path, const ExplanationSection& section,
              size_t num_features, size_t table_bytes);

    // Which kernel serves: "tables" (FastTreeShap, and the memory it holds) or "recursive".
    const char* kernel() const { return fast_ ? "tables" : "recursive"; }
    size_t table_bytes() const { return fast_ ? fast_->bytes() : 0; }

    size_t num_features() const { return num_features_; }
    size_t num_families() const { return families_.size(); }
    const ReasonFamily& family(size_t i) const { return families_[i]; }
    double expected_value() const { return tables_.expected_value; }

    // phi[num_features + 1]: each feature's contribution to the row's margin, then the expected
    // value (the margin of the average training row); they sum to the row's margin.
    void contributions(const float* row, double* phi) const;

    // The families whose features raised the margin (summed contribution > 0), largest first (ties:
    // lower family index first), at most k, into out[k]; returns how many. k in 1..num_families()
    // (the caller checks).
    size_t reasons(const float* row, size_t k, fraud_reason* out) const;

private:
    void compute(const float* row, double* phi, double* scratch) const;
    size_t scratch_doubles() const;

    ShapTablesFile tables_;
    TreeShapTables view_;
    std::unique_ptr<FastTreeShap> fast_;
    std::vector<ReasonFamily> families_;
    std::vector<int32_t> feature_family_;
    size_t num_features_;
};

}  // namespace libfraud
