// Point-in-time features of a transaction, from the temporal store. The one implementation: training
// replays history through it (via the bindings) and serving calls it, so the two cannot disagree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "store/temporal_store.h"

namespace libfraud {

struct FeatureConfig {
    std::vector<int64_t> windows_ms{3600000, 86400000, 604800000};  // count/sum windows
    int64_t distinct_window_ms = 86400000;                           // distinct-count window
    // Scans (distinct counts, novelty) look at most at this many most recent events of the entity:
    // a bounded cost per score however busy the card.
    uint32_t max_scan = 1024;
};

// Throws FraudError(INVALID_ARGUMENT) unless windows_ms is non-empty, positive and strictly
// increasing, distinct_window_ms > 0 and max_scan >= 1.
void validate_feature_config(const FeatureConfig& config);

// 3600000 -> "1h", 86400000 -> "24h", 604800000 -> "7d", 300000 -> "5m", 30000 -> "30s",
// 1500 -> "1500ms": the largest unit that divides ms, days only from 2 days on.
std::string window_label(int64_t ms);

// The feature names for a config, in output order (see FeatureComputer).
std::vector<std::string> feature_names(const FeatureConfig& config);

// Features, in this order (e = card, device, merchant, ip; w = each of windows_ms; NaN = missing;
// "history" = the entity's stored events with ts < the transaction's timestamp, strictly):
//   amount, log_amount (log1p), hour_of_day (UTC), country, mcc
//   {e}_count_{w}, {e}_amount_sum_{w}           events in [t - w, t); 0 if none; NaN if e absent
//   {e}_seconds_since_last                      NaN if e absent or no history
//   card_amount_ratio_to_mean                   amount / mean of card history; NaN if none
//   card_amount_zscore                          vs card history mean and sample std (ddof 1); NaN if
//                                               fewer than 2 events or std <= 1e-6 * |mean| ("std 0")
//   merchant_amount_ratio_to_mean
//   card_distinct_devices_{dw}, card_distinct_ips_{dw}, device_distinct_cards_{dw},
//   ip_distinct_cards_{dw}                      distinct present ids among the owner's events in
//                                               [t - dw, t), and among its max_scan most recent
//                                               events; NaN if the owner is absent
//   card_device_is_new, card_ip_is_new          1 if no one of the card's max_scan most recent events
//                                               used it, else 0; NaN if it is absent or no history
//   card_mcc_is_new                             same for mcc; NaN if no history
//   card_country_changed                        vs the card's previous transaction; NaN if none
// Thread-safe: compute() is const and keeps its scratch buffer thread_local.
class FeatureComputer {
public:
    explicit FeatureComputer(FeatureConfig config);  // validate_feature_config
    const FeatureConfig& config() const { return config_; }
    const std::vector<std::string>& names() const { return names_; }
    size_t size() const { return names_.size(); }
    // Writes size() floats to out. Sees only stored transactions with ts_ms < txn.timestamp_ms, even
    // when the store holds later ones (scoring in the past). Precondition: txn's fields validated.
    // No heap allocation after the first call on a thread.
    void compute(const TemporalStore& store, const fraud_txn& txn, float* out) const;

private:
    FeatureConfig config_;
    std::vector<std::string> names_;
};

}  // namespace libfraud
