// Events of any declared schema for the C++ tests: an owned event (its arrays in vectors) and
// contiguous fraud_event views of a batch, plus two non-payments schemas.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "schema/schema.h"

namespace generic {

struct OwnedEvent {
    int64_t id = 0;
    int64_t ts = 0;
    double amount = 0;
    std::vector<int64_t> ents;
    std::vector<double> nums;
    std::vector<int64_t> cats;
    // Valid while this OwnedEvent lives unchanged.
    fraud_event ev() const {
        return fraud_event{id, ts, amount, ents.data(), nums.empty() ? nullptr : nums.data(),
                           cats.empty() ? nullptr : cats.data()};
    }
};

// Views of a batch, valid while `v` lives unchanged.
inline std::vector<fraud_event> views(const std::vector<OwnedEvent>& v) {
    std::vector<fraud_event> out;
    out.reserve(v.size());
    for (const auto& e : v) out.push_back(e.ev());
    return out;
}

inline double nan() { return std::numeric_limits<double>::quiet_NaN(); }

// Two entity types (the public card benchmarks' shape), a numeric and a categorical field, an
// amount, UTC+2 from 1e12 ms on (calendar features).
inline libfraud::Schema two_entities() {
    libfraud::Schema s;
    s.name = "two";
    s.entities = {"customer", "terminal"};
    s.entity_required = {true, false};
    s.numeric = {"risk"};
    s.categorical = {"channel"};
    s.utc_offsets = {{std::numeric_limits<int64_t>::min(), 0}, {1000000000000, 7200}};
    return s;
}

// Seven entity types (three optional), two numeric and three categorical fields, no amount.
inline libfraud::Schema seven_entities() {
    libfraud::Schema s;
    s.name = "seven";
    s.entities = {"user", "account", "device", "ip", "merchant", "email", "phone"};
    s.entity_required = {true, true, false, false, true, false, true};
    s.has_amount = false;
    s.numeric = {"score", "balance"};
    s.categorical = {"channel", "country", "brand"};
    return s;
}

}  // namespace generic

namespace generic {

// Every kind of SCHEMA.md over two_entities(): windows with every aggregate, offsets and both
// filter forms, long windows (ranges over whole blocks of the histories), recency, history stats,
// distinct / novelty / changed of an entity and of a categorical, calendar parts in the schema's
// timezone, a vocabulary, labels.
inline std::string two_entities_spec() {
    return R"({"format": "libfraud-features", "version": 1, "max_scan": 1024, "features": [
 {"name": "amount", "kind": "amount"},
 {"name": "log_amount", "kind": "log_amount"},
 {"name": "hour_of_day", "kind": "calendar", "part": "hour"},
 {"name": "day_of_week", "kind": "calendar", "part": "day_of_week"},
 {"name": "is_weekend", "kind": "calendar", "part": "weekend"},
 {"name": "is_night", "kind": "calendar", "part": "night"},
 {"name": "risk", "kind": "numeric", "field": "risk"},
 {"name": "channel", "kind": "categorical", "field": "channel", "vocabulary": [22, 11]},
 {"name": "channel_code", "kind": "categorical", "field": "channel"},
 {"name": "customer_count_1h", "kind": "window", "entity": "customer", "agg": "count", "window_ms": 3600000},
 {"name": "customer_amount_sum_1h", "kind": "window", "entity": "customer", "agg": "sum", "field": "amount", "window_ms": 3600000},
 {"name": "customer_amount_mean_24h", "kind": "window", "entity": "customer", "agg": "mean", "field": "amount", "window_ms": 86400000},
 {"name": "customer_amount_std_24h", "kind": "window", "entity": "customer", "agg": "std", "field": "amount", "window_ms": 86400000},
 {"name": "customer_amount_min_7d", "kind": "window", "entity": "customer", "agg": "min", "field": "amount", "window_ms": 604800000},
 {"name": "customer_amount_max_7d", "kind": "window", "entity": "customer", "agg": "max", "field": "amount", "window_ms": 604800000},
 {"name": "customer_amount_sum_7d", "kind": "window", "entity": "customer", "agg": "sum", "field": "amount", "window_ms": 604800000},
 {"name": "customer_amount_std_7d", "kind": "window", "entity": "customer", "agg": "std", "field": "amount", "window_ms": 604800000},
 {"name": "customer_risk_sum_7d", "kind": "window", "entity": "customer", "agg": "sum", "field": "risk", "window_ms": 604800000},
 {"name": "customer_risk_mean_7d", "kind": "window", "entity": "customer", "agg": "mean", "field": "risk", "window_ms": 604800000},
 {"name": "customer_risk_max_24h", "kind": "window", "entity": "customer", "agg": "max", "field": "risk", "window_ms": 86400000},
 {"name": "customer_count_1h_after_1h", "kind": "window", "entity": "customer", "agg": "count", "window_ms": 3600000, "offset_ms": 3600000},
 {"name": "customer_amount_sum_24h_after_2h", "kind": "window", "entity": "customer", "agg": "sum", "field": "amount", "window_ms": 86400000, "offset_ms": 7200000},
 {"name": "customer_ecom_count_7d", "kind": "window", "entity": "customer", "agg": "count", "window_ms": 604800000, "filter": {"field": "channel", "in": [22, 33]}},
 {"name": "customer_big_amount_sum_7d", "kind": "window", "entity": "customer", "agg": "sum", "field": "amount", "window_ms": 604800000, "max_scan": 16, "filter": {"field": "amount", "op": ">", "value": 100}},
 {"name": "customer_risky_count_24h", "kind": "window", "entity": "customer", "agg": "count", "window_ms": 86400000, "filter": {"field": "risk", "op": ">=", "value": 2.5}},
 {"name": "customer_notone_risk_mean_7d", "kind": "window", "entity": "customer", "agg": "mean", "field": "risk", "window_ms": 604800000, "filter": {"field": "risk", "op": "!=", "value": 1}},
 {"name": "terminal_count_24h", "kind": "window", "entity": "terminal", "agg": "count", "window_ms": 86400000},
 {"name": "terminal_amount_sum_24h", "kind": "window", "entity": "terminal", "agg": "sum", "field": "amount", "window_ms": 86400000},
 {"name": "customer_seconds_since_last", "kind": "time_since_last", "entity": "customer"},
 {"name": "terminal_seconds_since_last", "kind": "time_since_last", "entity": "terminal"},
 {"name": "customer_amount_ratio_to_mean", "kind": "amount_vs_history", "entity": "customer", "field": "amount", "stat": "ratio_to_mean", "window_ms": 0},
 {"name": "customer_amount_zscore", "kind": "amount_vs_history", "entity": "customer", "field": "amount", "stat": "zscore", "window_ms": 0},
 {"name": "customer_amount_zscore_1h", "kind": "amount_vs_history", "entity": "customer", "field": "amount", "stat": "zscore", "window_ms": 3600000},
 {"name": "customer_risk_ratio_to_mean_24h", "kind": "amount_vs_history", "entity": "customer", "field": "risk", "stat": "ratio_to_mean", "window_ms": 86400000},
 {"name": "customer_distinct_terminals_24h", "kind": "distinct", "entity": "customer", "of": {"entity": "terminal"}, "window_ms": 86400000},
 {"name": "terminal_distinct_customers_7d", "kind": "distinct", "entity": "terminal", "of": {"entity": "customer"}, "window_ms": 604800000},
 {"name": "customer_distinct_channels_7d", "kind": "distinct", "entity": "customer", "of": {"categorical": "channel"}, "window_ms": 604800000, "max_scan": 8},
 {"name": "customer_terminal_is_new", "kind": "novelty", "entity": "customer", "of": {"entity": "terminal"}},
 {"name": "customer_channel_is_new", "kind": "novelty", "entity": "customer", "of": {"categorical": "channel"}, "max_scan": 4},
 {"name": "customer_channel_changed", "kind": "changed", "entity": "customer", "of": {"categorical": "channel"}},
 {"name": "customer_terminal_changed", "kind": "changed", "entity": "customer", "of": {"entity": "terminal"}},
 {"name": "customer_fraud_count_7d", "kind": "label", "entity": "customer", "agg": "fraud_count", "window_ms": 604800000},
 {"name": "customer_fraud_rate_7d", "kind": "label", "entity": "customer", "agg": "fraud_rate", "window_ms": 604800000},
 {"name": "customer_labelled_count_7d", "kind": "label", "entity": "customer", "agg": "labelled_count", "window_ms": 604800000},
 {"name": "terminal_fraud_rate_7d_after_1h", "kind": "label", "entity": "terminal", "agg": "fraud_rate", "window_ms": 604800000, "offset_ms": 3600000},
 {"name": "terminal_fraud_count_1h", "kind": "label", "entity": "terminal", "agg": "fraud_count", "window_ms": 3600000, "max_scan": 3}
]})";
}

// The same over seven_entities() (no amount: the numeric fields are aggregated instead).
inline std::string seven_entities_spec() {
    return R"({"format": "libfraud-features", "version": 1, "max_scan": 512, "features": [
 {"name": "score", "kind": "numeric", "field": "score"},
 {"name": "balance", "kind": "numeric", "field": "balance"},
 {"name": "country", "kind": "categorical", "field": "country"},
 {"name": "hour_of_day", "kind": "calendar", "part": "hour"},
 {"name": "user_count_24h", "kind": "window", "entity": "user", "agg": "count", "window_ms": 86400000},
 {"name": "user_score_sum_24h", "kind": "window", "entity": "user", "agg": "sum", "field": "score", "window_ms": 86400000},
 {"name": "user_score_sum_30d", "kind": "window", "entity": "user", "agg": "sum", "field": "score", "window_ms": 2592000000},
 {"name": "user_score_mean_7d", "kind": "window", "entity": "user", "agg": "mean", "field": "score", "window_ms": 604800000},
 {"name": "user_balance_std_7d", "kind": "window", "entity": "user", "agg": "std", "field": "balance", "window_ms": 604800000},
 {"name": "user_balance_min_24h", "kind": "window", "entity": "user", "agg": "min", "field": "balance", "window_ms": 86400000},
 {"name": "account_balance_max_24h", "kind": "window", "entity": "account", "agg": "max", "field": "balance", "window_ms": 86400000},
 {"name": "device_count_1h", "kind": "window", "entity": "device", "agg": "count", "window_ms": 3600000},
 {"name": "email_score_sum_7d", "kind": "window", "entity": "email", "agg": "sum", "field": "score", "window_ms": 604800000},
 {"name": "phone_count_7d_after_1d", "kind": "window", "entity": "phone", "agg": "count", "window_ms": 604800000, "offset_ms": 86400000},
 {"name": "user_web_score_sum_7d", "kind": "window", "entity": "user", "agg": "sum", "field": "score", "window_ms": 604800000, "filter": {"field": "channel", "in": [1]}},
 {"name": "user_high_count_7d", "kind": "window", "entity": "user", "agg": "count", "window_ms": 604800000, "filter": {"field": "score", "op": "<=", "value": 0.5}},
 {"name": "user_seconds_since_last", "kind": "time_since_last", "entity": "user"},
 {"name": "ip_seconds_since_last", "kind": "time_since_last", "entity": "ip"},
 {"name": "user_score_zscore", "kind": "amount_vs_history", "entity": "user", "field": "score", "stat": "zscore", "window_ms": 0},
 {"name": "account_balance_ratio_to_mean_24h", "kind": "amount_vs_history", "entity": "account", "field": "balance", "stat": "ratio_to_mean", "window_ms": 86400000},
 {"name": "user_distinct_devices_7d", "kind": "distinct", "entity": "user", "of": {"entity": "device"}, "window_ms": 604800000},
 {"name": "merchant_distinct_users_24h", "kind": "distinct", "entity": "merchant", "of": {"entity": "user"}, "window_ms": 86400000},
 {"name": "user_distinct_countrys_7d", "kind": "distinct", "entity": "user", "of": {"categorical": "country"}, "window_ms": 604800000},
 {"name": "user_device_is_new", "kind": "novelty", "entity": "user", "of": {"entity": "device"}},
 {"name": "account_brand_is_new", "kind": "novelty", "entity": "account", "of": {"categorical": "brand"}},
 {"name": "user_country_changed", "kind": "changed", "entity": "user", "of": {"categorical": "country"}},
 {"name": "phone_email_changed", "kind": "changed", "entity": "phone", "of": {"entity": "email"}},
 {"name": "user_fraud_count_7d", "kind": "label", "entity": "user", "agg": "fraud_count", "window_ms": 604800000},
 {"name": "merchant_fraud_rate_24h", "kind": "label", "entity": "merchant", "agg": "fraud_rate", "window_ms": 86400000}
]})";
}

}  // namespace generic

namespace generic {

// A stream over schema s: times non-decreasing (ties included), from `start`, 0 to 2 minutes apart;
// entity type e's ids in 0 .. ids + 5e - 1 (so the first types have long histories), optional
// ones absent 1 in 5; numeric values multiples of 1/4 (sums exact in double), missing 1 in 7;
// categorical codes among 1, 11, 22, 33, missing 1 in 7; amounts multiples of 1/4 in [0, 1000)
// (0 included: it is legal).
inline std::vector<OwnedEvent> random_stream(const libfraud::Schema& s, size_t n, uint64_t seed,
                                             int64_t start = 1000000000000 - 2 * 86400000, int ids = 20,
                                             int64_t first_id = 1) {
    std::mt19937_64 rng(seed);
    std::vector<OwnedEvent> v;
    int64_t ts = start;
    const int64_t codes[] = {1, 11, 22, 33};
    for (size_t i = 0; i < n; ++i) {
        ts += static_cast<int64_t>(rng() % 3) * 60000;
        OwnedEvent e;
        e.id = first_id + static_cast<int64_t>(i);
        e.ts = ts;
        e.amount = static_cast<double>(rng() % 4000) / 4.0;
        for (size_t k = 0; k < s.num_entities(); ++k) {
            const bool absent = !s.entity_required[k] && rng() % 5 == 0;
            e.ents.push_back(absent ? -1 : static_cast<int64_t>(rng() % static_cast<uint64_t>(ids + 5 * k)));
        }
        for (size_t k = 0; k < s.num_numeric(); ++k)
            e.nums.push_back(rng() % 7 == 0 ? nan() : static_cast<double>(rng() % 24) / 4.0);
        for (size_t k = 0; k < s.num_categorical(); ++k)
            e.cats.push_back(rng() % 7 == 0 ? FRAUD_CODE_MISSING : codes[rng() % 4]);
        v.push_back(std::move(e));
    }
    return v;
}

}  // namespace generic
