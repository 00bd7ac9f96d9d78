// NumPy arrays of events and labels (python/libfraud/events.py), checked against the schema and
// viewed as fraud_event / fraud_label without copying the arrays themselves.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "schema/schema.h"

namespace libfraud::bindings {

namespace py = pybind11;

// The arguments every event-taking binding has, in EventArrays.args() order.
#define LIBFRAUD_EVENT_ARGS                                                                    \
    py::arg("event_id"), py::arg("time_ms"), py::arg("amount"), py::arg("entity_id"), py::arg("numeric"), \
        py::arg("categorical")
#define LIBFRAUD_LABEL_ARGS py::arg("label_event_id"), py::arg("label"), py::arg("label_time_ms")

template <class T>
const T* checked(const py::array& a, const char* name, const char* dtype, size_t rows, size_t cols, bool matrix) {
    auto fail = [&](const std::string& got) {
        throw py::value_error(std::string(name) + ": expected a C-contiguous " + dtype + " array of shape (" +
                              std::to_string(rows) + (matrix ? ", " + std::to_string(cols) : std::string(",")) +
                              "); got " + got);
    };
    if (!a.dtype().equal(py::dtype::of<T>())) fail("dtype " + py::str(a.dtype()).cast<std::string>());
    if (!(a.flags() & py::array::c_style)) fail("a non-contiguous array");
    const size_t want_ndim = matrix ? 2 : 1;
    if (static_cast<size_t>(a.ndim()) != want_ndim) fail(std::to_string(a.ndim()) + " dimensions");
    if (static_cast<size_t>(a.shape(0)) != rows || (matrix && static_cast<size_t>(a.shape(1)) != cols))
        fail("shape (" + std::to_string(a.shape(0)) + (matrix ? ", " + std::to_string(a.shape(1)) : std::string(",")) + ")");
    return static_cast<const T*>(a.data());
}

// Private, aligned copies of the caller's arrays, taken with the GIL held: the core then reads
// (validates, logs, stores) bytes no other Python thread can change while the GIL is released, so
// what was validated is what reaches the log. Aligned too: reading an int64 or a double through a
// misaligned pointer (a view at an odd byte offset) is undefined.
class PrivateCopies {
public:
    template <class T>
    const T* own(const T* p, size_t count) {
        copies_.emplace_back((count * sizeof(T) + 7) / 8);
        if (count) std::memcpy(copies_.back().data(), p, count * sizeof(T));
        return reinterpret_cast<const T*>(copies_.back().data());
    }

private:
    std::vector<std::vector<uint64_t>> copies_;
};

class EventsView {
public:
    EventsView(const Schema& s, const py::array& event_id, const py::array& time_ms, const py::array& amount,
               const py::array& entity_id, const py::array& numeric, const py::array& categorical) {
        if (event_id.ndim() != 1) throw py::value_error("event_id: expected a 1-D int64 array");
        const size_t n = static_cast<size_t>(event_id.shape(0));
        const size_t E = s.num_entities(), N = s.num_numeric(), C = s.num_categorical();
        const auto* ids = copies_.own(checked<int64_t>(event_id, "event_id", "int64", n, 0, false), n);
        const auto* times = copies_.own(checked<int64_t>(time_ms, "time_ms", "int64", n, 0, false), n);
        const auto* amounts = copies_.own(checked<double>(amount, "amount", "float64", n, 0, false), n);
        const auto* ents = copies_.own(checked<int64_t>(entity_id, "entity_id", "int64", n, E, true), n * E);
        const auto* nums = copies_.own(checked<double>(numeric, "numeric", "float64", n, N, true), n * N);
        const auto* cats = copies_.own(checked<int64_t>(categorical, "categorical", "int64", n, C, true), n * C);
        events_.resize(n);
        for (size_t i = 0; i < n; ++i) {
            events_[i] = fraud_event{ids[i], times[i], amounts[i], ents + i * E, N ? nums + i * N : nullptr,
                                     C ? cats + i * C : nullptr};
        }
    }
    const fraud_event* data() const { return events_.data(); }
    size_t size() const { return events_.size(); }

private:
    PrivateCopies copies_;
    std::vector<fraud_event> events_;
};

class LabelsView {
public:
    LabelsView(const py::array& event_id, const py::array& label, const py::array& label_time_ms) {
        if (event_id.ndim() != 1) throw py::value_error("label_event_id: expected a 1-D int64 array");
        const size_t n = static_cast<size_t>(event_id.shape(0));
        PrivateCopies copies;
        const auto* ids = copies.own(checked<int64_t>(event_id, "label_event_id", "int64", n, 0, false), n);
        const auto* labels = checked<int8_t>(label, "label", "int8", n, 0, false);
        const auto* times = copies.own(checked<int64_t>(label_time_ms, "label_time_ms", "int64", n, 0, false), n);
        labels_.resize(n);
        for (size_t i = 0; i < n; ++i) labels_[i] = fraud_label{ids[i], times[i], labels[i], 0};
    }
    const fraud_label* data() const { return labels_.data(); }
    size_t size() const { return labels_.size(); }

private:
    std::vector<fraud_label> labels_;
};

}  // namespace libfraud::bindings
