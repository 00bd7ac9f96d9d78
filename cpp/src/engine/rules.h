// The rule language of the manifest's `decision` section (export/BUNDLE.md "decision"): a condition
// such as `amount > 5000 and card_count_1h > 3` over the model's features, the event's fields and
// the served score. Parsed once at load (bounded length and nesting, so a hostile manifest cannot
// exhaust the stack) into a flat program of tests with forward jumps (`and`/`or`/`not` become jump
// targets), evaluated per event with no allocation, no recursion and no stack of values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "schema/schema.h"

namespace libfraud {

// A condition is at most this many bytes, nests parentheses and `not` at most this deep, and holds
// at most this many tests (comparisons, `in`, `is missing`).
constexpr size_t kMaxConditionBytes = 4096;
constexpr size_t kMaxConditionNesting = 32;
constexpr size_t kMaxConditionTests = 256;

class CompiledRules {
public:
    // Where a name reads its value.
    enum class Source : uint8_t { Feature, Amount, Numeric, Categorical, Score };
    enum class Cmp : uint8_t { Lt, Le, Gt, Ge, Eq, Ne };
    enum class TestKind : uint8_t {
        CompareConst,  // a number against a constant (float32-rounded for features and the score)
        CompareNames,  // two numbers
        CodeConst,     // a categorical code against a code (== or !=)
        CodeNames,     // two categorical codes (== or !=)
        InNumbers,     // a number in (or not in) a list of constants
        InCodes,       // a code in (or not in) a list of codes
        IsMissing,     // NaN, or a code < 0 (FRAUD_CODE_MISSING)
    };
    struct Operand {
        Source source = Source::Score;
        int32_t index = 0;  // the feature, numeric or categorical field's index
    };
    static constexpr int32_t kTrue = -1, kFalse = -2;
    struct Test {
        TestKind kind = TestKind::IsMissing;
        Cmp cmp = Cmp::Eq;
        bool negated = false;  // `not in`
        uint8_t truth = 0;     // CompareConst/Names: bit o holds for the order o (rules.cpp: order_of)
        Operand a, b;
        double number = 0;     // CompareConst
        int64_t code = 0;      // CodeConst
        uint32_t list_begin = 0, list_size = 0;  // into numbers_ / codes_
        int32_t on_true = kTrue, on_false = kFalse;  // the next test, or kTrue / kFalse
    };

    CompiledRules(const std::vector<std::string>& feature_names, const Schema& schema);

    // Compiles `when` as the next rule (bit rule_count()). Throws FraudError(BUNDLE_INVALID)
    // "<label>: when, column C: <what>", then an excerpt of `when` and a caret under column C.
    void add(const std::string& when, const std::string& label);

    size_t rule_count() const { return starts_.size(); }
    // True when some rule reads a feature (the row must then hold every feature).
    bool reads_features() const { return reads_features_; }
    // Bit i set when rule i holds. row: the model's input row (may be NULL if !reads_features());
    // event: the event scored; score: the served score. Allocation-free; const, so thread-safe.
    uint64_t evaluate(const float* row, const fraud_event& event, float score) const;

    // The program, for tests and introspection: rule i's first test is tests()[start(i)].
    const std::vector<Test>& tests() const { return tests_; }
    int32_t start(size_t i) const { return starts_[i]; }

private:
    std::vector<std::string> features_;
    Schema schema_;
    std::vector<Test> tests_;
    std::vector<int32_t> starts_;
    std::vector<double> numbers_;
    std::vector<int64_t> codes_;
    bool reads_features_ = false;

    friend class RuleCompiler;
};

}  // namespace libfraud
