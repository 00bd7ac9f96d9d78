// Checks a batch of events or labels before it touches the store: the C API promises
// all-or-nothing batches, so everything that can be wrong with a batch is found here, before the
// first append.
#pragma once

#include <cstddef>
#include <string>

#include "libfraud/fraud.h"
#include "schema/schema.h"
#include "store/temporal_store.h"

namespace libfraud {

// "" when every field is in its domain (fraud_event in fraud.h), else "<field>: <what>", e.g.
// "amount: is NaN", "entity_id[device]: must be >= 0 or -1 (absent), got -7".
std::string field_error(const Schema& schema, const fraud_event& ev);

// Throws FraudError(INVALID_TRANSACTION, "event 3 (event_id=103): amount: is NaN") for the first
// event with a bad field (or INVALID_ARGUMENT for NULL arrays the schema needs).
void validate_fields(const Schema& schema, const fraud_event* events, size_t n);

// What an append of the batch needs, per event in batch order (the first bad one is reported): its
// fields (INVALID_TRANSACTION), time not older than the store's watermark nor the previous event
// (OUT_OF_ORDER; equal is fine), event_id neither in the store nor earlier in the batch
// (DUPLICATE_TRANSACTION). Changes nothing.
void validate_for_append(const TemporalStore& store, const fraud_event* events, size_t n);

// Labels (fraud_engine_label): UNKNOWN_EVENT, INVALID_LABEL, LABEL_CONFLICT (also within the
// batch), naming the batch index and event id. Changes nothing. `index`, when given, maps label i
// to the position messages name (a caller validating part of a larger batch).
void validate_labels(const TemporalStore& store, const fraud_label* labels, size_t n, const size_t* index = nullptr);

}  // namespace libfraud
