// The temporal neighbourhood sampler: fills the fixed-shape arrays of neighbourhood.h for a target
// transaction from the temporal store, for training (bindings) and serving (engine) alike.
//
// Semantics, for a target T at time t (stored transactions with ts >= t are never looked at):
//   hop 1  T's E entities. Absent: mask 0, id -1, features 0. Present (even never seen): mask 1,
//          features one-hot type + log1p(degree), degree = the entity's stored transactions, ts < t.
//   hop 2  per hop-1 entity, up to K = fanout of its transactions with ts < t, newest first (ties in
//          time: later appended first). MostRecent: the K newest. Uniform: K drawn uniformly
//          without replacement (all when fewer), by a counter-based hash of (seed, T's txn_id,
//          entity type): the same draw whatever the batch, call order or later appends.
//   hop 3  per hop-2 transaction S, its E entities; degree = the entity's transactions with ts
//          strictly before S's (TemporalStore::degrees_before): what S itself saw, never the future.
//   Txn features (neighbourhood.h): the hour is the integer UTC hour of day of the transaction.
// So ingesting a whole history and then sampling every transaction gives, bitwise, what sampling
// each one right before its ingest gives (training == serving).
//
// Threading: sample() is const and keeps no state; many threads may call it on one store at once,
// but not while the store is appended to. The engine and the bindings hold the store's shared_mutex
// as readers around it, so a sample sees the store after a whole number of ingest calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <vector>

#include "features/features.h"
#include "libfraud/fraud.h"
#include "sampler/neighbourhood.h"
#include "store/temporal_store.h"

namespace libfraud {

enum class SampleStrategy { MostRecent, Uniform };

// "most_recent", "uniform"; "unknown" otherwise.
const char* strategy_name(SampleStrategy s);
// Inverse of strategy_name; throws FraudError(INVALID_ARGUMENT) listing the valid names.
SampleStrategy parse_strategy(const std::string& name);

constexpr uint32_t kMaxFanout = 256;

struct SamplerConfig {
    uint32_t fanout = 10;  // K: earlier transactions per hop-1 entity, 1..kMaxFanout
    SampleStrategy strategy = SampleStrategy::MostRecent;
    uint64_t seed = 0;         // Uniform only
    int64_t retention_ms = 0;  // 0 = unlimited; else history older than watermark - retention_ms
                               // may be gone, so targets that old are refused
    std::vector<FieldRef> graph_fields;  // numeric or categorical fields of the txn node features
};

// Throws FraudError(INVALID_ARGUMENT) unless fanout is in 1..kMaxFanout, strategy is a known value
// and retention_ms >= 0.
void validate_sampler_config(const SamplerConfig& config);

class Sampler {
public:
    // validate_sampler_config; graph fields must be in the schema.
    Sampler(const Schema& schema, SamplerConfig config);
    const SamplerConfig& config() const { return config_; }
    NeighbourhoodShape shape() const {
        return NeighbourhoodShape{config_.fanout, entity_types_,
                                  kFixedTxnFeatures + static_cast<uint32_t>(config_.graph_fields.size())};
    }

    // Writes slot i of every buffer (offset i * shape().<name>()) for txn; every element of the slot
    // is written (padding: 0, ids -1). The id buffers may be null; the float ones may not
    // (FraudError(INVALID_ARGUMENT)). Precondition: txn's fields validated (validate_fields).
    // Throws FraudError(FRAUD_STATUS_OUT_OF_RETENTION) when retention_ms > 0 and
    // txn.timestamp_ms < store.watermark_ms() - retention_ms. No heap allocation.
    void sample(const TemporalStore& store, const fraud_event& event, const NeighbourhoodBuffers& out,
                size_t i) const;

private:
    SamplerConfig config_;
    uint32_t entity_types_;
};

}  // namespace libfraud
