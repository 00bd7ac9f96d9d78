// A brute-force reference of the feature kinds of export/SCHEMA.md ("Kinds and their exact
// semantics"), for the C++ tests: every feature recomputed from the plain list of past events
// (no store, no blocks, no binary search), so the plan's store-backed answers can be compared
// against the documented meaning. Sums use the same FieldAggregate formulas as the core, so on
// values whose sums are exact in double (multiples of 1/4, small) the answers are bitwise equal.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "features/features.h"
#include "generic.h"
#include "libfraud/fraud.h"
#include "schema/schema.h"
#include "store/temporal_store.h"

namespace reference {

// A past event as the reference sees it: the event and its label (if any).
struct Past {
    generic::OwnedEvent e;
    int label = -1;
    int64_t label_time = std::numeric_limits<int64_t>::max();
};

inline int64_t floor_mod(int64_t a, int64_t m) {
    const int64_t r = a % m;
    return r < 0 ? r + m : r;
}

inline int64_t of_value(const libfraud::FieldRef& of, const fraud_event& ev) {
    return of.role == libfraud::FieldRef::Entity ? ev.entity_id[of.index] : ev.categorical[of.index];
}
inline double value_of(const libfraud::Schema& s, const libfraud::FieldRef& f, const fraud_event& ev) {
    if (f.role == libfraud::FieldRef::Amount) return s.has_amount ? ev.amount : 0.0;  // stored as 0
    return ev.numeric[f.index];
}

inline bool passes(const libfraud::Schema& s, const libfraud::Filter& f, const fraud_event& ev) {
    using libfraud::CompareOp;
    if (f.field.role == libfraud::FieldRef::Categorical) {
        const int64_t c = ev.categorical[f.field.index];
        return c != FRAUD_CODE_MISSING && std::find(f.codes.begin(), f.codes.end(), c) != f.codes.end();
    }
    const double x = value_of(s, f.field, ev);
    if (std::isnan(x)) return false;
    switch (f.op) {
        case CompareOp::Less: return x < f.value;
        case CompareOp::LessEqual: return x <= f.value;
        case CompareOp::Greater: return x > f.value;
        case CompareOp::GreaterEqual: return x >= f.value;
        case CompareOp::Equal: return x == f.value;
        case CompareOp::NotEqual: return x != f.value;
    }
    return false;
}

inline int64_t sat_minus(int64_t t, int64_t w) {
    return t < std::numeric_limits<int64_t>::min() + w ? std::numeric_limits<int64_t>::min() : t - w;
}

// The features of q given `past` (every stored event, in append order; retention is not modelled:
// use it with an unbounded store).
inline std::vector<float> compute(const libfraud::Schema& s, const std::vector<libfraud::FeatureOp>& ops,
                                  const std::vector<Past>& past, const fraud_event& q) {
    using namespace libfraud;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const int64_t t = q.time_ms;
    std::vector<float> out;
    for (const FeatureOp& op : ops) {
        if (op.entity >= 0 && q.entity_id[op.entity] < 0) {  // absent: NaN, whatever the kind
            out.push_back(nan);
            continue;
        }
        // The entity's history before t, and whether it has any stored event at all.
        std::vector<const Past*> hist;
        bool known = false;
        if (op.entity >= 0) {
            for (const Past& p : past) {
                if (p.e.ents[op.entity] != q.entity_id[op.entity]) continue;
                known = true;
                if (p.e.ts < t) hist.push_back(&p);
            }
        }
        auto window = [&](int64_t w, int64_t off) {
            std::vector<const Past*> v;
            const int64_t hi = sat_minus(t, off), lo = sat_minus(hi, w);
            for (const Past* p : hist)
                if (p->e.ts >= lo && p->e.ts < hi) v.push_back(p);
            return v;
        };
        auto newest = [&](std::vector<const Past*> v, size_t k) {
            if (v.size() > k) v.erase(v.begin(), v.end() - static_cast<std::ptrdiff_t>(k));
            return v;
        };
        float r = nan;
        switch (op.kind) {
            case FeatureKind::Amount: r = static_cast<float>(q.amount); break;
            case FeatureKind::LogAmount: r = static_cast<float>(std::log1p(q.amount)); break;
            case FeatureKind::Numeric: r = static_cast<float>(value_of(s, op.field, q)); break;
            case FeatureKind::Categorical: {
                const int64_t c = q.categorical[op.field.index];
                if (c == FRAUD_CODE_MISSING) break;
                if (!op.has_vocabulary) {
                    r = static_cast<float>(c);
                    break;
                }
                r = static_cast<float>(op.vocabulary.size());
                for (const auto& [code, index] : op.vocabulary)
                    if (code == c) r = static_cast<float>(index);
                break;
            }
            case FeatureKind::Calendar: {
                // In 128 bits: local time may leave int64 at its ends.
                const __int128 day = 86400000, local = static_cast<__int128>(t) + __int128{s.utc_offset_seconds(t)} * 1000;
                __int128 ms = local % day;
                if (ms < 0) ms += day;
                __int128 days = ((local - ms) / day + 3) % 7;
                if (days < 0) days += 7;
                const int64_t hour = static_cast<int64_t>(ms / 3600000), dow = static_cast<int64_t>(days);
                if (op.part == CalendarPart::Hour) r = static_cast<float>(hour);
                if (op.part == CalendarPart::DayOfWeek) r = static_cast<float>(dow);
                if (op.part == CalendarPart::Weekend) r = dow >= 5 ? 1.0f : 0.0f;
                if (op.part == CalendarPart::Night) r = hour >= 22 || hour < 6 ? 1.0f : 0.0f;
                break;
            }
            case FeatureKind::Window: {
                std::vector<const Past*> w = window(op.window_ms, op.offset_ms);
                if (op.filter.present) {
                    std::vector<const Past*> kept;
                    for (const Past* p : newest(w, op.max_scan))
                        if (passes(s, op.filter, p->e.ev())) kept.push_back(p);
                    w = kept;
                }
                FieldAggregate a;
                for (const Past* p : w)
                    if (op.agg != Aggregate::Count) a.add(value_of(s, op.field, p->e.ev()));
                switch (op.agg) {
                    case Aggregate::Count: r = static_cast<float>(w.size()); break;
                    case Aggregate::Sum: r = static_cast<float>(a.sum); break;
                    case Aggregate::Mean: r = a.n ? static_cast<float>(a.sum / static_cast<double>(a.n)) : nan; break;
                    case Aggregate::Min: r = a.n ? static_cast<float>(a.min) : nan; break;
                    case Aggregate::Max: r = a.n ? static_cast<float>(a.max) : nan; break;
                    case Aggregate::Std: {
                        if (a.n < 2) break;
                        const double mean = a.sum / static_cast<double>(a.n);
                        const double var = (a.sum_sq - a.sum * mean) / static_cast<double>(a.n - 1);
                        r = static_cast<float>(std::sqrt(std::max(var, 0.0)));
                        break;
                    }
                    default: break;
                }
                break;
            }
            case FeatureKind::TimeSinceLast:
                if (!hist.empty())
                    r = static_cast<float>(static_cast<double>(static_cast<uint64_t>(t) -
                                                               static_cast<uint64_t>(hist.back()->e.ts)) / 1000.0);
                break;
            case FeatureKind::AmountVsHistory: {
                const double x = value_of(s, op.field, q);
                if (std::isnan(x) || hist.empty()) break;
                const std::vector<const Past*> w = op.window_ms ? window(op.window_ms, 0) : hist;
                FieldAggregate a;
                for (const Past* p : w) a.add(value_of(s, op.field, p->e.ev()));
                if (a.n == 0) break;
                const double mean = a.sum / static_cast<double>(a.n);
                if (op.stat == HistoryStat::RatioToMean) {
                    if (mean != 0.0) r = static_cast<float>(x / mean);  // a zero mean has no ratio
                    break;
                }
                if (a.n < 2) break;
                const double var = (a.sum_sq - a.sum * mean) / static_cast<double>(a.n - 1);
                const double min_std = 1e-6 * std::fabs(mean);
                if (var > min_std * min_std) r = static_cast<float>((x - mean) / std::sqrt(var));
                break;
            }
            case FeatureKind::Distinct: {
                std::set<int64_t> seen;
                for (const Past* p : newest(window(op.window_ms, 0), op.max_scan)) {
                    const int64_t v = of_value(op.of, p->e.ev());
                    if (v >= 0) seen.insert(v);
                }
                r = static_cast<float>(seen.size());
                break;
            }
            case FeatureKind::Novelty: {
                const int64_t v = of_value(op.of, q);
                if (hist.empty() || v < 0) break;
                r = 1.0f;
                for (const Past* p : newest(hist, op.max_scan))
                    if (of_value(op.of, p->e.ev()) == v) r = 0.0f;
                break;
            }
            case FeatureKind::Changed:
                if (!hist.empty()) r = of_value(op.of, hist.back()->e.ev()) != of_value(op.of, q) ? 1.0f : 0.0f;
                break;
            case FeatureKind::Label: {
                if (!known) {
                    r = op.agg == Aggregate::FraudRate ? nan : 0.0f;
                    break;
                }
                const std::vector<const Past*> w = newest(window(op.window_ms, op.offset_ms), op.max_scan);
                uint64_t fraud = 0, labelled = 0;
                for (const Past* p : w) {
                    if (p->label < 0 || p->label_time >= t) continue;
                    ++labelled;
                    fraud += static_cast<uint64_t>(p->label);
                }
                if (op.agg == Aggregate::FraudCount) r = static_cast<float>(fraud);
                if (op.agg == Aggregate::LabelledCount) r = static_cast<float>(labelled);
                if (op.agg == Aggregate::FraudRate && !w.empty())
                    r = static_cast<float>(static_cast<double>(fraud) / static_cast<double>(w.size()));
                break;
            }
        }
        // Saturated to float32's range, NaN kept (export/SCHEMA.md: never +/-inf).
        constexpr float kMax = std::numeric_limits<float>::max();
        out.push_back(r > kMax ? kMax : r < -kMax ? -kMax : r);
    }
    return out;
}

// Equal as the bits a model would read: NaN equals NaN, everything else bitwise.
inline bool same(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace reference
