// bytes -> a valid manifest with some of its values replaced by hostile shapes -> the manifest
// pipeline of fuzz_manifest (manifest_pipeline.h). Byte mutations of a manifest's text rarely build
// a 100,000-deep nesting or a 2e6-element array (50 s of fuzz_manifest never did); here a few bytes
// ask for one, at a key the loader reads with a type (format_version, threshold, artifacts[].size,
// the schema's and the spec's keys...), so the depth bound, the message bounds and every typed
// read meet them. The expected answer is a FraudError with a bounded message; anything else, a
// crash (a stack overflow above all) or a message longer than the bound, is a finding.
// Input: u8 template (mod 4: trees; with a GNN section; calibrated Platt; calibrated isotonic),
// then up to 4 ops of 8 bytes: u8 key (mod the list below), u8 shape (mod the shapes below),
// u16 p, u32 q. Sizes are log-uniform: n = q mod 2^(p mod bits) (+1 for depths), so small and
// huge both come up.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "features/features.h"
#include "manifest_pipeline.h"
#include "payments.h"

namespace {

using nlohmann::json;

constexpr size_t kOpBytes = 8;
constexpr size_t kMaxOps = 4;

// Keys the loader reads with a type, and a few containers; pointers a template lacks are skipped
// unless their parent is there (then they are added).
const char* const kKeys[] = {
    "/format_version", "/threshold", "/artifacts", "/artifacts/0", "/artifacts/0/size", "/artifacts/0/sha256",
    "/artifacts/0/path", "/artifacts/0/name", "/artifacts/0/target", "/model", "/model/artifact", "/features",
    "/features/order", "/features/order/0", "/features/spec", "/features/spec/max_scan", "/features/spec/features",
    "/features/spec/features/5", "/features/spec/features/5/window_ms", "/features/spec/features/5/entity",
    "/schema", "/schema/entities", "/schema/entities/0", "/schema/entities/0/name", "/schema/entities/0/required",
    "/schema/time/utc_offsets", "/schema/time/utc_offsets/0/0", "/schema/categorical/0/codes",
    "/schema/label/delay_ms", "/schema/format", "/calibration", "/calibration/a", "/calibration/x",
    "/calibration/y/0", "/gnn", "/gnn/sampler/fanout", "/gnn/sampler/graph_fields", "/gnn/output_features",
    "/gnn/embedding_dim", "/gnn/backends/0/kind", "/gnn/backends", "/explanation", "/extra"};
constexpr size_t kNumKeys = sizeof(kKeys) / sizeof(kKeys[0]);

json base_manifest(int which) {
    // A few features of the common kinds (the payments preset's full spec costs ten times more per
    // input and reaches nothing more here); features[5] is a window, as kKeys expects.
    const std::string spec =
        R"({"format": "libfraud-features", "version": 1, "max_scan": 16, "features": [)"
        R"({"name": "amount", "kind": "amount"}, {"name": "hour", "kind": "calendar", "part": "hour"},)"
        R"({"name": "mcc", "kind": "categorical", "field": "mcc"},)"
        R"({"name": "card_device_is_new", "kind": "novelty", "entity": "card", "of": {"entity": "device"}},)"
        R"({"name": "card_fraud_7d", "kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 604800000},)"
        R"({"name": "card_sum_1h", "kind": "window", "entity": "card", "agg": "sum", "field": "amount", "window_ms": 3600000}]})";
    const libfraud::FeaturePlan plan(payments::schema(), spec, "fuzz: ");
    json m = {{"format", "libfraud-bundle"}, {"format_version", 2}, {"schema", json::parse(payments::schema_json())},
              {"features", {{"spec", json::parse(spec)}, {"order", plan.names()}}},
              {"model", {{"artifact", "trees"}}}, {"threshold", 0.5},
              {"artifacts", json::array({{{"name", "trees"}, {"path", "trees/model.so"}, {"target", "tl2cgen-c-shared"},
                                          {"sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
                                          {"size", 3}}})}};
    if (which == 1) {
        m["artifacts"].push_back({{"name", "gnn"}, {"path", "gnn/model.pt"}, {"target", "torchscript"},
                                  {"sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
                                  {"size", 3}});
        m["gnn"] = {{"sampler", {{"fanout", 10}, {"strategy", "most_recent"}, {"seed", 0}, {"graph_fields", {"mcc"}}}},
                    {"embedding_dim", 2}, {"output_features", {"gnn_logit", "gnn_emb_0", "gnn_emb_1"}},
                    {"default_backend", "torchscript"},
                    {"backends", json::array({{{"kind", "torchscript"}, {"artifact", "gnn"}, {"cpu_flags", {"avx2"}}}})}};
        for (const char* f : {"gnn_logit", "gnn_emb_0", "gnn_emb_1"}) m["features"]["order"].push_back(f);
    } else if (which == 2) {
        m["format_version"] = 3;
        m["calibration"] = {{"method", "platt"}, {"a", 1.5}, {"b", -2.0}, {"fitted_on", "valid"}};
    } else if (which == 3) {
        m["format_version"] = 3;
        m["calibration"] = {{"method", "isotonic"}, {"x", {0.0, 0.1, 0.5, 1.0}}, {"y", {0.0, 0.01, 0.2, 0.9}}};
    }
    return m;
}

std::string repeat(const std::string& s, size_t n) {
    std::string out;
    out.reserve(s.size() * n);
    for (size_t i = 0; i < n; ++i) out += s;
    return out;
}

// The text of a hostile value.
std::string shape(uint8_t kind, uint16_t p, uint32_t q) {
    auto size = [&](unsigned bits) { return static_cast<size_t>(q % (uint32_t{1} << (p % bits))); };
    static const char* const kNumbers[] = {"1e308", "-1e308", "1e400", "-1e400", "18446744073709551616",
                                           "9223372036854775807", "-9223372036854775808", "4.9e-324", "-0.0",
                                           "0.5", "3", "-1", "1e-400", "2147483648", "4294967296", "0"};
    static const char* const kOthers[] = {"true", "false", "null", "{}", "[]", "\"\"", "\"0.5\"", "\"..\"",
                                          "\".\"", "\"/\"", "\"trees/../../etc/passwd\"", "\"\\u0000\"",
                                          "[\"trees\"]", "{\"artifact\": \"trees\"}"};
    switch (kind % 10) {
        case 0: {  // arrays nested up to 2^17 deep
            const size_t d = size(18) + 1;
            return repeat("[", d) + repeat("]", d);
        }
        case 1: {  // objects nested up to 2^17 deep
            const size_t d = size(18) + 1;
            return repeat("{\"a\":", d) + "0" + repeat("}", d);
        }
        case 2: {  // arrays and objects alternating, with a typed-looking key inside
            const size_t d = size(17) + 1;
            return repeat("[{\"size\":", d) + "1" + repeat("}]", d);
        }
        case 3: {  // up to 2^21 (2.1e6) numbers
            const size_t n = size(22);
            std::string out = "[";
            for (size_t i = 0; i < n; ++i) out += (i ? ",0" : "0");
            return out + "]";
        }
        case 4: {  // up to 2^19 objects
            const size_t n = size(20);
            std::string out = "[";
            for (size_t i = 0; i < n; ++i) out += (i ? ",{\"name\":\"x\"}" : "{\"name\":\"x\"}");
            return out + "]";
        }
        case 5:  // a string of up to 2^22 characters, some of them escapes
            return "\"" + repeat(p & 1 ? "\\u00e9" : "x", size(23)) + "\"";
        case 6:
            return kNumbers[q % (sizeof(kNumbers) / sizeof(kNumbers[0]))];
        case 7:
            return kOthers[q % (sizeof(kOthers) / sizeof(kOthers[0]))];
        case 8: {  // unbalanced: deep, never closed
            return repeat("[", size(18) + 1);
        }
        default: {  // an object of up to 2^19 keys
            const size_t n = size(20);
            std::string out = "{";
            for (size_t i = 0; i < n; ++i) out += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
            return out + "}";
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    static const json templates[] = {base_manifest(0), base_manifest(1), base_manifest(2), base_manifest(3)};
    json m = templates[data[0] % 4];
    std::vector<std::string> values;
    for (size_t k = 0; k < kMaxOps && 1 + (k + 1) * kOpBytes <= size; ++k) {
        const uint8_t* op = data + 1 + k * kOpBytes;
        uint16_t p;
        uint32_t q;
        std::memcpy(&p, op + 2, 2);
        std::memcpy(&q, op + 4, 4);
        const json::json_pointer at(kKeys[op[0] % kNumKeys]);
        if (!m.contains(at) && !m.contains(at.parent_pointer())) continue;
        const json& parent = m.at(at.parent_pointer());
        if (!parent.is_object() && !(parent.is_array() && m.contains(at))) continue;
        // A placeholder string, replaced by the raw text after dump() (which would recurse).
        const std::string mark = "\x01" + std::to_string(values.size());
        m[at] = mark;
        values.push_back(shape(op[1], p, q));
    }
    std::string text = m.dump(1);
    for (size_t i = 0; i < values.size(); ++i) {
        const std::string quoted = "\"\\u0001" + std::to_string(i) + "\"";
        const size_t pos = text.find(quoted);
        if (pos != std::string::npos) text.replace(pos, quoted.size(), values[i]);  // gone when a later op replaced a parent
    }
    libfraud_fuzz::open_manifest(text.data(), text.size());
    return 0;
}
