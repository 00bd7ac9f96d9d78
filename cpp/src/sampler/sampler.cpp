#include "sampler/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "common/error.h"

namespace libfraud {
namespace {

constexpr int64_t kMsPerHour = 3600000;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;
constexpr double kPi = 3.14159265358979323846;

// sin/cos of the hour of day, and log1p of small degrees: the same float the formula gives, looked up
// (a sample needs up to 4 + 4K * 4 of them; log1p is ~20 ns).
struct Tables {
    std::array<float, 24> hour_sin, hour_cos;
    std::array<float, 4096> log1p_degree;
    Tables() {
        for (int h = 0; h < 24; ++h) {
            hour_sin[h] = static_cast<float>(std::sin(2.0 * kPi * h / 24.0));
            hour_cos[h] = static_cast<float>(std::cos(2.0 * kPi * h / 24.0));
        }
        for (size_t d = 0; d < log1p_degree.size(); ++d) {
            log1p_degree[d] = static_cast<float>(std::log1p(static_cast<double>(d)));
        }
    }
};
const Tables kTables;

float log1p_degree(uint64_t d) {
    return d < kTables.log1p_degree.size() ? kTables.log1p_degree[d]
                                           : static_cast<float>(std::log1p(static_cast<double>(d)));
}

// The fixed transaction node features of an event at time ts, amount, as seen from t >= ts
// (log1p_amount: static_cast<float>(std::log1p(amount)), a stored event's is kept in its row).
void fixed_txn_features(int64_t ts, float log1p_amount, int64_t t, float* o) {
    int64_t ms_of_day = ts % kMsPerDay;
    if (ms_of_day < 0) ms_of_day += kMsPerDay;  // before 1970: floor, not truncation
    const auto hour = static_cast<size_t>(ms_of_day / kMsPerHour);
    // Unsigned: t - ts is in [0, 2^64) even where the signed difference would overflow.
    const uint64_t age_ms = static_cast<uint64_t>(t) - static_cast<uint64_t>(ts);
    o[0] = log1p_amount;
    o[1] = kTables.hour_sin[hour];
    o[2] = kTables.hour_cos[hour];
    o[3] = age_ms == 0 ? 0.0f : static_cast<float>(std::log1p(static_cast<double>(age_ms) / 1000.0));
}

float graph_value(double v) { return std::isnan(v) ? 0.0f : static_cast<float>(v); }
// Via double, as the feature plan converts codes (export/SCHEMA.md).
float graph_code(int64_t c) { return c == FRAUD_CODE_MISSING ? 0.0f : static_cast<float>(static_cast<double>(c)); }

void txn_features(const std::vector<FieldRef>& fields, const fraud_event& ev, int64_t t, float* o) {
    fixed_txn_features(ev.time_ms, static_cast<float>(std::log1p(ev.amount)), t, o);
    for (size_t g = 0; g < fields.size(); ++g)
        o[kFixedTxnFeatures + g] = fields[g].role == FieldRef::Numeric ? graph_value(ev.numeric[fields[g].index])
                                                                       : graph_code(ev.categorical[fields[g].index]);
}

void txn_features(const std::vector<FieldRef>& fields, const EventRow& r, int64_t t, float* o) {
    fixed_txn_features(r.time_ms(), r.log1p_amount(), t, o);
    for (size_t g = 0; g < fields.size(); ++g)
        o[kFixedTxnFeatures + g] = fields[g].role == FieldRef::Numeric ? graph_value(r.numeric(fields[g].index))
                                                                       : graph_code(r.categorical(fields[g].index));
}

void entity_features(uint32_t type, uint32_t types, uint64_t degree, float* o) {
    o[type] = 1.0f;  // the rest of the one-hot is already 0
    o[types] = log1p_degree(degree);
}

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Indices of k distinct events among [0, n) (k < n), uniformly: Floyd's algorithm, with the j-th
// draw splitmix64(key + j) reduced to [0, j'] by a 128-bit multiply (bias ~ n / 2^64).
void floyd_sample(uint64_t key, uint32_t n, uint32_t k, uint32_t* idx) {
    uint32_t m = 0;
    for (uint32_t j = n - k; j < n; ++j) {
        const uint64_t r64 = splitmix64(key + (j - (n - k)));
        const auto r = static_cast<uint32_t>((static_cast<unsigned __int128>(r64) * (j + 1ull)) >> 64);
        const bool taken = std::find(idx, idx + m, r) != idx + m;
        idx[m++] = taken ? j : r;
    }
}

}  // namespace

const char* strategy_name(SampleStrategy s) {
    switch (s) {
        case SampleStrategy::MostRecent: return "most_recent";
        case SampleStrategy::Uniform: return "uniform";
    }
    return "unknown";
}

SampleStrategy parse_strategy(const std::string& name) {
    if (name == "most_recent") return SampleStrategy::MostRecent;
    if (name == "uniform") return SampleStrategy::Uniform;
    throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                     "strategy: must be one of 'most_recent', 'uniform'; got '" + name + "'");
}

void validate_sampler_config(const SamplerConfig& config) {
    if (config.fanout < 1 || config.fanout > kMaxFanout) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "fanout: must be in 1.." + std::to_string(kMaxFanout) + ", got " +
                             std::to_string(config.fanout));
    }
    if (config.strategy != SampleStrategy::MostRecent && config.strategy != SampleStrategy::Uniform) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "strategy: must be one of 'most_recent', 'uniform'; got value " +
                             std::to_string(static_cast<int>(config.strategy)));
    }
    if (config.retention_ms < 0) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "retention_ms: must be >= 0 (0 = unlimited), got " +
                             std::to_string(config.retention_ms));
    }
}

Sampler::Sampler(const Schema& schema, SamplerConfig config)
    : config_(std::move(config)), entity_types_(static_cast<uint32_t>(schema.num_entities())) {
    validate_sampler_config(config_);
    for (const FieldRef& f : config_.graph_fields) {
        const bool ok = (f.role == FieldRef::Numeric && f.index >= 0 && size_t(f.index) < schema.num_numeric()) ||
                        (f.role == FieldRef::Categorical && f.index >= 0 && size_t(f.index) < schema.num_categorical());
        if (!ok) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "a graph field must be a numeric or categorical field of the schema");
    }
}

void Sampler::sample(const TemporalStore& store, const fraud_event& txn,
                     const NeighbourhoodBuffers& out, size_t i) const {
    const int64_t t = txn.time_ms;
    if (config_.retention_ms > 0 && store.watermark_ms() != std::numeric_limits<int64_t>::min()) {
        const int64_t wm = store.watermark_ms();
        const bool too_old = wm >= std::numeric_limits<int64_t>::min() + config_.retention_ms &&
                             t < wm - config_.retention_ms;
        if (too_old) {
            throw FraudError(
                FRAUD_STATUS_OUT_OF_RETENTION,
                "event_id=" + std::to_string(txn.event_id) + ": time_ms " + std::to_string(t) +
                    " is older than the retained history: watermark_ms " + std::to_string(wm) +
                    " - retention_ms " + std::to_string(config_.retention_ms) + " = " +
                    std::to_string(wm - config_.retention_ms));
        }
    }
    if (!out.target_x || !out.ent1_x || !out.ent1_mask || !out.txn2_x || !out.txn2_mask ||
        !out.ent3_x || !out.ent3_mask) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "NeighbourhoodBuffers: a float buffer is NULL (only the id buffers may be)");
    }

    const uint32_t K = config_.fanout;
    const NeighbourhoodShape sh = shape();
    float* const target_x = out.target_x + i * sh.target_x();
    float* const ent1_x = out.ent1_x + i * sh.ent1_x();
    float* const ent1_mask = out.ent1_mask + i * sh.ent1_mask();
    float* const txn2_x = out.txn2_x + i * sh.txn2_x();
    float* const txn2_mask = out.txn2_mask + i * sh.txn2_mask();
    float* const ent3_x = out.ent3_x + i * sh.ent3_x();
    float* const ent3_mask = out.ent3_mask + i * sh.ent3_mask();
    int64_t* const ent1_id = out.ent1_id ? out.ent1_id + i * sh.ent1_mask() : nullptr;
    int64_t* const txn2_id = out.txn2_id ? out.txn2_id + i * sh.txn2_mask() : nullptr;
    int64_t* const ent3_id = out.ent3_id ? out.ent3_id + i * sh.ent3_mask() : nullptr;

    // Padding first (all-ones bytes are int64 -1), then the present nodes over it.
    std::memset(ent1_x, 0, sh.ent1_x() * sizeof(float));
    std::memset(ent1_mask, 0, sh.ent1_mask() * sizeof(float));
    std::memset(txn2_x, 0, sh.txn2_x() * sizeof(float));
    std::memset(txn2_mask, 0, sh.txn2_mask() * sizeof(float));
    std::memset(ent3_x, 0, sh.ent3_x() * sizeof(float));
    std::memset(ent3_mask, 0, sh.ent3_mask() * sizeof(float));
    if (ent1_id) std::memset(ent1_id, 0xff, sh.ent1_mask() * sizeof(int64_t));
    if (txn2_id) std::memset(txn2_id, 0xff, sh.txn2_mask() * sizeof(int64_t));
    if (ent3_id) std::memset(ent3_id, 0xff, sh.ent3_mask() * sizeof(int64_t));

    const uint32_t E = entity_types_;
    const size_t Fe = sh.entity_features();
    const size_t Ft = sh.txn_features;
    txn_features(config_.graph_fields, txn, t, target_x);

    // First each hop-1 history and the events chosen from it, prefetching their rows, then the
    // rows' features: one neighbour's work is long enough that the CPU would otherwise wait for
    // each row's cache miss in turn (the rows of an entity lie far apart in the table).
    const EntityHistory* hist[FRAUD_MAX_ENTITY_TYPES];
    uint32_t taken[FRAUD_MAX_ENTITY_TYPES];
    uint32_t chosen[FRAUD_MAX_ENTITY_TYPES][kMaxFanout];  // per history, newest first
    for (uint32_t e = 0; e < E; ++e) {
        taken[e] = 0;
        const int64_t id = txn.entity_id[e];
        if (id < 0) continue;  // absent: padding
        const EntityHistory* h = store.history(e, id);
        hist[e] = h;
        const size_t end = h ? h->lower_bound(t) : 0;  // events [0, end) are strictly before t
        entity_features(e, E, end, ent1_x + e * Fe);
        ent1_mask[e] = 1.0f;
        if (ent1_id) ent1_id[e] = id;
        if (end == 0) continue;

        // Rows are uint32_t, so a history has fewer than 2^32 events.
        const auto n = static_cast<uint32_t>(end);
        const uint32_t k_taken = std::min(K, n);
        uint32_t* idx = chosen[e];
        if (config_.strategy == SampleStrategy::MostRecent || k_taken == n) {
            for (uint32_t k = 0; k < k_taken; ++k) idx[k] = n - 1 - k;
        } else {
            const uint64_t key = splitmix64(splitmix64(splitmix64(config_.seed) ^
                                                       static_cast<uint64_t>(txn.event_id)) ^
                                            static_cast<uint64_t>(e));
            floyd_sample(key, n, k_taken, idx);
            std::sort(idx, idx + k_taken, std::greater<uint32_t>());
        }
        taken[e] = k_taken;
        for (uint32_t k = 0; k < k_taken; ++k) store.prefetch(h->row(idx[k]));
    }

    for (uint32_t e = 0; e < E; ++e) {
        for (uint32_t k = 0; k < taken[e]; ++k) {
            const EventRow s = store.event(hist[e]->row(chosen[e][k]));
            const size_t slot = static_cast<size_t>(e) * K + k;
            txn_features(config_.graph_fields, s, t, txn2_x + slot * Ft);
            txn2_mask[slot] = 1.0f;
            if (txn2_id) txn2_id[slot] = s.event_id();
            for (uint32_t f = 0; f < E; ++f) {
                const int64_t fid = s.entity(f);
                if (fid < 0) continue;
                const size_t slot3 = slot * E + f;
                entity_features(f, E, s.degree_before(f), ent3_x + slot3 * Fe);
                ent3_mask[slot3] = 1.0f;
                if (ent3_id) ent3_id[slot3] = fid;
            }
        }
    }
}

}  // namespace libfraud
