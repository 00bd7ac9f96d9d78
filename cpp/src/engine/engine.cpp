#include "engine/engine.h"

#include <mutex>

#include "common/error.h"
#include "store/validate.h"

namespace libfraud {
namespace {

Manifest verified_manifest(const std::string& bundle_dir) {
    Manifest manifest = read_manifest(bundle_dir);
    verify_artifacts(manifest);  // every checksum before any load: a shared library is code
    return manifest;
}

FeatureComputer checked_features(const Manifest& manifest) {
    FeatureComputer computer(manifest.feature_config);
    if (computer.names() != manifest.feature_order) {
        size_t i = 0;
        while (i < computer.names().size() && i < manifest.feature_order.size() &&
               computer.names()[i] == manifest.feature_order[i])
            ++i;
        const std::string found = i < manifest.feature_order.size() ? manifest.feature_order[i] : "<end>";
        const std::string expected = i < computer.names().size() ? computer.names()[i] : "<end>";
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         "manifest.json: features.order[" + std::to_string(i) + "] is '" + found +
                             "' but this libfraud computes '" + expected + "' there for features.config");
    }
    return computer;
}

// Per-thread scratch: the scoring path allocates only on a thread's first calls.
std::vector<float>& feature_scratch(size_t n) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < n) scratch.resize(n);
    return scratch;
}

}  // namespace

Engine::Engine(const std::string& bundle_dir, const fraud_engine_params& params)
    : manifest_(verified_manifest(bundle_dir)), features_(checked_features(manifest_)) {
    const ArtifactEntry& model = manifest_.artifact(manifest_.model_artifact);
    if (model.target != "tl2cgen-c-shared")
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         "manifest.json: model artifact '" + model.name + "' has target '" +
                             model.target + "'; this libfraud scores with 'tl2cgen-c-shared'");
    trees_ = std::make_unique<TreeLibrary>(manifest_.artifact_path(model));
    if (trees_->num_features() != features_.size())
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         "tree library reads " + std::to_string(trees_->num_features()) +
                             " features but features.order lists " + std::to_string(features_.size()));
    if (params.expected_transactions > 0)
        store_.reserve(static_cast<size_t>(params.expected_transactions));
}

float Engine::score_one(const fraud_txn& txn) const {
    std::vector<float>& row = feature_scratch(features_.size());
    features_.compute(store_, txn, row.data());
    float score = 0.0f;
    trees_->predict_rows(row.data(), 1, &score);
    return score;
}

void Engine::ingest(const fraud_txn* txns, size_t n) {
    std::unique_lock lock(mutex_);
    validate_for_append(store_, txns, n);
    for (size_t i = 0; i < n; ++i) store_.append(txns[i]);
}

void Engine::score(const fraud_txn* txns, size_t n, float* scores) const {
    validate_fields(txns, n);
    std::shared_lock lock(mutex_);
    for (size_t i = 0; i < n; ++i) scores[i] = score_one(txns[i]);
}

void Engine::score_and_ingest(const fraud_txn* txns, size_t n, float* scores) {
    std::unique_lock lock(mutex_);
    validate_for_append(store_, txns, n);
    for (size_t i = 0; i < n; ++i) {
        scores[i] = score_one(txns[i]);
        store_.append(txns[i]);
    }
}

void Engine::features(const fraud_txn* txns, size_t n, float* rows) const {
    validate_fields(txns, n);
    std::shared_lock lock(mutex_);
    for (size_t i = 0; i < n; ++i) features_.compute(store_, txns[i], rows + i * features_.size());
}

void Engine::score_features(const float* rows, size_t n, float* scores) const {
    trees_->predict_rows(rows, n, scores);
}

void Engine::store_size(uint64_t* n, int64_t* watermark_ms) const {
    std::shared_lock lock(mutex_);
    if (n) *n = store_.size();
    if (watermark_ms) *watermark_ms = store_.watermark_ms();
}

}  // namespace libfraud
