// Checks a transaction batch before it touches the store: the C API promises all-or-nothing batches,
// so everything that can be wrong with a batch is found here, before the first append.
#pragma once

#include <cstddef>
#include <string>

#include "libfraud/fraud.h"
#include "store/temporal_store.h"

namespace libfraud {

// Lowercase name of an entity type ("card", "device", "merchant", "ip"); "unknown" otherwise.
const char* entity_name(int type);

// "" when every field is in its domain (see fraud_txn in fraud.h), else "<field>: <what>",
// e.g. "amount: is NaN", "entity_id[device]: must be >= 0 or -1 (absent), got -7".
std::string field_error(const fraud_txn& t);

// Throws FraudError(INVALID_TRANSACTION, "transaction 3 (txn_id=103): amount: is NaN") for the
// first transaction with a bad field. txns may be NULL only when n == 0.
void validate_fields(const fraud_txn* txns, size_t n);

// What an append of the batch needs, checked per transaction in batch order (the first bad one is
// reported): its fields (INVALID_TRANSACTION), timestamp not older than the store's watermark nor
// the previous transaction in the batch (OUT_OF_ORDER; equal is fine), txn_id neither in the store
// nor earlier in the batch (DUPLICATE_TRANSACTION). Changes nothing.
void validate_for_append(const TemporalStore& store, const fraud_txn* txns, size_t n);

}  // namespace libfraud
