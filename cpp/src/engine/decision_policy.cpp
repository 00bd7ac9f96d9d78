#include "engine/decision_policy.h"

#include "common/error.h"

namespace libfraud {

// Placeholder until the rule language lands (engine/rules.cpp): bands from the threshold only.
class CompiledRules {};

DecisionPolicy::DecisionPolicy() = default;
DecisionPolicy::~DecisionPolicy() = default;
DecisionPolicy::DecisionPolicy(DecisionPolicy&&) noexcept = default;
DecisionPolicy& DecisionPolicy::operator=(DecisionPolicy&&) noexcept = default;

DecisionPolicy DecisionPolicy::from_manifest(const std::string& decision_json, double threshold,
                                             const std::vector<std::string>&, const Schema&) {
    if (!decision_json.empty())
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "the manifest's 'decision' section is not read by this build yet");
    DecisionPolicy p;
    p.review_from_ = threshold;
    return p;
}

DecisionPolicy::Outcome DecisionPolicy::decide(const float*, const fraud_event&, float score) const {
    Outcome o;
    if (score >= decline_from_) o.decision = Decision::Decline;
    else if (score >= review_from_) o.decision = Decision::Review;
    return o;
}

}  // namespace libfraud
