// _core.GnnModel: a GNN artifact run through its backend plugin, for parity tests and benchmarks;
// _core.missing_cpu_flags for the AOTInductor ISA check.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend_registry.h"

namespace py = pybind11;

namespace {

using libfraud::GnnModel;

using FloatArray = py::array_t<float, py::array::c_style>;

// The float32 array `name` with shape `want` (-1 = any), made C-contiguous; ValueError otherwise.
FloatArray checked(const py::array& a, const char* name, const std::vector<int64_t>& want) {
    if (!a.dtype().is(py::dtype::of<float>())) {
        throw py::value_error(std::string(name) + " must be float32, got " +
                              std::string(py::str(a.dtype())));
    }
    bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
    for (size_t i = 0; ok && i < want.size(); ++i) {
        ok = want[i] < 0 || a.shape(static_cast<py::ssize_t>(i)) == want[i];
    }
    if (!ok) {
        auto fmt = [](auto begin, auto end) {
            std::string s;
            for (auto it = begin; it != end; ++it) {
                s += (s.empty() ? "" : ", ") + (*it < 0 ? std::string("*") : std::to_string(*it));
            }
            return "[" + s + "]";
        };
        throw py::value_error(std::string(name) + " has shape " + fmt(a.shape(), a.shape() + a.ndim()) +
                              ", expected " + fmt(want.begin(), want.end()));
    }
    return FloatArray::ensure(a);
}

// The seven arrays, checked against each other; they stay alive as long as this does. B and Ft
// come from target_x, E from ent1_x, K from txn2_x; the backend checks E and Ft against its model.
struct Inputs {
    std::vector<FloatArray> arrays;
    fraud_gnn_inputs c{};

    Inputs(const py::array& target_x, const py::array& ent1_x, const py::array& ent1_mask,
           const py::array& txn2_x, const py::array& txn2_mask, const py::array& ent3_x,
           const py::array& ent3_mask) {
        FloatArray t = checked(target_x, "target_x", {-1, -1});
        const int64_t B = t.shape(0), Ft = t.shape(1);
        FloatArray e1 = checked(ent1_x, "ent1_x", {B, -1, -1});
        const int64_t E = e1.shape(1);
        const int64_t Fe = E + 1;  // one-hot type, log1p(degree)
        FloatArray x2 = checked(txn2_x, "txn2_x", {B, E, -1, Ft});
        const int64_t K = x2.shape(2);
        if (K <= 0) throw py::value_error("txn2_x has fanout 0, expected >= 1");
        arrays = {t,
                  checked(e1, "ent1_x", {B, E, Fe}),
                  checked(ent1_mask, "ent1_mask", {B, E}),
                  x2,
                  checked(txn2_mask, "txn2_mask", {B, E, K}),
                  checked(ent3_x, "ent3_x", {B, E, K, E, Fe}),
                  checked(ent3_mask, "ent3_mask", {B, E, K, E})};
        c.batch = B;
        c.fanout = K;
        c.num_entity_types = E;
        c.txn_features = Ft;
        c.target_x = arrays[0].data();
        c.ent1_x = arrays[1].data();
        c.ent1_mask = arrays[2].data();
        c.txn2_x = arrays[3].data();
        c.txn2_mask = arrays[4].data();
        c.ent3_x = arrays[5].data();
        c.ent3_mask = arrays[6].data();
    }
};

}  // namespace

void bind_gnn(py::module_& m) {
    py::class_<GnnModel, std::unique_ptr<GnnModel>>(
        m, "GnnModel",
        "A GNN artifact run through its backend plugin (e.g. libfraud_torch.so for 'torchscript' "
        "and 'aoti'). run() may be called from many threads at once.")
        .def(py::init([](const std::string& kind, const std::string& path, int64_t embedding_dim,
                         const std::string& plugin_dir, const std::string& expected_sha256) {
                 py::gil_scoped_release release;
                 return GnnModel::load(kind, path, embedding_dim, plugin_dir, expected_sha256);
             }),
             py::arg("kind"), py::arg("path"), py::arg("embedding_dim"), py::arg("plugin_dir") = "",
             py::arg("expected_sha256") = "",
             "Load the artifact at path with the plugin for kind. plugin_dir: where the plugin is "
             "(default: beside the core, <package>/lib). expected_sha256: the bytes loaded (a sealed "
             "copy) must have it. Raises FraudError with status FRAUD_STATUS_BACKEND_UNAVAILABLE (no "
             "plugin), FRAUD_STATUS_BUNDLE_CHECKSUM (other bytes) or FRAUD_STATUS_LOAD_ERROR (bad artifact).")
        .def_property_readonly("kind", &GnnModel::kind)
        .def_property_readonly("embedding_dim", &GnnModel::embedding_dim)
        .def_property_readonly("plugin_path", &GnnModel::plugin_path)
        .def(
            "run",
            [](const GnnModel& self, py::array target_x, py::array ent1_x, py::array ent1_mask,
               py::array txn2_x, py::array txn2_mask, py::array ent3_x, py::array ent3_mask) {
                Inputs in(target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask);
                const py::ssize_t B = in.c.batch, D = self.embedding_dim();
                py::array_t<float> logits(B);
                py::array_t<float> emb({B, D});
                float* lp = logits.mutable_data();
                float* ep = emb.mutable_data();
                {
                    py::gil_scoped_release release;
                    self.run(in.c, lp, ep);
                }
                return py::make_tuple(logits, emb);
            },
            py::arg("target_x"), py::arg("ent1_x"), py::arg("ent1_mask"), py::arg("txn2_x"),
            py::arg("txn2_mask"), py::arg("ent3_x"), py::arg("ent3_mask"),
            "(logits float32 [B], embeddings float32 [B, D]) for the neighbourhood arrays of "
            "sampler/neighbourhood.h (float32; ValueError names a bad one). Releases the GIL.")
        .def(
            "time_run",
            [](const GnnModel& self, py::array target_x, py::array ent1_x, py::array ent1_mask,
               py::array txn2_x, py::array txn2_mask, py::array ent3_x, py::array ent3_mask,
               int64_t repeats, int64_t warmup) {
                if (repeats < 1 || warmup < 0) {
                    throw py::value_error("repeats must be >= 1 and warmup >= 0");
                }
                Inputs in(target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask);
                std::vector<float> logits(static_cast<size_t>(in.c.batch));
                std::vector<float> emb(static_cast<size_t>(in.c.batch * self.embedding_dim()));
                py::array_t<int64_t> ns(repeats);
                int64_t* out = ns.mutable_data();
                {
                    py::gil_scoped_release release;
                    for (int64_t i = 0; i < warmup; ++i) self.run(in.c, logits.data(), emb.data());
                    for (int64_t i = 0; i < repeats; ++i) {
                        const auto t0 = std::chrono::steady_clock::now();
                        self.run(in.c, logits.data(), emb.data());
                        const auto t1 = std::chrono::steady_clock::now();
                        out[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
                    }
                }
                return ns;
            },
            py::arg("target_x"), py::arg("ent1_x"), py::arg("ent1_mask"), py::arg("txn2_x"),
            py::arg("txn2_mask"), py::arg("ent3_x"), py::arg("ent3_mask"), py::arg("repeats"),
            py::arg("warmup") = 0,
            "Nanoseconds of each of `repeats` run() calls on the same inputs, timed in C++ "
            "(steady_clock, GIL released) after `warmup` untimed calls; int64 [repeats].");

    m.def("missing_cpu_flags", &libfraud::missing_cpu_flags, py::arg("required"),
          "The flags of `required` (e.g. ['avx512f']) this CPU lacks, from /proc/cpuinfo.");
}
