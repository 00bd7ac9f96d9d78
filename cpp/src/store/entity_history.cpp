#include "store/entity_history.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

namespace libfraud {
namespace {

size_t event_bytes(uint32_t fields) { return sizeof(int64_t) + sizeof(uint32_t) + fields * sizeof(double); }
size_t block_bytes(uint32_t capacity, uint32_t fields) {
    return sizeof(EntityHistory) + event_bytes(fields) * capacity;
}
size_t chunk_words(uint32_t fields) { return size_t{EntityHistory::kChunk} * (1 + fields) + EntityHistory::kChunk / 2; }

// At least n events, rounded up to fill the allocator's block (that memory is held anyway).
uint32_t fit_capacity(size_t n, uint32_t fields) {
    const size_t usable = malloc_bytes(block_bytes(0, fields) + event_bytes(fields) * n) - 8;
    const size_t cap = (usable - sizeof(EntityHistory)) / event_bytes(fields);
    return static_cast<uint32_t>(std::min<size_t>(cap, std::numeric_limits<uint32_t>::max()));
}

// Room for n events and a sixteenth more: about 1/32 slack on average (doubling averages 1/2).
uint32_t grown_capacity(size_t n, uint32_t fields) { return fit_capacity(n + n / 16, fields); }

}  // namespace

static_assert(alignof(EntityHistory) <= alignof(std::max_align_t), "operator new's alignment");
static_assert(sizeof(EntityHistory) % alignof(int64_t) == 0, "arrays follow the header aligned");

void FieldAggregate::add(double x) {
    if (std::isnan(x)) return;
    if (n == 0) {
        min = max = x;
    } else {
        min = std::min(min, x);
        max = std::max(max, x);
    }
    ++n;
    sum += x;
    sum_sq += x * x;
}

size_t HistoryBlocks::bytes() const {
    size_t paged = 0;
    for (const auto* a : {&n, &n2}) paged += malloc_bytes(a->capacity_bytes());
    for (const auto* a : {&sum, &sum_sq, &min, &max, &sum2, &sum_sq2}) paged += malloc_bytes(a->capacity_bytes());
    return malloc_bytes(sizeof(HistoryBlocks)) + paged +
           malloc_bytes(total_n.capacity() * 8) + malloc_bytes((total_sum.capacity() + total_sq.capacity()) * 8) +
           malloc_bytes((prefix_n.capacity() + prefix_sum.capacity() + prefix_sq.capacity()) * 8);
}

void EntityHistory::Free::operator()(EntityHistory* h) const {
    if (h->chunked()) h->chunks().~Chunks();
    h->~EntityHistory();
    ::operator delete(h);
}

EntityHistory::Ptr EntityHistory::make(uint32_t capacity, uint32_t fields) {
    capacity = fit_capacity(std::max<uint32_t>(capacity, 1), fields);
    return Ptr(new (::operator new(block_bytes(capacity, fields))) EntityHistory(capacity, fields));
}

EntityHistory::Ptr EntityHistory::make_chunked(uint32_t fields) {
    static_assert(sizeof(EntityHistory) % alignof(Chunks) == 0, "the chunk list follows the header aligned");
    Ptr h(new (::operator new(sizeof(EntityHistory) + sizeof(Chunks))) EntityHistory(0, fields));
    new (&h->chunks()) Chunks();
    return h;
}

int64_t& EntityHistory::ts_at(size_t i) {
    const size_t p = begin_ + i;
    return capacity_ ? ts_base()[p] : chunks()[p >> kChunkShift][p & (kChunk - 1)];
}
double& EntityHistory::value_at(size_t f, size_t i) {
    const size_t p = begin_ + i;
    if (capacity_) return vals_base()[f * capacity_ + p];
    return reinterpret_cast<double*>(chunks()[p >> kChunkShift].get() + kChunk * (1 + f))[p & (kChunk - 1)];
}
uint32_t& EntityHistory::row_at(size_t i) {
    const size_t p = begin_ + i;
    if (capacity_) return rows_base()[p];
    return reinterpret_cast<uint32_t*>(chunks()[p >> kChunkShift].get() + kChunk * (1 + size_t(fields_)))[p & (kChunk - 1)];
}

void EntityHistory::reallocate(Ptr& h, uint32_t capacity) {
    Ptr n = make(capacity, h->fields_);
    const size_t k = h->size_;
    if (h->chunked()) {  // back to one array (a long history that shrank): at most about kChunk events
        for (size_t i = 0; i < k; ++i) {
            n->ts_base()[i] = h->ts(i);
            n->rows_base()[i] = h->row(i);
            for (uint32_t f = 0; f < h->fields_; ++f) n->vals_base()[size_t(f) * n->capacity_ + i] = h->value(f, i);
        }
    } else {
        std::memcpy(n->ts_base(), h->ts_base() + h->begin_, k * sizeof(int64_t));
        std::memcpy(n->rows_base(), h->rows_base() + h->begin_, k * sizeof(uint32_t));
        for (uint32_t f = 0; f < h->fields_; ++f)
            std::memcpy(n->vals_base() + size_t(f) * n->capacity_,
                        h->vals_base() + size_t(f) * h->capacity_ + h->begin_, k * sizeof(double));
    }
    n->size_ = h->size_;
    n->dropped_ = h->dropped_;
    n->blocks_ = std::move(h->blocks_);
    n->labels_ = std::move(h->labels_);
    h = std::move(n);
}

void EntityHistory::to_chunks(Ptr& h) {
    Ptr n = make_chunked(h->fields_);
    const size_t k = h->size_;
    const size_t words = chunk_words(h->fields_);
    for (size_t c = 0; c * kChunk < k; ++c) n->chunks().push_back(std::make_unique<int64_t[]>(words));
    n->size_ = h->size_;
    for (size_t i = 0; i < k; ++i) {
        n->ts_at(i) = h->ts(i);
        n->row_at(i) = h->row(i);
        for (uint32_t f = 0; f < h->fields_; ++f) n->value_at(f, i) = h->value(f, i);
    }
    n->dropped_ = h->dropped_;
    n->blocks_ = std::move(h->blocks_);
    n->labels_ = std::move(h->labels_);
    h = std::move(n);
}

void EntityHistory::push(Ptr& h, int64_t ts, uint32_t row, const double* values, bool extremes, bool counts) {
    if (h->chunked()) {
        EntityHistory& x = *h;
        const size_t p = size_t(x.begin_) + x.size_;
        if ((p >> kChunkShift) == x.chunks().size()) x.chunks().push_back(std::make_unique<int64_t[]>(chunk_words(x.fields_)));
    } else if (h->begin_ + h->size_ == h->capacity_) {
        EntityHistory& x = *h;
        if (x.begin_ > 0 && 16 * static_cast<size_t>(x.begin_) >= x.capacity_) {
            // A sixteenth or more evicted at the front: slide the events down in place (a short
            // history: at most about kChunk events).
            const size_t k = x.size_;
            const uint32_t b = x.begin_;
            std::memmove(x.ts_base(), x.ts_base() + b, k * sizeof(int64_t));
            std::memmove(x.rows_base(), x.rows_base() + b, k * sizeof(uint32_t));
            for (uint32_t f = 0; f < x.fields_; ++f) {
                double* v = x.vals_base() + size_t(f) * x.capacity_;
                std::memmove(v, v + b, k * sizeof(double));
            }
            x.begin_ = 0;
        } else if (x.size_ >= kChunk) {
            to_chunks(h);
            return push(h, ts, row, values, extremes, counts);
        } else {
            reallocate(h, grown_capacity(static_cast<size_t>(h->size_) + 1, h->fields_));
        }
    }
    EntityHistory& x = *h;
    ++x.size_;
    const size_t i = x.size_ - 1;
    x.ts_at(i) = ts;
    x.row_at(i) = row;
    for (uint32_t f = 0; f < x.fields_; ++f) x.value_at(f, i) = values[f];
    if (x.blocks_) {
        x.add_to_blocks(i);
    } else if (x.fields_ > 0 && x.size_ >= 2 * kBlock) {
        x.build_blocks(extremes, counts);  // long enough that ranges span whole blocks
    }
}

void EntityHistory::add_to_blocks(size_t i) {
    HistoryBlocks& B = *blocks_;
    const uint64_t at = dropped_ + i;
    const size_t slot = static_cast<size_t>(at / kBlock - B.first);
    const size_t cells = (slot + 1) * fields_;
    const bool extremes = B.extremes;
    const uint64_t super = at / (uint64_t{kBlock} * kSuper);
    const size_t slot2 = static_cast<size_t>(super - B.first2);
    if (at % (uint64_t{kBlock} * kSuper) == 0 && B.totals_valid) {  // a super-block starts: the totals before it
        B.prefix_n.insert(B.prefix_n.end(), B.total_n.begin(), B.total_n.end());
        B.prefix_sum.insert(B.prefix_sum.end(), B.total_sum.begin(), B.total_sum.end());
        B.prefix_sq.insert(B.prefix_sq.end(), B.total_sq.begin(), B.total_sq.end());
    }
    if (cells > B.sum.size()) {
        if (B.counts) B.n.grow(cells, 0);
        B.sum.grow(cells, 0.0);
        B.sum_sq.grow(cells, 0.0);
        if (extremes) {
            B.min.grow(cells, std::numeric_limits<double>::infinity());
            B.max.grow(cells, -std::numeric_limits<double>::infinity());
        }
    }
    if ((slot2 + 1) * fields_ > B.sum2.size()) {
        if (B.counts) B.n2.grow((slot2 + 1) * fields_, 0);
        B.sum2.grow((slot2 + 1) * fields_, 0.0);
        B.sum_sq2.grow((slot2 + 1) * fields_, 0.0);
    }
    for (uint32_t f = 0; f < fields_; ++f) {
        const double x = value(f, i);
        if (std::isnan(x)) continue;
        const size_t c = slot * fields_ + f;
        const size_t c2 = slot2 * fields_ + f;
        if (B.counts) {
            ++B.n[c];
            ++B.n2[c2];
        }
        B.sum[c] += x;
        B.sum_sq[c] += x * x;
        B.sum2[c2] += x;
        B.sum_sq2[c2] += x * x;
        if (extremes) {
            B.min[c] = std::min(B.min[c], x);
            B.max[c] = std::max(B.max[c], x);
        }
        ++B.total_n[f];
        B.total_sum[f] += x;
        B.total_sq[f] += x * x;
    }
}

void EntityHistory::build_blocks(bool extremes, bool counts) {
    blocks_ = std::make_unique<HistoryBlocks>();
    blocks_->extremes = extremes;
    blocks_->counts = counts;
    blocks_->first = dropped_ / kBlock;
    blocks_->first2 = dropped_ / (uint64_t{kBlock} * kSuper);
    blocks_->total_n.assign(fields_, 0);
    blocks_->total_sum.assign(fields_, 0.0);
    blocks_->total_sq.assign(fields_, 0.0);
    // Totals only for a history that never lost an event: then they are the sequential sum from
    // its first event, the same before and after a snapshot round trip.
    blocks_->totals_valid = dropped_ == 0;
    // The first block may have lost events to eviction: its aggregates then cover the retained
    // ones only, and it is never used whole (a range starts at or after the retained front).
    for (size_t i = 0; i < size_; ++i) add_to_blocks(i);
}

void EntityHistory::pop_front(Ptr& h) {
    EntityHistory& x = *h;
    --x.size_;
    ++x.dropped_;
    if (x.chunked()) {
        if (++x.begin_ == kChunk) {  // the first chunk is wholly behind the front
            x.chunks().erase(x.chunks().begin());  // a list of size / kChunk pointers
            x.begin_ = 0;
        }
    } else {
        x.begin_ = x.size_ == 0 ? 0 : x.begin_ + 1;
    }
    if (x.blocks_) {
        HistoryBlocks& B = *x.blocks_;
        if (B.totals_valid) {  // the totals include the dropped event: no prefix path any more
            B.totals_valid = false;
            for (auto* v : {&B.prefix_sum, &B.prefix_sq}) std::vector<double>().swap(*v);
            std::vector<uint64_t>().swap(B.prefix_n);
        }
        // Blocks wholly behind the front are never read again: drop them sixteen at a time.
        if (x.dropped_ / kBlock >= B.first + 16) {
            const size_t drop = static_cast<size_t>(x.dropped_ / kBlock - B.first);
            const size_t cells = drop * x.fields_;
            if (!B.n.empty()) B.n.erase_front(cells);
            for (auto* v : {&B.sum, &B.sum_sq, &B.min, &B.max})
                if (!v->empty()) v->erase_front(cells);
            B.first += drop;
            const uint64_t front2 = x.dropped_ / (uint64_t{kBlock} * kSuper);
            if (front2 > B.first2) {
                const size_t drop2 = static_cast<size_t>(front2 - B.first2);
                const size_t cells2 = drop2 * x.fields_;
                if (!B.n2.empty()) B.n2.erase_front(cells2);
                B.sum2.erase_front(cells2);
                B.sum_sq2.erase_front(cells2);
                B.first2 = front2;
            }
        }
    }
    if (x.labels_ && x.dropped_ / kBlock >= x.labels_->first + 16) {  // as the blocks: sixteen at a time
        LabelBlocks& L = *x.labels_;
        const size_t drop = static_cast<size_t>(x.dropped_ / kBlock - L.first);
        L.known.erase_front(drop);
        L.fraud.erase_front(drop);
        L.latest.erase_front(drop);
        L.first += drop;
    }
    if (x.chunked()) {
        // Back to one array once a quarter chunk is left (a copy of at most kChunk / 4 events).
        if (x.size_ > 0 && 4 * static_cast<size_t>(x.size_) <= kChunk) reallocate(h, grown_capacity(x.size_, x.fields_));
    } else if (x.size_ > 0 && x.capacity_ > 16 && 4 * static_cast<size_t>(x.size_) <= x.capacity_) {
        reallocate(h, grown_capacity(x.size_, x.fields_));
    }
}

size_t EntityHistory::lower_bound(int64_t t) const {
    // Past the newest event (every score_and_ingest): no search.
    if (size_ == 0 || ts(size_ - 1) < t) return size_;
    if (capacity_) {
        const int64_t* ts = ts_base() + begin_;
        return static_cast<size_t>(std::lower_bound(ts, ts + size_, t) - ts);
    }
    // Two levels: the first chunk whose last retained time is >= t, then within it.
    const Chunks& c = chunks();
    const size_t last_pos = size_t(begin_) + size_ - 1;
    size_t lo = 0, hi = last_pos >> kChunkShift;  // the answer's chunk is in [lo, hi]
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (c[mid][kChunk - 1] < t) lo = mid + 1;
        else hi = mid;
    }
    const size_t from = lo == 0 ? begin_ : 0;
    const size_t to = lo == (last_pos >> kChunkShift) ? (last_pos & (kChunk - 1)) + 1 : kChunk;
    const int64_t* ts = c[lo].get();
    const size_t p = (lo << kChunkShift) + static_cast<size_t>(std::lower_bound(ts + from, ts + to, t) - ts);
    return p - begin_;
}

void EntityHistory::merge_blocks(size_t f, uint64_t from, uint64_t to, bool squares, bool count, RangeSums& a) const {
    // Whole super-blocks inside [from, to) are taken at the second level; the blocks either side
    // of them at the first. The grouping depends on the absolute positions only.
    const uint64_t s_from = (from + kSuper - 1) / kSuper, s_to = to / kSuper;
    if (s_from < s_to) {
        merge_level1(f, from, s_from * kSuper, squares, count, a);
        const HistoryBlocks& B = *blocks_;
        double s0 = 0, s1 = 0, q0 = 0, q1 = 0;
        uint64_t n = 0;
        const size_t F = fields_;
        size_t k = static_cast<size_t>(s_from - B.first2);
        const size_t end = static_cast<size_t>(s_to - B.first2);
        for (; k + 2 <= end; k += 2) {
            s0 += B.sum2[k * F + f];
            s1 += B.sum2[(k + 1) * F + f];
            if (squares) {
                q0 += B.sum_sq2[k * F + f];
                q1 += B.sum_sq2[(k + 1) * F + f];
            }
            if (count) n += B.n2[k * F + f] + B.n2[(k + 1) * F + f];
        }
        for (; k < end; ++k) {
            s0 += B.sum2[k * F + f];
            if (squares) q0 += B.sum_sq2[k * F + f];
            if (count) n += B.n2[k * F + f];
        }
        a.sum += s0 + s1;
        a.sum_sq += q0 + q1;
        a.n += n;
        merge_level1(f, s_to * kSuper, to, squares, count, a);
        return;
    }
    merge_level1(f, from, to, squares, count, a);
}

void EntityHistory::merge_level1(size_t f, uint64_t from, uint64_t to, bool squares, bool count, RangeSums& a) const {
    if (from >= to) return;
    const HistoryBlocks& B = *blocks_;
    // Four running sums break the add latency chain; the order is fixed, so results are repeatable.
    double s[4] = {0, 0, 0, 0}, q[4] = {0, 0, 0, 0};
    uint64_t n = 0;
    size_t k = static_cast<size_t>(from - B.first);
    const size_t end = static_cast<size_t>(to - B.first);
    const size_t F = fields_;
    for (; k + 4 <= end; k += 4) {
        for (size_t j = 0; j < 4; ++j) s[j] += B.sum[(k + j) * F + f];
        if (squares)
            for (size_t j = 0; j < 4; ++j) q[j] += B.sum_sq[(k + j) * F + f];
    }
    for (; k < end; ++k) {
        s[0] += B.sum[k * F + f];
        if (squares) q[0] += B.sum_sq[k * F + f];
    }
    if (count)
        for (size_t b = static_cast<size_t>(from - B.first); b < end; ++b) n += B.n[b * F + f];
    a.sum += (s[0] + s[1]) + (s[2] + s[3]);
    a.sum_sq += (q[0] + q[1]) + (q[2] + q[3]);
    a.n += n;
}

RangeSums EntityHistory::sums(size_t f, size_t b, size_t e, bool squares, bool nan_free) const {
    if (blocks_ && !blocks_->counts) nan_free = true;  // no field of this store can be missing
    RangeSums a;
    // One value at a time, in order, run by run: the same sequential sum whatever the storage.
    auto direct = [&](size_t from, size_t to) {
        uint64_t n = 0;
        double sum = a.sum, sq = a.sum_sq;
        for_runs(f, from, to, [&](const double* v, size_t len) {
            if (nan_free && !squares) {
                for (size_t i = 0; i < len; ++i) sum += v[i];
                n += len;
            } else if (squares) {
                for (size_t i = 0; i < len; ++i) {
                    const double x = v[i];
                    if (std::isnan(x)) continue;
                    ++n;
                    sum += x;
                    sq += x * x;
                }
            } else {
                for (size_t i = 0; i < len; ++i) {
                    const double x = v[i];
                    if (std::isnan(x)) continue;
                    ++n;
                    sum += x;
                }
            }
        });
        a.n += n;
        a.sum = sum;
        a.sum_sq = sq;
    };
    if (blocks_ && blocks_->totals_valid && b == 0) {
        // From the first event: the running totals at e's block's start, then the rest of the
        // way one by one: exactly the sequential sum of [0, e), whatever was stored after e.
        const HistoryBlocks& B = *blocks_;
        const size_t k = e / (size_t{kBlock} * kSuper);
        if (e < size_ && k * fields_ < B.prefix_sum.size()) {
            a.n = B.prefix_n[k * fields_ + f];
            a.sum = B.prefix_sum[k * fields_ + f];
            a.sum_sq = squares ? B.prefix_sq[k * fields_ + f] : 0.0;
            direct(k * kBlock * kSuper, e);
        } else {  // the whole history: the totals themselves
            a.n = B.total_n[f];
            a.sum = B.total_sum[f];
            a.sum_sq = squares ? B.total_sq[f] : 0.0;
        }
        return a;
    }
    const uint64_t ab = dropped_ + b, ae = dropped_ + e;
    const uint64_t head_end = (ab + kBlock - 1) / kBlock * kBlock;
    const uint64_t tail_begin = ae / kBlock * kBlock;
    if (!blocks_ || e - b < 2 * kBlock || head_end >= tail_begin) {
        direct(b, e);
        return a;
    }
    // Whole blocks only: a block partly evicted starts before ab, so it is never used.
    direct(b, static_cast<size_t>(head_end - dropped_));
    merge_blocks(f, head_end / kBlock, tail_begin / kBlock, squares, !nan_free, a);
    if (nan_free) a.n += tail_begin - head_end;  // every value counts
    direct(static_cast<size_t>(tail_begin - dropped_), e);
    return a;
}

FieldAggregate EntityHistory::aggregate(size_t f, size_t b, size_t e) const {
    const RangeSums s = sums(f, b, e);
    FieldAggregate a;
    a.n = s.n;
    a.sum = s.sum;
    a.sum_sq = s.sum_sq;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    auto direct = [&](size_t from, size_t to) {
        for_runs(f, from, to, [&](const double* v, size_t len) {
            for (size_t i = 0; i < len; ++i) {
                if (std::isnan(v[i])) continue;
                lo = std::min(lo, v[i]);
                hi = std::max(hi, v[i]);
            }
        });
    };
    const uint64_t ab = dropped_ + b, ae = dropped_ + e;
    const uint64_t head_end = (ab + kBlock - 1) / kBlock * kBlock;
    const uint64_t tail_begin = ae / kBlock * kBlock;
    if (!blocks_ || !blocks_->extremes || e - b < 2 * kBlock || head_end >= tail_begin) {
        direct(b, e);
    } else {
        direct(b, static_cast<size_t>(head_end - dropped_));
        const HistoryBlocks& B = *blocks_;
        for (uint64_t block = head_end / kBlock; block < tail_begin / kBlock; ++block) {
            const size_t c = static_cast<size_t>(block - B.first) * fields_ + f;
            lo = std::min(lo, B.min[c]);  // +-inf in a block without a value
            hi = std::max(hi, B.max[c]);
        }
        direct(static_cast<size_t>(tail_begin - dropped_), e);
    }
    a.min = lo;
    a.max = hi;
    return a;
}

size_t LabelBlocks::bytes() const {
    return malloc_bytes(sizeof(LabelBlocks)) + malloc_bytes(known.capacity_bytes()) + malloc_bytes(fraud.capacity_bytes()) +
           malloc_bytes(latest.capacity_bytes());
}

void EntityHistory::extend_label_blocks(size_t i) {
    LabelBlocks& L = *labels_;
    const size_t slot = static_cast<size_t>((dropped_ + i) / kBlock - L.first);
    if (slot < L.known.size()) return;
    L.known.grow(slot + 1, 0);
    L.fraud.grow(slot + 1, 0);
    L.latest.grow(slot + 1, std::numeric_limits<int64_t>::min());
}

void EntityHistory::add_label(size_t i, int label, int64_t label_time_ms) {
    LabelBlocks& L = *labels_;
    const size_t slot = static_cast<size_t>((dropped_ + i) / kBlock - L.first);
    ++L.known[slot];
    L.fraud[slot] = static_cast<uint8_t>(L.fraud[slot] + (label > 0 ? 1 : 0));
    L.latest[slot] = std::max(L.latest[slot], label_time_ms);
}

size_t EntityHistory::heap_bytes() const {
    const size_t blocks = (blocks_ ? blocks_->bytes() : 0) + (labels_ ? labels_->bytes() : 0);
    if (!chunked()) return malloc_bytes(block_bytes(capacity_, fields_)) + blocks;
    return malloc_bytes(sizeof(EntityHistory) + sizeof(Chunks)) + malloc_bytes(chunks().capacity() * sizeof(void*)) +
           chunks().size() * malloc_bytes(chunk_words(fields_) * sizeof(int64_t)) + blocks;
}

}  // namespace libfraud
