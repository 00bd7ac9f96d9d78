// NumPy records of the fraud_txn layout, checked field by field and viewed without copying.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "libfraud/fraud.h"

namespace libfraud::bindings {

namespace py = pybind11;

static_assert(sizeof(fraud_txn) == 64, "fraud_txn must be 64 bytes with no padding");

inline const char* const kExpectedLayout =
    "a C-contiguous 1-D NumPy structured array with itemsize 64 and fields txn_id <i8 @0, "
    "timestamp_ms <i8 @8, amount <f8 @16, entity_id (<i8, (4,)) @24, country <i4 @56, mcc <i4 @60";

struct FieldSpec {
    const char* name;
    const char* dtype;  // native byte order
    size_t offset;
};

inline const FieldSpec kFields[] = {
    {"txn_id", "=i8", offsetof(fraud_txn, txn_id)},
    {"timestamp_ms", "=i8", offsetof(fraud_txn, timestamp_ms)},
    {"amount", "=f8", offsetof(fraud_txn, amount)},
    {"entity_id", "4=i8", offsetof(fraud_txn, entity_id)},
    {"country", "=i4", offsetof(fraud_txn, country)},
    {"mcc", "=i4", offsetof(fraud_txn, mcc)},
};

// A view of the records as fraud_txn, without copying unless the buffer is misaligned.
class TxnView {
public:
    explicit TxnView(const py::array& records) : records_(records) {
        auto fail = [](const std::string& got) {
            throw py::value_error(std::string("records: expected ") + kExpectedLayout + "; got " +
                                  got);
        };
        const py::dtype dt = records.dtype();
        if (records.ndim() != 1) fail(std::to_string(records.ndim()) + " dimensions");
        if (dt.itemsize() != static_cast<py::ssize_t>(sizeof(fraud_txn))) {
            fail("dtype " + py::str(dt).cast<std::string>() + " with itemsize " +
                 std::to_string(dt.itemsize()));
        }
        if (!dt.has_fields()) fail("dtype " + py::str(dt).cast<std::string>() + " without fields");
        const py::dict fields = dt.attr("fields");
        for (const FieldSpec& f : kFields) {
            if (!fields.contains(f.name)) {
                fail("dtype " + py::str(dt).cast<std::string>() + " without field '" + f.name + "'");
            }
            const py::tuple info = fields[f.name];
            const py::dtype field_dt = info[0];
            const auto offset = info[1].cast<size_t>();
            if (offset != f.offset || !field_dt.equal(py::dtype(f.dtype))) {
                fail("field '" + std::string(f.name) + "' of dtype " +
                     py::str(field_dt).cast<std::string>() + " at offset " +
                     std::to_string(offset));
            }
        }
        if (!(records.flags() & py::array::c_style)) fail("a non-contiguous array");
        n_ = static_cast<size_t>(records.shape(0));
        const void* data = records.data();
        if (n_ != 0 && reinterpret_cast<uintptr_t>(data) % alignof(fraud_txn) != 0) {
            copy_.resize(n_);
            std::memcpy(copy_.data(), data, n_ * sizeof(fraud_txn));
            data = copy_.data();
        }
        txns_ = static_cast<const fraud_txn*>(data);
    }
    const fraud_txn* data() const { return txns_; }
    size_t size() const { return n_; }

private:
    py::array records_;  // keeps the buffer alive while the GIL is released
    std::vector<fraud_txn> copy_;
    const fraud_txn* txns_ = nullptr;
    size_t n_ = 0;
};

}  // namespace libfraud::bindings
