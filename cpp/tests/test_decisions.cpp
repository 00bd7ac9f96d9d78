// Decisions, the shadow challenger and decision records through the C API, on two stand-in
// payments bundles (cpp/fuzz/fake_trees.c; B calibrated, with another threshold, so its scores and
// decisions differ from A's): outcomes against scoring alone and the bands; the callback once per
// call with n records, after the engine's lock is released; the JSON Lines log from many threads;
// and threads scoring, deciding and serving while another sets, promotes and swaps (the TSan
// build runs this test: scripts/sanitize.sh).
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "engine/sha256.h"
#include "libfraud/fraud.h"
#include "payments.h"
#include "scratch_files.h"

namespace {

// Around the middle of the stand-in trees' scores on this stream (A) and of B's calibrated ones.
constexpr double kThresholdA = 0.565, kThresholdB = 0.64;

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
}

// A payments bundle whose trees are fake_trees.so; calibration: a Platt section (format 3).
std::string make_bundle(const std::string& dir, double threshold, const char* calibration) {
    mkdir(dir.c_str(), 0755);
    mkdir((dir + "/trees").c_str(), 0755);
    const std::string so = read_text(LIBFRAUD_FAKE_TREES);
    write_text(dir + "/trees/model.so", so);
    std::string order;
    const libfraud::FeaturePlan plan = payments::plan();
    for (const std::string& name : plan.names()) order += (order.empty() ? "\"" : ", \"") + name + "\"";
    std::string manifest = "{\"format\": \"libfraud-bundle\", \"format_version\": " +
                           std::string(calibration ? "3" : "2") + ", \"schema\": " + payments::schema_json() +
                           ", \"features\": {\"spec\": " + payments::spec_json() + ", \"order\": [" + order +
                           "]}, \"model\": {\"artifact\": \"trees\"}, \"threshold\": " + std::to_string(threshold) +
                           ", \"artifacts\": [{\"name\": \"trees\", \"path\": \"trees/model.so\", \"target\": "
                           "\"tl2cgen-c-shared\", \"sha256\": \"" +
                           libfraud::sha256_file_hex(dir + "/trees/model.so") +
                           "\", \"size\": " + std::to_string(so.size()) + "}]";
    if (calibration) manifest += std::string(", \"calibration\": ") + calibration;
    write_text(dir + "/manifest.json", manifest + "}");
    return dir;
}

fraud_engine* open(const std::string& bundle) {
    fraud_engine* e = nullptr;
    const fraud_status s = fraud_engine_open(bundle.c_str(), nullptr, &e);
    if (s != FRAUD_STATUS_OK) std::printf("open %s: %s\n", bundle.c_str(), fraud_last_error());
    return e;
}

// A stream on few cards and merchants, so that histories (and scores) vary.
std::vector<fraud_txn> stream(size_t n, int64_t first_id) {
    std::vector<fraud_txn> v;
    for (size_t i = 0; i < n; ++i) {
        const int64_t id = first_id + static_cast<int64_t>(i);
        v.push_back(payments::txn(id, 1'700'000'000'000 + id * 37'000, 1.0 + static_cast<double>(id % 97) * 3.5,
                                  id % 13, 10 + id % 5, id % 7, id % 3 ? 20 + id % 4 : FRAUD_ENTITY_ABSENT));
    }
    return v;
}

int decision_of(double score, double review_from, double decline_from) {
    return score >= decline_from ? FRAUD_DECISION_DECLINE : score >= review_from ? FRAUD_DECISION_REVIEW
                                                                                : FRAUD_DECISION_ALLOW;
}

struct Seen {
    fraud_engine* engine = nullptr;
    std::vector<size_t> sizes;
    std::vector<fraud_decision_record> records;
    std::vector<std::string> champion_sha, challenger_sha;
    bool store_readable = false;
    fraud_status nested = FRAUD_STATUS_OK;
};

void on_records(const fraud_decision_record* records, size_t n, void* user) {
    Seen& seen = *static_cast<Seen*>(user);
    seen.sizes.push_back(n);
    for (size_t i = 0; i < n; ++i) {
        seen.records.push_back(records[i]);
        seen.champion_sha.emplace_back(records[i].bundle_sha256);
        seen.challenger_sha.emplace_back(records[i].challenger_sha256 ? records[i].challenger_sha256 : "");
    }
    // The engine's lock is released: a shared-lock call returns (it would wait for ever otherwise)...
    uint64_t size = 0;
    seen.store_readable = fraud_engine_store_size(seen.engine, &size, nullptr) == FRAUD_STATUS_OK;
    // ... and a decide call from here is refused, not run over this call's records.
    fraud_outcome o;
    seen.nested = fraud_engine_decide_events(seen.engine, nullptr, 0, 0, 0.0f, &o, nullptr, nullptr);
}

void count_calls(const fraud_decision_record*, size_t n, void* user) { *static_cast<size_t*>(user) += n; }

void check_outcomes_and_callback(const std::string& a, const std::string& b, const std::string& log_path) {
    fraud_engine* served = open(a);
    fraud_engine* alone_a = open(a);
    fraud_engine* alone_b = open(b);
    CHECK(served && alone_a && alone_b);
    if (!served || !alone_a || !alone_b) return;
    const payments::Events history(stream(500, 0)), live(stream(300, 500));
    for (fraud_engine* e : {served, alone_a, alone_b}) CHECK(fraud_engine_ingest_events(e, history.data(), history.size()) == FRAUD_STATUS_OK);
    CHECK(fraud_engine_set_challenger(served, b.c_str(), nullptr) == FRAUD_STATUS_OK);
    Seen seen;
    seen.engine = served;
    CHECK(fraud_engine_set_decision_callback(served, &on_records, &seen) == FRAUD_STATUS_OK);

    std::vector<fraud_outcome> out(live.size());
    const size_t batches[] = {1, 63, 65, 130, 41};
    size_t at = 0;
    for (size_t n : batches) {
        CHECK(fraud_engine_score_and_ingest_decide_events(served, live.data() + at, n, 0, 0.0f, out.data() + at,
                                                          nullptr, nullptr) == FRAUD_STATUS_OK);
        at += n;
    }
    CHECK(at == live.size());
    std::vector<float> sa(live.size()), sb(live.size());
    for (size_t i = 0; i < live.size(); ++i) {  // each alone, one event at a time
        CHECK(fraud_engine_score_and_ingest_events(alone_a, live.data() + i, 1, &sa[i]) == FRAUD_STATUS_OK);
        CHECK(fraud_engine_score_and_ingest_events(alone_b, live.data() + i, 1, &sb[i]) == FRAUD_STATUS_OK);
    }
    double ra = 0, da = 0, rb = 0, db = 0;
    CHECK(fraud_engine_decision_bands(served, &ra, &da) == FRAUD_STATUS_OK);
    CHECK(fraud_engine_decision_bands(alone_b, &rb, &db) == FRAUD_STATUS_OK);
    CHECK(ra == kThresholdA && std::isinf(da) && rb == kThresholdB);
    size_t same_score = 0, differ = 0, mismatches = 0, reviewed = 0;
    double diff = 0;
    for (size_t i = 0; i < live.size(); ++i) {
        const fraud_outcome& o = out[i];
        mismatches += o.score != sa[i] || o.challenger_score != sb[i] || o.rule_hits != 0 || o.challenger_rule_hits != 0 ||
                      o.decision != decision_of(sa[i], ra, da) || o.challenger_decision != decision_of(sb[i], rb, db);
        same_score += sa[i] == sb[i];
        differ += o.decision != o.challenger_decision;
        reviewed += o.decision == FRAUD_DECISION_REVIEW;
        diff += std::fabs(static_cast<double>(sa[i]) - sb[i]);
    }
    CHECK(mismatches == 0);
    CHECK(same_score < live.size() / 10 && differ > 0 && reviewed > 0 && reviewed < live.size());

    // The callback: once per call, n records, the outcomes and the bundles' manifest digests.
    CHECK(seen.sizes == std::vector<size_t>(std::begin(batches), std::end(batches)));
    CHECK(seen.records.size() == live.size());
    CHECK(seen.store_readable && seen.nested == FRAUD_STATUS_INVALID_ARGUMENT);
    const std::string sha_a = libfraud::sha256_file_hex(a + "/manifest.json");
    const std::string sha_b = libfraud::sha256_file_hex(b + "/manifest.json");
    size_t bad = 0;
    for (size_t i = 0; i < seen.records.size(); ++i) {
        const fraud_decision_record& r = seen.records[i];
        bad += r.event_id != live.data()[i].event_id || r.time_ms != live.data()[i].time_ms ||
               std::memcmp(&r.outcome, &out[i], sizeof r.outcome) != 0 || r.n_reasons != 0 || r.reasons != nullptr ||
               !(r.latency_us > 0) || r.decided_at_ms < 1'700'000'000'000 || seen.champion_sha[i] != sha_a ||
               seen.challenger_sha[i] != sha_b;
    }
    CHECK(bad == 0);
    const char* champion_sha = nullptr;
    const char* challenger_sha = nullptr;
    CHECK(fraud_engine_bundle_sha256(served, &champion_sha, &challenger_sha) == FRAUD_STATUS_OK);
    CHECK(champion_sha && sha_a == champion_sha && challenger_sha && sha_b == challenger_sha);

    fraud_engine_stats stats;
    std::memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    CHECK(fraud_engine_get_stats(served, &stats) == FRAUD_STATUS_OK);
    CHECK(stats.challenger_set == 1 && stats.challenger_scored == live.size());
    CHECK(stats.challenger_decision_disagreements == differ && stats.decision_records == live.size());
    CHECK(std::fabs(stats.challenger_score_abs_diff_sum - diff) <= 1e-9 * diff);
    CHECK(stats.challenger_latency_p50_us > 0 && stats.scored == live.size());

    // Score calls make no records; plain scores are the champion's.
    const size_t calls = seen.sizes.size();
    float s = 0;
    CHECK(fraud_engine_score_events(served, live.data(), 1, &s) == FRAUD_STATUS_OK);
    CHECK(seen.sizes.size() == calls);
    CHECK(fraud_engine_set_decision_callback(served, nullptr, nullptr) == FRAUD_STATUS_OK);
    CHECK(fraud_engine_decide_events(served, live.data(), 2, 0, 0.0f, out.data(), nullptr, nullptr) == FRAUD_STATUS_OK);
    CHECK(seen.sizes.size() == calls);

    // Refusals: no outcomes buffer, k >= 1 without explanation data or without its buffers.
    CHECK(fraud_engine_decide_events(served, live.data(), 1, 0, 0.0f, nullptr, nullptr, nullptr) ==
          FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(fraud_engine_decide_events(served, live.data(), 1, 2, 0.0f, out.data(), nullptr, nullptr) ==
          FRAUD_STATUS_INVALID_ARGUMENT);
    fraud_reason reasons[2];
    size_t counts[1];
    CHECK(fraud_engine_decide_events(served, live.data(), 1, 2, 0.0f, out.data(), reasons, counts) ==
          FRAUD_STATUS_NO_EXPLANATION);
    size_t rules = 9;
    CHECK(fraud_engine_rule_count(served, &rules) == FRAUD_STATUS_OK && rules == 0);
    CHECK(fraud_engine_rule(served, 0, nullptr, nullptr, nullptr, nullptr, nullptr) == FRAUD_STATUS_INVALID_ARGUMENT);

    // Once warmed up, a decide call with a challenger, the log and a callback allocates nothing.
    size_t recorded = 0;
    CHECK(fraud_engine_set_decision_callback(served, &count_calls, &recorded) == FRAUD_STATUS_OK);
    CHECK(fraud_engine_set_decision_log(served, log_path.c_str()) == FRAUD_STATUS_OK);
    for (int i = 0; i < 3; ++i)
        CHECK(fraud_engine_decide_events(served, live.data(), 100, 0, 0.0f, out.data(), nullptr, nullptr) ==
              FRAUD_STATUS_OK);
    const long allocations = g_allocations;
    CHECK(fraud_engine_decide_events(served, live.data(), 100, 0, 0.0f, out.data(), nullptr, nullptr) ==
          FRAUD_STATUS_OK);
    CHECK(g_allocations == allocations && recorded == 400);
    CHECK(fraud_engine_set_decision_log(served, nullptr) == FRAUD_STATUS_OK);
    CHECK(fraud_engine_set_decision_callback(served, nullptr, nullptr) == FRAUD_STATUS_OK);

    // Promotion: B serves, no challenger; a challenger that does not load leaves it so.
    CHECK(fraud_engine_promote_challenger(served) == FRAUD_STATUS_OK);
    CHECK(fraud_engine_promote_challenger(served) == FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(fraud_engine_set_challenger(served, "/nonexistent/bundle", nullptr) == FRAUD_STATUS_IO_ERROR);
    CHECK(fraud_engine_bundle_sha256(served, &champion_sha, &challenger_sha) == FRAUD_STATUS_OK);
    CHECK(sha_b == champion_sha && challenger_sha == nullptr);
    CHECK(fraud_engine_decide_events(served, live.data(), 1, 0, 0.0f, out.data(), nullptr, nullptr) == FRAUD_STATUS_OK);
    CHECK(std::isnan(out[0].challenger_score) && out[0].challenger_decision == -1);
    std::memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    CHECK(fraud_engine_get_stats(served, &stats) == FRAUD_STATUS_OK);
    CHECK(stats.bundle_swaps == 1 && stats.challenger_set == 0 && stats.challenger_scored == 0);
    for (fraud_engine* e : {served, alone_a, alone_b}) fraud_engine_free(e);
}

// Whole lines of the log; *malformed: lines that are not one record (cut short, or two interleaved).
size_t count_lines(const std::string& text, size_t* malformed) {
    size_t lines = 0, start = 0;
    *malformed = 0;
    while (start < text.size()) {
        const size_t end = text.find('\n', start);
        if (end == std::string::npos) {
            ++*malformed;
            break;
        }
        const std::string line = text.substr(start, end - start);
        *malformed += line.rfind("{\"event_id\":", 0) != 0 || line.back() != '}' ||
                      line.find("\"event_id\":", 2) != std::string::npos;
        ++lines;
        start = end + 1;
    }
    return lines;
}

// Scorers, deciders and a server on one engine while the main thread sets, promotes and swaps;
// every call succeeds; the log holds exactly one whole line per decided event.
void check_concurrent_serving(const std::string& a, const std::string& b, const std::string& log_path) {
    fraud_engine* engine = open(a);
    CHECK(engine != nullptr);
    if (!engine) return;
    const payments::Events history(stream(400, 0)), live(stream(4000, 400));
    CHECK(fraud_engine_ingest_events(engine, history.data(), history.size()) == FRAUD_STATUS_OK);
    CHECK(fraud_engine_set_decision_log(engine, log_path.c_str()) == FRAUD_STATUS_OK);
    std::atomic<bool> stop{false};
    std::atomic<size_t> failures{0}, decided{0}, bad_scores{0};
    auto reader = [&](bool decide) {
        std::vector<fraud_outcome> out(40);
        std::vector<float> scores(40);
        while (!stop.load()) {
            const fraud_status s =
                decide ? fraud_engine_decide_events(engine, history.data(), 40, 0, 0.0f, out.data(), nullptr, nullptr)
                       : fraud_engine_score_events(engine, history.data(), 40, scores.data());
            if (s != FRAUD_STATUS_OK) ++failures;
            for (size_t i = 0; i < 40; ++i) bad_scores += !(decide ? out[i].score >= 0 : scores[i] >= 0);
            if (decide && s == FRAUD_STATUS_OK) decided += 40;
        }
    };
    std::thread server([&] {
        std::vector<fraud_outcome> out(50);
        for (size_t at = 0; at < live.size(); at += 50) {
            if (fraud_engine_score_and_ingest_decide_events(engine, live.data() + at, 50, 0, 0.0f, out.data(), nullptr,
                                                            nullptr) != FRAUD_STATUS_OK)
                ++failures;
            else
                decided += 50;
        }
        stop.store(true);
    });
    std::thread r1(reader, false), r2(reader, true), r3(reader, true);
    size_t control_failures = 0, promotions = 0;
    while (!stop.load()) {
        control_failures += fraud_engine_set_challenger(engine, b.c_str(), nullptr) != FRAUD_STATUS_OK;
        control_failures += fraud_engine_promote_challenger(engine) != FRAUD_STATUS_OK;
        control_failures += fraud_engine_swap_bundle(engine, a.c_str(), nullptr) != FRAUD_STATUS_OK;
        control_failures += fraud_engine_set_challenger(engine, b.c_str(), nullptr) != FRAUD_STATUS_OK;
        fraud_engine_stats stats;
        std::memset(&stats, 0, sizeof stats);
        stats.struct_size = sizeof stats;
        control_failures += fraud_engine_get_stats(engine, &stats) != FRAUD_STATUS_OK;
        control_failures += fraud_engine_set_challenger(engine, nullptr, nullptr) != FRAUD_STATUS_OK;
        ++promotions;
    }
    for (std::thread* t : {&server, &r1, &r2, &r3}) t->join();
    CHECK(failures.load() == 0 && bad_scores.load() == 0 && control_failures == 0 && promotions > 0);
    CHECK(fraud_engine_set_decision_log(engine, nullptr) == FRAUD_STATUS_OK);
    size_t malformed = 0;
    const size_t lines = count_lines(read_text(log_path), &malformed);
    CHECK(lines == decided.load() && malformed == 0);
    uint64_t stored = 0;
    CHECK(fraud_engine_store_size(engine, &stored, nullptr) == FRAUD_STATUS_OK && stored == 4400);
    fraud_engine_free(engine);
}

}  // namespace

int main() {
    alarm(300);  // a deadlock (a callback run under the lock) fails the test instead of hanging it
    setenv("LIBFRAUD_FUZZ_NUM_FEATURE", std::to_string(payments::plan().names().size()).c_str(), 1);
    const std::string dir = scratch_dir("libfraud_decisions", "bundles");
    const std::string a = make_bundle(dir + "/a", kThresholdA, nullptr);
    const std::string b = make_bundle(dir + "/b", kThresholdB, "{\"method\": \"platt\", \"a\": 1.5, \"b\": 0.1}");
    check_outcomes_and_callback(a, b, dir + "/warm.jsonl");
    check_concurrent_serving(a, b, dir + "/decisions.jsonl");
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
