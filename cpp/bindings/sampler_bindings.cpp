#include <pybind11/pybind11.h>
void bind_sampler(pybind11::module_&) {}
