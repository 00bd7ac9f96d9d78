// Retention, snapshots and the state log: bounded memory, exact restores, torn tails and corruption.
// Plain program: prints "N passed, N failed" last; exit code 1 on any failure.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "check.h"
#include "common/error.h"
#include "features/features.h"
#include "sampler/sampler.h"
#include "store/flat_map.h"
#include "store/snapshot.h"
#include "store/state_log.h"
#include "store/temporal_store.h"
#include "store/validate.h"

using namespace libfraud;

namespace {

template <class Fn>
bool throws_io(Fn fn, const std::string& needle, std::string* msg = nullptr) {
    try {
        fn();
    } catch (const FraudError& e) {
        if (msg) *msg = e.what();
        return e.status() == FRAUD_STATUS_IO_ERROR && std::string(e.what()).find(needle) != std::string::npos;
    }
    return false;
}

fraud_txn make(int64_t id, int64_t ts, double amount, int64_t card, int64_t device, int64_t merchant,
               int64_t ip, int32_t mcc = 5411) {
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

// A stream with ties in time, absent devices/IPs, and a few busy entities.
std::vector<fraud_txn> stream(size_t n, uint64_t seed, int64_t start = 1'700'000'000'000) {
    std::mt19937_64 rng(seed);
    std::vector<fraud_txn> v;
    int64_t ts = start;
    for (size_t i = 0; i < n; ++i) {
        ts += static_cast<int64_t>(rng() % 3) * 60000;  // 0: a tie
        const int64_t dev = rng() % 5 == 0 ? -1 : static_cast<int64_t>(rng() % 40);
        const int64_t ip = rng() % 5 == 0 ? -1 : static_cast<int64_t>(rng() % 60);
        v.push_back(make(static_cast<int64_t>(i) + 1, ts, 1.0 + static_cast<double>(rng() % 100000) / 100.0,
                         static_cast<int64_t>(rng() % 30), dev, static_cast<int64_t>(rng() % 8), ip,
                         static_cast<int32_t>(rng() % 20)));
    }
    return v;
}

std::vector<float> all_features(const TemporalStore& s, const std::vector<fraud_txn>& queries) {
    static const FeatureComputer fc{FeatureConfig{}};
    std::vector<float> out(queries.size() * fc.size());
    for (size_t i = 0; i < queries.size(); ++i) fc.compute(s, queries[i], out.data() + i * fc.size());
    return out;
}

std::vector<float> all_samples(const TemporalStore& s, const std::vector<fraud_txn>& queries) {
    SamplerConfig sc;
    sc.fanout = 4;
    sc.strategy = SampleStrategy::Uniform;
    const Sampler sampler(sc);
    const NeighbourhoodShape sh = sampler.shape();
    const size_t per = sh.target_x() + sh.ent1_x() + sh.ent1_mask() + sh.txn2_x() + sh.txn2_mask() +
                       sh.ent3_x() + sh.ent3_mask();
    std::vector<float> out(queries.size() * per);
    for (size_t i = 0; i < queries.size(); ++i) {
        float* p = out.data() + i * per;
        NeighbourhoodBuffers b;
        b.target_x = p;
        b.ent1_x = b.target_x + sh.target_x();
        b.ent1_mask = b.ent1_x + sh.ent1_x();
        b.txn2_x = b.ent1_mask + sh.ent1_mask();
        b.txn2_mask = b.txn2_x + sh.txn2_x();
        b.ent3_x = b.txn2_mask + sh.txn2_mask();
        b.ent3_mask = b.ent3_x + sh.ent3_x();
        sampler.sample(s, queries[i], b, 0);
    }
    return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Queries just after the stream's end, over every entity seen.
std::vector<fraud_txn> queries_after(const std::vector<fraud_txn>& s) {
    std::vector<fraud_txn> q;
    const int64_t t = s.back().timestamp_ms + 1;
    for (int64_t i = 0; i < 30; ++i) q.push_back(make(1'000'000 + i, t, 50.0, i, i % 40, i % 8, i % 60, 3));
    q.push_back(make(2'000'000, s.back().timestamp_ms, 7.0, s.back().entity_id[0], -1, 1, -1));  // a tie
    return q;
}

std::string temp_dir(const std::string& name) {
    std::string d = "/tmp/libfraud_durable_" + std::to_string(::getpid()) + "_" + name;
    std::system(("rm -rf '" + d + "'").c_str());
    ::mkdir(d.c_str(), 0755);
    return d;
}

std::vector<char> read_bytes(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const std::string& p, const std::vector<char>& b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

void test_retention_by_time() {
    StoreConfig c;
    c.retention_ms = 60 * 60000;  // one hour
    TemporalStore s(c);
    const auto txns = stream(3000, 1);
    for (const auto& t : txns) {
        validate_for_append(s, &t, 1);
        s.append(t);
    }
    const int64_t cutoff = s.watermark_ms() - c.retention_ms;
    size_t retained = 0;
    for (const auto& t : txns) retained += t.timestamp_ms >= cutoff;
    CHECK(s.size() == retained);
    CHECK(s.evicted() == txns.size() - retained);
    CHECK(s.appended_total() == txns.size());
    CHECK(!s.within_retention(cutoff - 1) && s.within_retention(cutoff));
    CHECK(!s.contains_txn_id(1) && s.contains_txn_id(txns.back().txn_id));
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        for (int64_t id = 0; id < 60; ++id) {
            const EntityHistory* h = s.history(static_cast<fraud_entity>(e), id);
            if (!h) continue;
            CHECK(h->size() > 0 && h->ts_ms[0] >= cutoff);
        }
    }
    // Features see exactly the retained history: same as an unbounded store of the retained rows
    // (sums differ only by rounding, the rest exactly).
    TemporalStore ref;
    for (const auto& t : txns) {
        if (t.timestamp_ms >= cutoff) ref.append(t);
    }
    const auto q = queries_after(txns);
    const auto a = all_features(s, q), b = all_features(ref, q);
    bool same = a.size() == b.size();
    for (size_t i = 0; same && i < a.size(); ++i) {
        same = (std::isnan(a[i]) && std::isnan(b[i])) || std::fabs(a[i] - b[i]) <= 1e-4f * std::fmax(1.f, std::fabs(b[i]));
    }
    CHECK(same);
    // Unbounded holds more memory than bounded.
    TemporalStore all;
    for (const auto& t : txns) all.append(t);
    CHECK(s.approx_bytes() < all.approx_bytes());
    // The sampler's own retention check still refuses targets that old.
    SamplerConfig sc;
    sc.retention_ms = c.retention_ms;
    const Sampler sampler(sc);
    std::vector<float> buf(4096);
    NeighbourhoodBuffers nb{buf.data(), buf.data() + 100, buf.data() + 200, buf.data() + 300,
                            buf.data() + 1500, buf.data() + 1700, buf.data() + 3500};
    fraud_txn old = q[0];
    old.timestamp_ms = cutoff - 1;
    bool refused = false;
    try {
        sampler.sample(s, old, nb, 0);
    } catch (const FraudError& e) {
        refused = e.status() == FRAUD_STATUS_OUT_OF_RETENTION;
    }
    CHECK(refused);
}

void test_retention_by_count() {
    StoreConfig c;
    c.max_history_per_entity = 5;
    TemporalStore s(c);
    const auto txns = stream(5000, 2);
    for (const auto& t : txns) s.append(t);
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        for (int64_t id = 0; id < 60; ++id) {
            const EntityHistory* h = s.history(static_cast<fraud_entity>(e), id);
            if (!h) continue;
            CHECK(h->size() <= 5);
            // The newest five of this entity, in order.
            std::vector<int64_t> want;
            for (const auto& t : txns) {
                if (t.entity_id[e] == id) want.push_back(t.txn_id);
            }
            want.erase(want.begin(), want.end() - static_cast<std::ptrdiff_t>(h->size()));
            bool ok = true;
            for (size_t i = 0; i < h->size(); ++i) ok &= s.txn(h->txn_rows[i]).txn_id == want[i];
            CHECK(ok);
        }
    }
    CHECK(s.evicted() > 0 && s.size() + s.evicted() == txns.size());
    CHECK(s.size() < 2 * 4 * 5 * 60 + 1024);  // dead rows compacted: bounded by the histories
}

// Snapshot round trip: features and samples after read_snapshot are bitwise equal, and stay so
// as both stores take the same further appends.
void test_snapshot_round_trip() {
    StoreConfig c;
    c.retention_ms = 90 * 60000;
    c.max_history_per_entity = 40;
    const auto txns = stream(6000, 3);
    TemporalStore s(c);
    for (size_t i = 0; i < 4000; ++i) s.append(txns[i]);
    const std::string dir = temp_dir("snap");
    const std::string path = dir + "/store.snapshot";
    write_snapshot(s, path);
    TemporalStore r = read_snapshot(path);
    CHECK(r.size() == s.size() && r.watermark_ms() == s.watermark_ms() && r.evicted() == s.evicted());
    CHECK(r.config().retention_ms == c.retention_ms && r.config().max_history_per_entity == 40);
    std::vector<fraud_txn> head(txns.begin(), txns.begin() + 4000);
    CHECK(bitwise_equal(all_features(s, queries_after(head)), all_features(r, queries_after(head))));
    CHECK(bitwise_equal(all_samples(s, queries_after(head)), all_samples(r, queries_after(head))));
    for (size_t i = 4000; i < txns.size(); ++i) {
        s.append(txns[i]);
        r.append(txns[i]);
    }
    CHECK(bitwise_equal(all_features(s, queries_after(txns)), all_features(r, queries_after(txns))));
    CHECK(bitwise_equal(all_samples(s, queries_after(txns)), all_samples(r, queries_after(txns))));
    CHECK(r.evicted() == s.evicted() && r.size() == s.size());
    // Empty store round trip.
    write_snapshot(TemporalStore{}, path);
    CHECK(read_snapshot(path).size() == 0);
}

void test_snapshot_corruption() {
    StoreConfig c;
    c.retention_ms = 30 * 60000;
    TemporalStore s(c);
    for (const auto& t : stream(600, 4)) s.append(t);
    const std::string dir = temp_dir("corrupt");
    const std::string path = dir + "/store.snapshot";
    write_snapshot(s, path);
    const std::vector<char> good = read_bytes(path);
    std::mt19937_64 rng(5);
    int refused = 0;
    for (int i = 0; i < 200; ++i) {
        std::vector<char> bad = good;
        const size_t pos = rng() % bad.size();
        bad[pos] = static_cast<char>(bad[pos] ^ (1 + rng() % 255));
        write_bytes(path, bad);
        refused += throws_io([&] { (void)read_snapshot(path); }, path);
    }
    CHECK(refused == 200);
    refused = 0;
    for (int i = 0; i < 50; ++i) {
        std::vector<char> bad(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(rng() % good.size()));
        write_bytes(path, bad);
        refused += throws_io([&] { (void)read_snapshot(path); }, "truncated");
    }
    CHECK(refused == 50);
    std::vector<char> bad = good;
    bad[0] = 'X';
    write_bytes(path, bad);
    CHECK(throws_io([&] { (void)read_snapshot(path); }, "wrong magic"));
    bad = good;
    bad[8] = 9;
    write_bytes(path, bad);
    CHECK(throws_io([&] { (void)read_snapshot(path); }, "format version 9"));
    bad = good;
    bad.back() = static_cast<char>(bad.back() ^ 1);
    write_bytes(path, bad);
    CHECK(throws_io([&] { (void)read_snapshot(path); }, "checksum mismatch"));
    CHECK(throws_io([&] { (void)read_snapshot(dir + "/missing"); }, "cannot open"));
    // restore_state with a bad snapshot leaves the store as it was.
    TemporalStore keep;
    keep.append(make(1, 5, 1.0, 1, -1, 1, -1));
    CHECK(throws_io([&] { restore_state(dir, keep); }, "snapshot"));
    CHECK(keep.size() == 1 && keep.contains_txn_id(1));
}

// Ingest as the engine will: log, then memory; a restore from the directory equals the original.
void test_log_replay() {
    StoreConfig c;
    c.retention_ms = 120 * 60000;
    c.max_history_per_entity = 50;
    const auto txns = stream(5000, 6);
    const std::string dir = temp_dir("log");
    TemporalStore s(c);
    {
        auto log = StateLog::open(dir, true);
        for (size_t i = 0; i < 2500; i += 50) {
            validate_for_append(s, &txns[i], 50);
            log->append(&txns[i], 50);
            for (size_t j = i; j < i + 50; ++j) s.append(txns[j]);
        }
        TemporalStore r(c);
        RestoreStats st = restore_state(dir, r);
        CHECK(!st.snapshot_loaded && st.log_records == 50 && st.log_transactions == 2500);
        std::vector<fraud_txn> head(txns.begin(), txns.begin() + 2500);
        CHECK(bitwise_equal(all_features(s, queries_after(head)), all_features(r, queries_after(head))));
        // Snapshot, and a crash before the log is reset: the log's records are in the snapshot.
        write_snapshot(s, snapshot_path(dir));
        TemporalStore r2(c);
        st = restore_state(dir, r2);
        CHECK(st.snapshot_loaded && st.log_skipped == 2500 && st.log_transactions == 0);
        CHECK(bitwise_equal(all_features(s, queries_after(head)), all_features(r2, queries_after(head))));
        log->reset();
        for (size_t i = 2500; i < 5000; i += 100) {
            log->append(&txns[i], 100);
            for (size_t j = i; j < i + 100; ++j) s.append(txns[j]);
        }
    }
    TemporalStore r(c);
    RestoreStats st = restore_state(dir, r);
    CHECK(st.snapshot_loaded && st.log_transactions == 2500 && st.torn_tail_bytes == 0);
    CHECK(bitwise_equal(all_features(s, queries_after(txns)), all_features(r, queries_after(txns))));
    CHECK(bitwise_equal(all_samples(s, queries_after(txns)), all_samples(r, queries_after(txns))));
    CHECK(r.appended_total() == s.appended_total() && r.evicted() == s.evicted());

    // Reopening continues the numbering; a log whose snapshot went missing is refused.
    {
        auto log = StateLog::open(dir, false);
        CHECK(log->next_seq() == 5000);
    }
    ::rename(snapshot_path(dir).c_str(), (dir + "/moved").c_str());
    TemporalStore r3(c);
    CHECK(throws_io([&] { restore_state(dir, r3); }, "missing"));
    CHECK(r3.size() == 0);
}

void test_torn_tail_and_corrupt_middle() {
    const auto txns = stream(300, 7);
    const std::string dir = temp_dir("torn");
    {
        auto log = StateLog::open(dir, false);
        for (size_t i = 0; i < 300; i += 100) log->append(&txns[i], 100);
    }
    const std::string lp = log_path(dir);
    const std::vector<char> good = read_bytes(lp);
    const size_t rec = 48 + 100 * 64;
    CHECK(good.size() == 56 + 3 * rec);
    // Every cut inside the last record (a crash mid-write) drops just that batch.
    std::mt19937_64 rng(8);
    int ok = 0;
    for (int i = 0; i < 40; ++i) {
        const size_t cut = good.size() - 1 - rng() % (rec - 1);
        write_bytes(lp, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
        TemporalStore r;
        const RestoreStats st = restore_state(dir, r);
        ok += st.log_transactions == 200 && st.torn_tail_bytes == cut - (56 + 2 * rec) && r.size() == 200;
    }
    CHECK(ok == 40);
    // open() cuts the torn tail; new records then follow the last valid one.
    {
        auto log = StateLog::open(dir, true);
        CHECK(log->next_seq() == 200);
        log->append(&txns[200], 100);
    }
    TemporalStore r;
    RestoreStats st = restore_state(dir, r);
    CHECK(st.log_transactions == 300 && st.torn_tail_bytes == 0 && r.size() == 300);
    // A flipped byte in the first record, with valid records after it: corruption, refused.
    std::vector<char> bad = read_bytes(lp);
    bad[56 + 48 + 10] ^= 0x40;
    write_bytes(lp, bad);
    TemporalStore r2;
    std::string msg;
    CHECK(throws_io([&] { restore_state(dir, r2); }, "corrupt record at offset 56", &msg));
    CHECK(r2.size() == 0);
    CHECK(throws_io([&] { StateLog::open(dir, false); }, "corrupt record"));
    // A flipped byte in the LAST record is indistinguishable from a torn write: dropped.
    bad = read_bytes(lp);
    bad[56 + 48 + 10] ^= 0x40;  // restore the first
    bad[bad.size() - 5] ^= 0x01;
    write_bytes(lp, bad);
    TemporalStore r3;
    st = restore_state(dir, r3);
    CHECK(st.log_transactions == 200 && st.torn_tail_bytes == rec);
    // A damaged header is refused.
    bad = read_bytes(lp);
    bad[17] ^= 1;
    write_bytes(lp, bad);
    CHECK(throws_io([&] { restore_state(dir, r3); }, "corrupt header"));
}

}  // namespace

// The store's flat hash map against std::map on random inserts and erases (erase shifts slots back,
// so a wrong shift loses keys), including the reserved empty-slot key.
void test_flat_map() {
    FlatMap<int> m;
    std::map<int64_t, int> ref;
    std::mt19937_64 rng(7);
    bool ok = true;
    for (int i = 0; i < 200000; ++i) {
        int64_t k = static_cast<int64_t>(rng() % 5000);  // dense: long probe runs
        if (i % 97 == 0) k = std::numeric_limits<int64_t>::min();
        else if (i % 89 == 0) k = -k * 1000003 - 1;
        if (rng() % 3 == 0) {
            ok &= m.erase(k) == (ref.erase(k) == 1);
        } else {
            auto [s, inserted] = m.try_emplace(k);
            ok &= inserted == (ref.count(k) == 0) && s->key == k;
            if (inserted) ok &= s->value == 0;
            s->value = i;
            ref[k] = i;
        }
        if (i % 10000 == 0 || i == 199999) {
            ok &= m.size() == ref.size();
            for (const auto& [key, v] : ref) ok &= m.find(key) && m.find(key)->value == v;
            size_t seen = 0;
            m.for_each([&](const FlatKeyValue<int>& s) { ok &= ref.count(s.key) == 1; ++seen; });
            ok &= seen == ref.size();
        }
    }
    CHECK(ok);
    CHECK(5 * m.size() <= 4 * m.capacity());
    FlatSet set;
    set.reserve(1000);
    const size_t cap = set.capacity();
    for (int64_t k = 0; k < 1000; ++k) set.try_emplace(k * 16);
    CHECK(set.capacity() == cap && set.size() == 1000 && set.contains(16 * 999) && !set.contains(8));
    for (int64_t k = 0; k < 1000; k += 2) set.erase(k * 16);
    bool odd_left = set.size() == 500;
    for (int64_t k = 0; k < 1000; ++k) odd_left &= set.contains(k * 16) == (k % 2 == 1);
    CHECK(odd_left);
}

int main() {
    try {
        test_flat_map();
        test_retention_by_time();
        test_retention_by_count();
        test_snapshot_round_trip();
        test_snapshot_corruption();
        test_log_replay();
        test_torn_tail_and_corrupt_middle();
    } catch (const std::exception& e) {
        ++g_failed;
        std::printf("FAIL: uncaught exception: %s\n", e.what());
    }
    return report_checks();
}
