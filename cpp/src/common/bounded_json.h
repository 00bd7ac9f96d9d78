// JSON text -> nlohmann::json, in linear time and bounded depth, with the path of an error.
// nlohmann's parse with a callback (the usual way to bound depth) scans a container's elements
// again at the end of each object in it: quadratic, so a 2 MB array of 150,000 objects took
// minutes. Every recursive walk of a document (dump, comparison, copy) needs stack in proportion
// to its depth, so the depth is bounded while parsing, before any such walk.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace libfraud {

struct JsonParseError {
    std::string what;  // "nested more than 64 levels deep" / nlohmann's syntax message
    std::string path;  // where: "calibration.x[3]" ("" at the top)
};

// Parses text; on failure returns false and fills error (never throws).
bool parse_bounded_json(const std::string& text, int max_depth, nlohmann::json& out, JsonParseError& error);

}  // namespace libfraud
