// Python's Engine goes through the C API itself, so Python and C callers share one path.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <string>
#include <vector>

#include "bindings/records.h"
#include "common/error.h"
#include "libfraud/fraud.h"

namespace py = pybind11;
using libfraud::bindings::TxnView;

namespace {

void check(fraud_status status) {
    if (status != FRAUD_STATUS_OK) throw libfraud::FraudError(status, fraud_last_error());
}

class PyEngine {
public:
    PyEngine(const std::string& bundle_dir, int64_t expected_transactions, const std::string& gnn_backend,
             const std::string& plugin_dir) {
        fraud_engine_params params = fraud_engine_default_params();
        params.expected_transactions = expected_transactions;
        params.gnn_backend = gnn_backend.c_str();
        params.plugin_dir = plugin_dir.empty() ? nullptr : plugin_dir.c_str();
        fraud_engine* raw = nullptr;
        check(fraud_engine_open(bundle_dir.c_str(), &params, &raw));
        engine_.reset(raw);
        check(fraud_engine_num_features(raw, &num_features_));
    }

    size_t num_features() const { return num_features_; }

    std::vector<std::string> feature_names() const {
        std::vector<std::string> names;
        for (size_t i = 0; i < num_features_; ++i) {
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

    void ingest(const py::array& records) {
        TxnView span(records);
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_ingest(engine_.get(), span.data(), span.size());
        }
        check(status);
    }

    py::array_t<float> score(const py::array& records, bool ingest) {
        TxnView span(records);
        py::array_t<float> scores(static_cast<py::ssize_t>(span.size()));
        float* out = scores.mutable_data();
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = ingest ? fraud_engine_score_and_ingest(engine_.get(), span.data(), span.size(), out)
                            : fraud_engine_score(engine_.get(), span.data(), span.size(), out);
        }
        check(status);
        return scores;
    }

    py::array_t<float> features(const py::array& records) const {
        TxnView span(records);
        py::array_t<float> rows({static_cast<py::ssize_t>(span.size()), static_cast<py::ssize_t>(num_features_)});
        float* out = rows.mutable_data();
        fraud_status status;
        {
            py::gil_scoped_release release;
            status = fraud_engine_features(engine_.get(), span.data(), span.size(), out);
        }
        check(status);
        return rows;
    }

    py::array_t<float> score_features(const py::array_t<float, py::array::c_style | py::array::forcecast>& rows) const {
        if (rows.ndim() != 2 || static_cast<size_t>(rows.shape(1)) != num_features_)
            throw py::value_error("rows must be 2-D with " + std::to_string(num_features_) + " columns");
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

    // One C API call per transaction, each timed inside C++: the latency a switch sees, without
    // Python's own overhead in the figure.
    py::tuple score_and_ingest_timed(const py::array& records) {
        TxnView span(records);
        py::array_t<float> scores(static_cast<py::ssize_t>(span.size()));
        py::array_t<int64_t> latency_ns(static_cast<py::ssize_t>(span.size()));
        float* out = scores.mutable_data();
        int64_t* ns = latency_ns.mutable_data();
        fraud_status status = FRAUD_STATUS_OK;
        {
            py::gil_scoped_release release;
            for (size_t i = 0; i < span.size() && status == FRAUD_STATUS_OK; ++i) {
                auto start = std::chrono::steady_clock::now();
                status = fraud_engine_score_and_ingest(engine_.get(), span.data() + i, 1, out + i);
                ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - start).count();
            }
        }
        check(status);
        return py::make_tuple(scores, latency_ns);
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
    std::unique_ptr<fraud_engine, Free> engine_;
    size_t num_features_ = 0;
};

}  // namespace

void bind_engine(py::module_& m) {
    py::class_<PyEngine>(m, "Engine", "A loaded bundle with its temporal store (the C API's fraud_engine).")
        .def(py::init<const std::string&, int64_t, const std::string&, const std::string&>(), py::arg("bundle_dir"),
             py::arg("expected_transactions") = 0, py::arg("gnn_backend") = "", py::arg("plugin_dir") = "")
        .def_property_readonly("gnn_backend", &PyEngine::gnn_backend)
        .def_property_readonly("num_features", &PyEngine::num_features)
        .def_property_readonly("feature_names", &PyEngine::feature_names)
        .def_property_readonly("threshold", &PyEngine::threshold)
        .def("ingest", &PyEngine::ingest, py::arg("records"))
        .def("score", [](PyEngine& e, const py::array& r) { return e.score(r, false); }, py::arg("records"))
        .def("score_and_ingest", [](PyEngine& e, const py::array& r) { return e.score(r, true); }, py::arg("records"))
        .def("score_and_ingest_timed", &PyEngine::score_and_ingest_timed, py::arg("records"),
             "(scores, latency_ns): one C API call per transaction, timed in C++")
        .def("features", &PyEngine::features, py::arg("records"))
        .def("score_features", &PyEngine::score_features, py::arg("rows"))
        .def("store_size", &PyEngine::store_size, "(transactions stored, watermark_ms)");
}
