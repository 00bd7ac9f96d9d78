#include "store/temporal_store.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "common/error.h"

namespace libfraud {
namespace {

// glibc malloc: an 8-byte header, 16-byte granules, 32 bytes at least.
size_t malloc_bytes(size_t n) { return n == 0 ? 0 : std::max<size_t>(32, (n + 8 + 15) & ~size_t{15}); }

// libstdc++'s deque: 512-byte blocks (one element each when larger), plus the map of block pointers.
template <class T>
size_t deque_bytes(const std::deque<T>& d) {
    const size_t per_block = sizeof(T) < 512 ? 512 / sizeof(T) : 1;
    const size_t blocks = d.size() / per_block + 1;
    return blocks * malloc_bytes(per_block * sizeof(T)) + malloc_bytes((blocks + 8) * sizeof(void*));
}

// Hash containers: one node per element (next pointer + value), and the bucket array.
template <class Node, class C>
size_t hash_bytes(const C& c) {
    return c.size() * malloc_bytes(sizeof(void*) + sizeof(Node)) + malloc_bytes(c.bucket_count() * sizeof(void*));
}

}  // namespace

template <class T>
size_t Column<T>::heap_bytes() const {
    return malloc_bytes(v_.capacity() * sizeof(T));
}

size_t EntityHistory::lower_bound(int64_t t) const {
    return static_cast<size_t>(std::lower_bound(ts_ms.begin(), ts_ms.end(), t) - ts_ms.begin());
}

void EntityHistory::pop_front() {
    ts_ms.pop_front();
    txn_rows.pop_front();
    amount_cumsum.pop_front();
    amount_sq_cumsum.pop_front();
}

size_t EntityHistory::heap_bytes() const {
    return ts_ms.heap_bytes() + txn_rows.heap_bytes() + amount_cumsum.heap_bytes() +
           amount_sq_cumsum.heap_bytes();
}

TemporalStore::TemporalStore(StoreConfig config) : config_(config) {
    if (config_.retention_ms < 0) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "retention_ms: must be >= 0 (0 = keep all), got " +
                             std::to_string(config_.retention_ms));
    }
}

void TemporalStore::reserve(size_t n_txns) {
    txn_ids_.reserve(n_txns);
    // Entities repeat: a quarter of the transaction count is a generous guess for any one type,
    // and buckets are cheap (one pointer each).
    for (auto& m : histories_) m.reserve(n_txns / 4);
}

bool TemporalStore::within_retention(int64_t t) const {
    if (config_.retention_ms <= 0 || watermark_ms_ == std::numeric_limits<int64_t>::min()) return true;
    if (watermark_ms_ < std::numeric_limits<int64_t>::min() + config_.retention_ms) return true;
    return t >= watermark_ms_ - config_.retention_ms;
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

std::vector<std::pair<const char*, size_t>> TemporalStore::memory_breakdown() const {
    size_t index = 0, arrays = 0;
    for (const auto& m : histories_) {
        index += hash_bytes<std::pair<const int64_t, EntityHistory>>(m);
        for (const auto& kv : m) arrays += kv.second.heap_bytes();
    }
    return {{"table", sizeof(*this) + deque_bytes(txns_) + deque_bytes(degrees_) + deque_bytes(masks_)},
            {"txn_ids", hash_bytes<int64_t>(txn_ids_)},
            {"entity_index", index},
            {"histories", arrays}};
}

size_t TemporalStore::approx_bytes() const {
    size_t b = 0;
    for (const auto& part : memory_breakdown()) b += part.second;
    return b;
}

uint32_t TemporalStore::push_row(const fraud_txn& txn) {
    if (txns_.size() >= std::numeric_limits<uint32_t>::max()) {
        throw FraudError(FRAUD_STATUS_INTERNAL,
                         "temporal store is full (2^32 - 1 retained transactions); rows are uint32_t");
    }
    const uint32_t row = head_row_ + static_cast<uint32_t>(txns_.size());
    txns_.push_back(txn);
    degrees_.emplace_back();
    masks_.push_back(0);
    txn_ids_.insert(txn.txn_id);
    if (txn.timestamp_ms > watermark_ms_) watermark_ms_ = txn.timestamp_ms;
    ++appended_total_;
    return row;
}

void TemporalStore::drop_from_history(int e, int64_t id) {
    auto& m = histories_[e];
    auto it = m.find(id);
    if (it == m.end()) return;
    EntityHistory& h = it->second;
    const size_t k = offset(h.txn_rows.front());
    masks_[k] = static_cast<uint8_t>(masks_[k] & ~(1u << e));
    if (masks_[k] == 0) ++dead_rows_;
    h.pop_front();
    if (h.size() == 0) m.erase(it);  // an entity with nothing retained is forgotten
}

void TemporalStore::append(const fraud_txn& txn) {
    const uint32_t row = push_row(txn);
    const size_t k = txns_.size() - 1;
    const double sq = txn.amount * txn.amount;
    std::array<uint32_t, FRAUD_ENTITY_COUNT>& before = degrees_[k];
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        const int64_t id = txn.entity_id[e];
        if (id < 0) continue;  // absent
        EntityHistory& h = histories_[e][id];
        // Appends are time-ordered, so only a tie with the newest events makes the count differ
        // from the history's size.
        if (h.size() != 0) {
            before[e] = static_cast<uint32_t>(h.ts_ms.back() == txn.timestamp_ms
                                                  ? h.lower_bound(txn.timestamp_ms)
                                                  : h.size());
        }
        h.ts_ms.push_back(txn.timestamp_ms);
        h.txn_rows.push_back(row);
        h.amount_cumsum.push(txn.amount);
        h.amount_sq_cumsum.push(sq);
        masks_[k] = static_cast<uint8_t>(masks_[k] | (1u << e));
        if (config_.max_history_per_entity > 0 && h.size() > config_.max_history_per_entity) {
            drop_from_history(e, id);  // never empties it: the cap is >= 1
        }
    }
    if (masks_[k] == 0) ++dead_rows_;  // cannot happen (card ids are required); kept consistent
    evict();
}

void TemporalStore::evict() {
    const bool by_time = config_.retention_ms > 0 &&
                         watermark_ms_ >= std::numeric_limits<int64_t>::min() + config_.retention_ms;
    const int64_t cutoff = by_time ? watermark_ms_ - config_.retention_ms : 0;
    while (!txns_.empty()) {
        const fraud_txn& front = txns_.front();
        const bool expired = by_time && front.timestamp_ms < cutoff;
        if (!expired && masks_.front() != 0) break;
        // Every earlier row is gone, so this one is the front of each history it is still in.
        for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
            if (masks_.front() & (1u << e)) drop_from_history(e, front.entity_id[e]);
        }
        --dead_rows_;  // drop_from_history made it dead (or it already was)
        txn_ids_.erase(front.txn_id);
        txns_.pop_front();
        degrees_.pop_front();
        masks_.pop_front();
        ++head_row_;
        ++evicted_;
    }
    // Dead rows behind a live front (the per-entity cap): compact once they are half the table,
    // so the table stays within twice the retained rows (amortised O(1) per append).
    if (dead_rows_ >= 1024 && 2 * dead_rows_ >= txns_.size()) compact();
}

void TemporalStore::compact() {
    std::vector<uint32_t> new_row(txns_.size());
    std::deque<fraud_txn> txns;
    std::deque<std::array<uint32_t, FRAUD_ENTITY_COUNT>> degrees;
    std::deque<uint8_t> masks;
    for (size_t k = 0; k < txns_.size(); ++k) {
        if (masks_[k] == 0) {
            txn_ids_.erase(txns_[k].txn_id);
            ++evicted_;
            continue;
        }
        new_row[k] = head_row_ + static_cast<uint32_t>(txns.size());
        txns.push_back(txns_[k]);
        degrees.push_back(degrees_[k]);
        masks.push_back(masks_[k]);
    }
    for (auto& m : histories_) {
        for (auto& kv : m) {
            Column<uint32_t>& rows = kv.second.txn_rows;
            for (size_t i = 0; i < rows.size(); ++i) rows[i] = new_row[offset(rows[i])];
        }
    }
    txns_.swap(txns);
    degrees_.swap(degrees);
    masks_.swap(masks);
    dead_rows_ = 0;
}

void TemporalStore::restore_entity_base(fraud_entity type, int64_t id, double base, double base_sq) {
    EntityHistory& h = histories_[type][id];
    h.amount_cumsum.set_base(base);
    h.amount_sq_cumsum.set_base(base_sq);
}

void TemporalStore::restore_append(const fraud_txn& txn, const uint32_t degrees[FRAUD_ENTITY_COUNT],
                                   uint8_t history_mask) {
    const uint32_t row = push_row(txn);
    const size_t k = txns_.size() - 1;
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) degrees_[k][e] = degrees[e];
    masks_[k] = history_mask;
    if (history_mask == 0) ++dead_rows_;
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        if (!(history_mask & (1u << e))) continue;
        EntityHistory& h = histories_[e][txn.entity_id[e]];
        h.ts_ms.push_back(txn.timestamp_ms);
        h.txn_rows.push_back(row);
        h.amount_cumsum.push(txn.amount);
        h.amount_sq_cumsum.push(txn.amount * txn.amount);
    }
}

void TemporalStore::restore_finish(int64_t watermark_ms, uint64_t evicted, uint64_t appended_total) {
    for (auto& m : histories_) {  // bases of entities that got no event: a corrupt snapshot
        for (const auto& kv : m) {
            if (kv.second.size() == 0) {
                throw FraudError(FRAUD_STATUS_IO_ERROR,
                                 "entity " + std::to_string(kv.first) + " has a base but no events");
            }
        }
    }
    watermark_ms_ = std::max(watermark_ms_, watermark_ms);
    evicted_ = evicted;
    appended_total_ = appended_total;
    if (config_.max_history_per_entity > 0) {
        for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
            std::vector<int64_t> over;
            for (const auto& kv : histories_[e]) {
                if (kv.second.size() > config_.max_history_per_entity) over.push_back(kv.first);
            }
            for (int64_t id : over) {
                while (histories_[e][id].size() > config_.max_history_per_entity) drop_from_history(e, id);
            }
        }
    }
    evict();
}

template class Column<int64_t>;
template class Column<uint32_t>;
template class Column<double>;

}  // namespace libfraud
