/*
 * The GNN backend plugin interface: a C ABI, so a plugin (libfraud_torch.so, later ONNX Runtime,
 * TensorRT, native) is built and shipped apart from libfraud.so and loaded only when a bundle
 * asks for it. A plugin exports one symbol, fraud_gnn_backend_v1 (see below).
 *
 * Inputs are the neighbourhood arrays of cpp/src/sampler/neighbourhood.h for `batch` targets with
 * fanout `fanout` (K), `num_entity_types` entity types (E) and `txn_features` transaction features
 * (Ft); an entity node has E + 1 features (one-hot type, log1p degree). Outputs are a logit per
 * target and an embedding of embedding_dim per target. A backend refuses (run() != 0, with a
 * message) inputs whose E or Ft differ from its model's.
 * Threading: run() may be called from many threads at once on one model.
 */
#ifndef LIBFRAUD_GNN_BACKEND_H
#define LIBFRAUD_GNN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2: fraud_gnn_inputs carries E and Ft (1 had them fixed at 4 and 5). */
#define FRAUD_GNN_BACKEND_ABI 2
/* The most entity types a neighbourhood may have. */
#define FRAUD_GNN_MAX_ENTITY_TYPES 16

typedef struct fraud_gnn_inputs {
    int64_t batch;
    int64_t fanout;           /* K */
    int64_t num_entity_types; /* E, 1..FRAUD_GNN_MAX_ENTITY_TYPES */
    int64_t txn_features;     /* Ft, >= 1 */
    const float* target_x;  /* [B, Ft] */
    const float* ent1_x;    /* [B, E, E+1] */
    const float* ent1_mask; /* [B, E] */
    const float* txn2_x;    /* [B, E, K, Ft] */
    const float* txn2_mask; /* [B, E, K] */
    const float* ent3_x;    /* [B, E, K, E, E+1] */
    const float* ent3_mask; /* [B, E, K, E] */
} fraud_gnn_inputs;

typedef struct fraud_gnn_backend {
    uint32_t abi_version; /* FRAUD_GNN_BACKEND_ABI */
    const char* name;     /* e.g. "torch" */
    /* Artifact kinds this plugin runs, e.g. "torchscript", "aoti". */
    int (*supports)(const char* kind);
    /* Loads an artifact; NULL on failure with a message in err (NUL-terminated, errlen bytes).
     * For the kinds the core reads as one file (torchscript, aoti, native: backend_registry.cpp),
     * path is its sealed checked copy ("/proc/self/fd/N", valid for the model's life): read it
     * as a file; there are no files beside it. */
    void* (*load)(const char* kind, const char* path, int64_t embedding_dim, char* err, size_t errlen);
    /* 0 on success; logits_out [B], embeddings_out [B, embedding_dim]. */
    int (*run)(void* model, const fraud_gnn_inputs* inputs, float* logits_out, float* embeddings_out,
               char* err, size_t errlen);
    void (*free_model)(void* model);
} fraud_gnn_backend;

/* The one symbol a plugin exports. */
typedef const fraud_gnn_backend* (*fraud_gnn_backend_entry_fn)(void);
#define FRAUD_GNN_BACKEND_ENTRY "fraud_gnn_backend_v1"

#ifdef __cplusplus
}
#endif

#endif /* LIBFRAUD_GNN_BACKEND_H */
