// Python bindings for the neighbourhood sampler: training samples every transaction of a replayed
// history through the same C++ code that serves.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "bindings/records.h"
#include "common/error.h"
#include "sampler/neighbourhood.h"
#include "sampler/sampler.h"
#include "store/temporal_store.h"
#include "store/validate.h"

namespace py = pybind11;

// Defined in store_bindings.cpp.
void with_store_read_locked(const py::handle& store,
                            void (*fn)(const libfraud::TemporalStore&, void*), void* ctx);
const libfraud::Schema& store_schema(const py::handle& store);

namespace libfraud {
namespace {

using bindings::EventsView;
using A = const py::array&;

// The sampler with the schema it was built for: a store of another schema is refused.
struct PySampler {
    Schema schema;
    Sampler sampler;
    std::vector<std::string> graph_fields;
};

std::vector<FieldRef> graph_refs(const Schema& s, const std::vector<std::string>& names) {
    std::vector<FieldRef> out;
    for (const auto& n : names) {
        if (s.numeric_index(n) >= 0) {
            out.push_back({FieldRef::Numeric, s.numeric_index(n)});
        } else if (s.categorical_index(n) >= 0) {
            out.push_back({FieldRef::Categorical, s.categorical_index(n)});
        } else {
            throw py::value_error("graph field '" + n + "' is not a numeric or categorical field of the schema");
        }
    }
    return out;
}

PySampler make_sampler(const py::object& store, SamplerConfig config, const std::vector<std::string>& graph_fields) {
    const Schema& s = store_schema(store);
    config.graph_fields = graph_refs(s, graph_fields);
    return PySampler{s, Sampler(s, config), graph_fields};
}

// Runs fn(const TemporalStore&) under the store's read lock, GIL released.
template <class Fn>
void read_store(const py::handle& store, Fn&& fn) {
    with_store_read_locked(
        store, [](const TemporalStore& s, void* ctx) { (*static_cast<Fn*>(ctx))(s); }, &fn);
}

// Per-target dimensions of each array, in neighbourhood.h's order.
struct ArraySpec {
    const char* name;
    bool is_id;
    std::vector<py::ssize_t> dims;
};

std::vector<ArraySpec> array_specs(const NeighbourhoodShape& sh) {
    const py::ssize_t E = sh.entity_types, K = sh.fanout, T = sh.txn_features,
                      F = static_cast<py::ssize_t>(sh.entity_features());
    return {
        {"target_x", false, {T}},         {"ent1_x", false, {E, F}},
        {"ent1_mask", false, {E}},        {"txn2_x", false, {E, K, T}},
        {"txn2_mask", false, {E, K}},     {"ent3_x", false, {E, K, E, F}},
        {"ent3_mask", false, {E, K, E}},  {"ent1_id", true, {E}},
        {"txn2_id", true, {E, K}},        {"ent3_id", true, {E, K, E}},
    };
}

// Arrays of `batch` targets, and the buffers pointing into them.
struct Batch {
    py::dict arrays;
    NeighbourhoodBuffers buffers;
};

Batch make_batch(const NeighbourhoodShape& sh, size_t batch) {
    Batch b;
    for (const ArraySpec& spec : array_specs(sh)) {
        std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(batch)};
        shape.insert(shape.end(), spec.dims.begin(), spec.dims.end());
        if (spec.is_id) {
            py::array_t<int64_t> a(shape);
            int64_t* p = a.mutable_data();
            const std::string n = spec.name;
            if (n == "ent1_id") b.buffers.ent1_id = p;
            if (n == "txn2_id") b.buffers.txn2_id = p;
            if (n == "ent3_id") b.buffers.ent3_id = p;
            b.arrays[spec.name] = a;
        } else {
            py::array_t<float> a(shape);
            float* p = a.mutable_data();
            const std::string n = spec.name;
            if (n == "target_x") b.buffers.target_x = p;
            if (n == "ent1_x") b.buffers.ent1_x = p;
            if (n == "ent1_mask") b.buffers.ent1_mask = p;
            if (n == "txn2_x") b.buffers.txn2_x = p;
            if (n == "txn2_mask") b.buffers.txn2_mask = p;
            if (n == "ent3_x") b.buffers.ent3_x = p;
            if (n == "ent3_mask") b.buffers.ent3_mask = p;
            b.arrays[spec.name] = a;
        }
    }
    return b;
}

void check_schema(const PySampler& p, const py::object& store) {
    if (store_schema(store).layout_key() != p.schema.layout_key())
        throw py::value_error("store: its schema is not the one this sampler was built for");
}

py::dict sample(const PySampler& p, const py::object& store, const EventsView& view) {
    check_schema(p, store);
    const Sampler& sampler = p.sampler;
    Batch b = make_batch(sampler.shape(), view.size());
    read_store(store, [&](const TemporalStore& s) {
        validate_fields(s.schema(), view.data(), view.size());
        for (size_t i = 0; i < view.size(); ++i) sampler.sample(s, view.data()[i], b.buffers, i);
    });
    return b.arrays;
}

// ns of each sample() call, [repeats, n], each call timed alone (batch 1, one thread), after one
// untimed pass over the records; the Python overhead is outside the figure.
py::array_t<int64_t> time_sample(const PySampler& p, const py::object& store, const EventsView& view,
                                 int64_t repeats) {
    if (repeats < 1) throw py::value_error("repeats: must be >= 1, got " + std::to_string(repeats));
    check_schema(p, store);
    const Sampler& sampler = p.sampler;
    Batch b = make_batch(sampler.shape(), 1);
    py::array_t<int64_t> out({static_cast<py::ssize_t>(repeats), static_cast<py::ssize_t>(view.size())});
    int64_t* ns = out.mutable_data();
    read_store(store, [&](const TemporalStore& s) {
        using clock = std::chrono::steady_clock;
        validate_fields(s.schema(), view.data(), view.size());
        for (size_t i = 0; i < view.size(); ++i) sampler.sample(s, view.data()[i], b.buffers, 0);
        for (int64_t r = 0; r < repeats; ++r) {
            for (size_t i = 0; i < view.size(); ++i) {
                const auto t0 = clock::now();
                sampler.sample(s, view.data()[i], b.buffers, 0);
                const auto t1 = clock::now();
                *ns++ = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
            }
        }
    });
    return out;
}

SamplerConfig make_config(int64_t fanout, const std::string& strategy, uint64_t seed,
                          int64_t retention_ms) {
    if (fanout < 1 || fanout > kMaxFanout) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "fanout: must be in 1.." +
                                                            std::to_string(kMaxFanout) + ", got " +
                                                            std::to_string(fanout));
    }
    SamplerConfig c;
    c.fanout = static_cast<uint32_t>(fanout);
    c.strategy = parse_strategy(strategy);
    c.seed = seed;
    c.retention_ms = retention_ms;
    validate_sampler_config(c);
    return c;
}

std::string config_repr(const SamplerConfig& c) {
    std::ostringstream s;
    s << "SamplerConfig(fanout=" << c.fanout << ", strategy='" << strategy_name(c.strategy)
      << "', seed=" << c.seed << ", retention_ms=" << c.retention_ms << ")";
    return s.str();
}

}  // namespace
}  // namespace libfraud

// Global, as module.cpp declares it.
void bind_sampler(py::module_& m) {
    using namespace libfraud;
    const SamplerConfig d;

    py::class_<SamplerConfig>(m, "SamplerConfig",
                              "Neighbourhood sampler configuration (immutable). strategy: "
                              "'most_recent' or 'uniform'. Raises FraudError when invalid.")
        .def(py::init(&make_config), py::arg("fanout") = static_cast<int64_t>(d.fanout),
             py::arg("strategy") = strategy_name(d.strategy), py::arg("seed") = d.seed,
             py::arg("retention_ms") = d.retention_ms)
        .def_property_readonly("fanout", [](const SamplerConfig& c) { return c.fanout; })
        .def_property_readonly("strategy",
                               [](const SamplerConfig& c) { return strategy_name(c.strategy); })
        .def_property_readonly("seed", [](const SamplerConfig& c) { return c.seed; })
        .def_property_readonly("retention_ms", [](const SamplerConfig& c) { return c.retention_ms; })
        .def("__repr__", &config_repr)
        .def("__eq__",
             [](const SamplerConfig& a, const py::object& b) -> py::object {
                 if (!py::isinstance<SamplerConfig>(b)) {
                     return py::reinterpret_borrow<py::object>(Py_NotImplemented);
                 }
                 return py::bool_(config_repr(a) == config_repr(b.cast<const SamplerConfig&>()));
             })
        .def("__hash__", [](const SamplerConfig& c) { return py::hash(py::str(config_repr(c))); })
        .def(py::pickle(
            [](const SamplerConfig& c) {
                return py::make_tuple(c.fanout, strategy_name(c.strategy), c.seed, c.retention_ms);
            },
            [](const py::tuple& t) {
                return make_config(t[0].cast<int64_t>(), t[1].cast<std::string>(),
                                   t[2].cast<uint64_t>(), t[3].cast<int64_t>());
            }));

    py::class_<PySampler>(m, "Sampler",
                          "Temporal neighbourhood sampler (see cpp/src/sampler/sampler.h): fixed-shape "
                          "padded arrays of each target's 3-hop past, from a _core.Store of the schema "
                          "of `store`; graph_fields: numeric/categorical fields appended to the txn features.")
        .def(py::init(&make_sampler), py::arg("store"), py::arg("config") = d,
             py::arg("graph_fields") = std::vector<std::string>{})
        .def_property_readonly("config", [](const PySampler& p) { return p.sampler.config(); })
        .def_property_readonly("graph_fields", [](const PySampler& p) { return p.graph_fields; })
        .def_property_readonly("entity_types", [](const PySampler& p) { return p.sampler.shape().entity_types; })
        .def_property_readonly("txn_features", [](const PySampler& p) { return p.sampler.shape().txn_features; })
        .def_property_readonly(
            "shape",
            [](const PySampler& p) {
                py::dict shapes;
                for (const auto& spec : array_specs(p.sampler.shape())) {
                    py::tuple dims(spec.dims.size());
                    for (size_t j = 0; j < spec.dims.size(); ++j) dims[j] = py::int_(spec.dims[j]);
                    shapes[spec.name] = dims;
                }
                return shapes;
            },
            "Per-target shape of each array, e.g. {'txn2_x': (E, K, Ft), ...}.")
        .def("sample",
             [](const PySampler& p, const py::object& store, A a, A b, A c, A e, A f, A g) {
                 return sample(p, store, EventsView(p.schema, a, b, c, e, f, g));
             },
             py::arg("store"), LIBFRAUD_EVENT_ARGS,
             "dict of arrays, each [n, *shape[name]]: float32 features and masks, int64 ids "
             "(-1 where masked). Sees only stored events earlier than each one; takes the "
             "store's read lock with the GIL released.")
        .def("time_sample",
             [](const PySampler& p, const py::object& store, A a, A b, A c, A e, A f, A g, int64_t repeats) {
                 return time_sample(p, store, EventsView(p.schema, a, b, c, e, f, g), repeats);
             },
             py::arg("store"), LIBFRAUD_EVENT_ARGS, py::arg("repeats") = 1,
             "int64 [repeats, n]: nanoseconds of each one-target sample() call, timed in C++.");
}
