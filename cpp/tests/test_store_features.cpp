// The temporal store, validation and point-in-time features on small hand-made cases.
// Plain program: prints "N passed, N failed" last; exit code 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "common/error.h"
#include "features/features.h"
#include "store/temporal_store.h"
#include "store/validate.h"

using namespace libfraud;

namespace {

// Runs fn, expecting FraudError with this status and a message containing `needle`.
constexpr int64_t kHour = 3600000;
constexpr int64_t kDay = 24 * kHour;

fraud_txn make(int64_t id, int64_t ts, double amount, int64_t card, int64_t device = 10,
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

struct Row {
    const FeatureComputer* fc;
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

Row features(const FeatureComputer& fc, const TemporalStore& s, const fraud_txn& t) {
    Row r{&fc, std::vector<float>(fc.size() + 1, -777.0f)};  // sentinel past the end
    fc.compute(s, t, r.v.data());
    CHECK(r.v.back() == -777.0f);  // wrote exactly size() floats
    for (size_t i = 0; i < fc.size(); ++i) CHECK(r.v[i] != -777.0f);
    r.v.pop_back();
    return r;
}

bool near(double a, double b) { return std::fabs(a - b) <= 1e-4 * std::fmax(1.0, std::fabs(b)); }

void test_validate() {
    fraud_txn t = make(103, 1000, 5.0, 1);
    CHECK(field_error(t).empty());
    t.amount = std::nan("");
    CHECK(field_error(t) == "amount: is NaN");
    t.amount = std::numeric_limits<double>::infinity();
    CHECK(field_error(t) == "amount: is +inf");
    t.amount = -3;
    CHECK(field_error(t) == "amount: must be > 0, got -3");
    t.amount = 0;
    CHECK(field_error(t) == "amount: must be > 0, got 0");
    t = make(1, 0, 1.0, -5);
    CHECK(field_error(t) == "entity_id[card]: must be >= 0, got -5");
    t = make(1, 0, 1.0, 1, -7);
    CHECK(field_error(t) == "entity_id[device]: must be >= 0 or -1 (absent), got -7");
    t = make(1, 0, 1.0, 1, -1, -1, -1);
    CHECK(field_error(t) == "entity_id[merchant]: must be >= 0, got -1");
    t = make(1, 0, 1.0, 1, -1, 2, -1);
    CHECK(field_error(t).empty());
    t = make(1, 0, 1.0, 1, 2, 3, -2);
    CHECK(field_error(t) == "entity_id[ip]: must be >= 0 or -1 (absent), got -2");
    t = make(1, 0, 1.0, 1, 2, 3, 4, 0);
    CHECK(field_error(t) == "country: must be in 1..999, got 0");
    t = make(1, 0, 1.0, 1, 2, 3, 4, 1000);
    CHECK(field_error(t) == "country: must be in 1..999, got 1000");
    t = make(1, 0, 1.0, 1, 2, 3, 4, 999, 10000);
    CHECK(field_error(t) == "mcc: must be in 0..9999, got 10000");
    t = make(1, 0, 1.0, 1, 2, 3, 4, 1, 0);
    CHECK(field_error(t).empty());

    std::vector<fraud_txn> batch;
    for (int i = 0; i < 5; ++i) batch.push_back(make(100 + i, 1000 + i, 1.0, 1));
    batch[3].amount = std::nan("");
    CHECK_THROWS(validate_fields(batch.data(), batch.size()), FRAUD_STATUS_INVALID_TRANSACTION,
                 "transaction 3 (txn_id=103): amount: is NaN");
    CHECK_THROWS(validate_fields(nullptr, 2), FRAUD_STATUS_INVALID_ARGUMENT, "NULL");
    validate_fields(nullptr, 0);
    ++g_passed;

    TemporalStore s;
    s.append(make(1, 2000, 1.0, 1));
    std::vector<fraud_txn> b2 = {make(5, 2000, 1.0, 1), make(6, 2500, 1.0, 1), make(7, 1000, 1.0, 1)};
    CHECK_THROWS(validate_for_append(s, b2.data(), b2.size()), FRAUD_STATUS_OUT_OF_ORDER,
                 "transaction 2 (txn_id=7): timestamp_ms 1000 is older than the store's watermark 2000");
    b2[2].timestamp_ms = 2100;
    CHECK_THROWS(validate_for_append(s, b2.data(), b2.size()), FRAUD_STATUS_OUT_OF_ORDER,
                 "transaction 2 (txn_id=7): timestamp_ms 2100 is older than transaction 1's 2500");
    b2[2].timestamp_ms = 2500;  // equal: fine
    validate_for_append(s, b2.data(), b2.size());
    ++g_passed;
    b2[1].txn_id = 1;
    CHECK_THROWS(validate_for_append(s, b2.data(), b2.size()), FRAUD_STATUS_DUPLICATE_TRANSACTION,
                 "transaction 1 (txn_id=1): txn_id: already in the store");
    b2[1].txn_id = 6;
    b2[2].txn_id = 5;
    CHECK_THROWS(validate_for_append(s, b2.data(), b2.size()), FRAUD_STATUS_DUPLICATE_TRANSACTION,
                 "transaction 2 (txn_id=5): txn_id: same as transaction 0");
    b2[2].txn_id = 7;
    b2[2].mcc = -1;  // fields checked first, per transaction
    CHECK_THROWS(validate_for_append(s, b2.data(), b2.size()), FRAUD_STATUS_INVALID_TRANSACTION,
                 "transaction 2 (txn_id=7): mcc: must be in 0..9999, got -1");
    CHECK(s.size() == 1 && s.watermark_ms() == 2000);  // validation changed nothing
}

void test_store() {
    TemporalStore s;
    CHECK(s.size() == 0);
    CHECK(s.watermark_ms() == std::numeric_limits<int64_t>::min());
    CHECK(s.history(FRAUD_ENTITY_CARD, 1) == nullptr);
    s.reserve(16);
    const double amounts[] = {1.5, 2.0, 4.0, 0.25, 8.0};
    const int64_t ts[] = {100, 100, 200, 200, 300};
    for (int i = 0; i < 5; ++i) s.append(make(i, ts[i], amounts[i], 7, i % 2 ? -1 : 9, 3, -1));
    CHECK(s.size() == 5);
    CHECK(s.watermark_ms() == 300);
    CHECK(s.contains_txn_id(4) && !s.contains_txn_id(5));
    const EntityHistory* h = s.history(FRAUD_ENTITY_CARD, 7);
    CHECK(h != nullptr && h->size() == 5);
    double sum = 0, sq = 0;
    for (int i = 0; i < 5; ++i) {
        sum += amounts[i];
        sq += amounts[i] * amounts[i];
        CHECK(h->ts_ms[i] == ts[i]);
        CHECK(h->txn_rows[i] == static_cast<uint32_t>(i));  // equal timestamps keep append order
        CHECK(h->amount_cumsum[i] == sum);
        CHECK(h->amount_sq_cumsum[i] == sq);
        if (i > 0) CHECK(h->ts_ms[i - 1] <= h->ts_ms[i]);
    }
    CHECK(h->lower_bound(100) == 0 && h->lower_bound(200) == 2 && h->lower_bound(301) == 5);
    CHECK(h->amount_sum(2, 4) == 4.25 && h->amount_sum(3, 3) == 0.0);
    const EntityHistory* d = s.history(FRAUD_ENTITY_DEVICE, 9);
    CHECK(d != nullptr && d->size() == 3 && d->txn_rows[1] == 2);
    CHECK(s.history(FRAUD_ENTITY_IP, -1) == nullptr);  // absent entities get no history
    CHECK(s.num_entities(FRAUD_ENTITY_IP) == 0 && s.num_entities(FRAUD_ENTITY_DEVICE) == 1);
    CHECK(s.history(FRAUD_ENTITY_DEVICE, 7) == nullptr);  // types are separate id spaces
    CHECK(s.txn(3).amount == 0.25);
}

void test_window_label_and_config() {
    CHECK(window_label(3600000) == "1h");
    CHECK(window_label(86400000) == "24h");
    CHECK(window_label(604800000) == "7d");
    CHECK(window_label(2 * kDay) == "2d");
    CHECK(window_label(36 * kHour) == "36h");
    CHECK(window_label(300000) == "5m");
    CHECK(window_label(30000) == "30s");
    CHECK(window_label(1500) == "1500ms");
    FeatureConfig c;
    c.windows_ms = {};
    CHECK_THROWS(FeatureComputer{c}, FRAUD_STATUS_INVALID_ARGUMENT, "windows_ms: must not be empty");
    c.windows_ms = {kHour, kHour};
    CHECK_THROWS(FeatureComputer{c}, FRAUD_STATUS_INVALID_ARGUMENT, "strictly increasing");
    c.windows_ms = {-5};
    CHECK_THROWS(FeatureComputer{c}, FRAUD_STATUS_INVALID_ARGUMENT, "windows_ms[0]: must be > 0, got -5");
    c = FeatureConfig();
    c.max_scan = 0;
    CHECK_THROWS(FeatureComputer{c}, FRAUD_STATUS_INVALID_ARGUMENT, "max_scan");
    c = FeatureConfig();
    c.distinct_window_ms = 0;
    CHECK_THROWS(FeatureComputer{c}, FRAUD_STATUS_INVALID_ARGUMENT, "distinct_window_ms");
    FeatureComputer fc{FeatureConfig()};
    CHECK(fc.size() == 44);
    CHECK(fc.names()[5] == "card_count_1h" && fc.names()[6] == "card_amount_sum_1h");
    CHECK(fc.names()[36] == "card_distinct_devices_24h" && fc.names()[43] == "card_country_changed");
}

void test_features() {
    FeatureComputer fc{FeatureConfig()};
    TemporalStore s;
    const int64_t t = 100 * kDay + 5 * kHour + 123;  // 05:00 UTC
    // Card 1: one event exactly at t - 1h (inside 1h), one at t - 1h - 1 (outside 1h, inside 24h),
    // one exactly at t - 7d (inside 7d), and one at t itself (must be invisible).
    s.append(make(1, t - 7 * kDay, 10.0, 1, 50, 20, 60, 840, 1));
    s.append(make(2, t - kHour - 1, 20.0, 1, 51, 20, -1, 840, 2));
    s.append(make(3, t - kHour, 40.0, 1, 52, 21, 61, 826, 3));
    s.append(make(4, t, 1000.0, 1, 53, 20, 62, 276, 4));

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
    TemporalStore s2;
    for (int i = 0; i < 4; ++i) s2.append(make(i, 1000 * i, 25.0, 5));
    Row r5 = features(fc, s2, make(9, 10000, 50.0, 5));
    CHECK(std::isnan(r5["card_amount_zscore"]));
    CHECK(r5["card_amount_ratio_to_mean"] == 2.0f);
    Row r6 = features(fc, s2, make(9, 500, 50.0, 5));  // one earlier event: no std
    CHECK(std::isnan(r6["card_amount_zscore"]) && r6["card_amount_ratio_to_mean"] == 2.0f);

    // Before 1970: hour of day by floor.
    Row r7 = features(fc, s2, make(9, -1, 1.0, 5));
    CHECK(r7["hour_of_day"] == 23.0f);
}

void test_max_scan() {
    FeatureConfig c;
    c.max_scan = 2;
    FeatureComputer fc{c};
    TemporalStore s;
    // Card 1 used devices 1, 2, 3, 3 (newest last); scans see only the 2 most recent: 3, 3.
    for (int i = 0; i < 4; ++i) s.append(make(i, 1000 + i, 1.0, 1, i < 3 ? i + 1 : 3, 20, 30, 840, 100 + i));
    Row r = features(fc, s, make(9, 5000, 1.0, 1, 1, 20, 30, 840, 100));
    CHECK(r["card_distinct_devices_24h"] == 1.0f);
    CHECK(r["card_device_is_new"] == 1.0f);  // device 1 is beyond the scan
    CHECK(r["card_mcc_is_new"] == 1.0f);
    CHECK(r["card_ip_is_new"] == 0.0f);
    CHECK(r["card_count_24h"] == 4.0f);      // windows are not limited by max_scan
}

void test_no_allocation_and_repeatability() {
    FeatureComputer fc{FeatureConfig()};
    TemporalStore s;
    for (int i = 0; i < 3000; ++i) s.append(make(i, i * 1000, 1.0 + i % 7, i % 3, i % 11, i % 5, i % 13));
    const fraud_txn q = make(-1, 2999 * 1000 + 1, 2.0, 1, 4, 2, 6);
    Row a = features(fc, s, q);  // warm-up: the thread's scratch buffer
    std::vector<float> out(fc.size());
    const long before = g_allocations;
    for (int i = 0; i < 100; ++i) fc.compute(s, make(-1, 1000 * i, 2.0, i % 3, i % 11, i % 5, -1), out.data());
    fc.compute(s, q, out.data());
    CHECK(g_allocations == before);
    CHECK(std::memcmp(a.v.data(), out.data(), out.size() * sizeof(float)) == 0);
    CHECK(a["card_count_1h"] == 1000.0f);  // the whole stream spans 50 minutes; card 1 is every 3rd
}

}  // namespace

int main() {
    test_validate();
    test_store();
    test_window_label_and_config();
    test_features();
    test_max_scan();
    test_no_allocation_and_repeatability();
    return report_checks();
}
