#include "features/features.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "common/error.h"
#include "store/validate.h"

namespace libfraud {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kMsPerHour = 3600000;
// Bounds the per-thread scratch of the distinct counts (a bundle's config is input too).
constexpr uint32_t kMaxScanLimit = 1u << 16;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;
// A std below this fraction of |mean| is rounding noise in the cumsum difference, not spread.
constexpr double kMinRelStd = 1e-6;

// t - w without overflow for timestamps near INT64_MIN (w > 0).
int64_t window_start(int64_t t, int64_t w) {
    return t < std::numeric_limits<int64_t>::min() + w ? std::numeric_limits<int64_t>::min() : t - w;
}

// Present (>= 0) ids of entity type `other` among rows[begin, end), counted once each.
size_t count_distinct(const TemporalStore& store, const EntityHistory& h, size_t begin, size_t end,
                      int other, std::vector<int64_t>& scratch) {
    scratch.clear();
    for (size_t j = begin; j < end; ++j) {
        const int64_t id = store.txn(h.txn_rows[j]).entity_id[other];
        if (id >= 0) scratch.push_back(id);
    }
    std::sort(scratch.begin(), scratch.end());
    return static_cast<size_t>(std::unique(scratch.begin(), scratch.end()) - scratch.begin());
}

}  // namespace

void validate_feature_config(const FeatureConfig& config) {
    if (config.windows_ms.empty()) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "windows_ms: must not be empty");
    }
    for (size_t i = 0; i < config.windows_ms.size(); ++i) {
        const int64_t w = config.windows_ms[i];
        if (w <= 0) {
            throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                             "windows_ms[" + std::to_string(i) + "]: must be > 0, got " +
                                 std::to_string(w));
        }
        if (i > 0 && w <= config.windows_ms[i - 1]) {
            throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                             "windows_ms: must be strictly increasing, got " +
                                 std::to_string(config.windows_ms[i - 1]) + " then " +
                                 std::to_string(w));
        }
    }
    if (config.distinct_window_ms <= 0) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "distinct_window_ms: must be > 0, got " +
                             std::to_string(config.distinct_window_ms));
    }
    if (config.max_scan < 1 || config.max_scan > kMaxScanLimit) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "max_scan: must be in 1.." +
                                                            std::to_string(kMaxScanLimit) + ", got " +
                                                            std::to_string(config.max_scan));
    }
}

std::string window_label(int64_t ms) {
    if (ms > 0) {
        if (ms >= 2 * kMsPerDay && ms % kMsPerDay == 0) return std::to_string(ms / kMsPerDay) + "d";
        if (ms % kMsPerHour == 0) return std::to_string(ms / kMsPerHour) + "h";
        if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
        if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    }
    return std::to_string(ms) + "ms";
}

std::vector<std::string> feature_names(const FeatureConfig& config) {
    std::vector<std::string> names = {"amount", "log_amount", "hour_of_day", "country", "mcc"};
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        for (int64_t w : config.windows_ms) {
            const std::string label = window_label(w);
            names.push_back(std::string(entity_name(e)) + "_count_" + label);
            names.push_back(std::string(entity_name(e)) + "_amount_sum_" + label);
        }
    }
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        names.push_back(std::string(entity_name(e)) + "_seconds_since_last");
    }
    names.push_back("card_amount_ratio_to_mean");
    names.push_back("card_amount_zscore");
    names.push_back("merchant_amount_ratio_to_mean");
    const std::string dw = window_label(config.distinct_window_ms);
    names.push_back("card_distinct_devices_" + dw);
    names.push_back("card_distinct_ips_" + dw);
    names.push_back("device_distinct_cards_" + dw);
    names.push_back("ip_distinct_cards_" + dw);
    names.push_back("card_device_is_new");
    names.push_back("card_ip_is_new");
    names.push_back("card_mcc_is_new");
    names.push_back("card_country_changed");
    return names;
}

FeatureComputer::FeatureComputer(FeatureConfig config) : config_(std::move(config)) {
    validate_feature_config(config_);
    names_ = feature_names(config_);
}

void FeatureComputer::compute(const TemporalStore& store, const fraud_txn& txn, float* out) const {
    const int64_t t = txn.timestamp_ms;
    const double amount = txn.amount;
    float* o = out;

    int64_t ms_of_day = t % kMsPerDay;
    if (ms_of_day < 0) ms_of_day += kMsPerDay;  // before 1970: floor, not truncation
    *o++ = static_cast<float>(amount);
    *o++ = static_cast<float>(std::log1p(amount));
    *o++ = static_cast<float>(ms_of_day / kMsPerHour);
    *o++ = static_cast<float>(txn.country);
    *o++ = static_cast<float>(txn.mcc);

    // Each entity's history and the end of its strictly-earlier part: [0, end[e]) is all it sees.
    const EntityHistory* hist[FRAUD_ENTITY_COUNT];
    size_t end[FRAUD_ENTITY_COUNT];
    bool absent[FRAUD_ENTITY_COUNT];
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        absent[e] = txn.entity_id[e] < 0;
        hist[e] = absent[e] ? nullptr : store.history(static_cast<fraud_entity>(e), txn.entity_id[e]);
        end[e] = hist[e] ? hist[e]->lower_bound(t) : 0;
    }

    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        for (int64_t w : config_.windows_ms) {
            if (absent[e]) {
                *o++ = kNaN;
                *o++ = kNaN;
            } else if (end[e] == 0) {
                *o++ = 0.0f;
                *o++ = 0.0f;
            } else {
                const size_t begin = hist[e]->lower_bound(window_start(t, w));
                *o++ = static_cast<float>(end[e] - begin);
                *o++ = static_cast<float>(hist[e]->amount_sum(begin, end[e]));
            }
        }
    }

    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        *o++ = end[e] == 0 ? kNaN
                           : static_cast<float>(static_cast<double>(static_cast<uint64_t>(t) -
                                                                    static_cast<uint64_t>(hist[e]->ts_ms[end[e] - 1])) /
                                                1000.0);
    }

    auto ratio_to_mean = [&](int e) {
        if (end[e] == 0) return kNaN;
        const double mean = hist[e]->amount_cumsum[end[e] - 1] / static_cast<double>(end[e]);
        return static_cast<float>(amount / mean);
    };
    *o++ = ratio_to_mean(FRAUD_ENTITY_CARD);
    {
        const size_t n = end[FRAUD_ENTITY_CARD];
        float z = kNaN;
        if (n >= 2) {
            const EntityHistory& h = *hist[FRAUD_ENTITY_CARD];
            const double sum = h.amount_cumsum[n - 1];
            const double mean = sum / static_cast<double>(n);
            const double var = (h.amount_sq_cumsum[n - 1] - sum * mean) / static_cast<double>(n - 1);
            const double min_std = kMinRelStd * std::fabs(mean);
            if (var > min_std * min_std) z = static_cast<float>((amount - mean) / std::sqrt(var));
        }
        *o++ = z;
    }
    *o++ = ratio_to_mean(FRAUD_ENTITY_MERCHANT);

    thread_local std::vector<int64_t> scratch;
    if (scratch.capacity() < config_.max_scan) scratch.reserve(config_.max_scan);
    auto distinct = [&](int owner, int other) {
        if (absent[owner]) return kNaN;
        if (end[owner] == 0) return 0.0f;
        const EntityHistory& h = *hist[owner];
        size_t begin = h.lower_bound(window_start(t, config_.distinct_window_ms));
        if (end[owner] - begin > config_.max_scan) begin = end[owner] - config_.max_scan;
        return static_cast<float>(count_distinct(store, h, begin, end[owner], other, scratch));
    };
    *o++ = distinct(FRAUD_ENTITY_CARD, FRAUD_ENTITY_DEVICE);
    *o++ = distinct(FRAUD_ENTITY_CARD, FRAUD_ENTITY_IP);
    *o++ = distinct(FRAUD_ENTITY_DEVICE, FRAUD_ENTITY_CARD);
    *o++ = distinct(FRAUD_ENTITY_IP, FRAUD_ENTITY_CARD);

    // Novelty and change, over the card's most recent events (newest first: a repeat ends the scan).
    const size_t card_end = end[FRAUD_ENTITY_CARD];
    const EntityHistory* card = hist[FRAUD_ENTITY_CARD];
    const size_t scan_begin = card_end > config_.max_scan ? card_end - config_.max_scan : 0;
    auto entity_is_new = [&](int other) {
        if (absent[other] || card_end == 0) return kNaN;
        for (size_t j = card_end; j-- > scan_begin;) {
            if (store.txn(card->txn_rows[j]).entity_id[other] == txn.entity_id[other]) return 0.0f;
        }
        return 1.0f;
    };
    *o++ = entity_is_new(FRAUD_ENTITY_DEVICE);
    *o++ = entity_is_new(FRAUD_ENTITY_IP);
    if (card_end == 0) {
        *o++ = kNaN;
        *o++ = kNaN;
    } else {
        float mcc_new = 1.0f;
        for (size_t j = card_end; j-- > scan_begin;) {
            if (store.txn(card->txn_rows[j]).mcc == txn.mcc) {
                mcc_new = 0.0f;
                break;
            }
        }
        *o++ = mcc_new;
        *o++ = store.txn(card->txn_rows[card_end - 1]).country != txn.country ? 1.0f : 0.0f;
    }
}

}  // namespace libfraud
