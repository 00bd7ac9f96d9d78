#include "engine/manifest.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <type_traits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/bounded_json.h"
#include "common/error.h"
#include "engine/sealed_file.h"
#include "engine/sha256.h"
#include "engine/signature.h"

namespace libfraud {
namespace {

using nlohmann::json;

// A manifest nests a handful of levels; deeper is hostile (and every recursive walk of it, dump()
// and destruction included, would need stack in proportion: 1,800 levels overflow 256 KiB).
constexpr int kMaxJsonDepth = 64;
// A value shown in a message is cut shorter than the message (common/error.h bounds those).
constexpr size_t kMaxValueShown = 120;

[[noreturn]] void invalid(const std::string& what) {
    throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "manifest.json: " + bounded(what, kMaxMessage));
}

// A value as a message shows it: dumped (safe: parse_manifest_json bounds the depth), then cut.
std::string shown(const json& value) { return bounded(value.dump(), kMaxValueShown); }

const json& require(const json& object, const char* key, const std::string& where) {
    if (!object.is_object() || !object.contains(key)) invalid("missing key '" + where + key + "'");
    return object.at(key);
}

// An integer JSON value in T's range. nlohmann converts a float to an integer with a plain cast,
// undefined behaviour out of range (1e20 -> int64): integers are taken only from integer values.
template <typename T>
T integer_in_range(const json& value, const std::string& name) {
    static_assert(std::is_integral_v<T>);
    if (!value.is_number_integer()) invalid("key '" + name + "' must be an integer, got " + shown(value));
    if (value.is_number_unsigned()) {
        const uint64_t u = value.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
            invalid("key '" + name + "' is out of range: " + shown(value));
        return static_cast<T>(u);
    }
    const int64_t v = value.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
        if (v < 0) invalid("key '" + name + "' must not be negative: " + shown(value));
    } else {
        if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            v > static_cast<int64_t>(std::numeric_limits<T>::max()))
            invalid("key '" + name + "' is out of range: " + shown(value));
    }
    return static_cast<T>(v);
}

template <typename T>
struct is_integer_vector : std::false_type {};
template <typename T>
struct is_integer_vector<std::vector<T>> : std::is_integral<T> {};

template <typename T>
T get_as(const json& object, const char* key, const std::string& where) {
    const json& value = require(object, key, where);
    const std::string name = where + key;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        return integer_in_range<T>(value, name);
    } else if constexpr (is_integer_vector<T>::value) {
        if (!value.is_array()) invalid("key '" + name + "' must be a list, got " + shown(value));
        T out;
        for (size_t i = 0; i < value.size(); ++i)
            out.push_back(integer_in_range<typename T::value_type>(value[i], name + "[" + std::to_string(i) + "]"));
        return out;
    } else {
        try {
            return value.get<T>();
        } catch (const json::exception&) {
            invalid("key '" + name + "' has the wrong type: " + shown(value));
        }
    }
}

// A bundle is code: an artifact path that climbs out of the bundle is refused outright.
void check_relative_path(const std::string& path, const std::string& name) {
    bool escapes = path.empty() || path[0] == '/' || path == ".." || path.rfind("../", 0) == 0 ||
                   path.find("/../") != std::string::npos ||
                   (path.size() >= 3 && path.compare(path.size() - 3, 3, "/..") == 0);
    if (escapes) invalid("artifact '" + name + "' has a path outside the bundle: '" + path + "'");
}

void read_gnn_section(const json& gnn, Manifest& m) {
    GnnSection& g = m.gnn;
    g.present = true;
    const json& sampler = require(gnn, "sampler", "gnn.");
    g.fanout = get_as<uint32_t>(sampler, "fanout", "gnn.sampler.");
    g.strategy = get_as<std::string>(sampler, "strategy", "gnn.sampler.");
    g.seed = get_as<uint64_t>(sampler, "seed", "gnn.sampler.");
    if (sampler.contains("graph_fields"))
        g.graph_fields = get_as<std::vector<std::string>>(sampler, "graph_fields", "gnn.sampler.");
    g.embedding_dim = get_as<int64_t>(gnn, "embedding_dim", "gnn.");
    g.output_features = get_as<std::vector<std::string>>(gnn, "output_features", "gnn.");
    g.default_backend = get_as<std::string>(gnn, "default_backend", "gnn.");
    const json& backends = require(gnn, "backends", "gnn.");
    if (!backends.is_array() || backends.empty()) invalid("'gnn.backends' is not a non-empty list");
    for (size_t i = 0; i < backends.size(); ++i) {
        const std::string where = "gnn.backends[" + std::to_string(i) + "].";
        GnnBackendEntry entry;
        entry.kind = get_as<std::string>(backends[i], "kind", where);
        entry.artifact = get_as<std::string>(backends[i], "artifact", where);
        if (backends[i].contains("cpu_flags"))
            entry.cpu_flags = get_as<std::vector<std::string>>(backends[i], "cpu_flags", where);
        m.artifact(entry.artifact);  // must be a listed (so checksummed) artifact
        g.backends.push_back(entry);
    }
    if (g.embedding_dim < 1 || g.output_features.size() != static_cast<size_t>(g.embedding_dim) + 1)
        invalid("'gnn.output_features' must hold the logit and embedding_dim embedding columns");
}

// A finite JSON number: booleans and strings are refused (nlohmann would turn true into 1.0).
double finite_number(const json& value, const std::string& name) {
    if (!value.is_number()) invalid("key '" + name + "' must be a number, got " + shown(value));
    const double v = value.get<double>();
    if (!std::isfinite(v)) invalid("key '" + name + "' must be finite, got " + shown(value));
    return v;
}

std::vector<double> calibration_points(const json& c, const char* key) {
    const std::string name = std::string("calibration.") + key;
    const json& list = require(c, key, "calibration.");
    if (!list.is_array()) invalid("key '" + name + "' must be a list of numbers, got " + shown(list));
    if (list.size() < 2 || list.size() > Calibration::kMaxPoints)
        invalid("key '" + name + "' has " + std::to_string(list.size()) + " points; an isotonic calibrator has 2 to " +
                std::to_string(Calibration::kMaxPoints));
    std::vector<double> out;
    out.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i)
        out.push_back(finite_number(list[i], name + "[" + std::to_string(i) + "]"));
    return out;
}

// Every key of the section must be one this reader applies: an ignored key (a newer writer's
// option) could change the formula, so the scores would be silently wrong.
void refuse_unknown_keys(const json& c, std::initializer_list<const char*> known, const std::string& method) {
    for (auto it = c.begin(); it != c.end(); ++it) {
        bool ok = false;
        for (const char* k : known) ok = ok || it.key() == k;
        if (!ok)
            invalid("unknown key 'calibration." + it.key() + "' for method \"" + method +
                    "\" (this libfraud would not apply it; refusing rather than serve different scores)");
    }
}

void read_calibration_section(const json& c, Manifest& m) {
    if (!c.is_object()) invalid("'calibration' must be an object, got " + shown(c));
    Calibration& cal = m.calibration;
    const std::string method = get_as<std::string>(c, "method", "calibration.");
    if (c.contains("fitted_on") && !c.at("fitted_on").is_string())
        invalid("key 'calibration.fitted_on' must be a string, got " + shown(c.at("fitted_on")));
    if (method == "platt") {
        refuse_unknown_keys(c, {"method", "a", "b", "fitted_on"}, method);
        cal.a = finite_number(require(c, "a", "calibration."), "calibration.a");
        cal.b = finite_number(require(c, "b", "calibration."), "calibration.b");
        if (!(cal.a > 0.0))  // a calibrator keeps the trees' ranking, as isotonic's non-decreasing y does
            invalid("key 'calibration.a' must be > 0 (a calibrator must keep the trees' ranking), got " +
                    shown(c.at("a")));
        cal.method = Calibration::Method::Platt;
    } else if (method == "isotonic") {
        refuse_unknown_keys(c, {"method", "x", "y", "fitted_on"}, method);
        cal.x = calibration_points(c, "x");
        cal.y = calibration_points(c, "y");
        if (cal.x.size() != cal.y.size())
            invalid("'calibration.x' has " + std::to_string(cal.x.size()) + " points but 'calibration.y' has " +
                    std::to_string(cal.y.size()));
        for (size_t i = 0; i < cal.x.size(); ++i) {
            const std::string at = "[" + std::to_string(i) + "]";
            if (i > 0 && !(cal.x[i] > cal.x[i - 1]))
                invalid("'calibration.x' must be strictly increasing: x" + at + " = " + shown(c.at("x")[i]) +
                        " after " + shown(c.at("x")[i - 1]));
            if (!(cal.y[i] >= 0.0 && cal.y[i] <= 1.0))
                invalid("'calibration.y' must lie in [0, 1]: y" + at + " = " + shown(c.at("y")[i]));
            if (i > 0 && !(cal.y[i] >= cal.y[i - 1]))
                invalid("'calibration.y' must be non-decreasing: y" + at + " = " + shown(c.at("y")[i]) +
                        " after " + shown(c.at("y")[i - 1]));
        }
        cal.method = Calibration::Method::Isotonic;
    } else {
        invalid("'calibration.method' is \"" + method + "\"; this libfraud applies \"platt\" or \"isotonic\"");
    }
}

// Codes and names unique, every feature in a family: checked here so the core trusts them.
void read_explanation_section(const json& e, Manifest& m) {
    if (!e.is_object()) invalid("'explanation' must be an object, got " + shown(e));
    ExplanationSection& x = m.explanation;
    x.present = true;
    if (get_as<std::string>(e, "format", "explanation.") != "libfraud-reasons")
        invalid("'explanation.format' is not \"libfraud-reasons\"");
    const int64_t version = get_as<int64_t>(e, "version", "explanation.");
    if (version != 1)
        invalid("'explanation.version' is " + std::to_string(version) + "; this libfraud reads version 1");
    x.artifact = get_as<std::string>(e, "artifact", "explanation.");
    const ArtifactEntry& artifact = m.artifact(x.artifact);  // listed, so checksummed
    if (artifact.target != "libfraud-tree-shap")
        invalid("explanation artifact '" + x.artifact + "' has target '" + artifact.target +
                "'; expected 'libfraud-tree-shap'");
    const json& families = require(e, "families", "explanation.");
    if (!families.is_array() || families.empty()) invalid("'explanation.families' is not a non-empty list");
    for (size_t i = 0; i < families.size(); ++i) {
        const std::string where = "explanation.families[" + std::to_string(i) + "].";
        ReasonFamily f;
        f.code = get_as<int32_t>(families[i], "code", where);
        f.name = get_as<std::string>(families[i], "name", where);
        f.text = get_as<std::string>(families[i], "text", where);
        if (f.code <= 0) invalid("'" + where + "code' must be > 0, got " + std::to_string(f.code));
        if (f.name.empty()) invalid("'" + where + "name' is empty");
        for (const ReasonFamily& other : x.families) {
            if (other.code == f.code) invalid("'" + where + "code' " + std::to_string(f.code) + " is also family '" + other.name + "''s");
            if (other.name == f.name) invalid("'" + where + "name' '" + f.name + "' appears twice");
        }
        x.families.push_back(f);
    }
    x.feature_family = get_as<std::vector<int32_t>>(e, "feature_family", "explanation.");
    if (x.feature_family.size() != m.feature_order.size())
        invalid("'explanation.feature_family' has " + std::to_string(x.feature_family.size()) +
                " entries but features.order has " + std::to_string(m.feature_order.size()));
    for (size_t i = 0; i < x.feature_family.size(); ++i) {
        if (x.feature_family[i] < 0 || static_cast<size_t>(x.feature_family[i]) >= x.families.size())
            invalid("'explanation.feature_family[" + std::to_string(i) + "]' is " +
                    std::to_string(x.feature_family[i]) + ", not an index into explanation.families");
    }
}

void read_node_tables(const json& n, Manifest& m) {
    if (!n.is_object()) invalid("'model.node_tables' must be an object, got " + shown(n));
    NodeTablesRef& t = m.node_tables;
    t.present = true;
    t.artifact = get_as<std::string>(n, "artifact", "model.node_tables.");
    const ArtifactEntry& artifact = m.artifact(t.artifact);  // listed, so checksummed
    if (artifact.target != "libfraud-tree-shap")
        invalid("model.node_tables artifact '" + t.artifact + "' has target '" + artifact.target +
                "'; expected 'libfraud-tree-shap'");
    t.base_margin = finite_number(require(n, "base_margin", "model.node_tables."), "model.node_tables.base_margin");
}

json parse_manifest_json(const std::string& text) {
    json doc;
    JsonParseError error;
    if (!parse_bounded_json(text, kMaxJsonDepth, doc, error)) {
        // Syntax errors, NaN and numbers beyond a double (1e400) are reported by key, not only by
        // byte offset; a deep document is hostile (a manifest nests a handful of levels).
        invalid(std::string("not valid JSON") + (error.path.empty() ? "" : " near '" + error.path + "'") + ": " +
                error.what);
    }
    return doc;
}

// ---- permissions: a file others may write is code others may run.

std::string real_path(const std::string& path) {  // "" when it does not resolve (missing)
    char* resolved = realpath(path.c_str(), nullptr);
    if (resolved == nullptr) return "";
    std::string out(resolved);
    std::free(resolved);
    return out;
}

void refuse_if_writable_by_others(const std::string& path) {
    struct stat info {};
    if (stat(path.c_str(), &info) != 0) return;  // missing: verify_artifacts names it
    if (info.st_mode & S_IWOTH) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         path + ": writable by others (mode " + mode +
                             "); a bundle is code, so none of its files or directories may be (chmod o-w)");
    }
}

// rel (inside the bundle) must resolve inside root (the bundle's real path), and neither it nor
// a directory on its way, as written or as resolved, may be writable by others.
void check_bundle_path(const std::string& bundle_dir, const std::string& root, const std::string& rel) {
    for (size_t slash = rel.find('/'); slash != std::string::npos; slash = rel.find('/', slash + 1))
        refuse_if_writable_by_others(bundle_dir + "/" + rel.substr(0, slash));
    const std::string path = bundle_dir + "/" + rel;
    const std::string real = real_path(path);
    if (real.empty()) return;  // missing or a dangling link: nothing to load; verify_artifacts refuses it
    const std::string prefix = root == "/" ? root : root + "/";
    // The bundle directory itself ('.') is inside it: verify_artifacts says it is no file.
    if (real != root && real.compare(0, prefix.size(), prefix) != 0)
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         path + ": a symlink leading outside the bundle (to " + real + ")");
    const std::string real_rel = real == root ? "" : real.substr(prefix.size());
    for (size_t slash = real_rel.find('/'); slash != std::string::npos; slash = real_rel.find('/', slash + 1))
        refuse_if_writable_by_others(prefix + real_rel.substr(0, slash));
    refuse_if_writable_by_others(path);
}

// The directory, manifest.json and its signature; returns the bundle's real path.
std::string check_manifest_permissions(const std::string& bundle_dir) {
    const std::string root = real_path(bundle_dir);
    if (root.empty()) throw FraudError(FRAUD_STATUS_IO_ERROR, bundle_dir + ": not a bundle directory");
    refuse_if_writable_by_others(bundle_dir);
    check_bundle_path(bundle_dir, root, "manifest.json");
    check_bundle_path(bundle_dir, root, kManifestSignatureFile);
    return root;
}

// export/BUNDLE.md "Versions and compatibility": 2 is a bundle without a calibration section,
// 3 one with it. A core that reads only version 2 ignores unknown top-level keys, so a calibrated
// bundle marked 2 would be served there uncalibrated against a calibrated-scale threshold: the
// writer marks it 3 (which such a core refuses), and this reader refuses the two mismatches.
void check_format_version(int64_t version, bool has_calibration) {
    if (version < FRAUD_BUNDLE_FORMAT_VERSION_MIN || version > FRAUD_BUNDLE_FORMAT_VERSION_MAX)
        throw FraudError(FRAUD_STATUS_BUNDLE_VERSION,
                         "manifest.json: format_version " + std::to_string(version) +
                             " is not supported; this libfraud reads versions " +
                             std::to_string(FRAUD_BUNDLE_FORMAT_VERSION_MIN) + " to " +
                             std::to_string(FRAUD_BUNDLE_FORMAT_VERSION_MAX) +
                             " (2: without 'calibration', 3: with it)");
    if (version == 3 && !has_calibration)
        invalid("format_version 3 without a 'calibration' section: version 3 means a calibrated bundle "
                "(an uncalibrated bundle is written as version 2, which older cores also read)");
    if (version == 2 && has_calibration)
        invalid("format_version 2 with a 'calibration' section: a calibrated bundle must be version 3 "
                "(a version-2 reader would ignore the section and serve uncalibrated scores "
                "against a calibrated-scale threshold)");
}

}  // namespace

const ArtifactEntry& Manifest::artifact(const std::string& name) const {
    for (const ArtifactEntry& entry : artifacts)
        if (entry.name == name) return entry;
    throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                     "manifest.json: no artifact named '" + name + "' in 'artifacts'");
}

std::string Manifest::artifact_path(const ArtifactEntry& entry) const {
    return bundle_dir + "/" + entry.path;
}

Manifest read_manifest(const std::string& bundle_dir, const std::string& trusted_public_key_path) {
    struct stat info {};
    if (stat(bundle_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
        throw FraudError(FRAUD_STATUS_IO_ERROR, bundle_dir + ": not a bundle directory");
    if (!trusted_public_key_path.empty()) check_manifest_permissions(bundle_dir);
    const std::string path = bundle_dir + "/manifest.json";
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FraudError(FRAUD_STATUS_IO_ERROR, path + ": cannot open (is this a bundle?)");
    std::stringstream text;
    text << in.rdbuf();
    // Authenticate before parsing: a signed bundle's manifest is never parsed unless it verifies.
    if (!trusted_public_key_path.empty()) verify_manifest_bytes(bundle_dir, text.str(), trusted_public_key_path);

    // JSON has no byte order mark (RFC 8259); Python's reader refuses one too, so both agree.
    if (text.str().rfind("\xEF\xBB\xBF", 0) == 0)
        invalid("starts with a UTF-8 byte order mark; write it without one (as json.dump does)");
    const json doc = parse_manifest_json(text.str());
    if (!doc.is_object()) invalid("the top level is not an object");

    Manifest m;
    m.bundle_dir = bundle_dir;
    m.text = text.str();
    if (get_as<std::string>(doc, "format", "") != "libfraud-bundle")
        invalid("'format' is not \"libfraud-bundle\"");
    m.format_version = get_as<int64_t>(doc, "format_version", "");
    check_format_version(m.format_version, doc.contains("calibration"));

    const json& features = require(doc, "features", "");
    m.schema_json = require(doc, "schema", "").dump();
    m.spec_json = require(features, "spec", "features.").dump();
    m.feature_order = get_as<std::vector<std::string>>(features, "order", "features.");

    const json& model = require(doc, "model", "");
    m.model_artifact = get_as<std::string>(model, "artifact", "model.");
    m.threshold = finite_number(require(doc, "threshold", ""), "threshold");
    if (m.threshold < 0.0 || m.threshold > 1.0)
        invalid("'threshold' must be a score in [0, 1], got " + shown(doc.at("threshold")));

    const json& artifacts = require(doc, "artifacts", "");
    if (!artifacts.is_array() || artifacts.empty()) invalid("'artifacts' is not a non-empty list");
    for (size_t i = 0; i < artifacts.size(); ++i) {
        const std::string where = "artifacts[" + std::to_string(i) + "].";
        ArtifactEntry entry;
        entry.name = get_as<std::string>(artifacts[i], "name", where);
        entry.path = get_as<std::string>(artifacts[i], "path", where);
        entry.target = get_as<std::string>(artifacts[i], "target", where);
        entry.sha256 = get_as<std::string>(artifacts[i], "sha256", where);
        entry.size = get_as<uint64_t>(artifacts[i], "size", where);
        check_relative_path(entry.path, entry.name);
        for (const ArtifactEntry& other : m.artifacts)
            if (other.name == entry.name) invalid("'" + where + "name' '" + entry.name + "' is also an earlier artifact's");
        if (entry.sha256.size() != 64) invalid("'" + where + "sha256' is not 64 hex digits");
        m.artifacts.push_back(entry);
    }
    m.artifact(m.model_artifact);  // the model must name an artifact that exists in the list
    if (doc.contains("gnn")) read_gnn_section(doc.at("gnn"), m);
    if (doc.contains("calibration")) read_calibration_section(doc.at("calibration"), m);
    if (doc.contains("explanation")) read_explanation_section(doc.at("explanation"), m);
    if (doc.contains("decision")) m.decision_json = doc.at("decision").dump();
    if (doc.contains("drift")) m.drift_json = doc.at("drift").dump();
    if (model.contains("node_tables")) read_node_tables(model.at("node_tables"), m);
    // `model` may carry provenance (name, version, data_fingerprint...): information, not read here.
    return m;
}

float Calibration::apply(float p) const {
    const double q = p;
    if (method == Method::None || std::isnan(q)) return p;
    if (method == Method::Platt) {
        // Written as in calibration.py (clip, log(c / (1 - c)), sigmoid) so both round alike;
        // exp overflowing to inf gives 0, never NaN.
        const double c = q < kClip ? kClip : (q > 1.0 - kClip ? 1.0 - kClip : q);
        const double z = a * std::log(c / (1.0 - c)) + b;
        return static_cast<float>(1.0 / (1.0 + std::exp(-z)));
    }
    // numpy.interp: y[0] left of x[0], y[n-1] from x[n-1] on, else the segment [x[j], x[j+1]).
    const size_t n = x.size();
    if (q < x[0]) return static_cast<float>(y[0]);
    if (q >= x[n - 1]) return static_cast<float>(y[n - 1]);
    const size_t j = static_cast<size_t>(std::upper_bound(x.begin(), x.end(), q) - x.begin()) - 1;
    if (q == x[j]) return static_cast<float>(y[j]);
    const double slope = (y[j + 1] - y[j]) / (x[j + 1] - x[j]);
    return static_cast<float>(slope * (q - x[j]) + y[j]);
}

void verify_artifacts(const Manifest& manifest) {
    for (const ArtifactEntry& entry : manifest.artifacts) {
        const std::string path = manifest.artifact_path(entry);
        // One open: the file whose type and size are checked is the file hashed.
        struct stat info {};
        struct Closer {
            int fd;
            ~Closer() { close(fd); }
        } file{open_regular_file(path, "artifact '" + entry.name + "' path '" + entry.path + "'", &info)};
        if (static_cast<uint64_t>(info.st_size) != entry.size)
            throw FraudError(FRAUD_STATUS_BUNDLE_CHECKSUM,
                             "artifact '" + entry.name + "': " + path + " has " +
                                 std::to_string(info.st_size) + " bytes, the manifest says " +
                                 std::to_string(entry.size) + " (truncated or replaced)");
        const std::string found = sha256_fd_hex(file.fd, path);
        if (found != entry.sha256)
            throw FraudError(FRAUD_STATUS_BUNDLE_CHECKSUM,
                             "artifact '" + entry.name + "': sha256 of " + path + " is " + found +
                                 ", the manifest says " + entry.sha256 + " (altered)");
    }
}

void check_bundle_permissions(const Manifest& manifest) {
    const std::string root = check_manifest_permissions(manifest.bundle_dir);
    for (const ArtifactEntry& entry : manifest.artifacts) check_bundle_path(manifest.bundle_dir, root, entry.path);
}

void verify_bundle(const Manifest& manifest, const std::string& trusted_public_key_path) {
    check_bundle_permissions(manifest);
    if (!trusted_public_key_path.empty())
        verify_manifest_bytes(manifest.bundle_dir, manifest.text, trusted_public_key_path);
    verify_artifacts(manifest);
}

}  // namespace libfraud
