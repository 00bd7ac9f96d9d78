// One entity's retained events (EntityHistory) and the per-block aggregates that make long
// windows cheap (HistoryBlocks). Part of the temporal store (store/temporal_store.h): only the
// store changes a history; readers (features, the sampler) see a const one through its accessors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "store/paged_array.h"

namespace libfraud {

// glibc malloc: an 8-byte header, 16-byte granules, 32 bytes at least (the stores' accounting).
inline size_t malloc_bytes(size_t n) { return n == 0 ? 0 : (n + 8 + 15 < 32 ? 32 : (n + 8 + 15) & ~size_t{15}); }

// Aggregates of a history field over a range of events; NaN values are skipped.
struct FieldAggregate {
    uint64_t n = 0;  // non-missing values
    double sum = 0, sum_sq = 0;
    double min = 0, max = 0;  // valid when n > 0
    void add(double x);
};

// Count, sum and sum of squares alone (what sum, mean, std, ratios and z-scores need).
struct RangeSums {
    uint64_t n = 0;
    double sum = 0, sum_sq = 0;
};

// Per-block aggregates of a long history (built once it reaches 2 * kBlock events), per field, as
// arrays [block - first][field] (paged: growing or trimming one never copies the whole), and running totals over the whole history while nothing has
// been dropped from its front since they started.
struct HistoryBlocks {
    uint64_t first = 0;  // block number of the arrays' first entry
    bool extremes = true;  // min and max kept (else empty)
    PagedArray<uint32_t> n;
    PagedArray<double> sum, sum_sq, min, max;
    bool totals_valid = true;
    std::vector<uint64_t> total_n;  // per field
    std::vector<double> total_sum, total_sq;
    // While totals_valid: the running totals as they stood at each super-block's start
    // ([super][field]), so a range from the history's first event sums to exactly the sequential
    // total at any end (the rest of the way one value at a time).
    std::vector<uint64_t> prefix_n;
    std::vector<double> prefix_sum, prefix_sq;
    // Whether any field may be missing: only then are the non-missing counts (n, n2) kept.
    bool counts = true;
    // The second level: super-blocks of kSuper blocks ([super - first2][field]), so a long window
    // merges at most 2 * (kSuper - 1) blocks plus its super-blocks.
    uint64_t first2 = 0;
    PagedArray<uint32_t> n2;
    PagedArray<double> sum2, sum_sq2;
    size_t bytes() const;
};

// Label counts per block of kBlock events (absolute event numbers, as HistoryBlocks'), kept for a
// long history when the store's plan reads labels: how many of a block's events have a label, how
// many of those are fraud, and the latest label time among them. A label scan over a block whose
// every label was known before t adds two counts instead of reading 16 rows from the table;
// labels are only ever added, so the counts never go stale.
struct LabelBlocks {
    uint64_t first = 0;  // block number of the arrays' first entry
    PagedArray<uint8_t> known, fraud;
    PagedArray<int64_t> latest;  // INT64_MIN: no label in the block yet
    size_t bytes() const;
};

// Events with a label known strictly before some t, and how many of them are fraud.
struct LabelCounts {
    uint64_t labelled = 0, fraud = 0;
};

// One entity's retained events, in append order (so time-ordered). A short history (up to about
// kChunk events) is one allocation holding the header and its arrays (times, rows, one value
// array per history field), grown by a sixteenth at a time; a longer one is a list of chunks of
// kChunk events (the header then holds the list), so no append or eviction ever copies more than
// about kChunk events: the work per call is bounded however long a hot entity's history grows.
// Range aggregates sum raw values directly at the ends and whole blocks of kBlock events in the
// middle (per-block aggregates, kept once a history is long): the result depends only on the
// values inside the range, so no value — however large — disturbs a window it is not in (no
// running prefix sums). Whole-history sums come from running totals while the history has lost
// nothing from its front (then they are the plain sequential sum). Readers get a const pointer,
// valid until the store's next append.
class EntityHistory {
public:
    static constexpr uint32_t kBlock = 16;
    static constexpr uint32_t kSuper = 16;  // blocks per super-block
    static constexpr uint32_t kChunkShift = 10;
    static constexpr uint32_t kChunk = 1u << kChunkShift;  // events per chunk of a long history

    size_t size() const { return size_; }
    int64_t ts(size_t i) const {
        const size_t p = begin_ + i;
        return capacity_ ? ts_base()[p] : chunk_ts(p >> kChunkShift)[p & (kChunk - 1)];
    }
    uint32_t row(size_t i) const {
        const size_t p = begin_ + i;
        return capacity_ ? rows_base()[p] : chunk_rows(p >> kChunkShift)[p & (kChunk - 1)];
    }
    double value(size_t f, size_t i) const {
        const size_t p = begin_ + i;
        return capacity_ ? vals_base()[f * capacity_ + p] : chunk_vals(p >> kChunkShift, f)[p & (kChunk - 1)];
    }
    // Index of the first event with ts >= t (so [0, result) are the events strictly before t).
    size_t lower_bound(int64_t t) const;
    // Aggregates of history field f (its index in StoreLayout::history_fields) over events [b, e).
    FieldAggregate aggregate(size_t f, size_t b, size_t e) const;
    // squares = false leaves sum_sq 0 (cheaper, for sums and means); nan_free: the field has no
    // missing values (the amount), so the loops skip the check.
    RangeSums sums(size_t f, size_t b, size_t e, bool squares = true, bool nan_free = false) const;
    // Events ever dropped from the front (blocks are aligned to this count, kept by snapshots).
    uint64_t dropped() const { return dropped_; }
    // Kept as chunks (a long history) rather than one array.
    bool chunked() const { return capacity_ == 0; }
    size_t heap_bytes() const;
    // Events [b, e) whose label was known strictly before t (label_time < t). row_label(i) returns
    // {label (1, 0, or -1 for none), label_time_ms} of event i from the table: read for the
    // range's ends, and for every event when the history keeps no label blocks; whole blocks
    // whose latest label is before t are taken from the blocks. The same counts as reading
    // every row.
    template <class RowLabel>
    LabelCounts label_counts(size_t b, size_t e, int64_t t, RowLabel&& row_label) const {
        LabelCounts c;
        auto scan = [&](size_t from, size_t to) {
            for (size_t j = from; j < to; ++j) {
                const auto [label, time] = row_label(j);
                if (label < 0 || time >= t) continue;  // not known before t
                ++c.labelled;
                c.fraud += static_cast<uint64_t>(label);
            }
        };
        if (!labels_ || e - b < 2 * kBlock) {
            scan(b, e);
            return c;
        }
        const uint64_t whole_from = (dropped_ + b + kBlock - 1) / kBlock, whole_to = (dropped_ + e) / kBlock;
        scan(b, static_cast<size_t>(whole_from * kBlock - dropped_));
        const LabelBlocks& L = *labels_;
        for (uint64_t k = whole_from; k < whole_to; ++k) {
            const size_t s = static_cast<size_t>(k - L.first);
            if (L.latest[s] < t) {
                c.labelled += L.known[s];
                c.fraud += L.fraud[s];
            } else {
                scan(static_cast<size_t>(k * kBlock - dropped_), static_cast<size_t>((k + 1) * kBlock - dropped_));
            }
        }
        scan(static_cast<size_t>(whole_to * kBlock - dropped_), e);
        return c;
    }
    bool has_label_blocks() const { return labels_ != nullptr; }

    EntityHistory(const EntityHistory&) = delete;
    EntityHistory& operator=(const EntityHistory&) = delete;

private:
    friend class TemporalStore;
    struct Free {
        void operator()(EntityHistory* h) const;
    };
    using Ptr = std::unique_ptr<EntityHistory, Free>;
    // A chunk: kChunk times, then fields_ arrays of kChunk values, then kChunk rows.
    using Chunks = std::vector<std::unique_ptr<int64_t[]>>;

    EntityHistory(uint32_t capacity, uint32_t fields) : capacity_(capacity), fields_(fields) {}
    static Ptr make(uint32_t capacity, uint32_t fields);
    static Ptr make_chunked(uint32_t fields);
    // Appends one event (values: fields_ of them); may move the history (h is updated).
    static void push(Ptr& h, int64_t ts, uint32_t row, const double* values, bool extremes, bool counts);
    // Drops the oldest event (size() > 0); may move it to a smaller allocation.
    static void pop_front(Ptr& h);
    // Into one array of at least `capacity` events (capacity >= size()).
    static void reallocate(Ptr& h, uint32_t capacity);
    static void to_chunks(Ptr& h);
    // Arrays of capacity_ slots after the header: times, then fields_ value arrays, then rows.
    int64_t* ts_base() { return reinterpret_cast<int64_t*>(this + 1); }
    const int64_t* ts_base() const { return reinterpret_cast<const int64_t*>(this + 1); }
    double* vals_base() { return reinterpret_cast<double*>(ts_base() + capacity_); }
    const double* vals_base() const { return reinterpret_cast<const double*>(ts_base() + capacity_); }
    uint32_t* rows_base() { return reinterpret_cast<uint32_t*>(vals_base() + size_t(fields_) * capacity_); }
    const uint32_t* rows_base() const {
        return reinterpret_cast<const uint32_t*>(vals_base() + size_t(fields_) * capacity_);
    }
    // A chunked history's list lives after its header (capacity_ == 0: no arrays there).
    Chunks& chunks() { return *reinterpret_cast<Chunks*>(this + 1); }
    const Chunks& chunks() const { return *reinterpret_cast<const Chunks*>(this + 1); }
    const int64_t* chunk_ts(size_t c) const { return chunks()[c].get(); }
    const double* chunk_vals(size_t c, size_t f) const {
        return reinterpret_cast<const double*>(chunks()[c].get() + kChunk * (1 + f));
    }
    const uint32_t* chunk_rows(size_t c) const {
        return reinterpret_cast<const uint32_t*>(chunks()[c].get() + kChunk * (1 + size_t(fields_)));
    }
    // The slot of event i (mutable, for the store's compaction and appends).
    int64_t& ts_at(size_t i);
    double& value_at(size_t f, size_t i);
    uint32_t& row_at(size_t i);
    // fn(const double* values, size_t n) over field f's events [b, e), in order, one contiguous
    // run at a time (one for a short history; chunk by chunk for a long one).
    template <class Fn>
    void for_runs(size_t f, size_t b, size_t e, Fn&& fn) const {
        if (b >= e) return;
        if (capacity_) {
            fn(vals_base() + f * capacity_ + begin_ + b, e - b);
            return;
        }
        for (size_t p = begin_ + b, end = begin_ + e; p < end;) {
            const size_t off = p & (kChunk - 1);
            const size_t n = end - p < kChunk - off ? end - p : kChunk - off;
            fn(chunk_vals(p >> kChunkShift, f) + off, n);
            p += n;
        }
    }
    void build_blocks(bool extremes, bool counts);
    // Label blocks over every event, label_of(i) -> {label, label_time_ms} (the table's rows).
    template <class LabelOf>
    void build_label_blocks(LabelOf&& label_of) {
        labels_ = std::make_unique<LabelBlocks>();
        labels_->first = dropped_ / kBlock;
        for (size_t i = 0; i < size_; ++i) {
            const auto [label, time] = label_of(i);
            extend_label_blocks(i);
            if (label >= 0) add_label(i, label, time);
        }
    }
    // Room for event i (the newest) in the label blocks.
    void extend_label_blocks(size_t i);
    // Event i got a label (i retained, so its block is kept).
    void add_label(size_t i, int label, int64_t label_time_ms);
    void add_to_blocks(size_t i);
    // Whole blocks of [b, e) (absolute block numbers [from, to)) added into a.
    void merge_blocks(size_t f, uint64_t from, uint64_t to, bool squares, bool count, RangeSums& a) const;
    void merge_level1(size_t f, uint64_t from, uint64_t to, bool squares, bool count, RangeSums& a) const;

    uint32_t size_ = 0;
    uint32_t capacity_ = 0;  // 0: chunked
    uint32_t begin_ = 0;  // evicted slots at the front of the arrays (of the first chunk)
    uint32_t fields_ = 0;
    uint64_t dropped_ = 0;
    std::unique_ptr<HistoryBlocks> blocks_;  // null while short
    std::unique_ptr<LabelBlocks> labels_;    // null while short, or when the store reads no labels
};

}  // namespace libfraud
