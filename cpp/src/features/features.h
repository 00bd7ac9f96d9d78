// Point-in-time features of an event, from the temporal store, by a plan compiled from the declared
// feature spec (export/SCHEMA.md: the vocabulary and the exact semantics of every kind). The one
// implementation: training replays history through it (via the bindings) and serving calls it.
// Compiled once at load: the scoring path reads no JSON and no names, and allocates nothing after
// a thread's first call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "libfraud/fraud.h"
#include "schema/schema.h"
#include "store/temporal_store.h"

namespace libfraud {

enum class FeatureKind {
    Amount, LogAmount, Numeric, Categorical, Calendar, Window, TimeSinceLast, AmountVsHistory,
    Distinct, Novelty, Changed, Label
};
enum class Aggregate { Count, Sum, Mean, Std, Min, Max, FraudCount, FraudRate, LabelledCount };
enum class CalendarPart { Hour, DayOfWeek, Weekend, Night };
enum class HistoryStat { RatioToMean, ZScore };
enum class CompareOp { Less, LessEqual, Greater, GreaterEqual, Equal, NotEqual };

// A field of an event: the amount, a numeric, a categorical, or an entity id.
struct FieldRef {
    enum Role { Amount, Numeric, Categorical, Entity } role = Amount;
    int index = 0;  // in the schema's list of that role
};

struct Filter {
    bool present = false;
    FieldRef field;
    std::vector<int64_t> codes;  // categorical: sorted; passes when the code is among them
    CompareOp op = CompareOp::Equal;
    double value = 0;            // amount / numeric: passes when (field op value); NaN never passes
};

struct FeatureOp {
    std::string name;
    FeatureKind kind = FeatureKind::Amount;
    Aggregate agg = Aggregate::Count;
    CalendarPart part = CalendarPart::Hour;
    HistoryStat stat = HistoryStat::RatioToMean;
    int entity = -1;                 // the owner whose history is read
    FieldRef field;                  // aggregated / passed-through field
    int history_slot = -1;           // the field's position in the store's history values
    FieldRef of;                     // distinct / novelty / changed
    int64_t window_ms = 0, offset_ms = 0;
    int window = -1;                 // index of (entity, window_ms, offset_ms) in the plan's windows
    uint32_t max_scan = 1024;
    Filter filter;
    std::vector<std::pair<int64_t, uint32_t>> vocabulary;  // sorted by code: (code, index)
    bool has_vocabulary = false;
};

// 3600000 -> "1h", 86400000 -> "24h", 604800000 -> "7d", 300000 -> "5m", 30000 -> "30s",
// 1500 -> "1500ms": the largest unit that divides ms, days only from 2 days on.
std::string window_label(int64_t ms);

// An entity's history as the event at t sees it: [0, end) are its events strictly before t.
struct Seen {
    const EntityHistory* h = nullptr;
    size_t end = 0;
    bool absent = true;
};

// A window of an entity's history, shared by every feature over it: [t - offset - w, t - offset).
struct WindowKey {
    int entity;
    int64_t window_ms, offset_ms;
    bool operator==(const WindowKey& o) const {
        return entity == o.entity && window_ms == o.window_ms && offset_ms == o.offset_ms;
    }
};
// Event indices [begin, end) of a window in its entity's history.
struct WindowRange {
    size_t begin = 0, end = 0;
    // A label scan's counts over [labels_from, end), kept for the window's other label features
    // (fraud_count, fraud_rate and labelled_count read the same rows).
    mutable size_t labels_from = SIZE_MAX;
    mutable uint64_t fraud = 0, labelled = 0;
};

class FeaturePlan {
public:
    // Compiles the spec (the manifest's features.spec, JSON text) against the schema. Throws
    // FraudError(BUNDLE_INVALID) naming the key: "features.spec.features[3].entity: 'termnal' is not
    // an entity of the schema (card, device...)". `where` prefixes messages.
    FeaturePlan(const Schema& schema, const std::string& spec_json, const std::string& where);
    // The history fields the plan aggregates (kAmountField or numeric indices): what a store for
    // it keeps per history event.
    const std::vector<int>& history_fields() const { return history_fields_; }
    // Whether a windowed min or max is among the features (the store then keeps block extremes).
    bool needs_extremes() const { return needs_extremes_; }
    // The layout of a store for this plan.
    StoreLayout store_layout() const { return StoreLayout{schema_, history_fields_, needs_extremes_, needs_labels_}; }
    // Points the plan at a store's layout: every field it aggregates must be among the layout's
    // history fields (BUNDLE_INVALID naming it otherwise; a hot swap to such a bundle is refused).
    void bind(const StoreLayout& layout);
    const std::vector<std::string>& names() const { return names_; }
    size_t size() const { return ops_.size(); }
    const std::vector<FeatureOp>& ops() const { return ops_; }

    // Writes size() floats. Sees only stored events with time < event.time_ms, even when the store
    // holds later ones. Preconditions: fields validated; bind() to this store's layout.
    void compute(const TemporalStore& store, const fraud_event& event, float* out) const;

private:
    // Inlined into compute()'s loop: a call per feature costs as much as the simpler features.
    [[gnu::always_inline]] inline float compute_one(const FeatureOp& op, const TemporalStore& store,
                                                    const fraud_event& ev, const Seen& seen,
                                                    const WindowRange* windows) const;

    Schema schema_;
    std::vector<FeatureOp> ops_;
    std::vector<WindowKey> windows_;
    std::vector<std::string> names_;
    std::vector<int> history_fields_;
    bool needs_extremes_ = false;
    bool needs_labels_ = false;  // a label feature: the store keeps label blocks (StoreLayout::labels)
};

}  // namespace libfraud
