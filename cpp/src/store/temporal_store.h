// The temporal store: every stored transaction, and each entity's time-ordered history of them.
// One store serves the features and the GNN sampler, so both see the same past.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "libfraud/fraud.h"

namespace libfraud {

// One entity's transactions, in the order they were appended (so time-ordered; append-only).
struct EntityHistory {
    std::vector<int64_t> ts_ms;             // non-decreasing
    std::vector<uint32_t> txn_rows;         // rows in the store's transaction table
    std::vector<double> amount_cumsum;      // [i] = sum of amounts [0..i]: window sums by subtraction
    std::vector<double> amount_sq_cumsum;   // same for squares: mean/std of the history in O(1)

    size_t size() const { return ts_ms.size(); }
    // Index of the first event with ts_ms >= t (so [0, result) are the events strictly before t).
    size_t lower_bound(int64_t t) const;
    // Sum of amounts (or squared amounts) of events [begin, end).
    double amount_sum(size_t begin, size_t end) const;
    double amount_sq_sum(size_t begin, size_t end) const;
};

// Not thread-safe for writers: append() must not run concurrently with anything else on the store;
// const members may run from many threads at once.
class TemporalStore {
public:
    // Capacity hint; the maps get a share of it since entities repeat across transactions.
    void reserve(size_t n_txns);
    size_t size() const { return txns_.size(); }
    // Latest timestamp stored; INT64_MIN when empty.
    int64_t watermark_ms() const { return watermark_ms_; }
    bool contains_txn_id(int64_t txn_id) const { return txn_ids_.count(txn_id) != 0; }
    // Precondition: row < size().
    const fraud_txn& txn(uint32_t row) const { return txns_[row]; }
    // For transaction `row` and each entity type e: how many of that entity's stored transactions
    // have ts strictly before this one's (its degree as this transaction saw it; 0 when absent).
    // Fixed at append, so later appends never change it. 16 bytes per transaction.
    const uint32_t* degrees_before(uint32_t row) const { return degrees_before_[row].data(); }
    // nullptr when the entity was never seen (or type is out of range, or id is absent).
    const EntityHistory* history(fraud_entity type, int64_t id) const;
    // Number of distinct entities of this type with a history.
    size_t num_entities(fraud_entity type) const;
    // Precondition: validated (validate_for_append): fields in their domain, timestamp >= the
    // watermark, txn_id new. Absent entities (-1) get no history. Throws FraudError(INTERNAL) when
    // the store already holds 2^32 - 1 transactions (rows are uint32_t); if memory runs out midway
    // (std::bad_alloc) the store must be discarded.
    void append(const fraud_txn& txn);

private:
    std::vector<fraud_txn> txns_;
    std::vector<std::array<uint32_t, FRAUD_ENTITY_COUNT>> degrees_before_;  // parallel to txns_
    std::unordered_map<int64_t, EntityHistory> histories_[FRAUD_ENTITY_COUNT];
    std::unordered_set<int64_t> txn_ids_;
    int64_t watermark_ms_ = INT64_MIN;
};

}  // namespace libfraud
