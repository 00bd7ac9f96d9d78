// Python's Engine goes through the C API itself, so Python and C callers share one path.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "bindings/records.h"
#include "common/error.h"
#include "libfraud/fraud.h"

namespace py = pybind11;
using libfraud::bindings::EventsView;
using libfraud::bindings::LabelsView;
using A = const py::array&;

namespace {

void check(fraud_status status) {
    if (status != FRAUD_STATUS_OK) throw libfraud::FraudError(status, fraud_last_error());
}

class PyEngine {
public:
    PyEngine(const std::string& bundle_dir, int64_t expected_transactions, const std::string& gnn_backend,
             const std::string& plugin_dir, const std::string& state_dir, bool fsync_every_ingest,
             int64_t retention_ms, uint32_t max_history_per_entity, const std::string& trusted_public_key,
             uint64_t explain_table_bytes, int64_t max_ahead_ms, bool quarantine_corrupt_log_tail,
             uint64_t drift_window_events) {
        fraud_engine_params params = fraud_engine_default_params();
        params.expected_transactions = expected_transactions;
        params.gnn_backend = gnn_backend.c_str();
        params.plugin_dir = plugin_dir.empty() ? nullptr : plugin_dir.c_str();
        params.state_dir = state_dir.empty() ? nullptr : state_dir.c_str();
        params.fsync_every_ingest = fsync_every_ingest ? 1 : 0;
        params.retention_ms = retention_ms;
        params.max_history_per_entity = max_history_per_entity;
        params.trusted_public_key_path = trusted_public_key.empty() ? nullptr : trusted_public_key.c_str();
        params.explain_table_bytes = explain_table_bytes;
        params.max_ahead_ms = max_ahead_ms;
        params.quarantine_corrupt_log_tail = quarantine_corrupt_log_tail ? 1 : 0;
        params.drift_window_events = drift_window_events;
        fraud_engine* raw = nullptr;
        check(fraud_engine_open(bundle_dir.c_str(), &params, &raw));
        engine_.reset(raw);
        read_schema();
    }

    // The engine's schema, read through the C API as a switch would.
    void read_schema() {
        auto names = [&](fraud_field_role role) {
            size_t n = 0;
            check(fraud_engine_schema_count(engine_.get(), role, &n));
            std::vector<std::string> out;
            for (size_t i = 0; i < n; ++i) {
                const char* name = nullptr;
                check(fraud_engine_schema_name(engine_.get(), role, i, &name));
                out.emplace_back(name);
            }
            return out;
        };
        schema_.entities = names(FRAUD_ROLE_ENTITY);
        schema_.entity_required.assign(schema_.entities.size(), true);
        schema_.numeric = names(FRAUD_ROLE_NUMERIC);
        schema_.categorical = names(FRAUD_ROLE_CATEGORICAL);
        int32_t has_amount = 0;
        check(fraud_engine_schema_has_amount(engine_.get(), &has_amount));
        schema_.has_amount = has_amount != 0;
    }
    const libfraud::Schema& schema() const { return schema_; }
    EventsView view(A a, A b, A c, A d, A e, A f) const { return EventsView(schema_, a, b, c, d, e, f); }

    void label(const LabelsView& l) {
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_label(engine_.get(), l.data(), l.size());
        }
        check(status);
    }

    // Asked each time: a swap may change the model.
    size_t num_features() const {
        size_t n = 0;
        check(fraud_engine_num_features(engine_.get(), &n));
        return n;
    }

    std::vector<std::string> feature_names() const {
        std::vector<std::string> names;
        const size_t n = num_features();
        for (size_t i = 0; i < n; ++i) {
            const char* name = nullptr;
            check(fraud_engine_feature_name(engine_.get(), i, &name));
            names.emplace_back(name);
        }
        return names;
    }

    std::string gnn_backend() const {
        const char* name = nullptr;
        check(fraud_engine_gnn_backend(engine_.get(), &name));
        return name;
    }

    double threshold() const {
        double value = 0;
        check(fraud_engine_threshold(engine_.get(), &value));
        return value;
    }

    void ingest(const EventsView& span) {
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_ingest_events(engine_.get(), span.data(), span.size());
        }
        check(status);
    }

    py::array_t<float> score(const EventsView& span, bool ingest) {
        py::array_t<float> scores(static_cast<py::ssize_t>(span.size()));
        float* out = scores.mutable_data();
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = ingest ? fraud_engine_score_and_ingest_events(engine_.get(), span.data(), span.size(), out)
                            : fraud_engine_score_events(engine_.get(), span.data(), span.size(), out);
        }
        check(status);
        return scores;
    }

    py::array_t<float> features(const EventsView& span) const {
        const size_t nf = num_features();
        py::array_t<float> rows({static_cast<py::ssize_t>(span.size()), static_cast<py::ssize_t>(nf)});
        float* out = rows.mutable_data();
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_features_events(engine_.get(), span.data(), span.size(), out);
        }
        check(status);
        return rows;
    }

    py::array_t<float> score_features(const py::array_t<float, py::array::c_style | py::array::forcecast>& rows) const {
        const size_t nf = num_features();
        if (rows.ndim() != 2 || static_cast<size_t>(rows.shape(1)) != nf)
            throw py::value_error("rows must be 2-D with " + std::to_string(nf) + " columns");
        py::array_t<float> scores(rows.shape(0));
        float* out = scores.mutable_data();
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_score_features(engine_.get(), rows.data(), rows.shape(0), out);
        }
        check(status);
        return scores;
    }

    // Scores and reasons (fraud_engine_explain_events / _score_and_ingest_explain_events):
    // (scores[n], codes[n, k], families[n, k], contributions[n, k], features[n, k], values[n, k],
    // counts[n]); row i's reasons are its first counts[i] columns (codes 0 and NaN after them).
    py::tuple explain(const EventsView& span, size_t k, float min_score, bool ingest) {
        const size_t n = span.size();
        std::vector<fraud_reason> reasons(n * std::max<size_t>(k, 1));
        py::array_t<float> scores(static_cast<py::ssize_t>(n));
        py::array_t<uint64_t> counts(static_cast<py::ssize_t>(n));
        fraud_status status;
        {
            py::gil_scoped_release release;
            auto* c = reinterpret_cast<size_t*>(counts.mutable_data());
            static_assert(sizeof(size_t) == sizeof(uint64_t), "counts are read as size_t");
            status = ingest ? fraud_engine_score_and_ingest_explain_events(engine_.get(), span.data(), n, k, min_score,
                                                                           scores.mutable_data(), reasons.data(), c)
                            : fraud_engine_explain_events(engine_.get(), span.data(), n, k, min_score,
                                                          scores.mutable_data(), reasons.data(), c);
        }
        check(status);
        py::tuple r = reason_arrays(reasons, counts, n, k);
        return py::make_tuple(scores, r[0], r[1], r[2], r[3], r[4], counts);
    }

    // (codes[n, k], families[n, k], contributions[n, k], features[n, k], values[n, k]) of a call's
    // reasons; row i's first counts[i] columns are used (codes 0 and NaN after them).
    static py::tuple reason_arrays(const std::vector<fraud_reason>& reasons, const py::array_t<uint64_t>& counts,
                                   size_t n, size_t k) {
        const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)};
        py::array_t<int32_t> codes(shape), families(shape), features(shape);
        py::array_t<double> contributions(shape);
        py::array_t<float> values(shape);
        const uint64_t* c = counts.data();
        for (size_t i = 0; i < n; ++i) {
            for (size_t j = 0; j < k; ++j) {
                const size_t at = i * k + j;
                const bool used = j < c[i];
                codes.mutable_data()[at] = used ? reasons[at].code : 0;
                families.mutable_data()[at] = used ? reasons[at].family : -1;
                features.mutable_data()[at] = used ? reasons[at].feature : -1;
                contributions.mutable_data()[at] = used ? reasons[at].contribution : std::nan("");
                values.mutable_data()[at] = used ? reasons[at].value : std::nanf("");
            }
        }
        return py::make_tuple(codes, families, contributions, features, values);
    }

    // fraud_engine_decide_events / _score_and_ingest_decide_events: (scores, challenger_scores,
    // decisions, challenger_decisions, rule_hits, challenger_rule_hits, codes, families,
    // contributions, features, values, counts); the reason arrays have k columns (0 for k = 0).
    py::tuple decide(const EventsView& span, size_t k, float min_score, bool ingest) {
        const size_t n = span.size();
        std::vector<fraud_outcome> outcomes(n);
        std::vector<fraud_reason> reasons(n * k);
        py::array_t<uint64_t> counts(static_cast<py::ssize_t>(n));
        std::fill_n(counts.mutable_data(), n, 0);
        fraud_status status;
        {
            py::gil_scoped_release release;
            auto* c = k ? reinterpret_cast<size_t*>(counts.mutable_data()) : nullptr;
            fraud_reason* r = k ? reasons.data() : nullptr;
            status = ingest ? fraud_engine_score_and_ingest_decide_events(engine_.get(), span.data(), n, k, min_score,
                                                                          outcomes.data(), r, c)
                            : fraud_engine_decide_events(engine_.get(), span.data(), n, k, min_score, outcomes.data(),
                                                         r, c);
        }
        check(status);
        const auto N = static_cast<py::ssize_t>(n);
        py::array_t<float> scores(N), challenger_scores(N);
        py::array_t<int32_t> decisions(N), challenger_decisions(N);
        py::array_t<uint64_t> hits(N), challenger_hits(N);
        for (size_t i = 0; i < n; ++i) {
            const fraud_outcome& o = outcomes[i];
            scores.mutable_data()[i] = o.score;
            challenger_scores.mutable_data()[i] = o.challenger_score;
            decisions.mutable_data()[i] = o.decision;
            challenger_decisions.mutable_data()[i] = o.challenger_decision;
            hits.mutable_data()[i] = o.rule_hits;
            challenger_hits.mutable_data()[i] = o.challenger_rule_hits;
        }
        py::tuple r = reason_arrays(reasons, counts, n, k);
        return py::make_tuple(scores, challenger_scores, decisions, challenger_decisions, hits, challenger_hits, r[0],
                              r[1], r[2], r[3], r[4], counts);
    }

    py::tuple decision_bands() const {
        double review = 0, decline = 0;
        check(fraud_engine_decision_bands(engine_.get(), &review, &decline));
        return py::make_tuple(review, decline);
    }

    // [{"code", "name", "when", "action", "shadow"}] of the serving bundle's rules.
    py::list rules() const {
        size_t n = 0;
        check(fraud_engine_rule_count(engine_.get(), &n));
        py::list out;
        static const char* actions[] = {"allow", "review", "decline"};
        for (size_t i = 0; i < n; ++i) {
            int32_t code = 0, action = 0, shadow = 0;
            const char* name = nullptr;
            const char* when = nullptr;
            check(fraud_engine_rule(engine_.get(), i, &code, &name, &when, &action, &shadow));
            py::dict d;
            d["code"] = code;
            d["name"] = std::string(name);
            d["when"] = std::string(when);
            d["action"] = action >= 0 && action <= 2 ? actions[action] : "unknown";
            d["shadow"] = shadow != 0;
            out.append(d);
        }
        return out;
    }

    py::tuple bundle_sha256() const {
        const char* champion = nullptr;
        const char* challenger = nullptr;
        check(fraud_engine_bundle_sha256(engine_.get(), &champion, &challenger));
        return py::make_tuple(std::string(champion), challenger ? py::object(py::str(challenger)) : py::none());
    }

    void set_challenger(const std::string& bundle_dir, const std::string& gnn_backend, const std::string& plugin_dir) {
        fraud_engine_params params = fraud_engine_default_params();
        params.gnn_backend = gnn_backend.c_str();
        params.plugin_dir = plugin_dir.empty() ? nullptr : plugin_dir.c_str();
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_set_challenger(engine_.get(), bundle_dir.c_str(), &params);
        }
        check(status);
    }

    void promote_challenger() {
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_promote_challenger(engine_.get());
        }
        check(status);
    }

    void set_decision_log(const std::string& path) {
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_set_decision_log(engine_.get(), path.c_str());
        }
        check(status);
    }

    // fn(records: list[dict]) once per decide call, with the GIL (taken inside the callback, which
    // the core runs after its lock is released); None removes it.
    void set_decision_callback(py::object fn) {
        if (fn.is_none()) {
            check(fraud_engine_set_decision_callback(engine_.get(), nullptr, nullptr));
            callback_ = py::none();
            return;
        }
        auto holder = std::make_unique<py::object>(fn);
        check(fraud_engine_set_decision_callback(engine_.get(), &PyEngine::forward_records, holder.get()));
        // The previous holder may still be in use by a call in flight on another thread: kept.
        retired_.push_back(std::move(holder));
        callback_ = fn;
    }

    static void forward_records(const fraud_decision_record* records, size_t n, void* user) {
        py::gil_scoped_acquire gil;
        try {
            py::list out;
            for (size_t i = 0; i < n; ++i) {
                const fraud_decision_record& r = records[i];
                py::dict d;
                d["event_id"] = r.event_id;
                d["time_ms"] = r.time_ms;
                d["decided_at_ms"] = r.decided_at_ms;
                d["bundle_sha256"] = std::string(r.bundle_sha256);
                d["score"] = r.outcome.score;
                d["decision"] = r.outcome.decision;
                d["rule_hits"] = r.outcome.rule_hits;
                if (r.challenger_sha256) {
                    d["challenger_sha256"] = std::string(r.challenger_sha256);
                    d["challenger_score"] = r.outcome.challenger_score;
                    d["challenger_decision"] = r.outcome.challenger_decision;
                    d["challenger_rule_hits"] = r.outcome.challenger_rule_hits;
                }
                py::list reasons;
                for (size_t j = 0; j < r.n_reasons; ++j) {
                    const fraud_reason& x = r.reasons[j];
                    reasons.append(py::make_tuple(x.code, x.family, x.contribution, x.feature, x.value));
                }
                d["reasons"] = reasons;
                d["latency_us"] = r.latency_us;
                out.append(d);
            }
            (*static_cast<py::object*>(user))(out);
        } catch (py::error_already_set& e) {
            e.discard_as_unraisable("libfraud decision callback");
        }
    }

    py::array_t<double> contributions(const py::array_t<float, py::array::c_style | py::array::forcecast>& rows) const {
        const size_t nf = num_features();
        if (rows.ndim() != 2 || static_cast<size_t>(rows.shape(1)) != nf)
            throw py::value_error("rows must be 2-D with " + std::to_string(nf) + " columns");
        py::array_t<double> out({static_cast<py::ssize_t>(rows.shape(0)), static_cast<py::ssize_t>(nf + 1)});
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_contributions(engine_.get(), rows.data(), rows.shape(0), out.mutable_data());
        }
        check(status);
        return out;
    }

    // (event_id[n, m], entity_type[n, m], slot[n, m], delta[n, m], counts[n]): one
    // fraud_engine_explain_neighbours call per event.
    py::tuple neighbours(const EventsView& span, size_t m) const {
        const size_t n = span.size();
        const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(m)};
        py::array_t<int64_t> ids(shape);
        py::array_t<int32_t> types(shape), slots(shape);
        py::array_t<double> deltas(shape);
        py::array_t<int64_t> counts(static_cast<py::ssize_t>(n));
        std::vector<fraud_neighbour> found(std::max<size_t>(m, 1));
        fraud_status status = FRAUD_STATUS_OK;
        {
            py::gil_scoped_release release;
            for (size_t i = 0; i < n && status == FRAUD_STATUS_OK; ++i) {
                size_t got = 0;
                status = fraud_engine_explain_neighbours(engine_.get(), span.data() + i, m, found.data(), &got);
                counts.mutable_data()[i] = static_cast<int64_t>(got);
                for (size_t j = 0; j < m; ++j) {
                    const bool used = j < got;
                    ids.mutable_data()[i * m + j] = used ? found[j].event_id : -1;
                    types.mutable_data()[i * m + j] = used ? found[j].entity_type : -1;
                    slots.mutable_data()[i * m + j] = used ? found[j].slot : -1;
                    deltas.mutable_data()[i * m + j] = used ? found[j].delta : std::nan("");
                }
            }
        }
        check(status);
        return py::make_tuple(ids, types, slots, deltas, counts);
    }

    // [(code, name, text)] of the serving bundle's reason families; [] without explanation data.
    std::vector<py::tuple> reason_families() const {
        size_t n = 0;
        check(fraud_engine_reason_count(engine_.get(), &n));
        std::vector<py::tuple> out;
        for (size_t i = 0; i < n; ++i) {
            int32_t code = 0;
            const char* name = nullptr;
            const char* text = nullptr;
            check(fraud_engine_reason_family(engine_.get(), i, &code, &name, &text));
            out.push_back(py::make_tuple(code, std::string(name), std::string(text)));
        }
        return out;
    }

    // One C API call per transaction, each timed inside C++: the latency a switch sees, without
    // Python's own overhead in the figure.
    py::tuple score_and_ingest_timed(const EventsView& span) {
        py::array_t<float> scores(static_cast<py::ssize_t>(span.size()));
        py::array_t<int64_t> latency_ns(static_cast<py::ssize_t>(span.size()));
        float* out = scores.mutable_data();
        int64_t* ns = latency_ns.mutable_data();
        fraud_status status = FRAUD_STATUS_OK;
        {
            py::gil_scoped_release release;
            for (size_t i = 0; i < span.size() && status == FRAUD_STATUS_OK; ++i) {
                auto start = std::chrono::steady_clock::now();
                status = fraud_engine_score_and_ingest_events(engine_.get(), span.data() + i, 1, out + i);
                ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - start).count();
            }
        }
        check(status);
        return py::make_tuple(scores, latency_ns);
    }

    void swap_bundle(const std::string& bundle_dir, const std::string& gnn_backend, const std::string& plugin_dir) {
        fraud_engine_params params = fraud_engine_default_params();
        params.gnn_backend = gnn_backend.c_str();
        params.plugin_dir = plugin_dir.empty() ? nullptr : plugin_dir.c_str();
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_swap_bundle(engine_.get(), bundle_dir.c_str(), &params);
        }
        check(status);
    }

    void snapshot() {
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_snapshot(engine_.get());
        }
        check(status);
    }

    py::dict stats() const {
        fraud_engine_stats s;
        s.struct_size = sizeof s;
        check(fraud_engine_get_stats(engine_.get(), &s));
        py::dict rejected_by;
        for (int i = 0; i < 16; ++i)
            if (s.rejected_by_status[i]) rejected_by[fraud_status_name(static_cast<fraud_status>(i))] = s.rejected_by_status[i];
        py::dict d;
        d["scored"] = s.scored;
        d["ingested"] = s.ingested;
        d["rejected"] = s.rejected;
        d["rejected_by_status"] = rejected_by;
        d["bundle_swaps"] = s.bundle_swaps;
        d["bundle_swap_failures"] = s.bundle_swap_failures;
        d["store_transactions"] = s.store_transactions;
        d["store_bytes"] = s.store_bytes;
        d["evicted"] = s.evicted;
        d["latency_p50_us"] = s.latency_p50_us;
        d["latency_p99_us"] = s.latency_p99_us;
        d["gnn_backend"] = std::string(s.gnn_backend);
        d["labels_applied"] = s.labels_applied;
        d["labels_rejected"] = s.labels_rejected;
        d["store_labels"] = s.store_labels;
        d["challenger_set"] = s.challenger_set != 0;
        d["challenger_scored"] = s.challenger_scored;
        d["challenger_decision_disagreements"] = s.challenger_decision_disagreements;
        d["challenger_score_abs_diff_sum"] = s.challenger_score_abs_diff_sum;
        d["challenger_score_abs_diff_mean"] = s.challenger_score_abs_diff_mean;
        d["challenger_latency_p50_us"] = s.challenger_latency_p50_us;
        d["challenger_latency_p99_us"] = s.challenger_latency_p99_us;
        d["challenger_failures"] = s.challenger_failures;
        d["decision_records"] = s.decision_records;
        d["decision_log_errors"] = s.decision_log_errors;
        d["drift_window_events"] = s.drift_window_events;
        d["drift_score_psi"] = s.drift_score_psi;
        d["drift_max_feature_psi"] = s.drift_max_feature_psi;
        d["drift_max_feature"] = s.drift_max_feature;
        return d;
    }

    // fraud_engine_drift: (feature[F + 1] (-1: the score), psi[F + 1], window_events).
    py::tuple drift() const {
        std::vector<fraud_drift> entries(num_features() + 1);
        size_t n = 0;
        check(fraud_engine_drift(engine_.get(), entries.data(), entries.size(), &n));
        py::array_t<int32_t> feature(static_cast<py::ssize_t>(n));
        py::array_t<double> psi(static_cast<py::ssize_t>(n));
        for (size_t i = 0; i < n; ++i) {
            feature.mutable_data()[i] = entries[i].feature;
            psi.mutable_data()[i] = entries[i].psi;
        }
        return py::make_tuple(feature, psi, n ? entries[0].window_events : 0);
    }

    py::tuple store_size() const {
        uint64_t n = 0;
        int64_t watermark = 0;
        check(fraud_engine_store_size(engine_.get(), &n, &watermark));
        return py::make_tuple(n, watermark);
    }

private:
    struct Free {
        void operator()(fraud_engine* e) const { fraud_engine_free(e); }
    };
    // Declared before engine_, so destroyed after it: the engine may call them until it is freed.
    py::object callback_ = py::none();
    std::vector<std::unique_ptr<py::object>> retired_;
    std::unique_ptr<fraud_engine, Free> engine_;
    libfraud::Schema schema_;
};

}  // namespace

void bind_engine(py::module_& m) {
    py::class_<PyEngine>(m, "Engine", "A loaded bundle with its temporal store (the C API's fraud_engine).")
        .def(py::init<const std::string&, int64_t, const std::string&, const std::string&, const std::string&, bool,
                      int64_t, uint32_t, const std::string&, uint64_t, int64_t, bool, uint64_t>(),
             py::arg("bundle_dir"), py::arg("expected_transactions") = 0, py::arg("gnn_backend") = "",
             py::arg("plugin_dir") = "", py::arg("state_dir") = "", py::arg("fsync_every_ingest") = false,
             py::arg("retention_ms") = 0, py::arg("max_history_per_entity") = 0, py::arg("trusted_public_key") = "",
             py::arg("explain_table_bytes") = 0, py::arg("max_ahead_ms") = 0,
             py::arg("quarantine_corrupt_log_tail") = false, py::arg("drift_window_events") = 0)
        .def_property_readonly("gnn_backend", &PyEngine::gnn_backend)
        .def_property_readonly("num_features", &PyEngine::num_features)
        .def_property_readonly("feature_names", &PyEngine::feature_names)
        .def_property_readonly("threshold", &PyEngine::threshold)
        .def_property_readonly("entity_types", [](const PyEngine& e) { return e.schema().entities; })
        .def_property_readonly("numeric_fields", [](const PyEngine& e) { return e.schema().numeric; })
        .def_property_readonly("categorical_fields", [](const PyEngine& e) { return e.schema().categorical; })
        .def_property_readonly("has_amount", [](const PyEngine& e) { return e.schema().has_amount; })
        .def("ingest", [](PyEngine& e, A a, A b, A c, A d, A f, A g) { e.ingest(e.view(a, b, c, d, f, g)); },
             LIBFRAUD_EVENT_ARGS)
        .def("score", [](PyEngine& e, A a, A b, A c, A d, A f, A g) { return e.score(e.view(a, b, c, d, f, g), false); },
             LIBFRAUD_EVENT_ARGS)
        .def("score_and_ingest",
             [](PyEngine& e, A a, A b, A c, A d, A f, A g) { return e.score(e.view(a, b, c, d, f, g), true); },
             LIBFRAUD_EVENT_ARGS)
        .def("score_and_ingest_timed",
             [](PyEngine& e, A a, A b, A c, A d, A f, A g) { return e.score_and_ingest_timed(e.view(a, b, c, d, f, g)); },
             LIBFRAUD_EVENT_ARGS, "(scores, latency_ns): one C API call per event, timed in C++")
        .def("features", [](const PyEngine& e, A a, A b, A c, A d, A f, A g) { return e.features(e.view(a, b, c, d, f, g)); },
             LIBFRAUD_EVENT_ARGS)
        .def("explain",
             [](PyEngine& e, A a, A b, A c, A d, A f, A g, size_t k, float min_score, bool ingest) {
                 return e.explain(e.view(a, b, c, d, f, g), k, min_score, ingest);
             },
             LIBFRAUD_EVENT_ARGS, py::arg("k"), py::arg("min_score") = 0.0f, py::arg("ingest") = false,
             "(scores, codes, families, contributions, features, values, counts): scores and reasons")
        .def("explain_neighbours",
             [](const PyEngine& e, A a, A b, A c, A d, A f, A g, size_t m) { return e.neighbours(e.view(a, b, c, d, f, g), m); },
             LIBFRAUD_EVENT_ARGS, py::arg("m"),
             "(event_id, entity_type, slot, delta, counts): the sampled neighbours that raised each score most")
        .def("contributions", &PyEngine::contributions, py::arg("rows"),
             "Per-feature TreeSHAP contributions [n, F + 1] (last: expected value), in the trees' margin")
        .def_property_readonly("reason_families", &PyEngine::reason_families)
        .def("label", [](PyEngine& e, A g, A h, A i) { e.label(LabelsView(g, h, i)); }, LIBFRAUD_LABEL_ARGS,
             "Label stored events through fraud_engine_label (all or nothing).")
        .def("score_features", &PyEngine::score_features, py::arg("rows"))
        .def("store_size", &PyEngine::store_size, "(transactions stored, watermark_ms)")
        .def("swap_bundle", &PyEngine::swap_bundle, py::arg("bundle_dir"), py::arg("gnn_backend") = "",
             py::arg("plugin_dir") = "")
        .def("decide",
             [](PyEngine& e, A a, A b, A c, A d, A f, A g, size_t k, float min_score, bool ingest) {
                 return e.decide(e.view(a, b, c, d, f, g), k, min_score, ingest);
             },
             LIBFRAUD_EVENT_ARGS, py::arg("k") = 0, py::arg("min_score") = 0.0f, py::arg("ingest") = false,
             "(scores, challenger_scores, decisions, challenger_decisions, rule_hits, challenger_rule_hits, codes, "
             "families, contributions, features, values, counts)")
        .def_property_readonly("decision_bands", &PyEngine::decision_bands, "(review_from, decline_from); inf = none")
        .def_property_readonly("rules", &PyEngine::rules)
        .def_property_readonly("bundle_sha256", &PyEngine::bundle_sha256, "(champion, challenger or None)")
        .def("set_challenger", &PyEngine::set_challenger, py::arg("bundle_dir"), py::arg("gnn_backend") = "",
             py::arg("plugin_dir") = "", "\"\" clears it")
        .def("promote_challenger", &PyEngine::promote_challenger)
        .def("set_decision_log", &PyEngine::set_decision_log, py::arg("path"), "\"\" closes it")
        .def("set_decision_callback", &PyEngine::set_decision_callback, py::arg("fn"),
             "fn(records: list[dict]) once per decide call; None removes it")
        .def("snapshot", &PyEngine::snapshot)
        .def("stats", &PyEngine::stats)
        .def("drift", &PyEngine::drift, "(feature, psi, window_events) of fraud_engine_drift; feature -1: the score");

    // Log messages go to a Python callable (level: int, message: str), called with the GIL held.
    m.def("set_log_callback", [](py::object fn, int min_level) {
        static py::object* sink = nullptr;  // kept alive for the process; replaced on each call
        if (fn.is_none()) {
            fraud_set_log_callback(nullptr, nullptr, FRAUD_LOG_ERROR);
            return;
        }
        if (!sink) sink = new py::object();
        fraud_set_log_callback(nullptr, nullptr, FRAUD_LOG_ERROR);
        *sink = fn;
        fraud_set_log_callback(
            [](fraud_log_level level, const char* message, void* user) {
                py::gil_scoped_acquire gil;
                try {
                    (*static_cast<py::object*>(user))(static_cast<int>(level), message);
                } catch (py::error_already_set& e) {
                    e.discard_as_unraisable("libfraud log callback");
                }
            },
            sink, static_cast<fraud_log_level>(min_level));
    }, py::arg("fn"), py::arg("min_level") = 1);
}
