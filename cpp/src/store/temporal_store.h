// The temporal store: the retained events of a declared schema (schema/schema.h), each entity's
// time-ordered history of them, and their labels. One store serves the features and the GNN
// sampler, so both see the same past.
//
// Retention (bounded memory, StoreConfig): an event is RETAINED while
//   - its time_ms >= watermark_ms - retention_ms (when retention_ms > 0), and
//   - for each entity it links, it is among that entity's newest max_history_per_entity events
//     (when max_history_per_entity > 0; counted in append order) — else it leaves that history.
// An event in no history any more leaves the table. Readers (features, the sampler) see exactly
// "the retained history strictly before t": a window longer than the retention simply sees less,
// and an entity whose events were all evicted is unknown again (cold start). Eviction runs inside
// append() as the watermark advances (amortised O(1) per append), never on the read path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "libfraud/fraud.h"
#include "schema/schema.h"
#include "store/entity_history.h"
#include "store/flat_map.h"

namespace libfraud {

struct StoreConfig {
    int64_t retention_ms = 0;             // 0 = keep all; else evict older than watermark - this
    uint32_t max_history_per_entity = 0;  // 0 = no limit
};

// What the store keeps: the schema's fields for every event, and in each entity's history the
// values of `history_fields` (kAmountField or a numeric index), which windowed aggregates read.
inline constexpr int kAmountField = -1;
struct StoreLayout {
    Schema schema;
    std::vector<int> history_fields;
    // Keep per-block min/max too (a plan with windowed min/max needs them); 20 bytes a block less
    // without.
    bool extremes = true;
    // Keep label counts per block in long histories (a plan with label features reads them; a
    // store without them gives the same features by reading rows). Not part of key().
    bool labels = false;
    // Equal keys: a store of one serves a model of the other (hot swap, restore).
    std::string key() const;
};

// Where each part of an event lives in its row of 64-bit words.
struct RowLayout {
    explicit RowLayout(const Schema& s);
    uint32_t E, N, C;
    uint32_t entity, numeric, categorical, degrees, meta;  // word offsets
    uint32_t words;                                        // row stride
};

// A stored event: read-only view of its row, valid until the store's next append or label.
class EventRow {
public:
    EventRow(const uint64_t* w, const RowLayout* l) : w_(w), l_(l) {}
    int64_t event_id() const { return static_cast<int64_t>(w_[0]); }
    int64_t time_ms() const { return static_cast<int64_t>(w_[1]); }
    double amount() const { return as_double(w_[2]); }
    // INT64_MAX while unlabelled.
    int64_t label_time_ms() const { return static_cast<int64_t>(w_[3]); }
    // 1 fraud, 0 legitimate, -1 unlabelled.
    int label() const { return static_cast<int8_t>((w_[l_->meta] >> 16) & 0xff); }
    int64_t entity(size_t e) const { return static_cast<int64_t>(w_[l_->entity + e]); }
    const int64_t* entities() const { return reinterpret_cast<const int64_t*>(w_ + l_->entity); }
    double numeric(size_t i) const { return as_double(w_[l_->numeric + i]); }
    int64_t categorical(size_t i) const { return static_cast<int64_t>(w_[l_->categorical + i]); }
    // How many of entity type e's RETAINED events had time strictly before this one's when it was
    // appended (0 when absent). Fixed at append, so later appends and evictions never change it.
    uint32_t degree_before(size_t e) const {
        return static_cast<uint32_t>(w_[l_->degrees + e / 2] >> (32 * (e % 2)));
    }
    // Bit e set: still in entity type e's history.
    uint32_t history_mask() const { return static_cast<uint32_t>(w_[l_->meta] & 0xffff); }
    // static_cast<float>(std::log1p(amount())), computed once at append: the sampler reads it for
    // every neighbour (log1p is ~20 ns) and it fits the row's spare bits.
    float log1p_amount() const {
        const auto bits = static_cast<uint32_t>(w_[l_->meta] >> 32);
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    }
    // The value of a history field (kAmountField or a numeric index).
    double field(int f) const { return f == kAmountField ? amount() : numeric(static_cast<size_t>(f)); }

private:
    // Inline: every amount and numeric a scan or the sampler reads passes here.
    static double as_double(uint64_t b) {
        double d;
        std::memcpy(&d, &b, sizeof d);
        return d;
    }
    const uint64_t* w_;
    const RowLayout* l_;
};

// Not thread-safe for writers: append() and label() must not run concurrently with anything else;
// const members may run from many threads at once. Movable.
class TemporalStore {
public:
    explicit TemporalStore(StoreLayout layout, StoreConfig config = {});

    const StoreLayout& layout() const { return layout_; }
    const Schema& schema() const { return layout_.schema; }
    const RowLayout& rows() const { return rows_; }
    const StoreConfig& config() const { return config_; }
    // Capacity hint for the event-id index.
    void reserve(size_t n_events);
    size_t size() const { return size_; }
    // Latest time ever stored (eviction does not lower it); INT64_MIN when none.
    int64_t watermark_ms() const { return watermark_ms_; }
    uint64_t evicted() const { return evicted_; }
    // Events ever appended (restored ones included): the state log's sequence number.
    uint64_t appended_total() const { return appended_total_; }
    uint64_t labelled() const { return labelled_; }
    // false when t < watermark - retention_ms (history at t may be incomplete).
    bool within_retention(int64_t t) const;
    bool contains_event_id(int64_t id) const { return ids_.contains(id); }
    // The row of a retained event id, or false.
    bool find_event(int64_t id, uint32_t* row) const;
    // Rows are logical uint32 numbers that wrap modulo 2^32. Precondition: row is retained.
    EventRow event(uint32_t row) const { return EventRow(word(row), &rows_); }
    uint32_t row_at(size_t k) const { return head_row_ + static_cast<uint32_t>(k); }
    // A hint that a retained row will be read soon: the sampler issues it for every neighbour it
    // chose before reading any, so their cache misses overlap.
    void prefetch(uint32_t row) const { __builtin_prefetch(word(row)); }
    // nullptr when the entity has no retained event (or type is out of range, or id is absent).
    const EntityHistory* history(size_t type, int64_t id) const;
    size_t num_entities(size_t type) const;
    size_t approx_bytes() const;
    // "table", "event_ids", "entity_index", "histories".
    std::vector<std::pair<const char*, size_t>> memory_breakdown() const;

    // Precondition: validated (validate_for_append). Absent entities (-1) get no history. Evicts
    // what leaves retention. On std::bad_alloc midway the store must be discarded.
    void append(const fraud_event& event);
    // Precondition: validated (validate_labels): the event is retained, label 0/1, no conflict.
    // Returns false when the same label was already stored (nothing changes).
    bool apply_label(uint32_t row, int label, int64_t label_time_ms);
    // apply_label for a validated batch (validate_labels: every event retained); returns how many
    // were new.
    size_t apply_labels(const fraud_label* labels, size_t n);

    // Snapshot restore only, into an empty store: an entity's dropped count, set before its first
    // restored event, and an event with its fixed degrees, history mask and label. The histories
    // are built in restore_finish, entity by entity in batches of nearby hash (cache-friendly:
    // an event's rows are read once in order, each history and index segment while it is warm).
    void restore_entity_dropped(size_t type, int64_t id, uint64_t dropped);
    void restore_append(const fraud_event& event, const uint32_t* degrees, uint32_t history_mask,
                        int label, int64_t label_time_ms);
    void restore_finish(int64_t watermark_ms, uint64_t evicted, uint64_t appended_total);
    // fn(type, id, dropped) for each entity whose history has dropped events.
    template <class Fn>
    void for_each_entity_dropped(Fn&& fn) const {
        for (size_t e = 0; e < histories_.size(); ++e) {
            histories_[e].for_each([&](const HistorySlot& s) {
                if (s.value->dropped() != 0) fn(e, s.key, s.value->dropped());
            });
        }
    }

private:
    using HistorySlot = FlatKeyValue<EntityHistory::Ptr>;
    // Rows per table chunk: small enough that one append touches little fresh memory (a page
    // fault costs microseconds here), large enough that the chunk list stays short.
    static constexpr uint32_t kChunkRows = 256;
    size_t offset(uint32_t row) const { return static_cast<uint32_t>(row - head_row_); }
    const uint64_t* word(uint32_t row) const {
        const size_t pos = head_pos_ + offset(row);
        return chunks_[pos / kChunkRows].get() + (pos % kChunkRows) * rows_.words;
    }
    uint64_t* word_mut(uint32_t row) { return const_cast<uint64_t*>(word(row)); }
    uint64_t* push_row(const fraud_event& event, uint32_t* row);
    void pop_row();
    void set_mask(uint64_t* w, uint32_t mask);
    EntityHistory::Ptr& history_for_append(size_t e, int64_t id);
    void push_history(EntityHistory::Ptr& h, const fraud_event& event, uint32_t row);
    void build_restored_histories();
    // After a push to h (its newest event's row already written): its label blocks, when kept.
    void track_labels(EntityHistory& h);
    void drop_from_history(size_t e, int64_t id);
    void evict();
    void compact();

    StoreLayout layout_;
    bool layout_has_missing_ = false;  // a history field that may be NaN: blocks keep counts
    RowLayout rows_;
    StoreConfig config_;
    // The table: rows in append (time) order, kChunkRows per chunk; row head_row_ + k is at
    // position head_pos_ + k of the chunk sequence. Chunks behind the head are freed at once and
    // their (null) slots erased once they are a quarter of the list (amortised O(1), and one
    // erase moves at most the list: 40k pointers at 10M rows). A vector, not a deque: a row's address is two
    // shifts and two loads on the scans' path.
    std::vector<std::unique_ptr<uint64_t[]>> chunks_;
    size_t head_pos_ = 0;
    size_t size_ = 0;
    uint32_t head_row_ = 0;
    size_t dead_rows_ = 0;
    bool histories_pending_ = false;  // restored rows whose histories restore_finish builds
    std::vector<FlatMap<EntityHistory::Ptr>> histories_;  // per entity type; values never null
    FlatMap<uint32_t> ids_;                               // event id -> row
    int64_t watermark_ms_ = INT64_MIN;
    uint64_t evicted_ = 0;
    uint64_t appended_total_ = 0;
    uint64_t labelled_ = 0;
};

}  // namespace libfraud
