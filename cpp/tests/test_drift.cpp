// engine/drift: the reference section's checks, binning, PSI against the formula written out, the
// rotating window, and many threads recording while another reads (run under TSan by
// scripts/sanitize.sh).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "engine/drift.h"

using namespace libfraud;

namespace {

const std::vector<std::string> kNames{"a", "b"};

// Two features and the score, edges [0, 1] each (bins: < 0, [0, 1), >= 1, missing).
std::string section(const std::string& a_edges = "[0, 1]", const std::string& a_props = "[0.25, 0.25, 0.5, 0]",
                    const std::string& b_name = "b") {
    return R"({"format": "libfraud-drift", "version": 1, "features": [)"
           R"({"name": "a", "edges": )" + a_edges + R"(, "proportions": )" + a_props + "}, " +
           R"({"name": ")" + b_name + R"(", "edges": [0.5], "proportions": [0.5, 0.4, 0.1]}], )"
           R"("score": {"edges": [0.1, 0.5], "proportions": [0.6, 0.3, 0.1, 0]}})";
}

double psi_by_hand(const std::vector<double>& r, const std::vector<double>& counts) {
    double total = 0;
    for (double c : counts) total += c;
    double psi = 0;
    for (size_t i = 0; i < r.size(); ++i) {
        const double a = std::max(counts[i] / total, 1e-4), q = std::max(r[i], 1e-4);
        psi += (a - q) * std::log(a / q);
    }
    return psi;
}

bool near(double x, double y) { return std::fabs(x - y) <= 1e-12 * std::max(1.0, std::fabs(y)); }

void test_parse_and_refusals() {
    const DriftReference ref = DriftReference::parse(section(), kNames, "m: ");
    CHECK(ref.num_features() == 2 && ref.features[0].bins() == 4 && ref.score.bins() == 4);
    CHECK_THROWS(DriftReference::parse(section("[1, 0]"), kNames, "m: "), FRAUD_STATUS_BUNDLE_INVALID,
                 "drift.features[0] ('a').edges must be strictly increasing");
    CHECK_THROWS(DriftReference::parse(section("[0, 1]", "[0.25, 0.25, 0.4, 0]"), kNames, "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "drift.features[0] ('a').proportions sum to 0.9");
    CHECK_THROWS(DriftReference::parse(section("[0, 1]", "[0.5, 0.5, 0]"), kNames, "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "drift.features[0] ('a').proportions has 3 entries; 2 edges make 4");
    CHECK_THROWS(DriftReference::parse(section("[0, 1]", "[1.5, -0.5, 0, 0]"), kNames, "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "not a proportion in [0, 1]");
    CHECK_THROWS(DriftReference::parse(section("[0, 1]", "[0.25, 0.25, 0.5, 0]", "c"), kNames, "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "drift.features[1].name is \"c\" but features.order[1] is 'b'");
    CHECK_THROWS(DriftReference::parse(section(), {"a"}, "m: "), FRAUD_STATUS_BUNDLE_INVALID,
                 "'drift.features' has 2 entries but features.order has 1");
    CHECK_THROWS(DriftReference::parse(section("[0, \"x\"]"), kNames, "m: "), FRAUD_STATUS_BUNDLE_INVALID,
                 "edges[1]' must be a finite number");
    CHECK_THROWS(DriftReference::parse("{\"format\": \"libfraud-drift\", \"version\": 2}", kNames, "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "reads version 1");
    CHECK_THROWS(DriftReference::parse("[", kNames, "m: "), FRAUD_STATUS_BUNDLE_INVALID, "not valid JSON");
}

void test_bins_and_psi() {
    const DriftReference ref = DriftReference::parse(section(), kNames, "m: ");
    const DriftHistogram& a = ref.features[0];
    CHECK(a.bin(-0.5f) == 0 && a.bin(0.0f) == 1 && a.bin(0.99f) == 1 && a.bin(1.0f) == 2);
    CHECK(a.bin(INFINITY) == 2 && a.bin(-INFINITY) == 0 && a.bin(NAN) == 3);
    const uint64_t counts[4] = {10, 0, 30, 5};  // an empty bin, and missing values the reference lacks
    CHECK(near(population_stability(a.proportions, counts, 4), psi_by_hand(a.proportions, {10, 0, 30, 5})));
    const uint64_t none[4] = {0, 0, 0, 0};
    CHECK(std::isnan(population_stability(a.proportions, none, 4)));
    const uint64_t same[4] = {25, 25, 50, 0};
    CHECK(near(population_stability(a.proportions, same, 4), 0.0));
}

// bin() (branch-free over edges rounded up to floats, or a search past 16 edges) against the
// plain definition in double: the count of edges <= v.
void test_bin_against_the_definition() {
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(-3, 3);
    for (size_t n_edges : {0, 1, 9, 16, 17, 40}) {
        DriftHistogram h;
        for (size_t k = 0; k < n_edges; ++k) h.edges.push_back(u(rng));
        h.edges.push_back(0.1);  // not a float: 0.1f is above it, the float below 0.1f under it
        std::sort(h.edges.begin(), h.edges.end());
        h.edges.erase(std::unique(h.edges.begin(), h.edges.end()), h.edges.end());
        h.prepare();
        int wrong = 0;
        auto check = [&](float v) {
            const size_t want = static_cast<size_t>(
                std::upper_bound(h.edges.begin(), h.edges.end(), static_cast<double>(v)) - h.edges.begin());
            wrong += h.bin(v) != want;
        };
        for (int i = 0; i < 20000; ++i) check(static_cast<float>(u(rng)));
        for (double e : h.edges) {  // each edge, and the floats either side of it
            const float f = static_cast<float>(e);
            check(f);
            check(std::nextafter(f, 10.0f));
            check(std::nextafter(f, -10.0f));
        }
        check(INFINITY);
        check(-INFINITY);
        CHECK(wrong == 0);
        CHECK(h.bin(NAN) == h.missing_bin());
    }
}

// Rows of event i: a = i % 3 - 0.5 (bins 0, 1, 2 in turn), b = NaN every 4th; score = 0.05.
void rows_for(uint64_t from, size_t n, std::vector<float>& rows, std::vector<float>& scores, float shift = 0) {
    rows.assign(2 * n, 0.0f);
    scores.assign(n, 0.05f);
    for (size_t i = 0; i < n; ++i) {
        const uint64_t e = from + i;
        rows[2 * i] = static_cast<float>(e % 3) - 0.5f + shift;
        rows[2 * i + 1] = e % 4 == 0 ? NAN : 0.0f;
    }
}

void test_window_rotation() {
    CHECK_THROWS(DriftMonitor(DriftReference::parse(section(), kNames, ""), 999), FRAUD_STATUS_INVALID_ARGUMENT,
                 "drift_window_events must be 0");
    DriftMonitor m(DriftReference::parse(section(), kNames, ""), 1000);  // 10 slots of 100
    CHECK(std::isnan(m.read().score_psi) && m.read().window_events == 0);
    std::vector<float> rows, scores;
    for (uint64_t e = 0; e < 500; ++e) {  // one event a call: event e is in slot e / 100
        rows_for(e, 1, rows, scores);
        m.record(rows.data(), 2, 1, scores.data());
    }
    DriftSnapshot d = m.read();
    CHECK(d.window_events == 500);
    // a: 167 / 167 / 166 events over bins 0..2 (e % 3 = 0, 1, 2 -> -0.5, 0.5, 1.5).
    std::vector<double> a_counts{167, 167, 166, 0};
    CHECK(near(d.feature_psi[0], psi_by_hand({0.25, 0.25, 0.5, 0}, a_counts)));
    // Then 1500 shifted events (a + 10: all in bin 2): the first 500 have left the window.
    for (uint64_t e = 500; e < 2000; ++e) {
        rows_for(e, 1, rows, scores, 10.0f);
        m.record(rows.data(), 2, 1, scores.data());
    }
    d = m.read();
    CHECK(d.window_events == 1000);
    CHECK(near(d.feature_psi[0], psi_by_hand({0.25, 0.25, 0.5, 0}, {0, 0, 1000, 0})));
    CHECK(near(d.feature_psi[1], psi_by_hand({0.5, 0.4, 0.1}, {750, 0, 250})));
    CHECK(near(d.score_psi, psi_by_hand({0.6, 0.3, 0.1, 0}, {1000, 0, 0, 0})));
    // Just past a slot boundary the new slot holds one event: the window is 9 slots and that one.
    rows_for(2000, 1, rows, scores, 10.0f);
    m.record(rows.data(), 2, 1, scores.data());
    CHECK(m.read().window_events == 901);
    // A block goes to its first event's slot (blocks of 64, as score_batch records them).
    DriftMonitor blocks(DriftReference::parse(section(), kNames, ""), 1000);
    for (uint64_t e = 0; e < 3000; e += 50) {
        rows_for(e, 50, rows, scores);
        blocks.record(rows.data(), 2, 50, scores.data());
    }
    d = blocks.read();
    CHECK(d.window_events == 1000);
}

void test_threads_record_while_one_reads() {
    DriftMonitor m(DriftReference::parse(section(), kNames, ""), 1000);
    constexpr int kThreads = 4, kCalls = 4000;
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    std::thread reader([&] {
        while (!done.load()) {
            const DriftSnapshot d = m.read();
            if (d.window_events > 1000 + DriftMonitor::kSlots * 64) bad.fetch_add(1);
            if (d.window_events && !(d.feature_psi[0] >= 0)) bad.fetch_add(1);
        }
    });
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
        writers.emplace_back([&, t] {
            std::vector<float> rows, scores;
            for (int c = 0; c < kCalls; ++c) {
                const size_t n = (c + t) % 2 ? 1 : 64;
                rows_for(static_cast<uint64_t>(c), n, rows, scores);
                m.record(rows.data(), 2, n, scores.data());
            }
        });
    }
    for (auto& w : writers) w.join();
    done = true;
    reader.join();
    CHECK(bad.load() == 0);
    const DriftSnapshot d = m.read();
    CHECK(d.window_events >= 900 - DriftMonitor::kSlots * 64 && d.window_events <= 1000 + DriftMonitor::kSlots * 64);
}

}  // namespace

int main() {
    test_parse_and_refusals();
    test_bins_and_psi();
    test_bin_against_the_definition();
    test_window_rotation();
    test_threads_record_while_one_reads();
    return report_checks();
}
