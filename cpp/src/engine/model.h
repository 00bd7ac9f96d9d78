// A loaded, verified bundle: features, optional GNN stage, compiled trees. Immutable once built,
// so requests in flight keep using it (by shared_ptr) while a hot swap installs the next one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend_registry.h"
#include "engine/decision_policy.h"
#include "engine/drift.h"
#include "engine/manifest.h"
#include "engine/tree_predictor.h"
#include "explain/explainer.h"
#include "features/features.h"
#include "libfraud/fraud.h"
#include "sampler/sampler.h"
#include "store/temporal_store.h"

namespace libfraud {

// What a scoring call asks for besides the score: reasons (explain/explainer.h) for events scoring
// at least min_score, k per event, written at reasons + i * k with their count at counts[i].
struct ReasonRequest {
    size_t k = 0;
    float min_score = 0.0f;
    fraud_reason* reasons = nullptr;
    size_t* counts = nullptr;
};

// Where one model's pass writes (Model::score_batch): the served scores and, on request, reasons
// and the decision policy's outcome, all from the row each score came from.
struct ScoreOutputs {
    float* scores = nullptr;                       // [n]
    const ReasonRequest* reasons = nullptr;        // null: no reasons
    DecisionPolicy::Outcome* decisions = nullptr;  // [n]; null: no decisions
};

class Model;

// A second model scored in the same pass as the first (a shadow challenger): event i is scored by
// both against the same store state; its own working memory, so neither overwrites the other's
// rows mid-block. elapsed_ns: the time its share of the pass took (added to).
// A shadow that throws (a GNN backend's run) never fails the pass: its scores for the rest of the
// pass are NaN, its decisions Allow, and `error` says what happened.
struct ShadowPass {
    const Model* model = nullptr;
    ScoreOutputs out;
    uint64_t elapsed_ns = 0;
    std::string error;  // empty: no failure
};

struct ModelScratch;  // a thread's buffers for one model's pass (model.cpp)

// The GNN stage: sample the neighbourhood, run the backend, append [logit, embedding] to the row.
struct GnnStage {
    Sampler sampler;
    std::unique_ptr<GnnModel> model;
    std::string backend;
    size_t embedding_dim;
};

// Test-only (tests/test_sealed_artifacts.py, through _core._set_after_verify_hook): called with
// the bundle directory after a bundle verifies and before any of its artifacts is read again, so a
// test can alter a file in exactly the window a race would. Empty (the default): nothing runs.
using AfterVerifyHook = std::function<void(const std::string& bundle_dir)>;
void set_after_verify_hook_for_testing(AfterVerifyHook hook);

class Model {
public:
    // Reads and verifies the bundle (format, checksums) before loading any of its artifacts. With
    // `store`, the model must be able to serve from that store (same schema, its history fields):
    // BUNDLE_INVALID naming the difference otherwise.
    Model(const std::string& bundle_dir, const fraud_engine_params& params, const StoreLayout* store = nullptr);

    const std::string& bundle_dir() const { return manifest_.bundle_dir; }
    const Schema& schema() const { return schema_; }
    // The layout of a store this model serves from (a new engine's store).
    const StoreLayout& store_layout() const { return layout_; }
    size_t num_features() const { return manifest_.feature_order.size(); }
    const std::vector<std::string>& feature_names() const { return manifest_.feature_order; }
    // On the calibrated scale when the bundle carries a calibrator (BUNDLE.md "calibration").
    double threshold() const { return manifest_.threshold; }
    const std::string& gnn_backend() const { return gnn_backend_; }
    // Score bands and rules (the manifest's `decision` section; bands from the threshold without one).
    const DecisionPolicy& decision_policy() const { return decision_; }

    // The model's input row for txn against the store (the caller holds the store's read lock).
    void row(const TemporalStore& store, const fraud_event& event, float* out) const;
    void score_rows(const float* rows, size_t n, float* scores) const;
    // scores[i] = the trees' probability for event i's row, then the bundle's calibration when it
    // has one (every score the C API returns passes here); with `reasons`, event i is also
    // explained from the same row. Events in order, where event i sees
    // the store as it stands after after_each(j) ran for every j < i (score_and_ingest appends
    // there; an empty function: the store as it is). Rows and neighbourhoods are computed event by
    // event, the GNN and the trees run once per block of events: the same scores, bitwise, for
    // backends whose rows do not depend on the batch (native; the trees always).
    void score_batch(const TemporalStore& store, const fraud_event* events, size_t n, float* scores,
                     const ReasonRequest* reasons, const std::function<void(size_t)>& after_each) const;
    // The same pass writing `out`, with `shadow` (when set) scored event by event alongside: its
    // event i sees the store exactly as this model's does (before after_each(i)).
    void score_batch(const TemporalStore& store, const fraud_event* events, size_t n, const ScoreOutputs& out,
                     const std::function<void(size_t)>& after_each, ShadowPass* shadow = nullptr) const;
    // Lower-case hex SHA-256 of manifest.json's bytes (computed once at load): which bundle decided.
    const std::string& manifest_sha256() const { return manifest_sha256_; }

    // The sampled neighbours that raised the score most (fraud.h fraud_engine_explain_neighbours):
    // each left out once, the GNN and trees rerun; up to m, largest log-odds fall first. The caller
    // holds the store's read lock; NO_EXPLANATION for a bundle without a GNN.
    size_t neighbours(const TemporalStore& store, const fraud_event& event, size_t m, fraud_neighbour* out) const;

    // Null for a bundle without explanation data.
    const Explainer* explainer() const { return explainer_.get(); }
    // The trees' predictor (which layout serves a call of n rows: trees().layout_for(n)).
    const TreePredictor& trees() const { return *trees_; }
    // The explainer, or NO_EXPLANATION naming the bundle; with check_k, also INVALID_ARGUMENT
    // unless k is 1..the family count. `what` names the calling function in the message.
    const Explainer& require_explainer(const char* what, bool check_k = false, size_t k = 0) const;

    // The drift monitor of this model's traffic (engine/drift.h); null for a bundle without a
    // `drift` section. Fed by score_batch (every scored event), so a swap starts a fresh one.
    const DriftMonitor* drift() const { return drift_.get(); }

private:
    // The GNN on `batch` neighbourhoods: logits [batch], embeddings [batch, D].
    void run_gnn(const NeighbourhoodBuffers& buffers, size_t batch, float* logits, float* embeddings) const;
    void run_gnn(const NeighbourhoodBuffers& buffers, float* gnn_out) const;
    float finish_score(float p, const float* row, const ReasonRequest* reasons, size_t index) const;
    // A pass in three steps, so that two models can share one: room for `count` events; event j's
    // row and neighbourhood into slot j; then the GNN, trees and outputs for the block's m events.
    void fit_scratch(ModelScratch& s, size_t count) const;
    void stage(const TemporalStore& store, const fraud_event& event, ModelScratch& s, size_t j) const;
    void finish_block(ModelScratch& s, const fraud_event* events, size_t start, size_t m,
                      const ScoreOutputs& out) const;

    Manifest manifest_;
    Schema schema_;
    FeaturePlan features_;
    StoreLayout layout_;
    std::unique_ptr<GnnStage> gnn_;
    std::string gnn_backend_ = "none";
    std::unique_ptr<TreePredictor> trees_;
    std::unique_ptr<Explainer> explainer_;
    DecisionPolicy decision_;
    std::string manifest_sha256_;
    std::unique_ptr<DriftMonitor> drift_;
};

}  // namespace libfraud
