#include "engine/drift.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/bounded_json.h"
#include "common/error.h"

namespace libfraud {
namespace {

using nlohmann::json;

constexpr double kSumTolerance = 1e-6;

[[noreturn]] void invalid(const std::string& where, const std::string& what) {
    throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, where + bounded(what, kMaxMessage));
}

std::string shown(const json& v) { return bounded(v.dump(), 80); }

const json& member(const json& object, const char* key, const std::string& where, const std::string& name) {
    if (!object.is_object() || !object.contains(key)) invalid(where, "missing key '" + name + key + "'");
    return object.at(key);
}

std::vector<double> numbers(const json& list, const std::string& where, const std::string& name, size_t max) {
    if (!list.is_array()) invalid(where, "'" + name + "' must be a list of numbers, got " + shown(list));
    if (list.size() > max)
        invalid(where, "'" + name + "' has " + std::to_string(list.size()) + " entries; at most " +
                           std::to_string(max));
    std::vector<double> out;
    out.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
        const json& v = list[i];
        if (!v.is_number() || !std::isfinite(v.get<double>()))
            invalid(where, "'" + name + "[" + std::to_string(i) + "]' must be a finite number, got " + shown(v));
        out.push_back(v.get<double>());
    }
    return out;
}

// `what` names the histogram in messages: "drift.features[3] ('amount_z')" or "drift.score".
DriftHistogram histogram(const json& h, const std::string& where, const std::string& what) {
    if (!h.is_object()) invalid(where, what + " must be an object, got " + shown(h));
    DriftHistogram out;
    out.edges = numbers(member(h, "edges", where, what + "."), where, what + ".edges", kMaxDriftEdges);
    for (size_t i = 1; i < out.edges.size(); ++i)
        if (!(out.edges[i] > out.edges[i - 1]))
            invalid(where, what + ".edges must be strictly increasing: edges[" + std::to_string(i) + "] = " +
                               shown(h.at("edges")[i]) + " after " + shown(h.at("edges")[i - 1]));
    out.proportions = numbers(member(h, "proportions", where, what + "."), where, what + ".proportions",
                              kMaxDriftEdges + 2);
    if (out.proportions.size() != out.bins())
        invalid(where, what + ".proportions has " + std::to_string(out.proportions.size()) + " entries; " +
                           std::to_string(out.edges.size()) + " edges make " + std::to_string(out.bins()) +
                           " bins (edges + 1 value bins, then the missing bin)");
    double sum = 0.0;
    for (size_t i = 0; i < out.proportions.size(); ++i) {
        const double p = out.proportions[i];
        if (p < 0.0 || p > 1.0)
            invalid(where, what + ".proportions[" + std::to_string(i) + "] is " + shown(h.at("proportions")[i]) +
                               ", not a proportion in [0, 1]");
        sum += p;
    }
    if (std::fabs(sum - 1.0) > kSumTolerance)
        invalid(where, what + ".proportions sum to " + std::to_string(sum) + ", not 1");
    out.prepare();
    return out;
}

}  // namespace

// The smallest float >= e: for a float v, v >= e exactly when v >= it.
static float float_at_or_above(double e) {
    float f = static_cast<float>(e);
    if (static_cast<double>(f) < e) f = std::nextafter(f, std::numeric_limits<float>::infinity());
    return f;
}

void DriftHistogram::prepare() {
    fast_ = edges.size() <= kFastEdges;
    for (size_t k = 0; k < kFastEdges; ++k)
        fast_edges_[k] = k < edges.size() ? float_at_or_above(edges[k]) : std::numeric_limits<float>::quiet_NaN();
}

size_t DriftHistogram::slow_bin(float v) const {
    const double x = v;
    return static_cast<size_t>(std::upper_bound(edges.begin(), edges.end(), x) - edges.begin());
}

double population_stability(const std::vector<double>& reference, const uint64_t* counts, size_t bins) {
    uint64_t total = 0;
    for (size_t i = 0; i < bins; ++i) total += counts[i];
    if (total == 0) return std::nan("");
    double psi = 0.0;
    for (size_t i = 0; i < bins; ++i) {
        const double a = std::max(static_cast<double>(counts[i]) / static_cast<double>(total), kPsiFloor);
        const double r = std::max(reference[i], kPsiFloor);
        psi += (a - r) * std::log(a / r);
    }
    return psi;
}

DriftReference DriftReference::parse(const std::string& section_json, const std::vector<std::string>& feature_order,
                                     const std::string& where) {
    json doc;
    JsonParseError error;
    if (!parse_bounded_json(section_json, 16, doc, error))
        invalid(where, "'drift' is not valid JSON" + (error.path.empty() ? "" : " near '" + error.path + "'") + ": " +
                           error.what);
    if (!doc.is_object()) invalid(where, "'drift' must be an object, got " + shown(doc));
    const json& format = member(doc, "format", where, "drift.");
    if (format != "libfraud-drift") invalid(where, "'drift.format' is " + shown(format) + ", not \"libfraud-drift\"");
    const json& version = member(doc, "version", where, "drift.");
    if (!version.is_number_integer() || version.get<int64_t>() != 1)
        invalid(where, "'drift.version' is " + shown(version) + "; this libfraud reads version 1");
    const json& features = member(doc, "features", where, "drift.");
    if (!features.is_array()) invalid(where, "'drift.features' must be a list, got " + shown(features));
    if (features.size() != feature_order.size())
        invalid(where, "'drift.features' has " + std::to_string(features.size()) + " entries but features.order has " +
                           std::to_string(feature_order.size()) + " (one histogram per model feature, in order)");
    DriftReference out;
    out.features.reserve(features.size());
    for (size_t i = 0; i < features.size(); ++i) {
        const std::string at = "drift.features[" + std::to_string(i) + "]";
        const json& name = member(features[i], "name", where, at + ".");
        if (!name.is_string() || name.get<std::string>() != feature_order[i])
            invalid(where, at + ".name is " + shown(name) + " but features.order[" + std::to_string(i) + "] is '" +
                               feature_order[i] + "'");
        out.features.push_back(histogram(features[i], where, at + " ('" + feature_order[i] + "')"));
    }
    out.score = histogram(member(doc, "score", where, "drift."), where, "drift.score");
    return out;
}

// ---- the monitor

struct alignas(64) DriftMonitor::Slot {
    static constexpr uint64_t kClearing = ~uint64_t{0};
    std::atomic<uint64_t> tag{0};  // epoch + 1 of the events it holds; 0: never used
    std::atomic<uint64_t> events{0};
    std::unique_ptr<std::atomic<uint32_t>[]> counts;
};

DriftMonitor::DriftMonitor(DriftReference reference, uint64_t window_events) : reference_(std::move(reference)) {
    if (window_events == 0) window_events = kDefaultWindow;
    if (window_events < kMinWindow || window_events > kMaxWindow)
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "drift_window_events must be 0 (default " + std::to_string(kDefaultWindow) + ") or " +
                             std::to_string(kMinWindow) + ".." + std::to_string(kMaxWindow) + ", got " +
                             std::to_string(window_events));
    window_ = window_events;
    slot_events_ = window_ / kSlots;
    for (const DriftHistogram& h : reference_.features) {
        offset_.push_back(counters_);
        counters_ += h.bins();
    }
    offset_.push_back(counters_);
    counters_ += reference_.score.bins();
    slots_ = std::make_unique<Slot[]>(kSlots);
    for (size_t s = 0; s < kSlots; ++s) {
        slots_[s].counts = std::make_unique<std::atomic<uint32_t>[]>(counters_);
        for (size_t c = 0; c < counters_; ++c) slots_[s].counts[c].store(0, std::memory_order_relaxed);
    }
}

DriftMonitor::~DriftMonitor() = default;

// Makes the slot hold `epoch`, clearing it when it held an older one; false when it already holds
// a newer one (this block is a whole window late: dropped).
bool DriftMonitor::claim(Slot& slot, uint64_t epoch) {
    const uint64_t want = epoch + 1;
    for (unsigned spins = 0;; ++spins) {
        uint64_t tag = slot.tag.load(std::memory_order_acquire);
        if (tag == want) return true;
        if (tag == Slot::kClearing) {  // another thread is clearing it: a few hundred stores
            if (spins > 64) std::this_thread::yield();
            continue;
        }
        if (tag > want) return false;
        if (slot.tag.compare_exchange_weak(tag, Slot::kClearing, std::memory_order_acq_rel)) {
            for (size_t c = 0; c < counters_; ++c) slot.counts[c].store(0, std::memory_order_relaxed);
            slot.events.store(0, std::memory_order_relaxed);
            slot.tag.store(want, std::memory_order_release);
            return true;
        }
    }
}

void DriftMonitor::record(const float* rows, size_t row_stride, size_t n, const float* scores) {
    if (n == 0) return;
    const uint64_t first = next_.fetch_add(n, std::memory_order_relaxed);
    Slot& slot = slots_[(first / slot_events_) % kSlots];
    if (!claim(slot, first / slot_events_)) return;
    const size_t F = reference_.features.size();
    if (n == 1) {  // one event (a switch's usual call): one atomic add per histogram
        for (size_t j = 0; j < F; ++j)
            slot.counts[offset_[j] + reference_.features[j].bin(rows[j])].fetch_add(1, std::memory_order_relaxed);
        slot.counts[offset_[F] + reference_.score.bin(scores[0])].fetch_add(1, std::memory_order_relaxed);
        slot.events.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // A block's counts first in per-thread scratch (plain adds), then one atomic add per bin hit.
    thread_local std::vector<uint32_t> local;
    if (local.size() < counters_) local.resize(counters_);
    auto flush = [&](size_t from, size_t bins) {
        for (size_t k = from; k < from + bins; ++k) {
            if (local[k] == 0) continue;
            slot.counts[k].fetch_add(local[k], std::memory_order_relaxed);
            local[k] = 0;
        }
    };
    for (size_t j = 0; j < F; ++j) {
        const DriftHistogram& h = reference_.features[j];
        uint32_t* c = local.data() + offset_[j];
        for (size_t i = 0; i < n; ++i) ++c[h.bin(rows[i * row_stride + j])];
        flush(offset_[j], h.bins());
    }
    uint32_t* c = local.data() + offset_[F];
    for (size_t i = 0; i < n; ++i) ++c[reference_.score.bin(scores[i])];
    flush(offset_[F], reference_.score.bins());
    slot.events.fetch_add(n, std::memory_order_relaxed);
}

DriftSnapshot DriftMonitor::read() const {
    DriftSnapshot out;
    const size_t F = reference_.features.size();
    out.feature_psi.assign(F, std::nan(""));
    out.score_psi = std::nan("");
    const uint64_t handed = next_.load(std::memory_order_acquire);
    if (handed == 0) return out;
    const uint64_t last_epoch = (handed - 1) / slot_events_;
    std::vector<uint64_t> sums(counters_, 0);
    for (size_t s = 0; s < kSlots; ++s) {
        const Slot& slot = slots_[s];
        const uint64_t tag = slot.tag.load(std::memory_order_acquire);
        // Never used, being cleared, or left from more than a window ago (a skipped epoch).
        if (tag == 0 || tag == Slot::kClearing || tag - 1 + kSlots <= last_epoch) continue;
        for (size_t c = 0; c < counters_; ++c) sums[c] += slot.counts[c].load(std::memory_order_relaxed);
        out.window_events += slot.events.load(std::memory_order_relaxed);
    }
    for (size_t j = 0; j < F; ++j)
        out.feature_psi[j] = population_stability(reference_.features[j].proportions, sums.data() + offset_[j],
                                                  reference_.features[j].bins());
    out.score_psi = population_stability(reference_.score.proportions, sums.data() + offset_[F],
                                         reference_.score.bins());
    return out;
}

void fill_drift_stats(const DriftMonitor* monitor, fraud_engine_stats& out) {
    out.drift_window_events = 0;
    out.drift_score_psi = out.drift_max_feature_psi = std::nan("");
    out.drift_max_feature = -1;
    if (!monitor) return;
    const DriftSnapshot d = monitor->read();
    out.drift_window_events = d.window_events;
    out.drift_score_psi = d.score_psi;
    for (size_t j = 0; j < d.feature_psi.size(); ++j) {
        if (std::isnan(d.feature_psi[j])) continue;
        if (out.drift_max_feature < 0 || d.feature_psi[j] > out.drift_max_feature_psi) {
            out.drift_max_feature_psi = d.feature_psi[j];
            out.drift_max_feature = static_cast<int32_t>(j);
        }
    }
}

size_t write_drift(const DriftMonitor& monitor, fraud_drift* out, size_t capacity) {
    const DriftSnapshot d = monitor.read();
    const size_t n = std::min(capacity, d.feature_psi.size() + 1);
    for (size_t i = 0; i < n; ++i) {
        out[i].feature = static_cast<int32_t>(i) - 1;
        out[i].reserved = 0;
        out[i].psi = i == 0 ? d.score_psi : d.feature_psi[i - 1];
        out[i].window_events = d.window_events;
    }
    return n;
}

}  // namespace libfraud
