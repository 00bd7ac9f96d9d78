// The neighbourhood sampler on small hand-made cases (the random ones: tests/test_sampler.py).
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
#include "sampler/neighbourhood.h"
#include "sampler/sampler.h"
#include "store/temporal_store.h"

using namespace libfraud;

namespace {

constexpr int64_t kHour = 3600000;

fraud_txn make(int64_t id, int64_t ts, double amount, int64_t card, int64_t device = 10,
               int64_t merchant = 20, int64_t ip = 30, int32_t mcc = 5411) {
    fraud_txn t;
    std::memset(&t, 0, sizeof t);
    t.txn_id = id;
    t.timestamp_ms = ts;
    t.amount = amount;
    t.entity_id[FRAUD_ENTITY_CARD] = card;
    t.entity_id[FRAUD_ENTITY_DEVICE] = device;
    t.entity_id[FRAUD_ENTITY_MERCHANT] = merchant;
    t.entity_id[FRAUD_ENTITY_IP] = ip;
    t.country = 840;
    t.mcc = mcc;
    return t;
}

// One target's arrays, with accessors by index; a sentinel past each end checks the write extent.
struct Sample {
    NeighbourhoodShape sh;
    std::vector<float> target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask;
    std::vector<int64_t> ent1_id, txn2_id, ent3_id;
    NeighbourhoodBuffers buf;

    explicit Sample(uint32_t k, size_t batch = 1) : sh{k} {
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
    float e1x(int e, int j) const { return ent1_x[e * kEntityFeatures + j]; }
    float t2x(int e, size_t k_, int j) const { return txn2_x[(e * k() + k_) * kTxnFeatures + j]; }
    float t2m(int e, size_t k_) const { return txn2_mask[e * k() + k_]; }
    int64_t t2id(int e, size_t k_) const { return txn2_id[e * k() + k_]; }
    float e3x(int e, size_t k_, int f, int j) const {
        return ent3_x[((e * k() + k_) * kEntityTypes + f) * kEntityFeatures + j];
    }
    float e3m(int e, size_t k_, int f) const { return ent3_mask[(e * k() + k_) * kEntityTypes + f]; }
    int64_t e3id(int e, size_t k_, int f) const { return ent3_id[(e * k() + k_) * kEntityTypes + f]; }
};

float lg(double x) { return static_cast<float>(std::log1p(x)); }

// card 1: txns 1 (t=1000), 2 (t=2000), 3 (t=2000, device absent), 4 (t=3000); card 2: txn 5 (t=3000).
TemporalStore small_store() {
    TemporalStore s;
    s.append(make(1, 1000, 10.0, 1, 10, 20, 30));
    s.append(make(2, 2000, 20.0, 1, 10, 21, 30));
    s.append(make(3, 2000, 30.0, 1, -1, 20, 31));
    s.append(make(4, 3000, 40.0, 1, 11, 20, -1));
    s.append(make(5, 3000, 50.0, 2, 10, 20, 30));
    return s;
}

void test_store_degrees_before() {
    TemporalStore s = small_store();
    // Txn 3 ties txn 2 at t=2000: both saw the card's one earlier event.
    CHECK(s.degrees_before(1)[FRAUD_ENTITY_CARD] == 1);
    CHECK(s.degrees_before(2)[FRAUD_ENTITY_CARD] == 1);
    CHECK(s.degrees_before(3)[FRAUD_ENTITY_CARD] == 3);
    CHECK(s.degrees_before(2)[FRAUD_ENTITY_DEVICE] == 0);  // absent
    CHECK(s.degrees_before(4)[FRAUD_ENTITY_DEVICE] == 2);  // device 10: txns 1, 2 (not 3: absent)
    CHECK(s.degrees_before(4)[FRAUD_ENTITY_MERCHANT] == 2);  // merchant 20: 1, 3; 4 ties at 3000
    CHECK(s.degrees_before(0)[FRAUD_ENTITY_IP] == 0);
}

void test_most_recent() {
    TemporalStore s = small_store();
    Sampler sampler(SamplerConfig{2, SampleStrategy::MostRecent, 0, 0});
    Sample o(2);
    // Target at t=3000, card 1, device 12 (never seen), merchant 20, ip absent.
    const fraud_txn q = make(99, 3000, 5.0, 1, 12, 20, -1, 0);
    sampler.sample(s, q, o.buf, 0);
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
    CHECK(o.t2x(0, 0, 0) == lg(30.0) && o.t2x(0, 0, 3) == lg(1.0) && o.t2x(0, 0, 4) == 0.5411f);
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
    Sample p(2);
    sampler.sample(s, make(98, 3000, 5.0, 2), p.buf, 0);
    CHECK(p.ent1_mask[0] == 1.0f && p.e1x(0, 4) == 0.0f && p.t2m(0, 0) == 0.0f);
    sampler.sample(s, make(98, 3500, 5.0, 2), p.buf, 0);
    CHECK(p.e1x(0, 4) == lg(1) && p.t2id(0, 0) == 5 && p.t2m(0, 1) == 0.0f && p.t2id(0, 1) == -1);
    CHECK(p.all_written());

    // Batch slot i writes at i * shape; the other slots stay untouched.
    Sample b(2, 3);
    sampler.sample(s, q, b.buf, 1);
    CHECK(b.txn2_id[b.sh.txn2_mask() * 1 + 0] == 3);
    CHECK(b.txn2_id[0] == -777 && b.txn2_id[2 * b.sh.txn2_mask()] == -777);
    CHECK(std::memcmp(b.ent3_x.data() + b.sh.ent3_x(), o.ent3_x.data(), b.sh.ent3_x() * 4) == 0);

    // Null id buffers are fine.
    Sample n(2);
    n.buf.ent1_id = n.buf.txn2_id = n.buf.ent3_id = nullptr;
    sampler.sample(s, q, n.buf, 0);
    CHECK(n.ent3_x == o.ent3_x && n.txn2_x == o.txn2_x);
}

void test_uniform() {
    TemporalStore s;
    for (int i = 0; i < 50; ++i) s.append(make(100 + i, 1000 * i, 1.0 + i, 7, 8, 9, 10));
    const fraud_txn q = make(1, 40000, 3.0, 7, 8, 9, 10);  // 40 events before t
    const Sampler a(SamplerConfig{10, SampleStrategy::Uniform, 42, 0});
    const Sampler b(SamplerConfig{10, SampleStrategy::Uniform, 43, 0});
    Sample x(10), y(10), z(10);
    a.sample(s, q, x.buf, 0);
    a.sample(s, q, y.buf, 0);
    b.sample(s, q, z.buf, 0);
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
    const Sampler all(SamplerConfig{10, SampleStrategy::Uniform, 42, 0});
    Sample w(10);
    all.sample(s, make(2, 6000, 3.0, 7), w.buf, 0);
    for (size_t k = 0; k < 6; ++k) CHECK(w.t2id(0, k) == 105 - static_cast<int64_t>(k));
    CHECK(w.t2m(0, 6) == 0.0f);
    // K = 256 over a long history: distinct.
    TemporalStore big;
    for (int i = 0; i < 1000; ++i) big.append(make(i, i, 1.0, 7));
    const Sampler wide(SamplerConfig{256, SampleStrategy::Uniform, 5, 0});
    Sample v(256);
    wide.sample(big, make(5000, 900, 1.0, 7), v.buf, 0);
    std::set<int64_t> got(v.txn2_id.begin(), v.txn2_id.begin() + 256);
    CHECK(got.size() == 256 && *got.rbegin() < 900);
}

void test_errors() {
    CHECK_THROWS(Sampler(SamplerConfig{0, SampleStrategy::MostRecent, 0, 0}),
                 FRAUD_STATUS_INVALID_ARGUMENT, "fanout: must be in 1..256, got 0");
    CHECK_THROWS(Sampler(SamplerConfig{257, SampleStrategy::MostRecent, 0, 0}),
                 FRAUD_STATUS_INVALID_ARGUMENT, "got 257");
    CHECK_THROWS(Sampler(SamplerConfig{10, static_cast<SampleStrategy>(7), 0, 0}),
                 FRAUD_STATUS_INVALID_ARGUMENT, "strategy");
    CHECK_THROWS(Sampler(SamplerConfig{10, SampleStrategy::MostRecent, 0, -1}),
                 FRAUD_STATUS_INVALID_ARGUMENT, "retention_ms");
    CHECK_THROWS(parse_strategy("newest"), FRAUD_STATUS_INVALID_ARGUMENT,
                 "must be one of 'most_recent', 'uniform'; got 'newest'");
    CHECK(parse_strategy("uniform") == SampleStrategy::Uniform);

    TemporalStore s = small_store();  // watermark 3000
    const Sampler r(SamplerConfig{2, SampleStrategy::MostRecent, 0, 1500});
    Sample o(2);
    r.sample(s, make(9, 1500, 1.0, 1), o.buf, 0);  // exactly at the edge: kept
    ++g_passed;
    CHECK_THROWS(r.sample(s, make(9, 1499, 1.0, 1), o.buf, 0), FRAUD_STATUS_OUT_OF_RETENTION,
                 "txn_id=9: timestamp_ms 1499 is older than the retained history: watermark_ms 3000 "
                 "- retention_ms 1500 = 1500");
    TemporalStore empty;
    r.sample(empty, make(9, INT64_MIN, 1.0, 1), o.buf, 0);  // empty store: nothing to refuse
    ++g_passed;
    NeighbourhoodBuffers missing = o.buf;
    missing.ent3_x = nullptr;
    CHECK_THROWS(r.sample(s, make(9, 2000, 1.0, 1), missing, 0), FRAUD_STATUS_INVALID_ARGUMENT, "NULL");
}

void test_no_allocation_and_streaming() {
    TemporalStore s;
    std::vector<fraud_txn> stream;
    for (int i = 0; i < 2000; ++i) {
        stream.push_back(make(i, (i / 3) * kHour / 7, 1.0 + i % 13, i % 17, i % 5 == 0 ? -1 : i % 23,
                              i % 11, i % 4 == 0 ? -1 : i % 29, i % 97));
    }
    const Sampler sampler(SamplerConfig{10, SampleStrategy::Uniform, 3, 0});
    // Sampling right before each ingest == sampling after all are in (bitwise).
    Sample before(10, stream.size()), after(10, stream.size());
    for (size_t i = 0; i < stream.size(); ++i) {
        sampler.sample(s, stream[i], before.buf, i);
        s.append(stream[i]);
    }
    const long n0 = g_allocations;
    for (size_t i = 0; i < stream.size(); ++i) sampler.sample(s, stream[i], after.buf, i);
    CHECK(g_allocations == n0);
    CHECK(before.txn2_id == after.txn2_id && before.ent3_id == after.ent3_id);
    CHECK(std::memcmp(before.ent3_x.data(), after.ent3_x.data(), before.ent3_x.size() * 4) == 0);
    CHECK(std::memcmp(before.txn2_x.data(), after.txn2_x.data(), before.txn2_x.size() * 4) == 0);
    CHECK(std::memcmp(before.ent1_x.data(), after.ent1_x.data(), before.ent1_x.size() * 4) == 0);
    CHECK(after.all_written());
}

}  // namespace

int main() {
    test_store_degrees_before();
    test_most_recent();
    test_uniform();
    test_errors();
    test_no_allocation_and_streaming();
    return report_checks();
}
