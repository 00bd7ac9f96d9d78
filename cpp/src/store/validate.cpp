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

std::string prefix(size_t i, const fraud_txn& t) {
    return "transaction " + std::to_string(i) + " (txn_id=" + std::to_string(t.txn_id) + "): ";
}

}  // namespace

const char* entity_name(int type) {
    switch (type) {
        case FRAUD_ENTITY_CARD: return "card";
        case FRAUD_ENTITY_DEVICE: return "device";
        case FRAUD_ENTITY_MERCHANT: return "merchant";
        case FRAUD_ENTITY_IP: return "ip";
        default: return "unknown";
    }
}

std::string field_error(const fraud_txn& t) {
    if (std::isnan(t.amount)) return "amount: is NaN";
    if (std::isinf(t.amount)) return t.amount > 0 ? "amount: is +inf" : "amount: is -inf";
    if (!(t.amount > 0)) return "amount: must be > 0, got " + format_double(t.amount);
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        const int64_t id = t.entity_id[e];
        const bool optional = e == FRAUD_ENTITY_DEVICE || e == FRAUD_ENTITY_IP;
        if (id >= 0 || (optional && id == FRAUD_ENTITY_ABSENT)) continue;
        return std::string("entity_id[") + entity_name(e) + "]: must be >= 0" +
               (optional ? " or -1 (absent)" : "") + ", got " + std::to_string(id);
    }
    if (t.country < 1 || t.country > 999) {
        return "country: must be in 1..999, got " + std::to_string(t.country);
    }
    if (t.mcc < 0 || t.mcc > 9999) return "mcc: must be in 0..9999, got " + std::to_string(t.mcc);
    return "";
}

void validate_fields(const fraud_txn* txns, size_t n) {
    if (n != 0 && txns == nullptr) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "txns is NULL with n = " + std::to_string(n));
    }
    for (size_t i = 0; i < n; ++i) {
        std::string err = field_error(txns[i]);
        if (!err.empty()) throw FraudError(FRAUD_STATUS_INVALID_TRANSACTION, prefix(i, txns[i]) + err);
    }
}

void validate_for_append(const TemporalStore& store, const fraud_txn* txns, size_t n) {
    if (n != 0 && txns == nullptr) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "txns is NULL with n = " + std::to_string(n));
    }
    // txn_id -> batch index, only needed when the batch could repeat an id.
    std::unordered_map<int64_t, size_t> batch_ids;
    if (n > 1) batch_ids.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const fraud_txn& t = txns[i];
        std::string err = field_error(t);
        if (!err.empty()) throw FraudError(FRAUD_STATUS_INVALID_TRANSACTION, prefix(i, t) + err);
        if (t.timestamp_ms < store.watermark_ms()) {
            throw FraudError(FRAUD_STATUS_OUT_OF_ORDER,
                             prefix(i, t) + "timestamp_ms " + std::to_string(t.timestamp_ms) +
                                 " is older than the store's watermark " +
                                 std::to_string(store.watermark_ms()));
        }
        if (i > 0 && t.timestamp_ms < txns[i - 1].timestamp_ms) {
            throw FraudError(FRAUD_STATUS_OUT_OF_ORDER,
                             prefix(i, t) + "timestamp_ms " + std::to_string(t.timestamp_ms) +
                                 " is older than transaction " + std::to_string(i - 1) + "'s " +
                                 std::to_string(txns[i - 1].timestamp_ms) + " in the same batch");
        }
        if (store.contains_txn_id(t.txn_id)) {
            throw FraudError(FRAUD_STATUS_DUPLICATE_TRANSACTION,
                             prefix(i, t) + "txn_id: already in the store");
        }
        if (n > 1) {
            auto [it, inserted] = batch_ids.emplace(t.txn_id, i);
            if (!inserted) {
                throw FraudError(FRAUD_STATUS_DUPLICATE_TRANSACTION,
                                 prefix(i, t) + "txn_id: same as transaction " +
                                     std::to_string(it->second) + " in the batch");
            }
        }
    }
}

}  // namespace libfraud
