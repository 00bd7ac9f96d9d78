#include "schema/schema.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "common/bounded_json.h"
#include "common/error.h"

namespace libfraud {
namespace {

// A schema nests four levels; a deeper one is hostile (see common/bounded_json.h).
constexpr int kMaxSchemaDepth = 16;

using nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& key, const std::string& what) {
    throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, where + key + ": " + what);
}

int index_of(const std::vector<std::string>& v, const std::string& n) {
    auto it = std::find(v.begin(), v.end(), n);
    return it == v.end() ? -1 : static_cast<int>(it - v.begin());
}

bool valid_name(const std::string& n) {
    if (n.empty() || n.size() > 64 || !(n[0] >= 'a' && n[0] <= 'z')) return false;
    return std::all_of(n.begin(), n.end(),
                       [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

const json& member(const json& obj, const char* key, const std::string& where, const std::string& path) {
    if (!obj.is_object()) bad(where, path, "must be an object");
    auto it = obj.find(key);
    if (it == obj.end()) bad(where, path + "." + key, "missing");
    return *it;
}

std::string name_of(const json& field, const std::string& where, const std::string& path,
                    std::set<std::string>& seen) {
    const json& n = member(field, "name", where, path);
    if (!n.is_string()) bad(where, path + ".name", "must be a string");
    const std::string s = n.get<std::string>();
    if (!valid_name(s)) bad(where, path + ".name", "'" + bounded(s, 80) + "' must match [a-z][a-z0-9_]* (at most 64)");
    if (!seen.insert(s).second) bad(where, path + ".name", "'" + s + "' is declared twice");
    return s;
}

// An optional string member: `fallback` when absent; refused, naming the key, when not a string
// (json::value would throw a type_error no caller expects).
std::string optional_string(const json& obj, const char* key, const std::string& fallback, const std::string& where,
                            const std::string& path) {
    auto it = obj.find(key);
    if (it == obj.end()) return fallback;
    if (!it->is_string()) bad(where, path + "." + key, "must be a string");
    return it->get<std::string>();
}

// How an id or code column is written: "int" (the default) or "string" (hashed with fraud_hash_id).
bool string_ids(const json& obj, const char* key, const std::string& where, const std::string& path) {
    const std::string kind = optional_string(obj, key, "int", where, path);
    if (kind != "int" && kind != "string") bad(where, path + "." + key, "must be \"int\" or \"string\"");
    return kind == "string";
}

}  // namespace

int Schema::entity_index(const std::string& n) const { return index_of(entities, n); }
int Schema::numeric_index(const std::string& n) const { return index_of(numeric, n); }
int Schema::categorical_index(const std::string& n) const { return index_of(categorical, n); }

int32_t Schema::utc_offset_seconds(int64_t t_ms) const {
    auto it = std::upper_bound(utc_offsets.begin(), utc_offsets.end(), t_ms,
                               [](int64_t t, const std::pair<int64_t, int32_t>& e) { return t < e.first; });
    return it == utc_offsets.begin() ? 0 : std::prev(it)->second;
}

std::string Schema::layout_key() const {
    std::string k = has_amount ? "amount;" : "no-amount;";
    for (size_t i = 0; i < entities.size(); ++i) k += "e:" + entities[i] + (entity_required[i] ? "!" : "?") + ";";
    for (const auto& n : numeric) k += "n:" + n + ";";
    for (const auto& c : categorical) k += "c:" + c + ";";
    return k;
}

Schema parse_schema_json(const std::string& json_text, const std::string& where) {
    json j;
    JsonParseError error;
    if (!parse_bounded_json(json_text, kMaxSchemaDepth, j, error))
        bad(where, "schema" + (error.path.empty() ? "" : "." + error.path), "not JSON: " + error.what);
    Schema s;
    std::set<std::string> seen;
    if (!j.is_object()) bad(where, "schema", "must be an object");
    if (optional_string(j, "format", "", where, "schema") != "libfraud-schema") bad(where, "schema.format", "must be \"libfraud-schema\"");
    const json& version = member(j, "version", where, "schema");
    if (!version.is_number_integer() || version.get<int64_t>() != 1) bad(where, "schema.version", "must be 1");
    if (j.contains("name") && j["name"].is_string()) s.name = j["name"].get<std::string>();
    const json& entities = member(j, "entities", where, "schema");
    if (!entities.is_array() || entities.empty() || entities.size() > FRAUD_MAX_ENTITY_TYPES)
        bad(where, "schema.entities", "must be a list of 1 to " + std::to_string(FRAUD_MAX_ENTITY_TYPES) + " entity types");
    for (size_t i = 0; i < entities.size(); ++i) {
        const std::string path = "schema.entities[" + std::to_string(i) + "]";
        s.entities.push_back(name_of(entities[i], where, path, seen));
        const json& req = member(entities[i], "required", where, path);
        if (!req.is_boolean()) bad(where, path + ".required", "must be true or false");
        s.entity_required.push_back(req.get<bool>());
        s.entity_strings.push_back(string_ids(entities[i], "ids", where, path));
    }
    auto fields = [&](const char* key, std::vector<std::string>& out) {
        if (!j.contains(key) || j[key].is_null()) return;
        const json& list = j[key];
        if (!list.is_array() || list.size() > 4096) bad(where, std::string("schema.") + key, "must be a list (at most 4096)");
        for (size_t i = 0; i < list.size(); ++i)
            out.push_back(name_of(list[i], where, std::string("schema.") + key + "[" + std::to_string(i) + "]", seen));
    };
    fields("numeric", s.numeric);
    fields("categorical", s.categorical);
    if (j.contains("categorical") && j["categorical"].is_array())
        for (size_t i = 0; i < j["categorical"].size(); ++i)
            s.categorical_strings.push_back(string_ids(j["categorical"][i], "codes", where, "schema.categorical[" + std::to_string(i) + "]"));
    s.categorical_strings.resize(s.categorical.size(), false);
    if (j.contains("event_id") && j["event_id"].is_object())
        s.event_id_strings = string_ids(j["event_id"], "ids", where, "schema.event_id");
    s.has_amount = j.contains("amount") && !j["amount"].is_null();
    const json& time = member(j, "time", where, "schema");
    if (time.contains("utc_offsets")) {
        const json& offsets = time["utc_offsets"];
        if (!offsets.is_array() || offsets.empty() || offsets.size() > 100000)
            bad(where, "schema.time.utc_offsets", "must be a non-empty list of [utc_ms_from, offset_seconds]");
        s.utc_offsets.clear();
        for (size_t i = 0; i < offsets.size(); ++i) {
            const json& e = offsets[i];
            const std::string path = "schema.time.utc_offsets[" + std::to_string(i) + "]";
            if (!e.is_array() || e.size() != 2 || !e[0].is_number_integer() || !e[1].is_number_integer())
                bad(where, path, "must be [integer ms, integer seconds]");
            const int64_t from = e[0].get<int64_t>();
            const int64_t off = e[1].get<int64_t>();
            if (off < -86400 || off > 86400) bad(where, path, "offset must be within a day");
            if (i == 0 && from != std::numeric_limits<int64_t>::min()) bad(where, path, "the first must start at -2^63");
            if (i > 0 && from <= s.utc_offsets.back().first) bad(where, path, "must be sorted by time, strictly");
            s.utc_offsets.emplace_back(from, static_cast<int32_t>(off));
        }
    }
    return s;
}

const Schema& payments_schema() {
    static const Schema s = [] {
        Schema p;
        p.name = "payments";
        p.entities = {"card", "device", "merchant", "ip"};
        p.entity_required = {true, false, true, false};
        p.entity_strings = {false, false, false, false};
        p.categorical = {"country", "mcc"};
        p.categorical_strings = {false, false};
        return p;
    }();
    return s;
}

bool is_payments_layout(const Schema& s) { return s.layout_key() == payments_schema().layout_key(); }

int64_t hash_id(const char* bytes, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; ++i) {
        h ^= static_cast<unsigned char>(bytes[i]);
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return static_cast<int64_t>(h & 0x7fffffffffffffffull);
}

}  // namespace libfraud
