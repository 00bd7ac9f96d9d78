// The bundle manifest (export/BUNDLE.md), read and verified before anything in the bundle is loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "features/features.h"

namespace libfraud {

struct ArtifactEntry {
    std::string name;
    std::string path;  // relative to the bundle directory, checked to stay inside it
    std::string target;
    std::string sha256;
    uint64_t size = 0;
};

// The optional "gnn" section: a GNN scored on the sampled neighbourhood feeds the trees.
struct GnnBackendEntry {
    std::string kind;      // "torchscript", "aoti", ...
    std::string artifact;  // an artifact name
    std::vector<std::string> cpu_flags;  // ISA the artifact needs (AOTInductor), empty if none
};

struct GnnSection {
    bool present = false;
    uint32_t fanout = 10;
    std::string strategy = "most_recent";
    uint64_t seed = 0;
    int64_t embedding_dim = 0;
    std::vector<std::string> output_features;  // the trailing names of features.order
    std::string default_backend;
    std::vector<GnnBackendEntry> backends;
};

struct Manifest {
    std::string bundle_dir;
    int64_t format_version = 0;
    FeatureConfig feature_config;
    std::vector<std::string> feature_order;
    std::string model_artifact;  // the artifact that scores
    double threshold = 0.5;
    std::vector<ArtifactEntry> artifacts;
    GnnSection gnn;

    const ArtifactEntry& artifact(const std::string& name) const;
    std::string artifact_path(const ArtifactEntry& entry) const;
};

// Parses <bundle_dir>/manifest.json and checks its format and version. Throws FraudError
// (IO_ERROR, BUNDLE_INVALID naming the key, BUNDLE_VERSION).
Manifest read_manifest(const std::string& bundle_dir);

// Checks every artifact's existence, size and sha256 against the manifest; loads nothing.
// Throws FraudError(BUNDLE_CHECKSUM) naming the file, what was expected and what was found.
void verify_artifacts(const Manifest& manifest);

}  // namespace libfraud
