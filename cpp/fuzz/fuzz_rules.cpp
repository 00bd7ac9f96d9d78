// bytes -> a rule's condition (the `when` of the decision section, export/BUNDLE.md "decision"),
// compiled by CompiledRules against a fixed world: features amount, card_count_1h, ratio; a schema
// with an amount, numeric risk, categorical channel (string codes) and mcc (integer codes), entity
// card. A FraudError(BUNDLE_INVALID) with a bounded message is the expected answer to a bad
// condition. On one that compiles: the program's jumps all go forward and stay in range, it
// evaluates on events of every kind (all missing, zeros, values, extremes), and `not (<it>)`, when
// that compiles too, holds exactly where it does not. make_seeds.py writes conditions to start from.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/rules.h"
#include "fuzz_util.h"
#include "schema/schema.h"

namespace {

constexpr size_t kMaxMessage = 2100;  // 2,000 characters and a note of the full length

const libfraud::Schema& world_schema() {
    static const libfraud::Schema s = [] {
        libfraud::Schema w;
        w.entities = {"card"};
        w.entity_required = {true};
        w.entity_strings = {false};
        w.numeric = {"risk"};
        w.categorical = {"channel", "mcc"};
        w.categorical_strings = {true, false};
        return w;
    }();
    return s;
}
const std::vector<std::string> kFeatures = {"amount", "card_count_1h", "ratio"};

struct World {
    float row[3];
    double amount, risk;
    int64_t card = 1, codes[2];
    float score;
};

bool compile(const std::string& when, libfraud::CompiledRules& out) {
    try {
        out.add(when, "rule");
        return true;
    } catch (const libfraud::FraudError& e) {
        FUZZ_CHECK(e.status() == FRAUD_STATUS_BUNDLE_INVALID);
        FUZZ_CHECK(std::strlen(e.what()) <= kMaxMessage);
        return false;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string when(reinterpret_cast<const char*>(data), size);
    libfraud::CompiledRules rules(kFeatures, world_schema());
    if (!compile(when, rules)) return 0;
    const auto& tests = rules.tests();
    FUZZ_CHECK(rules.rule_count() == 1 && !tests.empty() && tests.size() <= libfraud::kMaxConditionTests);
    for (size_t i = 0; i < tests.size(); ++i)
        for (int32_t next : {tests[i].on_true, tests[i].on_false})
            FUZZ_CHECK(next == libfraud::CompiledRules::kTrue || next == libfraud::CompiledRules::kFalse ||
                       (next > static_cast<int32_t>(i) && static_cast<size_t>(next) < tests.size()));

    libfraud::CompiledRules negated(kFeatures, world_schema());
    const bool has_negation = compile("not (" + when + ")", negated);
    const double nan = std::nan(""), big = std::numeric_limits<double>::max();
    const float fnan = std::numeric_limits<float>::quiet_NaN(), fbig = std::numeric_limits<float>::max();
    const World worlds[] = {
        {{fnan, fnan, fnan}, 0.0, nan, 1, {-1, -1}, fnan},
        {{0, 0, 0}, 0.0, 0.0, 1, {0, 0}, 0.0f},
        {{100, 3, 0.5f}, 5000.5, 0.25, 1, {libfraud::hash_id("web", 3), 5967}, 0.8f},
        {{-fbig, fbig, 1e-38f}, big, -big, 1, {INT64_MAX, INT64_MAX}, 1.0f},
    };
    for (const World& w : worlds) {
        const fraud_event e{1, 0, w.amount, &w.card, &w.risk, w.codes};
        const uint64_t hits = rules.evaluate(w.row, e, w.score);
        FUZZ_CHECK(hits <= 1 && hits == rules.evaluate(w.row, e, w.score));
        if (has_negation) FUZZ_CHECK(negated.evaluate(w.row, e, w.score) == (hits ^ 1));
    }
    return 0;
}
