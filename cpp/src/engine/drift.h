// Drift (export/BUNDLE.md "drift"): the training distribution of each model feature and of the
// served score, binned, and a monitor that bins the live traffic of the last W scored events and
// reports population stability (PSI) against it. One implementation of binning and PSI: the core's
// monitor, the compiler (which bins the training rows with DriftHistogram::bin) and the offline
// report (drift_psi through Python) all call these.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "libfraud/fraud.h"

namespace libfraud {

// Empty bins would make ln(a / r) infinite: both proportions are floored at this before the sum.
constexpr double kPsiFloor = 1e-4;
// The most edges (cut points) a histogram may have: the counters stay small.
constexpr size_t kMaxDriftEdges = 256;

// edges: strictly increasing finite cut points; value bins [-inf, e0), [e0, e1), ..., [e_last, +inf)
// (edges.size() + 1 of them), then one bin for missing (NaN). proportions: one per bin, summing to 1.
struct DriftHistogram {
    std::vector<double> edges;
    std::vector<double> proportions;

    size_t bins() const { return edges.size() + 2; }
    size_t missing_bin() const { return edges.size() + 1; }
    // The bin of value v (NaN: the missing bin; +/-inf: the outer value bins). Branch-free for up
    // to kFastEdges edges: v is compared with every edge (the scoring path bins every feature of
    // every event, and a search's branches mispredict on live values).
    size_t bin(float v) const {
        if (v != v) return missing_bin();
        if (!fast_) return slow_bin(v);
#if defined(__SSE2__)
        // Four compares of four edges (each true lane is -1), summed.
        const __m128 x = _mm_set1_ps(v);
        __m128i n = _mm_add_epi32(_mm_castps_si128(_mm_cmple_ps(_mm_load_ps(fast_edges_), x)),
                                  _mm_castps_si128(_mm_cmple_ps(_mm_load_ps(fast_edges_ + 4), x)));
        n = _mm_add_epi32(n, _mm_castps_si128(_mm_cmple_ps(_mm_load_ps(fast_edges_ + 8), x)));
        n = _mm_add_epi32(n, _mm_castps_si128(_mm_cmple_ps(_mm_load_ps(fast_edges_ + 12), x)));
        n = _mm_add_epi32(n, _mm_shuffle_epi32(n, _MM_SHUFFLE(1, 0, 3, 2)));
        n = _mm_add_epi32(n, _mm_shuffle_epi32(n, _MM_SHUFFLE(2, 3, 0, 1)));
        return static_cast<size_t>(-_mm_cvtsi128_si32(n));
#else
        unsigned b = 0;
        for (size_t k = 0; k < kFastEdges; ++k) b += v >= fast_edges_[k];
        return b;
#endif
    }
    // Makes bin() ready: call once edges are set.
    void prepare();

private:
    static constexpr size_t kFastEdges = 16;
    size_t slow_bin(float v) const;
    // Each edge rounded up to a float (v >= e exactly when v >= that float, for any float v),
    // padded with NaN (never >=).
    alignas(16) float fast_edges_[kFastEdges] = {};
    bool fast_ = false;
};

// PSI = sum over bins of (a_i - r_i) ln(a_i / r_i), a_i = counts[i] / total and r_i = reference[i],
// each floored at kPsiFloor (no renormalisation). NaN when total is 0.
double population_stability(const std::vector<double>& reference, const uint64_t* counts, size_t bins);

// The manifest's `drift` section, checked: one histogram per features.order entry (same names, same
// order) and one for the score. FraudError(BUNDLE_INVALID) naming the feature and what is wrong
// (edges not strictly increasing or not finite, the wrong number of proportions, proportions
// outside [0, 1] or not summing to 1 within 1e-6). `where` prefixes messages ("manifest.json: ").
struct DriftReference {
    std::vector<DriftHistogram> features;
    DriftHistogram score;

    static DriftReference parse(const std::string& section_json, const std::vector<std::string>& feature_order,
                                const std::string& where);
    size_t num_features() const { return features.size(); }
};

// What a monitor reports: PSI per feature (in features.order) and for the score over the window.
struct DriftSnapshot {
    uint64_t window_events = 0;
    double score_psi = 0.0;
    std::vector<double> feature_psi;
};

// Counters of the last W scored events against a reference, kept as kSlots rotating slots of
// W / kSlots events each: the window holds between (kSlots - 1) / kSlots * W and W events. Each
// call's block of events goes to the slot of its first event; the block that starts a new slot
// clears it (the one compare-and-swap of a rotation). Recording is lock-free (relaxed atomic
// adds of a block's per-bin counts, accumulated first in per-thread scratch) and allocates
// nothing after a thread's first call; a read sums the live slots, so a read racing a record may
// miss or half-see that block (monitoring figures, not accounting).
class DriftMonitor {
public:
    static constexpr size_t kSlots = 10;
    static constexpr uint64_t kDefaultWindow = 10000;  // fraud.h drift_window_events = 0
    static constexpr uint64_t kMinWindow = 1000;       // a slot must hold a whole block (64 events)
    static constexpr uint64_t kMaxWindow = uint64_t{1} << 32;

    // window_events: 0 = kDefaultWindow; otherwise kMinWindow..kMaxWindow (INVALID_ARGUMENT).
    DriftMonitor(DriftReference reference, uint64_t window_events);
    ~DriftMonitor();
    DriftMonitor(const DriftMonitor&) = delete;
    DriftMonitor& operator=(const DriftMonitor&) = delete;

    const DriftReference& reference() const { return reference_; }
    uint64_t window() const { return window_; }

    // n rows (row_stride floats apart, the first num_features of each read) and their n scores.
    void record(const float* rows, size_t row_stride, size_t n, const float* scores);
    DriftSnapshot read() const;

private:
    struct Slot;
    bool claim(Slot& slot, uint64_t epoch);

    DriftReference reference_;
    uint64_t window_ = 0;
    uint64_t slot_events_ = 0;
    std::vector<size_t> offset_;  // first counter of each histogram; the score's last
    size_t counters_ = 0;
    std::unique_ptr<Slot[]> slots_;
    alignas(64) std::atomic<uint64_t> next_{0};  // events handed out so far
};

// fraud_engine_stats' drift fields from a monitor's read (monitor null: 0 events, NaN, feature -1).
void fill_drift_stats(const DriftMonitor* monitor, fraud_engine_stats& out);
// fraud_engine_drift's entries (the score first, then the features in order): the count written.
size_t write_drift(const DriftMonitor& monitor, fraud_drift* out, size_t capacity);

}  // namespace libfraud
