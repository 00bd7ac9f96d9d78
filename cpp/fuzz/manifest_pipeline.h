// What fuzz_manifest and fuzz_manifest_shapes run on a manifest: read_manifest and
// verify_artifacts in a bundle whose artifacts a manifest can name, then what engine/model.cpp
// builds from a verified manifest before it loads an artifact (the declared schema, the feature
// plan bound to a store of its layout, the calibration, the decision section's rules, the GNN
// sampler). A FraudError of the
// loader's statuses with a bounded message is the expected answer; anything else is a finding.
#pragma once

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/decision_policy.h"
#include "engine/manifest.h"
#include "features/features.h"
#include "fuzz_util.h"
#include "sampler/sampler.h"
#include "schema/schema.h"
#include "store/temporal_store.h"

namespace libfraud_fuzz {

// Messages are cut to 2,000 characters plus a note of the full length (engine/manifest.cpp).
constexpr size_t kMaxManifestMessage = 2100;

// A bundle whose artifacts a manifest can name: trees/model.so and gnn/model.pt, both "abc"
// (sha256 ba7816bf...15ad, 3 bytes), and an empty file; only manifest.json changes per input.
inline const std::string& manifest_bundle_dir() {
    static const std::string dir = [] {
        std::string d = make_temp_dir("fuzz-manifest");
        write_file(d + "/manifest.json", std::string());
        std::string trees = d + "/trees", gnn = d + "/gnn";
        mkdir(trees.c_str(), 0755);
        mkdir(gnn.c_str(), 0755);
        write_file(trees + "/model.so", std::string("abc"));
        write_file(gnn + "/model.pt", std::string("abc"));
        write_file(d + "/empty", std::string());
        return d;
    }();
    return dir;
}

inline void build_model_parts(const libfraud::Manifest& m) {
    (void)m.artifact_path(m.artifact(m.model_artifact));
    const libfraud::Schema schema = libfraud::parse_schema_json(m.schema_json, "manifest.json: ");
    libfraud::FeaturePlan plan(schema, m.spec_json, "manifest.json: ");
    const libfraud::StoreLayout layout{schema, plan.history_fields()};
    plan.bind(layout);
    (void)plan.names();
    libfraud::TemporalStore store(layout);
    (void)store.size();
    // A calibration section that parsed must score every input without trapping (UBSan).
    for (float p : {0.0f, 1e-9f, 0.5f, 1.0f, -1.0f, 2.0f}) FUZZ_CHECK(!std::isinf(m.calibration.apply(p)));
    // Rules that compiled must evaluate on any row and event (all NaN / missing, then all zero).
    const libfraud::DecisionPolicy policy =
        libfraud::DecisionPolicy::from_manifest(m.decision_json, m.threshold, m.feature_order, schema);
    for (int fill = 0; fill < 2; ++fill) {
        const double value = fill ? 0.0 : std::nan("");
        const std::vector<float> row(m.feature_order.size(), static_cast<float>(value));
        const std::vector<int64_t> ids(schema.num_entities(), 0), codes(schema.num_categorical(), fill ? 0 : -1);
        const std::vector<double> numeric(schema.num_numeric(), value);
        const fraud_event e{1, 0, 1.0, ids.data(), numeric.data(), codes.data()};
        const libfraud::DecisionPolicy::Outcome o = policy.decide(row.data(), e, static_cast<float>(value));
        FUZZ_CHECK(static_cast<int>(o.decision) >= 0 && static_cast<int>(o.decision) <= 2);
        FUZZ_CHECK(policy.rule_count() == 64 || (o.rule_hits >> policy.rule_count()) == 0);
    }
    if (!m.gnn.present) return;
    libfraud::SamplerConfig config;
    config.fanout = m.gnn.fanout;
    config.seed = m.gnn.seed;
    config.strategy = libfraud::parse_strategy(m.gnn.strategy);
    for (const std::string& f : m.gnn.graph_fields) {
        if (schema.numeric_index(f) >= 0) config.graph_fields.push_back({libfraud::FieldRef::Numeric, schema.numeric_index(f)});
        else if (schema.categorical_index(f) >= 0)
            config.graph_fields.push_back({libfraud::FieldRef::Categorical, schema.categorical_index(f)});
    }
    const libfraud::Sampler sampler(schema, config);
    (void)sampler.shape().txn2_x();
}

// Writes the manifest into the bundle and opens it as far as the engine does before loading.
inline void open_manifest(const void* text, size_t size) {
    const std::string& dir = manifest_bundle_dir();
    write_file(dir + "/manifest.json", text, size);
    try {
        libfraud::Manifest m = libfraud::read_manifest(dir);
        libfraud::verify_artifacts(m);
        build_model_parts(m);
    } catch (const libfraud::FraudError& e) {
        const fraud_status s = e.status();
        // read_manifest, verify_artifacts, the schema and spec compilers and the sampler's config
        // check throw only these.
        FUZZ_CHECK(s == FRAUD_STATUS_BUNDLE_INVALID || s == FRAUD_STATUS_BUNDLE_VERSION ||
                   s == FRAUD_STATUS_BUNDLE_CHECKSUM || s == FRAUD_STATUS_INVALID_ARGUMENT ||
                   s == FRAUD_STATUS_IO_ERROR);
        if (std::strlen(e.what()) > kMaxManifestMessage) {
            std::fprintf(stderr, "message of %zu characters: %.300s...\n", std::strlen(e.what()), e.what());
            FUZZ_CHECK(std::strlen(e.what()) <= kMaxManifestMessage);
        }
    }
}

}  // namespace libfraud_fuzz
