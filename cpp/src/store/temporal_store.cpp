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

uint64_t double_bits(double d) {
    uint64_t b;
    std::memcpy(&b, &d, sizeof b);
    return b;
}

constexpr uint64_t kUnlabelledMeta = uint64_t{0xff} << 16;  // label byte -1

}  // namespace


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
    if (pos / kChunkRows >= chunks_.size())  // every word of a row is written below: no zeroing
        chunks_.push_back(std::unique_ptr<uint64_t[]>(new uint64_t[size_t(kChunkRows) * rows_.words]));
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
        const size_t behind = head_pos_ / kChunkRows;
        if (behind >= 8 && 4 * behind >= chunks_.size()) {
            chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<ptrdiff_t>(behind));
            head_pos_ -= behind * kChunkRows;
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
    track_labels(*h);
}

void TemporalStore::track_labels(EntityHistory& h) {
    if (!layout_.labels) return;
    auto label_of = [&](size_t i) {
        const EventRow r = event(h.row(i));
        return std::pair<int, int64_t>{r.label(), r.label_time_ms()};
    };
    if (h.labels_) {
        const size_t i = h.size() - 1;
        h.extend_label_blocks(i);
        const auto [label, time] = label_of(i);
        if (label >= 0) h.add_label(i, label, time);
    } else if (h.size() >= 2 * EntityHistory::kBlock) {  // long enough that scans span whole blocks
        h.build_label_blocks(label_of);
    }
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
    if (!layout_.labels || histories_pending_) return true;  // a restore builds the blocks from the rows
    const EventRow r(w, &rows_);
    const uint32_t mask = r.history_mask();
    for (uint32_t e = 0; e < rows_.E; ++e) {
        if (!(mask & (1u << e))) continue;
        EntityHistory& h = *histories_[e].find(r.entity(e))->value;
        if (!h.labels_) continue;
        // Its position: a history's rows increase with their offset in the table.
        size_t lo = 0, hi = h.size();
        while (lo < hi) {
            const size_t mid = lo + (hi - lo) / 2;
            if (offset(h.row(mid)) < offset(row)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        h.add_label(lo, label, label_time_ms);
    }
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
            EntityHistory& h = *s.value;
            for (size_t i = 0; i < h.size(); ++i) h.row_at(i) = new_row[offset(h.row(i))];
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
    histories_pending_ = true;  // before the label: restore_finish builds the histories and their label blocks
    if (label >= 0) apply_label(row, label, label_time_ms);
    if (history_mask == 0) ++dead_rows_;
}

void TemporalStore::build_restored_histories() {
    // Per type: its (entity, event) edges bucketed by the entity's hash (its low bits: the
    // index's own segment bits), stably, with what a push needs copied beside them; then pushed
    // bucket by bucket. Each pass over the table is sequential and a bucket's pushes reach few
    // index segments and histories, so the restore is not one cache miss after another; each
    // history still gets its events in row order: the same histories as pushing row by row.
    size_t buckets = 1;
    while (buckets < 65536 && buckets * 2048 < size_) buckets *= 2;
    auto bucket = [&](int64_t id) { return static_cast<size_t>(FlatMap<int>::hash(id)) & (buckets - 1); };
    struct Edge {
        int64_t id, ts;
        uint32_t row;
    };
    const size_t F = layout_.history_fields.size();
    std::vector<size_t> at(buckets + 1);
    std::vector<Edge> edges;
    std::vector<double> values;
    for (uint32_t e = 0; e < rows_.E; ++e) {
        std::fill(at.begin(), at.end(), 0);
        for (size_t k = 0; k < size_; ++k) {
            const EventRow r = event(row_at(k));
            if (r.history_mask() & (1u << e)) ++at[bucket(r.entity(e)) + 1];
        }
        for (size_t b = 0; b < buckets; ++b) at[b + 1] += at[b];
        edges.resize(at[buckets]);
        values.resize(at[buckets] * F);
        for (size_t k = 0; k < size_; ++k) {
            const EventRow r = event(row_at(k));
            if (!(r.history_mask() & (1u << e))) continue;
            const size_t i = at[bucket(r.entity(e))]++;
            edges[i] = Edge{r.entity(e), r.time_ms(), row_at(k)};
            for (size_t f = 0; f < F; ++f) values[i * F + f] = r.field(layout_.history_fields[f]);
        }
        for (size_t i = 0; i < edges.size(); ++i) {
            EntityHistory::Ptr& h = history_for_append(e, edges[i].id);
            EntityHistory::push(h, edges[i].ts, edges[i].row, values.data() + i * F, layout_.extremes,
                                layout_has_missing_);
            track_labels(*h);
        }
    }
    histories_pending_ = false;
}

void TemporalStore::restore_finish(int64_t watermark_ms, uint64_t evicted, uint64_t appended_total) {
    if (histories_pending_) build_restored_histories();
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
