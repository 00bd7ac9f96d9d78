// NumPy records of the fraud_txn layout, viewed without copying.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "libfraud/fraud.h"

namespace libfraud::bindings {

struct TxnSpan {
    const fraud_txn* data;
    size_t size;
};

// The array must stay alive while the span is used (the caller holds it).
inline TxnSpan txn_span(const pybind11::array& records) {
    if (records.ndim() != 1 || records.itemsize() != static_cast<pybind11::ssize_t>(sizeof(fraud_txn)) ||
        !(records.flags() & pybind11::array::c_style) || records.dtype().kind() != 'V')
        throw pybind11::value_error(
            "transactions must be a 1-D C-contiguous NumPy structured array of "
            "libfraud.data.schema.TXN_DTYPE (itemsize " + std::to_string(sizeof(fraud_txn)) +
            "); use libfraud.data.schema.to_txn_records(df)");
    return {static_cast<const fraud_txn*>(records.data()), static_cast<size_t>(records.shape(0))};
}

}  // namespace libfraud::bindings
