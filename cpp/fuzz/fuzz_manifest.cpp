// bytes -> <bundle>/manifest.json -> read_manifest + verify_artifacts, then what the engine builds
// from a verified manifest before it loads any artifact: the declared schema (parse_schema_json),
// the feature plan (FeaturePlan from features.spec, bound to a store of its layout), the calibration
// (applied to a few scores) and, for a GNN section, the sampler over the schema's graph fields. A
// FraudError is the expected answer to a bad manifest; a crash, UB, leak or any other exception
// (json::exception included) is a finding.
#include <sys/stat.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "engine/manifest.h"
#include "features/features.h"
#include "fuzz_util.h"
#include "sampler/sampler.h"
#include "schema/schema.h"
#include "store/temporal_store.h"

namespace {

// A bundle whose artifacts a seed can name: trees/model.so and gnn/model.pt, both "abc"
// (sha256 ba7816bf...15ad, 3 bytes), and an empty file; only manifest.json changes per input.
const std::string& bundle_dir() {
    static const std::string dir = [] {
        std::string d = libfraud_fuzz::make_temp_dir("fuzz-manifest");
        libfraud_fuzz::write_file(d + "/manifest.json", std::string());
        std::string trees = d + "/trees", gnn = d + "/gnn";
        mkdir(trees.c_str(), 0755);
        mkdir(gnn.c_str(), 0755);
        libfraud_fuzz::write_file(trees + "/model.so", std::string("abc"));
        libfraud_fuzz::write_file(gnn + "/model.pt", std::string("abc"));
        libfraud_fuzz::write_file(d + "/empty", std::string());
        return d;
    }();
    return dir;
}

// What engine/model.cpp does with a verified manifest, short of loading an artifact.
void build_model_parts(const libfraud::Manifest& m) {
    (void)m.artifact_path(m.artifact(m.model_artifact));
    const libfraud::Schema schema = libfraud::parse_schema_json(m.schema_json, "manifest.json: ");
    libfraud::FeaturePlan plan(schema, m.spec_json, "manifest.json: ");
    const libfraud::StoreLayout layout{schema, plan.history_fields()};
    plan.bind(layout);
    (void)plan.names();
    libfraud::TemporalStore store(layout);
    (void)store.size();
    // A calibration section that parsed must score every input without trapping (UBSan).
    for (float p : {0.0f, 1e-9f, 0.5f, 1.0f, -1.0f, 2.0f})
        if (std::isinf(m.calibration.apply(p))) __builtin_trap();
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string& dir = bundle_dir();
    libfraud_fuzz::write_file(dir + "/manifest.json", data, size);
    try {
        libfraud::Manifest m = libfraud::read_manifest(dir);
        libfraud::verify_artifacts(m);
        build_model_parts(m);
    } catch (const libfraud::FraudError& e) {
        const fraud_status s = e.status();
        // read_manifest, verify_artifacts, the schema and spec compilers and the sampler's config
        // check throw only these.
        if (s != FRAUD_STATUS_BUNDLE_INVALID && s != FRAUD_STATUS_BUNDLE_VERSION &&
            s != FRAUD_STATUS_BUNDLE_CHECKSUM && s != FRAUD_STATUS_INVALID_ARGUMENT &&
            s != FRAUD_STATUS_IO_ERROR)
            __builtin_trap();
    }
    return 0;
}
