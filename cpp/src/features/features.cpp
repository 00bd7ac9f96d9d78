#include "features/features.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "common/bounded_json.h"
#include "common/error.h"

namespace libfraud {
namespace {

using nlohmann::json;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kMsPerHour = 3600000;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;
// Bounds the per-thread scratch of the distinct counts (a bundle's spec is input too).
constexpr uint32_t kMaxScanLimit = 1u << 16;
// A std below this fraction of |mean| is rounding noise, not spread.
constexpr double kMinRelStd = 1e-6;

// t - w without overflow for times near INT64_MIN (w >= 0).
int64_t minus(int64_t t, int64_t w) {
    return t < std::numeric_limits<int64_t>::min() + w ? std::numeric_limits<int64_t>::min() : t - w;
}

// x as a float32 within +-FLT_MAX (NaN stays NaN).
float saturate(double x) {
    constexpr double kMax = std::numeric_limits<float>::max();
    return static_cast<float>(x > kMax ? kMax : x < -kMax ? -kMax : x);
}

int64_t floor_mod(int64_t a, int64_t m) {
    const int64_t r = a % m;
    return r < 0 ? r + m : r;
}
int64_t floor_div(int64_t a, int64_t m) { return a / m - (a % m < 0 ? 1 : 0); }  // m > 0; no overflow

class SpecReader {
public:
    SpecReader(const Schema& s, std::string where) : s_(s), where_(std::move(where)) {}

    [[noreturn]] void bad(const std::string& key, const std::string& what) const {
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, where_ + key + ": " + what);
    }
    const json& need(const json& o, const char* key, const std::string& path) const {
        auto it = o.find(key);
        if (it == o.end()) bad(path + "." + key, "missing");
        return *it;
    }
    std::string str(const json& o, const char* key, const std::string& path) const {
        const json& v = need(o, key, path);
        if (!v.is_string()) bad(path + "." + key, "must be a string");
        return v.get<std::string>();
    }
    int64_t integer(const json& o, const char* key, const std::string& path, int64_t lo, int64_t def,
                    bool required) const {
        auto it = o.find(key);
        if (it == o.end()) {
            if (required) bad(path + "." + key, "missing");
            return def;
        }
        if (!it->is_number_integer()) bad(path + "." + key, "must be an integer");
        const int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)
                              ? INT64_MAX
                              : it->get<int64_t>();
        if (v < lo) bad(path + "." + key, "must be >= " + std::to_string(lo) + ", got " + std::to_string(v));
        return v;
    }
    std::string list(const std::vector<std::string>& v) const {
        std::string out;
        for (const auto& n : v) out += (out.empty() ? "" : ", ") + n;
        return out.empty() ? "none" : out;
    }
    int entity(const json& o, const std::string& path) const {
        const std::string n = str(o, "entity", path);
        const int i = s_.entity_index(n);
        if (i < 0) bad(path + ".entity", "'" + n + "' is not an entity of the schema (" + list(s_.entities) + ")");
        return i;
    }
    // "amount" or a numeric field.
    FieldRef value_field(const json& o, const char* key, const std::string& path) const {
        const std::string n = str(o, key, path);
        if (n == "amount") {
            if (!s_.has_amount) bad(path + "." + key, "the schema has no amount");
            return {FieldRef::Amount, 0};
        }
        const int i = s_.numeric_index(n);
        if (i < 0) {
            const char* hint = s_.categorical_index(n) >= 0 ? " (it is categorical)" : "";
            bad(path + "." + key, "'" + n + "' is not amount or a numeric field (" + list(s_.numeric) + ")" + hint);
        }
        return {FieldRef::Numeric, i};
    }
    FieldRef categorical(const json& o, const char* key, const std::string& path) const {
        const std::string n = str(o, key, path);
        const int i = s_.categorical_index(n);
        if (i < 0) bad(path + "." + key, "'" + n + "' is not a categorical field (" + list(s_.categorical) + ")");
        return {FieldRef::Categorical, i};
    }
    FieldRef of(const json& o, const std::string& path) const {
        const json& v = need(o, "of", path);
        if (!v.is_object() || v.size() != 1) bad(path + ".of", "must be {\"entity\": name} or {\"categorical\": name}");
        if (v.contains("entity")) {
            const int i = entity(v, path + ".of");
            return {FieldRef::Entity, i};
        }
        if (v.contains("categorical")) return categorical(v, "categorical", path + ".of");
        bad(path + ".of", "must be {\"entity\": name} or {\"categorical\": name}");
    }
    template <class E>
    E choice(const json& o, const char* key, const std::string& path,
             const std::vector<std::pair<const char*, E>>& options) const {
        const std::string v = str(o, key, path);
        std::string valid;
        for (const auto& [n, e] : options) {
            if (v == n) return e;
            valid += (valid.empty() ? "" : ", ") + std::string(n);
        }
        bad(path + "." + key, "'" + v + "' is not one of " + valid);
    }
    Filter filter(const json& o, const std::string& path) const {
        Filter f;
        auto it = o.find("filter");
        if (it == o.end() || it->is_null()) return f;
        const json& v = *it;
        const std::string p = path + ".filter";
        if (!v.is_object()) bad(p, "must be an object");
        f.present = true;
        if (v.contains("in")) {
            f.field = categorical(v, "field", p);
            const json& codes = v["in"];
            if (!codes.is_array() || codes.empty() || codes.size() > 65536) bad(p + ".in", "must be a non-empty list of codes");
            for (const json& c : codes) {
                if (!c.is_number_integer()) bad(p + ".in", "codes must be integers (strings are hashed by the compiler)");
                f.codes.push_back(c.get<int64_t>());
            }
            std::sort(f.codes.begin(), f.codes.end());
            return f;
        }
        f.field = value_field(v, "field", p);
        f.op = choice<CompareOp>(v, "op", p, {{"<", CompareOp::Less}, {"<=", CompareOp::LessEqual},
                                               {">", CompareOp::Greater}, {">=", CompareOp::GreaterEqual},
                                               {"==", CompareOp::Equal}, {"!=", CompareOp::NotEqual}});
        const json& value = need(v, "value", p);
        if (!value.is_number()) bad(p + ".value", "must be a number");
        f.value = value.get<double>();
        if (!std::isfinite(f.value)) bad(p + ".value", "must be finite");
        return f;
    }

private:
    const Schema& s_;
    std::string where_;
};

bool passes(const Filter& f, const EventRow& r) {
    if (f.field.role == FieldRef::Categorical) {
        const int64_t c = r.categorical(static_cast<size_t>(f.field.index));
        return c != FRAUD_CODE_MISSING && std::binary_search(f.codes.begin(), f.codes.end(), c);
    }
    const double x = f.field.role == FieldRef::Amount ? r.amount() : r.numeric(static_cast<size_t>(f.field.index));
    switch (f.op) {
        case CompareOp::Less: return x < f.value;
        case CompareOp::LessEqual: return x <= f.value;
        case CompareOp::Greater: return x > f.value;
        case CompareOp::GreaterEqual: return x >= f.value;
        case CompareOp::Equal: return x == f.value;
        case CompareOp::NotEqual: return !std::isnan(x) && x != f.value;
    }
    return false;
}

// The value of `of` in a stored event and in the event being scored; -1 = absent / missing.
int64_t of_value(const FieldRef& of, const EventRow& r) {
    return of.role == FieldRef::Entity ? r.entity(static_cast<size_t>(of.index))
                                       : r.categorical(static_cast<size_t>(of.index));
}
int64_t of_value(const FieldRef& of, const fraud_event& ev) {
    return of.role == FieldRef::Entity ? ev.entity_id[of.index] : ev.categorical[of.index];
}
double value_of(const FieldRef& f, const fraud_event& ev) {
    return f.role == FieldRef::Amount ? ev.amount : ev.numeric[f.index];
}

// Sample std (ddof 1) of values [b, e) of a history field, two-pass and scaled by the largest
// magnitude: for ranges whose sum of squares overflows (values beyond ~1e154), where the one-pass
// formula would give inf - inf although the std itself is finite.
double scaled_std(const EntityHistory& h, size_t slot, size_t b, size_t e) {
    double scale = 0, sum = 0;
    uint64_t n = 0;
    for (size_t i = b; i < e; ++i) {
        const double x = h.value(slot, i);
        if (std::isnan(x)) continue;
        scale = std::max(scale, std::fabs(x));
    }
    if (scale == 0 || !std::isfinite(scale)) return 0.0;
    for (size_t i = b; i < e; ++i) {
        const double x = h.value(slot, i);
        if (std::isnan(x)) continue;
        sum += x / scale;
        ++n;
    }
    const double mean = sum / static_cast<double>(n);
    double ss = 0;
    for (size_t i = b; i < e; ++i) {
        const double x = h.value(slot, i);
        if (std::isnan(x)) continue;
        const double d = x / scale - mean;
        ss += d * d;
    }
    return std::sqrt(ss / static_cast<double>(n - 1)) * scale;
}

// Std from range sums (n >= 2), falling back to the scaled two-pass form on overflow.
double sample_std(const RangeSums& a, const EntityHistory& h, size_t slot, size_t b, size_t e) {
    const double mean = a.sum / static_cast<double>(a.n);
    if (std::isfinite(a.sum_sq) && std::isfinite(a.sum)) {
        return std::sqrt(std::max((a.sum_sq - a.sum * mean) / static_cast<double>(a.n - 1), 0.0));
    }
    return scaled_std(h, slot, b, e);
}

// sum / mean / min / max (and count) of an aggregate; std is computed by the caller.
float from_aggregate(Aggregate agg, const FieldAggregate& a) {
    switch (agg) {
        case Aggregate::Sum: return static_cast<float>(a.sum);
        case Aggregate::Mean: return a.n == 0 ? kNaN : static_cast<float>(a.sum / static_cast<double>(a.n));
        case Aggregate::Min: return a.n == 0 ? kNaN : static_cast<float>(a.min);
        case Aggregate::Max: return a.n == 0 ? kNaN : static_cast<float>(a.max);
        case Aggregate::Std: {
            if (a.n < 2) return kNaN;
            const double mean = a.sum / static_cast<double>(a.n);
            const double var = (a.sum_sq - a.sum * mean) / static_cast<double>(a.n - 1);
            return static_cast<float>(std::sqrt(std::max(var, 0.0)));
        }
        default: return static_cast<float>(a.n);
    }
}

float from_sums(Aggregate agg, const RangeSums& a) {
    if (agg == Aggregate::Sum) return static_cast<float>(a.sum);
    return a.n == 0 ? kNaN : static_cast<float>(a.sum / static_cast<double>(a.n));  // mean
}

}  // namespace

std::string window_label(int64_t ms) {
    if (ms > 0) {
        if (ms >= 2 * kMsPerDay && ms % kMsPerDay == 0) return std::to_string(ms / kMsPerDay) + "d";
        if (ms % kMsPerHour == 0) return std::to_string(ms / kMsPerHour) + "h";
        if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
        if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    }
    return std::to_string(ms) + "ms";
}

FeaturePlan::FeaturePlan(const Schema& schema, const std::string& spec_json, const std::string& where)
    : schema_(schema) {
    SpecReader r(schema_, where);
    json spec;
    JsonParseError error;
    // A spec nests five levels (features[i].filter.in[j]); a deeper one is hostile.
    if (!parse_bounded_json(spec_json, 16, spec, error))
        r.bad("features.spec" + (error.path.empty() ? "" : "." + error.path), "not JSON: " + error.what);
    if (!spec.is_object()) r.bad("features.spec", "must be an object");
    const auto format = spec.find("format");
    if (format == spec.end() || !format->is_string() || format->get<std::string>() != "libfraud-features") r.bad("features.spec.format", "must be \"libfraud-features\"");
    if (r.integer(spec, "version", "features.spec", 1, 1, true) != 1) r.bad("features.spec.version", "must be 1");
    const int64_t default_scan = r.integer(spec, "max_scan", "features.spec", 1, 1024, false);
    if (default_scan > kMaxScanLimit) r.bad("features.spec.max_scan", "must be <= " + std::to_string(kMaxScanLimit));
    const json& features = r.need(spec, "features", "features.spec");
    if (!features.is_array() || features.empty() || features.size() > 100000)
        r.bad("features.spec.features", "must be a non-empty list");
    std::set<std::string> seen;
    for (size_t i = 0; i < features.size(); ++i) {
        const std::string path = "features.spec.features[" + std::to_string(i) + "]";
        const json& f = features[i];
        if (!f.is_object()) r.bad(path, "must be an object");
        FeatureOp op;
        op.name = r.str(f, "name", path);
        if (op.name.empty() || !seen.insert(op.name).second) r.bad(path + ".name", "'" + op.name + "' is empty or not unique");
        op.kind = r.choice<FeatureKind>(
            f, "kind", path,
            {{"amount", FeatureKind::Amount}, {"log_amount", FeatureKind::LogAmount}, {"numeric", FeatureKind::Numeric},
             {"categorical", FeatureKind::Categorical}, {"calendar", FeatureKind::Calendar},
             {"window", FeatureKind::Window}, {"time_since_last", FeatureKind::TimeSinceLast},
             {"amount_vs_history", FeatureKind::AmountVsHistory}, {"distinct", FeatureKind::Distinct},
             {"novelty", FeatureKind::Novelty}, {"changed", FeatureKind::Changed}, {"label", FeatureKind::Label}});
        op.max_scan = static_cast<uint32_t>(std::min<int64_t>(r.integer(f, "max_scan", path, 1, default_scan, false), kMaxScanLimit + 1));
        if (op.max_scan > kMaxScanLimit) r.bad(path + ".max_scan", "must be <= " + std::to_string(kMaxScanLimit));
        switch (op.kind) {
            case FeatureKind::Amount:
            case FeatureKind::LogAmount:
                if (!schema_.has_amount) r.bad(path + ".kind", "the schema has no amount");
                break;
            case FeatureKind::Numeric: op.field = r.value_field(f, "field", path); break;
            case FeatureKind::Categorical: {
                op.field = r.categorical(f, "field", path);
                auto it = f.find("vocabulary");
                if (it != f.end() && !it->is_null()) {
                    if (!it->is_array() || it->size() > 1000000) r.bad(path + ".vocabulary", "must be a list of codes");
                    op.has_vocabulary = true;
                    for (size_t k = 0; k < it->size(); ++k) {
                        if (!(*it)[k].is_number_integer()) r.bad(path + ".vocabulary", "codes must be integers");
                        op.vocabulary.emplace_back((*it)[k].get<int64_t>(), static_cast<uint32_t>(k));
                    }
                    std::sort(op.vocabulary.begin(), op.vocabulary.end());
                    for (size_t k = 1; k < op.vocabulary.size(); ++k)
                        if (op.vocabulary[k].first == op.vocabulary[k - 1].first)
                            r.bad(path + ".vocabulary", "code " + std::to_string(op.vocabulary[k].first) + " twice");
                }
                break;
            }
            case FeatureKind::Calendar:
                op.part = r.choice<CalendarPart>(f, "part", path, {{"hour", CalendarPart::Hour}, {"day_of_week", CalendarPart::DayOfWeek},
                                                                    {"weekend", CalendarPart::Weekend}, {"night", CalendarPart::Night}});
                break;
            case FeatureKind::Window:
                op.entity = r.entity(f, path);
                op.agg = r.choice<Aggregate>(f, "agg", path, {{"count", Aggregate::Count}, {"sum", Aggregate::Sum},
                                                               {"mean", Aggregate::Mean}, {"std", Aggregate::Std},
                                                               {"min", Aggregate::Min}, {"max", Aggregate::Max}});
                if (op.agg != Aggregate::Count) op.field = r.value_field(f, "field", path);
                op.window_ms = r.integer(f, "window_ms", path, 1, 0, true);
                op.offset_ms = r.integer(f, "offset_ms", path, 0, 0, false);
                op.filter = r.filter(f, path);
                break;
            case FeatureKind::TimeSinceLast: op.entity = r.entity(f, path); break;
            case FeatureKind::AmountVsHistory:
                op.entity = r.entity(f, path);
                op.field = r.value_field(f, "field", path);
                op.stat = r.choice<HistoryStat>(f, "stat", path, {{"ratio_to_mean", HistoryStat::RatioToMean}, {"zscore", HistoryStat::ZScore}});
                op.window_ms = r.integer(f, "window_ms", path, 0, 0, false);
                break;
            case FeatureKind::Distinct:
                op.entity = r.entity(f, path);
                op.of = r.of(f, path);
                op.window_ms = r.integer(f, "window_ms", path, 1, 0, true);
                break;
            case FeatureKind::Novelty:
            case FeatureKind::Changed:
                op.entity = r.entity(f, path);
                op.of = r.of(f, path);
                break;
            case FeatureKind::Label:
                op.entity = r.entity(f, path);
                op.agg = r.choice<Aggregate>(f, "agg", path, {{"fraud_count", Aggregate::FraudCount}, {"fraud_rate", Aggregate::FraudRate},
                                                               {"labelled_count", Aggregate::LabelledCount}});
                op.window_ms = r.integer(f, "window_ms", path, 1, 0, true);
                op.offset_ms = r.integer(f, "offset_ms", path, 0, 0, false);
                break;
        }
        if (op.kind == FeatureKind::Window || op.kind == FeatureKind::Label || op.kind == FeatureKind::Distinct) {
            const WindowKey key{op.entity, op.window_ms, op.offset_ms};
            auto it = std::find(windows_.begin(), windows_.end(), key);
            op.window = static_cast<int>(it - windows_.begin());
            if (it == windows_.end()) windows_.push_back(key);
        }
        const bool aggregates = (op.kind == FeatureKind::Window && op.agg != Aggregate::Count) ||
                                op.kind == FeatureKind::AmountVsHistory;
        if (aggregates) {
            const int hf = op.field.role == FieldRef::Amount ? kAmountField : op.field.index;
            if (std::find(history_fields_.begin(), history_fields_.end(), hf) == history_fields_.end())
                history_fields_.push_back(hf);
        }
        if (op.kind == FeatureKind::Window && (op.agg == Aggregate::Min || op.agg == Aggregate::Max)) needs_extremes_ = true;
        if (op.kind == FeatureKind::Label) needs_labels_ = true;
        names_.push_back(op.name);
        ops_.push_back(std::move(op));
    }
    std::sort(history_fields_.begin(), history_fields_.end());
}

void FeaturePlan::bind(const StoreLayout& layout) {
    if (layout.schema.layout_key() != schema_.layout_key())
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "the bundle's schema differs from the store's (" +
                                                          schema_.layout_key() + " vs " + layout.schema.layout_key() + ")");
    if (needs_extremes_ && !layout.extremes)
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "the features need windowed min/max, which the store does not keep "
                                                      "(open a new engine for this bundle)");
    for (FeatureOp& op : ops_) {
        op.history_slot = -1;
        const bool aggregates = (op.kind == FeatureKind::Window && op.agg != Aggregate::Count) ||
                                op.kind == FeatureKind::AmountVsHistory;
        if (!aggregates) continue;
        const int hf = op.field.role == FieldRef::Amount ? kAmountField : op.field.index;
        auto it = std::find(layout.history_fields.begin(), layout.history_fields.end(), hf);
        if (it == layout.history_fields.end())
            throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "feature '" + op.name + "' aggregates a field the store does not keep "
                                                              "in its histories (open a new engine for this bundle)");
        op.history_slot = static_cast<int>(it - layout.history_fields.begin());
    }
}

namespace {

// h.lower_bound(t) for a t whose answer is at most hi (a window's start, known to be at or before
// its end). Windows end near the history's newest events and short ones start near them too:
// galloping back from hi for up to 64 events reads a few cache lines there; a window reaching
// further back is a binary search of the rest (galloping all the way would cost about twice its
// probes).
size_t lower_bound_before(const EntityHistory& h, size_t hi, int64_t t) {
    constexpr size_t kGallop = 64;
    size_t lo = 0;
    size_t step = 1;
    for (; step <= hi && step <= kGallop; step <<= 1) {
        const size_t probe = hi - step;
        if (h.ts(probe) < t) {
            lo = probe + 1;
            break;
        }
        hi = probe;
    }
    while (lo < hi) {  // the answer is in [lo, hi]
        const size_t mid = lo + (hi - lo) / 2;
        if (h.ts(mid) < t) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// Distinct present values of `of` among events [b, e) of h: an open-addressing set on the stack
// for the usual scan lengths (no sort, no allocation), a sorted per-thread buffer beyond.
size_t count_distinct(const FieldRef& of, const TemporalStore& store, const EntityHistory& h, size_t b, size_t e) {
    constexpr size_t kMaxSlots = 2048;  // load <= 1/2 for up to 1024 values
    if (e - b <= kMaxSlots / 2) {
        int64_t slots[kMaxSlots];
        int bits = 4;
        while ((size_t{1} << bits) < 2 * (e - b)) ++bits;
        const size_t mask = (size_t{1} << bits) - 1;
        std::fill(slots, slots + mask + 1, int64_t{-1});  // values are >= 0
        size_t n = 0;
        for (size_t j = b; j < e; ++j) {
            const int64_t v = of_value(of, store.event(h.row(j)));
            if (v < 0) continue;
            size_t i = static_cast<size_t>((static_cast<uint64_t>(v) * 0x9E3779B97F4A7C15ull) >> (64 - bits));
            while (slots[i] != -1 && slots[i] != v) i = (i + 1) & mask;
            if (slots[i] == -1) {
                slots[i] = v;
                ++n;
            }
        }
        return n;
    }
    thread_local std::vector<int64_t> many;
    std::vector<int64_t>& scratch = many;
    scratch.clear();
    for (size_t j = b; j < e; ++j) {
        const int64_t v = of_value(of, store.event(h.row(j)));
        if (v >= 0) scratch.push_back(v);
    }
    std::sort(scratch.begin(), scratch.end());
    return static_cast<size_t>(std::unique(scratch.begin(), scratch.end()) - scratch.begin());
}

}  // namespace

inline float FeaturePlan::compute_one(const FeatureOp& op, const TemporalStore& store, const fraud_event& ev,
                               const Seen& seen, const WindowRange* windows) const {
    const int64_t t = ev.time_ms;
    const EntityHistory* h = seen.h;
    const size_t end = seen.end;
    switch (op.kind) {
        case FeatureKind::Amount: return static_cast<float>(ev.amount);
        case FeatureKind::LogAmount: return static_cast<float>(std::log1p(ev.amount));
        case FeatureKind::Numeric: return static_cast<float>(value_of(op.field, ev));
        case FeatureKind::Categorical: {
            const int64_t c = ev.categorical[op.field.index];
            if (c == FRAUD_CODE_MISSING) return kNaN;
            if (!op.has_vocabulary) return static_cast<float>(static_cast<double>(c));  // via double, as SCHEMA.md says
            auto it = std::lower_bound(op.vocabulary.begin(), op.vocabulary.end(), std::make_pair(c, uint32_t{0}));
            return static_cast<float>(it != op.vocabulary.end() && it->first == c ? it->second : op.vocabulary.size());
        }
        case FeatureKind::Calendar: {
            // Days and milliseconds of the day apart, so adding the offset never overflows near the
            // ends of int64 (the offset is within a day).
            int64_t day = floor_div(t, kMsPerDay);
            int64_t ms = floor_mod(t, kMsPerDay) + int64_t{schema_.utc_offset_seconds(t)} * 1000;
            day += floor_div(ms, kMsPerDay);
            ms = floor_mod(ms, kMsPerDay);
            const int64_t hour = ms / kMsPerHour;
            const int64_t dow = floor_mod(floor_mod(day, 7) + 3, 7);  // 1970-01-01 was a Thursday
            switch (op.part) {
                case CalendarPart::Hour: return static_cast<float>(hour);
                case CalendarPart::DayOfWeek: return static_cast<float>(dow);
                case CalendarPart::Weekend: return dow >= 5 ? 1.0f : 0.0f;
                case CalendarPart::Night: return hour >= 22 || hour < 6 ? 1.0f : 0.0f;
            }
            return kNaN;
        }
        case FeatureKind::Window: {
            if (!h) return op.agg == Aggregate::Count || op.agg == Aggregate::Sum ? 0.0f : kNaN;
            const size_t e = windows[op.window].end, b = windows[op.window].begin;
            if (!op.filter.present) {
                if (op.agg == Aggregate::Count) return static_cast<float>(e - b);
                const size_t slot = static_cast<size_t>(op.history_slot);
                if (op.agg == Aggregate::Min || op.agg == Aggregate::Max) return from_aggregate(op.agg, h->aggregate(slot, b, e));
                const RangeSums a = h->sums(slot, b, e, op.agg == Aggregate::Std, op.field.role == FieldRef::Amount);
                if (op.agg == Aggregate::Std) return a.n < 2 ? kNaN : static_cast<float>(sample_std(a, *h, slot, b, e));
                return from_sums(op.agg, a);
            }
            FieldAggregate a;
            uint64_t count = 0;
            const size_t stop = e - b > op.max_scan ? e - op.max_scan : b;
            for (size_t j = e; j-- > stop;) {
                if (!passes(op.filter, store.event(h->row(j)))) continue;
                ++count;
                if (op.agg != Aggregate::Count) a.add(h->value(static_cast<size_t>(op.history_slot), j));
            }
            return op.agg == Aggregate::Count ? static_cast<float>(count) : from_aggregate(op.agg, a);
        }
        case FeatureKind::TimeSinceLast:
            if (end == 0) return kNaN;
            return static_cast<float>(
                static_cast<double>(static_cast<uint64_t>(t) - static_cast<uint64_t>(h->ts(end - 1))) / 1000.0);
        case FeatureKind::AmountVsHistory: {
            const double x = value_of(op.field, ev);
            if (end == 0 || std::isnan(x)) return kNaN;
            const size_t b = op.window_ms ? lower_bound_before(*h, end, minus(t, op.window_ms)) : 0;
            const size_t slot = static_cast<size_t>(op.history_slot);
            const RangeSums a = h->sums(slot, b, end, op.stat == HistoryStat::ZScore, op.field.role == FieldRef::Amount);
            if (a.n == 0) return kNaN;
            const double mean = a.sum / static_cast<double>(a.n);
            // A zero mean (a history of zeros) has no ratio: NaN, not inf.
            if (op.stat == HistoryStat::RatioToMean) return mean != 0.0 ? saturate(x / mean) : kNaN;
            if (a.n < 2) return kNaN;
            const double sd = sample_std(a, *h, slot, b, end);
            return sd > kMinRelStd * std::fabs(mean) ? static_cast<float>((x - mean) / sd) : kNaN;
        }
        case FeatureKind::Distinct: {
            if (end == 0) return 0.0f;
            size_t b = windows[op.window].begin;
            if (end - b > op.max_scan) b = end - op.max_scan;
            return static_cast<float>(count_distinct(op.of, store, *h, b, end));
        }
        case FeatureKind::Novelty: {
            const int64_t v = of_value(op.of, ev);
            if (end == 0 || v < 0) return kNaN;
            const size_t stop = end > op.max_scan ? end - op.max_scan : 0;
            for (size_t j = end; j-- > stop;)
                if (of_value(op.of, store.event(h->row(j))) == v) return 0.0f;
            return 1.0f;
        }
        case FeatureKind::Changed:
            if (end == 0) return kNaN;
            return of_value(op.of, store.event(h->row(end - 1))) != of_value(op.of, ev) ? 1.0f : 0.0f;
        case FeatureKind::Label: {
            if (!h) return op.agg == Aggregate::FraudRate ? kNaN : 0.0f;
            const WindowRange& w = windows[op.window];
            const size_t e = w.end, b = w.begin;
            const size_t stop = e - b > op.max_scan ? e - op.max_scan : b;
            if (w.labels_from != stop) {
                const LabelCounts c = h->label_counts(stop, e, t, [&](size_t j) {
                    const EventRow r = store.event(h->row(j));
                    return std::pair<int, int64_t>{r.label(), r.label_time_ms()};
                });
                w.labels_from = stop;
                w.fraud = c.fraud;
                w.labelled = c.labelled;
            }
            const uint64_t fraud = w.fraud, labelled = w.labelled;
            if (op.agg == Aggregate::FraudCount) return static_cast<float>(fraud);
            if (op.agg == Aggregate::LabelledCount) return static_cast<float>(labelled);
            return e == stop ? kNaN : static_cast<float>(static_cast<double>(fraud) / static_cast<double>(e - stop));
        }
    }
    return kNaN;
}

void FeaturePlan::compute(const TemporalStore& store, const fraud_event& ev, float* out) const {
    // Each entity's history is looked up once per event, whatever the number of features on it.
    Seen seen[FRAUD_MAX_ENTITY_TYPES];
    for (size_t e = 0; e < schema_.num_entities(); ++e) {
        const int64_t id = ev.entity_id[e];
        seen[e].absent = id < 0;
        seen[e].h = seen[e].absent ? nullptr : store.history(e, id);
        seen[e].end = seen[e].h ? seen[e].h->lower_bound(ev.time_ms) : 0;
    }
    // Each window's bounds once, whatever the number of features over it (count, sum, mean...).
    // On the stack for the common sizes; a per-thread buffer (one TLS lookup) beyond.
    WindowRange local[64];
    WindowRange* ranges = local;
    if (windows_.size() > 64) {
        thread_local std::vector<WindowRange> many;
        std::vector<WindowRange>& m = many;
        if (m.size() < windows_.size()) m.resize(windows_.size());
        ranges = m.data();
    }
    for (size_t w = 0; w < windows_.size(); ++w) {
        const WindowKey& k = windows_[w];
        const Seen& s = seen[k.entity];
        if (!s.h) {
            ranges[w] = WindowRange{};
            continue;
        }
        const int64_t stop = minus(ev.time_ms, k.offset_ms);
        ranges[w].end = k.offset_ms ? lower_bound_before(*s.h, s.end, stop) : s.end;
        ranges[w].begin = lower_bound_before(*s.h, ranges[w].end, minus(stop, k.window_ms));
        ranges[w].labels_from = SIZE_MAX;  // the per-thread buffer keeps the last event's counts
    }
    for (size_t i = 0; i < ops_.size(); ++i) {
        const FeatureOp& op = ops_[i];
        // Saturated: a value past float32's range (a sum of huge amounts, a z-score over a tiny
        // std) would reach the trees as +/-inf, which training, parity and score_features refuse.
        out[i] = saturate(op.entity >= 0 && seen[op.entity].absent
                              ? kNaN
                              : compute_one(op, store, ev, seen[op.entity < 0 ? 0 : op.entity], ranges));
    }
}

}  // namespace libfraud
