// What the core decides after the model (export/BUNDLE.md "decision"): score bands (allow below
// review_from, review from it, decline from decline_from) and a declarative rule set over the
// event's features and fields, each rule with a stable code, an action and a mode (active rules
// raise the decision, shadow rules are only recorded: a draft rule set tried on live traffic).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "schema/schema.h"

namespace libfraud {

// Ordered by severity: a decision is the most severe of its band and its active rules' actions.
enum class Decision : int32_t { Allow = 0, Review = 1, Decline = 2 };

// The most rules a bundle may carry: hits are one 64-bit mask per event.
constexpr size_t kMaxRules = 64;

struct Rule {
    int32_t code = 0;     // stable, unique within the bundle
    std::string name;     // unique within the bundle
    std::string when;     // the condition as written (e.g. "amount > 5000 and card_count_1h > 3")
    Decision action = Decision::Review;
    bool shadow = false;  // evaluated and recorded, never changes the decision
};

class CompiledRules;  // the parsed conditions (engine/rules.cpp)

class DecisionPolicy {
public:
    // The bundle's `decision` section as JSON text (Manifest::decision_json; empty = none: review
    // from the bundle's threshold up, no decline band, no rules). Names in conditions resolve
    // against the model's features and the schema's fields once, here; FraudError(BUNDLE_INVALID)
    // names the rule and what is wrong.
    static DecisionPolicy from_manifest(const std::string& decision_json, double threshold,
                                        const std::vector<std::string>& feature_names, const Schema& schema);
    // The same, for a section not yet in a manifest (the compiler checks a user's rules with it):
    // messages start with `where` ("" or "manifest.json: ") then the key ("decision.rules[2] 'x': ...").
    static DecisionPolicy from_json(const std::string& decision_json, double threshold,
                                    const std::vector<std::string>& feature_names, const Schema& schema,
                                    const std::string& where);

    DecisionPolicy();
    ~DecisionPolicy();
    DecisionPolicy(DecisionPolicy&&) noexcept;
    DecisionPolicy& operator=(DecisionPolicy&&) noexcept;

    // Score bands on the served (calibrated) scale; +inf = no such band.
    double review_from() const { return review_from_; }
    double decline_from() const { return decline_from_; }
    size_t rule_count() const { return rules_.size(); }
    const Rule& rule(size_t i) const { return rules_[i]; }
    // True when some rule reads a model feature: decide() then reads `row`, else it may be NULL.
    bool reads_features() const;

    struct Outcome {
        Decision decision = Decision::Allow;
        uint64_t rule_hits = 0;  // bit i: rule i held (shadow rules included)
    };
    // row: the model's input row the score came from; event: the event scored; score: the served
    // score. Allocation-free and safe from many threads.
    Outcome decide(const float* row, const fraud_event& event, float score) const;

private:
    double review_from_ = 0.5;
    double decline_from_ = std::numeric_limits<double>::infinity();
    std::vector<Rule> rules_;
    std::unique_ptr<const CompiledRules> compiled_;  // null without rules
    uint64_t review_rules_ = 0, decline_rules_ = 0;  // active rules, by action (shadow rules in neither)
};

}  // namespace libfraud
