#include "store/temporal_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "common/error.h"

namespace libfraud {
namespace {

// glibc malloc: an 8-byte header, 16-byte granules, 32 bytes at least.
size_t malloc_bytes(size_t n) { return n == 0 ? 0 : std::max<size_t>(32, (n + 8 + 15) & ~size_t{15}); }

size_t event_bytes(uint32_t fields) { return sizeof(int64_t) + sizeof(uint32_t) + fields * sizeof(double); }
size_t block_bytes(uint32_t capacity, uint32_t fields) {
    return sizeof(EntityHistory) + event_bytes(fields) * capacity;
}

// At least n events, rounded up to fill the allocator's block (that memory is held anyway).
uint32_t fit_capacity(size_t n, uint32_t fields) {
    const size_t usable = malloc_bytes(block_bytes(0, fields) + event_bytes(fields) * n) - 8;
    const size_t cap = (usable - sizeof(EntityHistory)) / event_bytes(fields);
    return static_cast<uint32_t>(std::min<size_t>(cap, std::numeric_limits<uint32_t>::max()));
}

// Room for n events and a sixteenth more: about 1/32 slack on average (doubling averages 1/2).
uint32_t grown_capacity(size_t n, uint32_t fields) { return fit_capacity(n + n / 16, fields); }

uint64_t double_bits(double d) {
    uint64_t b;
    std::memcpy(&b, &d, sizeof b);
    return b;
}

constexpr uint64_t kUnlabelledMeta = uint64_t{0xff} << 16;  // label byte -1

}  // namespace

static_assert(alignof(EntityHistory) <= alignof(std::max_align_t), "operator new's alignment");
static_assert(sizeof(EntityHistory) % alignof(int64_t) == 0, "arrays follow the header aligned");

std::string StoreLayout::key() const {
    std::string k = schema.layout_key() + "h:";
    for (int f : history_fields) k += std::to_string(f) + ",";
    return k + (extremes ? "x" : "");
}

RowLayout::RowLayout(const Schema& s)
    : E(static_cast<uint32_t>(s.num_entities())),
      N(static_cast<uint32_t>(s.num_numeric())),
      C(static_cast<uint32_t>(s.num_categorical())) {
    entity = 4;  // id, time, amount, label time
    numeric = entity + E;
    categorical = numeric + N;
    degrees = categorical + C;
    meta = degrees + (E + 1) / 2;  // history mask (16 bits), label (8 bits), log1p(amount) (bits 32..63)
    words = meta + 1;
}

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
    return malloc_bytes(sizeof(HistoryBlocks)) + malloc_bytes(n.capacity() * sizeof(uint32_t)) +
           malloc_bytes((sum.capacity() + sum_sq.capacity() + min.capacity() + max.capacity()) * sizeof(double)) +
           malloc_bytes(total_n.capacity() * 8) + malloc_bytes((total_sum.capacity() + total_sq.capacity()) * 8) +
           malloc_bytes((prefix_n.capacity() + prefix_sum.capacity() + prefix_sq.capacity()) * 8) +
           malloc_bytes(n2.capacity() * 4) + malloc_bytes((sum2.capacity() + sum_sq2.capacity()) * 8);
}

void EntityHistory::Free::operator()(EntityHistory* h) const {
    h->~EntityHistory();
    ::operator delete(h);
}

EntityHistory::Ptr EntityHistory::make(uint32_t capacity, uint32_t fields) {
    capacity = fit_capacity(std::max<uint32_t>(capacity, 1), fields);
    return Ptr(new (::operator new(block_bytes(capacity, fields))) EntityHistory(capacity, fields));
}

void EntityHistory::reallocate(Ptr& h, uint32_t capacity) {
    Ptr n = make(capacity, h->fields_);
    const size_t k = h->size_;
    std::memcpy(n->ts_base(), h->ts_base() + h->begin_, k * sizeof(int64_t));
    std::memcpy(n->rows_base(), h->rows_base() + h->begin_, k * sizeof(uint32_t));
    for (uint32_t f = 0; f < h->fields_; ++f)
        std::memcpy(n->vals_base() + size_t(f) * n->capacity_, h->vals_base() + size_t(f) * h->capacity_ + h->begin_,
                    k * sizeof(double));
    n->size_ = h->size_;
    n->dropped_ = h->dropped_;
    n->blocks_ = std::move(h->blocks_);
    h = std::move(n);
}

void EntityHistory::push(Ptr& h, int64_t ts, uint32_t row, const double* values, bool extremes, bool counts) {
    if (h->begin_ + h->size_ == h->capacity_) {
        EntityHistory& x = *h;
        if (x.begin_ > 0 && 16 * static_cast<size_t>(x.begin_) >= x.capacity_) {
            // A sixteenth or more evicted at the front: slide the events down in place.
            const size_t k = x.size_;
            const uint32_t b = x.begin_;
            std::memmove(x.ts_base(), x.ts_base() + b, k * sizeof(int64_t));
            std::memmove(x.rows_base(), x.rows_base() + b, k * sizeof(uint32_t));
            for (uint32_t f = 0; f < x.fields_; ++f) {
                double* v = x.vals_base() + size_t(f) * x.capacity_;
                std::memmove(v, v + b, k * sizeof(double));
            }
            x.begin_ = 0;
        } else {
            reallocate(h, grown_capacity(static_cast<size_t>(h->size_) + 1, h->fields_));
        }
    }
    EntityHistory& x = *h;
    const size_t slot = size_t(x.begin_) + x.size_;
    x.ts_base()[slot] = ts;
    x.rows_base()[slot] = row;
    for (uint32_t f = 0; f < x.fields_; ++f) x.vals_base()[size_t(f) * x.capacity_ + slot] = values[f];
    ++x.size_;
    if (x.blocks_) {
        x.add_to_blocks(x.size_ - 1);
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
        if (B.counts) B.n.resize(cells, 0);
        B.sum.resize(cells, 0.0);
        B.sum_sq.resize(cells, 0.0);
        if (extremes) {
            B.min.resize(cells, std::numeric_limits<double>::infinity());
            B.max.resize(cells, -std::numeric_limits<double>::infinity());
        }
    }
    if ((slot2 + 1) * fields_ > B.sum2.size()) {
        if (B.counts) B.n2.resize((slot2 + 1) * fields_, 0);
        B.sum2.resize((slot2 + 1) * fields_, 0.0);
        B.sum_sq2.resize((slot2 + 1) * fields_, 0.0);
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
    x.begin_ = x.size_ == 0 ? 0 : x.begin_ + 1;
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
            const auto cells = static_cast<ptrdiff_t>(drop * x.fields_);
            if (!B.n.empty()) B.n.erase(B.n.begin(), B.n.begin() + cells);
            for (auto* v : {&B.sum, &B.sum_sq, &B.min, &B.max})
                if (!v->empty()) v->erase(v->begin(), v->begin() + cells);
            B.first += drop;
            const uint64_t front2 = x.dropped_ / (uint64_t{kBlock} * kSuper);
            if (front2 > B.first2) {
                const size_t drop2 = static_cast<size_t>(front2 - B.first2);
                const auto cells2 = static_cast<ptrdiff_t>(drop2 * x.fields_);
                if (!B.n2.empty()) B.n2.erase(B.n2.begin(), B.n2.begin() + cells2);
                B.sum2.erase(B.sum2.begin(), B.sum2.begin() + cells2);
                B.sum_sq2.erase(B.sum_sq2.begin(), B.sum_sq2.begin() + cells2);
                B.first2 = front2;
            }
        }
    }
    if (x.size_ > 0 && x.capacity_ > 16 && 4 * static_cast<size_t>(x.size_) <= x.capacity_) {
        reallocate(h, grown_capacity(x.size_, x.fields_));
    }
}

size_t EntityHistory::lower_bound(int64_t t) const {
    const int64_t* ts = ts_data();
    return static_cast<size_t>(std::lower_bound(ts, ts + size_, t) - ts);
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
    const double* v = vals_base() + f * capacity_ + begin_;
    auto direct = [&](size_t from, size_t to) {
        uint64_t n = 0;
        double sum = a.sum, sq = a.sum_sq;
        if (nan_free && !squares) {
            for (size_t i = from; i < to; ++i) sum += v[i];
            n = to - from;
        } else if (squares) {
            for (size_t i = from; i < to; ++i) {
                const double x = v[i];
                if (std::isnan(x)) continue;
                ++n;
                sum += x;
                sq += x * x;
            }
        } else {
            for (size_t i = from; i < to; ++i) {
                const double x = v[i];
                if (std::isnan(x)) continue;
                ++n;
                sum += x;
            }
        }
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
    const double* v = vals_base() + f * capacity_ + begin_;
    auto direct = [&](size_t from, size_t to) {
        for (size_t i = from; i < to; ++i) {
            if (std::isnan(v[i])) continue;
            lo = std::min(lo, v[i]);
            hi = std::max(hi, v[i]);
        }
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

size_t EntityHistory::heap_bytes() const {
    return malloc_bytes(block_bytes(capacity_, fields_)) + (blocks_ ? blocks_->bytes() : 0);
}

TemporalStore::TemporalStore(StoreLayout layout, StoreConfig config)
    : layout_(std::move(layout)), rows_(layout_.schema), config_(config), histories_(rows_.E) {
    if (config_.retention_ms < 0) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "retention_ms: must be >= 0 (0 = keep all), got " + std::to_string(config_.retention_ms));
    }
    if (rows_.E < 1 || rows_.E > FRAUD_MAX_ENTITY_TYPES) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "a schema has 1 to 16 entity types, got " + std::to_string(rows_.E));
    }
    for (int f : layout_.history_fields) {
        if (f == kAmountField ? !layout_.schema.has_amount : (f < 0 || static_cast<size_t>(f) >= rows_.N))
            throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "history field " + std::to_string(f) + " is not in the schema");
        if (f != kAmountField) layout_has_missing_ = true;  // numeric fields may be NaN; the amount never is
    }
}

void TemporalStore::reserve(size_t n) { ids_.reserve(n); }

bool TemporalStore::within_retention(int64_t t) const {
    if (config_.retention_ms <= 0 || watermark_ms_ == std::numeric_limits<int64_t>::min()) return true;
    if (watermark_ms_ < std::numeric_limits<int64_t>::min() + config_.retention_ms) return true;
    return t >= watermark_ms_ - config_.retention_ms;
}

bool TemporalStore::find_event(int64_t id, uint32_t* row) const {
    const auto* s = ids_.find(id);
    if (!s) return false;
    *row = s->value;
    return true;
}

const EntityHistory* TemporalStore::history(size_t type, int64_t id) const {
    if (type >= histories_.size() || id < 0) return nullptr;
    const HistorySlot* s = histories_[type].find(id);
    return s ? s->value.get() : nullptr;
}

size_t TemporalStore::num_entities(size_t type) const {
    return type < histories_.size() ? histories_[type].size() : 0;
}

std::vector<std::pair<const char*, size_t>> TemporalStore::memory_breakdown() const {
    size_t index = 0, arrays = 0;
    for (const auto& m : histories_) {
        index += malloc_bytes(m.slot_bytes());
        m.for_each([&](const HistorySlot& s) { arrays += s.value->heap_bytes(); });
    }
    const size_t live_chunks = chunks_.size() - head_pos_ / kChunkRows;  // the ones behind the head are freed
    const size_t table = sizeof(*this) + live_chunks * malloc_bytes(size_t(kChunkRows) * rows_.words * 8) +
                         malloc_bytes(chunks_.capacity() * sizeof(void*));
    return {{"table", table},
            {"event_ids", malloc_bytes(ids_.slot_bytes())},
            {"entity_index", index},
            {"histories", arrays}};
}

size_t TemporalStore::approx_bytes() const {
    size_t b = 0;
    for (const auto& part : memory_breakdown()) b += part.second;
    return b;
}

uint64_t* TemporalStore::push_row(const fraud_event& ev, uint32_t* row_out) {
    if (size_ >= std::numeric_limits<uint32_t>::max()) {
        throw FraudError(FRAUD_STATUS_INTERNAL, "temporal store is full (2^32 - 1 retained events); rows are uint32_t");
    }
    const size_t pos = head_pos_ + size_;
    if (pos / kChunkRows >= chunks_.size())
        chunks_.push_back(std::make_unique<uint64_t[]>(size_t(kChunkRows) * rows_.words));
    uint64_t* w = chunks_[pos / kChunkRows].get() + (pos % kChunkRows) * rows_.words;
    const uint32_t row = head_row_ + static_cast<uint32_t>(size_);
    ids_.try_emplace(ev.event_id).first->value = row;  // before the row counts, so a throw leaves it unseen
    ++size_;
    w[0] = static_cast<uint64_t>(ev.event_id);
    w[1] = static_cast<uint64_t>(ev.time_ms);
    w[2] = double_bits(layout_.schema.has_amount ? ev.amount : 0.0);
    w[3] = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    for (uint32_t e = 0; e < rows_.E; ++e) w[rows_.entity + e] = static_cast<uint64_t>(ev.entity_id[e]);
    for (uint32_t i = 0; i < rows_.N; ++i) w[rows_.numeric + i] = double_bits(ev.numeric[i]);
    for (uint32_t i = 0; i < rows_.C; ++i) w[rows_.categorical + i] = static_cast<uint64_t>(ev.categorical[i]);
    for (uint32_t d = rows_.degrees; d < rows_.meta; ++d) w[d] = 0;
    const float log1p_amount = static_cast<float>(std::log1p(EventRow(w, &rows_).amount()));
    uint32_t log1p_bits;
    std::memcpy(&log1p_bits, &log1p_amount, sizeof log1p_bits);
    w[rows_.meta] = kUnlabelledMeta | (uint64_t{log1p_bits} << 32);  // meta: bits 32..63 (see log1p_amount)
    if (ev.time_ms > watermark_ms_) watermark_ms_ = ev.time_ms;
    ++appended_total_;
    *row_out = row;
    return w;
}

void TemporalStore::set_mask(uint64_t* w, uint32_t mask) {
    w[rows_.meta] = (w[rows_.meta] & ~uint64_t{0xffff}) | mask;
}

void TemporalStore::pop_row() {
    const uint64_t* w = word(head_row_);
    EventRow r(w, &rows_);
    ids_.erase(r.event_id());
    if (r.label() >= 0) --labelled_;
    --size_;
    ++head_row_;
    if (++head_pos_ % kChunkRows == 0) {
        chunks_[head_pos_ / kChunkRows - 1].reset();  // wholly behind the head
        if (head_pos_ == 8 * size_t{kChunkRows}) {
            chunks_.erase(chunks_.begin(), chunks_.begin() + 8);
            head_pos_ = 0;
        }
    }
}

EntityHistory::Ptr& TemporalStore::history_for_append(size_t e, int64_t id) {
    auto [s, inserted] = histories_[e].try_emplace(id);
    if (inserted) s->value = EntityHistory::make(1, static_cast<uint32_t>(layout_.history_fields.size()));
    return s->value;
}

void TemporalStore::push_history(EntityHistory::Ptr& h, const fraud_event& ev, uint32_t row) {
    double values[64];
    std::vector<double> many;
    double* v = values;
    if (layout_.history_fields.size() > 64) {
        many.resize(layout_.history_fields.size());
        v = many.data();
    }
    for (size_t f = 0; f < layout_.history_fields.size(); ++f) {
        const int field = layout_.history_fields[f];
        v[f] = field == kAmountField ? ev.amount : ev.numeric[field];
    }
    EntityHistory::push(h, ev.time_ms, row, v, layout_.extremes, layout_has_missing_);
}

void TemporalStore::drop_from_history(size_t e, int64_t id) {
    HistorySlot* s = histories_[e].find(id);
    if (!s) return;
    uint64_t* w = word_mut(s->value->row(0));
    const uint32_t mask = EventRow(w, &rows_).history_mask() & ~(1u << e);
    set_mask(w, mask);
    if (mask == 0) ++dead_rows_;
    EntityHistory::pop_front(s->value);
    if (s->value->size() == 0) histories_[e].erase(id);  // an entity with nothing retained is forgotten
}

void TemporalStore::append(const fraud_event& ev) {
    uint32_t row;
    uint64_t* w = push_row(ev, &row);
    uint32_t mask = 0;
    for (uint32_t e = 0; e < rows_.E; ++e) {
        const int64_t id = ev.entity_id[e];
        if (id < 0) continue;  // absent
        EntityHistory::Ptr& h = history_for_append(e, id);
        // Appends are time-ordered, so only a tie with the newest events makes the count differ
        // from the history's size.
        const size_t n = h->size();
        if (n != 0) {
            const uint64_t before = h->ts(n - 1) == ev.time_ms ? h->lower_bound(ev.time_ms) : n;
            w[rows_.degrees + e / 2] |= (before & 0xffffffffu) << (32 * (e % 2));
        }
        push_history(h, ev, row);
        mask |= 1u << e;
        set_mask(w, mask);
        if (config_.max_history_per_entity > 0 && h->size() > config_.max_history_per_entity) {
            drop_from_history(e, id);  // never empties it: the cap is >= 1
            mask = EventRow(word(row), &rows_).history_mask();
        }
    }
    if (mask == 0) ++dead_rows_;  // an event whose every entity is absent is kept in the table only
    evict();
}

bool TemporalStore::apply_label(uint32_t row, int label, int64_t label_time_ms) {
    uint64_t* w = word_mut(row);
    if (EventRow(w, &rows_).label() >= 0) return false;
    w[3] = static_cast<uint64_t>(label_time_ms);
    w[rows_.meta] = (w[rows_.meta] & ~(uint64_t{0xff} << 16)) | (uint64_t(uint8_t(label)) << 16);
    ++labelled_;
    return true;
}

size_t TemporalStore::apply_labels(const fraud_label* labels, size_t n) {
    size_t applied = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t row;
        if (find_event(labels[i].event_id, &row) && apply_label(row, labels[i].label, labels[i].label_time_ms)) ++applied;
    }
    return applied;
}

void TemporalStore::evict() {
    const bool by_time = config_.retention_ms > 0 &&
                         watermark_ms_ >= std::numeric_limits<int64_t>::min() + config_.retention_ms;
    const int64_t cutoff = by_time ? watermark_ms_ - config_.retention_ms : 0;
    while (size_ > 0) {
        const EventRow front = event(head_row_);
        const bool expired = by_time && front.time_ms() < cutoff;
        const uint32_t mask = front.history_mask();
        if (!expired && mask != 0) break;
        // Every earlier row is gone, so this one is the front of each history it is still in.
        for (uint32_t e = 0; e < rows_.E; ++e) {
            if (mask & (1u << e)) drop_from_history(e, front.entity(e));
        }
        --dead_rows_;  // drop_from_history made it dead (or it already was)
        pop_row();
        ++evicted_;
    }
    // Dead rows behind a live front (the per-entity cap): compact once they are half the table.
    if (dead_rows_ >= 1024 && 2 * dead_rows_ >= size_) compact();
}

void TemporalStore::compact() {
    std::vector<uint32_t> new_row(size_);
    std::vector<std::unique_ptr<uint64_t[]>> chunks;
    size_t kept = 0;
    for (size_t k = 0; k < size_; ++k) {
        const uint32_t row = row_at(k);
        const uint64_t* w = word(row);
        EventRow r(w, &rows_);
        if (r.history_mask() == 0) {
            ids_.erase(r.event_id());
            if (r.label() >= 0) --labelled_;
            ++evicted_;
            continue;
        }
        if (kept % kChunkRows == 0) chunks.push_back(std::make_unique<uint64_t[]>(size_t(kChunkRows) * rows_.words));
        std::memcpy(chunks.back().get() + (kept % kChunkRows) * rows_.words, w, rows_.words * sizeof(uint64_t));
        new_row[k] = head_row_ + static_cast<uint32_t>(kept);
        ids_.find(r.event_id())->value = new_row[k];
        ++kept;
    }
    for (auto& m : histories_) {
        m.for_each([&](HistorySlot& s) {
            uint32_t* rows = s.value->rows_mut();
            for (size_t i = 0; i < s.value->size(); ++i) rows[i] = new_row[offset(rows[i])];
        });
    }
    chunks_.swap(chunks);
    head_pos_ = 0;
    size_ = kept;
    dead_rows_ = 0;
}

void TemporalStore::restore_entity_dropped(size_t type, int64_t id, uint64_t dropped) {
    history_for_append(type, id)->dropped_ = dropped;
}

void TemporalStore::restore_append(const fraud_event& ev, const uint32_t* degrees, uint32_t history_mask,
                                   int label, int64_t label_time_ms) {
    uint32_t row;
    uint64_t* w = push_row(ev, &row);
    for (uint32_t e = 0; e < rows_.E; ++e) w[rows_.degrees + e / 2] |= uint64_t(degrees[e]) << (32 * (e % 2));
    set_mask(w, history_mask);
    if (label >= 0) apply_label(row, label, label_time_ms);
    if (history_mask == 0) ++dead_rows_;
    for (uint32_t e = 0; e < rows_.E; ++e) {
        if (history_mask & (1u << e)) push_history(history_for_append(e, ev.entity_id[e]), ev, row);
    }
}

void TemporalStore::restore_finish(int64_t watermark_ms, uint64_t evicted, uint64_t appended_total) {
    for (auto& m : histories_) {  // dropped counts of entities that got no event: a corrupt snapshot
        m.for_each([](const HistorySlot& s) {
            if (s.value->size() == 0)
                throw FraudError(FRAUD_STATUS_IO_ERROR, "entity " + std::to_string(s.key) + " has a dropped count but no events");
        });
    }
    watermark_ms_ = std::max(watermark_ms_, watermark_ms);
    evicted_ = evicted;
    appended_total_ = appended_total;
    if (config_.max_history_per_entity > 0) {
        for (size_t e = 0; e < histories_.size(); ++e) {
            std::vector<int64_t> over;
            histories_[e].for_each([&](const HistorySlot& s) {
                if (s.value->size() > config_.max_history_per_entity) over.push_back(s.key);
            });
            for (int64_t id : over) {
                while (histories_[e].find(id)->value->size() > config_.max_history_per_entity) drop_from_history(e, id);
            }
        }
    }
    evict();
}

}  // namespace libfraud
