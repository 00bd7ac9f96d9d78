// Python bindings for the store and the features: training replays history through the same C++
// code that serves. Events come in as the NumPy arrays of libfraud.events, without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <string>
#include <vector>

#include "bindings/records.h"
#include "common/error.h"
#include "features/features.h"
#include "libfraud/fraud.h"
#include "store/restore.h"
#include "store/snapshot.h"
#include "store/state_log.h"
#include "store/temporal_store.h"
#include "store/validate.h"

namespace py = pybind11;

namespace libfraud {
namespace {

using bindings::EventsView;
using bindings::LabelsView;

StoreConfig make_store_config(int64_t retention_ms, int64_t max_history_per_entity);

// The store and its feature plan. Readers (features) share the lock, writers (ingest, label) take
// it exclusively, as the C engine does: Python threads may call in concurrently with the GIL released.
class PyStore {
public:
    PyStore(const std::string& schema_json, const std::string& spec_json, int64_t expected_events,
            int64_t retention_ms, int64_t max_history_per_entity)
        : schema_(parse_schema_json(schema_json, "")),
          features_(schema_, spec_json, ""),
          store_(features_.store_layout(), make_store_config(retention_ms, max_history_per_entity)) {
        features_.bind(store_.layout());
        if (expected_events < 0)
            throw py::value_error("expected_events: must be >= 0, got " + std::to_string(expected_events));
        if (expected_events > 0) store_.reserve(static_cast<size_t>(expected_events));
    }

    const Schema& schema() const { return schema_; }

    EventsView view(const py::array& a, const py::array& b, const py::array& c, const py::array& d,
                    const py::array& e, const py::array& f) const {
        return EventsView(schema_, a, b, c, d, e, f);
    }

    void ingest(const EventsView& v) {
        py::gil_scoped_release release;
        std::unique_lock<std::shared_mutex> lock(mutex_);
        validate_for_append(store_, v.data(), v.size());
        store_.reserve(store_.size() + v.size());
        for (size_t i = 0; i < v.size(); ++i) store_.append(v.data()[i]);
    }

    py::array_t<float> features(const EventsView& v) const {
        py::array_t<float> out = empty_rows(v.size());
        float* dst = out.mutable_data();
        {
            py::gil_scoped_release release;
            std::shared_lock<std::shared_mutex> lock(mutex_);
            validate_fields(schema_, v.data(), v.size());
            for (size_t i = 0; i < v.size(); ++i) features_.compute(store_, v.data()[i], dst + i * features_.size());
        }
        return out;
    }

    void label(const LabelsView& l) {
        py::gil_scoped_release release;
        std::unique_lock<std::shared_mutex> lock(mutex_);
        validate_labels(store_, l.data(), l.size());
        store_.apply_labels(l.data(), l.size());
    }

    // Training's replay: each event's features just before it is stored, and each label stored
    // right after its event. Label-aware features count a label only from its label time on, so
    // this equals serving with the labels arriving at their label times. All or nothing.
    py::array_t<float> replay(const EventsView& v, const LabelsView* l) {
        py::array_t<float> out = empty_rows(v.size());
        float* dst = out.mutable_data();
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            validate_for_append(store_, v.data(), v.size());
            std::unordered_map<int64_t, size_t> batch;  // event id -> index in the batch
            batch.reserve(v.size());
            for (size_t i = 0; i < v.size(); ++i) batch.emplace(v.data()[i].event_id, i);
            // Labels of batch events wait for their event; others must name stored events.
            std::vector<std::vector<size_t>> after(v.size());
            std::vector<fraud_label> now;
            std::vector<size_t> now_index;  // their positions in the caller's batch, for messages
            std::unordered_map<int64_t, int> seen;
            const size_t nl = l ? l->size() : 0;
            for (size_t j = 0; j < nl; ++j) {
                const fraud_label& x = l->data()[j];
                const std::string where = "label " + std::to_string(j) + " (event_id=" + std::to_string(x.event_id) + "): ";
                auto [it, inserted] = seen.emplace(x.event_id, x.label);
                if (!inserted && it->second != x.label)
                    throw FraudError(FRAUD_STATUS_LABEL_CONFLICT, where + "two different labels for one event");
                auto b = batch.find(x.event_id);
                if (b == batch.end()) {
                    now.push_back(x);
                    now_index.push_back(j);
                    continue;
                }
                if (x.label != 0 && x.label != 1)
                    throw FraudError(FRAUD_STATUS_INVALID_LABEL, where + "label: must be 0 or 1, got " + std::to_string(x.label));
                if (x.label_time_ms < v.data()[b->second].time_ms)
                    throw FraudError(FRAUD_STATUS_INVALID_LABEL, where + "label_time_ms " + std::to_string(x.label_time_ms) +
                                                                     " is before the event's time_ms " +
                                                                     std::to_string(v.data()[b->second].time_ms));
                after[b->second].push_back(j);
            }
            validate_labels(store_, now.data(), now.size(), now_index.data());
            store_.reserve(store_.size() + v.size());
            store_.apply_labels(now.data(), now.size());
            for (size_t i = 0; i < v.size(); ++i) {
                features_.compute(store_, v.data()[i], dst + i * features_.size());
                store_.append(v.data()[i]);
                for (size_t j : after[i]) {
                    uint32_t row;
                    store_.find_event(l->data()[j].event_id, &row);
                    store_.apply_label(row, l->data()[j].label, l->data()[j].label_time_ms);
                }
            }
        }
        return out;
    }

    size_t size() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.size();
    }
    int64_t watermark_ms() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.watermark_ms();
    }
    const FeaturePlan& plan() const { return features_; }

    uint64_t evicted() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.evicted();
    }
    uint64_t labelled() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.labelled();
    }
    size_t approx_bytes() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.approx_bytes();
    }
    std::vector<std::pair<std::string, size_t>> memory_breakdown() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        std::vector<std::pair<std::string, size_t>> out;
        for (const auto& p : store_.memory_breakdown()) out.emplace_back(p.first, p.second);
        return out;
    }
    size_t entity_type(const py::object& type) const {
        if (py::isinstance<py::str>(type)) {
            const int i = schema_.entity_index(type.cast<std::string>());
            if (i < 0) throw py::value_error("no entity type '" + type.cast<std::string>() + "' in the schema");
            return static_cast<size_t>(i);
        }
        return type.cast<size_t>();
    }
    size_t num_entities(const py::object& type) const {
        const size_t t = entity_type(type);
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.num_entities(t);
    }
    // Retained events of one entity (0 when none).
    size_t history_size(const py::object& type, int64_t id) const {
        const size_t t = entity_type(type);
        std::shared_lock<std::shared_mutex> lock(mutex_);
        const EntityHistory* h = store_.history(t, id);
        return h ? h->size() : 0;
    }
    bool contains_event_id(int64_t id) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.contains_event_id(id);
    }
    bool within_retention(int64_t t) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.within_retention(t);
    }
    StoreConfig store_config() const { return store_.config(); }

    void write_snapshot(const std::string& path) const {
        py::gil_scoped_release release;
        std::shared_lock<std::shared_mutex> lock(mutex_);
        libfraud::write_snapshot(store_, path);
    }
    // Replaces the store with dir's snapshot + log (this store's retention config); all or nothing.
    RestoreStats restore(const std::string& dir, const Recovery& recovery) {
        py::gil_scoped_release release;
        std::unique_lock<std::shared_mutex> lock(mutex_);
        return restore_state(dir, store_, recovery);
    }
    const StoreLayout& layout() const { return store_.layout(); }

    // fn(store) with the GIL released, under the read lock: for other bindings (the sampler).
    template <class Fn>
    void read(Fn&& fn) const {
        py::gil_scoped_release release;
        std::shared_lock<std::shared_mutex> lock(mutex_);
        fn(store_);
    }

private:
    py::array_t<float> empty_rows(size_t n) const {
        return py::array_t<float>({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(features_.size())});
    }

    Schema schema_;
    FeaturePlan features_;
    TemporalStore store_;
    mutable std::shared_mutex mutex_;
};

StoreConfig make_store_config(int64_t retention_ms, int64_t max_history_per_entity) {
    if (retention_ms < 0) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "retention_ms: must be >= 0 (0 = keep all), got " + std::to_string(retention_ms));
    }
    if (max_history_per_entity < 0 || max_history_per_entity > std::numeric_limits<uint32_t>::max()) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "max_history_per_entity: must be in 0..4294967295 (0 = no limit), got " +
                             std::to_string(max_history_per_entity));
    }
    StoreConfig c;
    c.retention_ms = retention_ms;
    c.max_history_per_entity = static_cast<uint32_t>(max_history_per_entity);
    return c;
}

// The state log, for tests and tools (the engine owns its own).
class PyStateLog {
public:
    // `like`: the store restored from dir (or, for a new dir, an empty one of its layout).
    PyStateLog(const std::string& dir, bool fsync, const PyStore& like, bool quarantine_corrupt_tail) : schema_(like.schema()) {
        Recovery recovery;
        recovery.quarantine_corrupt_tail = quarantine_corrupt_tail;
        like.read([&](const TemporalStore& s) { log_ = StateLog::open(dir, fsync, s, recovery); });
    }
    void append(const EventsView& v) {
        py::gil_scoped_release release;
        validate_fields(schema_, v.data(), v.size());
        log_->append(v.data(), v.size());
    }
    void append_labels(const LabelsView& l) {
        py::gil_scoped_release release;
        log_->append_labels(l.data(), l.size());
    }
    const Schema& schema() const { return schema_; }
    // A snapshot of `store` (the store this log follows) and the new log it names.
    void snapshot(const PyStore& store) {
        store.read([&](const TemporalStore& s) { log_->snapshot(s); });
    }
    const std::string& quarantine_file() const { return log_->quarantine_file(); }
    uint64_t next_seq() const { return log_->next_seq(); }
    uint64_t bytes() const { return log_->bytes(); }

private:
    Schema schema_;
    std::unique_ptr<StateLog> log_;
};

}  // namespace
}  // namespace libfraud

// For the sampler's bindings (declared there): runs fn(store, ctx) on a _core.Store's store with the
// GIL released and the store's lock held as a reader. TypeError when `store` is not a _core.Store.
void with_store_read_locked(const py::handle& store,
                            void (*fn)(const libfraud::TemporalStore&, void*), void* ctx) {
    if (!py::isinstance<libfraud::PyStore>(store)) {
        throw py::type_error("store: expected a libfraud._core.Store, got " +
                             py::str(py::type::of(store)).cast<std::string>());
    }
    store.cast<const libfraud::PyStore&>().read([&](const libfraud::TemporalStore& s) { fn(s, ctx); });
}

const libfraud::Schema& store_schema(const py::handle& store) {
    if (!py::isinstance<libfraud::PyStore>(store)) {
        throw py::type_error("store: expected a libfraud._core.Store, got " +
                             py::str(py::type::of(store)).cast<std::string>());
    }
    return store.cast<const libfraud::PyStore&>().schema();
}

// Global, as module.cpp declares it.
void bind_store(py::module_& m) {
    using namespace libfraud;
    using bindings::EventsView;
    using bindings::LabelsView;

    m.def("hash_ids",
          [](const std::vector<std::string>& values) {
              py::array_t<int64_t> out(static_cast<py::ssize_t>(values.size()));
              int64_t* o = out.mutable_data();
              for (size_t i = 0; i < values.size(); ++i) o[i] = hash_id(values[i].data(), values[i].size());
              return out;
          },
          py::arg("values"), "fraud_hash_id of each string's UTF-8 bytes: int64 >= 0 (export/SCHEMA.md, Ids).");
    m.def("window_label", &window_label, py::arg("ms"),
          "Label of a window in feature names: 3600000 -> '1h', 604800000 -> '7d'.");

    using A = const py::array&;
    py::class_<PyStore>(m, "Store",
                        "The temporal store of a declared schema and the point-in-time features of a feature "
                        "spec over it (both JSON text, export/SCHEMA.md). Events come as the arrays of "
                        "libfraud.events.EventArrays.args(), labels as LabelArrays.args().")
        .def(py::init<const std::string&, const std::string&, int64_t, int64_t, int64_t>(), py::arg("schema_json"),
             py::arg("spec_json"), py::arg("expected_events") = 0, py::kw_only(), py::arg("retention_ms") = 0,
             py::arg("max_history_per_entity") = 0,
             "retention_ms: evict history older than watermark - retention_ms (0 = keep all); "
             "max_history_per_entity: newest events kept per entity (0 = no limit).")
        .def_property_readonly("evicted", &PyStore::evicted, "Events evicted by retention so far.")
        .def_property_readonly("labelled", &PyStore::labelled, "Labelled events in the store.")
        .def_property_readonly("approx_bytes", &PyStore::approx_bytes, "Approximate heap bytes held by the store.")
        .def_property_readonly("retention_ms", [](const PyStore& s) { return s.store_config().retention_ms; })
        .def_property_readonly("max_history_per_entity",
                               [](const PyStore& s) { return s.store_config().max_history_per_entity; })
        .def_property_readonly("entity_types", [](const PyStore& s) { return s.schema().entities; })
        .def_property_readonly("history_fields", [](const PyStore& s) { return s.layout().history_fields; })
        .def("memory_breakdown", &PyStore::memory_breakdown, "approx_bytes by part: [(name, bytes)].")
        .def("num_entities", &PyStore::num_entities, py::arg("entity"),
             "Entities of this type (name or index) with retained history.")
        .def("history_size", &PyStore::history_size, py::arg("entity"), py::arg("id"),
             "Retained events of one entity (0 when none).")
        .def("contains_event_id", &PyStore::contains_event_id, py::arg("event_id"))
        .def("within_retention", &PyStore::within_retention, py::arg("time_ms"),
             "False when time_ms < watermark_ms - retention_ms.")
        .def("write_snapshot", &PyStore::write_snapshot, py::arg("path"),
             "Write a snapshot atomically (temp file, fsync, rename, directory fsync).")
        .def("restore",
             [](PyStore& s, const std::string& dir, bool quarantine_corrupt_tail) {
                 Recovery recovery;
                 recovery.quarantine_corrupt_tail = quarantine_corrupt_tail;
                 const RestoreStats r = s.restore(dir, recovery);
                 py::dict d;
                 d["snapshot_loaded"] = r.snapshot_loaded;
                 d["snapshot_transactions"] = r.snapshot_transactions;
                 d["log_records"] = r.log_records;
                 d["log_transactions"] = r.log_transactions;
                 d["log_skipped"] = r.log_skipped;
                 d["log_label_records"] = r.log_label_records;
                 d["torn_tail_bytes"] = r.torn_tail_bytes;
                 d["corrupt_tail_bytes"] = r.corrupt_tail_bytes;
                 return d;
             },
             py::arg("dir"), py::arg("quarantine_corrupt_tail") = false,
             "Replace the store with dir's store.snapshot then its log (all or nothing); returns counts. "
             "quarantine_corrupt_tail: skip a damaged last log record instead of refusing (reads only).")
        .def("ingest", [](PyStore& s, A a, A b, A c, A d, A e, A f) { s.ingest(s.view(a, b, c, d, e, f)); },
             LIBFRAUD_EVENT_ARGS, "Append events (all or nothing: validated first).")
        .def("features", [](const PyStore& s, A a, A b, A c, A d, A e, A f) { return s.features(s.view(a, b, c, d, e, f)); },
             LIBFRAUD_EVENT_ARGS, "float32 [n, num_features]: features against the store as it stands; stores nothing.")
        .def("features_and_ingest",
             [](PyStore& s, A a, A b, A c, A d, A e, A f) { return s.replay(s.view(a, b, c, d, e, f), nullptr); },
             LIBFRAUD_EVENT_ARGS, "Per event in order: its features, then append it. Validated as a whole first.")
        .def("replay",
             [](PyStore& s, A a, A b, A c, A d, A e, A f, A g, A h, A i) {
                 const LabelsView labels(g, h, i);
                 return s.replay(s.view(a, b, c, d, e, f), &labels);
             },
             LIBFRAUD_EVENT_ARGS, LIBFRAUD_LABEL_ARGS,
             "Training's replay: per event, its features, then append it, then its labels (counted by "
             "label-aware features from their label time on). All or nothing.")
        .def("label", [](PyStore& s, A g, A h, A i) { s.label(LabelsView(g, h, i)); }, LIBFRAUD_LABEL_ARGS,
             "Label stored events (all or nothing).")
        .def_property_readonly("size", &PyStore::size)
        .def_property_readonly("watermark_ms", &PyStore::watermark_ms)
        .def_property_readonly("num_features", [](const PyStore& s) { return s.plan().size(); })
        .def_property_readonly("feature_names", [](const PyStore& s) { return s.plan().names(); });

    py::class_<PyStateLog>(m, "StateLog", "The append-only log of a state directory (store.log), for tests.")
        .def(py::init<const std::string&, bool, const PyStore&, bool>(), py::arg("dir"), py::arg("fsync"), py::arg("like"),
             py::arg("quarantine_corrupt_tail") = false,
             "Open dir's log for appending; `like` is the store restored from dir (or an empty one for a new dir).")
        .def("append",
             [](PyStateLog& l, A a, A b, A c, A d, A e, A f) { l.append(EventsView(l.schema(), a, b, c, d, e, f)); },
             LIBFRAUD_EVENT_ARGS)
        .def("append_labels", [](PyStateLog& l, A g, A h, A i) { l.append_labels(LabelsView(g, h, i)); }, LIBFRAUD_LABEL_ARGS)
        .def("snapshot", &PyStateLog::snapshot, py::arg("store"),
             "Write dir/store.snapshot of `store` (the store this log follows) and start the new log it names.")
        .def_property_readonly("quarantine_file", &PyStateLog::quarantine_file)
        .def_property_readonly("next_seq", &PyStateLog::next_seq)
        .def_property_readonly("bytes", &PyStateLog::bytes);
    m.def("snapshot_path", &snapshot_path, py::arg("dir"));
    m.def("log_path", &log_path, py::arg("dir"));
}
