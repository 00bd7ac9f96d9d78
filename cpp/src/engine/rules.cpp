#include "engine/rules.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string_view>

#include "common/error.h"

namespace libfraud {
namespace {

using Cmp = CompiledRules::Cmp;
using Source = CompiledRules::Source;
using Test = CompiledRules::Test;
using TestKind = CompiledRules::TestKind;

// A constant compared with a float32 value (a feature, the score) is rounded to float32 first, as
// the trees compare: `x == 0.1` then holds for the feature 0.1f. From 2^128 - 2^103 on, round to
// nearest gives inf (an explicit case: the plain conversion is undefined out of float's range).
double as_float32(double x) {
    constexpr double kRoundsToInf = 3.4028235677973366e38;
    if (x >= kRoundsToInf) return std::numeric_limits<double>::infinity();
    if (x <= -kRoundsToInf) return -std::numeric_limits<double>::infinity();
    return static_cast<double>(static_cast<float>(x));
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_keyword(std::string_view s) {
    return s == "and" || s == "or" || s == "not" || s == "in" || s == "is" || s == "missing";
}

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

const char* cmp_text(Cmp c) {
    switch (c) {
        case Cmp::Lt: return "<";
        case Cmp::Le: return "<=";
        case Cmp::Gt: return ">";
        case Cmp::Ge: return ">=";
        case Cmp::Eq: return "==";
        case Cmp::Ne: return "!=";
    }
    return "?";
}

// `5000 < amount` is `amount > 5000`.
Cmp mirrored(Cmp c) {
    switch (c) {
        case Cmp::Lt: return Cmp::Gt;
        case Cmp::Le: return Cmp::Ge;
        case Cmp::Gt: return Cmp::Lt;
        case Cmp::Ge: return Cmp::Le;
        default: return c;
    }
}

enum class Tok { End, Name, Number, String, LParen, RParen, LBracket, RBracket, Comma, Compare };

struct Token {
    Tok kind = Tok::End;
    size_t pos = 0;      // byte offset in `when`
    std::string text;    // a name as written, a string literal's bytes (escapes resolved)
    double number = 0;
    bool integer = false;  // a number written as digits only (with an optional '-')
    int64_t integer_value = 0;
    Cmp cmp = Cmp::Eq;
};

// What an operand is: a name (resolved) or a constant.
struct Value {
    bool is_name = false;
    CompiledRules::Operand op;
    bool categorical = false;  // a name whose values are codes
    bool strings = false;      // a categorical field whose codes are hashed strings
    std::string shown;         // the name as written / the literal as written
    size_t pos = 0;
    bool is_string = false;    // a constant: a string literal, else a number
    Token literal;
};

}  // namespace

// Tokenises, parses (recursive descent, nesting bounded) into a small tree of and / or / not over
// tests, then lays the tests out in source order with their jump targets.
class RuleCompiler {
public:
    RuleCompiler(CompiledRules& out, const std::string& when, const std::string& label)
        : out_(out), when_(when), label_(label) {}

    void compile() {
        if (when_.size() > kMaxConditionBytes)
            throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, label_ + ": when: longer than " +
                                                              std::to_string(kMaxConditionBytes) + " bytes (" +
                                                              std::to_string(when_.size()) + ")");
        tokenize();
        if (tokens_[0].kind == Tok::End) fail(0, "an empty condition");
        const int32_t root = parse_or(0);
        if (peek().kind != Tok::End)
            fail(peek().pos, "expected 'and', 'or' or the end of the condition, got " + describe(peek()));
        const int32_t base = static_cast<int32_t>(out_.tests_.size());
        out_.tests_.resize(out_.tests_.size() + leaves_.size());
        next_leaf_ = 0;
        emit(root, base, CompiledRules::kTrue, CompiledRules::kFalse);
        out_.starts_.push_back(base);
    }

private:
    struct Node {
        enum Kind { Leaf, And, Or, Not } kind = Leaf;
        int32_t leaf = -1;           // Leaf: index into leaves_
        std::vector<int32_t> kids;   // And, Or: two or more; Not: one
        size_t leaves = 1;           // tests under this node
    };

    CompiledRules& out_;
    const std::string& when_;
    const std::string& label_;
    std::vector<Token> tokens_;
    size_t at_ = 0;
    std::vector<Node> nodes_;
    std::vector<Test> leaves_;
    size_t next_leaf_ = 0;

    // ---- errors: the rule, the key, what, where (column and a caret under an excerpt)

    [[noreturn]] void fail(size_t pos, const std::string& what) const {
        constexpr size_t kWindow = 36;  // bytes shown either side of the position in a long condition
        pos = std::min(pos, when_.size());
        size_t begin = pos > kWindow ? pos - kWindow : 0, end = std::min(when_.size(), pos + kWindow);
        // Never cut inside a UTF-8 sequence.
        while (begin > 0 && (static_cast<unsigned char>(when_[begin]) & 0xC0) == 0x80) --begin;
        while (end < when_.size() && (static_cast<unsigned char>(when_[end]) & 0xC0) == 0x80) ++end;
        auto columns = [&](size_t from, size_t to) {  // code points, for the caret
            size_t n = 0;
            for (size_t i = from; i < to; ++i) n += (static_cast<unsigned char>(when_[i]) & 0xC0) != 0x80;
            return n;
        };
        std::string excerpt = begin > 0 ? "..." : "";
        for (size_t i = begin; i < end; ++i) {
            const char c = when_[i];
            const auto u = static_cast<unsigned char>(c);
            excerpt += (c == '\n' || c == '\t' || c == '\r') ? ' ' : (u < 0x20 || u == 0x7f) ? '?' : c;
        }
        if (end < when_.size()) excerpt += "...";
        const size_t caret = (begin > 0 ? 3 : 0) + columns(begin, pos);
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, label_ + ": when, column " + std::to_string(columns(0, pos) + 1) +
                                                          ": " + what + "\n    " + excerpt + "\n    " +
                                                          std::string(caret, ' ') + "^");
    }

    std::string describe(const Token& t) const {
        if (t.kind == Tok::End) return "the end of the condition";
        return "'" + bounded(when_.substr(t.pos, token_length(t)), 40) + "'";
    }
    size_t token_length(const Token& t) const {
        const size_t next = &t - tokens_.data() + 1;
        size_t end = next < tokens_.size() ? tokens_[next].pos : when_.size();
        while (end > t.pos && (when_[end - 1] == ' ' || when_[end - 1] == '\t' || when_[end - 1] == '\n' ||
                               when_[end - 1] == '\r'))
            --end;
        return end - t.pos;
    }

    // ---- tokens

    void tokenize() {
        const std::string& s = when_;
        size_t i = 0;
        while (true) {
            while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
            Token t;
            t.pos = i;
            if (i == s.size()) {
                tokens_.push_back(t);
                return;
            }
            const char c = s[i];
            if (is_name_start(c)) {
                size_t j = i;
                while (j < s.size() && is_name_char(s[j])) ++j;
                // feature.NAME / field.NAME: one token.
                const std::string_view head(s.data() + i, j - i);
                if ((head == "feature" || head == "field") && j < s.size() && s[j] == '.') {
                    ++j;
                    if (j == s.size() || !is_name_start(s[j])) fail(j, "expected a name after '" + std::string(head) + ".'");
                    while (j < s.size() && is_name_char(s[j])) ++j;
                }
                t.kind = Tok::Name;
                t.text = s.substr(i, j - i);
                i = j;
            } else if (is_digit(c) || ((c == '-' || c == '.') && i + 1 < s.size() &&
                                       (is_digit(s[i + 1]) || (s[i + 1] == '.' && c == '-')))) {
                i = number(t, i);
            } else if (c == '"' || c == '\'') {
                size_t j = i + 1;
                while (true) {
                    if (j >= s.size()) fail(i, "a string not closed");
                    if (s[j] == c) break;
                    if (s[j] == '\\') {
                        if (j + 1 < s.size() && (s[j + 1] == '\\' || s[j + 1] == c)) {
                            t.text += s[j + 1];
                            j += 2;
                            continue;
                        }
                        fail(j, std::string("an unknown escape (only \\\\ and \\") + c + " are known)");
                    }
                    if (s[j] == '\n' || s[j] == '\r') fail(j, "a line break inside a string");
                    t.text += s[j++];
                }
                t.kind = Tok::String;
                i = j + 1;
            } else if (c == '<' || c == '>' || c == '=' || c == '!') {
                const bool eq = i + 1 < s.size() && s[i + 1] == '=';
                t.kind = Tok::Compare;
                if (c == '<') t.cmp = eq ? Cmp::Le : Cmp::Lt;
                else if (c == '>') t.cmp = eq ? Cmp::Ge : Cmp::Gt;
                else if (c == '=' && eq) t.cmp = Cmp::Eq;
                else if (c == '!' && eq) t.cmp = Cmp::Ne;
                else fail(i, c == '=' ? "'=' is not an operator (equality is '==')" : "'!' is not an operator (write 'not' or '!=')");
                i += eq ? 2 : 1;
            } else if (c == '(' || c == ')' || c == '[' || c == ']' || c == ',') {
                t.kind = c == '(' ? Tok::LParen : c == ')' ? Tok::RParen : c == '[' ? Tok::LBracket
                                                                 : c == ']' ? Tok::RBracket : Tok::Comma;
                ++i;
            } else if (c == '&' || c == '|') {
                fail(i, std::string("'") + c + "' is not an operator (write '" + (c == '&' ? "and" : "or") + "')");
            } else {
                fail(i, (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
                            ? "an unexpected character"
                            : std::string("an unexpected character '") + c + "'");
            }
            tokens_.push_back(std::move(t));
        }
    }

    // A decimal number: [-] digits [. digits] [e [+-] digits], or [-] . digits ...
    size_t number(Token& t, size_t i) {
        const std::string& s = when_;
        size_t j = i;
        if (s[j] == '-') ++j;
        bool digits_only = true, any_digit = false;
        while (j < s.size() && is_digit(s[j])) ++j, any_digit = true;
        if (j < s.size() && s[j] == '.') {
            digits_only = false;
            ++j;
            while (j < s.size() && is_digit(s[j])) ++j, any_digit = true;
        }
        if (any_digit && j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
            digits_only = false;
            size_t k = j + 1;
            if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
            if (k == s.size() || !is_digit(s[k])) fail(i, "a malformed number (an exponent needs digits)");
            while (k < s.size() && is_digit(s[k])) ++k;
            j = k;
        }
        if (!any_digit || (j < s.size() && (is_name_char(s[j]) || s[j] == '.'))) fail(i, "a malformed number");
        // from_chars: no locale (strtod would read "0,5" in a host that set LC_NUMERIC).
        const char* first = s.data() + i + (s[i] == '-' ? 1 : 0);
        const auto r = std::from_chars(first, s.data() + j, t.number);
        if (r.ec != std::errc() || r.ptr != s.data() + j || !std::isfinite(t.number))
            fail(i, "a number out of range");
        if (s[i] == '-') t.number = -t.number;
        if (digits_only) {
            uint64_t u = 0;
            const auto ri = std::from_chars(first, s.data() + j, u);
            t.integer = ri.ec == std::errc() && u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
            t.integer_value = t.integer ? (s[i] == '-' ? -static_cast<int64_t>(u) : static_cast<int64_t>(u)) : 0;
        }
        t.kind = Tok::Number;
        return j;
    }

    const Token& peek() const { return tokens_[at_]; }
    const Token& next() { return tokens_[at_ < tokens_.size() - 1 ? at_++ : at_]; }
    bool peek_keyword(const char* k) const { return peek().kind == Tok::Name && peek().text == k; }

    // ---- the grammar: or_expr := and_expr ('or' and_expr)*; and_expr := not_expr ('and' not_expr)*;
    // not_expr := 'not' not_expr | '(' or_expr ')' | comparison

    int32_t add_node(Node n) {
        nodes_.push_back(std::move(n));
        return static_cast<int32_t>(nodes_.size() - 1);
    }

    int32_t parse_chain(size_t depth, Node::Kind kind) {
        const char* keyword = kind == Node::Or ? "or" : "and";
        Node n;
        n.kind = kind;
        n.kids.push_back(kind == Node::Or ? parse_chain(depth, Node::And) : parse_not(depth));
        while (peek_keyword(keyword)) {
            next();
            n.kids.push_back(kind == Node::Or ? parse_chain(depth, Node::And) : parse_not(depth));
        }
        if (n.kids.size() == 1) return n.kids[0];
        n.leaves = 0;
        for (int32_t k : n.kids) n.leaves += nodes_[k].leaves;
        return add_node(std::move(n));
    }
    int32_t parse_or(size_t depth) { return parse_chain(depth, Node::Or); }

    void deeper(size_t depth, size_t pos) const {
        if (depth + 1 > kMaxConditionNesting)
            fail(pos, "nested more than " + std::to_string(kMaxConditionNesting) + " levels deep (parentheses and 'not')");
    }

    int32_t parse_not(size_t depth) {
        if (peek_keyword("not")) {
            deeper(depth, peek().pos);
            next();
            Node n;
            n.kind = Node::Not;
            n.kids.push_back(parse_not(depth + 1));
            n.leaves = nodes_[n.kids[0]].leaves;
            return add_node(std::move(n));
        }
        if (peek().kind == Tok::LParen) {
            const size_t open = peek().pos;
            deeper(depth, open);
            next();
            const int32_t inner = parse_or(depth + 1);
            if (peek().kind != Tok::RParen)
                fail(peek().pos, "expected ')' to close the '(' at column " + std::to_string(open + 1) + ", got " +
                                     describe(peek()));
            next();
            return inner;
        }
        return parse_comparison();
    }

    // Which orders of x against y (order_of) make x <cmp> y hold.
    static uint8_t truth_of(Cmp c) {
        switch (c) {
            case Cmp::Lt: return 1;
            case Cmp::Gt: return 2;
            case Cmp::Eq: return 4;
            case Cmp::Le: return 1 | 4;
            case Cmp::Ge: return 2 | 4;
            case Cmp::Ne: return 1 | 2;
        }
        return 0;
    }

    int32_t leaf(Test t, size_t pos) {
        t.truth = truth_of(t.cmp);
        if (leaves_.size() >= kMaxConditionTests)
            fail(pos, "more than " + std::to_string(kMaxConditionTests) + " tests in one condition");
        if (t.a.source == Source::Feature || (t.kind == TestKind::CompareNames && t.b.source == Source::Feature))
            out_.reads_features_ = true;
        leaves_.push_back(t);
        Node n;
        n.leaf = static_cast<int32_t>(leaves_.size() - 1);
        return add_node(std::move(n));
    }

    int32_t parse_comparison() {
        Value lhs = operand();
        const Token& t = peek();
        if (t.kind == Tok::Compare) {
            const Cmp cmp = t.cmp;
            const size_t cmp_pos = t.pos;
            next();
            Value rhs = operand();
            return comparison(std::move(lhs), cmp, cmp_pos, std::move(rhs));
        }
        if (peek_keyword("in") || peek_keyword("not")) {
            const bool negated = peek_keyword("not");
            const size_t op_pos = t.pos;
            next();
            if (negated && !peek_keyword("in"))
                fail(peek().pos, "expected 'in' after 'not' (for 'not in'), got " + describe(peek()));
            if (negated) next();
            return in_list(std::move(lhs), negated, op_pos);
        }
        if (peek_keyword("is")) {
            const size_t op_pos = t.pos;
            next();
            const bool negated = peek_keyword("not");
            if (negated) next();
            if (!peek_keyword("missing"))
                fail(peek().pos, std::string("expected 'missing' after 'is") + (negated ? " not" : "") + "', got " +
                                     describe(peek()));
            next();
            if (!lhs.is_name) fail(lhs.pos, "'is missing' tests a name, not a constant");
            (void)op_pos;
            Test test;
            test.kind = TestKind::IsMissing;
            test.a = lhs.op;
            const int32_t l = leaf(test, lhs.pos);
            if (!negated) return l;
            Node n;
            n.kind = Node::Not;
            n.kids.push_back(l);
            return add_node(std::move(n));
        }
        fail(t.pos, "expected a comparison (<, <=, >, >=, ==, !=, in, not in, is missing) after " +
                        std::string(lhs.is_name ? "'" + lhs.shown + "'" : "the constant") + ", got " + describe(t));
    }

    // ---- names and constants

    Value operand() {
        const Token& t = peek();
        Value v;
        v.pos = t.pos;
        if (t.kind == Tok::Number || t.kind == Tok::String) {
            v.is_string = t.kind == Tok::String;
            v.literal = t;
            v.shown = when_.substr(t.pos, token_length(t));
            next();
            return v;
        }
        if (t.kind != Tok::Name || is_keyword(t.text))
            fail(t.pos, "expected a name, a number or a string, got " + describe(t));
        v.is_name = true;
        v.shown = t.text;
        resolve(v, t);
        next();
        return v;
    }

    bool field(const std::string& n, Value& v) const {
        const Schema& s = out_.schema_;
        if (n == "amount" && s.has_amount) {
            v.op = {Source::Amount, 0};
            return true;
        }
        if (int i = s.numeric_index(n); i >= 0) {
            v.op = {Source::Numeric, i};
            return true;
        }
        if (int i = s.categorical_index(n); i >= 0) {
            v.op = {Source::Categorical, i};
            v.categorical = true;
            v.strings = static_cast<size_t>(i) < s.categorical_strings.size() && s.categorical_strings[i];
            return true;
        }
        return false;
    }
    bool feature(const std::string& n, Value& v) const {
        const auto& f = out_.features_;
        const auto it = std::find(f.begin(), f.end(), n);
        if (it == f.end()) return false;
        v.op = {Source::Feature, static_cast<int32_t>(it - f.begin())};
        return true;
    }

    void resolve(Value& v, const Token& t) const {
        const std::string& n = t.text;
        const Schema& s = out_.schema_;
        auto entity_hint = [&](const std::string& name) {
            return s.entity_index(name) >= 0 ? " ('" + name + "' is an entity id: rules read the amount, numeric "
                                                               "and categorical fields, features and the score)"
                                             : std::string();
        };
        if (n.rfind("feature.", 0) == 0) {
            const std::string name = n.substr(8);
            if (!feature(name, v)) fail(t.pos, "no feature '" + name + "' in features.order" + suggestion(name, true, false));
            return;
        }
        if (n.rfind("field.", 0) == 0) {
            const std::string name = n.substr(6);
            if (!field(name, v))
                fail(t.pos, "no field '" + name + "' in the schema" +
                                (name == "amount" ? " (it has no amount)" : entity_hint(name) + suggestion(name, false, true)));
            return;
        }
        if (n == "score") {
            v.op = {Source::Score, 0};
            return;
        }
        // A bare name is the event's field when the schema has one (the exact value the event
        // carries: pass-through features share their field's name), else the model's feature.
        if (field(n, v) || feature(n, v)) return;
        fail(t.pos, "unknown name '" + n + "': not a field of the schema nor a feature of features.order" +
                        (entity_hint(n).empty() ? suggestion(n, true, true) : entity_hint(n)));
    }

    // " (did you mean 'x'?)" for the closest name within 2 edits.
    std::string suggestion(const std::string& n, bool features, bool fields) const {
        std::vector<std::string> names;
        if (features) names = out_.features_;
        if (fields) {
            const Schema& s = out_.schema_;
            if (s.has_amount) names.push_back("amount");
            names.insert(names.end(), s.numeric.begin(), s.numeric.end());
            names.insert(names.end(), s.categorical.begin(), s.categorical.end());
            names.push_back("score");
        }
        std::string best;
        size_t best_d = 3;
        for (const std::string& c : names) {
            if (c.size() > n.size() + 2 || n.size() > c.size() + 2) continue;
            const size_t d = edit_distance(n, c);
            if (d < best_d) best_d = d, best = c;
        }
        return best.empty() ? std::string() : " (did you mean '" + best + "'?)";
    }

    // ---- tests

    double constant_for(const Value& name, const Value& lit) const {
        if (lit.is_string) fail(lit.pos, "'" + name.shown + "' is a number, compared with a string");
        const bool f32 = name.op.source == Source::Feature || name.op.source == Source::Score;
        return f32 ? as_float32(lit.literal.number) : lit.literal.number;
    }

    int64_t code_for(const Value& name, const Value& lit) const {
        if (name.strings) {
            if (!lit.is_string)
                fail(lit.pos, "'" + name.shown + "' holds string codes (the schema's codes = \"string\"): write the value "
                                                 "as a string, e.g. \"" + lit.shown + "\"");
            return hash_id(lit.literal.text.data(), lit.literal.text.size());
        }
        if (lit.is_string)
            fail(lit.pos, "'" + name.shown + "' holds integer codes (the schema's codes = \"int\"): write the code as a "
                                             "number, not a string");
        if (!lit.literal.integer || lit.literal.integer_value < 0)
            fail(lit.pos, "'" + name.shown + "' holds integer codes: " + lit.shown +
                              " is not one (a code is an integer >= 0; test a missing code with 'is missing')");
        return lit.literal.integer_value;
    }

    int32_t comparison(Value lhs, Cmp cmp, size_t cmp_pos, Value rhs) {
        if (!lhs.is_name && !rhs.is_name) fail(lhs.pos, "compares two constants");
        if (!lhs.is_name) {
            std::swap(lhs, rhs);
            cmp = mirrored(cmp);
        }
        const bool ordered = cmp != Cmp::Eq && cmp != Cmp::Ne;
        Test t;
        t.cmp = cmp;
        t.a = lhs.op;
        if (rhs.is_name) {
            if (lhs.categorical != rhs.categorical)
                fail(rhs.pos, "'" + lhs.shown + "' and '" + rhs.shown + "' do not compare: one is categorical (codes), "
                                                                          "the other a number");
            t.b = rhs.op;
            if (!lhs.categorical) {
                t.kind = TestKind::CompareNames;
                return leaf(t, lhs.pos);
            }
            if (ordered)
                fail(cmp_pos, "'" + lhs.shown + "' and '" + rhs.shown + "' are categorical: only == and != compare "
                                                                          "their codes, not " + cmp_text(cmp));
            if (lhs.strings != rhs.strings)
                fail(rhs.pos, "'" + lhs.shown + "' and '" + rhs.shown + "' do not compare: one holds string codes, "
                                                                          "the other integer codes");
            t.kind = TestKind::CodeNames;
            return leaf(t, lhs.pos);
        }
        if (lhs.categorical) {
            if (ordered)
                fail(cmp_pos, "'" + lhs.shown + "' is categorical: only ==, !=, in and not in apply (codes have no "
                                                "order), not " + cmp_text(cmp));
            t.kind = TestKind::CodeConst;
            t.code = code_for(lhs, rhs);
            return leaf(t, lhs.pos);
        }
        t.kind = TestKind::CompareConst;
        t.number = constant_for(lhs, rhs);
        return leaf(t, lhs.pos);
    }

    int32_t in_list(Value lhs, bool negated, size_t op_pos) {
        if (!lhs.is_name) fail(lhs.pos, "'in' tests a name, not a constant");
        if (peek().kind != Tok::LBracket) fail(peek().pos, "expected '[' to open the list, got " + describe(peek()));
        next();
        Test t;
        t.kind = lhs.categorical ? TestKind::InCodes : TestKind::InNumbers;
        t.negated = negated;
        t.a = lhs.op;
        std::vector<double> numbers;
        std::vector<int64_t> codes;
        while (true) {
            if (peek().kind == Tok::RBracket && (!numbers.empty() || !codes.empty())) break;  // a trailing comma
            const Token& item = peek();
            if (item.kind != Tok::Number && item.kind != Tok::String)
                fail(item.pos, item.kind == Tok::RBracket ? "an empty list"
                                                          : "expected a number or a string in the list, got " + describe(item));
            const Value v = operand();
            if (lhs.categorical) codes.push_back(code_for(lhs, v));
            else numbers.push_back(constant_for(lhs, v));
            if (peek().kind == Tok::Comma) {
                next();
                continue;
            }
            if (peek().kind != Tok::RBracket) fail(peek().pos, "expected ',' or ']' in the list, got " + describe(peek()));
            break;
        }
        next();
        (void)op_pos;
        if (lhs.categorical) {
            t.list_begin = static_cast<uint32_t>(out_.codes_.size());
            t.list_size = static_cast<uint32_t>(codes.size());
            out_.codes_.insert(out_.codes_.end(), codes.begin(), codes.end());
        } else {
            t.list_begin = static_cast<uint32_t>(out_.numbers_.size());
            t.list_size = static_cast<uint32_t>(numbers.size());
            out_.numbers_.insert(out_.numbers_.end(), numbers.begin(), numbers.end());
        }
        return leaf(t, lhs.pos);
    }

    // ---- layout: the tests in source order; `and` jumps to the next test when one holds, `or`
    // when one fails, `not` swaps the targets. Every jump goes forward, so evaluation ends.

    void emit(int32_t id, int32_t base, int32_t on_true, int32_t on_false) {
        const Node& n = nodes_[id];
        if (n.kind == Node::Leaf) {
            Test& t = out_.tests_[base + next_leaf_];
            t = leaves_[n.leaf];
            t.on_true = on_true;
            t.on_false = on_false;
            ++next_leaf_;
            return;
        }
        if (n.kind == Node::Not) {
            emit(n.kids[0], base, on_false, on_true);
            return;
        }
        for (size_t k = 0; k < n.kids.size(); ++k) {
            if (k + 1 == n.kids.size()) {
                emit(n.kids[k], base, on_true, on_false);
                break;
            }
            const int32_t following = base + static_cast<int32_t>(next_leaf_ + nodes_[n.kids[k]].leaves);
            if (n.kind == Node::And) emit(n.kids[k], base, following, on_false);
            else emit(n.kids[k], base, on_true, following);
        }
    }
};

CompiledRules::CompiledRules(const std::vector<std::string>& feature_names, const Schema& schema)
    : features_(feature_names), schema_(schema) {}

void CompiledRules::add(const std::string& when, const std::string& label) {
    const size_t tests = tests_.size(), numbers = numbers_.size(), codes = codes_.size();
    const bool reads = reads_features_;
    try {
        RuleCompiler(*this, when, label).compile();
    } catch (...) {  // a refused rule leaves the program as it was
        tests_.resize(tests);
        numbers_.resize(numbers);
        codes_.resize(codes);
        reads_features_ = reads;
        throw;
    }
}

namespace {

// x against y as one of four orders: 0 less, 1 greater, 2 equal, 3 unordered (a NaN): a test
// holds when bit order_of(x, y) of its truth mask is set, with no branch on the operator (it
// mispredicts: every rule's tests share the one evaluation loop).
inline unsigned order_of(double x, double y) {
    return static_cast<unsigned>(x > y) | static_cast<unsigned>(x == y) << 1 |
           static_cast<unsigned>(std::isunordered(x, y)) * 3u;
}

inline double number_of(const CompiledRules::Operand& o, const float* row, const fraud_event& e, float score) {
    switch (o.source) {
        case Source::Feature: return row[o.index];
        case Source::Amount: return e.amount;
        case Source::Numeric: return e.numeric[o.index];
        case Source::Score: return score;
        case Source::Categorical: break;
    }
    return std::numeric_limits<double>::quiet_NaN();
}

inline int64_t code_of(const CompiledRules::Operand& o, const fraud_event& e) { return e.categorical[o.index]; }

}  // namespace

// Every comparison with a missing value (NaN, a negative code) is false, `!=` and `not in`
// included; only `is missing` sees them.
uint64_t CompiledRules::evaluate(const float* row, const fraud_event& event, float score) const {
    uint64_t hits = 0;
    const Test* tests = tests_.data();
    for (size_t r = 0; r < starts_.size(); ++r) {
        int32_t pc = starts_[r];
        while (pc >= 0) {
            const Test& t = tests[pc];
            bool holds = false;
            switch (t.kind) {
                case TestKind::CompareConst: {
                    holds = t.truth >> order_of(number_of(t.a, row, event, score), t.number) & 1u;
                    break;
                }
                case TestKind::CompareNames: {
                    holds = t.truth >> order_of(number_of(t.a, row, event, score), number_of(t.b, row, event, score)) & 1u;
                    break;
                }
                case TestKind::CodeConst: {
                    const int64_t c = code_of(t.a, event);
                    holds = c >= 0 && (c == t.code) == (t.cmp == Cmp::Eq);
                    break;
                }
                case TestKind::CodeNames: {
                    const int64_t c = code_of(t.a, event), d = code_of(t.b, event);
                    holds = c >= 0 && d >= 0 && (c == d) == (t.cmp == Cmp::Eq);
                    break;
                }
                case TestKind::InNumbers: {
                    const double x = number_of(t.a, row, event, score);
                    if (std::isnan(x)) break;
                    const double* list = numbers_.data() + t.list_begin;
                    bool found = false;
                    for (uint32_t k = 0; k < t.list_size && !found; ++k) found = list[k] == x;
                    holds = found != t.negated;
                    break;
                }
                case TestKind::InCodes: {
                    const int64_t c = code_of(t.a, event);
                    if (c < 0) break;
                    const int64_t* list = codes_.data() + t.list_begin;
                    bool found = false;
                    for (uint32_t k = 0; k < t.list_size && !found; ++k) found = list[k] == c;
                    holds = found != t.negated;
                    break;
                }
                case TestKind::IsMissing:
                    holds = t.a.source == Source::Categorical ? code_of(t.a, event) < 0
                                                              : std::isnan(number_of(t.a, row, event, score));
                    break;
            }
            pc = holds ? t.on_true : t.on_false;
        }
        if (pc == kTrue) hits |= uint64_t{1} << r;
    }
    return hits;
}

}  // namespace libfraud
