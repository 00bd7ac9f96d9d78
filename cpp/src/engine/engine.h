// The engine behind fraud_engine: the temporal store and the current Model, with the locking and
// the hot swap that fraud.h promises, and the counters a switch reads.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <shared_mutex>
#include <string>

#include "common/error.h"
#include "common/latency_window.h"
#include "common/rw_lock.h"
#include "engine/model.h"
#include "libfraud/fraud.h"
#include "store/state_log.h"
#include "store/temporal_store.h"

namespace libfraud {

class Engine {
public:
    Engine(const std::string& bundle_dir, const fraud_engine_params& params);

    // The model serving now; callers keep the shared_ptr for the length of a request, so a swap
    // never frees a model under a running score.
    std::shared_ptr<const Model> model() const { return std::atomic_load(&model_); }

    // The schema never changes while the engine is open (a swap must keep it).
    const Schema& schema() const { return store_.schema(); }
    // Whether fraud_txn (the payments preset's record) converts to this engine's events.
    bool payments_layout() const { return payments_layout_; }
    void ingest(const fraud_event* events, size_t n);
    // With `reasons` (k, min_score and buffers; Model::score_batch), each event is also explained from
    // the row it was scored on; the request is checked against the serving model before anything
    // is scored or stored.
    void score(const fraud_event* events, size_t n, float* scores, const ReasonRequest* reasons = nullptr) const;
    void score_and_ingest(const fraud_event* events, size_t n, float* scores,
                          const ReasonRequest* reasons = nullptr);
    // Model::neighbours for one event against the store as it stands (validated, shared lock).
    size_t neighbours(const fraud_event& event, size_t m, fraud_neighbour* out) const;
    // Per-feature contributions of caller rows (Explainer::contributions), n * (F + 1) doubles.
    void contributions(const float* rows, size_t n, double* out) const;
    void features(const fraud_event* events, size_t n, float* rows) const;
    void label(const fraud_label* labels, size_t n);
    void score_features(const float* rows, size_t n, float* scores) const;
    void store_size(uint64_t* n, int64_t* watermark_ms) const;
    void swap_bundle(const std::string& bundle_dir, const fraud_engine_params& params);
    void snapshot();
    void stats(fraud_engine_stats* out) const;
    // fraud_engine_drift: the serving model's drift entries (NO_DRIFT_REFERENCE without a reference).
    size_t drift(fraud_drift* out, size_t capacity) const;

private:
    void count_rejection(const FraudError& e, size_t n) const;
    void count_scored(size_t n, uint64_t ns) const;
    void append_validated(const fraud_event* events, size_t n, const Model* scorer, float* scores,
                          const ReasonRequest* reasons);
    // validate_for_append, then the max_ahead_ms bound; counted as a rejection when it fails.
    void validate_append(const fraud_event* events, size_t n) const;

    std::shared_ptr<const Model> model_;  // read and replaced with std::atomic_load/store
    TemporalStore store_;
    bool payments_layout_ = false;
    std::string state_dir_;              // empty: memory only
    int64_t max_ahead_ms_ = 0;           // 0: no bound (fraud.h)
    std::unique_ptr<StateLog> log_;      // every acknowledged ingest is here before the call returns
    // Readers (score) share; writers (ingest) are exclusive: a score sees whole ingest calls only.
    // Writer-preferring, so a steady stream of scores never starves ingestion.
    mutable RwLock mutex_;

    mutable std::atomic<uint64_t> scored_{0}, ingested_{0}, rejected_{0}, swaps_{0}, swap_failures_{0};
    std::atomic<uint64_t> labels_applied_{0}, labels_rejected_{0};
    mutable std::array<std::atomic<uint64_t>, 16> rejected_by_status_{};
    mutable LatencyWindow latency_;
    uint64_t drift_window_events_ = 0;  // the open's, for swaps that leave it 0
};

}  // namespace libfraud
