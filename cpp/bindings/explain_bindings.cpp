// _core.tree_shap: exact TreeSHAP contributions from the core, for parity checks against XGBoost.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "explain/fast_tree_shap.h"
#include "explain/tree_shap.h"

namespace py = pybind11;

namespace {

// A 1-D C-contiguous array of exactly T: tables are built by export/shap_tables.py, so a wrong
// dtype is a bug to report, not something to convert silently.
template <typename T>
const T* column(const py::array& a, const char* name, size_t n) {
    if (!py::isinstance<py::array_t<T>>(a) || a.ndim() != 1 || !(a.flags() & py::array::c_style)) {
        throw py::value_error(std::string(name) + " must be a 1-D C-contiguous " +
                              std::string(py::str(py::dtype::of<T>())) + " array, got " +
                              std::string(py::str(a.dtype())) + " with " +
                              std::to_string(a.ndim()) + " dimensions");
    }
    if (static_cast<size_t>(a.shape(0)) != n) {
        throw py::value_error(std::string(name) + " has " + std::to_string(a.shape(0)) +
                              " entries, expected " + std::to_string(n));
    }
    return static_cast<const T*>(a.data());
}

// method="tables" builds FastTreeShap per call: generous, but short of exhausting a machine.
constexpr size_t kTablesBudgetBytes = size_t{1} << 30;

std::string megabytes(size_t bytes) {
    return std::to_string((bytes + (size_t{1} << 20) - 1) >> 20) + " MiB";
}

}  // namespace

void bind_explain(py::module_& m) {
    m.def(
        "tree_shap",
        [](py::array feature, py::array threshold, py::array left, py::array right,
           py::array default_left, py::array cover, py::array value, py::array tree_offsets,
           size_t num_features, size_t max_depth, double expected_value, py::array rows,
           const std::string& method) {
            if (method != "recursive" && method != "tables") {
                throw py::value_error("method must be 'recursive' or 'tables', got '" + method +
                                      "'");
            }
            const auto n_nodes = static_cast<size_t>(feature.ndim() == 1 ? feature.shape(0) : 0);
            if (tree_offsets.ndim() != 1 || tree_offsets.shape(0) < 1) {
                throw py::value_error("tree_offsets must be 1-D with n_trees + 1 entries");
            }
            libfraud::TreeShapTables t;
            t.feature = column<int32_t>(feature, "feature", n_nodes);
            t.threshold = column<float>(threshold, "threshold", n_nodes);
            t.left = column<int32_t>(left, "left", n_nodes);
            t.right = column<int32_t>(right, "right", n_nodes);
            t.default_left = column<uint8_t>(default_left, "default_left", n_nodes);
            t.cover = column<double>(cover, "cover", n_nodes);
            t.value = column<double>(value, "value", n_nodes);
            t.n_trees = static_cast<size_t>(tree_offsets.shape(0)) - 1;
            t.tree_offsets = column<int64_t>(tree_offsets, "tree_offsets", t.n_trees + 1);
            t.num_features = num_features;
            t.max_depth = max_depth;
            t.expected_value = expected_value;
            libfraud::tree_shap_validate(t, n_nodes);

            if (rows.ndim() != 2 || !py::isinstance<py::array_t<float>>(rows) ||
                !(rows.flags() & py::array::c_style)) {
                throw py::value_error("rows must be a 2-D C-contiguous float32 array, got dtype " +
                                      std::string(py::str(rows.dtype())) + " with " +
                                      std::to_string(rows.ndim()) + " dimensions");
            }
            const auto n = static_cast<size_t>(rows.shape(0));
            if (static_cast<size_t>(rows.shape(1)) != num_features) {
                throw py::value_error("rows has " + std::to_string(rows.shape(1)) +
                                      " columns, the tables have " + std::to_string(num_features) +
                                      " features");
            }
            py::array_t<double> out({static_cast<py::ssize_t>(n),
                                     static_cast<py::ssize_t>(num_features + 1)});
            const auto* x = static_cast<const float*>(rows.data());
            double* phi = out.mutable_data();
            if (method == "recursive") {
                std::vector<double> scratch(libfraud::tree_shap_scratch_size(max_depth));
                {
                    py::gil_scoped_release release;
                    for (size_t i = 0; i < n; ++i) {
                        libfraud::tree_shap(t, x + i * num_features, phi + i * (num_features + 1),
                                            scratch.data());
                    }
                }
                return out;
            }
            std::unique_ptr<libfraud::FastTreeShap> fast;
            {
                py::gil_scoped_release release;
                fast = libfraud::FastTreeShap::build(t, kTablesBudgetBytes);
            }
            if (!fast) {
                const size_t need = libfraud::fast_tree_shap_bytes(t);
                throw py::value_error(
                    need == std::numeric_limits<size_t>::max()
                        ? std::string("method='tables': a path has more than 31 distinct features; "
                                      "use method='recursive'")
                        : "method='tables': the tables need " + megabytes(need) + ", over the " +
                              megabytes(kTablesBudgetBytes) + " budget; use method='recursive'");
            }
            std::vector<double> scratch(fast->scratch_size());
            {
                py::gil_scoped_release release;
                for (size_t i = 0; i < n; ++i) {
                    fast->contributions(x + i * num_features, phi + i * (num_features + 1),
                                        scratch.data());
                }
            }
            return out;
        },
        py::arg("feature"), py::arg("threshold"), py::arg("left"), py::arg("right"),
        py::arg("default_left"), py::arg("cover"), py::arg("value"), py::arg("tree_offsets"),
        py::arg("num_features"), py::arg("max_depth"), py::arg("expected_value"), py::arg("rows"),
        py::kw_only(), py::arg("method") = "recursive",
        "Exact path-dependent TreeSHAP of rows (C-contiguous float32 [n, num_features], NaN = "
        "missing) over the flat tables of export/shap_tables.py: float64 [n, num_features + 1], "
        "the last column expected_value, each row summing to its margin. method: 'recursive' "
        "(Lundberg's Algorithm 2) or 'tables' (FastTreeShap: per-leaf tables built for the call, "
        "the same values up to float32 rounding, ~1e-8; ValueError when they would exceed the "
        "1 GiB budget). Raises FraudError (INVALID_ARGUMENT) on malformed tables, ValueError on "
        "wrong dtypes, shapes or method. Releases the GIL.");
}
