// _core.TreeLibrary: the serving engine's tree loader, for parity checks and benchmarks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <utility>

#include "common/error.h"
#include "engine/manifest.h"
#include "engine/model.h"
#include "engine/tree_library.h"

namespace py = pybind11;

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
