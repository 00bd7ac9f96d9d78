// The engine behind fraud_engine: a verified bundle's model, the temporal store and the feature
// code, with the locking that fraud.h promises.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "engine/manifest.h"
#include "engine/tree_library.h"
#include "features/features.h"
#include "libfraud/fraud.h"
#include "store/temporal_store.h"

namespace libfraud {

class Engine {
public:
    // Reads and verifies the bundle (format, checksums) before loading its tree library.
    Engine(const std::string& bundle_dir, const fraud_engine_params& params);

    size_t num_features() const { return features_.size(); }
    const std::vector<std::string>& feature_names() const { return features_.names(); }
    double threshold() const { return manifest_.threshold; }

    void ingest(const fraud_txn* txns, size_t n);
    void score(const fraud_txn* txns, size_t n, float* scores) const;
    void score_and_ingest(const fraud_txn* txns, size_t n, float* scores);
    void features(const fraud_txn* txns, size_t n, float* rows) const;
    void score_features(const float* rows, size_t n, float* scores) const;
    void store_size(uint64_t* n, int64_t* watermark_ms) const;

private:
    float score_one(const fraud_txn& txn) const;  // caller holds the lock

    Manifest manifest_;
    FeatureComputer features_;
    std::unique_ptr<TreeLibrary> trees_;
    TemporalStore store_;
    // Readers (score) share; writers (ingest) are exclusive: a score sees whole ingest calls only.
    mutable std::shared_mutex mutex_;
};

}  // namespace libfraud
