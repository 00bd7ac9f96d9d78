// The bundle manifest (export/BUNDLE.md), read and verified before anything in the bundle is loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>


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
    std::vector<std::string> graph_fields;  // numeric / categorical fields of the txn node features
    int64_t embedding_dim = 0;
    std::vector<std::string> output_features;  // the trailing names of features.order
    std::string default_backend;
    std::vector<GnnBackendEntry> backends;
};

// The optional "calibration" section (export/BUNDLE.md "calibration"): a monotone map from the
// trees' probability to a calibrated one, applied to every score the core returns. Without it
// (method None) apply is the identity.
struct Calibration {
    enum class Method { None, Platt, Isotonic };
    // Platt: p is clipped into [kClip, 1 - kClip] before the logit (python/libfraud/calibration.py
    // CLIP uses the same value: parity depends on it).
    static constexpr double kClip = 1e-7;
    static constexpr size_t kMaxPoints = 1024;  // isotonic breakpoints, bounded so a score stays cheap

    Method method = Method::None;
    double a = 1.0, b = 0.0;    // platt: 1 / (1 + exp(-(a * logit(p) + b)))
    std::vector<double> x, y;   // isotonic: x strictly increasing, y non-decreasing in [0, 1]

    bool present() const { return method != Method::None; }
    // The calibrated score of the trees' output p, in double then rounded to float as the Python
    // reference does; NaN stays NaN. Allocation-free (binary search for isotonic).
    float apply(float p) const;
};

// One reason family (export/BUNDLE.md "explanation"): a stable code and a short text for analysts.
struct ReasonFamily {
    int32_t code = 0;
    std::string name;
    std::string text;
};

// The optional "explanation" section: exact TreeSHAP tables (an artifact) and the reason families
// the features map to. Cores without it ignore the section: it never changes a score.
struct ExplanationSection {
    bool present = false;
    std::string artifact;                 // an artifact of target "libfraud-tree-shap"
    std::vector<ReasonFamily> families;   // codes unique
    std::vector<int32_t> feature_family;  // per features.order entry: an index into families
};

// The optional `model.node_tables` (export/BUNDLE.md "Node tables"): the trees as data, the artifact
// the flat predictor (engine/flat_forest.h) is built from, and the base score it adds.
struct NodeTablesRef {
    bool present = false;
    std::string artifact;      // an artifact of target "libfraud-tree-shap"
    double base_margin = 0.0;  // log-odds added to the trees' sum before the sigmoid
};

struct Manifest {
    std::string bundle_dir;
    int64_t format_version = 0;  // 2 (no calibration) or 3 (calibration present): export/BUNDLE.md
    std::string schema_json;  // the `schema` object (export/SCHEMA.md)
    std::string spec_json;    // `features.spec`
    std::vector<std::string> feature_order;
    std::string model_artifact;  // the artifact that scores
    NodeTablesRef node_tables;
    double threshold = 0.5;
    std::vector<ArtifactEntry> artifacts;
    GnnSection gnn;
    Calibration calibration;  // threshold is on its scale when present
    ExplanationSection explanation;
    // The optional `decision` section (export/BUNDLE.md "decision") as JSON text, "" when absent:
    // parsed by DecisionPolicy::from_manifest against the model's names.
    std::string decision_json;
    std::string text;  // manifest.json's bytes exactly as read and parsed (what a signature covers)
    // The optional `drift` section (export/BUNDLE.md "drift") as JSON text, "" when absent: checked
    // by DriftReference::parse against features.order. It never changes a score.
    std::string drift_json;

    const ArtifactEntry& artifact(const std::string& name) const;
    std::string artifact_path(const ArtifactEntry& entry) const;
};

// Parses <bundle_dir>/manifest.json and checks its format and version. Throws FraudError
// (IO_ERROR, BUNDLE_INVALID naming the key, BUNDLE_VERSION for a format_version outside
// FRAUD_BUNDLE_FORMAT_VERSION_MIN..MAX; BUNDLE_INVALID naming format_version for version 3
// without a `calibration` section or version 2 with one). With a trusted public key, the
// bundle directory, manifest.json and manifest.json.sig pass the permission checks and the
// signature is verified over the bytes read BEFORE they are parsed (verify_manifest_bytes'
// errors), so a signed bundle's tampered manifest is refused as BUNDLE_CHECKSUM, never parsed.
Manifest read_manifest(const std::string& bundle_dir, const std::string& trusted_public_key_path = "");

// Checks every artifact's existence, type, size and sha256 against the manifest; loads nothing.
// Throws FraudError(BUNDLE_CHECKSUM) naming the file, what was expected and what was found: e.g.
// "artifact 'x' path '.' is a directory, not a file", "... is a FIFO (not a regular file)" (never
// blocking on one). Every loader checks its own sealed copy again (engine/sealed_file.h): this
// pass covers the artifacts nothing loads, and refuses a bundle before any of it is loaded.
void verify_artifacts(const Manifest& manifest);

// Refuses (FraudError BUNDLE_INVALID naming the path and its mode) a bundle whose directory,
// manifest.json, manifest.json.sig, any artifact file or any directory on an artifact's path
// (as written and as resolved) is writable by others (o+w), and any of those paths that is or
// passes through a symlink resolving outside the bundle. Group write is allowed (an operator's
// choice of group). Missing files are left to verify_artifacts; directories above the bundle
// are not checked. Hashes and loads nothing.
void check_bundle_permissions(const Manifest& manifest);

// Everything that must pass before anything in a bundle is loaded, in this order:
// check_bundle_permissions; with a non-empty key, the ed25519 signature of manifest.text
// (verify_manifest_bytes); verify_artifacts. Throws the first failure's FraudError.
void verify_bundle(const Manifest& manifest, const std::string& trusted_public_key_path);

}  // namespace libfraud
