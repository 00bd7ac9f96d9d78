// The store's bounded-growth structures against plain references: the segmented FlatTable
// against std::unordered_map, and chunked entity histories against a plain vector of the same
// events (contents, lower_bound at chunk edges and ties across them, range sums bitwise equal to
// a straightforward re-computation of the documented association order, eviction, per-entity
// caps, compaction, a snapshot round trip). Plain program: prints "N passed, N failed" last.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "check.h"
#include "generic.h"
#include "scratch_files.h"
#include "store/snapshot.h"
#include "store/temporal_store.h"

using namespace libfraud;

namespace {

void test_segmented_table() {
    FlatMap<int64_t> m;
    std::unordered_map<int64_t, int64_t> ref;
    std::mt19937_64 rng(7);
    bool ok = true;
    // 400k keys over a growing range, a third erased: growth across hundreds of segments (each
    // at most kMaxSegmentSlots), erasures while it grows, the empty-key sentinel in between.
    for (int64_t i = 0; i < 600000; ++i) {
        int64_t k = static_cast<int64_t>(rng() % (1 + static_cast<uint64_t>(i)));
        if (i % 101 == 0) k = kFlatEmptyKey;
        else if (i % 7 == 0) k = -k * 7919 - 3;
        if (rng() % 3 == 0) {
            ok &= m.erase(k) == (ref.erase(k) == 1);
        } else {
            auto [s, inserted] = m.try_emplace(k);
            ok &= inserted == (ref.count(k) == 0) && s->key == k;
            if (inserted) ok &= s->value == 0;
            s->value = i;
            ref[k] = i;
        }
        if (i % 50000 == 0 || i == 599999) {
            ok &= m.size() == ref.size();
            for (const auto& [key, v] : ref) ok &= m.find(key) && m.find(key)->value == v;
            for (int j = 0; j < 1000; ++j) {
                const int64_t probe = static_cast<int64_t>(rng());
                ok &= (m.find(probe) != nullptr) == (ref.count(probe) == 1);
            }
            size_t seen = 0;
            m.for_each([&](const FlatKeyValue<int64_t>& s) { ok &= ref.count(s.key) == 1 && ref[s.key] == s.value; ++seen; });
            ok &= seen == ref.size();
        }
    }
    CHECK(ok);
    CHECK(m.capacity() > FlatMap<int64_t>::kMaxSegmentSlots * 16);  // many segments
    CHECK(5 * m.size() <= 4 * m.capacity());
    // Erase everything: the table stays consistent and empty.
    for (const auto& [key, v] : ref) ok &= m.erase(key);
    CHECK(ok && m.size() == 0 && !m.contains(kFlatEmptyKey) && !m.contains(0));
    // A large reserve splits up front; the keys it was sized for all fit and are found.
    FlatSet set;
    set.reserve(100000);
    const size_t cap = set.capacity();
    CHECK(cap >= 100000 * 5 / 4);
    for (int64_t k = 0; k < 100000; ++k) set.try_emplace(k * 3);
    bool all = set.size() == 100000;
    for (int64_t k = 0; k < 300000; ++k) all &= set.contains(k) == (k % 3 == 0);
    CHECK(all);
    CHECK(set.capacity() <= 2 * cap);  // it grew at most a little past its reserve
}

// The inverse of FlatTable's hash (MurmurHash3's fmix64): keys with chosen hashes.
int64_t key_of_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0x9cb4b2f8129337dbULL;
    x ^= x >> 33;
    x *= 0x4f74430c22a54005ULL;
    x ^= x >> 33;
    return static_cast<int64_t>(x);
}

void test_crafted_keys() {
    // 30k keys whose hashes share their low 28 bits: no split separates them, so past the
    // directory's depth cap their segment doubles instead; every key is still found.
    FlatSet s;
    bool ok = true;
    std::vector<int64_t> keys;
    for (uint64_t i = 1; i <= 30000; ++i) {
        const int64_t k = key_of_hash(i << 28);
        ok &= FlatSet::hash(k) == (i << 28);
        if (k == kFlatEmptyKey) continue;
        keys.push_back(k);
        ok &= s.try_emplace(k).second;
    }
    CHECK(ok);
    for (int64_t k : keys) ok &= s.contains(k);
    for (size_t i = 0; i < keys.size(); i += 2) ok &= s.erase(keys[i]);
    for (size_t i = 0; i < keys.size(); ++i) ok &= s.contains(keys[i]) == (i % 2 == 1);
    CHECK(ok && s.size() == keys.size() / 2);
    CHECK(s.capacity() < 4 * 30000 * 4);  // the directory did not blow up with the segment count
}

constexpr size_t kChunk = EntityHistory::kChunk;

// A history's reference: its retained events in order, with the absolute position of the first.
struct Ref {
    struct E {
        int64_t ts, id;
        double amount, risk;
    };
    std::deque<E> ev;
    uint64_t dropped = 0;
};

// The documented sums, from plain arrays: direct sequential sums at the ends, whole blocks of 16
// in the middle (block and super-block sums sequential within each), the first level merged with
// four running sums (leftovers into the first), the second with two, and from the first event of
// a history that never lost one, the plain sequential sum.
RangeSums ref_sums(const std::vector<double>& v, uint64_t dropped, size_t b, size_t e, bool squares, bool nan_free,
                   bool blocks, bool counts) {
    if (blocks && !counts) nan_free = true;
    RangeSums a;
    auto direct = [&](size_t from, size_t to) {
        for (size_t i = from; i < to; ++i) {
            if (!nan_free && std::isnan(v[i])) continue;
            ++a.n;
            a.sum += v[i];
            if (squares) a.sum_sq += v[i] * v[i];
        }
    };
    const uint64_t B = EntityHistory::kBlock, S = EntityHistory::kSuper;
    if (blocks && dropped == 0 && b == 0) {
        direct(0, e);
        return a;
    }
    const uint64_t ab = dropped + b, ae = dropped + e;
    const uint64_t head_end = (ab + B - 1) / B * B, tail_begin = ae / B * B;
    if (!blocks || e - b < 2 * B || head_end >= tail_begin) {
        direct(b, e);
        return a;
    }
    auto block_sum = [&](uint64_t from_pos, uint64_t n_pos, double* s, double* q, uint64_t* n) {
        *s = *q = 0;
        *n = 0;
        for (uint64_t p = from_pos; p < from_pos + n_pos; ++p) {
            const double x = v[static_cast<size_t>(p - dropped)];
            if (std::isnan(x)) continue;
            ++*n;
            *s += x;
            *q += x * x;
        }
    };
    auto level1 = [&](uint64_t from, uint64_t to) {
        if (from >= to) return;
        double s[4] = {0, 0, 0, 0}, q[4] = {0, 0, 0, 0};
        uint64_t n = 0;
        const uint64_t main_end = from + (to - from) / 4 * 4;
        for (uint64_t k = from; k < to; ++k) {
            double bs, bq;
            uint64_t bn;
            block_sum(k * B, B, &bs, &bq, &bn);
            const size_t j = k < main_end ? static_cast<size_t>((k - from) % 4) : 0;
            s[j] += bs;
            q[j] += bq;
            n += bn;
        }
        a.sum += (s[0] + s[1]) + (s[2] + s[3]);
        a.sum_sq += squares ? (q[0] + q[1]) + (q[2] + q[3]) : 0.0;
        if (!nan_free) a.n += n;
    };
    direct(b, static_cast<size_t>(head_end - dropped));
    const uint64_t from = head_end / B, to = tail_begin / B;
    const uint64_t s_from = (from + S - 1) / S, s_to = to / S;
    if (s_from < s_to) {
        level1(from, s_from * S);
        double s0 = 0, s1 = 0, q0 = 0, q1 = 0;
        uint64_t n = 0;
        const uint64_t main_end = s_from + (s_to - s_from) / 2 * 2;
        for (uint64_t k = s_from; k < s_to; ++k) {
            double bs, bq;
            uint64_t bn;
            block_sum(k * B * S, B * S, &bs, &bq, &bn);
            if (k < main_end && (k - s_from) % 2 == 1) {
                s1 += bs;
                q1 += bq;
            } else {
                s0 += bs;
                q0 += bq;
            }
            n += bn;
        }
        a.sum += s0 + s1;
        a.sum_sq += squares ? q0 + q1 : 0.0;
        if (!nan_free) a.n += n;
        level1(s_to * S, to);
    } else {
        level1(from, to);
    }
    if (nan_free) a.n += tail_begin - head_end;
    direct(static_cast<size_t>(tail_begin - dropped), e);
    return a;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Every accessor of h against r, lower_bound at every time and around it, and sums/aggregate
// over ranges chosen to start and end at chunk and block edges (and a few random ones).
bool matches(const TemporalStore& s, const EntityHistory* h, const Ref& r, std::mt19937_64& rng, bool counts) {
    if (!h) return r.ev.empty();
    const size_t n = r.ev.size();
    bool ok = h->size() == n && h->dropped() == r.dropped;
    if (!ok) return false;
    std::vector<double> amount(n), risk(n);
    for (size_t i = 0; i < n; ++i) {
        ok &= h->ts(i) == r.ev[i].ts && s.event(h->row(i)).event_id() == r.ev[i].id;
        ok &= same_bits(h->value(0, i), r.ev[i].amount) && same_bits(h->value(1, i), r.ev[i].risk);
        amount[i] = r.ev[i].amount;
        risk[i] = r.ev[i].risk;
    }
    std::vector<int64_t> times(n);
    for (size_t i = 0; i < n; ++i) times[i] = r.ev[i].ts;
    for (size_t i = 0; i < n; ++i) {  // every time, and either side of it: every chunk edge
        for (int64_t d : {-1, 0, 1}) {
            const int64_t t = times[i] + d;
            ok &= h->lower_bound(t) == static_cast<size_t>(std::lower_bound(times.begin(), times.end(), t) - times.begin());
        }
    }
    ok &= h->lower_bound(std::numeric_limits<int64_t>::max()) == n && h->lower_bound(INT64_MIN) == 0;
    const bool blocks = n >= 2 * EntityHistory::kBlock;  // built once it reached 32; only then do they matter
    auto range = [&](size_t b, size_t e) {
        for (bool squares : {false, true}) {
            const RangeSums g = h->sums(0, b, e, squares, true), w = ref_sums(amount, r.dropped, b, e, squares, true, blocks, counts);
            ok &= g.n == w.n && same_bits(g.sum, w.sum) && same_bits(g.sum_sq, w.sum_sq);
            const RangeSums g2 = h->sums(1, b, e, squares), w2 = ref_sums(risk, r.dropped, b, e, squares, false, blocks, counts);
            ok &= g2.n == w2.n && same_bits(g2.sum, w2.sum) && same_bits(g2.sum_sq, w2.sum_sq);
        }
        const FieldAggregate a = h->aggregate(1, b, e);
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = b; i < e; ++i)
            if (!std::isnan(risk[i])) lo = std::min(lo, risk[i]), hi = std::max(hi, risk[i]);
        ok &= a.n == 0 || (same_bits(a.min, lo) && same_bits(a.max, hi));
    };
    // Short and medium ranges from every fifth event (each chunk edge is inside some), then long
    // ones between random ends, the first and the last event included.
    for (size_t i = 0; i < n; i += 5) range(i, std::min(n, i + 1 + (i * 7) % 90));
    std::vector<size_t> ends = {0, n};
    for (int k = 0; k < 40; ++k) ends.push_back(static_cast<size_t>(rng() % (n + 1)));
    for (size_t x = 0; x < ends.size(); ++x)
        for (size_t y = x; y < ends.size(); ++y) range(std::min(ends[x], ends[y]), std::max(ends[x], ends[y]));
    return ok;
}

// A stream over two_entities (customer, terminal; amount and the numeric "risk", 1 in 9
// missing): one hot customer and one hot terminal on most events, times with runs of ties (so
// equal times straddle chunk boundaries), amounts with fractions (so the order of additions
// shows in the bits).
std::vector<generic::OwnedEvent> stream(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<generic::OwnedEvent> out(n);
    int64_t t = 1000000;
    for (size_t i = 0; i < n; ++i) {
        if (rng() % 4 == 0) t += 1 + static_cast<int64_t>(rng() % 50);  // otherwise a tie
        auto& e = out[i];
        e.id = static_cast<int64_t>(i) + 1;
        e.ts = t;
        e.amount = static_cast<double>(rng() % 100000) / 7.0;
        e.ents = {rng() % 10 < 8 ? 1 : 2 + static_cast<int64_t>(rng() % 50), rng() % 10 < 6 ? 7 : -1};
        e.nums = {rng() % 9 == 0 ? generic::nan() : static_cast<double>(rng() % 1000) / 3.0 - 100.0};
        e.cats = {static_cast<int64_t>(rng() % 5)};
    }
    return out;
}

StoreLayout layout() { return StoreLayout{generic::two_entities(), {kAmountField, 0}}; }

// The references of (type, id) replayed from the stream with the store's retention rules.
void check_against_reference(const TemporalStore& s, const std::vector<generic::OwnedEvent>& evs, size_t upto,
                             const StoreConfig& c, const char* what) {
    std::mt19937_64 rng(3);
    bool ok = true;
    int64_t watermark = INT64_MIN;
    for (size_t type = 0; type < 2; ++type) {
        for (int64_t id : {int64_t{1}, int64_t{7}, int64_t{2}, int64_t{30}}) {
            Ref r;
            for (size_t i = 0; i < upto; ++i) {
                const auto& e = evs[i];
                watermark = std::max(watermark, e.ts);
                if (e.ents[type] == id) r.ev.push_back({e.ts, e.id, e.amount, e.nums[0]});
                if (c.max_history_per_entity && r.ev.size() > c.max_history_per_entity) {
                    r.ev.pop_front();
                    ++r.dropped;
                }
                while (c.retention_ms && !r.ev.empty() && r.ev.front().ts < watermark - c.retention_ms) {
                    r.ev.pop_front();
                    ++r.dropped;
                }
            }
            if (r.ev.empty()) r.dropped = 0;  // forgotten
            const bool one = matches(s, s.history(type, id), r, rng, true);
            if (!one) std::printf("  %s: type %zu id %lld differs\n", what, type, static_cast<long long>(id));
            ok &= one;
        }
    }
    CHECK(ok);
}

void test_chunked_histories() {
    // 40k events of the hot customer: 2500 blocks of 2 fields, past one page of block aggregates.
    const auto evs = stream(50000, 1);
    TemporalStore s(layout());
    bool saw_chunked = false;
    for (size_t i = 0; i < evs.size(); ++i) {
        s.append(evs[i].ev());
        if (i == 900 || i == 1300 || i == 2600 || i == 21000) check_against_reference(s, evs, i + 1, {}, "growing");
        if (const EntityHistory* h = s.history(0, 1)) saw_chunked |= h->chunked();
    }
    CHECK(saw_chunked && s.history(0, 1)->size() > PagedArray<double>::kPage * EntityHistory::kBlock / 2);
    check_against_reference(s, evs, evs.size(), {}, "grown");
}

void test_caps_eviction_compaction() {
    const auto evs = stream(12000, 2);
    // A cap past a chunk: pop_front from a chunked history, whole chunks freed, block arrays
    // trimmed. Rows dropped from both of their histories are dead: compaction renumbers them.
    for (uint32_t cap : {1500u, 3000u}) {
        StoreConfig c;
        c.max_history_per_entity = cap;
        TemporalStore s(layout(), c);
        for (size_t i = 0; i < evs.size(); ++i) s.append(evs[i].ev());
        CHECK(s.history(0, 1)->chunked() && s.history(0, 1)->size() == cap);
        CHECK(s.size() < evs.size());  // compaction dropped dead rows
        check_against_reference(s, evs, evs.size(), c, "capped");
    }
    {  // a cap on paged block aggregates: whole pages trimmed from the front
        const auto many = stream(100000, 6);
        StoreConfig c;
        c.max_history_per_entity = 36000;
        TemporalStore s(layout(), c);
        for (const auto& e : many) s.append(e.ev());
        CHECK(s.history(0, 1)->size() == 36000 && s.history(0, 1)->dropped() > PagedArray<double>::kPage * EntityHistory::kBlock / 2);
        check_against_reference(s, many, many.size(), c, "capped, paged");
    }
    // Retention by time: the hot histories shrink from chunks back to one array.
    StoreConfig c;
    c.retention_ms = 20000;
    TemporalStore s(layout(), c);
    for (size_t i = 0; i < 8000; ++i) s.append(evs[i].ev());
    check_against_reference(s, evs, 8000, c, "retention");
    auto later = evs[8000];
    later.ts = evs[7999].ts + c.retention_ms - 2000;  // keeps only the last ~2 s of history
    later.ents = {99, -1};
    s.append(later.ev());
    const EntityHistory* h = s.history(0, 1);
    CHECK(h && !h->chunked() && h->size() < kChunk / 4);
    std::vector<generic::OwnedEvent> with(evs.begin(), evs.begin() + 8000);
    with.push_back(later);
    check_against_reference(s, with, with.size(), c, "shrunk");
}

void test_snapshot_round_trip() {
    const auto evs = stream(9000, 4);
    StoreConfig c;
    c.max_history_per_entity = 2500;
    TemporalStore s(layout(), c);
    for (const auto& e : evs) s.append(e.ev());
    const std::string dir = scratch_dir("test_store_growth", "snap");
    write_snapshot(s, dir + "/s.snapshot");
    const TemporalStore r = read_snapshot(dir + "/s.snapshot", layout(), c, nullptr);
    CHECK(r.size() == s.size() && r.appended_total() == s.appended_total());
    check_against_reference(r, evs, evs.size(), c, "restored");
    // Every history of the restored store equals the original's, bitwise, over random ranges.
    std::mt19937_64 rng(5);
    bool ok = true;
    for (size_t type = 0; type < 2; ++type) {
        for (int64_t id = 0; id < 60; ++id) {
            const EntityHistory *a = s.history(type, id), *b = r.history(type, id);
            if (!a || !b) {
                ok &= !a && !b;
                continue;
            }
            ok &= a->size() == b->size() && a->dropped() == b->dropped() && a->chunked() == b->chunked();
            for (int k = 0; k < 50 && ok; ++k) {
                size_t x = rng() % (a->size() + 1), y = rng() % (a->size() + 1);
                if (x > y) std::swap(x, y);
                const RangeSums p = a->sums(1, x, y), q = b->sums(1, x, y);
                ok &= p.n == q.n && same_bits(p.sum, q.sum) && same_bits(p.sum_sq, q.sum_sq);
                ok &= s.event(a->row(x % a->size())).event_id() == r.event(b->row(x % b->size())).event_id();
            }
        }
    }
    CHECK(ok);
    std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace

int main() {
    try {
        test_segmented_table();
        test_crafted_keys();
        test_chunked_histories();
        test_caps_eviction_compaction();
        test_snapshot_round_trip();
    } catch (const std::exception& e) {
        ++g_failed;
        std::printf("FAIL: uncaught exception: %s\n", e.what());
    }
    return report_checks();
}
