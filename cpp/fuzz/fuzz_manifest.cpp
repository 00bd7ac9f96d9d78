// bytes -> <bundle>/manifest.json -> read_manifest + verify_artifacts, then what the engine builds
// from a verified manifest before it loads any artifact (manifest_pipeline.h): the declared schema
// (parse_schema_json), the feature plan (FeaturePlan from features.spec, bound to a store of its
// layout), the calibration (applied to a few scores) and, for a GNN section, the sampler over the
// schema's graph fields. A FraudError with a bounded message is the expected answer to a bad
// manifest; a crash, UB, leak or any other exception (json::exception included) is a finding.
// fuzz_manifest_shapes reaches the shapes byte mutations rarely make (deep nesting, huge arrays).
#include <cstddef>
#include <cstdint>

#include "manifest_pipeline.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    libfraud_fuzz::open_manifest(data, size);
    return 0;
}
