#include "store/temporal_store.h"

#include <algorithm>
#include <limits>

#include "common/error.h"

namespace libfraud {

size_t EntityHistory::lower_bound(int64_t t) const {
    return static_cast<size_t>(std::lower_bound(ts_ms.begin(), ts_ms.end(), t) - ts_ms.begin());
}

double EntityHistory::amount_sum(size_t begin, size_t end) const {
    if (end <= begin) return 0.0;
    return amount_cumsum[end - 1] - (begin == 0 ? 0.0 : amount_cumsum[begin - 1]);
}

double EntityHistory::amount_sq_sum(size_t begin, size_t end) const {
    if (end <= begin) return 0.0;
    return amount_sq_cumsum[end - 1] - (begin == 0 ? 0.0 : amount_sq_cumsum[begin - 1]);
}

void TemporalStore::reserve(size_t n_txns) {
    txns_.reserve(n_txns);
    degrees_before_.reserve(n_txns);
    txn_ids_.reserve(n_txns);
    // Entities repeat: a quarter of the transaction count is a generous guess for any one type,
    // and buckets are cheap (one pointer each).
    for (auto& m : histories_) m.reserve(n_txns / 4);
}

const EntityHistory* TemporalStore::history(fraud_entity type, int64_t id) const {
    if (type < 0 || type >= FRAUD_ENTITY_COUNT || id < 0) return nullptr;
    const auto& m = histories_[type];
    auto it = m.find(id);
    return it == m.end() ? nullptr : &it->second;
}

size_t TemporalStore::num_entities(fraud_entity type) const {
    if (type < 0 || type >= FRAUD_ENTITY_COUNT) return 0;
    return histories_[type].size();
}

void TemporalStore::append(const fraud_txn& txn) {
    if (txns_.size() >= std::numeric_limits<uint32_t>::max()) {
        throw FraudError(FRAUD_STATUS_INTERNAL,
                         "temporal store is full (2^32 - 1 transactions); rows are uint32_t");
    }
    const auto row = static_cast<uint32_t>(txns_.size());
    txns_.push_back(txn);
    txn_ids_.insert(txn.txn_id);
    if (txn.timestamp_ms > watermark_ms_) watermark_ms_ = txn.timestamp_ms;
    const double sq = txn.amount * txn.amount;
    std::array<uint32_t, FRAUD_ENTITY_COUNT> before{};
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        const int64_t id = txn.entity_id[e];
        if (id < 0) continue;  // absent
        EntityHistory& h = histories_[e][id];
        // Appends are time-ordered, so only a tie with the newest event can make the count differ
        // from the history's size: then it is that tied event's own count.
        if (!h.ts_ms.empty()) {
            before[e] = h.ts_ms.back() == txn.timestamp_ms ? degrees_before_[h.txn_rows.back()][e]
                                                           : static_cast<uint32_t>(h.size());
        }
        const double prev = h.amount_cumsum.empty() ? 0.0 : h.amount_cumsum.back();
        const double prev_sq = h.amount_sq_cumsum.empty() ? 0.0 : h.amount_sq_cumsum.back();
        h.ts_ms.push_back(txn.timestamp_ms);
        h.txn_rows.push_back(row);
        h.amount_cumsum.push_back(prev + txn.amount);
        h.amount_sq_cumsum.push_back(prev_sq + sq);
    }
    degrees_before_.push_back(before);
}

}  // namespace libfraud
