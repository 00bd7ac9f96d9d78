// The sampled neighbourhood of one transaction: fixed-shape padded arrays with masks, the same
// for training (bindings), serving (engine) and every GNN backend. A contract across those three.
//
// For a target transaction T at time t (only stored transactions with ts < t are ever used), with
// E = the schema's entity types (in its order) and Ft = 4 + the spec's graph fields:
//   hop 1  ent1[e]          T's entity of type e; masked if absent
//   hop 2  txn2[e][k]       the k-th sampled earlier transaction of ent1[e] (k = 0 newest first)
//   hop 3  ent3[e][k][f]    the entity of type f of txn2[e][k]; masked if absent
// Padding is zero with mask 0. Masks are float32 0/1 so the arrays feed a model unchanged.
#pragma once

#include <cstddef>
#include <cstdint>

#include "libfraud/fraud.h"

namespace libfraud {

// Transaction node features, from the stored record alone (no history lookups):
//   log1p(amount), sin(2*pi*hour/24), cos(2*pi*hour/24), log1p(age_seconds), then each graph
//   field's value (a numeric, or a categorical code, as float; missing = 0)
// where age_seconds = (t - ts) / 1000 for a neighbour, 0 for the target; hour is the UTC hour.
constexpr uint32_t kFixedTxnFeatures = 4;
// Entity node features: one-hot type (E), log1p(degree). degree = transactions of the entity
// before the reference time: before t for hop 1, before the hop-2 transaction for hop 3.

// Element counts per target.
struct NeighbourhoodShape {
    uint32_t fanout;        // K
    uint32_t entity_types;  // E
    uint32_t txn_features;  // Ft
    size_t entity_features() const { return size_t(entity_types) + 1; }
    size_t target_x() const { return txn_features; }
    size_t ent1_x() const { return size_t(entity_types) * entity_features(); }
    size_t ent1_mask() const { return entity_types; }
    size_t txn2_x() const { return size_t(entity_types) * fanout * txn_features; }
    size_t txn2_mask() const { return size_t(entity_types) * fanout; }
    size_t ent3_x() const { return size_t(entity_types) * fanout * entity_types * entity_features(); }
    size_t ent3_mask() const { return size_t(entity_types) * fanout * entity_types; }
};

// Caller-owned buffers for a batch; each pointer holds batch * shape.<name>() elements, row-major
// in the order of the dimensions above. The id arrays may be null (for tests and explanations):
// ent1_id [E], txn2_id [E][K] (txn_id), ent3_id [E][K][E]; -1 where masked.
struct NeighbourhoodBuffers {
    float* target_x = nullptr;
    float* ent1_x = nullptr;
    float* ent1_mask = nullptr;
    float* txn2_x = nullptr;
    float* txn2_mask = nullptr;
    float* ent3_x = nullptr;
    float* ent3_mask = nullptr;
    int64_t* ent1_id = nullptr;
    int64_t* txn2_id = nullptr;
    int64_t* ent3_id = nullptr;
};

}  // namespace libfraud
