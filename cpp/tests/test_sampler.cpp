// The neighbourhood sampler on small hand-made cases (the random ones: tests/test_sampler.py), on
// the payments preset (4 entity types, graph field mcc) and on a 7-entity-type schema.
// Plain program: prints "N passed, N failed" last; exit code 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "common/error.h"
#include "generic.h"
#include "payments.h"
#include "sampler/neighbourhood.h"
#include "sampler/sampler.h"
#include "store/temporal_store.h"

using namespace libfraud;
using payments::Event;

namespace {

constexpr int64_t kHour = 3600000;

fraud_txn make(int64_t id, int64_t ts, double amount, int64_t card, int64_t device = 10,
               int64_t merchant = 20, int64_t ip = 30, int32_t mcc = 5411) {
    return payments::txn(id, ts, amount, card, device, merchant, ip, 840, mcc);
}

const Schema& P() { return payments::schema(); }
void add(TemporalStore& s, const fraud_txn& t) { s.append(Event(t)); }

// The old fixed sampler's transaction features ended with mcc / 10000; now the spec lists graph
// fields, and the payments bundles' sampler lists mcc, whose value is its code as a float.
const FieldRef kMcc{FieldRef::Categorical, 1};
SamplerConfig config(uint32_t fanout, SampleStrategy strategy, uint64_t seed, int64_t retention_ms,
                     std::vector<FieldRef> graph_fields = {kMcc}) {
    SamplerConfig c;
    c.fanout = fanout;
    c.strategy = strategy;
    c.seed = seed;
    c.retention_ms = retention_ms;
    c.graph_fields = std::move(graph_fields);
    return c;
}

// One target's arrays, with accessors by index; a sentinel past each end checks the write extent.
struct Sample {
    NeighbourhoodShape sh;
    std::vector<float> target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask;
    std::vector<int64_t> ent1_id, txn2_id, ent3_id;
    NeighbourhoodBuffers buf;

    explicit Sample(const Sampler& sampler, size_t batch = 1) : sh(sampler.shape()) {
        auto f = [&](std::vector<float>& v, size_t n) { v.assign(batch * n + 1, -777.0f); return v.data(); };
        auto g = [&](std::vector<int64_t>& v, size_t n) { v.assign(batch * n + 1, -777); return v.data(); };
        buf.target_x = f(target_x, sh.target_x());
        buf.ent1_x = f(ent1_x, sh.ent1_x());
        buf.ent1_mask = f(ent1_mask, sh.ent1_mask());
        buf.txn2_x = f(txn2_x, sh.txn2_x());
        buf.txn2_mask = f(txn2_mask, sh.txn2_mask());
        buf.ent3_x = f(ent3_x, sh.ent3_x());
        buf.ent3_mask = f(ent3_mask, sh.ent3_mask());
        buf.ent1_id = g(ent1_id, sh.ent1_mask());
        buf.txn2_id = g(txn2_id, sh.txn2_mask());
        buf.ent3_id = g(ent3_id, sh.ent3_mask());
    }
    bool sentinels_intact() const {
        return target_x.back() == -777.0f && ent1_x.back() == -777.0f && ent1_mask.back() == -777.0f &&
               txn2_x.back() == -777.0f && txn2_mask.back() == -777.0f && ent3_x.back() == -777.0f &&
               ent3_mask.back() == -777.0f && ent1_id.back() == -777 && txn2_id.back() == -777 &&
               ent3_id.back() == -777;
    }
    bool all_written() const {
        for (auto* v : {&target_x, &ent1_x, &ent1_mask, &txn2_x, &txn2_mask, &ent3_x, &ent3_mask}) {
            for (size_t j = 0; j + 1 < v->size(); ++j) if ((*v)[j] == -777.0f) return false;
        }
        for (auto* v : {&ent1_id, &txn2_id, &ent3_id}) {
            for (size_t j = 0; j + 1 < v->size(); ++j) if ((*v)[j] == -777) return false;
        }
        return true;
    }
    size_t k() const { return sh.fanout; }
    size_t E() const { return sh.entity_types; }
    size_t Fe() const { return sh.entity_features(); }
    size_t Ft() const { return sh.txn_features; }
    float e1x(int e, int j) const { return ent1_x[e * Fe() + j]; }
    float t2x(int e, size_t k_, int j) const { return txn2_x[(e * k() + k_) * Ft() + j]; }
    float t2m(int e, size_t k_) const { return txn2_mask[e * k() + k_]; }
    int64_t t2id(int e, size_t k_) const { return txn2_id[e * k() + k_]; }
    float e3x(int e, size_t k_, int f, int j) const { return ent3_x[((e * k() + k_) * E() + f) * Fe() + j]; }
    float e3m(int e, size_t k_, int f) const { return ent3_mask[(e * k() + k_) * E() + f]; }
    int64_t e3id(int e, size_t k_, int f) const { return ent3_id[(e * k() + k_) * E() + f]; }
};

float lg(double x) { return static_cast<float>(std::log1p(x)); }

// card 1: txns 1 (t=1000), 2 (t=2000), 3 (t=2000, device absent), 4 (t=3000); card 2: txn 5 (t=3000).
TemporalStore small_store() {
    TemporalStore s = payments::store();
    add(s, make(1, 1000, 10.0, 1, 10, 20, 30));
    add(s, make(2, 2000, 20.0, 1, 10, 21, 30));
    add(s, make(3, 2000, 30.0, 1, -1, 20, 31));
    add(s, make(4, 3000, 40.0, 1, 11, 20, -1));
    add(s, make(5, 3000, 50.0, 2, 10, 20, 30));
    return s;
}

uint32_t degree(const TemporalStore& s, size_t k, size_t e) { return s.event(s.row_at(k)).degree_before(e); }

void test_store_degrees_before() {
    TemporalStore s = small_store();
    // Txn 3 ties txn 2 at t=2000: both saw the card's one earlier event.
    CHECK(degree(s, 1, FRAUD_ENTITY_CARD) == 1);
    CHECK(degree(s, 2, FRAUD_ENTITY_CARD) == 1);
    CHECK(degree(s, 3, FRAUD_ENTITY_CARD) == 3);
    CHECK(degree(s, 2, FRAUD_ENTITY_DEVICE) == 0);  // absent
    CHECK(degree(s, 4, FRAUD_ENTITY_DEVICE) == 2);  // device 10: txns 1, 2 (not 3: absent)
    CHECK(degree(s, 4, FRAUD_ENTITY_MERCHANT) == 2);  // merchant 20: 1, 3; 4 ties at 3000
    CHECK(degree(s, 0, FRAUD_ENTITY_IP) == 0);
}

void test_most_recent() {
    TemporalStore s = small_store();
    Sampler sampler(P(), config(2, SampleStrategy::MostRecent, 0, 0));
    CHECK(sampler.shape().entity_types == 4 && sampler.shape().txn_features == 5 && sampler.shape().fanout == 2);
    Sample o(sampler);
    // Target at t=3000, card 1, device 12 (never seen), merchant 20, ip absent.
    const fraud_txn q = make(99, 3000, 5.0, 1, 12, 20, -1, 0);
    sampler.sample(s, Event(q), o.buf, 0);
    CHECK(o.sentinels_intact());
    CHECK(o.all_written());
    // Target: age 0, mcc 0, hour 0 (t = 3 s after the epoch).
    CHECK(o.target_x[0] == lg(5.0));
    CHECK(o.target_x[1] == 0.0f && o.target_x[2] == 1.0f && o.target_x[3] == 0.0f && o.target_x[4] == 0.0f);
    // Hop 1: card with 3 earlier events (txn 4 ties t: excluded).
    CHECK(o.ent1_mask[0] == 1.0f && o.ent1_id[0] == 1);
    CHECK(o.e1x(0, 0) == 1.0f && o.e1x(0, 1) == 0.0f && o.e1x(0, 4) == lg(3));
    // The unseen device: present, degree 0, no hop 2.
    CHECK(o.ent1_mask[1] == 1.0f && o.ent1_id[1] == 12 && o.e1x(1, 1) == 1.0f && o.e1x(1, 4) == 0.0f);
    CHECK(o.t2m(1, 0) == 0.0f && o.t2m(1, 1) == 0.0f && o.t2id(1, 0) == -1);
    // The absent ip: masked, zeros, no hop 2.
    CHECK(o.ent1_mask[3] == 0.0f && o.ent1_id[3] == -1 && o.e1x(3, 3) == 0.0f && o.t2m(3, 0) == 0.0f);
    // Hop 2 of the card: the 2 newest before t, newest first; the tie at 2000 by append order.
    CHECK(o.t2id(0, 0) == 3 && o.t2id(0, 1) == 2);
    CHECK(o.t2m(0, 0) == 1.0f && o.t2m(0, 1) == 1.0f);
    // Changed on purpose: the graph field mcc is its code (5411), no longer mcc / 10000.
    CHECK(o.t2x(0, 0, 0) == lg(30.0) && o.t2x(0, 0, 3) == lg(1.0) && o.t2x(0, 0, 4) == 5411.0f);
    // Hop 3 of txn 3: card (degree 1: only txn 1 strictly before 2000), device absent, merchant 20
    // (txn 1 before it), ip 31 (never before).
    CHECK(o.e3id(0, 0, 0) == 1 && o.e3m(0, 0, 0) == 1.0f && o.e3x(0, 0, 0, 0) == 1.0f);
    CHECK(o.e3x(0, 0, 0, 4) == lg(1));
    CHECK(o.e3m(0, 0, 1) == 0.0f && o.e3id(0, 0, 1) == -1 && o.e3x(0, 0, 1, 4) == 0.0f);
    CHECK(o.e3id(0, 0, 2) == 20 && o.e3x(0, 0, 2, 2) == 1.0f && o.e3x(0, 0, 2, 4) == lg(1));
    CHECK(o.e3id(0, 0, 3) == 31 && o.e3x(0, 0, 3, 4) == 0.0f && o.e3m(0, 0, 3) == 1.0f);
    // Merchant 20 before 3000: txns 1 and 3; newest first.
    CHECK(o.e1x(2, 4) == lg(2) && o.t2id(2, 0) == 3 && o.t2id(2, 1) == 1);
    // Hop 3 of txn 1 (first ever): all degrees 0.
    for (int f = 0; f < 4; ++f) CHECK(o.e3x(2, 1, f, 4) == 0.0f && o.e3m(2, 1, f) == 1.0f);

    // Card 2 at t=3000 has nothing strictly before (txn 5 ties t); at 3500 it has txn 5, then padding.
    Sample p(sampler);
    sampler.sample(s, Event(make(98, 3000, 5.0, 2)), p.buf, 0);
    CHECK(p.ent1_mask[0] == 1.0f && p.e1x(0, 4) == 0.0f && p.t2m(0, 0) == 0.0f);
    sampler.sample(s, Event(make(98, 3500, 5.0, 2)), p.buf, 0);
    CHECK(p.e1x(0, 4) == lg(1) && p.t2id(0, 0) == 5 && p.t2m(0, 1) == 0.0f && p.t2id(0, 1) == -1);
    CHECK(p.all_written());

    // Batch slot i writes at i * shape; the other slots stay untouched.
    Sample b(sampler, 3);
    sampler.sample(s, Event(q), b.buf, 1);
    CHECK(b.txn2_id[b.sh.txn2_mask() * 1 + 0] == 3);
    CHECK(b.txn2_id[0] == -777 && b.txn2_id[2 * b.sh.txn2_mask()] == -777);
    CHECK(std::memcmp(b.ent3_x.data() + b.sh.ent3_x(), o.ent3_x.data(), b.sh.ent3_x() * 4) == 0);

    // Null id buffers are fine.
    Sample n(sampler);
    n.buf.ent1_id = n.buf.txn2_id = n.buf.ent3_id = nullptr;
    sampler.sample(s, Event(q), n.buf, 0);
    CHECK(n.ent3_x == o.ent3_x && n.txn2_x == o.txn2_x);

    // A missing mcc (-1, legal now) is 0 in the graph features; no graph fields: 4 features.
    sampler.sample(s, Event(make(97, 3000, 5.0, 1, 12, 20, -1, -1)), o.buf, 0);
    CHECK(o.target_x[4] == 0.0f);
    const Sampler bare(P(), config(2, SampleStrategy::MostRecent, 0, 0, {}));
    CHECK(bare.shape().txn_features == 4);
    Sample m(bare);
    bare.sample(s, Event(q), m.buf, 0);
    CHECK(m.sentinels_intact() && m.all_written() && m.t2id(0, 0) == 3 && m.t2x(0, 0, 0) == lg(30.0));
}

void test_uniform() {
    TemporalStore s = payments::store();
    for (int i = 0; i < 50; ++i) add(s, make(100 + i, 1000 * i, 1.0 + i, 7, 8, 9, 10));
    const fraud_txn q = make(1, 40000, 3.0, 7, 8, 9, 10);  // 40 events before t
    const Sampler a(P(), config(10, SampleStrategy::Uniform, 42, 0));
    const Sampler b(P(), config(10, SampleStrategy::Uniform, 43, 0));
    Sample x(a), y(a), z(b);
    a.sample(s, Event(q), x.buf, 0);
    a.sample(s, Event(q), y.buf, 0);
    b.sample(s, Event(q), z.buf, 0);
    CHECK(x.txn2_id == y.txn2_id);  // deterministic
    CHECK(x.txn2_id != z.txn2_id);  // seed matters
    for (int e = 0; e < 4; ++e) {
        std::set<int64_t> ids;
        for (size_t k = 0; k < 10; ++k) {
            const int64_t id = x.t2id(e, k);
            CHECK(id >= 100 && id < 140);  // earlier than t
            if (k > 0) CHECK(id < x.t2id(e, k - 1));  // newest first
            ids.insert(id);
        }
        CHECK(ids.size() == 10);
    }
    // The entity type is in the seed: the 4 hop-1 entities share one history but draw apart.
    CHECK(!std::equal(x.txn2_id.begin(), x.txn2_id.begin() + 10, x.txn2_id.begin() + 10));
    // At most K available: all of them, as MostRecent.
    const Sampler all(P(), config(10, SampleStrategy::Uniform, 42, 0));
    Sample w(all);
    all.sample(s, Event(make(2, 6000, 3.0, 7)), w.buf, 0);
    for (size_t k = 0; k < 6; ++k) CHECK(w.t2id(0, k) == 105 - static_cast<int64_t>(k));
    CHECK(w.t2m(0, 6) == 0.0f);
    // K = 256 over a long history: distinct.
    TemporalStore big = payments::store();
    for (int i = 0; i < 1000; ++i) add(big, make(i, i, 1.0, 7));
    const Sampler wide(P(), config(256, SampleStrategy::Uniform, 5, 0));
    Sample v(wide);
    wide.sample(big, Event(make(5000, 900, 1.0, 7)), v.buf, 0);
    std::set<int64_t> got(v.txn2_id.begin(), v.txn2_id.begin() + 256);
    CHECK(got.size() == 256 && *got.rbegin() < 900);
}

void test_errors() {
    CHECK_THROWS(Sampler(P(), config(0, SampleStrategy::MostRecent, 0, 0)),
                 FRAUD_STATUS_INVALID_ARGUMENT, "fanout: must be in 1..256, got 0");
    CHECK_THROWS(Sampler(P(), config(257, SampleStrategy::MostRecent, 0, 0)),
                 FRAUD_STATUS_INVALID_ARGUMENT, "got 257");
    CHECK_THROWS(Sampler(P(), config(10, static_cast<SampleStrategy>(7), 0, 0)),
                 FRAUD_STATUS_INVALID_ARGUMENT, "strategy");
    CHECK_THROWS(Sampler(P(), config(10, SampleStrategy::MostRecent, 0, -1)),
                 FRAUD_STATUS_INVALID_ARGUMENT, "retention_ms");
    // Graph fields must be numeric or categorical fields of the schema (payments has no numeric).
    CHECK_THROWS(Sampler(P(), config(10, SampleStrategy::MostRecent, 0, 0, {FieldRef{FieldRef::Numeric, 0}})),
                 FRAUD_STATUS_INVALID_ARGUMENT, "a graph field must be a numeric or categorical field of the schema");
    CHECK_THROWS(Sampler(P(), config(10, SampleStrategy::MostRecent, 0, 0, {FieldRef{FieldRef::Categorical, 2}})),
                 FRAUD_STATUS_INVALID_ARGUMENT, "graph field");
    CHECK_THROWS(Sampler(P(), config(10, SampleStrategy::MostRecent, 0, 0, {FieldRef{FieldRef::Entity, 0}})),
                 FRAUD_STATUS_INVALID_ARGUMENT, "graph field");
    CHECK_THROWS(parse_strategy("newest"), FRAUD_STATUS_INVALID_ARGUMENT,
                 "must be one of 'most_recent', 'uniform'; got 'newest'");
    CHECK(parse_strategy("uniform") == SampleStrategy::Uniform);

    TemporalStore s = small_store();  // watermark 3000
    const Sampler r(P(), config(2, SampleStrategy::MostRecent, 0, 1500));
    Sample o(r);
    r.sample(s, Event(make(9, 1500, 1.0, 1)), o.buf, 0);  // exactly at the edge: kept
    ++g_passed;
    // The message names the event_id and time_ms (were txn_id and timestamp_ms).
    CHECK_THROWS(r.sample(s, Event(make(9, 1499, 1.0, 1)), o.buf, 0), FRAUD_STATUS_OUT_OF_RETENTION,
                 "event_id=9: time_ms 1499 is older than the retained history: watermark_ms 3000 "
                 "- retention_ms 1500 = 1500");
    TemporalStore empty = payments::store();
    r.sample(empty, Event(make(9, INT64_MIN, 1.0, 1)), o.buf, 0);  // empty store: nothing to refuse
    ++g_passed;
    NeighbourhoodBuffers missing = o.buf;
    missing.ent3_x = nullptr;
    CHECK_THROWS(r.sample(s, Event(make(9, 2000, 1.0, 1)), missing, 0), FRAUD_STATUS_INVALID_ARGUMENT, "NULL");
}

void test_no_allocation_and_streaming() {
    TemporalStore s = payments::store();
    std::vector<fraud_txn> stream;
    for (int i = 0; i < 2000; ++i) {
        stream.push_back(make(i, (i / 3) * kHour / 7, 1.0 + i % 13, i % 17, i % 5 == 0 ? -1 : i % 23,
                              i % 11, i % 4 == 0 ? -1 : i % 29, i % 97));
    }
    const payments::Events events(stream);
    const Sampler sampler(P(), config(10, SampleStrategy::Uniform, 3, 0));
    // Sampling right before each ingest == sampling after all are in (bitwise).
    Sample before(sampler, stream.size()), after(sampler, stream.size());
    for (size_t i = 0; i < stream.size(); ++i) {
        sampler.sample(s, events[i], before.buf, i);
        s.append(events[i]);
    }
    const long n0 = g_allocations;
    for (size_t i = 0; i < stream.size(); ++i) sampler.sample(s, events[i], after.buf, i);
    CHECK(g_allocations == n0);
    CHECK(before.txn2_id == after.txn2_id && before.ent3_id == after.ent3_id);
    CHECK(std::memcmp(before.ent3_x.data(), after.ent3_x.data(), before.ent3_x.size() * 4) == 0);
    CHECK(std::memcmp(before.txn2_x.data(), after.txn2_x.data(), before.txn2_x.size() * 4) == 0);
    CHECK(std::memcmp(before.ent1_x.data(), after.ent1_x.data(), before.ent1_x.size() * 4) == 0);
    CHECK(after.all_written());
}

// A schema of 7 entity types (3 optional) with graph fields numeric and categorical: the shapes
// follow the schema, absent types are masked at hop 1 and hop 3, degrees are the retained events
// before the reference time, graph values (missing = 0) follow the fixed features, and sampling
// right before each append equals sampling afterwards (bitwise).
void test_seven_entity_types() {
    const Schema seven = generic::seven_entities();
    const Sampler sampler(seven, config(3, SampleStrategy::Uniform, 9, 0,
                                        {FieldRef{FieldRef::Numeric, 1}, FieldRef{FieldRef::Categorical, 2}}));
    const NeighbourhoodShape sh = sampler.shape();
    CHECK(sh.entity_types == 7 && sh.txn_features == 6 && sh.entity_features() == 8 && sh.fanout == 3);
    TemporalStore s(StoreLayout{seven, {0, 1}});
    const auto stream = generic::random_stream(seven, 1500, 5, 1000000000000, 6);
    Sample before(sampler, stream.size()), after(sampler, stream.size());
    for (size_t i = 0; i < stream.size(); ++i) {
        sampler.sample(s, stream[i].ev(), before.buf, i);
        s.append(stream[i].ev());
    }
    for (size_t i = 0; i < stream.size(); ++i) sampler.sample(s, stream[i].ev(), after.buf, i);
    CHECK(before.txn2_id == after.txn2_id && before.ent3_id == after.ent3_id && before.ent1_id == after.ent1_id);
    CHECK(std::memcmp(before.ent3_x.data(), after.ent3_x.data(), before.ent3_x.size() * 4) == 0);
    CHECK(std::memcmp(before.txn2_x.data(), after.txn2_x.data(), before.txn2_x.size() * 4) == 0);
    CHECK(after.sentinels_intact() && after.all_written());

    // One target by hand: the last event, sampled against the whole store.
    generic::OwnedEvent q = stream.back();
    q.id = 999999;
    q.ts += 1;
    q.ents[2] = -1;                 // device absent
    q.ents[3] = 123456;             // an ip never seen
    q.nums = {1.25, generic::nan()};  // balance missing
    q.cats = {1, 11, -1};           // brand missing
    Sample o(sampler);
    sampler.sample(s, q.ev(), o.buf, 0);
    CHECK(o.sentinels_intact() && o.all_written());
    CHECK(o.target_x[4] == 0.0f && o.target_x[5] == 0.0f);  // graph fields: missing -> 0
    bool hop_ok = true;
    for (size_t e = 0; e < 7; ++e) {
        const int64_t id = q.ents[e];
        const EntityHistory* h = id >= 0 ? s.history(e, id) : nullptr;
        const size_t n = h ? h->lower_bound(q.ts) : 0;
        if (id < 0) {
            hop_ok &= o.ent1_mask[e] == 0.0f && o.ent1_id[e] == -1 && o.t2m(static_cast<int>(e), 0) == 0.0f;
            continue;
        }
        hop_ok &= o.ent1_mask[e] == 1.0f && o.ent1_id[e] == id && o.e1x(static_cast<int>(e), static_cast<int>(e)) == 1.0f &&
                  o.e1x(static_cast<int>(e), 7) == lg(static_cast<double>(n));
        for (size_t k = 0; k < 3; ++k) {
            const bool present = k < n;
            hop_ok &= o.t2m(static_cast<int>(e), k) == (present ? 1.0f : 0.0f);
            if (!present) continue;
            uint32_t row = 0;
            const int64_t nid = o.t2id(static_cast<int>(e), k);
            hop_ok &= s.find_event(nid, &row) && s.event(row).entity(e) == id && s.event(row).time_ms() < q.ts;
            const EventRow r = s.event(row);
            const double bal = r.numeric(1);
            hop_ok &= o.t2x(static_cast<int>(e), k, 4) == (std::isnan(bal) ? 0.0f : static_cast<float>(bal));
            hop_ok &= o.t2x(static_cast<int>(e), k, 5) == (r.categorical(2) < 0 ? 0.0f : static_cast<float>(r.categorical(2)));
            for (size_t f = 0; f < 7; ++f) {
                const bool has = r.entity(f) >= 0;
                hop_ok &= o.e3m(static_cast<int>(e), k, static_cast<int>(f)) == (has ? 1.0f : 0.0f) &&
                          o.e3id(static_cast<int>(e), k, static_cast<int>(f)) == (has ? r.entity(f) : -1);
                if (has)
                    hop_ok &= o.e3x(static_cast<int>(e), k, static_cast<int>(f), 7) == lg(r.degree_before(f)) &&
                              o.e3x(static_cast<int>(e), k, static_cast<int>(f), static_cast<int>(f)) == 1.0f;
            }
        }
    }
    CHECK(hop_ok);
    CHECK(o.ent1_mask[3] == 1.0f && o.e1x(3, 7) == 0.0f);  // the unseen ip: present, degree 0

    // The hour in the txn features is UTC, whatever the schema's timezone (UTC+2 here).
    const Schema two = generic::two_entities();
    const Sampler s2(two, config(2, SampleStrategy::MostRecent, 0, 0, {FieldRef{FieldRef::Categorical, 0}}));
    TemporalStore st(StoreLayout{two, {kAmountField}});
    generic::OwnedEvent e{1, 1000000000000 + 3 * kHour, 1.0, {1, 2}, {0.5}, {22}};  // 04:46 UTC
    Sample p(s2);
    s2.sample(st, e.ev(), p.buf, 0);
    CHECK(p.target_x[1] == static_cast<float>(std::sin(2.0 * 3.14159265358979323846 * 4 / 24.0)));
    CHECK(p.target_x[2] == static_cast<float>(std::cos(2.0 * 3.14159265358979323846 * 4 / 24.0)));
    CHECK(p.target_x[4] == 22.0f);  // the graph field channel
}

}  // namespace

int main() {
    try {
        test_store_degrees_before();
        test_most_recent();
        test_uniform();
        test_errors();
        test_no_allocation_and_streaming();
        test_seven_entity_types();
    } catch (const std::exception& e) {
        ++g_failed;
        std::printf("FAIL: uncaught exception: %s\n", e.what());
    }
    return report_checks();
}
