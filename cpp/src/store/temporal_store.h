// The temporal store: the retained transactions, and each entity's time-ordered history of them.
// One store serves the features and the GNN sampler, so both see the same past.
//
// Retention (bounded memory, StoreConfig): a transaction is RETAINED while
//   - its timestamp_ms >= watermark_ms - retention_ms (when retention_ms > 0), and
//   - for each entity it links, it is among that entity's newest max_history_per_entity events
//     (when max_history_per_entity > 0; counted in append order) — else it leaves that history.
// A transaction in no history any more leaves the table. Readers (features, the sampler) see
// exactly "the retained history strictly before t": a window longer than the retention simply
// sees less, and an entity whose events were all evicted is unknown again (cold start).
// Eviction runs inside append() as the watermark advances (amortised O(1) per append), never on
// the read path.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "libfraud/fraud.h"

namespace libfraud {

struct StoreConfig {
    int64_t retention_ms = 0;             // 0 = keep all; else evict older than watermark - this
    uint32_t max_history_per_entity = 0;  // 0 = no limit
};

// A vector that grows at the back and is consumed from the front: the dropped prefix is erased
// once it is at least half the storage, so both ends are amortised O(1) and indices stay dense.
template <class T>
class Column {
public:
    size_t size() const { return v_.size() - begin_; }
    bool empty() const { return size() == 0; }
    const T& operator[](size_t i) const { return v_[begin_ + i]; }
    T& operator[](size_t i) { return v_[begin_ + i]; }
    const T& front() const { return v_[begin_]; }
    const T& back() const { return v_.back(); }
    const T* begin() const { return v_.data() + begin_; }
    const T* end() const { return v_.data() + v_.size(); }
    void push_back(const T& x) { v_.push_back(x); }
    void pop_front() {
        ++begin_;
        if (begin_ == v_.size()) {
            v_.clear();
            begin_ = 0;
        } else if (begin_ >= 16 && 2 * begin_ >= v_.size()) {
            v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(begin_));
            begin_ = 0;
            if (v_.capacity() > 2 * v_.size() + 16) v_.shrink_to_fit();  // give memory back
        }
    }
    // Heap bytes held (capacity, not size), plus the allocator's header.
    size_t heap_bytes() const;

private:
    std::vector<T> v_;
    size_t begin_ = 0;
};

// Prefix sums over a Column: [i] = sum of the retained values [0..i]. Evicting the front moves
// the base (the running sum before the first retained value) instead of rewriting the sums, so the
// raw running sum continues identically after a snapshot round trip (bitwise-equal features).
class PrefixSums {
public:
    size_t size() const { return raw_.size(); }
    double operator[](size_t i) const { return raw_[i] - base_; }
    // Sum of values [begin, end).
    double sum(size_t begin, size_t end) const {
        if (end <= begin) return 0.0;
        return raw_[end - 1] - (begin == 0 ? base_ : raw_[begin - 1]);
    }
    void push(double x) { raw_.push_back((raw_.empty() ? base_ : raw_.back()) + x); }
    void pop_front() {
        base_ = raw_.front();
        raw_.pop_front();
    }
    double base() const { return base_; }
    void set_base(double b) { base_ = b; }  // only while empty (snapshot restore)
    size_t heap_bytes() const { return raw_.heap_bytes(); }

private:
    Column<double> raw_;
    double base_ = 0.0;
};

// One entity's retained transactions, in append order (so time-ordered).
struct EntityHistory {
    Column<int64_t> ts_ms;        // non-decreasing
    Column<uint32_t> txn_rows;    // rows in the store's transaction table (see TemporalStore::txn)
    PrefixSums amount_cumsum;     // [i] = sum of amounts [0..i]: window sums by subtraction
    PrefixSums amount_sq_cumsum;  // same for squares: mean/std of the history in O(1)

    size_t size() const { return ts_ms.size(); }
    // Index of the first event with ts_ms >= t (so [0, result) are the events strictly before t).
    size_t lower_bound(int64_t t) const;
    // Sum of amounts (or squared amounts) of events [begin, end).
    double amount_sum(size_t begin, size_t end) const { return amount_cumsum.sum(begin, end); }
    double amount_sq_sum(size_t begin, size_t end) const { return amount_sq_cumsum.sum(begin, end); }
    void pop_front();
    size_t heap_bytes() const;
};

// Not thread-safe for writers: append() must not run concurrently with anything else on the store;
// const members may run from many threads at once. Movable (restore builds a fresh store and moves
// it in on success).
class TemporalStore {
public:
    explicit TemporalStore(StoreConfig config = {});

    const StoreConfig& config() const { return config_; }
    // Capacity hint; the maps get a share of it since entities repeat across transactions.
    void reserve(size_t n_txns);
    // Transactions retained now (in the table).
    size_t size() const { return txns_.size(); }
    // Latest timestamp ever stored (eviction does not lower it); INT64_MIN when none.
    int64_t watermark_ms() const { return watermark_ms_; }
    // Transactions evicted so far (by time, by the per-entity cap, or both).
    uint64_t evicted() const { return evicted_; }
    // Transactions ever appended (restored ones included): the sequence number of the next append,
    // which the state log uses to line its records up with a snapshot.
    uint64_t appended_total() const { return appended_total_; }
    // Whether the history at time t is complete under the time retention: false when
    // t < watermark - retention_ms (what the sampler's OUT_OF_RETENTION check asks).
    bool within_retention(int64_t t) const;
    // Duplicate detection covers the retained transactions only.
    bool contains_txn_id(int64_t txn_id) const { return txn_ids_.count(txn_id) != 0; }
    // Rows are logical uint32 numbers that wrap modulo 2^32 (months of appends never overflow; at
    // most 2^32 - 1 transactions are retained at once). Precondition: row is in some history (or
    // was returned by row_of() for a retained transaction).
    const fraud_txn& txn(uint32_t row) const { return txns_[offset(row)]; }
    // For transaction `row` and each entity type e: how many of that entity's RETAINED
    // transactions had ts strictly before this one's when it was appended (0 when absent). Fixed at
    // append, so later appends and evictions never change it. 16 bytes per transaction.
    const uint32_t* degrees_before(uint32_t row) const { return degrees_[offset(row)].data(); }
    // Row of the k-th retained transaction in table order (k < size()).
    uint32_t row_at(size_t k) const { return head_row_ + static_cast<uint32_t>(k); }
    // Bit e set: the transaction at table position k is still in entity type e's history.
    uint8_t history_mask_at(size_t k) const { return masks_[k]; }
    // nullptr when the entity has no retained event (or type is out of range, or id is absent).
    const EntityHistory* history(fraud_entity type, int64_t id) const;
    // Number of distinct entities of this type with a retained history.
    size_t num_entities(fraud_entity type) const;
    // Approximate heap bytes held: vectors' and deques' capacity, hash nodes and buckets, with
    // the allocator's per-block header.
    size_t approx_bytes() const;
    // approx_bytes() by part: "table" (transactions, degrees, masks), "txn_ids" (duplicate
    // detection set), "entity_index" (hash nodes and buckets), "histories" (their arrays).
    std::vector<std::pair<const char*, size_t>> memory_breakdown() const;

    // Precondition: validated (validate_for_append): fields in their domain, timestamp >= the
    // watermark, txn_id new. Absent entities (-1) get no history. Evicts what leaves retention.
    // Throws FraudError(INTERNAL) when 2^32 - 1 transactions are already retained; if memory runs
    // out midway (std::bad_alloc) the store must be discarded.
    void append(const fraud_txn& txn);

    // For snapshot restore only (snapshot.cpp): the running-sum bases of an entity about to be
    // restored, and a transaction with its fixed degrees and the histories it is still in.
    void restore_entity_base(fraud_entity type, int64_t id, double base, double base_sq);
    void restore_append(const fraud_txn& txn, const uint32_t degrees[FRAUD_ENTITY_COUNT],
                        uint8_t history_mask);
    // After a restore: counters from the snapshot, then this store's limits applied (they may be
    // tighter than the snapshot's).
    void restore_finish(int64_t watermark_ms, uint64_t evicted, uint64_t appended_total);
    // Calls fn(type, id, base, base_sq) for each entity whose running sums do not start at 0.
    template <class Fn>
    void for_each_entity_base(Fn&& fn) const {
        for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
            for (const auto& [id, h] : histories_[e]) {
                if (h.amount_cumsum.base() != 0.0 || h.amount_sq_cumsum.base() != 0.0) {
                    fn(static_cast<fraud_entity>(e), id, h.amount_cumsum.base(),
                       h.amount_sq_cumsum.base());
                }
            }
        }
    }

private:
    size_t offset(uint32_t row) const { return static_cast<uint32_t>(row - head_row_); }
    uint32_t push_row(const fraud_txn& txn);
    void drop_from_history(int e, int64_t id);  // pops that history's front
    void evict();                                // time, dead rows, compaction
    void compact();

    StoreConfig config_;
    // The table, in append order (so time order); row head_row_ + k is at position k.
    std::deque<fraud_txn> txns_;
    std::deque<std::array<uint32_t, FRAUD_ENTITY_COUNT>> degrees_;
    std::deque<uint8_t> masks_;  // bit e: still in entity type e's history; 0 = dead row
    uint32_t head_row_ = 0;
    size_t dead_rows_ = 0;
    std::unordered_map<int64_t, EntityHistory> histories_[FRAUD_ENTITY_COUNT];
    std::unordered_set<int64_t> txn_ids_;
    int64_t watermark_ms_ = INT64_MIN;
    uint64_t evicted_ = 0;
    uint64_t appended_total_ = 0;
};

}  // namespace libfraud
