// Events of any declared schema for the C++ tests: an owned event (its arrays in vectors) and
// contiguous fraud_event views of a batch, plus two non-payments schemas.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
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
