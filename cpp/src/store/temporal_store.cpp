#include "store/temporal_store.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
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

// One event in a history's arrays: ts_ms, two running sums, a row.
constexpr size_t kEventBytes = sizeof(int64_t) + 2 * sizeof(double) + sizeof(uint32_t);

size_t block_bytes(uint32_t capacity) { return sizeof(EntityHistory) + kEventBytes * capacity; }

// At least n events, rounded up to fill the allocator's block (that memory is held anyway).
uint32_t fit_capacity(size_t n) {
    const size_t usable = malloc_bytes(sizeof(EntityHistory) + kEventBytes * n) - 8;
    const size_t cap = (usable - sizeof(EntityHistory)) / kEventBytes;
    return static_cast<uint32_t>(std::min<size_t>(cap, std::numeric_limits<uint32_t>::max()));
}

// Room for n events and a sixteenth more: about 1/32 slack on average (doubling averages 1/2), for
// an amortised 16 copies of 28 bytes per event.
uint32_t grown_capacity(size_t n) { return fit_capacity(n + n / 16); }

}  // namespace

static_assert(alignof(EntityHistory) <= alignof(std::max_align_t), "operator new's alignment");
static_assert(sizeof(EntityHistory) % alignof(int64_t) == 0, "arrays follow the header aligned");

void EntityHistory::Free::operator()(EntityHistory* h) const {
    h->~EntityHistory();
    ::operator delete(h);
}

EntityHistory::Ptr EntityHistory::make(uint32_t capacity) {
    capacity = fit_capacity(std::max<uint32_t>(capacity, 1));
    Ptr h(new (::operator new(block_bytes(capacity))) EntityHistory(capacity));
    h->point_columns(0);
    return h;
}

void EntityHistory::point_columns(uint32_t begin) {
    // int64 and double arrays first, so each stays 8-byte aligned after the 8-aligned header.
    auto* ts = reinterpret_cast<int64_t*>(this + 1);
    auto* sums = reinterpret_cast<double*>(ts + capacity_);
    auto* sq_sums = sums + capacity_;
    auto* rows = reinterpret_cast<uint32_t*>(sq_sums + capacity_);
    ts_ms.p_ = ts + begin;
    amount_cumsum.p_ = sums + begin;
    amount_sq_cumsum.p_ = sq_sums + begin;
    txn_rows.p_ = rows + begin;
}

void EntityHistory::reallocate(Ptr& h, uint32_t capacity) {
    Ptr n = make(capacity);
    const size_t k = h->size_;
    std::memcpy(n->ts_ms.p_, h->ts_ms.p_, k * sizeof(int64_t));
    std::memcpy(n->amount_cumsum.p_, h->amount_cumsum.p_, k * sizeof(double));
    std::memcpy(n->amount_sq_cumsum.p_, h->amount_sq_cumsum.p_, k * sizeof(double));
    std::memcpy(n->txn_rows.p_, h->txn_rows.p_, k * sizeof(uint32_t));
    n->size_ = h->size_;
    n->amount_cumsum.base_ = h->amount_cumsum.base_;
    n->amount_sq_cumsum.base_ = h->amount_sq_cumsum.base_;
    h = std::move(n);
}

void EntityHistory::push(Ptr& h, int64_t ts_ms, uint32_t row, double amount, double amount_sq) {
    const uint32_t begin = h->begin();
    if (begin + h->size_ == h->capacity_) {
        if (begin > 0 && 16 * static_cast<size_t>(begin) >= h->capacity_) {
            // A sixteenth or more evicted at the front: slide the events down in place.
            EntityHistory& x = *h;
            const size_t k = x.size_;
            int64_t* ts = x.ts_ms.p_ - begin;
            double* sums = x.amount_cumsum.p_ - begin;
            double* sq_sums = x.amount_sq_cumsum.p_ - begin;
            uint32_t* rows = x.txn_rows.p_ - begin;
            std::memmove(ts, x.ts_ms.p_, k * sizeof(int64_t));
            std::memmove(sums, x.amount_cumsum.p_, k * sizeof(double));
            std::memmove(sq_sums, x.amount_sq_cumsum.p_, k * sizeof(double));
            std::memmove(rows, x.txn_rows.p_, k * sizeof(uint32_t));
            x.point_columns(0);
        } else {
            reallocate(h, grown_capacity(static_cast<size_t>(h->size_) + 1));
        }
    }
    EntityHistory& x = *h;
    const uint32_t i = x.size_;
    x.ts_ms.p_[i] = ts_ms;
    x.txn_rows.p_[i] = row;
    x.amount_cumsum.p_[i] = (i == 0 ? x.amount_cumsum.base_ : x.amount_cumsum.p_[i - 1]) + amount;
    x.amount_sq_cumsum.p_[i] = (i == 0 ? x.amount_sq_cumsum.base_ : x.amount_sq_cumsum.p_[i - 1]) + amount_sq;
    ++x.size_;
}

void EntityHistory::pop_front(Ptr& h) {
    EntityHistory& x = *h;
    x.amount_cumsum.base_ = x.amount_cumsum.p_[0];
    x.amount_sq_cumsum.base_ = x.amount_sq_cumsum.p_[0];
    --x.size_;
    x.point_columns(x.size_ == 0 ? 0 : x.begin() + 1);
    // Mostly evicted: give the memory back (amortised: the size fell by three quarters since the
    // last move).
    if (x.size_ > 0 && x.capacity_ > 16 && 4 * static_cast<size_t>(x.size_) <= x.capacity_) {
        reallocate(h, grown_capacity(x.size_));
    }
}

void EntityHistory::set_bases(double base, double base_sq) {
    amount_cumsum.base_ = base;
    amount_sq_cumsum.base_ = base_sq;
}

size_t EntityHistory::lower_bound(int64_t t) const {
    return static_cast<size_t>(std::lower_bound(ts_ms.p_, ts_ms.p_ + size_, t) - ts_ms.p_);
}

size_t EntityHistory::heap_bytes() const { return malloc_bytes(block_bytes(capacity_)); }

TemporalStore::TemporalStore(StoreConfig config) : config_(config) {
    if (config_.retention_ms < 0) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "retention_ms: must be >= 0 (0 = keep all), got " +
                             std::to_string(config_.retention_ms));
    }
}

void TemporalStore::reserve(size_t n_txns) {
    txn_ids_.reserve(n_txns);
}

bool TemporalStore::within_retention(int64_t t) const {
    if (config_.retention_ms <= 0 || watermark_ms_ == std::numeric_limits<int64_t>::min()) return true;
    if (watermark_ms_ < std::numeric_limits<int64_t>::min() + config_.retention_ms) return true;
    return t >= watermark_ms_ - config_.retention_ms;
}

const EntityHistory* TemporalStore::history(fraud_entity type, int64_t id) const {
    if (type < 0 || type >= FRAUD_ENTITY_COUNT || id < 0) return nullptr;
    const HistorySlot* s = histories_[type].find(id);
    return s ? s->value.get() : nullptr;
}

size_t TemporalStore::num_entities(fraud_entity type) const {
    if (type < 0 || type >= FRAUD_ENTITY_COUNT) return 0;
    return histories_[type].size();
}

std::vector<std::pair<const char*, size_t>> TemporalStore::memory_breakdown() const {
    size_t index = 0, arrays = 0;
    for (const auto& m : histories_) {
        index += malloc_bytes(m.slot_bytes());
        m.for_each([&](const HistorySlot& s) { arrays += s.value->heap_bytes(); });
    }
    return {{"table", sizeof(*this) + deque_bytes(txns_) + deque_bytes(degrees_) + deque_bytes(masks_)},
            {"txn_ids", malloc_bytes(txn_ids_.slot_bytes())},
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
    txn_ids_.try_emplace(txn.txn_id);
    if (txn.timestamp_ms > watermark_ms_) watermark_ms_ = txn.timestamp_ms;
    ++appended_total_;
    return row;
}

void TemporalStore::drop_from_history(int e, int64_t id) {
    HistorySlot* s = histories_[e].find(id);
    if (!s) return;
    const size_t k = offset(s->value->txn_rows[0]);
    masks_[k] = static_cast<uint8_t>(masks_[k] & ~(1u << e));
    if (masks_[k] == 0) ++dead_rows_;
    EntityHistory::pop_front(s->value);
    if (s->value->size() == 0) histories_[e].erase(id);  // an entity with nothing retained is forgotten
}

EntityHistory::Ptr& TemporalStore::history_for_append(int e, int64_t id) {
    auto [s, inserted] = histories_[e].try_emplace(id);
    if (inserted) s->value = EntityHistory::make(1);
    return s->value;
}

void TemporalStore::append(const fraud_txn& txn) {
    const uint32_t row = push_row(txn);
    const size_t k = txns_.size() - 1;
    const double sq = txn.amount * txn.amount;
    std::array<uint32_t, FRAUD_ENTITY_COUNT>& before = degrees_[k];
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        const int64_t id = txn.entity_id[e];
        if (id < 0) continue;  // absent
        EntityHistory::Ptr& h = history_for_append(e, id);
        // Appends are time-ordered, so only a tie with the newest events makes the count differ
        // from the history's size.
        const size_t n = h->size();
        if (n != 0) {
            before[e] = static_cast<uint32_t>(h->ts_ms[n - 1] == txn.timestamp_ms
                                                  ? h->lower_bound(txn.timestamp_ms)
                                                  : n);
        }
        EntityHistory::push(h, txn.timestamp_ms, row, txn.amount, sq);
        masks_[k] = static_cast<uint8_t>(masks_[k] | (1u << e));
        if (config_.max_history_per_entity > 0 && h->size() > config_.max_history_per_entity) {
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
        m.for_each([&](HistorySlot& s) {
            uint32_t* rows = s.value->rows();
            for (size_t i = 0; i < s.value->size(); ++i) rows[i] = new_row[offset(rows[i])];
        });
    }
    txns_.swap(txns);
    degrees_.swap(degrees);
    masks_.swap(masks);
    dead_rows_ = 0;
}

void TemporalStore::restore_entity_base(fraud_entity type, int64_t id, double base, double base_sq) {
    history_for_append(type, id)->set_bases(base, base_sq);
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
        EntityHistory::push(history_for_append(e, txn.entity_id[e]), txn.timestamp_ms, row, txn.amount,
                            txn.amount * txn.amount);
    }
}

void TemporalStore::restore_finish(int64_t watermark_ms, uint64_t evicted, uint64_t appended_total) {
    for (auto& m : histories_) {  // bases of entities that got no event: a corrupt snapshot
        m.for_each([](const HistorySlot& s) {
            if (s.value->size() == 0) {
                throw FraudError(FRAUD_STATUS_IO_ERROR,
                                 "entity " + std::to_string(s.key) + " has a base but no events");
            }
        });
    }
    watermark_ms_ = std::max(watermark_ms_, watermark_ms);
    evicted_ = evicted;
    appended_total_ = appended_total;
    if (config_.max_history_per_entity > 0) {
        for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
            std::vector<int64_t> over;
            histories_[e].for_each([&](const HistorySlot& s) {
                if (s.value->size() > config_.max_history_per_entity) over.push_back(s.key);
            });
            for (int64_t id : over) {
                while (histories_[e].find(id)->value->size() > config_.max_history_per_entity) {
                    drop_from_history(e, id);
                }
            }
        }
    }
    evict();
}

}  // namespace libfraud
