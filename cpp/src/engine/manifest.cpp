#include "engine/manifest.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <type_traits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "engine/sha256.h"
#include "engine/signature.h"

namespace libfraud {
namespace {

using nlohmann::json;

[[noreturn]] void invalid(const std::string& what) {
    throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "manifest.json: " + what);
}

const json& require(const json& object, const char* key, const std::string& where) {
    if (!object.is_object() || !object.contains(key)) invalid("missing key '" + where + key + "'");
    return object.at(key);
}

// An integer JSON value in T's range. nlohmann converts a float to an integer with a plain cast,
// undefined behaviour out of range (1e20 -> int64): integers are taken only from integer values.
template <typename T>
T integer_in_range(const json& value, const std::string& name) {
    static_assert(std::is_integral_v<T>);
    if (!value.is_number_integer()) invalid("key '" + name + "' must be an integer, got " + value.dump());
    if (value.is_number_unsigned()) {
        const uint64_t u = value.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
            invalid("key '" + name + "' is out of range: " + value.dump());
        return static_cast<T>(u);
    }
    const int64_t v = value.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
        if (v < 0) invalid("key '" + name + "' must not be negative: " + value.dump());
    } else {
        if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            v > static_cast<int64_t>(std::numeric_limits<T>::max()))
            invalid("key '" + name + "' is out of range: " + value.dump());
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
        if (!value.is_array()) invalid("key '" + name + "' must be a list, got " + value.dump());
        T out;
        for (size_t i = 0; i < value.size(); ++i)
            out.push_back(integer_in_range<typename T::value_type>(value[i], name + "[" + std::to_string(i) + "]"));
        return out;
    } else {
        try {
            return value.get<T>();
        } catch (const json::exception&) {
            invalid("key '" + name + "' has the wrong type: " + value.dump());
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
    if (real.compare(0, prefix.size(), prefix) != 0)
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         path + ": a symlink leading outside the bundle (to " + real + ")");
    const std::string real_rel = real.substr(prefix.size());
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

    json doc;
    try {
        doc = json::parse(text.str());
    } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e400
        invalid(std::string("not valid JSON: ") + e.what());
    }
    if (!doc.is_object()) invalid("the top level is not an object");

    Manifest m;
    m.bundle_dir = bundle_dir;
    m.text = text.str();
    if (get_as<std::string>(doc, "format", "") != "libfraud-bundle")
        invalid("'format' is not \"libfraud-bundle\"");
    m.format_version = get_as<int64_t>(doc, "format_version", "");
    if (m.format_version != FRAUD_BUNDLE_FORMAT_VERSION)
        throw FraudError(FRAUD_STATUS_BUNDLE_VERSION,
                         "manifest.json: format_version " + std::to_string(m.format_version) +
                             " is not supported; this libfraud reads version " +
                             std::to_string(FRAUD_BUNDLE_FORMAT_VERSION));

    const json& features = require(doc, "features", "");
    m.schema_json = require(doc, "schema", "").dump();
    m.spec_json = require(features, "spec", "features.").dump();
    m.feature_order = get_as<std::vector<std::string>>(features, "order", "features.");

    const json& model = require(doc, "model", "");
    m.model_artifact = get_as<std::string>(model, "artifact", "model.");
    m.threshold = get_as<double>(doc, "threshold", "");

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
        if (entry.sha256.size() != 64) invalid("'" + where + "sha256' is not 64 hex digits");
        m.artifacts.push_back(entry);
    }
    m.artifact(m.model_artifact);  // the model must name an artifact that exists in the list
    if (doc.contains("gnn")) read_gnn_section(doc.at("gnn"), m);
    return m;
}

void verify_artifacts(const Manifest& manifest) {
    for (const ArtifactEntry& entry : manifest.artifacts) {
        const std::string path = manifest.artifact_path(entry);
        struct stat info {};
        if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
            throw FraudError(FRAUD_STATUS_BUNDLE_CHECKSUM,
                             "artifact '" + entry.name + "': file " + path + " is missing");
        if (static_cast<uint64_t>(info.st_size) != entry.size)
            throw FraudError(FRAUD_STATUS_BUNDLE_CHECKSUM,
                             "artifact '" + entry.name + "': " + path + " has " +
                                 std::to_string(info.st_size) + " bytes, the manifest says " +
                                 std::to_string(entry.size) + " (truncated or replaced)");
        const std::string found = sha256_file_hex(path);
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
