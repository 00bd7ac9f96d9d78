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

struct Manifest {
    std::string bundle_dir;
    int64_t format_version = 0;
    FeatureConfig feature_config;
    std::vector<std::string> feature_order;
    std::string model_artifact;  // the artifact that scores
    double threshold = 0.5;
    std::vector<ArtifactEntry> artifacts;

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
