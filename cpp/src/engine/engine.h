// The engine behind fraud_engine: the temporal store and the current Model, with the locking and
// the hot swap that fraud.h promises, and the counters a switch reads.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "common/error.h"
#include "common/latency_window.h"
#include "common/rw_lock.h"
#include "engine/decision_log.h"
#include "engine/model.h"
#include "libfraud/fraud.h"
#include "store/state_log.h"
#include "store/temporal_store.h"

namespace libfraud {

// A shadow challenger (fraud.h fraud_engine_set_challenger) and its counters since it was set.
struct Challenger {
    explicit Challenger(std::shared_ptr<const Model> m) : model(std::move(m)) {}
    std::shared_ptr<const Model> model;
    std::atomic<uint64_t> scored{0}, disagreements{0}, failures{0};
    std::atomic<double> abs_diff_sum{0.0};
    LatencyWindow latency;
};

// What serves now: the champion and the challenger scored beside it, replaced together (one atomic
// pointer), so a call never sees a promotion halfway.
struct Serving {
    std::shared_ptr<const Model> champion;
    std::shared_ptr<Challenger> challenger;  // null: none
};

// Where decision records go (fraud.h fraud_engine_set_decision_callback / _set_decision_log).
struct DecisionSinks {
    fraud_decision_fn fn = nullptr;
    void* user_data = nullptr;
    std::shared_ptr<DecisionLog> log;
};

// What one scoring call asks for: scores (score, explain) or outcomes (decide), reasons on request.
struct CallOutputs {
    const char* what = "";              // the C function, for messages
    float* scores = nullptr;            // [n]; null for the decide calls (outcomes hold them)
    const ReasonRequest* reasons = nullptr;
    fraud_outcome* outcomes = nullptr;  // [n]: a decide call (makes decision records)
};

class Engine {
public:
    Engine(const std::string& bundle_dir, const fraud_engine_params& params);

    // The model serving now; callers keep the shared_ptr for the length of a request, so a swap
    // never frees a model under a running score.
    std::shared_ptr<const Model> model() const { return serving()->champion; }
    std::shared_ptr<const Serving> serving() const { return std::atomic_load(&serving_); }

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
    // Every scoring call: with a challenger set, each event is scored by both in one pass; a
    // decide call's records go to the sinks after the lock is released.
    void score(const fraud_event* events, size_t n, const CallOutputs& out) const;
    void score_and_ingest(const fraud_event* events, size_t n, const CallOutputs& out);
    // Model::neighbours for one event against the store as it stands (validated, shared lock).
    size_t neighbours(const fraud_event& event, size_t m, fraud_neighbour* out) const;
    // Per-feature contributions of caller rows (Explainer::contributions), n * (F + 1) doubles.
    void contributions(const float* rows, size_t n, double* out) const;
    void features(const fraud_event* events, size_t n, float* rows) const;
    void label(const fraud_label* labels, size_t n);
    void score_features(const float* rows, size_t n, float* scores) const;
    void store_size(uint64_t* n, int64_t* watermark_ms) const;
    void swap_bundle(const std::string& bundle_dir, const fraud_engine_params& params);
    // Empty bundle_dir: clear. Loaded off the hot path; must serve from this store.
    void set_challenger(const std::string& bundle_dir, const fraud_engine_params& params);
    void promote_challenger();
    void set_decision_callback(fraud_decision_fn fn, void* user_data);
    void set_decision_log(const std::string& path);  // empty: close
    void snapshot();
    void stats(fraud_engine_stats* out) const;
    // fraud_engine_drift: the serving model's drift entries (NO_DRIFT_REFERENCE without a reference).
    size_t drift(fraud_drift* out, size_t capacity) const;

private:
    void count_rejection(const FraudError& e, size_t n) const;
    void count_scored(size_t n, uint64_t ns) const;
    void append_validated(const fraud_event* events, size_t n, const Model* scorer, float* scores,
                          const ReasonRequest* reasons);
    void append_scored(const fraud_event* events, size_t n, const Model* scorer, const ScoreOutputs& out,
                       ShadowPass* shadow);
    class Pass;  // one call's outputs, shadow and records (engine.cpp)
    void finish_call(Pass& pass, const fraud_event* events, size_t n, uint64_t ns) const;
    void replace_sinks(const std::function<void(DecisionSinks&)>& change);
    // validate_for_append, then the max_ahead_ms bound; counted as a rejection when it fails.
    void validate_append(const fraud_event* events, size_t n) const;

    std::shared_ptr<const Serving> serving_;  // read and replaced with std::atomic_load/store
    std::shared_ptr<const DecisionSinks> sinks_;  // likewise; null: none
    std::mutex control_;  // one swap / challenger / sink change at a time (read, then replace)
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
    mutable std::atomic<uint64_t> decision_records_{0}, decision_log_errors_{0};
    uint64_t drift_window_events_ = 0;  // the open's, for swaps that leave it 0
};

}  // namespace libfraud
