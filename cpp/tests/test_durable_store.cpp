// Retention, snapshots and the state log: bounded memory, exact restores, torn tails and corruption,
// labels, on the payments preset and on non-payments schemas (2 and 7 entity types).
// Plain program: prints "N passed, N failed" last; exit code 1 on any failure.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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
#include "scratch_files.h"
#include "common/error.h"
#include "features/features.h"
#include "generic.h"
#include "payments.h"
#include "sampler/sampler.h"
#include "store/flat_map.h"
#include "store/snapshot.h"
#include "store/state_log.h"
#include "store/temporal_store.h"
#include "store/validate.h"

using namespace libfraud;
using payments::Event;
using payments::Events;

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
    return payments::txn(id, ts, amount, card, device, merchant, ip, 840, mcc);
}

const Schema& P() { return payments::schema(); }
const StoreLayout& L() {
    static const StoreLayout l = payments::layout();
    return l;
}
void add(TemporalStore& s, const fraud_txn& t) { s.append(Event(t)); }

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
    static const FeaturePlan fc = payments::plan();
    std::vector<float> out(queries.size() * fc.size());
    for (size_t i = 0; i < queries.size(); ++i) fc.compute(s, Event(queries[i]), out.data() + i * fc.size());
    return out;
}

// Any schema: the plan bound to the store's layout.
std::vector<float> all_features(const FeaturePlan& fc, const TemporalStore& s, const std::vector<fraud_event>& queries) {
    std::vector<float> out(queries.size() * fc.size());
    for (size_t i = 0; i < queries.size(); ++i) fc.compute(s, queries[i], out.data() + i * fc.size());
    return out;
}

std::vector<float> all_samples(const TemporalStore& s, const std::vector<fraud_event>& queries) {
    SamplerConfig sc;
    sc.fanout = 4;
    sc.strategy = SampleStrategy::Uniform;
    if (s.schema().num_categorical() > 0) sc.graph_fields.push_back({FieldRef::Categorical, 0});
    if (s.schema().num_numeric() > 0) sc.graph_fields.push_back({FieldRef::Numeric, 0});
    const Sampler sampler(s.schema(), sc);
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
std::vector<float> all_samples(const TemporalStore& s, const std::vector<fraud_txn>& queries) {
    const Events ev(queries);
    return all_samples(s, std::vector<fraud_event>(ev.begin(), ev.end()));
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

std::string temp_dir(const std::string& name) { return scratch_dir("libfraud_durable", name); }

// Events of a fraud_txn slice, validated and appended as the engine does (validate, then append).
void append_all(TemporalStore& s, const fraud_txn* t, size_t n) {
    const Events ev(t, n);
    validate_for_append(s, ev.data(), ev.size());
    for (const fraud_event& e : ev) s.append(e);
}

void test_retention_by_time() {
    StoreConfig c;
    c.retention_ms = 60 * 60000;  // one hour
    TemporalStore s(L(), c);
    const auto txns = stream(3000, 1);
    for (const auto& t : txns) append_all(s, &t, 1);
    const int64_t cutoff = s.watermark_ms() - c.retention_ms;
    size_t retained = 0;
    for (const auto& t : txns) retained += t.timestamp_ms >= cutoff;
    CHECK(s.size() == retained);
    CHECK(s.evicted() == txns.size() - retained);
    CHECK(s.appended_total() == txns.size());
    CHECK(!s.within_retention(cutoff - 1) && s.within_retention(cutoff));
    CHECK(!s.contains_event_id(1) && s.contains_event_id(txns.back().txn_id));
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        for (int64_t id = 0; id < 60; ++id) {
            const EntityHistory* h = s.history(static_cast<size_t>(e), id);
            if (!h) continue;
            CHECK(h->size() > 0 && h->ts(0) >= cutoff);
        }
    }
    // Features see exactly the retained history: same as an unbounded store of the retained rows
    // (sums differ only by rounding, the rest exactly).
    TemporalStore ref = payments::store();
    for (const auto& t : txns) {
        if (t.timestamp_ms >= cutoff) add(ref, t);
    }
    const auto q = queries_after(txns);
    const auto a = all_features(s, q), b = all_features(ref, q);
    bool same = a.size() == b.size();
    for (size_t i = 0; same && i < a.size(); ++i) {
        same = (std::isnan(a[i]) && std::isnan(b[i])) || std::fabs(a[i] - b[i]) <= 1e-4f * std::fmax(1.f, std::fabs(b[i]));
    }
    CHECK(same);
    // Unbounded holds more memory than bounded.
    TemporalStore all = payments::store();
    for (const auto& t : txns) add(all, t);
    CHECK(s.approx_bytes() < all.approx_bytes());
    // The sampler's own retention check still refuses targets that old.
    SamplerConfig sc;
    sc.retention_ms = c.retention_ms;
    const Sampler sampler(P(), sc);
    std::vector<float> buf(4096);
    NeighbourhoodBuffers nb{buf.data(), buf.data() + 100, buf.data() + 200, buf.data() + 300,
                            buf.data() + 1500, buf.data() + 1700, buf.data() + 3500};
    fraud_txn old = q[0];
    old.timestamp_ms = cutoff - 1;
    bool refused = false;
    try {
        sampler.sample(s, Event(old), nb, 0);
    } catch (const FraudError& e) {
        refused = e.status() == FRAUD_STATUS_OUT_OF_RETENTION;
    }
    CHECK(refused);
}

void test_retention_by_count() {
    StoreConfig c;
    c.max_history_per_entity = 5;
    TemporalStore s(L(), c);
    const auto txns = stream(5000, 2);
    for (const auto& t : txns) add(s, t);
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        for (int64_t id = 0; id < 60; ++id) {
            const EntityHistory* h = s.history(static_cast<size_t>(e), id);
            if (!h) continue;
            CHECK(h->size() <= 5);
            // The newest five of this entity, in order.
            std::vector<int64_t> want;
            for (const auto& t : txns) {
                if (t.entity_id[e] == id) want.push_back(t.txn_id);
            }
            want.erase(want.begin(), want.end() - static_cast<std::ptrdiff_t>(h->size()));
            bool ok = true;
            for (size_t i = 0; i < h->size(); ++i) ok &= s.event(h->row(i)).event_id() == want[i];
            CHECK(ok);
            CHECK(h->dropped() + h->size() == static_cast<uint64_t>(std::count_if(
                      txns.begin(), txns.end(), [&](const fraud_txn& t) { return t.entity_id[e] == id; })));
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
    TemporalStore s(L(), c);
    for (size_t i = 0; i < 4000; ++i) add(s, txns[i]);
    const std::string dir = temp_dir("snap");
    const std::string path = dir + "/store.snapshot";
    write_snapshot(s, path);
    TemporalStore r = read_snapshot(path, L());
    CHECK(r.size() == s.size() && r.watermark_ms() == s.watermark_ms() && r.evicted() == s.evicted());
    CHECK(r.appended_total() == s.appended_total() && read_snapshot_info(path).appended_total == 4000);
    CHECK(r.config().retention_ms == c.retention_ms && r.config().max_history_per_entity == 40);
    CHECK(r.layout().key() == L().key());
    std::vector<fraud_txn> head(txns.begin(), txns.begin() + 4000);
    CHECK(bitwise_equal(all_features(s, queries_after(head)), all_features(r, queries_after(head))));
    CHECK(bitwise_equal(all_samples(s, queries_after(head)), all_samples(r, queries_after(head))));
    for (size_t i = 4000; i < txns.size(); ++i) {
        add(s, txns[i]);
        add(r, txns[i]);
    }
    CHECK(bitwise_equal(all_features(s, queries_after(txns)), all_features(r, queries_after(txns))));
    CHECK(bitwise_equal(all_samples(s, queries_after(txns)), all_samples(r, queries_after(txns))));
    CHECK(r.evicted() == s.evicted() && r.size() == s.size());
    // A tighter config on restore evicts what it no longer retains.
    write_snapshot(s, path);
    StoreConfig tight = c;
    tight.max_history_per_entity = 3;
    TemporalStore t = read_snapshot(path, L(), tight);
    CHECK(t.config().max_history_per_entity == 3 && t.size() < s.size() && t.size() + t.evicted() == s.appended_total());
    bool capped = true;
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e)
        for (int64_t id = 0; id < 60; ++id)
            if (const EntityHistory* h = t.history(static_cast<size_t>(e), id)) capped &= h->size() <= 3;
    CHECK(capped);
    // A store of another layout refuses it: another schema, or the same schema keeping other
    // history fields.
    CHECK(throws_io([&] { (void)read_snapshot(path, StoreLayout{generic::two_entities(), {kAmountField}}); },
                    "written for another schema or feature layout"));
    CHECK(throws_io([&] { (void)read_snapshot(path, StoreLayout{P(), {}}); }, "written for another schema"));
    // Empty store round trip.
    write_snapshot(TemporalStore(L()), path);
    CHECK(read_snapshot(path, L()).size() == 0);
}

void test_snapshot_corruption() {
    StoreConfig c;
    c.retention_ms = 30 * 60000;
    TemporalStore s(L(), c);
    for (const auto& t : stream(600, 4)) add(s, t);
    // A few labels, so label bytes are in what gets damaged.
    for (int64_t id = 590; id <= 600; id += 2) {
        uint32_t row;
        if (s.find_event(id, &row)) s.apply_label(row, static_cast<int>(id % 4 == 0), s.event(row).time_ms() + 5);
    }
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
        refused += throws_io([&] { (void)read_snapshot(path, L()); }, path);
    }
    CHECK(refused == 200);
    refused = 0;
    for (int i = 0; i < 50; ++i) {
        std::vector<char> bad(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(rng() % good.size()));
        write_bytes(path, bad);
        refused += throws_io([&] { (void)read_snapshot(path, L()); }, "truncated");
    }
    CHECK(refused == 50);
    std::vector<char> bad = good;
    bad[0] = 'X';
    write_bytes(path, bad);
    CHECK(throws_io([&] { (void)read_snapshot(path, L()); }, "wrong magic"));
    bad = good;
    bad[8] = 9;
    write_bytes(path, bad);
    CHECK(throws_io([&] { (void)read_snapshot(path, L()); }, "format version 9"));
    // Older snapshots (1: the fixed-layout format; 2: no log id) are refused by number, not misread.
    for (char v : {1, 2}) {
        bad = good;
        bad[8] = v;
        write_bytes(path, bad);
        CHECK(throws_io([&] { (void)read_snapshot(path, L()); }, "format version " + std::to_string(v) + ", this library reads 3"));
    }
    // The last byte is now the last row's label (refused by the row checks, "label is not -1, 0
    // or 1"); a damaged amount passes every row check and only the checksum catches it.
    bad = good;
    bad.back() = static_cast<char>(bad.back() ^ 1);
    write_bytes(path, bad);
    CHECK(throws_io([&] { (void)read_snapshot(path, L()); }, "label is not -1, 0 or 1"));
    const size_t row_bytes = 8 * (4 + 4 + 2) + 4 * 4 + 4 + 4;  // snapshot.h, payments layout
    bad = good;
    bad[bad.size() - row_bytes + 16] ^= 1;  // the last row's amount, lowest mantissa byte
    write_bytes(path, bad);
    CHECK(throws_io([&] { (void)read_snapshot(path, L()); }, "checksum mismatch"));
    CHECK(throws_io([&] { (void)read_snapshot(dir + "/missing", L()); }, "cannot open"));
    // restore_state with a bad snapshot leaves the store as it was.
    TemporalStore keep = payments::store();
    add(keep, make(1, 5, 1.0, 1, -1, 1, -1));
    CHECK(throws_io([&] { restore_state(dir, keep); }, "snapshot"));
    CHECK(keep.size() == 1 && keep.contains_event_id(1));
}

// Ingest as the engine will: log, then memory; a restore from the directory equals the original.
void test_log_replay() {
    StoreConfig c;
    c.retention_ms = 120 * 60000;
    c.max_history_per_entity = 50;
    const auto txns = stream(5000, 6);
    const std::string dir = temp_dir("log");
    TemporalStore s(L(), c);
    {
        auto log = StateLog::open(dir, true, s);
        for (size_t i = 0; i < 2500; i += 50) {
            const Events ev(&txns[i], 50);
            validate_for_append(s, ev.data(), ev.size());
            log->append(ev.data(), ev.size());
            for (const fraud_event& e : ev) s.append(e);
        }
        TemporalStore r(L(), c);
        RestoreStats st = restore_state(dir, r);
        CHECK(!st.snapshot_loaded && st.log_records == 50 && st.log_transactions == 2500);
        std::vector<fraud_txn> head(txns.begin(), txns.begin() + 2500);
        CHECK(bitwise_equal(all_features(s, queries_after(head)), all_features(r, queries_after(head))));
        // A snapshot that names no log (written outside the state directory's rotation) beside
        // the log: the log's records are in the snapshot and are skipped.
        write_snapshot(s, snapshot_path(dir));
        TemporalStore r2(L(), c);
        st = restore_state(dir, r2);
        CHECK(st.snapshot_loaded && st.log_skipped == 2500 && st.log_transactions == 0);
        CHECK(bitwise_equal(all_features(s, queries_after(head)), all_features(r2, queries_after(head))));
        log->snapshot(s);
        for (size_t i = 2500; i < 5000; i += 100) {
            const Events ev(&txns[i], 100);
            log->append(ev.data(), ev.size());
            for (const fraud_event& e : ev) s.append(e);
        }
    }
    TemporalStore r(L(), c);
    RestoreStats st = restore_state(dir, r);
    CHECK(st.snapshot_loaded && st.log_transactions == 2500 && st.torn_tail_bytes == 0);
    CHECK(bitwise_equal(all_features(s, queries_after(txns)), all_features(r, queries_after(txns))));
    CHECK(bitwise_equal(all_samples(s, queries_after(txns)), all_samples(r, queries_after(txns))));
    CHECK(r.appended_total() == s.appended_total() && r.evicted() == s.evicted());

    // Reopening continues the numbering; a log of another layout is refused; a log whose
    // snapshot went missing is refused.
    {
        auto log = StateLog::open(dir, false, r);
        CHECK(log->next_seq() == 5000);
    }
    CHECK(throws_io([&] { StateLog::open(dir, false, TemporalStore(StoreLayout{generic::two_entities(), {kAmountField}})); },
                    "written for another schema or feature layout"));
    TemporalStore other(StoreLayout{P(), {}}, c);
    CHECK(throws_io([&] { restore_state(dir, other); }, "written for another schema"));
    ::rename(snapshot_path(dir).c_str(), (dir + "/moved").c_str());
    TemporalStore r3(L(), c);
    CHECK(throws_io([&] { restore_state(dir, r3); }, "missing"));
    CHECK(r3.size() == 0);
}

constexpr size_t kLogHeader = 104;                   // log_format.h: format version 3
constexpr size_t kRecordHeader = 56;
constexpr size_t kPaymentsEventBytes = 8 * (3 + 4 + 0 + 2);  // id, time, amount, 4 entities, 2 codes

void test_torn_tail_and_corrupt_middle() {
    const auto txns = stream(300, 7);
    const Events all(txns);
    const std::string dir = temp_dir("torn");
    {
        auto log = StateLog::open(dir, false, TemporalStore(L()));
        for (size_t i = 0; i < 300; i += 100) log->append(all.data() + i, 100);
    }
    const std::string lp = log_path(dir);
    const std::vector<char> good = read_bytes(lp);
    const size_t rec = kRecordHeader + 100 * kPaymentsEventBytes;
    CHECK(good.size() == kLogHeader + 3 * rec);
    // Every cut inside the last record (a crash mid-write) drops just that batch.
    std::mt19937_64 rng(8);
    int ok = 0;
    for (int i = 0; i < 40; ++i) {
        const size_t cut = good.size() - 1 - rng() % (rec - 1);
        write_bytes(lp, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
        TemporalStore r(L());
        const RestoreStats st = restore_state(dir, r);
        ok += st.log_transactions == 200 && st.torn_tail_bytes == cut - (kLogHeader + 2 * rec) && r.size() == 200;
    }
    CHECK(ok == 40);
    // open() cuts the torn tail; new records then follow the last valid one.
    {
        TemporalStore restored(L());
        restore_state(dir, restored);
        auto log = StateLog::open(dir, true, restored);
        CHECK(log->next_seq() == 200);
        log->append(all.data() + 200, 100);
    }
    TemporalStore r(L());
    RestoreStats st = restore_state(dir, r);
    CHECK(st.log_transactions == 300 && st.torn_tail_bytes == 0 && r.size() == 300);
    // A flipped byte in the first record, with valid records after it: corruption, refused.
    std::vector<char> bad = read_bytes(lp);
    bad[kLogHeader + kRecordHeader + 10] ^= 0x40;
    write_bytes(lp, bad);
    TemporalStore r2(L());
    std::string msg;
    CHECK(throws_io([&] { restore_state(dir, r2); }, "corrupt record at offset 104", &msg));
    CHECK(msg.find("a valid record follows at offset " + std::to_string(kLogHeader + rec)) != std::string::npos);
    CHECK(r2.size() == 0);
    CHECK(throws_io([&] { StateLog::open(dir, false, TemporalStore(L())); }, "corrupt record"));
    // A flipped byte in the LAST record is not a torn write (every byte is there): refused too
    // (test_state_dir.cpp: the quarantine that may be allowed).
    bad = read_bytes(lp);
    bad[kLogHeader + kRecordHeader + 10] ^= 0x40;  // restore the first
    bad[bad.size() - 5] ^= 0x01;
    write_bytes(lp, bad);
    TemporalStore r3(L());
    CHECK(throws_io([&] { restore_state(dir, r3); }, "corrupt record at offset " + std::to_string(kLogHeader + 2 * rec) + " (sequence 200)"));
    // A damaged header is refused.
    bad = read_bytes(lp);
    bad[17] ^= 1;
    write_bytes(lp, bad);
    CHECK(throws_io([&] { restore_state(dir, r3); }, "corrupt header"));
    // Older logs (1: the fixed-layout format; 2: no log id, 48-byte record headers) are refused by number.
    bad = read_bytes(lp);
    bad[17] ^= 1;
    for (char v : {1, 2}) {
        bad[8] = v;
        write_bytes(lp, bad);
        CHECK(throws_io([&] { restore_state(dir, r3); }, "format version " + std::to_string(v) + ", this library reads 3"));
    }
}

fraud_label lab(int64_t id, int label, int64_t at) { return fraud_label{id, at, label, 0}; }

// Validated labels, logged then applied (as the engine does).
void label_all(TemporalStore& s, StateLog* log, const std::vector<fraud_label>& labels) {
    validate_labels(s, labels.data(), labels.size());
    if (log) log->append_labels(labels.data(), labels.size());
    for (const fraud_label& l : labels) {
        uint32_t row;
        s.find_event(l.event_id, &row);
        s.apply_label(row, l.label, l.label_time_ms);
    }
}

FeaturePlan label_plan() {
    FeaturePlan p(P(), R"({"format": "libfraud-features", "version": 1, "features": [
        {"name": "a", "kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 86400000},
        {"name": "b", "kind": "label", "entity": "merchant", "agg": "fraud_rate", "window_ms": 3600000, "offset_ms": 600000},
        {"name": "c", "kind": "label", "entity": "device", "agg": "labelled_count", "window_ms": 86400000}]})", "");
    p.bind(L());
    return p;
}

bool same_labels(const TemporalStore& a, const TemporalStore& b) {
    if (a.size() != b.size() || a.labelled() != b.labelled()) return false;
    for (size_t k = 0; k < a.size(); ++k) {
        const EventRow x = a.event(a.row_at(k)), y = b.event(b.row_at(k));
        if (x.event_id() != y.event_id() || x.label() != y.label() || x.label_time_ms() != y.label_time_ms()) return false;
    }
    return true;
}

// Labels are durable: in the log (label records, replayed in order with the events), in the
// snapshot (with their rows), idempotent across a snapshot taken before the log was reset, and
// skipped when their event was evicted since.
void test_labels_durable() {
    StoreConfig c;
    c.retention_ms = 6 * 60 * 60000;
    const auto txns = stream(3000, 12);
    const std::string dir = temp_dir("labels");
    TemporalStore s(L(), c);
    std::mt19937_64 rng(13);
    auto some_labels = [&](size_t upto) {
        std::vector<fraud_label> v;
        for (int k = 0; k < 10; ++k) {
            const int64_t id = txns[upto - 1 - rng() % std::min<size_t>(upto, 300)].txn_id;
            uint32_t row;
            if (!s.find_event(id, &row) || s.event(row).label() >= 0) continue;
            bool dup = false;
            for (const auto& l : v) dup |= l.event_id == id;
            if (!dup) v.push_back(lab(id, static_cast<int>(rng() % 2), s.event(row).time_ms() + static_cast<int64_t>(rng() % 7200000)));
        }
        return v;
    };
    {
        auto log = StateLog::open(dir, false, s);
        uint64_t label_records = 0;
        for (size_t i = 0; i < 1500; i += 100) {
            const Events ev(&txns[i], 100);
            validate_for_append(s, ev.data(), ev.size());
            log->append(ev.data(), ev.size());
            for (const fraud_event& e : ev) s.append(e);
            const std::vector<fraud_label> v = some_labels(i + 100);
            label_all(s, log.get(), v);
            label_records += !v.empty();
        }
        CHECK(s.labelled() > 10);  // of the retained (the last 6 hours)
        // A label record is 48 + 24 n bytes and does not advance the sequence.
        const uint64_t before = log->bytes(), seq = log->next_seq();
        std::vector<fraud_label> two;
        for (size_t i = 1400; i < 1500 && two.size() < 2; ++i) {
            uint32_t row;
            if (s.find_event(txns[i].txn_id, &row) && s.event(row).label() < 0)
                two.push_back(lab(txns[i].txn_id, 1, txns[i].timestamp_ms));
        }
        label_all(s, log.get(), two);
        ++label_records;
        CHECK(two.size() == 2 && log->bytes() == before + 56 + 24 * 2 && log->next_seq() == seq);
        TemporalStore r(L(), c);
        const RestoreStats st = restore_state(dir, r);
        CHECK(st.log_label_records == label_records && st.log_records == 15 && same_labels(s, r));
        const std::vector<fraud_txn> head(txns.begin(), txns.begin() + 1500);
        const Events hv(head);
        const std::vector<fraud_event> hq(hv.begin(), hv.end());
        CHECK(bitwise_equal(all_features(label_plan(), s, hq), all_features(label_plan(), r, hq)));
        // A snapshot (labels in its rows) naming no log, beside the log: replaying the label
        // records again is a no-op.
        write_snapshot(s, snapshot_path(dir));
        TemporalStore r2(L(), c);
        const RestoreStats st2 = restore_state(dir, r2);
        CHECK(st2.snapshot_loaded && st2.log_skipped == 1500 && same_labels(s, r2));
        log->snapshot(s);
        for (size_t i = 1500; i < 3000; i += 100) {
            const Events ev(&txns[i], 100);
            validate_for_append(s, ev.data(), ev.size());
            log->append(ev.data(), ev.size());
            for (const fraud_event& e : ev) s.append(e);
            label_all(s, log.get(), some_labels(i + 100));
        }
    }
    CHECK(s.evicted() > 0);  // retention dropped early (maybe labelled) events
    TemporalStore r(L(), c);
    RestoreStats st = restore_state(dir, r);
    CHECK(st.snapshot_loaded && st.log_transactions == 1500 && same_labels(s, r));
    std::vector<fraud_event> q;
    const Events all(txns);
    for (const fraud_event& e : all) q.push_back(e);
    const FeaturePlan lp = label_plan();
    CHECK(bitwise_equal(all_features(lp, s, q), all_features(lp, r, q)));
    CHECK(bitwise_equal(all_features(s, queries_after(txns)), all_features(r, queries_after(txns))));

    // A label of an event evicted since it was logged: skipped on replay (the event is gone).
    {
        const std::string d2 = temp_dir("labels_evicted");
        StoreConfig tight;
        tight.max_history_per_entity = 1;
        TemporalStore t(L(), tight);
        auto log = StateLog::open(d2, false, t);
        const std::vector<fraud_txn> two = {make(1, 1000, 1.0, 1, -1, 1, -1), make(2, 2000, 1.0, 1, -1, 1, -1)};
        const Events e0(&two[0], 1), e1(&two[1], 1);
        log->append(e0.data(), 1);
        t.append(e0[0]);
        label_all(t, log.get(), {lab(1, 1, 1500)});
        log->append(e1.data(), 1);
        t.append(e1[0]);  // evicts event 1 (cap 1)
        CHECK(!t.contains_event_id(1) && t.labelled() == 0);
        TemporalStore back(L(), tight);
        const RestoreStats rs = restore_state(d2, back);
        CHECK(rs.log_label_records == 1 && back.size() == 1 && back.labelled() == 0);
    }
    // A logged label that contradicts the snapshot's: refused, naming the record.
    {
        const std::string d3 = temp_dir("labels_conflict");
        TemporalStore t = payments::store();
        add(t, make(1, 1000, 1.0, 1, -1, 1, -1));
        label_all(t, nullptr, {lab(1, 1, 1500)});
        write_snapshot(t, snapshot_path(d3));
        auto log = StateLog::open(d3, false, t);  // re-takes the snapshot, naming a new log
        const fraud_label l = lab(1, 0, 1500);
        log->append_labels(&l, 1);  // the log does not validate; replay does
        TemporalStore back = payments::store();
        std::string msg;
        CHECK(throws_io([&] { restore_state(d3, back); }, "label record at offset 104: replay refused", &msg));
        CHECK(msg.find("differs from the stored label 1") != std::string::npos);
        CHECK(back.size() == 0);
        // A torn label record at the tail is dropped like a torn event record.
        std::vector<char> b = read_bytes(log_path(d3));
        b.resize(b.size() - 3);
        write_bytes(log_path(d3), b);
        const RestoreStats rs = restore_state(d3, back);
        CHECK(rs.torn_tail_bytes == 56 + 24 - 3 && back.labelled() == 1 && rs.log_label_records == 0);
    }
}

// A non-payments schema end to end: features (every kind), samples and labels bitwise equal after
// a snapshot round trip and after a log replay, with retention by time and a per-entity cap far
// above the block size (EntityHistory::kBlock; histories of 200: block-aligned range sums, eviction
// counts that are no multiple of the block size), and equal again after more appends to both.
void generic_durable(const Schema& schema, const std::string& spec, uint64_t seed) {
    FeaturePlan plan(schema, spec, "");
    const StoreLayout layout{schema, plan.history_fields()};
    plan.bind(layout);
    StoreConfig c;
    c.retention_ms = 3 * 86400000LL;
    c.max_history_per_entity = 200;
    // 10 ids of the first entity type: histories of 400 before the cap of 200.
    const auto stream_ = generic::random_stream(schema, 6000, seed, 1000000000000 - 2 * 86400000, 10);
    const std::vector<fraud_event> events = generic::views(stream_);
    const std::string dir = temp_dir("generic_" + schema.name);
    TemporalStore s(layout, c);
    std::mt19937_64 rng(seed);
    auto label_some = [&](size_t upto) {
        std::vector<fraud_label> v;
        for (int k = 0; k < 20; ++k) {
            const int64_t id = stream_[rng() % upto].id;
            uint32_t row;
            if (!s.find_event(id, &row) || s.event(row).label() >= 0) continue;
            bool dup = false;
            for (const auto& l : v) dup |= l.event_id == id;
            if (!dup) v.push_back(lab(id, static_cast<int>(rng() % 2), s.event(row).time_ms() + static_cast<int64_t>(rng() % 4) * 3600000));
        }
        return v;
    };
    auto queries = [&](size_t upto) {
        // Every 13th event of the prefix at its own time, and the last events' entities later on.
        std::vector<fraud_event> q;
        for (size_t i = 0; i < upto; i += 13) q.push_back(events[i]);
        for (size_t i = upto - 40; i < upto; ++i) {
            fraud_event e = events[i];
            e.time_ms = events[upto - 1].time_ms + 1 + static_cast<int64_t>(i % 3) * 3600000;
            q.push_back(e);
        }
        return q;
    };
    {
        auto log = StateLog::open(dir, false, s);
        for (size_t i = 0; i < 4000; i += 250) {
            validate_for_append(s, events.data() + i, 250);
            log->append(events.data() + i, 250);
            for (size_t j = i; j < i + 250; ++j) s.append(events[j]);
            label_all(s, log.get(), label_some(i + 250));
        }
        // The per-entity cap evicted events from the front of long histories.
        size_t dropped = 0, unaligned = 0;
        s.for_each_entity_dropped([&](size_t, int64_t, uint64_t d) {
            ++dropped;
            unaligned += d % EntityHistory::kBlock != 0;
        });
        CHECK(dropped > 0 && unaligned > 0);
        const EntityHistory* h0 = nullptr;
        for (int64_t id = 0; id < 20 && !h0; ++id) {
            const EntityHistory* h = s.history(0, id);
            if (h && h->size() == 200) h0 = h;
        }
        CHECK(h0 != nullptr && 200 > 2 * EntityHistory::kBlock);  // a history of 200, many blocks

        write_snapshot(s, snapshot_path(dir));
        TemporalStore r = read_snapshot(snapshot_path(dir), layout);
        CHECK(r.size() == s.size() && r.evicted() == s.evicted() && same_labels(s, r));
        const auto q = queries(4000);
        CHECK(bitwise_equal(all_features(plan, s, q), all_features(plan, r, q)));
        CHECK(bitwise_equal(all_samples(s, q), all_samples(r, q)));
        // The log (all 4000 events and their labels) replays to the same store.
        ::rename(snapshot_path(dir).c_str(), (dir + "/aside").c_str());
        TemporalStore fromlog(layout, c);
        const RestoreStats st = restore_state(dir, fromlog);
        CHECK(!st.snapshot_loaded && st.log_transactions == 4000 && same_labels(s, fromlog));
        CHECK(bitwise_equal(all_features(plan, s, q), all_features(plan, fromlog, q)));
        ::rename((dir + "/aside").c_str(), snapshot_path(dir).c_str());
        log->snapshot(s);
        // More appends to the original and to the restored copy: still the same.
        for (size_t i = 4000; i < 6000; i += 250) {
            validate_for_append(s, events.data() + i, 250);
            log->append(events.data() + i, 250);
            for (size_t j = i; j < i + 250; ++j) {
                s.append(events[j]);
                r.append(events[j]);
            }
            const std::vector<fraud_label> v = label_some(i + 250);
            label_all(s, log.get(), v);
            label_all(r, nullptr, v);
        }
        const auto q6 = queries(6000);
        CHECK(same_labels(s, r) && r.evicted() == s.evicted());
        CHECK(bitwise_equal(all_features(plan, s, q6), all_features(plan, r, q6)));
        CHECK(bitwise_equal(all_samples(s, q6), all_samples(r, q6)));
    }
    CHECK(s.evicted() > 0);  // by time: the stream spans more than the 3 days retained
    // The snapshot at 4000 and the log of the rest replay to the original.
    TemporalStore back(layout, c);
    const RestoreStats st = restore_state(dir, back);
    CHECK(st.snapshot_loaded && st.log_transactions == 2000 && same_labels(s, back));
    const auto q = queries(6000);
    CHECK(bitwise_equal(all_features(plan, s, q), all_features(plan, back, q)));
    CHECK(bitwise_equal(all_samples(s, q), all_samples(back, q)));
}

void test_generic_durable() {
    generic_durable(generic::two_entities(), generic::two_entities_spec(), 31);
    generic_durable(generic::seven_entities(), generic::seven_entities_spec(), 32);
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
        test_labels_durable();
        test_generic_durable();
    } catch (const std::exception& e) {
        ++g_failed;
        std::printf("FAIL: uncaught exception: %s\n", e.what());
    }
    return report_checks();
}
