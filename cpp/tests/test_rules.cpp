// The `decision` section and its rule language (export/BUNDLE.md "decision"): every operator on
// present, NaN and missing-code values, precedence, float32 rounding of constants, string codes
// through fraud_hash_id, the bands' edges, shadow rules, and every refusal (the parse errors with
// their column and caret, the nesting and length bounds a hostile manifest meets). Evaluation
// against a plain Python reference on random rules: tests/test_rules.py.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "engine/decision_policy.h"
#include "engine/rules.h"

using namespace libfraud;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// amount; numeric risk; categorical country (string codes) and mcc (integer codes); entity card.
Schema test_schema() {
    Schema s;
    s.entities = {"card"};
    s.entity_required = {true};
    s.has_amount = true;
    s.numeric = {"risk"};
    s.categorical = {"country", "mcc"};
    s.entity_strings = {false};
    s.categorical_strings = {true, false};
    return s;
}
// "amount" and "country" are also features (pass-throughs share their field's name).
const std::vector<std::string> kFeatures = {"amount", "card_count_1h", "country", "ratio"};

struct Event {
    int64_t card = 7;
    double amount = 100.0;
    double risk = 0.5;
    int64_t codes[2] = {hash_id("FR", 2), 5967};
    float row[4] = {100.0f, 2.0f, 3.0f, 0.25f};
    float score = 0.1f;
    fraud_event view() const { return fraud_event{1, 0, amount, &card, &risk, codes}; }
};

// Whether `when` holds on e (compiled alone).
bool holds(const std::string& when, const Event& e) {
    CompiledRules r(kFeatures, test_schema());
    r.add(when, "rule");
    const fraud_event ev = e.view();
    return r.evaluate(e.row, ev, e.score) == 1;
}

std::string section(const std::string& rules, const std::string& head = R"("version": 1)") {
    return "{" + head + (rules.empty() ? "" : R"(, "rules": [)" + rules + "]") + "}";
}
std::string rule(const std::string& when, const std::string& more = R"("action": "decline")",
                 const std::string& name = "r1", int code = 1) {
    return R"({"code": )" + std::to_string(code) + R"(, "name": ")" + name + R"(", "when": ")" + when + R"(", )" + more + "}";
}
DecisionPolicy policy(const std::string& json, double threshold = 0.5) {
    return DecisionPolicy::from_json(json, threshold, kFeatures, test_schema(), "");
}
// The message of the FraudError that compiling `when` gives ("" if none).
std::string refusal(const std::string& when) {
    try {
        CompiledRules r(kFeatures, test_schema());
        r.add(when, "decision.rules[0] 'x'");
    } catch (const FraudError& e) {
        CHECK(e.status() == FRAUD_STATUS_BUNDLE_INVALID);
        return e.what();
    }
    return "";
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void test_numbers() {
    Event e;
    CHECK(holds("amount > 99", e) && !holds("amount > 100", e) && holds("amount >= 100", e));
    CHECK(holds("amount < 101", e) && !holds("amount < 100", e) && holds("amount <= 100", e));
    CHECK(holds("amount == 100", e) && !holds("amount != 100", e) && holds("amount != 99.5", e));
    CHECK(holds("risk == 0.5", e) && holds("risk > -1", e) && holds("risk > -.5", e) && holds("risk < 5.", e));
    CHECK(holds("risk < 5e-1 or risk == 5E-1", e) && holds("amount == 1e2", e) && holds("amount == 1.0e+2", e));
    CHECK(holds("99 < amount", e) && holds("100 <= amount", e) && !holds("100 < amount", e));  // mirrored
    CHECK(holds("card_count_1h > 1.5", e) && holds("ratio == 0.25", e) && holds("score < 0.2", e));
    CHECK(holds("amount in [1, 100, 3]", e) && !holds("amount in [1, 2]", e) && holds("amount not in [1, 2,]", e));
    CHECK(holds("feature.card_count_1h < amount", e) && holds("ratio <= risk", e));
    // float32 constants against float32 values (features, the score); doubles against fields.
    e.row[3] = 0.1f;
    e.score = 0.3f;
    CHECK(holds("ratio == 0.1", e) && !holds("ratio > 0.1", e) && holds("score == 0.3", e));
    e.amount = static_cast<double>(0.1f);
    CHECK(!holds("amount == 0.1", e) && holds("amount > 0.1", e) && holds("feature.amount == 100", e));
    CHECK(holds("card_count_1h < 1e39", e) && holds("card_count_1h > -1e39", e));  // rounds to +-inf
}

void test_missing() {
    Event e;
    e.risk = std::nan("");
    e.row[1] = kNaN;
    e.codes[0] = FRAUD_CODE_MISSING;
    e.codes[1] = FRAUD_CODE_MISSING;
    e.score = kNaN;
    for (const char* when : {"risk > 0", "risk < 0", "risk >= 0", "risk <= 0", "risk == 0", "risk != 0",
                             "risk in [0.5]", "risk not in [0.5]", "card_count_1h != 3", "card_count_1h not in [3]",
                             "risk == amount", "amount != risk", "country == \"FR\"", "country != \"FR\"",
                             "country in [\"FR\"]", "country not in [\"FR\"]", "mcc != 1", "mcc not in [1, 2]",
                             "country == country", "country != country", "score >= 0", "score != 1"})
        CHECK(!holds(when, e));
    for (const char* when : {"risk is missing", "card_count_1h is missing", "country is missing", "mcc is missing",
                             "score is missing", "amount is not missing", "not (risk > 0)", "not risk == 0",
                             "not country == \"FR\"", "risk is missing and not (risk is not missing)"})
        CHECK(holds(when, e));
    Event present;
    CHECK(!holds("risk is missing", present) && holds("risk is not missing", present) && !holds("mcc is missing", present));
}

void test_codes() {
    Event e;
    CHECK(holds("country == \"FR\"", e) && holds("country == 'FR'", e) && !holds("country == \"fr\"", e));
    CHECK(holds("country != \"DE\"", e) && holds("country in [\"DE\", \"FR\"]", e) && holds("country not in [\"DE\"]", e));
    CHECK(holds("mcc == 5967", e) && holds("mcc in [5967, 7995]", e) && !holds("mcc not in [7995, 5967]", e));
    CHECK(holds("field.country == \"FR\"", e));  // the field, not the feature of the same name
    CHECK(holds("feature.country == 3", e));     // the feature: the model's float32 input
    e.codes[0] = hash_id("a\"b\\c", 5);
    CHECK(holds(R"(country == "a\"b\\c")", e) && holds(R"(country == 'a"b\\c')", e));
    e.codes[0] = hash_id("Zürich", 7);
    CHECK(holds("country == \"Zürich\"", e));
}

void test_logic() {
    Event e;  // amount 100, risk 0.5
    CHECK(holds("amount > 1 and risk > 0.1 and mcc == 5967", e) && !holds("amount > 1 and risk > 1", e));
    CHECK(holds("amount > 1000 or risk > 0.1", e) && !holds("amount > 1000 or risk > 1", e));
    CHECK(holds("amount > 1000 and risk > 1 or mcc == 5967", e));     // and binds tighter than or
    CHECK(!holds("amount > 1000 and (risk > 1 or mcc == 5967)", e));
    CHECK(holds("risk > 1 or amount > 1000 or not amount > 1000", e));
    CHECK(holds("not not amount > 1", e) && !holds("not (amount > 1 and risk > 0.1)", e));
    CHECK(holds("not (amount > 1000 or risk > 1) and mcc == 5967", e));
    CHECK(holds("((((amount > 1))))", e) && holds("(amount > 1000 or (risk > 0 and (mcc == 5967 and not mcc == 1)))", e));
    CHECK(holds("amount>1 and(risk>0)", e));
    CHECK(holds("amount > 1\n  and risk > 0", e));
}

void test_refusals() {
    std::string m = refusal("amout > 5000");
    CHECK(contains(m, "decision.rules[0] 'x': when, column 1: unknown name 'amout'") &&
          contains(m, "(did you mean 'amount'?)\n    amout > 5000\n    ^"));
    m = refusal("amount > 5000 and card_count_1h >> 3");
    CHECK(contains(m, "when, column 34: expected a name, a number or a string, got '>'") &&
          contains(m, "\n    amount > 5000 and card_count_1h >> 3\n" + std::string(4 + 33, ' ') + "^"));
    CHECK(contains(refusal("mcc == \"5967\""), "'mcc' holds integer codes"));
    CHECK(contains(refusal("country == 250"), "'country' holds string codes"));
    CHECK(contains(refusal("mcc in [5967, \"7995\"]"), "when, column 15: 'mcc' holds integer codes"));
    CHECK(contains(refusal("mcc == 59.5"), "is not one (a code is an integer >= 0"));
    CHECK(contains(refusal("mcc == -1"), "test a missing code with 'is missing'"));
    CHECK(contains(refusal("country < \"FR\""), "only ==, !=, in and not in apply"));
    CHECK(contains(refusal("country == mcc"), "one holds string codes"));
    CHECK(contains(refusal("country == amount"), "one is categorical"));
    CHECK(contains(refusal("amount == \"5\""), "'amount' is a number, compared with a string"));
    CHECK(contains(refusal("1 < 2"), "compares two constants"));
    CHECK(contains(refusal(""), "an empty condition"));
    CHECK(contains(refusal("   "), "an empty condition"));
    CHECK(contains(refusal("(amount > 1"), "expected ')' to close the '(' at column 1, got the end"));
    CHECK(contains(refusal("amount > 1)"), "expected 'and', 'or' or the end of the condition, got ')'"));
    CHECK(contains(refusal("amount = 1"), "'=' is not an operator"));
    CHECK(contains(refusal("amount > 1 && risk > 0"), "'&' is not an operator (write 'and')"));
    CHECK(contains(refusal("!(amount > 1)"), "'!' is not an operator"));
    CHECK(contains(refusal("amount > 1e"), "an exponent needs digits"));
    CHECK(contains(refusal("amount > 12abc"), "a malformed number"));
    CHECK(contains(refusal("amount > 1.2.3"), "a malformed number"));
    CHECK(contains(refusal("amount > 1e400"), "a number out of range"));
    CHECK(contains(refusal("country == \"FR"), "a string not closed"));
    CHECK(contains(refusal("country == \"F\\R\""), "an unknown escape"));
    CHECK(contains(refusal("amount in []"), "an empty list"));
    CHECK(contains(refusal("amount in [risk]"), "expected a number or a string in the list"));
    CHECK(contains(refusal("amount in 5"), "expected '[' to open the list"));
    CHECK(contains(refusal("amount not 5"), "expected 'in' after 'not'"));
    CHECK(contains(refusal("amount is 5"), "expected 'missing' after 'is'"));
    CHECK(contains(refusal("5 is missing"), "tests a name, not a constant"));
    CHECK(contains(refusal("amount"), "expected a comparison"));
    CHECK(contains(refusal("card == 1"), "'card' is an entity id"));
    CHECK(contains(refusal("feature.risk > 1"), "no feature 'risk' in features.order"));
    CHECK(contains(refusal("field.ratio > 1"), "no field 'ratio' in the schema"));
    CHECK(contains(refusal("feature. > 1"), "expected a name after 'feature.'"));
    CHECK(contains(refusal("missing > 1"), "expected a name, a number or a string, got 'missing'"));
    CHECK(contains(refusal("amount > 1 @"), "an unexpected character '@'"));
    CHECK(contains(refusal("amount > 1 \x01"), "column 12: an unexpected character\n"));
    CHECK(contains(refusal("amount < 5 < 6"), "expected 'and', 'or' or the end"));
    // A long condition shows an excerpt around the position, cut at both ends.
    std::string longer;
    for (int i = 0; i < 30; ++i) longer += "amount > " + std::to_string(i) + " and ";
    m = refusal(longer + "amout > 1 and " + longer + "amount > 0");
    CHECK(contains(m, "unknown name 'amout'") && contains(m, "\n    ...") && contains(m, "...\n") &&
          contains(m, "amout > 1 and") && m.size() < 400);
}

void test_bounds() {
    // Nesting: 32 levels of parentheses or `not` are fine, 33 are refused (the parser's recursion is
    // bounded by it); so is a hostile 4,000-deep one, before any stack is used for it.
    auto nested = [](size_t n) { return std::string(n, '(') + "amount > 1" + std::string(n, ')'); };
    auto nots = [](size_t n) {
        std::string s;
        for (size_t i = 0; i < n; ++i) s += "not ";
        return s + "amount > 1";
    };
    Event e;
    CHECK(holds(nested(kMaxConditionNesting), e) && holds(nots(kMaxConditionNesting), e));  // 32 nots: even
    CHECK(contains(refusal(nested(kMaxConditionNesting + 1)), "nested more than 32 levels deep"));
    CHECK(contains(refusal(nots(kMaxConditionNesting + 1)), "nested more than 32 levels deep"));
    CHECK(contains(refusal(nested(2000)), "nested more than 32 levels deep"));
    CHECK(contains(refusal(nots(1000)), "nested more than 32 levels deep"));
    CHECK(contains(refusal(std::string(kMaxConditionBytes + 1, '(')), "longer than 4096 bytes (4097)"));
    // A flat chain is not nesting: 256 tests are fine, 257 refused.
    auto chain = [](size_t n) {
        std::string s = "amount > 0";
        for (size_t i = 1; i < n; ++i) s += " and amount > 0";
        return s;
    };
    CHECK(holds(chain(kMaxConditionTests), e));
    CHECK(contains(refusal(chain(kMaxConditionTests + 1)), "more than 256 tests in one condition"));
}

void test_layout() {
    // The program: one test per comparison, in source order, every jump forward.
    CompiledRules r(kFeatures, test_schema());
    r.add("amount > 1 and (risk > 1 or not mcc == 5967)", "a");
    r.add("country is not missing", "b");
    CHECK(r.rule_count() == 2 && r.tests().size() == 4 && r.start(0) == 0 && r.start(1) == 3 && !r.reads_features());
    for (size_t i = 0; i < r.tests().size(); ++i) {
        const CompiledRules::Test& t = r.tests()[i];
        CHECK((t.on_true < 0 || t.on_true > static_cast<int32_t>(i)) && (t.on_false < 0 || t.on_false > static_cast<int32_t>(i)));
    }
    CHECK(r.tests()[0].on_true == 1 && r.tests()[0].on_false == CompiledRules::kFalse);
    CHECK(r.tests()[1].on_true == CompiledRules::kTrue && r.tests()[1].on_false == 2);
    CHECK(r.tests()[2].on_true == CompiledRules::kFalse && r.tests()[2].on_false == CompiledRules::kTrue);
    CHECK(r.tests()[3].on_true == CompiledRules::kFalse && r.tests()[3].on_false == CompiledRules::kTrue);
    // A refused rule leaves the program as it was.
    CHECK_THROWS(r.add("amount > 1 and amout > 2", "c"), FRAUD_STATUS_BUNDLE_INVALID, "c: when, column 16: unknown name");
    CHECK(r.rule_count() == 2 && r.tests().size() == 4);
    r.add("card_count_1h > 1", "d");
    CHECK(r.reads_features());
}

void test_section() {
    Event e;
    const fraud_event ev = e.view();
    // No section: review from the threshold, no decline band, no rules.
    DecisionPolicy none = DecisionPolicy::from_manifest("", 0.4, kFeatures, test_schema());
    CHECK(none.review_from() == 0.4 && std::isinf(none.decline_from()) && none.rule_count() == 0 && !none.reads_features());
    CHECK(none.decide(nullptr, ev, 0.4f).decision == Decision::Review &&
          none.decide(nullptr, ev, 0.39f).decision == Decision::Allow &&
          none.decide(nullptr, ev, 1.0f).decision == Decision::Review);
    // Bands: a score exactly at a band's start is in it.
    DecisionPolicy bands = policy(section("", R"("version": 1, "review_from": 0.25, "decline_from": 0.75)"));
    CHECK(bands.review_from() == 0.25 && bands.decline_from() == 0.75);
    CHECK(bands.decide(nullptr, ev, 0.25f).decision == Decision::Review);
    CHECK(bands.decide(nullptr, ev, std::nextafter(0.25f, 0.0f)).decision == Decision::Allow);
    CHECK(bands.decide(nullptr, ev, 0.75f).decision == Decision::Decline);
    CHECK(bands.decide(nullptr, ev, std::nextafter(0.75f, 0.0f)).decision == Decision::Review);
    CHECK(bands.decide(nullptr, ev, kNaN).decision == Decision::Allow);
    DecisionPolicy defaulted = policy(section("", R"("version": 1, "decline_from": null)"), 0.3);
    CHECK(defaulted.review_from() == 0.3 && std::isinf(defaulted.decline_from()));
    DecisionPolicy equal = policy(section("", R"("version": 1, "review_from": 0.5, "decline_from": 0.5)"));
    CHECK(equal.decide(nullptr, ev, 0.5f).decision == Decision::Decline);

    // Rules: the most severe of the band and the active rules that hold; shadow rules only recorded.
    const std::string rules = rule("amount >= 100", R"("action": "review")", "big", 1001) + ", " +
                              rule("amount >= 100", R"("action": "decline", "mode": "shadow")", "draft", 1002) + ", " +
                              rule("mcc == 7995", R"("action": "decline", "mode": "active", "description": "gambling")",
                                   "gambling", 1003) + ", " +
                              rule("card_count_1h > 5", R"("action": "decline")", "fast", 1004);
    DecisionPolicy p = policy(section(rules, R"("version": 1, "review_from": 0.5, "decline_from": 0.9)"));
    CHECK(p.rule_count() == 4 && p.rule(0).code == 1001 && p.rule(1).shadow && p.rule(2).name == "gambling" &&
          p.rule(3).action == Decision::Decline && p.rule(0).action == Decision::Review && !p.rule(0).shadow &&
          p.rule(3).when == "card_count_1h > 5" && p.reads_features());
    DecisionPolicy::Outcome o = p.decide(e.row, ev, 0.1f);
    CHECK(o.decision == Decision::Review && o.rule_hits == 0b0011);  // the shadow decline does not decline
    CHECK(p.decide(e.row, ev, 0.95f).decision == Decision::Decline);  // the band beats a review rule
    e.amount = 5;
    const fraud_event small = e.view();
    o = p.decide(e.row, small, 0.1f);
    CHECK(o.decision == Decision::Allow && o.rule_hits == 0);
    e.codes[1] = 7995;
    e.row[1] = 6;
    const fraud_event gambling = e.view();
    o = p.decide(e.row, gambling, 0.1f);
    CHECK(o.decision == Decision::Decline && o.rule_hits == 0b1100);
    // decide() allocates nothing.
    const long before = g_allocations;
    uint64_t sink = 0;
    for (int i = 0; i < 1000; ++i) sink += p.decide(e.row, gambling, static_cast<float>(i) / 1000.0f).rule_hits;
    CHECK(g_allocations == before && sink == 1000 * 0b1100);
    // 64 rules fill the mask.
    std::string many;
    for (int i = 0; i < 64; ++i) many += (i ? ", " : "") + rule("amount > " + std::to_string(i), R"("action": "review", "mode": "shadow")", "r" + std::to_string(i), i + 1);
    DecisionPolicy full = policy(section(many));
    CHECK(full.rule_count() == 64 && full.decide(nullptr, small, 0.0f).rule_hits == 0b11111);  // amount 5
    e.amount = 1000;
    const fraud_event big = e.view();
    CHECK(full.decide(nullptr, big, 0.0f).rule_hits == ~uint64_t{0} && full.decide(nullptr, big, 0.0f).decision == Decision::Allow);
}

void test_section_refusals() {
    auto refused = [](const std::string& json, const std::string& needle, double threshold = 0.5) {
        CHECK_THROWS(policy(json, threshold), FRAUD_STATUS_BUNDLE_INVALID, needle);
    };
    CHECK_THROWS(DecisionPolicy::from_manifest("{}", 0.5, kFeatures, test_schema()), FRAUD_STATUS_BUNDLE_INVALID,
                 "manifest.json: decision: missing key 'version'");
    refused("[]", "decision: must be an object");
    refused("{\"version\": 1,", "decision");
    refused(R"({"version": 2})", "decision.version: must be 1");
    refused(R"({"version": "1"})", "decision.version: must be 1");
    refused(R"({"version": 1, "review_from": 1.5})", "decision.review_from: must be a score in [0, 1], got 1.5");
    refused(R"({"version": 1, "review_from": -0.1})", "decision.review_from: must be a score in [0, 1]");
    refused(R"({"version": 1, "review_from": true})", "decision.review_from: must be a score");
    refused(R"({"version": 1, "decline_from": "none"})", "decision.decline_from: must be a score");
    refused(R"({"version": 1, "review_from": 0.8, "decline_from": 0.7})", "decision.decline_from: must be >= review_from (0.8)");
    refused(R"({"version": 1, "decline_from": 0.4})", "must be >= review_from (0.5, the bundle's threshold)");
    refused(R"({"version": 1, "bands": {}})", "decision: unknown key 'bands' (known: version, review_from, decline_from, rules)");
    refused(R"({"version": 1, "rules": {}})", "decision.rules: must be a list");
    refused(R"({"version": 1, "rules": [1]})", "decision.rules[0]: must be an object");
    refused(section(R"({"code": 1, "when": "amount > 1", "action": "review"})"), "decision.rules[0]: missing key 'name'");
    refused(section(R"({"code": 1, "name": "a b", "when": "amount > 1", "action": "review"})"),
            "decision.rules[0].name: must be 1 to 64 of [A-Za-z0-9_.-]");
    refused(section(R"({"code": 1, "name": 5, "when": "amount > 1", "action": "review"})"), "decision.rules[0].name: must be a string");
    refused(section(rule("amount > 1", R"("action": "review", "severity": 3)")),
            "decision.rules[0] 'r1': unknown key 'severity' (known: code, name, when, action, mode, description)");
    refused(section(R"({"name": "r1", "when": "amount > 1", "action": "review"})"), "decision.rules[0] 'r1': missing key 'code'");
    refused(section(rule("amount > 1", R"("action": "review")", "r1", 0)), "decision.rules[0] 'r1'.code: must be an integer from 1");
    refused(section(R"({"code": 1.5, "name": "r1", "when": "amount > 1", "action": "review"})"), "'r1'.code: must be an integer");
    refused(section(R"({"code": 4294967297, "name": "r1", "when": "amount > 1", "action": "review"})"), "'r1'.code: must be an integer");
    refused(section(R"({"code": 18446744073709551615, "name": "r1", "when": "amount > 1", "action": "review"})"), "'r1'.code: must be");
    refused(section(rule("amount > 1", R"("action": "block")")), "decision.rules[0] 'r1'.action: must be \"review\" or \"decline\", got \"block\"");
    refused(section(rule("amount > 1", R"("action": "review", "mode": "draft")")), "'r1'.mode: must be \"active\"");
    refused(section(rule("amount > 1", R"("action": "review", "description": 3)")), "'r1'.description: must be a string");
    refused(section(R"({"code": 1, "name": "r1", "action": "review"})"), "decision.rules[0] 'r1': missing key 'when'");
    refused(section(R"({"code": 1, "name": "r1", "when": 5, "action": "review"})"), "decision.rules[0] 'r1'.when: must be a string");
    refused(section(rule("amount > 1") + ", " + rule("amount > 2", R"("action": "review")", "r2", 1)),
            "decision.rules[1] 'r2'.code: 1 is also the code of decision.rules[0] 'r1'");
    refused(section(rule("amount > 1") + ", " + rule("amount > 2", R"("action": "review")", "r1", 2)),
            "decision.rules[1] 'r1'.name: 'r1' is also the name of decision.rules[0] 'r1'");
    refused(section(rule("amount > 1") + ", " + rule("amout > 2", R"("action": "review")", "r2", 2)),
            "decision.rules[1] 'r2': when, column 1: unknown name 'amout'");
    std::string many;
    for (int i = 0; i < 65; ++i) many += (i ? ", " : "") + rule("amount > 1", R"("action": "review")", "r" + std::to_string(i), i + 1);
    refused(section(many), "decision.rules: has 65 rules; at most 64");
    std::string deep = R"({"version": 1, "rules": [{"code": 1, "name": "r1", "when": "amount > 1", "action": "review", "description": )";
    refused(deep + std::string(20, '[') + std::string(20, ']') + "}]}", "nested more than 8 levels");
}

}  // namespace

int main() {
    test_numbers();
    test_missing();
    test_codes();
    test_logic();
    test_refusals();
    test_bounds();
    test_layout();
    test_section();
    test_section_refusals();
    return report_checks();
}
