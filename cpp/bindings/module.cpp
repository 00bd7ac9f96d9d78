// libfraud._core: the C++ core for Python. Errors arrive as libfraud._core.FraudError with .status.
#include <pybind11/pybind11.h>

#include "common/error.h"
#include "libfraud/fraud.h"

namespace py = pybind11;

void bind_engine(py::module_& m);
void bind_store(py::module_& m);
void bind_trees(py::module_& m);
void bind_sampler(py::module_& m);
void bind_gnn(py::module_& m);
void bind_explain(py::module_& m);
void bind_decision(py::module_& m);
void bind_drift(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "libfraud's C++ core: temporal store, features, compiled trees, engine";
    static PyObject* fraud_error =
        PyErr_NewExceptionWithDoc("libfraud._core.FraudError",
                                  "An error from the libfraud core; .status names its fraud_status.",
                                  PyExc_RuntimeError, nullptr);
    m.attr("FraudError") = py::handle(fraud_error);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const libfraud::FraudError& e) {
            py::object error = py::reinterpret_borrow<py::object>(fraud_error)(e.what());
            error.attr("status") = fraud_status_name(e.status());
            PyErr_SetObject(fraud_error, error.ptr());
        }
    });
    m.attr("__version__") = fraud_version();
    m.attr("BUNDLE_FORMAT_VERSION") = FRAUD_BUNDLE_FORMAT_VERSION;
    bind_store(m);
    bind_trees(m);
    bind_sampler(m);
    bind_gnn(m);
    bind_engine(m);
    bind_explain(m);
    bind_decision(m);
    bind_drift(m);
}
