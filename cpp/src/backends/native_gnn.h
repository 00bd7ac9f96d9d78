// The built-in "native" GNN backend: FraudGnn (python/libfraud/models/gnn.py) in its dense
// fixed-fanout form, as plain loops over float32 weights read from one artifact file. No framework,
// no plugin library: it is linked into the core and served through the same fraud_gnn_backend
// table as the plugins, so GnnModel wraps it like any other backend.
//
// Artifact ("LFNATIVE", written by export/native.py; export/BUNDLE.md "Native artifacts" is the spec):
//   [0, 8)    magic "LFNATIVE"
//   [8, 12)   uint32 format version (kNativeGnnVersion)
//   [12, 16)  uint32 header length in bytes (UTF-8 JSON)
//   [16, 24)  uint64 weights offset (a multiple of 64)
//   [24, 32)  uint64 weights length in bytes
//   [32, ...) JSON header, zero-padded to the weights offset; then the float32 weights,
//             little-endian, each tensor at a 64-byte aligned offset named in the header.
//
// Shapes: the header's architecture gives E (entity_types) and Ft (txn_features); run() refuses
// inputs with another E or Ft. Fanout and batch are free.
//
// Threading: a loaded model is immutable; run() keeps its scratch on the stack (no allocation, no
// shared state), so any number of threads may call it at once.
#pragma once

#include <cstdint>

#include "backends/gnn_backend.h"

namespace libfraud {

constexpr char kNativeGnnMagic[8] = {'L', 'F', 'N', 'A', 'T', 'I', 'V', 'E'};
constexpr uint32_t kNativeGnnVersion = 1;
// Bounds of the stack scratch and the weight tables: larger models are refused at load.
constexpr int kNativeMaxHidden = 1024;
constexpr int kNativeMaxEmbedding = 1024;
constexpr int kNativeMaxEntityTypes = FRAUD_GNN_MAX_ENTITY_TYPES;
constexpr int kNativeMaxTxnFeatures = 256;

// The built-in backend's table (static storage, never freed). Runs the kind "native".
const fraud_gnn_backend* native_gnn_backend();

}  // namespace libfraud
