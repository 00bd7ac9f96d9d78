#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "store/validate.h"

namespace libfraud {
namespace {

uint64_t now_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

bool is_transaction_refusal(fraud_status s) {
    return s == FRAUD_STATUS_INVALID_TRANSACTION || s == FRAUD_STATUS_OUT_OF_ORDER ||
           s == FRAUD_STATUS_DUPLICATE_TRANSACTION || s == FRAUD_STATUS_OUT_OF_RETENTION;
}

bool is_label_refusal(fraud_status s) {
    return s == FRAUD_STATUS_UNKNOWN_EVENT || s == FRAUD_STATUS_INVALID_LABEL || s == FRAUD_STATUS_LABEL_CONFLICT;
}

// Caller rows (NaN = missing) before any is scored: +/-inf is refused, as in training, in the
// compiler's parity and in the event validator; the compiled trees would route it as a number.
void check_feature_rows(const float* rows, size_t n, const Model& model, const char* function) {
    const size_t nf = model.num_features();
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < nf; ++j) {
            const float v = rows[i * nf + j];
            if (std::isinf(v))
                throw FraudError(FRAUD_STATUS_INVALID_TRANSACTION,
                                 std::string(function) + ": row " + std::to_string(i) + ", feature " +
                                     std::to_string(j) + " (" + model.feature_names()[j] + "): is " +
                                     (v > 0 ? "+inf" : "-inf") + " (NaN = missing; +/-inf is refused)");
        }
    }
}

}  // namespace

namespace {

StoreConfig store_config(const fraud_engine_params& params) {
    if (params.retention_ms < 0)
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "retention_ms must be >= 0 (0 = keep all), got " + std::to_string(params.retention_ms));
    StoreConfig config;
    config.retention_ms = params.retention_ms;
    config.max_history_per_entity = params.max_history_per_entity;
    return config;
}

}  // namespace

Engine::Engine(const std::string& bundle_dir, const fraud_engine_params& params)
    : serving_(std::make_shared<const Serving>(Serving{std::make_shared<const Model>(bundle_dir, params), nullptr})),
      store_(serving_->champion->store_layout(), store_config(params)),
      payments_layout_(is_payments_layout(store_.schema())) {
    if (params.max_ahead_ms < 0)
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "max_ahead_ms must be >= 0 (0 = no bound), got " + std::to_string(params.max_ahead_ms));
    max_ahead_ms_ = params.max_ahead_ms;
    drift_window_events_ = params.drift_window_events;
    if (params.expected_transactions > 0) store_.reserve(static_cast<size_t>(params.expected_transactions));
    if (params.state_dir && params.state_dir[0]) {
        state_dir_ = params.state_dir;
        // Restore first (snapshot, then the log's acknowledged batches), then reopen the log for appending.
        Recovery recovery;
        recovery.quarantine_corrupt_tail = params.quarantine_corrupt_log_tail != 0;
        const RestoreStats restored = restore_state(state_dir_, store_, recovery);
        log_ = StateLog::open(state_dir_, params.fsync_every_ingest != 0, store_, recovery);
        log(FRAUD_LOG_INFO, "restored " + std::to_string(store_.size()) + " transactions from " + state_dir_ +
                                " (snapshot: " + std::to_string(restored.snapshot_transactions) +
                                ", log: " + std::to_string(restored.log_transactions) + ", torn tail bytes dropped: " +
                                std::to_string(restored.torn_tail_bytes) + ", corrupt tail bytes quarantined: " +
                                std::to_string(restored.corrupt_tail_bytes) + ")");
    }
    log(FRAUD_LOG_INFO, "opened bundle " + bundle_dir + " (GNN backend: " + serving_->champion->gnn_backend() + ")");
}

// Caller holds the exclusive lock and has validated the batch. Logged before it is applied, so an
// acknowledged batch is always on disk; scored one by one when scorer is set (score, then store).
void Engine::append_validated(const fraud_event* txns, size_t n, const Model* scorer, float* scores,
                              const ReasonRequest* reasons) {
    ScoreOutputs out;
    out.scores = scores;
    out.reasons = reasons;
    append_scored(txns, n, scorer, out, nullptr);
}

void Engine::append_scored(const fraud_event* txns, size_t n, const Model* scorer, const ScoreOutputs& out,
                           ShadowPass* shadow) {
    if (log_) log_->append(txns, n);
    if (scorer) {
        scorer->score_batch(store_, txns, n, out, [&](size_t i) { store_.append(txns[i]); }, shadow);
    } else {
        for (size_t i = 0; i < n; ++i) store_.append(txns[i]);
    }
    ingested_.fetch_add(n, std::memory_order_relaxed);
}

void Engine::validate_append(const fraud_event* txns, size_t n) const {
    try {
        validate_for_append(store_, txns, n);
        if (max_ahead_ms_ == 0) return;
        const int64_t clock_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
        const int64_t base = std::max(store_.watermark_ms(), clock_ms);
        // Saturating: base + max_ahead may pass INT64_MAX.
        const int64_t bound = base > INT64_MAX - max_ahead_ms_ ? INT64_MAX : base + max_ahead_ms_;
        for (size_t i = 0; i < n; ++i) {
            if (txns[i].time_ms > bound)
                throw FraudError(FRAUD_STATUS_INVALID_TRANSACTION,
                                 "event " + std::to_string(i) + " (event_id " + std::to_string(txns[i].event_id) +
                                     "): time_ms " + std::to_string(txns[i].time_ms) + " is more than max_ahead_ms " +
                                     std::to_string(max_ahead_ms_) + " ahead of the store's watermark " +
                                     std::to_string(store_.watermark_ms()) + " and the clock " +
                                     std::to_string(clock_ms) + " (microseconds sent as milliseconds?)");
        }
    } catch (const FraudError& e) {
        count_rejection(e, n);
        throw;
    }
}

void Engine::count_rejection(const FraudError& e, size_t n) const {
    if (!is_transaction_refusal(e.status())) return;
    rejected_.fetch_add(n, std::memory_order_relaxed);
    rejected_by_status_[static_cast<size_t>(e.status()) % rejected_by_status_.size()].fetch_add(
        n, std::memory_order_relaxed);
}

void Engine::count_scored(size_t n, uint64_t ns) const {
    if (n == 0) return;
    scored_.fetch_add(n, std::memory_order_relaxed);
    latency_.record(ns / n);
}

void Engine::ingest(const fraud_event* txns, size_t n) {
    std::unique_lock lock(mutex_);
    validate_append(txns, n);
    append_validated(txns, n, nullptr, nullptr, nullptr);
}

namespace {

// A thread's buffers for the outputs a call does not provide (a decide call's scores, decisions,
// a challenger's) and its decision records: allocated on the thread's largest call only.
struct CallBuffers {
    std::vector<float> scores, shadow_scores;
    std::vector<DecisionPolicy::Outcome> decisions, shadow_decisions;
    std::vector<fraud_decision_record> records;
};

CallBuffers& call_buffers() {
    thread_local CallBuffers b;
    return b;
}

template <class T>
T* room(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
}

// Set while this thread runs a decision callback: its records live in this thread's buffers, so a
// decide call from inside it is refused rather than overwriting them.
thread_local bool t_in_decision_callback = false;

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void add_double(std::atomic<double>& a, double v) {
    double cur = a.load(std::memory_order_relaxed);
    while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
    }
}

}  // namespace

// One scoring call: the pair that serves it (kept alive for the whole call, callback included),
// where the champion's and the challenger's outputs go, checked before anything is scored.
class Engine::Pass {
public:
    Pass(std::shared_ptr<const Serving> serving, size_t n, const CallOutputs& call)
        : serving(std::move(serving)), call(call) {
        const Model& champion = *this->serving->champion;
        if (call.reasons) champion.require_explainer(call.what, true, call.reasons->k);
        if (call.outcomes && t_in_decision_callback)
            throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                             std::string(call.what) + ": called from inside a decision callback (fraud.h: the "
                                                      "callback must not call the engine's decide functions)");
        CallBuffers& b = call_buffers();
        const Challenger* challenger = this->serving->challenger.get();
        out.scores = call.scores ? call.scores : room(b.scores, n);
        out.reasons = call.reasons;
        if (call.outcomes || challenger) out.decisions = room(b.decisions, n);
        if (challenger) {
            shadow.model = challenger->model.get();
            shadow.out.scores = room(b.shadow_scores, n);
            shadow.out.decisions = room(b.shadow_decisions, n);
        }
    }
    const Model& champion() const { return *serving->champion; }
    ShadowPass* shadow_pass() { return shadow.model ? &shadow : nullptr; }

    std::shared_ptr<const Serving> serving;
    const CallOutputs& call;
    ScoreOutputs out;
    ShadowPass shadow;
};

void Engine::score(const fraud_event* txns, size_t n, float* scores, const ReasonRequest* reasons) const {
    CallOutputs call;
    call.what = "fraud_engine_explain_events";
    call.scores = scores;
    call.reasons = reasons;
    score(txns, n, call);
}

void Engine::score_and_ingest(const fraud_event* txns, size_t n, float* scores, const ReasonRequest* reasons) {
    CallOutputs call;
    call.what = "fraud_engine_score_and_ingest_explain_events";
    call.scores = scores;
    call.reasons = reasons;
    score_and_ingest(txns, n, call);
}

void Engine::score(const fraud_event* txns, size_t n, const CallOutputs& call) const {
    const uint64_t start = now_ns();
    Pass pass(serving(), n, call);
    try {
        validate_fields(schema(), txns, n);
    } catch (const FraudError& e) {
        count_rejection(e, n);
        throw;
    }
    {
        std::shared_lock lock(mutex_);
        pass.champion().score_batch(store_, txns, n, pass.out, {}, pass.shadow_pass());
    }
    finish_call(pass, txns, n, now_ns() - start);
}

void Engine::score_and_ingest(const fraud_event* txns, size_t n, const CallOutputs& call) {
    const uint64_t start = now_ns();
    Pass pass(serving(), n, call);
    {
        std::unique_lock lock(mutex_);
        validate_append(txns, n);
        append_scored(txns, n, &pass.champion(), pass.out, pass.shadow_pass());
    }
    finish_call(pass, txns, n, now_ns() - start);
}

// After the lock: the counters, the challenger's comparison, the outcomes and, for a decide call,
// its records to the sinks.
void Engine::finish_call(Pass& pass, const fraud_event* txns, size_t n, uint64_t ns) const {
    count_scored(n, ns);
    if (n == 0) return;
    const ScoreOutputs& out = pass.out;
    const ShadowPass& shadow = pass.shadow;
    Challenger* challenger = pass.serving->challenger.get();
    if (challenger) {
        if (!shadow.error.empty()) {
            challenger->failures.fetch_add(1, std::memory_order_relaxed);
            log(FRAUD_LOG_ERROR, "challenger " + shadow.model->bundle_dir() + " failed (its scores are NaN for "
                                 "this call; the champion's are served): " + shadow.error);
        }
        uint64_t scored = 0, differ = 0;
        double diff = 0.0;
        for (size_t i = 0; i < n; ++i) {
            const float c = shadow.out.scores[i];
            if (std::isnan(c)) continue;
            ++scored;
            diff += std::fabs(static_cast<double>(out.scores[i]) - c);
            differ += out.decisions[i].decision != shadow.out.decisions[i].decision;
        }
        challenger->scored.fetch_add(scored, std::memory_order_relaxed);
        challenger->disagreements.fetch_add(differ, std::memory_order_relaxed);
        add_double(challenger->abs_diff_sum, diff);
        challenger->latency.record(shadow.elapsed_ns / n);
    }
    const CallOutputs& call = pass.call;
    if (!call.outcomes) return;
    for (size_t i = 0; i < n; ++i) {
        fraud_outcome& o = call.outcomes[i];
        o.score = out.scores[i];
        o.decision = static_cast<int32_t>(out.decisions[i].decision);
        o.rule_hits = out.decisions[i].rule_hits;
        const bool shadowed = challenger != nullptr;
        o.challenger_score = shadowed ? shadow.out.scores[i] : std::numeric_limits<float>::quiet_NaN();
        o.challenger_decision = shadowed ? static_cast<int32_t>(shadow.out.decisions[i].decision) : -1;
        o.challenger_rule_hits = shadowed ? shadow.out.decisions[i].rule_hits : 0;
        if (shadowed && std::isnan(o.challenger_score)) o.challenger_decision = -1;  // it failed
    }
    const std::shared_ptr<const DecisionSinks> sinks = std::atomic_load(&sinks_);
    if (!sinks || (!sinks->fn && !sinks->log)) return;
    fraud_decision_record* records = room(call_buffers().records, n);
    const int64_t decided_at = wall_ms();
    const char* champion_sha = pass.champion().manifest_sha256().c_str();
    const char* challenger_sha = challenger ? challenger->model->manifest_sha256().c_str() : nullptr;
    const double latency_us = static_cast<double>(ns) / 1e3 / static_cast<double>(n);
    for (size_t i = 0; i < n; ++i) {
        fraud_decision_record& r = records[i];
        r.event_id = txns[i].event_id;
        r.time_ms = txns[i].time_ms;
        r.decided_at_ms = decided_at;
        r.bundle_sha256 = champion_sha;
        r.challenger_sha256 = challenger_sha;
        r.outcome = call.outcomes[i];
        const ReasonRequest* reasons = call.reasons;
        r.n_reasons = reasons ? reasons->counts[i] : 0;
        r.reasons = reasons ? reasons->reasons + i * reasons->k : nullptr;
        r.latency_us = latency_us;
    }
    decision_records_.fetch_add(n, std::memory_order_relaxed);
    if (sinks->log) {
        std::string error;
        if (!sinks->log->write(records, n, pass.champion(), challenger ? challenger->model.get() : nullptr, &error)) {
            decision_log_errors_.fetch_add(1, std::memory_order_relaxed);
            log(FRAUD_LOG_ERROR, error);
        }
    }
    if (sinks->fn) {
        t_in_decision_callback = true;
        try {
            sinks->fn(records, n, sinks->user_data);
        } catch (...) {  // a C callback cannot throw; a C++ one must not fail a decision already served
            log(FRAUD_LOG_ERROR, "the decision callback threw; its exception was dropped");
        }
        t_in_decision_callback = false;
    }
}

void Engine::features(const fraud_event* txns, size_t n, float* rows) const {
    validate_fields(schema(), txns, n);
    const std::shared_ptr<const Model> model = this->model();
    std::shared_lock lock(mutex_);
    for (size_t i = 0; i < n; ++i) model->row(store_, txns[i], rows + i * model->num_features());
}

void Engine::label(const fraud_label* labels, size_t n) {
    std::unique_lock lock(mutex_);
    try {
        validate_labels(store_, labels, n);
    } catch (const FraudError& e) {
        if (is_label_refusal(e.status())) {
            labels_rejected_.fetch_add(n, std::memory_order_relaxed);
            rejected_by_status_[static_cast<size_t>(e.status()) % rejected_by_status_.size()].fetch_add(n, std::memory_order_relaxed);
        }
        throw;
    }
    if (log_) log_->append_labels(labels, n);
    labels_applied_.fetch_add(store_.apply_labels(labels, n), std::memory_order_relaxed);
}

void Engine::score_features(const float* rows, size_t n, float* scores) const {
    const std::shared_ptr<const Model> model = this->model();
    check_feature_rows(rows, n, *model, "fraud_engine_score_features");
    model->score_rows(rows, n, scores);
}

size_t Engine::neighbours(const fraud_event& event, size_t m, fraud_neighbour* out) const {
    if (m == 0) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "fraud_engine_explain_neighbours: m must be >= 1");
    validate_fields(schema(), &event, 1);
    const std::shared_ptr<const Model> model = this->model();
    std::shared_lock lock(mutex_);
    return model->neighbours(store_, event, m, out);
}

void Engine::contributions(const float* rows, size_t n, double* out) const {
    const std::shared_ptr<const Model> model = this->model();
    const Explainer& explainer = model->require_explainer("fraud_engine_contributions");
    check_feature_rows(rows, n, *model, "fraud_engine_contributions");
    const size_t nf = model->num_features();
    for (size_t i = 0; i < n; ++i) explainer.contributions(rows + i * nf, out + i * (nf + 1));
}

void Engine::store_size(uint64_t* n, int64_t* watermark_ms) const {
    std::shared_lock lock(mutex_);
    if (n) *n = store_.size();
    if (watermark_ms) *watermark_ms = store_.watermark_ms();
}

void Engine::swap_bundle(const std::string& bundle_dir, const fraud_engine_params& params) {
    std::shared_ptr<const Model> fresh;
    try {
        // Verified and loaded off the hot path; it must serve from this store (same schema).
        fraud_engine_params model_params = params;
        if (model_params.drift_window_events == 0) model_params.drift_window_events = drift_window_events_;
        fresh = std::make_shared<const Model>(bundle_dir, model_params, &store_.layout());
    } catch (const FraudError& e) {
        swap_failures_.fetch_add(1, std::memory_order_relaxed);
        log(FRAUD_LOG_ERROR, std::string("bundle swap refused, the old bundle keeps serving: ") + e.what());
        throw;
    }
    std::shared_ptr<const Model> old;
    {
        std::lock_guard<std::mutex> control(control_);
        const std::shared_ptr<const Serving> current = serving();
        old = current->champion;
        std::atomic_store(&serving_, std::make_shared<const Serving>(Serving{fresh, current->challenger}));
    }
    swaps_.fetch_add(1, std::memory_order_relaxed);
    log(FRAUD_LOG_INFO, "bundle swapped: " + old->bundle_dir() + " -> " + bundle_dir +
                            " (GNN backend: " + fresh->gnn_backend() + ")");
}

void Engine::set_challenger(const std::string& bundle_dir, const fraud_engine_params& params) {
    std::shared_ptr<Challenger> next;
    if (!bundle_dir.empty()) {
        try {
            // As a swap: verified and loaded here, off the hot path, and it must serve from this store.
            fraud_engine_params model_params = params;
            if (model_params.drift_window_events == 0) model_params.drift_window_events = drift_window_events_;
            next = std::make_shared<Challenger>(std::make_shared<const Model>(bundle_dir, model_params, &store_.layout()));
        } catch (const FraudError& e) {
            log(FRAUD_LOG_ERROR, std::string("challenger refused, the engine is as it was: ") + e.what());
            throw;
        }
    }
    {
        std::lock_guard<std::mutex> control(control_);
        const std::shared_ptr<const Serving> current = serving();
        std::atomic_store(&serving_, std::make_shared<const Serving>(Serving{current->champion, next}));
    }
    log(FRAUD_LOG_INFO, next ? "challenger set: " + bundle_dir + " (GNN backend: " + next->model->gnn_backend() + ")"
                             : std::string("challenger cleared"));
}

void Engine::promote_challenger() {
    std::string from, to;
    {
        std::lock_guard<std::mutex> control(control_);
        const std::shared_ptr<const Serving> current = serving();
        if (!current->challenger)
            throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "fraud_engine_promote_challenger: no challenger is set");
        from = current->champion->bundle_dir();
        to = current->challenger->model->bundle_dir();
        std::atomic_store(&serving_, std::make_shared<const Serving>(Serving{current->challenger->model, nullptr}));
    }
    swaps_.fetch_add(1, std::memory_order_relaxed);
    log(FRAUD_LOG_INFO, "challenger promoted: " + from + " -> " + to);
}

void Engine::replace_sinks(const std::function<void(DecisionSinks&)>& change) {
    std::lock_guard<std::mutex> control(control_);
    const std::shared_ptr<const DecisionSinks> current = std::atomic_load(&sinks_);
    auto next = std::make_shared<DecisionSinks>(current ? *current : DecisionSinks{});
    change(*next);
    std::atomic_store(&sinks_, std::shared_ptr<const DecisionSinks>(std::move(next)));
}

void Engine::set_decision_callback(fraud_decision_fn fn, void* user_data) {
    replace_sinks([&](DecisionSinks& s) {
        s.fn = fn;
        s.user_data = fn ? user_data : nullptr;
    });
}

void Engine::set_decision_log(const std::string& path) {
    std::shared_ptr<DecisionLog> file = path.empty() ? nullptr : std::make_shared<DecisionLog>(path);
    replace_sinks([&](DecisionSinks& s) { s.log = file; });
    log(FRAUD_LOG_INFO, file ? "decision log: " + path : std::string("decision log closed"));
}

void Engine::snapshot() {
    if (!log_) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "fraud_engine_snapshot: this engine has no state_dir");
    std::unique_lock lock(mutex_);
    log_->snapshot(store_);  // the snapshot and the new log it names; crash-safe (store/state_dir.h)
    log(FRAUD_LOG_INFO, "snapshot of " + std::to_string(store_.size()) + " transactions written to " + state_dir_);
}

void Engine::stats(fraud_engine_stats* out) const {
    fraud_engine_stats s;
    std::memset(&s, 0, sizeof s);
    s.struct_size = out->struct_size;
    s.scored = scored_.load();
    s.ingested = ingested_.load();
    s.rejected = rejected_.load();
    for (size_t i = 0; i < rejected_by_status_.size(); ++i) s.rejected_by_status[i] = rejected_by_status_[i].load();
    s.bundle_swaps = swaps_.load();
    s.bundle_swap_failures = swap_failures_.load();
    {
        std::shared_lock lock(mutex_);
        s.store_transactions = store_.size();
        s.store_bytes = store_.approx_bytes();
        s.evicted = store_.evicted();
        s.store_labels = store_.labelled();
    }
    s.labels_applied = labels_applied_.load();
    s.labels_rejected = labels_rejected_.load();
    const auto p = latency_.percentiles_us();
    s.latency_p50_us = p[0];
    s.latency_p99_us = p[1];
    const std::shared_ptr<const Serving> serving = this->serving();
    std::strncpy(s.gnn_backend, serving->champion->gnn_backend().c_str(), sizeof s.gnn_backend - 1);
    if (const Challenger* c = serving->challenger.get()) {
        s.challenger_set = 1;
        s.challenger_scored = c->scored.load();
        s.challenger_decision_disagreements = c->disagreements.load();
        s.challenger_score_abs_diff_sum = c->abs_diff_sum.load();
        s.challenger_score_abs_diff_mean =
            s.challenger_scored ? s.challenger_score_abs_diff_sum / static_cast<double>(s.challenger_scored) : 0.0;
        const auto q = c->latency.percentiles_us();
        s.challenger_latency_p50_us = q[0];
        s.challenger_latency_p99_us = q[1];
        s.challenger_failures = c->failures.load();
    }
    s.decision_records = decision_records_.load();
    s.decision_log_errors = decision_log_errors_.load();
    fill_drift_stats(serving->champion->drift(), s);
    // An older caller's smaller struct gets the fields it knows.
    std::memcpy(out, &s, std::min<size_t>(out->struct_size, sizeof s));
}

size_t Engine::drift(fraud_drift* out, size_t capacity) const {
    const std::shared_ptr<const Model> model = this->model();
    if (!model->drift())
        throw FraudError(FRAUD_STATUS_NO_DRIFT_REFERENCE,
                         "fraud_engine_drift: bundle " + model->bundle_dir() +
                             " has no drift reference (no 'drift' section: compiled without reference rows, "
                             "or by a libfraud older than drift)");
    return write_drift(*model->drift(), out, capacity);
}

}  // namespace libfraud
