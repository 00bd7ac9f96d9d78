// _core.TreeLibrary and _core.FlatForest: the serving engine's two tree predictors, for parity
// checks and benchmarks; _core._tree_layouts: which one a bundle's model picks per call shape.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "engine/manifest.h"
#include "engine/flat_forest.h"
#include "engine/model.h"
#include "engine/tree_library.h"
#include "engine/tree_predictor.h"
#include "explain/shap_file.h"

namespace py = pybind11;

namespace {

// X as C-contiguous float32 [n, num_features], else ValueError naming what it is.
const float* checked_rows(py::array X, size_t num_features, size_t* n) {
    if (X.ndim() != 2)
        throw py::value_error("X must be 2-D (rows, features), got " + std::to_string(X.ndim()) + " dimensions");
    if (!py::isinstance<py::array_t<float>>(X) || !(X.flags() & py::array::c_style))
        throw py::value_error("X must be a C-contiguous float32 array, got dtype " + std::string(py::str(X.dtype())));
    if (static_cast<size_t>(X.shape(1)) != num_features)
        throw py::value_error("X has " + std::to_string(X.shape(1)) + " columns, the trees read " +
                              std::to_string(num_features));
    *n = static_cast<size_t>(X.shape(0));
    return static_cast<const float*>(X.data());
}

// The flat forest together with the tables it was built from (kept for nothing else: the forest
// copies what it needs).
struct PyFlatForest {
    std::unique_ptr<libfraud::FlatForest> forest;
};

}  // namespace

void bind_trees(py::module_& m) {
    using libfraud::TreeLibrary;
    py::class_<TreeLibrary>(m, "TreeLibrary",
                            "A compiled tree library (bundle target tl2cgen-c-shared).")
        .def(py::init<const std::string&, const std::string&>(), py::arg("path"),
             py::arg("expected_sha256") = "",
             "Load the shared library at path; raises FraudError naming the path on failure. "
             "expected_sha256: the bytes loaded must have this sha256 (BUNDLE_CHECKSUM otherwise).")
        .def_property_readonly("num_features", &TreeLibrary::num_features)
        .def_property_readonly("path", &TreeLibrary::path)
        .def(
            "predict",
            [](const TreeLibrary& self, py::array X) {
                if (X.ndim() != 2) {
                    throw py::value_error("X must be 2-D (rows, features), got " +
                                          std::to_string(X.ndim()) + " dimensions");
                }
                if (!py::isinstance<py::array_t<float>>(X) ||
                    !(X.flags() & py::array::c_style)) {
                    throw py::value_error("X must be a C-contiguous float32 array, got dtype " +
                                          std::string(py::str(X.dtype())));
                }
                const auto n = static_cast<size_t>(X.shape(0));
                const auto f = static_cast<size_t>(X.shape(1));
                if (f != self.num_features()) {
                    throw py::value_error("X has " + std::to_string(f) +
                                          " columns, the library expects " +
                                          std::to_string(self.num_features()));
                }
                py::array_t<float> out(static_cast<py::ssize_t>(n));
                const auto* rows = static_cast<const float*>(X.data());
                float* dst = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    self.predict_rows(rows, n, dst);
                }
                return out;
            },
            py::arg("X"),
            "Probabilities for X (C-contiguous float32 [n, num_features], NaN = missing); "
            "float32 [n]. Releases the GIL.");

    using libfraud::FlatForest;
    py::class_<PyFlatForest>(m, "FlatForest",
                             "The flat node-array tree predictor, built from a node tables file "
                             "(bundle target libfraud-tree-shap) and the booster's base margin.")
        .def(py::init([](const std::string& path, double base_margin, const std::string& sha256) {
                 const libfraud::ShapTablesFile tables = libfraud::read_shap_tables(path, sha256);
                 return PyFlatForest{std::make_unique<FlatForest>(tables.view(), base_margin)};
             }),
             py::arg("path"), py::arg("base_margin"), py::arg("expected_sha256") = "",
             "Read and validate the tables at path (FraudError naming the file otherwise) and pack them.")
        .def_property_readonly("num_features", [](const PyFlatForest& f) { return f.forest->num_features(); })
        .def_property_readonly("num_trees", [](const PyFlatForest& f) { return f.forest->num_trees(); })
        .def_property_readonly("num_nodes", [](const PyFlatForest& f) { return f.forest->num_nodes(); })
        .def_property_readonly("bytes", [](const PyFlatForest& f) { return f.forest->bytes(); })
        .def(
            "predict",
            [](const PyFlatForest& f, py::array X, const std::string& kernel) {
                if (kernel != "auto" && kernel != "row" && kernel != "block")
                    throw py::value_error("kernel is '" + kernel + "'; valid: auto, row, block");
                size_t n = 0;
                const float* rows = checked_rows(X, f.forest->num_features(), &n);
                py::array_t<float> out(static_cast<py::ssize_t>(n));
                float* dst = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    if (kernel == "row") {
                        for (size_t i = 0; i < n; ++i) dst[i] = f.forest->predict_row(rows + i * f.forest->num_features());
                    } else if (kernel == "block") {
                        f.forest->predict_block(rows, n, dst);
                    } else {
                        f.forest->predict_rows(rows, n, dst);
                    }
                }
                return out;
            },
            py::arg("X"), py::arg("kernel") = "auto",
            "Probabilities for X (C-contiguous float32 [n, num_features], NaN = missing). kernel: "
            "'row' (one row at a time), 'block' (FlatForest::kBlock rows through each tree), 'auto' "
            "(what the engine calls). Releases the GIL.");

    m.attr("TREE_FLAT_MIN_NODES") = libfraud::TreePredictor::kFlatMinNodes;
    m.def(
        "_tree_layouts",
        [](const std::string& bundle_dir, const std::vector<size_t>& ns) {
            const libfraud::Model model(bundle_dir, fraud_engine_default_params());
            py::dict out;
            py::list layouts;
            for (size_t n : ns) layouts.append(model.trees().layout_for(n));
            out["layouts"] = layouts;
            out["compiled_loaded"] = model.trees().compiled() != nullptr;
            out["flat"] = model.trees().flat() != nullptr;
            out["num_nodes"] = model.trees().flat() ? model.trees().flat()->num_nodes() : 0;
            return out;
        },
        py::arg("bundle_dir"), py::arg("ns"),
        "TEST/BENCH: open the bundle's model as the engine does (LIBFRAUD_TREE_LAYOUT honoured) and "
        "say which predictor serves a call of each row count in ns.");

    m.def(
        "verify_bundle",
        [](const std::string& path, const std::string& key_path) {
            libfraud::Manifest manifest = libfraud::read_manifest(path, key_path);
            libfraud::verify_bundle(manifest, key_path);
        },
        py::arg("path"), py::arg("key_path") = "",
        "Run the engine's checks before any load on the bundle directory path (permissions, the "
        "manifest's ed25519 signature when key_path names a trusted PEM public key, every "
        "artifact's size and sha256); loads nothing. Raises FraudError naming the first failure.");

    m.def(
        "_set_after_verify_hook",
        [](py::object hook) {
            if (hook.is_none()) {
                libfraud::set_after_verify_hook_for_testing(nullptr);
                return;
            }
            // The callable is released with the GIL held, whichever thread drops it last.
            std::shared_ptr<py::object> fn(new py::object(std::move(hook)), [](py::object* o) {
                py::gil_scoped_acquire gil;
                delete o;
            });
            libfraud::set_after_verify_hook_for_testing([fn](const std::string& bundle_dir) {
                py::gil_scoped_acquire gil;
                try {
                    (*fn)(bundle_dir);
                } catch (py::error_already_set& e) {
                    throw libfraud::FraudError(FRAUD_STATUS_INTERNAL, std::string("after-verify hook: ") + e.what());
                }
            });
        },
        py::arg("hook"),
        "TEST ONLY: hook(bundle_dir) runs after a bundle verifies and before any of its artifacts is "
        "read again (engine/model.h set_after_verify_hook_for_testing); None removes it.");
    // A hook left set must not outlive the interpreter it calls into.
    py::module_::import("atexit").attr("register")(
        py::cpp_function([] { libfraud::set_after_verify_hook_for_testing(nullptr); }));
}
