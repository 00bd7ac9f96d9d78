// The C boundary: statuses and a thread-local message out, never an exception.
#include <cmath>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "engine/engine.h"
#include "libfraud/fraud.h"
#include "schema/schema.h"

struct fraud_engine {
    std::unique_ptr<libfraud::Engine> impl;
};

namespace {

thread_local std::string last_error;

fraud_status fail(fraud_status status, const char* message) {
    last_error = message;
    return status;
}

void require(bool ok, const char* what) {
    if (!ok) throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT, what);
}

// The payments preset's events for a fraud_txn batch, in per-thread buffers (no allocation once a
// thread has seen its largest batch). Valid until the thread's next conversion.
const fraud_event* as_events(const libfraud::Engine& engine, const fraud_txn* txns, size_t n) {
    if (!engine.payments_layout())
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                                   "fraud_txn is the payments preset's record; this engine's schema is '" +
                                       engine.schema().name + "': use the fraud_engine_*_events functions");
    thread_local std::vector<fraud_event> events;
    thread_local std::vector<int64_t> codes;
    if (events.size() < n) {
        events.resize(n);
        codes.resize(2 * n);
    }
    for (size_t i = 0; i < n; ++i) {
        const fraud_txn& t = txns[i];
        codes[2 * i] = t.country;
        codes[2 * i + 1] = t.mcc;
        events[i] = fraud_event{t.txn_id, t.timestamp_ms, t.amount, t.entity_id, nullptr, &codes[2 * i]};
    }
    return events.data();
}

const libfraud::Schema& schema_of(const fraud_engine* engine) { return engine->impl->schema(); }

const std::vector<std::string>& names_of(const libfraud::Schema& s, fraud_field_role role) {
    static const std::vector<std::string> event_id{"event_id"};
    switch (static_cast<int>(role)) {
        case FRAUD_ROLE_ENTITY: return s.entities;
        case FRAUD_ROLE_NUMERIC: return s.numeric;
        case FRAUD_ROLE_CATEGORICAL: return s.categorical;
        case FRAUD_ROLE_EVENT_ID: return event_id;
    }
    throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                               "role must be FRAUD_ROLE_ENTITY, _NUMERIC, _CATEGORICAL or _EVENT_ID, got " +
                                   std::to_string(static_cast<int>(role)));
}

}  // namespace

// Every entry point's body goes between these: no exception crosses into C.
#define FRAUD_API_BEGIN() \
    try {                 \
        last_error.clear();
#define FRAUD_API_END()                                                          \
    }                                                                            \
    catch (const libfraud::FraudError& e) {                                      \
        return fail(e.status(), e.what());                                       \
    }                                                                            \
    catch (const std::bad_alloc&) {                                              \
        return fail(FRAUD_STATUS_INTERNAL, "out of memory");                     \
    }                                                                            \
    catch (const std::exception& e) {                                            \
        return fail(FRAUD_STATUS_INTERNAL, e.what());                            \
    }                                                                            \
    catch (...) {                                                                \
        return fail(FRAUD_STATUS_INTERNAL, "unknown exception inside libfraud"); \
    }                                                                            \
    return FRAUD_STATUS_OK;

extern "C" {

const char* fraud_last_error(void) { return last_error.c_str(); }

const char* fraud_status_name(fraud_status status) {
    switch (static_cast<int>(status)) {  // any int may arrive from C: no UB on unknown values
        case FRAUD_STATUS_OK: return "FRAUD_STATUS_OK";
        case FRAUD_STATUS_INVALID_ARGUMENT: return "FRAUD_STATUS_INVALID_ARGUMENT";
        case FRAUD_STATUS_INVALID_TRANSACTION: return "FRAUD_STATUS_INVALID_TRANSACTION";
        case FRAUD_STATUS_OUT_OF_ORDER: return "FRAUD_STATUS_OUT_OF_ORDER";
        case FRAUD_STATUS_DUPLICATE_TRANSACTION: return "FRAUD_STATUS_DUPLICATE_TRANSACTION";
        case FRAUD_STATUS_IO_ERROR: return "FRAUD_STATUS_IO_ERROR";
        case FRAUD_STATUS_BUNDLE_INVALID: return "FRAUD_STATUS_BUNDLE_INVALID";
        case FRAUD_STATUS_BUNDLE_VERSION: return "FRAUD_STATUS_BUNDLE_VERSION";
        case FRAUD_STATUS_BUNDLE_CHECKSUM: return "FRAUD_STATUS_BUNDLE_CHECKSUM";
        case FRAUD_STATUS_LOAD_ERROR: return "FRAUD_STATUS_LOAD_ERROR";
        case FRAUD_STATUS_INTERNAL: return "FRAUD_STATUS_INTERNAL";
        case FRAUD_STATUS_OUT_OF_RETENTION: return "FRAUD_STATUS_OUT_OF_RETENTION";
        case FRAUD_STATUS_BACKEND_UNAVAILABLE: return "FRAUD_STATUS_BACKEND_UNAVAILABLE";
        case FRAUD_STATUS_UNKNOWN_EVENT: return "FRAUD_STATUS_UNKNOWN_EVENT";
        case FRAUD_STATUS_INVALID_LABEL: return "FRAUD_STATUS_INVALID_LABEL";
        case FRAUD_STATUS_LABEL_CONFLICT: return "FRAUD_STATUS_LABEL_CONFLICT";
        case FRAUD_STATUS_NO_EXPLANATION: return "FRAUD_STATUS_NO_EXPLANATION";
        case FRAUD_STATUS_NO_DRIFT_REFERENCE: return "FRAUD_STATUS_NO_DRIFT_REFERENCE";
    }
    return "FRAUD_STATUS_UNKNOWN";
}

const char* fraud_version(void) { return LIBFRAUD_VERSION; }

int64_t fraud_hash_id(const char* bytes, size_t len) {
    static const char empty = 0;
    return libfraud::hash_id(bytes ? bytes : &empty, bytes ? len : 0);
}

void fraud_set_log_callback(fraud_log_fn fn, void* user_data, fraud_log_level min_level) {
    libfraud::set_log_callback(fn, user_data, min_level);
}

fraud_engine_params fraud_engine_default_params(void) {
    fraud_engine_params params;
    std::memset(&params, 0, sizeof params);
    params.struct_size = sizeof params;
    return params;
}

static fraud_engine_params effective_params(const fraud_engine_params* params);

fraud_status fraud_engine_open(const char* bundle_dir, const fraud_engine_params* params,
                               fraud_engine** out) {
    FRAUD_API_BEGIN()
    require(out != nullptr, "fraud_engine_open: out is NULL");
    *out = nullptr;
    require(bundle_dir != nullptr, "fraud_engine_open: bundle_dir is NULL");
    auto engine = std::make_unique<fraud_engine>();
    engine->impl = std::make_unique<libfraud::Engine>(bundle_dir, effective_params(params));
    *out = engine.release();
    FRAUD_API_END()
}

void fraud_engine_free(fraud_engine* engine) { delete engine; }

fraud_status fraud_engine_num_features(const fraud_engine* engine, size_t* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_num_features: NULL argument");
    *out = engine->impl->model()->num_features();
    FRAUD_API_END()
}

fraud_status fraud_engine_feature_name(const fraud_engine* engine, size_t i, const char** out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_feature_name: NULL argument");
    const auto model = engine->impl->model();
    const auto& names = model->feature_names();
    if (i >= names.size())
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                                   "fraud_engine_feature_name: index " + std::to_string(i) +
                                       " is out of range (" + std::to_string(names.size()) + " features)");
    *out = names[i].c_str();
    FRAUD_API_END()
}

fraud_status fraud_engine_gnn_backend(const fraud_engine* engine, const char** out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_gnn_backend: NULL argument");
    *out = engine->impl->model()->gnn_backend().c_str();
    FRAUD_API_END()
}

fraud_status fraud_engine_threshold(const fraud_engine* engine, double* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_threshold: NULL argument");
    *out = engine->impl->model()->threshold();
    FRAUD_API_END()
}

fraud_status fraud_engine_schema_count(const fraud_engine* engine, fraud_field_role role, size_t* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_schema_count: NULL argument");
    *out = names_of(schema_of(engine), role).size();
    FRAUD_API_END()
}

fraud_status fraud_engine_schema_name(const fraud_engine* engine, fraud_field_role role, size_t i, const char** out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_schema_name: NULL argument");
    const auto& names = names_of(schema_of(engine), role);
    if (i >= names.size())
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "fraud_engine_schema_name: index " + std::to_string(i) +
                                                                      " >= " + std::to_string(names.size()));
    *out = names[i].c_str();
    FRAUD_API_END()
}

fraud_status fraud_engine_schema_string_ids(const fraud_engine* engine, fraud_field_role role, size_t i, int32_t* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_schema_string_ids: NULL argument");
    const libfraud::Schema& s = schema_of(engine);
    const auto& names = names_of(s, role);
    if (i >= names.size())
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "fraud_engine_schema_string_ids: index " + std::to_string(i) +
                                                                      " >= " + std::to_string(names.size()));
    bool strings = false;
    if (role == FRAUD_ROLE_ENTITY) strings = i < s.entity_strings.size() && s.entity_strings[i];
    if (role == FRAUD_ROLE_CATEGORICAL) strings = i < s.categorical_strings.size() && s.categorical_strings[i];
    if (role == FRAUD_ROLE_EVENT_ID) strings = s.event_id_strings;
    *out = strings ? 1 : 0;
    FRAUD_API_END()
}

fraud_status fraud_engine_schema_has_amount(const fraud_engine* engine, int32_t* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_schema_has_amount: NULL argument");
    *out = schema_of(engine).has_amount ? 1 : 0;
    FRAUD_API_END()
}

fraud_status fraud_engine_ingest_events(fraud_engine* engine, const fraud_event* events, size_t n) {
    FRAUD_API_BEGIN()
    require(engine && (events || n == 0), "fraud_engine_ingest_events: NULL argument");
    engine->impl->ingest(events, n);
    FRAUD_API_END()
}

fraud_status fraud_engine_score_events(const fraud_engine* engine, const fraud_event* events, size_t n,
                                       float* scores_out) {
    FRAUD_API_BEGIN()
    require(engine && ((events && scores_out) || n == 0), "fraud_engine_score_events: NULL argument");
    engine->impl->score(events, n, scores_out);
    FRAUD_API_END()
}

fraud_status fraud_engine_score_and_ingest_events(fraud_engine* engine, const fraud_event* events, size_t n,
                                                  float* scores_out) {
    FRAUD_API_BEGIN()
    require(engine && ((events && scores_out) || n == 0), "fraud_engine_score_and_ingest_events: NULL argument");
    engine->impl->score_and_ingest(events, n, scores_out);
    FRAUD_API_END()
}

fraud_status fraud_engine_features_events(const fraud_engine* engine, const fraud_event* events, size_t n,
                                          float* features_out) {
    FRAUD_API_BEGIN()
    require(engine && ((events && features_out) || n == 0), "fraud_engine_features_events: NULL argument");
    engine->impl->features(events, n, features_out);
    FRAUD_API_END()
}

namespace {

libfraud::ReasonRequest reason_request(const char* what, size_t n, size_t k, float min_score, float* scores_out,
                                       fraud_reason* reasons_out, size_t* n_reasons_out) {
    if (n > 0 && !(scores_out && reasons_out && n_reasons_out))
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT, std::string(what) + ": NULL argument");
    if (std::isnan(min_score))
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                                   std::string(what) + ": min_score is NaN (0 explains every event)");
    return libfraud::ReasonRequest{k, min_score, reasons_out, n_reasons_out};
}

}  // namespace

fraud_status fraud_engine_reason_count(const fraud_engine* engine, size_t* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_reason_count: NULL argument");
    const auto model = engine->impl->model();
    *out = model->explainer() ? model->explainer()->num_families() : 0;
    FRAUD_API_END()
}

fraud_status fraud_engine_reason_family(const fraud_engine* engine, size_t i, int32_t* code_out,
                                        const char** name_out, const char** text_out) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_reason_family: NULL engine");
    // The strings live in the model, which the engine keeps until the next swap (documented).
    const libfraud::Explainer& e = engine->impl->model()->require_explainer("fraud_engine_reason_family");
    if (i >= e.num_families())
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                                   "fraud_engine_reason_family: family " + std::to_string(i) + " of " +
                                       std::to_string(e.num_families()));
    const libfraud::ReasonFamily& f = e.family(i);
    if (code_out) *code_out = f.code;
    if (name_out) *name_out = f.name.c_str();
    if (text_out) *text_out = f.text.c_str();
    FRAUD_API_END()
}

fraud_status fraud_engine_explain_events(const fraud_engine* engine, const fraud_event* events, size_t n, size_t k,
                                         float min_score, float* scores_out, fraud_reason* reasons_out,
                                         size_t* n_reasons_out) {
    FRAUD_API_BEGIN()
    require(engine && (events || n == 0), "fraud_engine_explain_events: NULL argument");
    const libfraud::ReasonRequest request = reason_request("fraud_engine_explain_events", n, k, min_score,
                                                           scores_out, reasons_out, n_reasons_out);
    engine->impl->score(events, n, scores_out, &request);
    FRAUD_API_END()
}

fraud_status fraud_engine_score_and_ingest_explain_events(fraud_engine* engine, const fraud_event* events, size_t n,
                                                          size_t k, float min_score, float* scores_out,
                                                          fraud_reason* reasons_out, size_t* n_reasons_out) {
    FRAUD_API_BEGIN()
    require(engine && (events || n == 0), "fraud_engine_score_and_ingest_explain_events: NULL argument");
    const libfraud::ReasonRequest request = reason_request("fraud_engine_score_and_ingest_explain_events", n, k,
                                                           min_score, scores_out, reasons_out, n_reasons_out);
    engine->impl->score_and_ingest(events, n, scores_out, &request);
    FRAUD_API_END()
}

namespace {

// A decide call's outputs and reasons: k = 0 asks for none (their buffers may be NULL).
libfraud::CallOutputs decide_outputs(const char* what, size_t n, size_t k, float min_score, fraud_outcome* outcomes,
                                     fraud_reason* reasons_out, size_t* n_reasons_out,
                                     libfraud::ReasonRequest* request) {
    if (n > 0 && !outcomes) throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT, std::string(what) + ": outcomes_out is NULL");
    libfraud::CallOutputs call;
    call.what = what;
    call.outcomes = outcomes;
    if (k > 0) {
        if (n > 0 && !(reasons_out && n_reasons_out))
            throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                                       std::string(what) + ": k >= 1 needs reasons_out and n_reasons_out");
        if (std::isnan(min_score))
            throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                                       std::string(what) + ": min_score is NaN (0 explains every event)");
        *request = libfraud::ReasonRequest{k, min_score, reasons_out, n_reasons_out};
        call.reasons = request;
    }
    return call;
}

}  // namespace

fraud_status fraud_engine_decide_events(const fraud_engine* engine, const fraud_event* events, size_t n, size_t k,
                                        float min_score, fraud_outcome* outcomes_out, fraud_reason* reasons_out,
                                        size_t* n_reasons_out) {
    FRAUD_API_BEGIN()
    require(engine && (events || n == 0), "fraud_engine_decide_events: NULL argument");
    libfraud::ReasonRequest request;
    const libfraud::CallOutputs call = decide_outputs("fraud_engine_decide_events", n, k, min_score, outcomes_out,
                                                      reasons_out, n_reasons_out, &request);
    engine->impl->score(events, n, call);
    FRAUD_API_END()
}

fraud_status fraud_engine_score_and_ingest_decide_events(fraud_engine* engine, const fraud_event* events, size_t n,
                                                         size_t k, float min_score, fraud_outcome* outcomes_out,
                                                         fraud_reason* reasons_out, size_t* n_reasons_out) {
    FRAUD_API_BEGIN()
    require(engine && (events || n == 0), "fraud_engine_score_and_ingest_decide_events: NULL argument");
    libfraud::ReasonRequest request;
    const libfraud::CallOutputs call = decide_outputs("fraud_engine_score_and_ingest_decide_events", n, k, min_score,
                                                      outcomes_out, reasons_out, n_reasons_out, &request);
    engine->impl->score_and_ingest(events, n, call);
    FRAUD_API_END()
}

fraud_status fraud_engine_decision_bands(const fraud_engine* engine, double* review_from_out, double* decline_from_out) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_decision_bands: NULL engine");
    const auto model = engine->impl->model();
    if (review_from_out) *review_from_out = model->decision_policy().review_from();
    if (decline_from_out) *decline_from_out = model->decision_policy().decline_from();
    FRAUD_API_END()
}

fraud_status fraud_engine_rule_count(const fraud_engine* engine, size_t* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_rule_count: NULL argument");
    *out = engine->impl->model()->decision_policy().rule_count();
    FRAUD_API_END()
}

fraud_status fraud_engine_rule(const fraud_engine* engine, size_t i, int32_t* code_out, const char** name_out,
                               const char** when_out, int32_t* action_out, int32_t* shadow_out) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_rule: NULL engine");
    // The strings live in the model, which the engine keeps until the next swap (documented).
    const libfraud::DecisionPolicy& policy = engine->impl->model()->decision_policy();
    if (i >= policy.rule_count())
        throw libfraud::FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "fraud_engine_rule: rule " + std::to_string(i) +
                                                                      " of " + std::to_string(policy.rule_count()));
    const libfraud::Rule& r = policy.rule(i);
    if (code_out) *code_out = r.code;
    if (name_out) *name_out = r.name.c_str();
    if (when_out) *when_out = r.when.c_str();
    if (action_out) *action_out = static_cast<int32_t>(r.action);
    if (shadow_out) *shadow_out = r.shadow ? 1 : 0;
    FRAUD_API_END()
}

fraud_status fraud_engine_bundle_sha256(const fraud_engine* engine, const char** champion_out,
                                        const char** challenger_out) {
    FRAUD_API_BEGIN()
    require(engine && champion_out, "fraud_engine_bundle_sha256: NULL argument");
    const auto serving = engine->impl->serving();
    *champion_out = serving->champion->manifest_sha256().c_str();
    if (challenger_out)
        *challenger_out = serving->challenger ? serving->challenger->model->manifest_sha256().c_str() : nullptr;
    FRAUD_API_END()
}

fraud_status fraud_engine_set_decision_callback(fraud_engine* engine, fraud_decision_fn fn, void* user_data) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_set_decision_callback: NULL engine");
    engine->impl->set_decision_callback(fn, user_data);
    FRAUD_API_END()
}

fraud_status fraud_engine_set_decision_log(fraud_engine* engine, const char* path) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_set_decision_log: NULL engine");
    engine->impl->set_decision_log(path ? path : "");
    FRAUD_API_END()
}

fraud_status fraud_engine_explain_neighbours(const fraud_engine* engine, const fraud_event* event, size_t m,
                                             fraud_neighbour* out, size_t* n_out) {
    FRAUD_API_BEGIN()
    require(engine && event && out && n_out, "fraud_engine_explain_neighbours: NULL argument");
    *n_out = engine->impl->neighbours(*event, m, out);
    FRAUD_API_END()
}

fraud_status fraud_engine_contributions(const fraud_engine* engine, const float* rows, size_t n,
                                        double* contributions_out) {
    FRAUD_API_BEGIN()
    require(engine && ((rows && contributions_out) || n == 0), "fraud_engine_contributions: NULL argument");
    engine->impl->contributions(rows, n, contributions_out);
    FRAUD_API_END()
}

fraud_status fraud_engine_label(fraud_engine* engine, const fraud_label* labels, size_t n) {
    FRAUD_API_BEGIN()
    require(engine && (labels || n == 0), "fraud_engine_label: NULL argument");
    engine->impl->label(labels, n);
    FRAUD_API_END()
}

fraud_status fraud_engine_ingest(fraud_engine* engine, const fraud_txn* txns, size_t n) {
    FRAUD_API_BEGIN()
    require(engine && (txns || n == 0), "fraud_engine_ingest: NULL argument");
    engine->impl->ingest(as_events(*engine->impl, txns, n), n);
    FRAUD_API_END()
}

fraud_status fraud_engine_score(const fraud_engine* engine, const fraud_txn* txns, size_t n,
                                float* scores_out) {
    FRAUD_API_BEGIN()
    require(engine && ((txns && scores_out) || n == 0), "fraud_engine_score: NULL argument");
    engine->impl->score(as_events(*engine->impl, txns, n), n, scores_out);
    FRAUD_API_END()
}

fraud_status fraud_engine_score_and_ingest(fraud_engine* engine, const fraud_txn* txns, size_t n,
                                           float* scores_out) {
    FRAUD_API_BEGIN()
    require(engine && ((txns && scores_out) || n == 0), "fraud_engine_score_and_ingest: NULL argument");
    engine->impl->score_and_ingest(as_events(*engine->impl, txns, n), n, scores_out);
    FRAUD_API_END()
}

fraud_status fraud_engine_features(const fraud_engine* engine, const fraud_txn* txns, size_t n,
                                   float* features_out) {
    FRAUD_API_BEGIN()
    require(engine && ((txns && features_out) || n == 0), "fraud_engine_features: NULL argument");
    engine->impl->features(as_events(*engine->impl, txns, n), n, features_out);
    FRAUD_API_END()
}

fraud_status fraud_engine_score_features(const fraud_engine* engine, const float* rows, size_t n,
                                         float* scores_out) {
    FRAUD_API_BEGIN()
    require(engine && ((rows && scores_out) || n == 0), "fraud_engine_score_features: NULL argument");
    engine->impl->score_features(rows, n, scores_out);
    FRAUD_API_END()
}

static fraud_engine_params effective_params(const fraud_engine_params* params) {
    fraud_engine_params effective = fraud_engine_default_params();
    if (params) {
        // An older caller's smaller struct keeps the defaults for the fields it does not know.
        require(params->struct_size >= offsetof(fraud_engine_params, expected_transactions) &&
                    params->struct_size <= sizeof effective,
                "params->struct_size is not a fraud_engine_params size (set it from "
                "fraud_engine_default_params())");
        std::memcpy(&effective, params, params->struct_size);
    }
    return effective;
}

fraud_status fraud_engine_swap_bundle(fraud_engine* engine, const char* bundle_dir,
                                      const fraud_engine_params* params) {
    FRAUD_API_BEGIN()
    require(engine && bundle_dir, "fraud_engine_swap_bundle: NULL argument");
    engine->impl->swap_bundle(bundle_dir, effective_params(params));
    FRAUD_API_END()
}

fraud_status fraud_engine_set_challenger(fraud_engine* engine, const char* bundle_dir,
                                         const fraud_engine_params* params) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_set_challenger: NULL engine");
    engine->impl->set_challenger(bundle_dir ? bundle_dir : "", effective_params(params));
    FRAUD_API_END()
}

fraud_status fraud_engine_promote_challenger(fraud_engine* engine) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_promote_challenger: NULL engine");
    engine->impl->promote_challenger();
    FRAUD_API_END()
}

fraud_status fraud_engine_snapshot(fraud_engine* engine) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_snapshot: engine is NULL");
    engine->impl->snapshot();
    FRAUD_API_END()
}

fraud_status fraud_engine_get_stats(const fraud_engine* engine, fraud_engine_stats* out) {
    FRAUD_API_BEGIN()
    require(engine && out, "fraud_engine_get_stats: NULL argument");
    require(out->struct_size >= offsetof(fraud_engine_stats, scored) && out->struct_size <= sizeof *out,
            "fraud_engine_get_stats: out->struct_size is not a fraud_engine_stats size");
    engine->impl->stats(out);
    FRAUD_API_END()
}

fraud_status fraud_engine_store_size(const fraud_engine* engine, uint64_t* n_out,
                                     int64_t* watermark_ms_out) {
    FRAUD_API_BEGIN()
    require(engine != nullptr, "fraud_engine_store_size: engine is NULL");
    engine->impl->store_size(n_out, watermark_ms_out);
    FRAUD_API_END()
}

fraud_status fraud_engine_drift(const fraud_engine* engine, fraud_drift* out, size_t capacity, size_t* n_out) {
    FRAUD_API_BEGIN()
    require(engine && n_out, "fraud_engine_drift: NULL argument");
    *n_out = 0;
    require(out || capacity == 0, "fraud_engine_drift: out is NULL with a capacity above 0");
    *n_out = engine->impl->drift(out, capacity);
    FRAUD_API_END()
}

}  // extern "C"
