// Python bindings for the store and the features: training replays history through the same C++
// code that serves. Records come in as NumPy structured arrays of fraud_txn's layout, without a copy.
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
#include <sstream>
#include <string>
#include <vector>

#include "bindings/records.h"
#include "common/error.h"
#include "features/features.h"
#include "libfraud/fraud.h"
#include "store/snapshot.h"
#include "store/state_log.h"
#include "store/temporal_store.h"
#include "store/validate.h"

namespace py = pybind11;

namespace libfraud {
namespace {

using bindings::FieldSpec;
using bindings::kFields;
using bindings::TxnView;

StoreConfig make_store_config(int64_t retention_ms, int64_t max_history_per_entity);

// The store and its feature computer. Readers (features) share the lock, writers (ingest) take it
// exclusively, as the C engine does: Python threads may call in concurrently with the GIL released.
class PyStore {
public:
    PyStore(const FeatureConfig& config, int64_t expected_transactions, int64_t retention_ms,
            int64_t max_history_per_entity)
        : store_(make_store_config(retention_ms, max_history_per_entity)), features_(config) {
        if (expected_transactions < 0) {
            throw py::value_error("expected_transactions: must be >= 0, got " +
                                  std::to_string(expected_transactions));
        }
        if (expected_transactions > 0) store_.reserve(static_cast<size_t>(expected_transactions));
    }

    void ingest(const py::array& records) {
        TxnView view(records);
        py::gil_scoped_release release;
        std::unique_lock<std::shared_mutex> lock(mutex_);
        validate_for_append(store_, view.data(), view.size());
        store_.reserve(store_.size() + view.size());
        for (size_t i = 0; i < view.size(); ++i) store_.append(view.data()[i]);
    }

    py::array_t<float> features(const py::array& records) const {
        TxnView view(records);
        py::array_t<float> out = empty_rows(view.size());
        float* dst = out.mutable_data();
        {
            py::gil_scoped_release release;
            std::shared_lock<std::shared_mutex> lock(mutex_);
            validate_fields(view.data(), view.size());
            for (size_t i = 0; i < view.size(); ++i) {
                features_.compute(store_, view.data()[i], dst + i * features_.size());
            }
        }
        return out;
    }

    py::array_t<float> features_and_ingest(const py::array& records) {
        TxnView view(records);
        py::array_t<float> out = empty_rows(view.size());
        float* dst = out.mutable_data();
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            validate_for_append(store_, view.data(), view.size());
            store_.reserve(store_.size() + view.size());
            for (size_t i = 0; i < view.size(); ++i) {
                features_.compute(store_, view.data()[i], dst + i * features_.size());
                store_.append(view.data()[i]);
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
    const FeatureComputer& computer() const { return features_; }

    uint64_t evicted() const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.evicted();
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
    size_t num_entities(int type) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.num_entities(static_cast<fraud_entity>(type));
    }
    // Retained events of one entity (0 when none).
    size_t history_size(int type, int64_t id) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        const EntityHistory* h = store_.history(static_cast<fraud_entity>(type), id);
        return h ? h->size() : 0;
    }
    bool contains_txn_id(int64_t id) const {
        std::shared_lock<std::shared_mutex> lock(mutex_);
        return store_.contains_txn_id(id);
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
    RestoreStats restore(const std::string& dir) {
        py::gil_scoped_release release;
        std::unique_lock<std::shared_mutex> lock(mutex_);
        return restore_state(dir, store_);
    }

    // fn(store) with the GIL released, under the read lock: for other bindings (the sampler).
    template <class Fn>
    void read(Fn&& fn) const {
        py::gil_scoped_release release;
        std::shared_lock<std::shared_mutex> lock(mutex_);
        fn(store_);
    }

private:
    py::array_t<float> empty_rows(size_t n) const {
        return py::array_t<float>({static_cast<py::ssize_t>(n),
                                   static_cast<py::ssize_t>(features_.size())});
    }

    TemporalStore store_;
    const FeatureComputer features_;
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
    PyStateLog(const std::string& dir, bool fsync) : log_(StateLog::open(dir, fsync)) {}
    void append(const py::array& records) {
        TxnView view(records);
        py::gil_scoped_release release;
        validate_fields(view.data(), view.size());
        log_->append(view.data(), view.size());
    }
    void reset() { log_->reset(); }
    uint64_t next_seq() const { return log_->next_seq(); }
    uint64_t bytes() const { return log_->bytes(); }

private:
    std::unique_ptr<StateLog> log_;
};

std::string config_repr(const FeatureConfig& c) {
    std::ostringstream s;
    s << "FeatureConfig(windows_ms=[";
    for (size_t i = 0; i < c.windows_ms.size(); ++i) s << (i ? ", " : "") << c.windows_ms[i];
    s << "], distinct_window_ms=" << c.distinct_window_ms << ", max_scan=" << c.max_scan << ")";
    return s.str();
}

bool config_equal(const FeatureConfig& a, const FeatureConfig& b) {
    return a.windows_ms == b.windows_ms && a.distinct_window_ms == b.distinct_window_ms &&
           a.max_scan == b.max_scan;
}

FeatureConfig make_config(std::vector<int64_t> windows_ms, int64_t distinct_window_ms,
                          int64_t max_scan) {
    if (max_scan < 1 || max_scan > std::numeric_limits<uint32_t>::max()) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "max_scan: must be in 1..4294967295, got " + std::to_string(max_scan));
    }
    FeatureConfig c;
    c.windows_ms = std::move(windows_ms);
    c.distinct_window_ms = distinct_window_ms;
    c.max_scan = static_cast<uint32_t>(max_scan);
    validate_feature_config(c);
    return c;
}

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

// Global, as module.cpp declares it.
void bind_store(py::module_& m) {
    using namespace libfraud;
    const FeatureConfig defaults;

    m.attr("TXN_ITEMSIZE") = py::int_(sizeof(fraud_txn));
    py::dict offsets;
    for (const FieldSpec& f : kFields) offsets[f.name] = py::int_(f.offset);
    m.attr("TXN_OFFSETS") = offsets;

    py::class_<FeatureConfig>(m, "FeatureConfig",
                              "Feature configuration (immutable). Raises FraudError when invalid.")
        .def(py::init(&make_config), py::arg("windows_ms") = defaults.windows_ms,
             py::arg("distinct_window_ms") = defaults.distinct_window_ms,
             py::arg("max_scan") = static_cast<int64_t>(defaults.max_scan))
        .def_property_readonly("windows_ms",
                               [](const FeatureConfig& c) { return c.windows_ms; })
        .def_property_readonly("distinct_window_ms",
                               [](const FeatureConfig& c) { return c.distinct_window_ms; })
        .def_property_readonly("max_scan", [](const FeatureConfig& c) { return c.max_scan; })
        .def("__repr__", &config_repr)
        .def("__eq__", [](const FeatureConfig& a, const py::object& b) -> py::object {
            if (!py::isinstance<FeatureConfig>(b)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
            return py::bool_(config_equal(a, b.cast<const FeatureConfig&>()));
        })
        .def("__hash__", [](const FeatureConfig& c) { return py::hash(py::str(config_repr(c))); })
        .def(py::pickle(
            [](const FeatureConfig& c) {
                return py::make_tuple(c.windows_ms, c.distinct_window_ms, c.max_scan);
            },
            [](const py::tuple& t) {
                return make_config(t[0].cast<std::vector<int64_t>>(), t[1].cast<int64_t>(),
                                   t[2].cast<int64_t>());
            }));

    m.def("feature_names", [](const FeatureConfig& c) { return feature_names(c); },
          py::arg("config") = defaults, "Feature names for a config, in column order.");
    m.def("window_label", &window_label, py::arg("ms"),
          "Label of a window in feature names: 3600000 -> '1h', 604800000 -> '7d'.");

    py::class_<PyStore>(m, "Store",
                        "The temporal store and the point-in-time features over it. records: a "
                        "NumPy structured array of fraud_txn's layout (TXN_ITEMSIZE, TXN_OFFSETS).")
        .def(py::init<const FeatureConfig&, int64_t, int64_t, int64_t>(), py::arg("config") = defaults,
             py::arg("expected_transactions") = 0, py::kw_only(), py::arg("retention_ms") = 0,
             py::arg("max_history_per_entity") = 0,
             "retention_ms: evict history older than watermark - retention_ms (0 = keep all); "
             "max_history_per_entity: newest events kept per entity (0 = no limit).")
        .def_property_readonly("evicted", &PyStore::evicted,
                               "Transactions evicted by retention so far.")
        .def_property_readonly("approx_bytes", &PyStore::approx_bytes,
                               "Approximate heap bytes held by the store.")
        .def_property_readonly("retention_ms",
                               [](const PyStore& s) { return s.store_config().retention_ms; })
        .def_property_readonly("max_history_per_entity",
                               [](const PyStore& s) { return s.store_config().max_history_per_entity; })
        .def("memory_breakdown", &PyStore::memory_breakdown,
             "approx_bytes by part: [(name, bytes)].")
        .def("num_entities", &PyStore::num_entities, py::arg("entity"),
             "Entities of this type (0 card, 1 device, 2 merchant, 3 ip) with retained history.")
        .def("history_size", &PyStore::history_size, py::arg("entity"), py::arg("id"),
             "Retained events of one entity (0 when none).")
        .def("contains_txn_id", &PyStore::contains_txn_id, py::arg("txn_id"))
        .def("within_retention", &PyStore::within_retention, py::arg("timestamp_ms"),
             "False when timestamp_ms < watermark_ms - retention_ms.")
        .def("write_snapshot", &PyStore::write_snapshot, py::arg("path"),
             "Write a snapshot atomically (temp file, fsync, rename, directory fsync).")
        .def("restore",
             [](PyStore& s, const std::string& dir) {
                 const RestoreStats r = s.restore(dir);
                 py::dict d;
                 d["snapshot_loaded"] = r.snapshot_loaded;
                 d["snapshot_transactions"] = r.snapshot_transactions;
                 d["log_records"] = r.log_records;
                 d["log_transactions"] = r.log_transactions;
                 d["log_skipped"] = r.log_skipped;
                 d["torn_tail_bytes"] = r.torn_tail_bytes;
                 return d;
             },
             py::arg("dir"),
             "Replace the store with dir's store.snapshot then store.log (all or nothing); "
             "returns counts.")
        .def("ingest", &PyStore::ingest, py::arg("records"),
             "Append records (all or nothing: validated first).")
        .def("features", &PyStore::features, py::arg("records"),
             "float32 [n, num_features]: features against the store as it stands; stores nothing.")
        .def("features_and_ingest", &PyStore::features_and_ingest, py::arg("records"),
             "Per record in order: its features, then append it. Validated as a whole first.")
        .def_property_readonly("size", &PyStore::size)
        .def_property_readonly("watermark_ms", &PyStore::watermark_ms)
        .def_property_readonly("num_features",
                               [](const PyStore& s) { return s.computer().size(); })
        .def_property_readonly("feature_names",
                               [](const PyStore& s) { return s.computer().names(); })
        .def_property_readonly("config", [](const PyStore& s) { return s.computer().config(); });

    py::class_<PyStateLog>(m, "StateLog",
                           "The append-only log of a state directory (store.log), for tests.")
        .def(py::init<const std::string&, bool>(), py::arg("dir"), py::arg("fsync") = false)
        .def("append", &PyStateLog::append, py::arg("records"))
        .def("reset", &PyStateLog::reset, "Empty the log (after a snapshot of dir/store.snapshot).")
        .def_property_readonly("next_seq", &PyStateLog::next_seq)
        .def_property_readonly("bytes", &PyStateLog::bytes);
    m.def("snapshot_path", &snapshot_path, py::arg("dir"));
    m.def("log_path", &log_path, py::arg("dir"));
}
