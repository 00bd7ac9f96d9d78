// The payments preset for the C++ tests (and the fuzz targets): the legacy fixed layout as a schema
// (libfraud::payments_schema()), its 44 features as a feature spec JSON (export/SCHEMA.md
// "Presets", python/libfraud/presets/payments.toml), and fraud_txn -> fraud_event conversion, so
// tests written against the old fraud_txn keep their data. Header-only; no check.h dependency.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "features/features.h"
#include "libfraud/fraud.h"
#include "schema/schema.h"
#include "store/temporal_store.h"

namespace payments {

constexpr int64_t kHourMs = 3600000;
constexpr int64_t kDayMs = 24 * kHourMs;

inline const libfraud::Schema& schema() { return libfraud::payments_schema(); }

// The payments features as features.spec JSON, in the legacy order: amount, log_amount,
// hour_of_day, country, mcc; per entity (card, device, merchant, ip) and window, count and amount
// sum; seconds since last per entity; card/merchant amount vs the whole history; distinct
// devices/ips per card and cards per device/ip over distinct_window_ms; card novelty of device,
// ip, mcc; card country changed. The defaults are the preset's (1h/24h/7d, 24h, max_scan 1024);
// other windows give other names (window_label), as the old FeatureConfig did.
inline std::string spec_json(uint32_t max_scan = 1024,
                             const std::vector<int64_t>& windows_ms = {kHourMs, kDayMs, 7 * kDayMs},
                             int64_t distinct_window_ms = kDayMs) {
    std::vector<std::string> f;
    auto q = [](const std::string& s) { return "\"" + s + "\""; };
    auto entity_of = [&](const char* e) { return "{\"entity\": " + q(e) + "}"; };
    f.push_back("{\"name\": \"amount\", \"kind\": \"amount\"}");
    f.push_back("{\"name\": \"log_amount\", \"kind\": \"log_amount\"}");
    f.push_back("{\"name\": \"hour_of_day\", \"kind\": \"calendar\", \"part\": \"hour\"}");
    f.push_back("{\"name\": \"country\", \"kind\": \"categorical\", \"field\": \"country\"}");
    f.push_back("{\"name\": \"mcc\", \"kind\": \"categorical\", \"field\": \"mcc\"}");
    const char* entities[] = {"card", "device", "merchant", "ip"};
    for (const char* e : entities) {
        for (int64_t w : windows_ms) {
            const std::string label = libfraud::window_label(w);
            f.push_back("{\"name\": " + q(std::string(e) + "_count_" + label) + ", \"kind\": \"window\", \"entity\": " +
                        q(e) + ", \"agg\": \"count\", \"window_ms\": " + std::to_string(w) + "}");
            f.push_back("{\"name\": " + q(std::string(e) + "_amount_sum_" + label) +
                        ", \"kind\": \"window\", \"entity\": " + q(e) +
                        ", \"agg\": \"sum\", \"field\": \"amount\", \"window_ms\": " + std::to_string(w) + "}");
        }
    }
    for (const char* e : entities)
        f.push_back("{\"name\": " + q(std::string(e) + "_seconds_since_last") +
                    ", \"kind\": \"time_since_last\", \"entity\": " + q(e) + "}");
    auto vs = [&](const char* e, const char* stat) {
        f.push_back("{\"name\": " + q(std::string(e) + "_amount_" + stat) + ", \"kind\": \"amount_vs_history\", \"entity\": " +
                    q(e) + ", \"field\": \"amount\", \"stat\": " + q(stat) + ", \"window_ms\": 0}");
    };
    vs("card", "ratio_to_mean");
    vs("card", "zscore");
    vs("merchant", "ratio_to_mean");
    const std::string dw = std::to_string(distinct_window_ms), dl = libfraud::window_label(distinct_window_ms);
    auto distinct = [&](const char* e, const char* of, const char* plural) {
        f.push_back("{\"name\": " + q(std::string(e) + "_distinct_" + plural + "_" + dl) +
                    ", \"kind\": \"distinct\", \"entity\": " + q(e) + ", \"of\": " + entity_of(of) +
                    ", \"window_ms\": " + dw + "}");
    };
    distinct("card", "device", "devices");
    distinct("card", "ip", "ips");
    distinct("device", "card", "cards");
    distinct("ip", "card", "cards");
    f.push_back("{\"name\": \"card_device_is_new\", \"kind\": \"novelty\", \"entity\": \"card\", \"of\": " +
                entity_of("device") + "}");
    f.push_back("{\"name\": \"card_ip_is_new\", \"kind\": \"novelty\", \"entity\": \"card\", \"of\": " +
                entity_of("ip") + "}");
    f.push_back("{\"name\": \"card_mcc_is_new\", \"kind\": \"novelty\", \"entity\": \"card\", \"of\": "
                "{\"categorical\": \"mcc\"}}");
    f.push_back("{\"name\": \"card_country_changed\", \"kind\": \"changed\", \"entity\": \"card\", \"of\": "
                "{\"categorical\": \"country\"}}");
    std::string out = "{\"format\": \"libfraud-features\", \"version\": 1, \"max_scan\": " + std::to_string(max_scan) +
                      ", \"features\": [";
    for (size_t i = 0; i < f.size(); ++i) out += (i ? ", " : "") + f[i];
    return out + "]}";
}

// The store layout the payments plan needs (the amount in every history).
inline libfraud::StoreLayout layout() {
    static const std::vector<int> fields = libfraud::FeaturePlan(schema(), spec_json(), "payments: ").history_fields();
    return libfraud::StoreLayout{schema(), fields};
}

// The payments plan, bound to layout() (what a store of layout() serves).
inline libfraud::FeaturePlan plan(uint32_t max_scan = 1024) {
    libfraud::FeaturePlan p(schema(), spec_json(max_scan), "payments: ");
    p.bind(layout());
    return p;
}

inline libfraud::TemporalStore store(libfraud::StoreConfig config = {}) {
    return libfraud::TemporalStore(layout(), config);
}

// The manifest's `schema` object for the payments preset (what a bundle of it carries).
inline std::string schema_json() {
    return "{\"format\": \"libfraud-schema\", \"version\": 1, \"name\": \"payments\","
           " \"event_id\": {\"column\": \"txn_id\", \"ids\": \"int\"},"
           " \"time\": {\"column\": \"timestamp_ms\", \"unit\": \"ms\", \"timezone\": \"UTC\","
           " \"utc_offsets\": [[-9223372036854775808, 0]]},"
           " \"amount\": {\"column\": \"amount\"},"
           " \"entities\": [{\"name\": \"card\", \"column\": \"card_id\", \"ids\": \"int\", \"required\": true},"
           " {\"name\": \"device\", \"column\": \"device_id\", \"ids\": \"int\", \"required\": false},"
           " {\"name\": \"merchant\", \"column\": \"merchant_id\", \"ids\": \"int\", \"required\": true},"
           " {\"name\": \"ip\", \"column\": \"ip_id\", \"ids\": \"int\", \"required\": false}],"
           " \"numeric\": [],"
           " \"categorical\": [{\"name\": \"country\", \"column\": \"country\", \"codes\": \"int\"},"
           " {\"name\": \"mcc\", \"column\": \"mcc\", \"codes\": \"int\"}],"
           " \"label\": {\"column\": \"label\", \"time_column\": null, \"delay_ms\": 0}}";
}

inline fraud_txn txn(int64_t id, int64_t ts, double amount, int64_t card, int64_t device = 10,
                     int64_t merchant = 20, int64_t ip = 30, int32_t country = 840, int32_t mcc = 5411) {
    fraud_txn t;
    std::memset(&t, 0, sizeof t);
    t.txn_id = id;
    t.timestamp_ms = ts;
    t.amount = amount;
    t.entity_id[FRAUD_ENTITY_CARD] = card;
    t.entity_id[FRAUD_ENTITY_DEVICE] = device;
    t.entity_id[FRAUD_ENTITY_MERCHANT] = merchant;
    t.entity_id[FRAUD_ENTITY_IP] = ip;
    t.country = country;
    t.mcc = mcc;
    return t;
}

// One fraud_txn as the payments preset's fraud_event (what the C API's fraud_txn functions do):
// owns its arrays, so it neither copies nor moves; use it where it is made:
// `store.append(payments::Event(t))`.
class Event {
public:
    explicit Event(const fraud_txn& t) {
        for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) entities_[e] = t.entity_id[e];
        codes_[0] = t.country;
        codes_[1] = t.mcc;
        ev_ = fraud_event{t.txn_id, t.timestamp_ms, t.amount, entities_, nullptr, codes_};
    }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    operator const fraud_event&() const { return ev_; }
    const fraud_event& get() const { return ev_; }

private:
    int64_t entities_[FRAUD_ENTITY_COUNT];
    int64_t codes_[2];
    fraud_event ev_;
};

// A batch of fraud_txn as fraud_events (contiguous, for validate_* and StateLog::append). Owns
// its arrays; movable (the buffers move with it), not copyable.
class Events {
public:
    Events() = default;
    explicit Events(const fraud_txn* t, size_t n) : entities_(4 * n), codes_(2 * n), events_(n) {
        for (size_t i = 0; i < n; ++i) {
            for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) entities_[4 * i + e] = t[i].entity_id[e];
            codes_[2 * i] = t[i].country;
            codes_[2 * i + 1] = t[i].mcc;
            events_[i] = fraud_event{t[i].txn_id, t[i].timestamp_ms, t[i].amount, &entities_[4 * i], nullptr,
                                     &codes_[2 * i]};
        }
    }
    explicit Events(const std::vector<fraud_txn>& v) : Events(v.data(), v.size()) {}
    Events(Events&&) = default;
    Events& operator=(Events&&) = default;
    Events(const Events&) = delete;
    Events& operator=(const Events&) = delete;

    const fraud_event* data() const { return events_.data(); }
    size_t size() const { return events_.size(); }
    const fraud_event& operator[](size_t i) const { return events_[i]; }
    const fraud_event* begin() const { return events_.data(); }
    const fraud_event* end() const { return events_.data() + events_.size(); }

private:
    std::vector<int64_t> entities_, codes_;
    std::vector<fraud_event> events_;
};

}  // namespace payments
