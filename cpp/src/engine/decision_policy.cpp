#include "engine/decision_policy.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/bounded_json.h"
#include "common/error.h"
#include "engine/rules.h"

namespace libfraud {
namespace {

using nlohmann::json;

// The section nests three levels (decision, rules, a rule); deeper is not a decision section.
constexpr int kMaxDecisionDepth = 8;
constexpr size_t kMaxRuleName = 64;
constexpr size_t kMaxDescription = 1000;
constexpr size_t kMaxShown = 80;

class Reader {
public:
    explicit Reader(const std::string& where) : where_(where) {}

    [[noreturn]] void invalid(const std::string& key, const std::string& what) const {
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, where_ + key + ": " + what);
    }
    static std::string shown(const json& v) { return bounded(v.dump(), kMaxShown); }

    // Every key must be one this reader applies: an ignored key (a newer writer's option) could
    // change decisions.
    void only_known(const json& object, const std::string& key, std::initializer_list<const char*> known) const {
        for (auto it = object.begin(); it != object.end(); ++it) {
            bool ok = false;
            for (const char* k : known) ok = ok || it.key() == k;
            if (ok) continue;
            std::string list;
            for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
            invalid(key, "unknown key '" + bounded(it.key(), kMaxShown) + "' (known: " + list + ")");
        }
    }

    double score(const json& v, const std::string& key) const {
        if (!v.is_number()) invalid(key, "must be a score in [0, 1], got " + shown(v));
        const double x = v.get<double>();
        if (!(x >= 0.0 && x <= 1.0)) invalid(key, "must be a score in [0, 1], got " + shown(v));
        return x;
    }

    std::string string(const json& object, const char* k, const std::string& key) const {
        if (!object.contains(k)) invalid(key, std::string("missing key '") + k + "'");
        const json& v = object.at(k);
        if (!v.is_string()) invalid(key + "." + k, "must be a string, got " + shown(v));
        return v.get<std::string>();
    }

private:
    const std::string& where_;
};

bool valid_rule_name(const std::string& n) {
    if (n.empty() || n.size() > kMaxRuleName) return false;
    for (char c : n)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    return true;
}

}  // namespace

DecisionPolicy::DecisionPolicy() = default;
DecisionPolicy::~DecisionPolicy() = default;
DecisionPolicy::DecisionPolicy(DecisionPolicy&&) noexcept = default;
DecisionPolicy& DecisionPolicy::operator=(DecisionPolicy&&) noexcept = default;

DecisionPolicy DecisionPolicy::from_manifest(const std::string& decision_json, double threshold,
                                             const std::vector<std::string>& feature_names, const Schema& schema) {
    return from_json(decision_json, threshold, feature_names, schema, "manifest.json: ");
}

DecisionPolicy DecisionPolicy::from_json(const std::string& decision_json, double threshold,
                                         const std::vector<std::string>& feature_names, const Schema& schema,
                                         const std::string& where) {
    DecisionPolicy p;
    p.review_from_ = threshold;
    if (decision_json.empty()) return p;
    const Reader r(where);
    json doc;
    JsonParseError error;
    if (!parse_bounded_json(decision_json, kMaxDecisionDepth, doc, error))
        r.invalid(error.path.empty() ? "decision" : "decision." + error.path, bounded(error.what, 400));
    if (!doc.is_object()) r.invalid("decision", "must be an object, got " + Reader::shown(doc));
    r.only_known(doc, "decision", {"version", "review_from", "decline_from", "rules"});

    if (!doc.contains("version")) r.invalid("decision", "missing key 'version' (1)");
    if (doc.at("version") != json(1))
        r.invalid("decision.version", "must be 1 (the rule language this core reads), got " + Reader::shown(doc.at("version")));
    if (doc.contains("review_from")) p.review_from_ = r.score(doc.at("review_from"), "decision.review_from");
    if (doc.contains("decline_from") && !doc.at("decline_from").is_null())
        p.decline_from_ = r.score(doc.at("decline_from"), "decision.decline_from");
    if (p.review_from_ > p.decline_from_)
        r.invalid("decision.decline_from", "must be >= review_from (" + Reader::shown(json(p.review_from_)) +
                                               (doc.contains("review_from") ? "" : ", the bundle's threshold") +
                                               "), got " + Reader::shown(json(p.decline_from_)));

    if (!doc.contains("rules")) return p;
    const json& rules = doc.at("rules");
    if (!rules.is_array()) r.invalid("decision.rules", "must be a list of rules, got " + Reader::shown(rules));
    if (rules.size() > kMaxRules)
        r.invalid("decision.rules", "has " + std::to_string(rules.size()) + " rules; at most " +
                                        std::to_string(kMaxRules) + " (one bit each in a 64-bit hit mask)");
    auto compiled = std::make_unique<CompiledRules>(feature_names, schema);
    for (size_t i = 0; i < rules.size(); ++i) {
        const json& j = rules[i];
        std::string key = "decision.rules[" + std::to_string(i) + "]";
        if (!j.is_object()) r.invalid(key, "must be an object, got " + Reader::shown(j));
        Rule rule;
        rule.name = r.string(j, "name", key);
        if (!valid_rule_name(rule.name))
            r.invalid(key + ".name", "must be 1 to 64 of [A-Za-z0-9_.-], got " + Reader::shown(j.at("name")));
        key += " '" + rule.name + "'";
        r.only_known(j, key, {"code", "name", "when", "action", "mode", "description"});
        if (!j.contains("code")) r.invalid(key, "missing key 'code'");
        const json& code = j.at("code");
        int64_t c = 0;  // 0: not an integer in range (nlohmann keeps integers >= 0 as unsigned)
        if (code.is_number_unsigned()) c = code.get<uint64_t>() <= INT32_MAX ? static_cast<int64_t>(code.get<uint64_t>()) : 0;
        else if (code.is_number_integer()) c = code.get<int64_t>();
        if (c < 1 || c > INT32_MAX)
            r.invalid(key + ".code", "must be an integer from 1 to 2147483647, got " + Reader::shown(code));
        rule.code = static_cast<int32_t>(c);
        const std::string action = r.string(j, "action", key);
        if (action == "review") rule.action = Decision::Review;
        else if (action == "decline") rule.action = Decision::Decline;
        else r.invalid(key + ".action", "must be \"review\" or \"decline\", got " + Reader::shown(j.at("action")));
        const std::string mode = j.contains("mode") ? r.string(j, "mode", key) : "active";
        if (mode != "active" && mode != "shadow")
            r.invalid(key + ".mode", "must be \"active\" (changes the decision) or \"shadow\" (only recorded), got " +
                                         Reader::shown(j.at("mode")));
        rule.shadow = mode == "shadow";
        if (j.contains("description") &&
            (!j.at("description").is_string() || j.at("description").get<std::string>().size() > kMaxDescription))
            r.invalid(key + ".description", "must be a string of at most 1000 bytes, got " + Reader::shown(j.at("description")));
        for (size_t k = 0; k < p.rules_.size(); ++k) {
            const std::string other = "decision.rules[" + std::to_string(k) + "] '" + p.rules_[k].name + "'";
            if (p.rules_[k].code == rule.code)
                r.invalid(key + ".code", std::to_string(rule.code) + " is also the code of " + other);
            if (p.rules_[k].name == rule.name) r.invalid(key + ".name", "'" + rule.name + "' is also the name of " + other);
        }
        rule.when = r.string(j, "when", key);
        compiled->add(rule.when, where + key);
        const uint64_t bit = uint64_t{1} << i;
        if (!rule.shadow) (rule.action == Decision::Decline ? p.decline_rules_ : p.review_rules_) |= bit;
        p.rules_.push_back(std::move(rule));
    }
    if (!p.rules_.empty()) p.compiled_ = std::move(compiled);
    return p;
}

bool DecisionPolicy::reads_features() const { return compiled_ && compiled_->reads_features(); }

DecisionPolicy::Outcome DecisionPolicy::decide(const float* row, const fraud_event& event, float score) const {
    Outcome o;
    if (score >= decline_from_) o.decision = Decision::Decline;
    else if (score >= review_from_) o.decision = Decision::Review;
    if (!compiled_) return o;
    o.rule_hits = compiled_->evaluate(row, event, score);
    if (o.rule_hits & decline_rules_) o.decision = Decision::Decline;
    else if ((o.rule_hits & review_rules_) && o.decision == Decision::Allow) o.decision = Decision::Review;
    return o;
}

}  // namespace libfraud
