#include "explain/explainer.h"

#include "common/error.h"
#include "common/log.h"

#include <utility>

namespace libfraud {
namespace {

// Per-thread buffers, grown to the largest model a thread has explained.
struct ExplainScratch {
    std::vector<double> phi, path, family_sum;
    std::vector<int32_t> family_top;

    void fit(size_t features, size_t path_doubles, size_t families) {
        if (phi.size() < features + 1) phi.resize(features + 1);
        if (path.size() < path_doubles) path.resize(path_doubles);
        if (family_sum.size() < families) {
            family_sum.resize(families);
            family_top.resize(families);
        }
    }
};

ExplainScratch& scratch() {
    thread_local ExplainScratch s;
    return s;
}

}  // namespace

Explainer::Explainer(const std::string& tables_path, const std::string& expected_sha256,
                     const ExplanationSection& section, size_t num_features, size_t table_bytes)
    : Explainer(read_shap_tables(tables_path, expected_sha256), tables_path, section, num_features, table_bytes) {}

Explainer::Explainer(ShapTablesFile tables, const std::string& tables_path, const ExplanationSection& section,
                     size_t num_features, size_t table_bytes)
    : tables_(std::move(tables)),
      view_(tables_.view()),
      families_(section.families),
      feature_family_(section.feature_family),
      num_features_(num_features) {
    if (tables_.num_features != num_features)
        throw FraudError(FRAUD_STATUS_LOAD_ERROR, "TreeSHAP tables " + tables_path + " read " +
                                                      std::to_string(tables_.num_features) +
                                                      " features but the model reads " + std::to_string(num_features));
    fast_ = FastTreeShap::build(view_, table_bytes);
    const size_t need = fast_tree_shap_bytes(view_);
    if (fast_) {
        log(FRAUD_LOG_INFO, "reasons: precomputed TreeSHAP tables, " + std::to_string(need >> 10) + " KiB");
    } else {
        log(FRAUD_LOG_WARN, "reasons: recursive TreeSHAP (slower, same values): the precomputed tables need " +
                                (need == SIZE_MAX ? std::string("a path of more than 31 features")
                                                  : std::to_string(need >> 20) + " MiB") +
                                ", over explain_table_bytes " + std::to_string(table_bytes >> 20) + " MiB");
    }
}

size_t Explainer::scratch_doubles() const {
    return fast_ ? fast_->scratch_size() : tree_shap_scratch_size(view_.max_depth);
}

void Explainer::compute(const float* row, double* phi, double* scratch) const {
    if (fast_) {
        fast_->contributions(row, phi, scratch);
    } else {
        tree_shap(view_, row, phi, scratch);
    }
}

void Explainer::contributions(const float* row, double* phi) const {
    ExplainScratch& s = scratch();
    s.fit(num_features_, scratch_doubles(), 0);
    compute(row, phi, s.path.data());
}

size_t Explainer::reasons(const float* row, size_t k, fraud_reason* out) const {
    ExplainScratch& s = scratch();
    const size_t nf = families_.size();
    s.fit(num_features_, scratch_doubles(), nf);
    double* phi = s.phi.data();
    compute(row, phi, s.path.data());
    double* sum = s.family_sum.data();
    int32_t* top = s.family_top.data();
    for (size_t f = 0; f < nf; ++f) {
        sum[f] = 0;
        top[f] = -1;
    }
    for (size_t i = 0; i < num_features_; ++i) {
        const auto f = static_cast<size_t>(feature_family_[i]);
        sum[f] += phi[i];
        if (top[f] < 0 || phi[i] > phi[top[f]]) top[f] = static_cast<int32_t>(i);
    }
    // Selection of the k largest positive sums: k and the family count are small.
    size_t n = 0;
    for (; n < k; ++n) {
        size_t best = nf;
        for (size_t f = 0; f < nf; ++f) {
            if (top[f] >= 0 && sum[f] > 0 && (best == nf || sum[f] > sum[best])) best = f;
        }
        if (best == nf) break;
        out[n] = fraud_reason{families_[best].code, static_cast<int32_t>(best), sum[best], top[best],
                              row[top[best]]};
        top[best] = -1;  // taken
    }
    return n;
}

}  // namespace libfraud
