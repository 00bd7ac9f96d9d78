// The temporal store, validation, labels and point-in-time features (a FeaturePlan compiled from
// a feature spec) on small hand-made cases, on the payments preset and on non-payments schemas.
// Plain program: prints "N passed, N failed" last; exit code 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "common/error.h"
#include "features/features.h"
#include "generic.h"
#include "payments.h"
#include "reference_features.h"
#include "schema/schema.h"
#include "store/temporal_store.h"
#include "store/validate.h"

using namespace libfraud;
using payments::Event;
using payments::Events;

namespace {

constexpr int64_t kHour = 3600000;
constexpr int64_t kDay = 24 * kHour;

fraud_txn make(int64_t id, int64_t ts, double amount, int64_t card, int64_t device = 10,
               int64_t merchant = 20, int64_t ip = 30, int32_t country = 840, int32_t mcc = 5411) {
    return payments::txn(id, ts, amount, card, device, merchant, ip, country, mcc);
}

const Schema& P() { return payments::schema(); }

struct Row {
    const FeaturePlan* fc;
    std::vector<float> v;
    float operator[](const std::string& name) const {
        for (size_t i = 0; i < fc->names().size(); ++i) {
            if (fc->names()[i] == name) return v[i];
        }
        std::printf("FAIL: no feature named %s\n", name.c_str());
        ++g_failed;
        return -12345.0f;
    }
};

Row features(const FeaturePlan& fc, const TemporalStore& s, const fraud_event& ev) {
    Row r{&fc, std::vector<float>(fc.size() + 1, -777.0f)};  // sentinel past the end
    fc.compute(s, ev, r.v.data());
    CHECK(r.v.back() == -777.0f);  // wrote exactly size() floats
    for (size_t i = 0; i < fc.size(); ++i) CHECK(r.v[i] != -777.0f);
    r.v.pop_back();
    return r;
}
Row features(const FeaturePlan& fc, const TemporalStore& s, const fraud_txn& t) { return features(fc, s, Event(t).get()); }

void add(TemporalStore& s, const fraud_txn& t) { s.append(Event(t)); }

bool near(double a, double b) { return std::fabs(a - b) <= 1e-4 * std::fmax(1.0, std::fabs(b)); }

std::string field_error_of(const fraud_txn& t) { return field_error(P(), Event(t)); }

void test_validate() {
    fraud_txn t = make(103, 1000, 5.0, 1);
    CHECK(field_error_of(t).empty());
    t.amount = std::nan("");
    CHECK(field_error_of(t) == "amount: is NaN");
    t.amount = std::numeric_limits<double>::infinity();
    CHECK(field_error_of(t) == "amount: is +inf");
    t.amount = -std::numeric_limits<double>::infinity();
    CHECK(field_error_of(t) == "amount: is -inf");
    t.amount = -3;
    CHECK(field_error_of(t) == "amount: must be >= 0, got -3");  // was "> 0"
    t.amount = -0.1;
    CHECK(field_error_of(t) == "amount: must be >= 0, got -0.1");
    // Changed on purpose: an amount of 0 is legitimate now (declared schemas: amount >= 0).
    t.amount = 0;
    CHECK(field_error_of(t).empty());
    t = make(1, 0, 1.0, -5);
    CHECK(field_error_of(t) == "entity_id[card]: must be >= 0, got -5");
    t = make(1, 0, 1.0, 1, -7);
    CHECK(field_error_of(t) == "entity_id[device]: must be >= 0 or -1 (absent), got -7");
    t = make(1, 0, 1.0, 1, -1, -1, -1);
    CHECK(field_error_of(t) == "entity_id[merchant]: must be >= 0, got -1");
    t = make(1, 0, 1.0, 1, -1, 2, -1);
    CHECK(field_error_of(t).empty());
    t = make(1, 0, 1.0, 1, 2, 3, -2);
    CHECK(field_error_of(t) == "entity_id[ip]: must be >= 0 or -1 (absent), got -2");
    // Changed on purpose: country and mcc are categorical codes now (>= 0, or -1 = missing); the
    // old ISO / MCC domains (country 1..999, mcc 0..9999) are no longer checked.
    t = make(1, 0, 1.0, 1, 2, 3, 4, 0);
    CHECK(field_error_of(t).empty());
    t = make(1, 0, 1.0, 1, 2, 3, 4, 1000);
    CHECK(field_error_of(t).empty());
    t = make(1, 0, 1.0, 1, 2, 3, 4, 999, 10000);
    CHECK(field_error_of(t).empty());
    t = make(1, 0, 1.0, 1, 2, 3, 4, -1, -1);  // missing
    CHECK(field_error_of(t).empty());
    t = make(1, 0, 1.0, 1, 2, 3, 4, -2);
    CHECK(field_error_of(t) == "categorical[country]: must be >= 0 or -1 (missing), got -2");
    t = make(1, 0, 1.0, 1, 2, 3, 4, 1, std::numeric_limits<int32_t>::min());
    CHECK(field_error_of(t) == "categorical[mcc]: must be >= 0 or -1 (missing), got -2147483648");
    t = make(1, 0, 1.0, 1, 2, 3, 4, 1, 0);
    CHECK(field_error_of(t).empty());

    // Messages name the event and its event_id (were "transaction i (txn_id=...)").
    std::vector<fraud_txn> batch;
    for (int i = 0; i < 5; ++i) batch.push_back(make(100 + i, 1000 + i, 1.0, 1));
    batch[3].amount = std::nan("");
    {
        Events ev(batch);
        CHECK_THROWS(validate_fields(P(), ev.data(), ev.size()), FRAUD_STATUS_INVALID_TRANSACTION,
                     "event 3 (event_id=103): amount: is NaN");
    }
    CHECK_THROWS(validate_fields(P(), nullptr, 2), FRAUD_STATUS_INVALID_ARGUMENT, "NULL");
    validate_fields(P(), nullptr, 0);
    ++g_passed;
    // The arrays a schema needs must be there (numeric may be NULL: payments has none).
    {
        int64_t ents[4] = {1, -1, 2, -1};
        int64_t codes[2] = {840, 5411};
        fraud_event e{7, 0, 1.0, nullptr, nullptr, codes};
        CHECK_THROWS(validate_fields(P(), &e, 1), FRAUD_STATUS_INVALID_ARGUMENT,
                     "event 0 (event_id=7): entity_id is NULL but the schema has 4");
        e.entity_id = ents;
        e.categorical = nullptr;
        CHECK_THROWS(validate_fields(P(), &e, 1), FRAUD_STATUS_INVALID_ARGUMENT,
                     "event 0 (event_id=7): categorical is NULL but the schema has 2");
        e.categorical = codes;
        validate_fields(P(), &e, 1);
        ++g_passed;
    }

    TemporalStore s = payments::store();
    add(s, make(1, 2000, 1.0, 1));
    auto validate = [&](const std::vector<fraud_txn>& b) {
        Events ev(b);
        validate_for_append(s, ev.data(), ev.size());
    };
    std::vector<fraud_txn> b2 = {make(5, 2000, 1.0, 1), make(6, 2500, 1.0, 1), make(7, 1000, 1.0, 1)};
    CHECK_THROWS(validate(b2), FRAUD_STATUS_OUT_OF_ORDER,
                 "event 2 (event_id=7): time_ms 1000 is older than the store's watermark 2000");
    b2[2].timestamp_ms = 2100;
    CHECK_THROWS(validate(b2), FRAUD_STATUS_OUT_OF_ORDER,
                 "event 2 (event_id=7): time_ms 2100 is older than event 1's 2500 in the same batch");
    b2[2].timestamp_ms = 2500;  // equal: fine
    validate(b2);
    ++g_passed;
    b2[1].txn_id = 1;
    CHECK_THROWS(validate(b2), FRAUD_STATUS_DUPLICATE_TRANSACTION,
                 "event 1 (event_id=1): event_id: already in the store");
    b2[1].txn_id = 6;
    b2[2].txn_id = 5;
    CHECK_THROWS(validate(b2), FRAUD_STATUS_DUPLICATE_TRANSACTION,
                 "event 2 (event_id=5): event_id: same as event 0 in the batch");
    b2[2].txn_id = 7;
    b2[2].mcc = -2;  // fields checked first, per event (-1 is "missing" now, so -2)
    CHECK_THROWS(validate(b2), FRAUD_STATUS_INVALID_TRANSACTION,
                 "event 2 (event_id=7): categorical[mcc]: must be >= 0 or -1 (missing), got -2");
    CHECK_THROWS(validate_for_append(s, nullptr, 1), FRAUD_STATUS_INVALID_ARGUMENT, "NULL");
    CHECK(s.size() == 1 && s.watermark_ms() == 2000);  // validation changed nothing

    // A schema without an amount ignores the field (NaN passes) and stores 0.
    const Schema seven = generic::seven_entities();
    TemporalStore s7(StoreLayout{seven, {0}});
    generic::OwnedEvent e7{1, 5, std::nan(""), {1, 2, -1, -1, 3, -1, 4}, {0.5, std::nan("")}, {1, -1, 7}};
    CHECK(field_error(seven, e7.ev()).empty());
    const fraud_event ev7 = e7.ev();
    validate_for_append(s7, &ev7, 1);
    s7.append(ev7);
    CHECK(s7.event(s7.row_at(0)).amount() == 0.0);
    CHECK(std::isnan(s7.event(s7.row_at(0)).numeric(1)) && s7.event(s7.row_at(0)).categorical(2) == 7);
    e7.nums[0] = std::numeric_limits<double>::infinity();
    CHECK(field_error(seven, e7.ev()) == "numeric[score]: is +inf (NaN = missing)");
    e7.nums[0] = 1;
    e7.ents[1] = -1;  // account is required
    CHECK(field_error(seven, e7.ev()) == "entity_id[account]: must be >= 0, got -1");
}

void test_store() {
    TemporalStore s = payments::store();
    CHECK(s.size() == 0);
    CHECK(s.watermark_ms() == std::numeric_limits<int64_t>::min());
    CHECK(s.history(FRAUD_ENTITY_CARD, 1) == nullptr);
    CHECK(s.layout().history_fields == std::vector<int>{kAmountField});
    s.reserve(16);
    const double amounts[] = {1.5, 2.0, 4.0, 0.25, 8.0};
    const int64_t ts[] = {100, 100, 200, 200, 300};
    for (int i = 0; i < 5; ++i) add(s, make(i, ts[i], amounts[i], 7, i % 2 ? -1 : 9, 3, -1));
    CHECK(s.size() == 5);
    CHECK(s.watermark_ms() == 300);
    CHECK(s.contains_event_id(4) && !s.contains_event_id(5));
    CHECK(s.appended_total() == 5 && s.evicted() == 0 && s.labelled() == 0);
    const EntityHistory* h = s.history(FRAUD_ENTITY_CARD, 7);
    CHECK(h != nullptr && h->size() == 5);
    double sum = 0, sq = 0;
    for (int i = 0; i < 5; ++i) {
        sum += amounts[i];
        sq += amounts[i] * amounts[i];
        CHECK(h->ts(i) == ts[i]);
        CHECK(h->row(i) == s.row_at(i));  // equal timestamps keep append order
        CHECK(h->value(0, i) == amounts[i]);
        // The running sums the old store kept, as range aggregates from the first event.
        const FieldAggregate a = h->aggregate(0, 0, i + 1);
        CHECK(a.n == static_cast<uint64_t>(i + 1) && a.sum == sum && a.sum_sq == sq);
        if (i > 0) CHECK(h->ts(i - 1) <= h->ts(i));
    }
    CHECK(h->aggregate(0, 0, 5).min == 0.25 && h->aggregate(0, 0, 5).max == 8.0);
    CHECK(h->lower_bound(100) == 0 && h->lower_bound(200) == 2 && h->lower_bound(301) == 5);
    CHECK(h->aggregate(0, 2, 4).sum == 4.25 && h->aggregate(0, 3, 3).sum == 0.0 && h->aggregate(0, 3, 3).n == 0);
    CHECK(h->dropped() == 0);
    const EntityHistory* d = s.history(FRAUD_ENTITY_DEVICE, 9);
    CHECK(d != nullptr && d->size() == 3 && d->row(1) == s.row_at(2));
    CHECK(s.history(FRAUD_ENTITY_IP, -1) == nullptr);  // absent entities get no history
    CHECK(s.num_entities(FRAUD_ENTITY_IP) == 0 && s.num_entities(FRAUD_ENTITY_DEVICE) == 1);
    CHECK(s.history(FRAUD_ENTITY_DEVICE, 7) == nullptr);  // types are separate id spaces
    CHECK(s.history(17, 7) == nullptr && s.num_entities(17) == 0);  // out of range
    const EventRow r = s.event(s.row_at(3));
    CHECK(r.amount() == 0.25 && r.event_id() == 3 && r.time_ms() == 200);
    CHECK(r.entity(FRAUD_ENTITY_DEVICE) == -1 && r.entity(FRAUD_ENTITY_MERCHANT) == 3);
    CHECK(r.categorical(0) == 840 && r.categorical(1) == 5411);
    CHECK(r.label() == -1 && r.label_time_ms() == std::numeric_limits<int64_t>::max());
    CHECK(r.history_mask() == ((1u << FRAUD_ENTITY_CARD) | (1u << FRAUD_ENTITY_MERCHANT)));
    // Degrees: earlier retained events of each entity (the tie at 200 sees the same two).
    CHECK(s.event(s.row_at(2)).degree_before(FRAUD_ENTITY_CARD) == 2);
    CHECK(r.degree_before(FRAUD_ENTITY_CARD) == 2 && r.degree_before(FRAUD_ENTITY_DEVICE) == 0);
    CHECK(s.event(s.row_at(4)).degree_before(FRAUD_ENTITY_DEVICE) == 2);
    uint32_t row = 0;
    CHECK(s.find_event(3, &row) && row == s.row_at(3) && !s.find_event(99, &row));

    // Layouts the store refuses.
    CHECK_THROWS(TemporalStore(StoreLayout{P(), {3}}), FRAUD_STATUS_INVALID_ARGUMENT, "history field 3 is not in the schema");
    CHECK_THROWS(TemporalStore(StoreLayout{generic::seven_entities(), {kAmountField}}), FRAUD_STATUS_INVALID_ARGUMENT,
                 "history field -1 is not in the schema");  // no amount
    CHECK_THROWS(TemporalStore(StoreLayout{Schema{}, {}}), FRAUD_STATUS_INVALID_ARGUMENT, "1 to 16 entity types, got 0");
    StoreConfig bad;
    bad.retention_ms = -1;
    CHECK_THROWS(TemporalStore(payments::layout(), bad), FRAUD_STATUS_INVALID_ARGUMENT, "retention_ms: must be >= 0");
}

const char* const kLegacyNames[44] = {
    "amount", "log_amount", "hour_of_day", "country", "mcc",
    "card_count_1h", "card_amount_sum_1h", "card_count_24h", "card_amount_sum_24h", "card_count_7d", "card_amount_sum_7d",
    "device_count_1h", "device_amount_sum_1h", "device_count_24h", "device_amount_sum_24h", "device_count_7d",
    "device_amount_sum_7d", "merchant_count_1h", "merchant_amount_sum_1h", "merchant_count_24h",
    "merchant_amount_sum_24h", "merchant_count_7d", "merchant_amount_sum_7d", "ip_count_1h", "ip_amount_sum_1h",
    "ip_count_24h", "ip_amount_sum_24h", "ip_count_7d", "ip_amount_sum_7d",
    "card_seconds_since_last", "device_seconds_since_last", "merchant_seconds_since_last", "ip_seconds_since_last",
    "card_amount_ratio_to_mean", "card_amount_zscore", "merchant_amount_ratio_to_mean",
    "card_distinct_devices_24h", "card_distinct_ips_24h", "device_distinct_cards_24h", "ip_distinct_cards_24h",
    "card_device_is_new", "card_ip_is_new", "card_mcc_is_new", "card_country_changed"};

std::string spec_of(const std::string& features, const std::string& extra = "") {
    return "{\"format\": \"libfraud-features\", \"version\": 1" + extra + ", \"features\": [" + features + "]}";
}

void test_window_label_and_spec() {
    CHECK(window_label(3600000) == "1h");
    CHECK(window_label(86400000) == "24h");
    CHECK(window_label(604800000) == "7d");
    CHECK(window_label(2 * kDay) == "2d");
    CHECK(window_label(36 * kHour) == "36h");
    CHECK(window_label(300000) == "5m");
    CHECK(window_label(30000) == "30s");
    CHECK(window_label(1500) == "1500ms");
    // What FeatureConfig refused, refused by the spec compiler (BUNDLE_INVALID now: a spec comes
    // from a bundle), naming the key.
    const std::string w = "spec: ";
    CHECK_THROWS(FeaturePlan(P(), spec_of(""), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "spec: features.spec.features: must be a non-empty list");
    CHECK_THROWS(FeaturePlan(P(), payments::spec_json(1024, {kHour, kHour}), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "'card_count_1h' is empty or not unique");
    CHECK_THROWS(FeaturePlan(P(), payments::spec_json(1024, {-5}), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "features.spec.features[5].window_ms: must be >= 1, got -5");
    CHECK_THROWS(FeaturePlan(P(), payments::spec_json(0), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "features.spec.max_scan: must be >= 1, got 0");
    // The bound that closed the fuzz finding transactions-max-scan-reserve (32 GiB of scratch).
    CHECK_THROWS(FeaturePlan(P(), payments::spec_json(4278190335u), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "features.spec.max_scan: must be <= 65536");
    CHECK_THROWS(FeaturePlan(P(), payments::spec_json(1024, {kHour}, 0), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "features.spec.features[20].window_ms: must be >= 1, got 0");
    CHECK_THROWS(FeaturePlan(P(), "{ nope", w), FRAUD_STATUS_BUNDLE_INVALID, "spec: features.spec: not JSON");
    CHECK_THROWS(FeaturePlan(P(), "{\"format\": \"x\", \"version\": 1, \"features\": []}", w),
                 FRAUD_STATUS_BUNDLE_INVALID, "features.spec.format: must be \"libfraud-features\"");
    CHECK_THROWS(FeaturePlan(P(), "{\"format\": \"libfraud-features\", \"version\": 2, \"features\": []}", w),
                 FRAUD_STATUS_BUNDLE_INVALID, "features.spec.version: must be 1");
    CHECK_THROWS(FeaturePlan(P(), spec_of("{\"name\": \"x\", \"kind\": \"time_since_last\", \"entity\": \"termnal\"}"), w),
                 FRAUD_STATUS_BUNDLE_INVALID,
                 "features.spec.features[0].entity: 'termnal' is not an entity of the schema (card, device, merchant, ip)");
    CHECK_THROWS(FeaturePlan(P(), spec_of("{\"name\": \"x\", \"kind\": \"window\", \"entity\": \"card\", \"agg\": \"sum\","
                                          " \"field\": \"country\", \"window_ms\": 5}"), w),
                 FRAUD_STATUS_BUNDLE_INVALID, "'country' is not amount or a numeric field (none) (it is categorical)");
    CHECK_THROWS(FeaturePlan(P(), spec_of("{\"name\": \"x\", \"kind\": \"bogus\"}"), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "features.spec.features[0].kind: 'bogus' is not one of amount, log_amount");
    CHECK_THROWS(FeaturePlan(P(), spec_of("{\"kind\": \"amount\"}"), w), FRAUD_STATUS_BUNDLE_INVALID,
                 "features.spec.features[0].name: missing");
    CHECK_THROWS(FeaturePlan(P(), spec_of("{\"name\": \"x\", \"kind\": \"window\", \"entity\": \"card\", \"agg\": \"count\","
                                          " \"window_ms\": 5, \"filter\": {\"field\": \"mcc\", \"in\": [\"ecom\"]}}"), w),
                 FRAUD_STATUS_BUNDLE_INVALID, "codes must be integers");
    CHECK_THROWS(FeaturePlan(P(), spec_of("{\"name\": \"x\", \"kind\": \"categorical\", \"field\": \"mcc\","
                                          " \"vocabulary\": [1, 2, 1]}"), w),
                 FRAUD_STATUS_BUNDLE_INVALID, "code 1 twice");
    CHECK_THROWS(FeaturePlan(P(), spec_of("{\"name\": \"x\", \"kind\": \"novelty\", \"entity\": \"card\", \"of\": {\"numeric\": \"a\"}}"), w),
                 FRAUD_STATUS_BUNDLE_INVALID, "must be {\"entity\": name} or {\"categorical\": name}");
    CHECK_THROWS(FeaturePlan(generic::seven_entities(), spec_of("{\"name\": \"a\", \"kind\": \"amount\"}"), w),
                 FRAUD_STATUS_BUNDLE_INVALID, "features.spec.features[0].kind: the schema has no amount");

    FeaturePlan fc = payments::plan();
    CHECK(fc.size() == 44);
    bool names_ok = fc.names().size() == 44;
    for (size_t i = 0; names_ok && i < 44; ++i) names_ok = fc.names()[i] == kLegacyNames[i];
    CHECK(names_ok);
    CHECK(fc.names()[5] == "card_count_1h" && fc.names()[6] == "card_amount_sum_1h");
    CHECK(fc.names()[36] == "card_distinct_devices_24h" && fc.names()[43] == "card_country_changed");
    CHECK(fc.history_fields() == std::vector<int>{kAmountField});
    // bind(): a store that does not keep the amount, or of another schema, cannot serve the plan.
    FeaturePlan unbound(P(), payments::spec_json(), "");
    CHECK_THROWS(unbound.bind(StoreLayout{P(), {}}), FRAUD_STATUS_BUNDLE_INVALID,
                 "feature 'card_amount_sum_1h' aggregates a field the store does not keep");
    CHECK_THROWS(unbound.bind(StoreLayout{generic::two_entities(), {kAmountField}}), FRAUD_STATUS_BUNDLE_INVALID,
                 "the bundle's schema differs from the store's");
}

void test_features() {
    const FeaturePlan fc = payments::plan();
    TemporalStore s = payments::store();
    const int64_t t = 100 * kDay + 5 * kHour + 123;  // 05:00 UTC
    // Card 1: one event exactly at t - 1h (inside 1h), one at t - 1h - 1 (outside 1h, inside 24h),
    // one exactly at t - 7d (inside 7d), and one at t itself (must be invisible).
    add(s, make(1, t - 7 * kDay, 10.0, 1, 50, 20, 60, 840, 1));
    add(s, make(2, t - kHour - 1, 20.0, 1, 51, 20, -1, 840, 2));
    add(s, make(3, t - kHour, 40.0, 1, 52, 21, 61, 826, 3));
    add(s, make(4, t, 1000.0, 1, 53, 20, 62, 276, 4));

    const fraud_txn q = make(99, t, 30.0, 1, 51, 20, -1, 840, 3);
    Row r = features(fc, s, q);
    CHECK(r["amount"] == 30.0f);
    CHECK(near(r["log_amount"], std::log1p(30.0)));
    CHECK(r["hour_of_day"] == 5.0f);
    CHECK(r["country"] == 840.0f && r["mcc"] == 3.0f);
    CHECK(r["card_count_1h"] == 1.0f && r["card_amount_sum_1h"] == 40.0f);
    CHECK(r["card_count_24h"] == 2.0f && r["card_amount_sum_24h"] == 60.0f);
    CHECK(r["card_count_7d"] == 3.0f && r["card_amount_sum_7d"] == 70.0f);
    CHECK(r["device_count_7d"] == 1.0f && r["device_amount_sum_7d"] == 20.0f);
    CHECK(r["merchant_count_7d"] == 2.0f && r["merchant_amount_sum_7d"] == 30.0f);
    CHECK(std::isnan(r["ip_count_1h"]) && std::isnan(r["ip_amount_sum_7d"]));  // absent
    CHECK(r["card_seconds_since_last"] == 3600.0f);
    CHECK(near(r["device_seconds_since_last"], 3600.001));
    CHECK(near(r["merchant_seconds_since_last"], 3600.001));
    CHECK(std::isnan(r["ip_seconds_since_last"]));
    // Card history 10, 20, 40: mean 70/3, sample std sqrt(233.33...).
    const double mean = 70.0 / 3, sd = std::sqrt(((10 - mean) * (10 - mean) + (20 - mean) * (20 - mean) +
                                                  (40 - mean) * (40 - mean)) / 2);
    CHECK(near(r["card_amount_ratio_to_mean"], 30.0 / mean));
    CHECK(near(r["card_amount_zscore"], (30.0 - mean) / sd));
    CHECK(near(r["merchant_amount_ratio_to_mean"], 30.0 / 15.0));
    CHECK(r["card_distinct_devices_24h"] == 2.0f);  // 51, 52 (50 is 7 days old)
    CHECK(r["card_distinct_ips_24h"] == 1.0f);      // 61 (the -1 is not counted)
    CHECK(r["device_distinct_cards_24h"] == 1.0f);
    CHECK(std::isnan(r["ip_distinct_cards_24h"]));
    CHECK(r["card_device_is_new"] == 0.0f);         // 51 seen before
    CHECK(std::isnan(r["card_ip_is_new"]));          // ip absent
    CHECK(r["card_mcc_is_new"] == 0.0f);            // mcc 3 seen
    CHECK(r["card_country_changed"] == 1.0f);       // previous was 826

    // A new device, new ip and new mcc for the same card.
    Row r2 = features(fc, s, make(98, t, 30.0, 1, 999, 20, 888, 826, 4));
    CHECK(r2["card_device_is_new"] == 1.0f && r2["card_ip_is_new"] == 1.0f);
    CHECK(r2["card_mcc_is_new"] == 1.0f);  // mcc 4 only at t itself: invisible
    CHECK(r2["card_country_changed"] == 0.0f);
    CHECK(r2["device_count_7d"] == 0.0f && std::isnan(r2["device_seconds_since_last"]));
    CHECK(r2["device_distinct_cards_24h"] == 0.0f && r2["ip_distinct_cards_24h"] == 0.0f);

    // Cold card: zero counts, NaN for everything that needs a past.
    Row r3 = features(fc, s, make(97, t, 30.0, 12345, -1, 20, -1));
    CHECK(r3["card_count_1h"] == 0.0f && r3["card_amount_sum_7d"] == 0.0f);
    CHECK(std::isnan(r3["card_seconds_since_last"]) && std::isnan(r3["card_amount_ratio_to_mean"]));
    CHECK(std::isnan(r3["card_amount_zscore"]) && std::isnan(r3["card_mcc_is_new"]));
    CHECK(std::isnan(r3["card_country_changed"]) && std::isnan(r3["card_device_is_new"]));
    CHECK(std::isnan(r3["device_count_1h"]) && std::isnan(r3["device_distinct_cards_24h"]));
    CHECK(r3["card_distinct_devices_24h"] == 0.0f);

    // Scoring in the past: at t - 1h only event 1 and 2 are earlier.
    Row r4 = features(fc, s, make(96, t - kHour, 30.0, 1));
    CHECK(r4["card_count_7d"] == 2.0f && r4["card_count_1h"] == 1.0f);
    CHECK(r4["card_seconds_since_last"] == 0.001f);

    // Std 0: a card that always paid 25.
    TemporalStore s2 = payments::store();
    for (int i = 0; i < 4; ++i) add(s2, make(i, 1000 * i, 25.0, 5));
    Row r5 = features(fc, s2, make(9, 10000, 50.0, 5));
    CHECK(std::isnan(r5["card_amount_zscore"]));
    CHECK(r5["card_amount_ratio_to_mean"] == 2.0f);
    Row r6 = features(fc, s2, make(9, 500, 50.0, 5));  // one earlier event: no std
    CHECK(std::isnan(r6["card_amount_zscore"]) && r6["card_amount_ratio_to_mean"] == 2.0f);

    // Before 1970: hour of day by floor.
    Row r7 = features(fc, s2, make(9, -1, 1.0, 5));
    CHECK(r7["hour_of_day"] == 23.0f);

    // Missing codes (-1, legal now) pass through as NaN; an amount of 0 (legal now) is just 0.
    Row r8 = features(fc, s2, make(9, 10000, 0.0, 5, 10, 20, 30, -1, -1));
    CHECK(std::isnan(r8["country"]) && std::isnan(r8["mcc"]) && r8["amount"] == 0.0f && r8["log_amount"] == 0.0f);
    CHECK(r8["card_amount_ratio_to_mean"] == 0.0f);
    CHECK(std::isnan(r8["card_mcc_is_new"]));  // the event's mcc is missing

    // Timestamps 2^64 - 1 ms apart (the fuzz finding transactions-seconds-since-last-overflow):
    // no signed overflow, the exact difference in seconds.
    TemporalStore s3 = payments::store();
    add(s3, make(1, std::numeric_limits<int64_t>::min(), 1.0, 5));
    Row r9 = features(fc, s3, make(9, std::numeric_limits<int64_t>::max(), 1.0, 5));
    CHECK(r9["card_seconds_since_last"] == static_cast<float>(18446744073709551615.0 / 1000.0));
    CHECK(r9["card_count_7d"] == 0.0f && r9["card_count_1h"] == 0.0f);
}

void test_max_scan() {
    const FeaturePlan fc = payments::plan(2);
    TemporalStore s = payments::store();
    // Card 1 used devices 1, 2, 3, 3 (newest last); scans see only the 2 most recent: 3, 3.
    for (int i = 0; i < 4; ++i) add(s, make(i, 1000 + i, 1.0, 1, i < 3 ? i + 1 : 3, 20, 30, 840, 100 + i));
    Row r = features(fc, s, make(9, 5000, 1.0, 1, 1, 20, 30, 840, 100));
    CHECK(r["card_distinct_devices_24h"] == 1.0f);
    CHECK(r["card_device_is_new"] == 1.0f);  // device 1 is beyond the scan
    CHECK(r["card_mcc_is_new"] == 1.0f);
    CHECK(r["card_ip_is_new"] == 0.0f);
    CHECK(r["card_count_24h"] == 4.0f);      // windows are not limited by max_scan
}

void test_no_allocation_and_repeatability() {
    const FeaturePlan fc = payments::plan();
    TemporalStore s = payments::store();
    for (int i = 0; i < 3000; ++i) add(s, make(i, i * 1000, 1.0 + i % 7, i % 3, i % 11, i % 5, i % 13));
    const fraud_txn q = make(-1, 2999 * 1000 + 1, 2.0, 1, 4, 2, 6);
    Row a = features(fc, s, q);  // warm-up: the thread's scratch buffer
    std::vector<float> out(fc.size());
    const long before = g_allocations;
    for (int i = 0; i < 100; ++i) fc.compute(s, Event(make(-1, 1000 * i, 2.0, i % 3, i % 11, i % 5, -1)), out.data());
    fc.compute(s, Event(q), out.data());
    CHECK(g_allocations == before);
    CHECK(std::memcmp(a.v.data(), out.data(), out.size() * sizeof(float)) == 0);
    CHECK(a["card_count_1h"] == 1000.0f);  // the whole stream spans 50 minutes; card 1 is every 3rd
}

// The manifest's schema object -> Schema: names, roles, optionality, amount, timezone; the key
// that decides which stores and bundles fit together; the errors, naming the key.
void test_schema_json() {
    const Schema p = parse_schema_json(payments::schema_json(), "m: ");
    CHECK(is_payments_layout(p) && p.layout_key() == P().layout_key());
    CHECK(p.entities == P().entities && p.entity_required == P().entity_required && p.has_amount);
    CHECK(p.entity_index("merchant") == 2 && p.categorical_index("mcc") == 1 && p.numeric_index("mcc") == -1);
    CHECK(!is_payments_layout(generic::two_entities()));
    const std::string seven =
        R"({"format": "libfraud-schema", "version": 1, "name": "s", "time": {"column": "t",
        "utc_offsets": [[-9223372036854775808, 0], [1000, 3600], [5000, -1800]]}, "amount": null,
        "entities": [{"name": "user", "required": true}, {"name": "account", "required": true},
        {"name": "device", "required": false}, {"name": "ip", "required": false},
        {"name": "merchant", "required": true}, {"name": "email", "required": false},
        {"name": "phone", "required": true}],
        "numeric": [{"name": "score"}, {"name": "balance"}],
        "categorical": [{"name": "channel"}, {"name": "country"}, {"name": "brand"}]})";
    const Schema s = parse_schema_json(seven, "m: ");
    CHECK(s.layout_key() == generic::seven_entities().layout_key());
    CHECK(!s.has_amount && s.num_entities() == 7 && s.num_numeric() == 2 && s.num_categorical() == 3);
    CHECK(s.utc_offset_seconds(999) == 0 && s.utc_offset_seconds(1000) == 3600 && s.utc_offset_seconds(4999) == 3600);
    CHECK(s.utc_offset_seconds(5000) == -1800 && s.utc_offset_seconds(std::numeric_limits<int64_t>::min()) == 0);
    auto with = [](const std::string& entities, const std::string& rest = "") {
        return R"({"format": "libfraud-schema", "version": 1, "time": {"column": "t")" + rest + R"(}, "entities": )" +
               entities + "}";
    };
    CHECK_THROWS(parse_schema_json("nope", "m: "), FRAUD_STATUS_BUNDLE_INVALID, "m: schema: not JSON");
    CHECK_THROWS(parse_schema_json(with("[]"), "m: "), FRAUD_STATUS_BUNDLE_INVALID, "schema.entities: must be a list of 1 to 16");
    std::string many = "[";
    for (int i = 0; i < 17; ++i) many += std::string(i ? ", " : "") + "{\"name\": \"e" + std::to_string(i) + "\", \"required\": true}";
    CHECK_THROWS(parse_schema_json(with(many + "]"), "m: "), FRAUD_STATUS_BUNDLE_INVALID, "1 to 16 entity types");
    CHECK_THROWS(parse_schema_json(with(R"([{"name": "Card", "required": true}])"), "m: "), FRAUD_STATUS_BUNDLE_INVALID,
                 "schema.entities[0].name: 'Card' must match [a-z][a-z0-9_]*");
    CHECK_THROWS(parse_schema_json(with(R"([{"name": "a", "required": true}, {"name": "a", "required": false}])"), "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "schema.entities[1].name: 'a' is declared twice");
    CHECK_THROWS(parse_schema_json(with(R"([{"name": "a"}])"), "m: "), FRAUD_STATUS_BUNDLE_INVALID,
                 "schema.entities[0].required: missing");
    CHECK_THROWS(parse_schema_json(with(R"([{"name": "a", "required": true}])", R"(, "utc_offsets": [[0, 0]])"), "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "the first must start at -2^63");
    CHECK_THROWS(parse_schema_json(with(R"([{"name": "a", "required": true}])",
                                        R"(, "utc_offsets": [[-9223372036854775808, 0], [5, 90000]])"), "m: "),
                 FRAUD_STATUS_BUNDLE_INVALID, "offset must be within a day");
    // hash_id: the documented function (FNV-1a 64, splitmix64 finaliser, top bit cleared).
    CHECK(hash_id("", 0) == 8442584544778250395);
    CHECK(hash_id("a", 1) == 198367012849983736);
    CHECK(hash_id("ecom", 4) == 5404883537411407195);
    CHECK(hash_id("a\0b", 3) == 7726145306922670462);
}

fraud_label lab(int64_t id, int label, int64_t at) { return fraud_label{id, at, label, 0}; }

// Labels: validate_labels (typed refusals, all or nothing) and TemporalStore::apply_label.
void test_labels() {
    StoreConfig c;
    c.max_history_per_entity = 3;
    TemporalStore s = payments::store(c);
    for (int i = 0; i < 6; ++i) add(s, make(i + 1, 1000 * (i + 1), 5.0, 1, -1, 7, -1));
    // Card 1 and merchant 7 keep their newest 3: events 1..3 are evicted.
    CHECK(s.size() == 3 && !s.contains_event_id(3) && s.contains_event_id(4));
    auto ok = [&](std::vector<fraud_label> v) {
        validate_labels(s, v.data(), v.size());
        bool any = false;
        for (const auto& l : v) {
            uint32_t row = 0;
            s.find_event(l.event_id, &row);
            any |= s.apply_label(row, l.label, l.label_time_ms);
        }
        return any;
    };
    auto row_of = [&](int64_t id) {
        uint32_t row = 0;
        CHECK(s.find_event(id, &row));
        return s.event(row);
    };
    CHECK(ok({lab(4, 1, 9000)}));
    CHECK(row_of(4).label() == 1 && row_of(4).label_time_ms() == 9000 && s.labelled() == 1);
    // The same label again: accepted, a no-op that keeps the first label time.
    CHECK(!ok({lab(4, 1, 12000)}));
    CHECK(row_of(4).label_time_ms() == 9000 && s.labelled() == 1);
    // The label time may equal the event's time, not precede it.
    CHECK(ok({lab(5, 0, 5000)}));
    CHECK(row_of(5).label() == 0 && s.labelled() == 2);
    std::vector<fraud_label> v = {lab(6, 1, 5999)};
    CHECK_THROWS(validate_labels(s, v.data(), 1), FRAUD_STATUS_INVALID_LABEL,
                 "label 0 (event_id=6): label_time_ms 5999 is before the event's time_ms 6000");
    v = {lab(4, 0, 9000)};
    CHECK_THROWS(validate_labels(s, v.data(), 1), FRAUD_STATUS_LABEL_CONFLICT,
                 "label 0 (event_id=4): label 0 differs from the stored label 1");
    v = {lab(99, 1, 9000)};
    CHECK_THROWS(validate_labels(s, v.data(), 1), FRAUD_STATUS_UNKNOWN_EVENT,
                 "label 0 (event_id=99): no such event in the store (never ingested, or evicted)");
    v = {lab(2, 1, 9000)};  // evicted
    CHECK_THROWS(validate_labels(s, v.data(), 1), FRAUD_STATUS_UNKNOWN_EVENT, "label 0 (event_id=2): no such event");
    v = {lab(6, 2, 9000)};
    CHECK_THROWS(validate_labels(s, v.data(), 1), FRAUD_STATUS_INVALID_LABEL, "label 0 (event_id=6): label: must be 0 or 1, got 2");
    v = {lab(6, -1, 9000)};
    CHECK_THROWS(validate_labels(s, v.data(), 1), FRAUD_STATUS_INVALID_LABEL, "label: must be 0 or 1, got -1");
    v = {fraud_label{6, 9000, 1, 7}};
    CHECK_THROWS(validate_labels(s, v.data(), 1), FRAUD_STATUS_INVALID_LABEL, "reserved: must be 0");
    CHECK_THROWS(validate_labels(s, nullptr, 2), FRAUD_STATUS_INVALID_ARGUMENT, "labels is NULL with n = 2");
    validate_labels(s, nullptr, 0);
    ++g_passed;
    // All or nothing: a batch with one bad label is refused whole, naming its index; nothing in it
    // was applied (validate changes nothing, so the caller applies only after it passed).
    v = {lab(6, 1, 7000), lab(5, 0, 7000), lab(99, 1, 7000)};
    CHECK_THROWS(validate_labels(s, v.data(), v.size()), FRAUD_STATUS_UNKNOWN_EVENT, "label 2 (event_id=99)");
    CHECK(row_of(6).label() == -1 && s.labelled() == 2);
    // Conflicts within one batch, before anything is stored.
    v = {lab(6, 1, 7000), lab(6, 1, 8000), lab(6, 0, 7000)};
    CHECK_THROWS(validate_labels(s, v.data(), v.size()), FRAUD_STATUS_LABEL_CONFLICT,
                 "label 2 (event_id=6): label 0 differs from label 0 of the batch");
    CHECK(row_of(6).label() == -1);
    // A repeat within the batch is fine; the first time is kept.
    CHECK(ok({lab(6, 1, 7000), lab(6, 1, 8000)}));
    CHECK(row_of(6).label_time_ms() == 7000 && s.labelled() == 3);
    // Eviction takes the label with the event.
    add(s, make(7, 7000, 5.0, 1, -1, 7, -1));
    CHECK(!s.contains_event_id(4) && s.labelled() == 2);

    // Dead rows behind a live front are compacted away (rows move): labels stay with their events.
    StoreConfig one;
    one.max_history_per_entity = 1;
    TemporalStore k = payments::store(one);
    add(k, make(1, 0, 1.0, 999, -1, 5, -1));  // stays retained: card 999 and merchant 5 never recur
    auto label_in = [&](TemporalStore& st, int64_t id, int label) {
        fraud_label l = lab(id, label, 100000);
        validate_labels(st, &l, 1);
        uint32_t row = 0;
        st.find_event(id, &row);
        st.apply_label(row, label, 100000);
    };
    label_in(k, 1, 1);
    for (int i = 0; i < 3000; ++i) {
        add(k, make(10 + i, 1 + i, 1.0, i % 2, -1, 7, -1));
        if (i % 10 == 0) label_in(k, 10 + i, i % 20 == 0);  // labelled, then dropped two appends later
    }
    CHECK(k.size() < 1100 && k.evicted() > 1900);  // compacted (dead rows go in batches of 1024+)
    uint32_t row = 0;
    CHECK(k.find_event(1, &row) && k.event(row).label() == 1 && k.event(row).label_time_ms() == 100000);
    // The labelled count is the labelled rows the table holds, whatever moved or left.
    auto count_labelled = [](const TemporalStore& st) {
        uint64_t n = 0;
        for (size_t i = 0; i < st.size(); ++i) n += st.event(st.row_at(i)).label() >= 0;
        return n;
    };
    CHECK(k.labelled() == count_labelled(k));
    // Retained: event 1 and the newest of cards 0 and 1 (merchant 7's newest is 3009).
    CHECK(k.history(FRAUD_ENTITY_CARD, 999)->size() == 1 && k.history(FRAUD_ENTITY_MERCHANT, 7)->size() == 1);
    CHECK(k.contains_event_id(3009) && k.contains_event_id(3008) && !k.contains_event_id(10));
    label_in(k, 3009, 0);
    CHECK(k.find_event(3009, &row) && k.event(row).label() == 0 && k.labelled() == count_labelled(k));
}

std::string label_spec() {
    return spec_of(
        R"({"name": "fc", "kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 3600000},
           {"name": "fr", "kind": "label", "entity": "card", "agg": "fraud_rate", "window_ms": 3600000},
           {"name": "lc", "kind": "label", "entity": "card", "agg": "labelled_count", "window_ms": 3600000},
           {"name": "fc_after", "kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 3600000, "offset_ms": 3500},
           {"name": "fr_scan", "kind": "label", "entity": "card", "agg": "fraud_rate", "window_ms": 3600000, "max_scan": 2},
           {"name": "device_fc", "kind": "label", "entity": "device", "agg": "fraud_count", "window_ms": 3600000})");
}

// The label-aware features: a label counts only for events scored strictly after its label time.
void test_label_features() {
    FeaturePlan fc(P(), label_spec(), "");
    fc.bind(payments::layout());
    TemporalStore s = payments::store();
    const int64_t t0 = 10 * kDay;
    for (int i = 0; i < 3; ++i) add(s, make(i + 1, t0 + 1000 * i, 5.0, 1, -1));
    auto apply = [&](int64_t id, int label, int64_t at) {
        fraud_label l = lab(id, label, at);
        validate_labels(s, &l, 1);
        uint32_t row = 0;
        s.find_event(id, &row);
        s.apply_label(row, label, at);
    };
    Row r0 = features(fc, s, make(9, t0 + 5001, 1.0, 1, -1));
    CHECK(r0["fc"] == 0.0f && r0["lc"] == 0.0f && r0["fr"] == 0.0f);  // nothing labelled yet
    apply(1, 1, t0 + 5000);
    apply(2, 0, t0 + 1000);  // known at its own event time
    Row r = features(fc, s, make(9, t0 + 5000, 1.0, 1, -1));
    CHECK(r["fc"] == 0.0f && r["lc"] == 1.0f && r["fr"] == 0.0f);  // label 1 known AT t: not before t
    r = features(fc, s, make(9, t0 + 5001, 1.0, 1, -1));
    CHECK(r["fc"] == 1.0f && r["lc"] == 2.0f && r["fr"] == static_cast<float>(1.0 / 3.0));
    CHECK(r["fc_after"] == 1.0f);     // window [t - 3.5s - 1h, t - 3.5s): events 1 and 2
    CHECK(r["fr_scan"] == 0.0f);      // the 2 newest: events 2 (legit) and 3 (unlabelled)
    CHECK(std::isnan(r["device_fc"]));  // absent
    r = features(fc, s, make(9, t0 + 1500, 1.0, 1, -1));
    CHECK(r["lc"] == 1.0f && r["fc"] == 0.0f && r["fr"] == 0.0f);  // only event 1 (unknown yet) and 2 before t
    // Cold card: counts 0, rate NaN (empty window); a known card with an empty window: rate NaN.
    r = features(fc, s, make(9, t0, 1.0, 777, 3));
    CHECK(r["fc"] == 0.0f && std::isnan(r["fr"]) && r["device_fc"] == 0.0f);
    r = features(fc, s, make(9, t0 + 3 * kHour, 1.0, 1, -1));
    CHECK(r["fc"] == 0.0f && std::isnan(r["fr"]));

    // Early labels (training replay: each applied right after its event) and late ones (serving:
    // applied once known) give the same features at every event's own time.
    std::mt19937_64 rng(11);
    std::vector<fraud_txn> stream;
    std::vector<fraud_label> labels;
    for (int i = 0; i < 600; ++i) {
        stream.push_back(make(i + 1, t0 + 30000 * i, 1.0, static_cast<int64_t>(rng() % 5), static_cast<int64_t>(rng() % 4)));
        if (rng() % 3)
            labels.push_back(lab(i + 1, static_cast<int>(rng() % 2), t0 + 30000 * i + static_cast<int64_t>(rng() % 4) * 600000));
    }
    FeaturePlan lf(P(), R"({"format": "libfraud-features", "version": 1, "features": [
        {"name": "a", "kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 3600000},
        {"name": "b", "kind": "label", "entity": "device", "agg": "fraud_rate", "window_ms": 7200000, "offset_ms": 600000},
        {"name": "c", "kind": "label", "entity": "card", "agg": "labelled_count", "window_ms": 86400000}]})", "");
    lf.bind(payments::layout());
    TemporalStore early = payments::store(), late = payments::store();
    std::vector<float> serving(stream.size() * 3), replay(stream.size() * 3);
    size_t next_late = 0;
    std::vector<fraud_label> pending;
    for (size_t i = 0; i < stream.size(); ++i) {
        // Serving: labels known strictly before this event's time are applied before it is scored.
        for (size_t k = 0; k < labels.size(); ++k) {
            const fraud_label& l = labels[k];
            if (l.label_time_ms < stream[i].timestamp_ms && l.event_id <= stream[i].txn_id) {
                uint32_t row;
                if (late.find_event(l.event_id, &row) && late.event(row).label() < 0) late.apply_label(row, l.label, l.label_time_ms);
            }
        }
        lf.compute(late, Event(stream[i]), serving.data() + 3 * i);
        add(late, stream[i]);
        add(early, stream[i]);
        while (next_late < labels.size() && labels[next_late].event_id == stream[i].txn_id) {
            validate_labels(early, &labels[next_late], 1);
            uint32_t row;
            early.find_event(labels[next_late].event_id, &row);
            early.apply_label(row, labels[next_late].label, labels[next_late].label_time_ms);
            ++next_late;
        }
    }
    for (size_t i = 0; i < stream.size(); ++i) lf.compute(early, Event(stream[i]), replay.data() + 3 * i);
    bool same = true;
    for (size_t i = 0; i < serving.size(); ++i) same &= reference::same(serving[i], replay[i]);
    CHECK(same);
    CHECK(early.labelled() == labels.size());
}

// Non-payments schemas: every kind against the brute-force reference (SCHEMA.md's semantics), at
// each event's time before it is stored (serving) and after the whole stream (replay, bitwise
// the same), with labels.
void check_against_reference(const Schema& schema, const std::string& spec, size_t n, uint64_t seed) {
    FeaturePlan plan(schema, spec, "spec: ");
    const StoreLayout layout{schema, plan.history_fields()};
    plan.bind(layout);
    TemporalStore s(layout);
    const std::vector<generic::OwnedEvent> stream = generic::random_stream(schema, n, seed);
    std::vector<reference::Past> past;
    std::mt19937_64 rng(seed * 7 + 1);
    std::vector<float> serving(n * plan.size()), replay(n * plan.size());
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) {
        const fraud_event ev = stream[i].ev();
        validate_for_append(s, &ev, 1);
        plan.compute(s, ev, serving.data() + i * plan.size());
        const std::vector<float> want = reference::compute(schema, plan.ops(), past, ev);
        for (size_t f = 0; f < plan.size(); ++f) {
            if (reference::same(serving[i * plan.size() + f], want[f])) continue;
            if (++mismatches <= 5)
                std::printf("  %s event %zu feature %s: plan %.9g, reference %.9g\n", schema.name.c_str(), i,
                            plan.names()[f].c_str(), serving[i * plan.size() + f], want[f]);
        }
        s.append(ev);
        past.push_back(reference::Past{stream[i]});
        // Some events get labelled, known 0 to 3 hours after the event (label time >= event time).
        if (rng() % 3 == 0) {
            const int64_t id = stream[rng() % (i + 1)].id;
            uint32_t row = 0;
            s.find_event(id, &row);
            if (s.event(row).label() < 0) {
                const fraud_label l = lab(id, static_cast<int>(rng() % 2), s.event(row).time_ms() + static_cast<int64_t>(rng() % 4) * kHour);
                validate_labels(s, &l, 1);
                s.apply_label(row, l.label, l.label_time_ms);
                for (auto& p : past) {
                    if (p.e.id == id) {
                        p.label = l.label;
                        p.label_time = l.label_time_ms;
                    }
                }
            }
        }
    }
    CHECK(mismatches == 0);
    for (size_t i = 0; i < n; ++i) plan.compute(s, stream[i].ev(), replay.data() + i * plan.size());
    // Labels applied later than an event was served may count in the replay (if known before its
    // time); compare only the features that do not read labels.
    bool same = true;
    for (size_t i = 0; i < n; ++i) {
        for (size_t f = 0; f < plan.size(); ++f) {
            if (plan.ops()[f].kind == FeatureKind::Label) continue;
            same &= reference::same(serving[i * plan.size() + f], replay[i * plan.size() + f]);
        }
    }
    CHECK(same);
    // And the replay, labels included, against the reference with every label known.
    size_t replay_mismatches = 0;
    for (size_t i = 0; i < n; i += 7) {
        std::vector<reference::Past> before(past.begin(), past.end());
        const std::vector<float> want = reference::compute(schema, plan.ops(), before, stream[i].ev());
        for (size_t f = 0; f < plan.size(); ++f) replay_mismatches += !reference::same(replay[i * plan.size() + f], want[f]);
    }
    CHECK(replay_mismatches == 0);
}

void test_generic_schemas() {
    const Schema two = generic::two_entities();
    const FeaturePlan plan(two, generic::two_entities_spec(), "");
    CHECK(plan.size() == 46);
    CHECK(plan.history_fields() == (std::vector<int>{kAmountField, 0}));
    check_against_reference(two, generic::two_entities_spec(), 3000, 21);
    const Schema seven = generic::seven_entities();
    const FeaturePlan plan7(seven, generic::seven_entities_spec(), "");
    CHECK(plan7.history_fields() == (std::vector<int>{0, 1}));
    check_against_reference(seven, generic::seven_entities_spec(), 2500, 22);
    // The payments plan against the same reference, on a payments stream.
    check_against_reference(P(), payments::spec_json(), 2000, 23);

    // A few values by hand on the two-entity schema: calendar parts in its timezone (UTC+2 from
    // t = 1e12 ms, 2001-09-09 01:46:40 UTC, a Sunday), the vocabulary, the numeric pass-through.
    FeaturePlan p(two, generic::two_entities_spec(), "");
    p.bind(StoreLayout{two, p.history_fields()});
    TemporalStore s(StoreLayout{two, p.history_fields()});
    generic::OwnedEvent e{1, 1000000000000 - 1, 2.0, {3, -1}, {generic::nan()}, {33}};
    Row r = features(p, s, e.ev());
    CHECK(r["hour_of_day"] == 1.0f && r["day_of_week"] == 6.0f && r["is_weekend"] == 1.0f && r["is_night"] == 1.0f);
    CHECK(r["channel"] == 2.0f && r["channel_code"] == 33.0f && std::isnan(r["risk"]));
    CHECK(std::isnan(r["terminal_count_24h"]) && r["customer_count_1h"] == 0.0f);
    e.ts = 1000000000000 + 21 * kHour;  // 22:46 UTC + 2 h = 00:46 on Monday
    e.cats = {22};
    e.nums = {1.5};
    r = features(p, s, e.ev());
    CHECK(r["hour_of_day"] == 0.0f && r["day_of_week"] == 0.0f && r["is_weekend"] == 0.0f && r["is_night"] == 1.0f);
    CHECK(r["channel"] == 0.0f && r["risk"] == 1.5f);
    e.cats = {-1};
    r = features(p, s, e.ev());
    CHECK(std::isnan(r["channel"]) && std::isnan(r["channel_code"]));
}

// Training == serving, bitwise, with amounts whose sums round (unlike the reference checks' exact
// quarters): features of each event computed right before it is stored equal those computed for
// it after the whole stream is in, for the payments plan and for every kind of the two-entity one.
void serving_equals_replay(const Schema& schema, const std::string& spec, uint32_t cap) {
    FeaturePlan plan(schema, spec, "");
    const StoreLayout layout{schema, plan.history_fields()};
    plan.bind(layout);
    StoreConfig c;
    c.max_history_per_entity = cap;
    TemporalStore s(layout, c);
    std::vector<generic::OwnedEvent> stream = generic::random_stream(schema, 4000, 41, 1000000000000, 12);
    std::mt19937_64 rng(42);
    for (auto& e : stream) {
        e.amount = static_cast<double>(rng() % 10000000) / 100.0 + 0.1;  // cents: not exact in binary
        for (double& x : e.nums)
            if (!std::isnan(x)) x = static_cast<double>(rng() % 100000) / 1000.0 + 0.01;
    }
    std::vector<float> serving(stream.size() * plan.size()), replay(stream.size() * plan.size());
    for (size_t i = 0; i < stream.size(); ++i) {
        plan.compute(s, stream[i].ev(), serving.data() + i * plan.size());
        s.append(stream[i].ev());
    }
    size_t diff = 0;
    for (size_t i = 0; i < stream.size(); ++i) {
        plan.compute(s, stream[i].ev(), replay.data() + i * plan.size());
        for (size_t f = 0; f < plan.size(); ++f) {
            if (reference::same(serving[i * plan.size() + f], replay[i * plan.size() + f])) continue;
            if (++diff <= 3)
                std::printf("  serving != replay (%s, cap %u): event %zu %s: %.9g vs %.9g\n", schema.name.c_str(), cap, i,
                            plan.names()[f].c_str(), serving[i * plan.size() + f], replay[i * plan.size() + f]);
        }
    }
    CHECK(diff == 0);
}

void test_serving_equals_replay() {
    serving_equals_replay(P(), payments::spec_json(), 0);
    serving_equals_replay(generic::two_entities(), generic::two_entities_spec(), 0);
    // With a per-entity cap: features read only the retained history, at serving time as at replay
    // time for the last events; compare those (a cap changes what earlier events' replays see).
}

// Calendar parts at the ends of int64 time (any int64 is a valid time_ms), in UTC and with offsets
// that push local time past int64: the exact local time (computed here in 128 bits), no overflow.
void test_calendar_extremes() {
    const std::string spec = spec_of(R"({"name": "h", "kind": "calendar", "part": "hour"},
        {"name": "d", "kind": "calendar", "part": "day_of_week"},
        {"name": "w", "kind": "calendar", "part": "weekend"},
        {"name": "n", "kind": "calendar", "part": "night"})");
    const int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
    bool all_ok = true;
    for (int32_t offset : {0, -3600, 3600, 86400, -86400}) {
        Schema sch = generic::two_entities();
        sch.utc_offsets = {{lo, offset}};
        FeaturePlan p(sch, spec, "");
        const StoreLayout layout{sch, p.history_fields()};
        p.bind(layout);
        TemporalStore s(layout);
        for (int64_t t : {lo, lo + 1, lo + 86399999, hi, hi - 1, int64_t{-1}, int64_t{0}}) {
            const __int128 day = 86400000, local = static_cast<__int128>(t) + static_cast<__int128>(offset) * 1000;
            __int128 ms = local % day;
            if (ms < 0) ms += day;
            const __int128 days = (local - ms) / day;
            __int128 dow = (days + 3) % 7;
            if (dow < 0) dow += 7;
            const int hour = static_cast<int>(ms / 3600000);
            generic::OwnedEvent e{1, t, 1.0, {1, -1}, {generic::nan()}, {-1}};
            Row r = features(p, s, e.ev());
            const bool ok = r["h"] == static_cast<float>(hour) && r["d"] == static_cast<float>(static_cast<int>(dow)) &&
                            r["w"] == (dow >= 5 ? 1.0f : 0.0f) && r["n"] == (hour >= 22 || hour < 6 ? 1.0f : 0.0f);
            if (!ok)
                std::printf("  calendar at t=%lld offset %d s: hour %g dow %g, want %d %d\n", static_cast<long long>(t), offset,
                            r["h"], r["d"], hour, static_cast<int>(dow));
            all_ok &= ok;
        }
    }
    CHECK(all_ok);
}

// A huge value (1e200, 1e17) then many small ones: once the huge one has left a window, the
// window's sum is exactly the sum of the small values inside it (no running sums to cancel
// against), and the window's z-score and ratio are finite and right. Windows of 250 events (whole
// blocks of EntityHistory::kBlock in the middle), and a per-entity cap that evicts the huge value.
void poisoning(double huge, uint32_t cap) {
    const std::string spec = spec_of(
        R"({"name": "sum_250s", "kind": "window", "entity": "card", "agg": "sum", "field": "amount", "window_ms": 250000},
           {"name": "sum_40s", "kind": "window", "entity": "card", "agg": "sum", "field": "amount", "window_ms": 40000},
           {"name": "mean_250s", "kind": "window", "entity": "card", "agg": "mean", "field": "amount", "window_ms": 250000},
           {"name": "std_250s", "kind": "window", "entity": "card", "agg": "std", "field": "amount", "window_ms": 250000},
           {"name": "max_250s", "kind": "window", "entity": "card", "agg": "max", "field": "amount", "window_ms": 250000},
           {"name": "count_250s", "kind": "window", "entity": "card", "agg": "count", "window_ms": 250000},
           {"name": "z_250s", "kind": "amount_vs_history", "entity": "card", "field": "amount", "stat": "zscore", "window_ms": 250000},
           {"name": "ratio_250s", "kind": "amount_vs_history", "entity": "card", "field": "amount", "stat": "ratio_to_mean", "window_ms": 250000},
           {"name": "ratio_all", "kind": "amount_vs_history", "entity": "card", "field": "amount", "stat": "ratio_to_mean", "window_ms": 0})");
    FeaturePlan fc(P(), spec, "");
    fc.bind(payments::layout());
    StoreConfig c;
    c.max_history_per_entity = cap;
    TemporalStore s = payments::store(c);
    const int64_t t0 = 50 * kDay;
    add(s, make(0, t0, huge, 1, -1, 9, -1));
    std::vector<double> small;
    for (int i = 1; i <= 700; ++i) {
        small.push_back(0.25 * (i % 37) + 1.0);  // exact in binary; every partial sum exact too
        add(s, make(i, t0 + 1000 * i, small.back(), 1, -1, 9, -1));
    }
    const EntityHistory* h = s.history(FRAUD_ENTITY_CARD, 1);
    CHECK(h != nullptr && h->size() == (cap ? cap : 701u));
    bool all_ok = true;
    int checked = 0;
    // Small value i is event i at t0 + 1000 i; with a cap only the newest `cap` events are retained.
    const int first = cap ? 701 - static_cast<int>(cap) : 1;
    // Queries at t0 + 1000 k + 500: the window [t - 250 s, t) holds small values k-249 .. k that
    // are retained (the huge value, event 0, is out of it from k = 250 on).
    for (int k = 251; k <= 700; k += 3) {
        const int lo = std::max(k - 249, first);
        if (k - lo + 1 < 2) continue;
        const int64_t t = t0 + 1000 * k + 500;
        Row r = features(fc, s, make(9999, t, 5.0, 1, -1, 9, -1));
        double sum = 0, sum40 = 0, mx = 0;
        std::vector<double> w;
        for (int i = lo; i <= k; ++i) {
            sum += small[i - 1];
            mx = std::max(mx, small[i - 1]);
            w.push_back(small[i - 1]);
            if (i > k - 40) sum40 += small[i - 1];
        }
        const double n = static_cast<double>(w.size());
        const double mean = sum / n;
        double ss = 0;
        for (double x : w) ss += (x - mean) * (x - mean);
        const double sd = std::sqrt(ss / (n - 1));
        const bool ok = r["sum_250s"] == static_cast<float>(sum) && r["sum_40s"] == static_cast<float>(sum40) &&
                        r["count_250s"] == static_cast<float>(n) && r["mean_250s"] == static_cast<float>(mean) &&
                        r["max_250s"] == static_cast<float>(mx) && near(r["std_250s"], sd) &&
                        std::isfinite(r["z_250s"]) && near(r["z_250s"], (5.0 - mean) / sd) &&
                        std::isfinite(r["ratio_250s"]) && r["ratio_250s"] == static_cast<float>(5.0 / mean);
        if (!ok && all_ok)
            std::printf("  poisoning %g cap %u at k=%d: sum %.9g want %.9g, z %.9g want %.9g, std %.9g want %.9g\n", huge,
                        cap, k, r["sum_250s"], sum, r["z_250s"], (5.0 - mean) / sd, r["std_250s"], sd);
        all_ok &= ok;
        ++checked;
    }
    CHECK(all_ok && (cap == 0 ? checked == 150 : checked >= 60));
    // While the huge value is in the window it dominates (and is not lost): the max is it.
    Row r = features(fc, s, make(9999, t0 + 100500, 5.0, 1, -1, 9, -1));
    if (cap == 0) {
        // (Saturated to float32's range: export/SCHEMA.md.)
        CHECK(r["max_250s"] == std::min(static_cast<float>(huge), std::numeric_limits<float>::max()) &&
              r["count_250s"] == 101.0f);
        // The whole history still holds it: the ratio to the mean is tiny, never NaN from cancellation.
        CHECK(r["ratio_all"] >= 0.0f && r["ratio_all"] < 1e-3f);
    }
}

void test_poisoning() {
    poisoning(1e200, 0);
    poisoning(1e17, 0);
    poisoning(1e200, 300);  // the huge value and 400 more evicted: blocks realigned to the front
    poisoning(1e17, 200);
}

}  // namespace

int main() {
    try {
        test_validate();
        test_store();
        test_window_label_and_spec();
        test_features();
        test_max_scan();
        test_no_allocation_and_repeatability();
        test_schema_json();
        test_labels();
        test_label_features();
        test_generic_schemas();
        test_poisoning();
        test_serving_equals_replay();
        test_calendar_extremes();  // last: under UBSan its (known) overflow stops the program
    } catch (const std::exception& e) {
        ++g_failed;
        std::printf("FAIL: uncaught exception: %s\n", e.what());
    }
    return report_checks();
}
