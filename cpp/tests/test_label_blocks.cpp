// Label features from label blocks (StoreLayout::labels) against the same store reading every row:
// bitwise-equal rows on long histories, with labels arriving in any order, known before, at and
// after the scoring time, under eviction by time and by the per-entity cap, and after a snapshot
// round trip (the restore builds the blocks from the rows).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "features/features.h"
#include "generic.h"
#include "scratch_files.h"
#include "store/snapshot.h"
#include "store/temporal_store.h"

using namespace libfraud;

namespace {

constexpr int64_t kMinute = 60000;

// Label features only, over windows short and long, with an offset and small and large scans.
std::string label_spec() {
    return R"({"format": "libfraud-features", "version": 1, "max_scan": 1024, "features": [
 {"name": "c_fraud_1h", "kind": "label", "entity": "customer", "agg": "fraud_count", "window_ms": 3600000},
 {"name": "c_rate_1d", "kind": "label", "entity": "customer", "agg": "fraud_rate", "window_ms": 86400000},
 {"name": "c_known_1d", "kind": "label", "entity": "customer", "agg": "labelled_count", "window_ms": 86400000},
 {"name": "t_fraud_7d", "kind": "label", "entity": "terminal", "agg": "fraud_count", "window_ms": 604800000},
 {"name": "t_known_7d", "kind": "label", "entity": "terminal", "agg": "labelled_count", "window_ms": 604800000},
 {"name": "t_rate_1d_after_1h", "kind": "label", "entity": "terminal", "agg": "fraud_rate", "window_ms": 86400000, "offset_ms": 3600000},
 {"name": "t_fraud_scan_40", "kind": "label", "entity": "terminal", "agg": "fraud_count", "window_ms": 604800000, "max_scan": 40},
 {"name": "t_known_scan_40", "kind": "label", "entity": "terminal", "agg": "labelled_count", "window_ms": 604800000, "max_scan": 40}
]})";
}

bool same_rows(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> row(const FeaturePlan& plan, const TemporalStore& s, const fraud_event& e) {
    std::vector<float> out(plan.size());
    plan.compute(s, e, out.data());
    return out;
}

// One random stream into a store with label blocks and one without; every 7th event, the rows of
// a probe at its time and at earlier and later times are compared.
void check_stream(uint32_t seed, const StoreConfig& config, size_t n_events, bool snapshot) {
    const Schema two = generic::two_entities();
    FeaturePlan plan(two, label_spec(), "");
    const StoreLayout with = plan.store_layout();
    CHECK(with.labels);
    StoreLayout without = with;
    without.labels = false;
    plan.bind(with);
    TemporalStore a(with, config), b(without, config);
    std::mt19937_64 rng(seed);
    std::vector<int64_t> ids;
    int64_t t = 1700000000000;
    size_t compared = 0, mismatches = 0;
    for (size_t i = 0; i < n_events; ++i) {
        t += static_cast<int64_t>(rng() % 4) * kMinute / 2;  // ties in time, too
        // Three terminals (histories of thousands of events) and a few hundred customers.
        generic::OwnedEvent e{static_cast<int64_t>(i + 1), t, 10.0,
                              {static_cast<int64_t>(rng() % 300), rng() % 10 == 0 ? -1 : static_cast<int64_t>(rng() % 3)},
                              {1.0}, {11}};
        if (i % 7 == 0) {
            for (int64_t dt : {int64_t{0}, -30 * kMinute, 90 * kMinute}) {
                generic::OwnedEvent probe = e;
                probe.ts = t + dt;
                if (!a.within_retention(probe.ts)) continue;
                ++compared;
                if (!same_rows(row(plan, a, probe.ev()), row(plan, b, probe.ev()))) ++mismatches;
            }
        }
        a.append(e.ev());
        b.append(e.ev());
        ids.push_back(e.id);
        // Labels for random earlier events, known from before to well after now.
        for (int k = 0; k < 2; ++k) {
            const int64_t id = ids[rng() % ids.size()];
            uint32_t ra, rb;
            if (!a.find_event(id, &ra) || !b.find_event(id, &rb)) continue;
            const int label = rng() % 3 == 0 ? 1 : 0;
            // Never before the event itself (the label API refuses that).
            const int64_t known = std::max(a.event(ra).time_ms(), t + static_cast<int64_t>(rng() % 240) * kMinute - 120 * kMinute);
            a.apply_label(ra, label, known);
            b.apply_label(rb, label, known);
        }
    }
    CHECK(compared > n_events / 7);
    CHECK(mismatches == 0);
    const EntityHistory* busy = a.history(1, 0);
    CHECK(busy && busy->size() >= 64 && busy->has_label_blocks());
    CHECK(!b.history(1, 0)->has_label_blocks());

    if (!snapshot) return;
    // Restored with blocks (built from the rows' labels): the same rows as the store it came from.
    const std::string path = scratch_dir("label_blocks", std::to_string(seed)) + "/snapshot.bin";
    write_snapshot(a, path);
    TemporalStore restored = read_snapshot(path, with, config);
    CHECK(restored.history(1, 0)->has_label_blocks());
    size_t diffs = 0;
    for (int64_t dt : {int64_t{1}, -45 * kMinute, 200 * kMinute}) {
        for (int64_t customer = 0; customer < 300; customer += 17) {
            generic::OwnedEvent probe{0, t + dt, 10.0, {customer, customer % 3}, {1.0}, {11}};
            if (!same_rows(row(plan, restored, probe.ev()), row(plan, b, probe.ev()))) ++diffs;
        }
    }
    CHECK(diffs == 0);
}

}  // namespace

int main() {
    check_stream(1, StoreConfig{}, 6000, true);
    StoreConfig by_time;
    by_time.retention_ms = 36 * 60 * kMinute;  // evicts from the front of the long histories
    check_stream(2, by_time, 8000, true);
    StoreConfig capped;
    capped.max_history_per_entity = 700;  // drops from the terminals' fronts; rows compacted
    check_stream(3, capped, 8000, false);
    return report_checks();
}
