// The declared schema (export/SCHEMA.md), as the core needs it: how many entity types, numeric and
// categorical fields an event has, their names, which entity types are optional, whether there is
// an amount, and the timezone table for calendar features. Parsed once from the manifest's JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "libfraud/fraud.h"

namespace libfraud {

struct Schema {
    std::string name;
    std::vector<std::string> entities;
    std::vector<bool> entity_required;
    bool has_amount = true;
    std::vector<std::string> numeric;
    std::vector<std::string> categorical;
    // Which ids / codes are strings in the user's data (mapped with fraud_hash_id), for a switch.
    bool event_id_strings = false;
    std::vector<bool> entity_strings, categorical_strings;
    // [utc_ms_from, offset_seconds], sorted, the first at INT64_MIN (UTC when empty).
    std::vector<std::pair<int64_t, int32_t>> utc_offsets{{INT64_MIN, 0}};

    size_t num_entities() const { return entities.size(); }
    size_t num_numeric() const { return numeric.size(); }
    size_t num_categorical() const { return categorical.size(); }
    // Index of a name in its role, or -1.
    int entity_index(const std::string& n) const;
    int numeric_index(const std::string& n) const;
    int categorical_index(const std::string& n) const;
    // Seconds to add to UTC at t (the last utc_offsets entry with utc_ms_from <= t).
    int32_t utc_offset_seconds(int64_t t_ms) const;
    // What a store's data depends on (names, roles, optionality, amount): equal layouts can share
    // a store (hot swap, snapshot restore). The timezone is the model's business, not the store's.
    std::string layout_key() const;
};

// Parses the manifest's `schema` object (JSON text). Throws FraudError(BUNDLE_INVALID) naming the
// key: "schema.entities[2].name: ...". `where` prefixes messages (e.g. "manifest.json: ").
Schema parse_schema_json(const std::string& json_text, const std::string& where);

// The legacy fixed layout, as a schema: card, device (optional), merchant, ip (optional); no
// numeric fields; categorical country, mcc; an amount; UTC.
const Schema& payments_schema();
// True when `s` has the payments layout (fraud_txn can be converted to its events).
bool is_payments_layout(const Schema& s);

// fraud_hash_id: FNV-1a 64 of the bytes, splitmix64 finaliser, top bit cleared.
int64_t hash_id(const char* bytes, size_t len);

}  // namespace libfraud
