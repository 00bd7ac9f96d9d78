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
#include <memory>
#include <utility>
#include <vector>

#include "libfraud/fraud.h"
#include "store/flat_map.h"

namespace libfraud {

struct StoreConfig {
    int64_t retention_ms = 0;             // 0 = keep all; else evict older than watermark - this
    uint32_t max_history_per_entity = 0;  // 0 = no limit
};

// A read-only column of an entity's history: [i] is its i-th retained event, oldest first.
template <class T>
class HistoryColumn {
public:
    const T& operator[](size_t i) const { return p_[i]; }
    const T* data() const { return p_; }

private:
    friend class EntityHistory;
    T* p_ = nullptr;
};

// Prefix sums: [i] = sum of the retained values [0..i]. Evicting the front moves the base (the
// running sum before the first retained value) instead of rewriting the sums, so the raw running
// sum continues identically after a snapshot round trip (bitwise-equal features).
class PrefixSumColumn {
public:
    double operator[](size_t i) const { return p_[i] - base_; }
    // Sum of values [begin, end).
    double sum(size_t begin, size_t end) const {
        if (end <= begin) return 0.0;
        return p_[end - 1] - (begin == 0 ? base_ : p_[begin - 1]);
    }
    double base() const { return base_; }

private:
    friend class EntityHistory;
    double* p_ = nullptr;
    double base_ = 0.0;
};

// One entity's retained transactions, in append order (so time-ordered). The header and its four
// arrays are one allocation (28 bytes an event plus 56 a history), grown by a sixteenth at a
// time: the store holds millions of short histories, where a vector per column and doubling cost
// twice as much. Only the store creates and changes one (through Ptr); readers get a const pointer,
// valid until the store's next append.
class EntityHistory {
public:
    HistoryColumn<int64_t> ts_ms;       // non-decreasing
    HistoryColumn<uint32_t> txn_rows;   // rows in the store's transaction table (see TemporalStore::txn)
    PrefixSumColumn amount_cumsum;      // [i] = sum of amounts [0..i]: window sums by subtraction
    PrefixSumColumn amount_sq_cumsum;   // same for squares: mean/std of the history in O(1)

    size_t size() const { return size_; }
    // Index of the first event with ts_ms >= t (so [0, result) are the events strictly before t).
    size_t lower_bound(int64_t t) const;
    // Sum of amounts (or squared amounts) of events [begin, end).
    double amount_sum(size_t begin, size_t end) const { return amount_cumsum.sum(begin, end); }
    double amount_sq_sum(size_t begin, size_t end) const { return amount_sq_cumsum.sum(begin, end); }
    // Heap bytes of the allocation (header and arrays), with the allocator's header.
    size_t heap_bytes() const;

    EntityHistory(const EntityHistory&) = delete;
    EntityHistory& operator=(const EntityHistory&) = delete;

private:
    friend class TemporalStore;
    struct Free {
        void operator()(EntityHistory* h) const;
    };
    using Ptr = std::unique_ptr<EntityHistory, Free>;

    explicit EntityHistory(uint32_t capacity) : capacity_(capacity) {}
    // A new, empty history with room for `capacity` events.
    static Ptr make(uint32_t capacity);
    // Appends one event; may move the history to a new allocation (h is updated).
    static void push(Ptr& h, int64_t ts_ms, uint32_t row, double amount, double amount_sq);
    // Drops the oldest event (size() > 0); may move it to a smaller allocation.
    static void pop_front(Ptr& h);
    // Starts the running sums at these bases; only while empty (snapshot restore).
    void set_bases(double base, double base_sq);
    uint32_t* rows() { return txn_rows.p_; }
    // Points the columns at slot `begin` of arrays sized capacity_, laid out after the header.
    void point_columns(uint32_t begin);
    // Evicted events still at the front of the arrays (the ts array starts right after the header).
    uint32_t begin() const {
        return static_cast<uint32_t>(ts_ms.p_ - reinterpret_cast<const int64_t*>(this + 1));
    }
    // Moves the retained events to a new allocation of (at least) `capacity` events.
    static void reallocate(Ptr& h, uint32_t capacity);

    uint32_t size_ = 0;
    uint32_t capacity_ = 0;
};

// Not thread-safe for writers: append() must not run concurrently with anything else on the store;
// const members may run from many threads at once. Movable (restore builds a fresh store and moves
// it in on success).
class TemporalStore {
public:
    explicit TemporalStore(StoreConfig config = {});

    const StoreConfig& config() const { return config_; }
    // Capacity hint for the duplicate-id set (the entity index grows by itself: how many entities
    // n transactions name varies too much to guess).
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
    bool contains_txn_id(int64_t txn_id) const { return txn_ids_.contains(txn_id); }
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
    // Approximate heap bytes held: deques' blocks, hash tables' slot arrays, histories'
    // allocations, with the allocator's per-block header.
    size_t approx_bytes() const;
    // approx_bytes() by part: "table" (transactions, degrees, masks), "txn_ids" (duplicate
    // detection set), "entity_index" (the hash tables' slots), "histories" (their allocations).
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
            histories_[e].for_each([&](const HistorySlot& s) {
                const EntityHistory& h = *s.value;
                if (h.amount_cumsum.base() != 0.0 || h.amount_sq_cumsum.base() != 0.0) {
                    fn(static_cast<fraud_entity>(e), s.key, h.amount_cumsum.base(),
                       h.amount_sq_cumsum.base());
                }
            });
        }
    }

private:
    using HistorySlot = FlatKeyValue<EntityHistory::Ptr>;
    size_t offset(uint32_t row) const { return static_cast<uint32_t>(row - head_row_); }
    uint32_t push_row(const fraud_txn& txn);
    // The entity's history, created empty when absent; valid until the map's next insert or erase.
    EntityHistory::Ptr& history_for_append(int e, int64_t id);
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
    FlatMap<EntityHistory::Ptr> histories_[FRAUD_ENTITY_COUNT];  // values never null
    FlatSet txn_ids_;
    int64_t watermark_ms_ = INT64_MIN;
    uint64_t evicted_ = 0;
    uint64_t appended_total_ = 0;
};

}  // namespace libfraud
