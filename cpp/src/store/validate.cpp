#include "store/validate.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "common/error.h"

namespace libfraud {
namespace {

// Shortest decimal that reads back as the same double ("-3", "0.1", "1e+300").
std::string format_double(double v) {
    char buf[40];
    for (int precision = 15; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
}

std::string prefix(size_t i, const fraud_event& ev) {
    return "event " + std::to_string(i) + " (event_id=" + std::to_string(ev.event_id) + "): ";
}

std::string label_prefix(size_t i, const fraud_label& l) {
    return "label " + std::to_string(i) + " (event_id=" + std::to_string(l.event_id) + "): ";
}

void check_arrays(const Schema& s, const fraud_event& ev, size_t i) {
    auto missing = [&](const char* what, size_t k) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, prefix(i, ev) + what + " is NULL but the schema has " +
                                                            std::to_string(k));
    };
    if (!ev.entity_id) missing("entity_id", s.num_entities());
    if (s.num_numeric() && !ev.numeric) missing("numeric", s.num_numeric());
    if (s.num_categorical() && !ev.categorical) missing("categorical", s.num_categorical());
}

}  // namespace

std::string field_error(const Schema& s, const fraud_event& ev) {
    if (s.has_amount) {
        if (std::isnan(ev.amount)) return "amount: is NaN";
        if (std::isinf(ev.amount)) return ev.amount > 0 ? "amount: is +inf" : "amount: is -inf";
        if (ev.amount < 0) return "amount: must be >= 0, got " + format_double(ev.amount);
    }
    for (size_t e = 0; e < s.num_entities(); ++e) {
        const int64_t id = ev.entity_id[e];
        const bool optional = !s.entity_required[e];
        if (id >= 0 || (optional && id == FRAUD_ENTITY_ABSENT)) continue;
        return "entity_id[" + s.entities[e] + "]: must be >= 0" + (optional ? " or -1 (absent)" : "") + ", got " +
               std::to_string(id);
    }
    for (size_t i = 0; i < s.num_numeric(); ++i) {
        if (std::isinf(ev.numeric[i]))
            return "numeric[" + s.numeric[i] + "]: is " + (ev.numeric[i] > 0 ? "+inf" : "-inf") + " (NaN = missing)";
    }
    for (size_t i = 0; i < s.num_categorical(); ++i) {
        const int64_t c = ev.categorical[i];
        if (c < FRAUD_CODE_MISSING)
            return "categorical[" + s.categorical[i] + "]: must be >= 0 or -1 (missing), got " + std::to_string(c);
    }
    return "";
}

void validate_fields(const Schema& s, const fraud_event* events, size_t n) {
    if (n != 0 && events == nullptr)
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "events is NULL with n = " + std::to_string(n));
    for (size_t i = 0; i < n; ++i) {
        check_arrays(s, events[i], i);
        std::string err = field_error(s, events[i]);
        if (!err.empty()) throw FraudError(FRAUD_STATUS_INVALID_TRANSACTION, prefix(i, events[i]) + err);
    }
}

void validate_for_append(const TemporalStore& store, const fraud_event* events, size_t n) {
    if (n != 0 && events == nullptr)
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "events is NULL with n = " + std::to_string(n));
    std::unordered_map<int64_t, size_t> batch_ids;
    if (n > 1) batch_ids.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const fraud_event& ev = events[i];
        check_arrays(store.schema(), ev, i);
        std::string err = field_error(store.schema(), ev);
        if (!err.empty()) throw FraudError(FRAUD_STATUS_INVALID_TRANSACTION, prefix(i, ev) + err);
        if (ev.time_ms < store.watermark_ms()) {
            throw FraudError(FRAUD_STATUS_OUT_OF_ORDER, prefix(i, ev) + "time_ms " + std::to_string(ev.time_ms) +
                                                            " is older than the store's watermark " +
                                                            std::to_string(store.watermark_ms()));
        }
        if (i > 0 && ev.time_ms < events[i - 1].time_ms) {
            throw FraudError(FRAUD_STATUS_OUT_OF_ORDER, prefix(i, ev) + "time_ms " + std::to_string(ev.time_ms) +
                                                            " is older than event " + std::to_string(i - 1) + "'s " +
                                                            std::to_string(events[i - 1].time_ms) + " in the same batch");
        }
        if (store.contains_event_id(ev.event_id))
            throw FraudError(FRAUD_STATUS_DUPLICATE_TRANSACTION, prefix(i, ev) + "event_id: already in the store");
        if (n > 1) {
            auto [it, inserted] = batch_ids.emplace(ev.event_id, i);
            if (!inserted) {
                throw FraudError(FRAUD_STATUS_DUPLICATE_TRANSACTION,
                                 prefix(i, ev) + "event_id: same as event " + std::to_string(it->second) + " in the batch");
            }
        }
    }
}

void validate_labels(const TemporalStore& store, const fraud_label* labels, size_t n, const size_t* index) {
    if (n != 0 && labels == nullptr)
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "labels is NULL with n = " + std::to_string(n));
    std::unordered_map<int64_t, std::pair<size_t, int>> batch;  // event id -> (index, label)
    for (size_t k = 0; k < n; ++k) {
        const fraud_label& l = labels[k];
        const size_t i = index ? index[k] : k;
        if (l.label != 0 && l.label != 1)
            throw FraudError(FRAUD_STATUS_INVALID_LABEL, label_prefix(i, l) + "label: must be 0 or 1, got " + std::to_string(l.label));
        if (l.reserved != 0)
            throw FraudError(FRAUD_STATUS_INVALID_LABEL, label_prefix(i, l) + "reserved: must be 0");
        uint32_t row;
        if (!store.find_event(l.event_id, &row))
            throw FraudError(FRAUD_STATUS_UNKNOWN_EVENT, label_prefix(i, l) + "no such event in the store (never ingested, or evicted)");
        const EventRow ev = store.event(row);
        if (l.label_time_ms < ev.time_ms())
            throw FraudError(FRAUD_STATUS_INVALID_LABEL, label_prefix(i, l) + "label_time_ms " + std::to_string(l.label_time_ms) +
                                                             " is before the event's time_ms " + std::to_string(ev.time_ms()));
        if (ev.label() >= 0 && ev.label() != l.label)
            throw FraudError(FRAUD_STATUS_LABEL_CONFLICT, label_prefix(i, l) + "label " + std::to_string(l.label) +
                                                              " differs from the stored label " + std::to_string(ev.label()));
        auto [it, inserted] = batch.emplace(l.event_id, std::make_pair(i, static_cast<int>(l.label)));
        if (!inserted && it->second.second != l.label)
            throw FraudError(FRAUD_STATUS_LABEL_CONFLICT, label_prefix(i, l) + "label " + std::to_string(l.label) +
                                                              " differs from label " + std::to_string(it->second.first) +
                                                              " of the batch");
    }
}

}  // namespace libfraud
