// The engine behind fraud_engine: a verified bundle's models, the temporal store, the feature code
// and (for GNN bundles) the sampler and a GNN backend, with the locking that fraud.h promises.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "backends/backend_registry.h"
#include "engine/manifest.h"
#include "engine/tree_library.h"
#include "features/features.h"
#include "libfraud/fraud.h"
#include "sampler/sampler.h"
#include "store/temporal_store.h"

namespace libfraud {

// The GNN stage: sample the neighbourhood, run the backend, append [logit, embedding] to the row.
struct GnnStage {
    Sampler sampler;
    std::unique_ptr<GnnModel> model;
    std::string backend;
    size_t embedding_dim;
};

class Engine {
public:
    // Reads and verifies the bundle (format, checksums) before loading any of its artifacts.
    Engine(const std::string& bundle_dir, const fraud_engine_params& params);

    size_t num_features() const { return manifest_.feature_order.size(); }
    const std::vector<std::string>& feature_names() const { return manifest_.feature_order; }
    double threshold() const { return manifest_.threshold; }
    const std::string& gnn_backend() const { return gnn_backend_; }

    void ingest(const fraud_txn* txns, size_t n);
    void score(const fraud_txn* txns, size_t n, float* scores) const;
    void score_and_ingest(const fraud_txn* txns, size_t n, float* scores);
    void features(const fraud_txn* txns, size_t n, float* rows) const;
    void score_features(const float* rows, size_t n, float* scores) const;
    void store_size(uint64_t* n, int64_t* watermark_ms) const;

private:
    void model_row(const fraud_txn& txn, float* row) const;  // caller holds the lock
    float score_one(const fraud_txn& txn) const;             // caller holds the lock

    Manifest manifest_;
    FeatureComputer features_;
    std::unique_ptr<GnnStage> gnn_;
    std::string gnn_backend_ = "none";
    std::unique_ptr<TreeLibrary> trees_;
    TemporalStore store_;
    // Readers (score) share; writers (ingest) are exclusive: a score sees whole ingest calls only.
    mutable std::shared_mutex mutex_;
};

}  // namespace libfraud
