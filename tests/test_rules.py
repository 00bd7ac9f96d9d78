"""The `decision` section (export/BUNDLE.md "decision"): the core's rule evaluation against a plain
Python reference on random rules over random rows and events (missing values included), string
codes through the core's hash, the bands' edges, shadow rules, every refusal naming its rule, a
bundle carrying rules opened by the core, and `libfraud compile --rules`."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from libfraud import _core
from libfraud.export import build_bundle, check_decision, read_manifest, verify_bundle
from libfraud.rules import check_rules, load_rules

from bundles import payments, random_bundle

# ------------------------------------------------------------------------------ the test's world

# amount; numeric risk, velocity; categorical channel, device_type (string codes), mcc (integer).
SCHEMA = {
    **payments()[0],
    "name": "rules-test",
    "entities": [{"name": "card", "column": "card", "ids": "int", "required": True}],
    "numeric": [{"name": "risk", "column": "risk"}, {"name": "velocity", "column": "velocity"}],
    "categorical": [{"name": "channel", "column": "channel", "codes": "string"},
                    {"name": "device_type", "column": "device_type", "codes": "string"},
                    {"name": "mcc", "column": "mcc", "codes": "int"}],
}
NUMERIC, CATEGORICAL = ["risk", "velocity"], ["channel", "device_type", "mcc"]
STRING_CODED = {"channel", "device_type"}
# "amount" and "channel" are both features and fields (pass-throughs take their field's name).
FEATURES = ["amount", "card_count_1h", "ratio", "channel"]
MASK64 = 2 ** 64 - 1


def reference_hash(s: str) -> int:
    """fraud_hash_id (SCHEMA.md "Ids"): FNV-1a 64 of the UTF-8 bytes, splitmix64's finaliser, the
    top bit cleared."""
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
    return (h ^ (h >> 31)) & (2 ** 63 - 1)


def policy(decision: dict, threshold: float = 0.5, features=FEATURES, schema=SCHEMA) -> _core.DecisionPolicy:
    return _core.DecisionPolicy(json.dumps({"version": 1, **decision}), list(features), json.dumps(schema), threshold)


def evaluate(p: _core.DecisionPolicy, rows, events, scores):
    n = len(scores)
    return p.evaluate(np.ascontiguousarray(rows, dtype=np.float32), np.arange(n, dtype=np.int64),
                      np.zeros(n, np.int64), np.asarray(events["amount"], np.float64),
                      np.zeros((n, 1), np.int64), np.asarray(events["numeric"], np.float64),
                      np.asarray(events["categorical"], np.int64), np.asarray(scores, np.float32))


# ------------------------------------------------------------------------- the Python reference

TOKEN = re.compile(r"""\s*(?:
    (?P<name>(?:feature\.|field\.)?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<punct>[()\[\],])
)""", re.VERBOSE)
COMPARE = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y,
           ">=": lambda x, y: x >= y, "==": lambda x, y: x == y, "!=": lambda x, y: x != y}
MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def tokenize(text: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while text[at:].strip():
        m = TOKEN.match(text, at)
        assert m, f"the reference cannot read {text[at:]!r}"
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        at = m.end()
    return out + [("end", "")]


class Reference:
    """A condition evaluated the plain way, with the documented semantics: a bare name is the
    event's field when there is one, else the feature; a constant against a float32 value (a
    feature, the score) is rounded to float32; any comparison with a missing value (NaN, a
    negative code) is false, `!=` and `not in` included; `and` binds tighter than `or`."""

    def __init__(self, when: str):
        self.tokens = tokenize(when)

    def holds(self, row, event, score) -> bool:
        self.row, self.event, self.score, self.at = row, event, score, 0
        value = self.or_expr()
        assert self.peek() == ("end", "")
        return value

    def peek(self):
        return self.tokens[self.at]

    def take(self):
        self.at += 1
        return self.tokens[self.at - 1]

    def or_expr(self):
        values = [self.and_expr()]
        while self.peek() == ("name", "or"):
            self.take()
            values.append(self.and_expr())
        return any(values)

    def and_expr(self):
        values = [self.not_expr()]
        while self.peek() == ("name", "and"):
            self.take()
            values.append(self.not_expr())
        return all(values)

    def not_expr(self):
        if self.peek() == ("name", "not"):
            self.take()
            return not self.not_expr()
        if self.peek() == ("punct", "("):
            self.take()
            value = self.or_expr()
            assert self.take() == ("punct", ")")
            return value
        return self.comparison()

    def value(self, token):
        """(kind, value): kind "f32" (a feature, the score), "f64" (amount, numeric) or a
        categorical ("codes", string-coded?); "const" for a constant."""
        kind, text = token
        if kind != "name":
            return "const", token
        if text == "score":
            return "f32", float(self.score)
        bare = text.split(".", 1)[-1]
        field_named = bare == "amount" or bare in NUMERIC or bare in CATEGORICAL
        if text.startswith("feature.") or (not text.startswith("field.") and not field_named):
            return "f32", float(self.row[FEATURES.index(bare)])
        if bare == "amount":
            return "f64", float(self.event["amount"])
        if bare in NUMERIC:
            return "f64", float(self.event["numeric"][NUMERIC.index(bare)])
        return ("codes", bare in STRING_CODED), int(self.event["categorical"][CATEGORICAL.index(bare)])

    @staticmethod
    def constant(kind, token):
        what, text = token
        if what == "string":
            return reference_hash(text[1:-1].replace("\\\\", "\\"))
        if kind[0] == "codes":
            return int(text)
        return float(np.float32(float(text))) if kind == "f32" else float(text)

    @staticmethod
    def missing(kind, value) -> bool:
        return value < 0 if kind[0] == "codes" else math.isnan(value)

    def comparison(self):
        left = self.value(self.take())
        kind, text = self.peek()
        if kind == "op":
            self.take()
            op, right = text, self.value(self.take())
            if left[0] == "const":  # 5000 < amount is amount > 5000
                left, right, op = right, left, MIRROR[op]
            if right[0] == "const":
                right = (left[0], self.constant(left[0], right[1]))
            if self.missing(*left) or self.missing(*right):
                return False
            return COMPARE[op](left[1], right[1])
        if text in ("in", "not"):
            negated = self.take()[1] == "not"
            if negated:
                assert self.take() == ("name", "in")
            assert self.take() == ("punct", "[")
            items = []
            while self.peek() != ("punct", "]"):
                token = self.take()
                if token != ("punct", ","):
                    items.append(self.constant(left[0], token))
            self.take()
            if self.missing(*left):
                return False
            return (left[1] in items) != negated
        assert (kind, text) == ("name", "is")
        self.take()
        negated = self.peek() == ("name", "not")
        if negated:
            self.take()
        assert self.take() == ("name", "missing")
        return self.missing(*left) != negated


# ---------------------------------------------------------------- random rules, rows and events

FEATURE_VALUES = [0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 5000.0, math.nan]
AMOUNTS = [0.0, 0.1, 1.0, 100.0, 5000.0, 5000.5]
NUMERIC_VALUES = [-1.0, 0.1, 0.5, 2.0, math.nan]
SCORES = [0.0, 0.1, 0.3, 0.5, 0.8, 1.0, math.nan]
STRINGS = ["web", "pos", "atm", "Zürich"]
MCCS = [5967, 7995, 1]
NUMBER_NAMES = ["amount", "field.amount", "feature.amount", "risk", "velocity", "card_count_1h", "ratio", "score"]


def number_text(rng, pool) -> str:
    x = pool[rng.integers(len(pool))]
    if not math.isfinite(x):
        x = 2.0
    forms = [repr(x), f"{x:g}", f"{x:e}", f"{x:.3f}"]
    return forms[rng.integers(len(forms))]


def pool_of(name):
    return (AMOUNTS if name.endswith("amount") and not name.startswith("feature.") else
            NUMERIC_VALUES if name in NUMERIC else SCORES if name == "score" else FEATURE_VALUES)


def random_leaf(rng) -> str:
    r = rng.random()
    if r < 0.5:
        name = NUMBER_NAMES[rng.integers(len(NUMBER_NAMES))]
        op = list(COMPARE)[rng.integers(6)]
        if r < 0.08:
            return f"{name} {op} {NUMBER_NAMES[rng.integers(len(NUMBER_NAMES))]}"
        if r < 0.16:
            return f"{number_text(rng, pool_of(name))} {op} {name}"
        if r < 0.24:
            items = ", ".join(number_text(rng, pool_of(name)) for _ in range(rng.integers(1, 4)))
            return f"{name} {'not in' if rng.random() < 0.5 else 'in'} [{items}]"
        return f"{name} {op} {number_text(rng, pool_of(name))}"
    if r < 0.6:
        name = (NUMBER_NAMES + CATEGORICAL + ["field.channel"])[rng.integers(len(NUMBER_NAMES) + 4)]
        return f"{name} is {'not ' if rng.random() < 0.5 else ''}missing"
    field = CATEGORICAL[rng.integers(3)]
    if field in STRING_CODED:
        lit = lambda: f'"{STRINGS[rng.integers(len(STRINGS))]}"'  # noqa: E731
    else:
        lit = lambda: str(MCCS[rng.integers(len(MCCS))])  # noqa: E731
    if r < 0.7 and field in STRING_CODED:
        return f"channel {'==' if rng.random() < 0.5 else '!='} device_type"
    if r < 0.85:
        return f"{field} {'==' if rng.random() < 0.5 else '!='} {lit()}"
    items = ", ".join(lit() for _ in range(rng.integers(1, 4)))
    return f"{field} {'not in' if rng.random() < 0.5 else 'in'} [{items}]"


def random_condition(rng, depth: int = 0) -> str:
    r = rng.random()
    if depth < 3 and r < 0.35:
        joiner = " and " if rng.random() < 0.5 else " or "
        return joiner.join(random_condition(rng, depth + 1) for _ in range(rng.integers(2, 4)))
    if depth < 3 and r < 0.45:
        return "not " + random_condition(rng, depth + 1) if rng.random() < 0.3 else \
            "not (" + random_condition(rng, depth + 1) + ")"
    if depth < 3 and r < 0.55:
        return "(" + random_condition(rng, depth + 1) + ")"
    return random_leaf(rng)


def random_world(rng, n: int):
    pick = lambda pool, size: np.asarray(pool)[rng.integers(len(pool), size=size)]  # noqa: E731
    rows = pick(FEATURE_VALUES, (n, len(FEATURES))).astype(np.float32)
    codes = np.stack([np.where(rng.random(n) < 0.2, -1, pick([reference_hash(s) for s in STRINGS], n)),
                      np.where(rng.random(n) < 0.2, -1, pick([reference_hash(s) for s in STRINGS], n)),
                      np.where(rng.random(n) < 0.2, -1, pick(MCCS, n))], axis=1).astype(np.int64)
    events = {"amount": pick(AMOUNTS, n), "numeric": pick(NUMERIC_VALUES, (n, 2)), "categorical": codes}
    scores = pick(SCORES, n).astype(np.float32)
    return rows, events, scores


def event_at(events, i):
    return {"amount": events["amount"][i], "numeric": events["numeric"][i], "categorical": events["categorical"][i]}


def reference_decision(score, review_from, decline_from, rules, hits) -> int:
    decision = 2 if decline_from is not None and score >= decline_from else 1 if score >= review_from else 0
    for i, r in enumerate(rules):
        if hits >> i & 1 and r["mode"] == "active":
            decision = max(decision, 2 if r["action"] == "decline" else 1)
    return decision


# ------------------------------------------------------------------------------------ the tests

def test_the_core_agrees_with_the_reference_on_random_rules():
    rng = np.random.default_rng(14)
    rows, events, scores = random_world(rng, 300)
    for trial in range(3):
        rules = [{"code": 100 + i, "name": f"r{i}", "when": random_condition(rng),
                  "action": ["review", "decline"][rng.integers(2)], "mode": ["active", "shadow"][rng.integers(2)]}
                 for i in range(64)]
        review_from, decline_from = 0.3, (0.8 if trial else None)
        p = policy({"review_from": review_from, "decline_from": decline_from, "rules": rules})
        decisions, hits = evaluate(p, rows, events, scores)
        references = [Reference(r["when"]) for r in rules]
        for i in range(len(scores)):
            want = sum(1 << k for k, ref in enumerate(references)
                       if ref.holds(rows[i], event_at(events, i), scores[i]))
            if int(hits[i]) != want:
                wrong = [k for k in range(64) if (int(hits[i]) ^ want) >> k & 1]
                pytest.fail(f"row {i}: rule {rules[wrong[0]]['when']!r}: core {int(hits[i]) >> wrong[0] & 1}, "
                            f"reference {want >> wrong[0] & 1}; row {rows[i]}, event {event_at(events, i)}, "
                            f"score {scores[i]}")
            assert decisions[i] == reference_decision(float(scores[i]), review_from, decline_from, rules, want)
        # Every rule held somewhere and failed somewhere in most trials: the test has teeth.
        held = np.bitwise_or.reduce(hits)
        assert bin(int(held)).count("1") > 40


def test_string_codes_go_through_the_cores_hash():
    assert list(_core.hash_ids(STRINGS)) == [reference_hash(s) for s in STRINGS]
    p = policy({"rules": [{"code": 1, "name": "web", "when": 'channel == "web"', "action": "review"},
                          {"code": 2, "name": "zurich", "when": "device_type in ['Zürich', \"atm\"]",
                           "action": "review"},
                          {"code": 3, "name": "gambling", "when": "mcc in [7995]", "action": "review"}]})
    codes = np.array([[reference_hash("web"), reference_hash("Zürich"), 7995],
                      [reference_hash("Web"), reference_hash("atm"), 5967],
                      [-1, -1, -1]], np.int64)
    events = {"amount": np.zeros(3), "numeric": np.zeros((3, 2)), "categorical": codes}
    _, hits = evaluate(p, np.zeros((3, 4)), events, np.zeros(3))
    assert list(hits) == [0b111, 0b010, 0b000]


def test_bands_include_their_edges():
    p = policy({"review_from": 0.3, "decline_from": 0.75})
    assert p.review_from == 0.3 and p.decline_from == 0.75 and p.rules == [] and not p.reads_features
    below = lambda x: np.nextafter(np.float32(x), np.float32(0))  # noqa: E731
    scores = np.array([0.0, below(0.3), 0.3, 0.5, below(0.75), 0.75, 1.0, np.nan], np.float32)
    events = {"amount": np.zeros(8), "numeric": np.zeros((8, 2)), "categorical": np.zeros((8, 3), np.int64)}
    decisions, hits = evaluate(p, np.zeros((8, 4)), events, scores)
    # float32(0.3) is 0.30000001: >= 0.3, so in the review band, as the reference computes it.
    want = [0 if not s >= 0.3 else 2 if s >= 0.75 else 1 for s in scores.astype(np.float64)]
    assert list(decisions) == want == [0, 0, 1, 1, 1, 2, 2, 0]
    assert not hits.any()
    # Without the section's bands: review from the bundle's threshold, no decline band.
    q = policy({}, threshold=0.5)
    assert q.review_from == 0.5 and q.decline_from is None
    decisions, _ = evaluate(q, np.zeros((8, 4)), events, scores)
    assert list(decisions) == [0, 0, 0, 1, 1, 1, 1, 0]


def test_shadow_rules_never_change_the_decision():
    rng = np.random.default_rng(3)
    rows, events, scores = random_world(rng, 200)
    rules = [{"code": i + 1, "name": f"r{i}", "when": random_condition(rng), "action": "decline"} for i in range(20)]
    active = policy({"review_from": 0.3, "decline_from": 0.8, "rules": rules})
    shadow = policy({"review_from": 0.3, "decline_from": 0.8, "rules": [{**r, "mode": "shadow"} for r in rules]})
    bands = policy({"review_from": 0.3, "decline_from": 0.8})
    d_active, h_active = evaluate(active, rows, events, scores)
    d_shadow, h_shadow = evaluate(shadow, rows, events, scores)
    d_bands, _ = evaluate(bands, rows, events, scores)
    assert (h_active == h_shadow).all() and h_shadow.any()
    assert (d_shadow == d_bands).all()
    assert (d_active[h_active != 0] == 2).all() and (d_active != d_shadow).any()
    assert [r["mode"] for r in shadow.rules] == ["shadow"] * 20


def test_rule_introspection():
    p = policy({"rules": [{"code": 1001, "name": "big_and_fast", "when": "amount > 5000 and card_count_1h > 3",
                           "action": "decline", "mode": "active"},
                          {"code": 1002, "name": "draft", "when": "risk > 0.9", "action": "review",
                           "mode": "shadow", "description": "a draft"},
                          {"code": 1003, "name": "plain", "when": "score > 0.5", "action": "review"}]})
    assert p.rules == [
        {"code": 1001, "name": "big_and_fast", "when": "amount > 5000 and card_count_1h > 3", "action": "decline",
         "mode": "active"},
        {"code": 1002, "name": "draft", "when": "risk > 0.9", "action": "review", "mode": "shadow"},
        {"code": 1003, "name": "plain", "when": "score > 0.5", "action": "review", "mode": "active"}]
    assert p.reads_features
    assert not policy({"rules": [{"code": 1, "name": "a", "when": "amount > 1", "action": "review"}]}).reads_features


def rule(when="amount > 1", **more):
    return {"code": 1, "name": "r1", "when": when, "action": "review", **more}


@pytest.mark.parametrize("decision, message", [
    ({"rules": [rule("amout > 5000")]},
     "decision.rules[0] 'r1': when, column 1: unknown name 'amout': not a field of the schema nor a feature of "
     "features.order (did you mean 'amount'?)\n    amout > 5000\n    ^"),
    ({"rules": [rule(), {**rule("amount > 5000 and card_count_1h >> 3"), "code": 2, "name": "fast"}]},
     "decision.rules[1] 'fast': when, column 34: expected a name, a number or a string, got '>'\n"
     "    amount > 5000 and card_count_1h >> 3\n" + " " * 37 + "^"),
    ({"rules": [rule('mcc == "5967"')]}, "decision.rules[0] 'r1': when, column 8: 'mcc' holds integer codes"),
    ({"rules": [rule("channel == 3")]}, "decision.rules[0] 'r1': when, column 12: 'channel' holds string codes"),
    ({"rules": [rule("channel < 'web'")]}, "decision.rules[0] 'r1': when, column 9: 'channel' is categorical"),
    ({"rules": [rule("card == 3")]}, "'card' is an entity id"),
    ({"rules": [rule("(" * 40 + "amount > 1" + ")" * 40)]}, "'r1': when, column 33: nested more than 32 levels"),
    ({"rules": [rule(action="block")]}, "decision.rules[0] 'r1'.action: must be \"review\" or \"decline\""),
    ({"rules": [rule(mode="draft")]}, "decision.rules[0] 'r1'.mode: must be \"active\""),
    ({"rules": [rule(severity=2)]}, "decision.rules[0] 'r1': unknown key 'severity'"),
    ({"rules": [rule(code=0)]}, "decision.rules[0] 'r1'.code: must be an integer from 1"),
    ({"rules": [rule(), rule("amount > 2", name="r2")]}, "decision.rules[1] 'r2'.code: 1 is also the code of "
                                                         "decision.rules[0] 'r1'"),
    ({"rules": [rule(), rule("amount > 2", code=2)]}, "decision.rules[1] 'r1'.name: 'r1' is also the name"),
    ({"rules": [{"code": 1, "when": "amount > 1", "action": "review"}]}, "decision.rules[0]: missing key 'name'"),
    ({"rules": [rule(name="has space")]}, "decision.rules[0].name: must be 1 to 64 of [A-Za-z0-9_.-]"),
    ({"rules": [rule()] * 65}, "decision.rules: has 65 rules; at most 64"),
    ({"review_from": 1.5}, "decision.review_from: must be a score in [0, 1], got 1.5"),
    ({"review_from": 0.9, "decline_from": 0.8}, "decision.decline_from: must be >= review_from (0.9)"),
    ({"decline_from": 0.4}, "decision.decline_from: must be >= review_from (0.5, the bundle's threshold)"),
    ({"bands": {}}, "decision: unknown key 'bands'"),
    ({"version": 2}, "decision.version: must be 1"),
])
def test_every_refusal_names_the_rule_and_the_key(decision, message):
    with pytest.raises(_core.FraudError) as error:
        policy(decision)
    assert error.value.status == "FRAUD_STATUS_BUNDLE_INVALID"
    assert message in str(error.value), str(error.value)
    with pytest.raises(ValueError) as checked:  # the compiler's check shows the core's own message
        check_decision({"version": 1, **decision}, FEATURES, SCHEMA, 0.5)
    assert str(checked.value) == str(error.value)


def test_a_bad_decision_is_refused_before_any_compile_work(tmp_path, monkeypatch):
    import libfraud.export.bundle as bundle_module

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before checking the rules")
    monkeypatch.setattr(bundle_module, "compile_trees", no_compile)
    schema, spec = payments()
    with pytest.raises(ValueError, match=r"^decision\.rules\[0\] 'r1': when, column 1: unknown name 'amout'"):
        random_bundle(tmp_path / "b", schema, spec, decision={"rules": [rule("amout > 1")]})
    with pytest.raises(ValueError, match=r"^decision: not JSON-serialisable"):
        random_bundle(tmp_path / "b", schema, spec, decision={"review_from": math.nan})
    assert not (tmp_path / "b").exists()


DECISION = {"review_from": 0.3, "decline_from": 0.9, "rules": [
    {"code": 1001, "name": "big_and_fast", "when": "amount > 5000 and card_count_1h > 3", "action": "decline"},
    {"code": 1002, "name": "gambling", "when": "mcc in [7995, 7800]", "action": "review", "mode": "shadow"}]}


def test_a_bundle_carrying_rules_opens_in_the_core(tmp_path):
    schema, spec = payments()
    bundle = random_bundle(tmp_path / "b", schema, spec, decision=DECISION)
    manifest = read_manifest(bundle)
    assert manifest["decision"] == {"version": 1, **DECISION}
    assert manifest["format_version"] == 2  # the section changes no score: no new format version
    assert verify_bundle(bundle) == []
    engine = _core.Engine(str(bundle))
    assert engine.num_features == len(manifest["features"]["order"])
    p = _core.DecisionPolicy(json.dumps(manifest["decision"]), manifest["features"]["order"],
                             json.dumps(manifest["schema"]), manifest["threshold"])
    assert [(r["code"], r["name"], r["mode"]) for r in p.rules] == [(1001, "big_and_fast", "active"),
                                                                    (1002, "gambling", "shadow")]
    assert p.review_from == 0.3 and p.decline_from == 0.9
    # A manifest whose rule the core cannot compile is refused at load, naming the rule.
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    manifest["decision"]["rules"][1]["when"] = "mcc in [7995, 'x']"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(_core.FraudError, match=r"^manifest\.json: decision\.rules\[1\] 'gambling': when, column 15: "
                                               r"'mcc' holds integer codes") as error:
        _core.Engine(str(broken))
    assert error.value.status == "FRAUD_STATUS_BUNDLE_INVALID"
    assert any("decision.rules[1] 'gambling'" in p for p in verify_bundle(broken))


RULES_TOML = """
[decision]
review_from = 0.3
decline_from = 0.9

[[rule]]
code = 1001
name = "big_and_fast"
when = "amount > 5000 and card_count_1h > 3"
action = "decline"

[[rule]]
code = 1002
name = "gambling"
when = "mcc in [7995, 7800]"
action = "review"
mode = "shadow"
"""


def test_rules_files(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES_TOML)
    assert load_rules(path) == {"version": 1, **DECISION}
    assert load_rules(path, review_from=0.2, decline_from=0.95) == {**load_rules(path), "review_from": 0.2,
                                                                    "decline_from": 0.95}
    assert load_rules(None, decline_from=0.9) == {"version": 1, "decline_from": 0.9}
    schema, spec = payments()
    names = [f["name"] for f in spec["features"]]
    assert check_rules(load_rules(path), names, schema, 0.5, path)["rules"][0]["code"] == 1001
    path.write_text(RULES_TOML.replace("card_count_1h > 3", "card_count_1hh > 3"))
    with pytest.raises(ValueError) as error:
        check_rules(load_rules(path), names, schema, 0.5, path)
    assert str(error.value).startswith(f"{path}: [[rule]] 1 'big_and_fast': when, column 19: unknown name "
                                       "'card_count_1hh'")
    path.write_text(RULES_TOML.replace("review_from = 0.3", "review_from = 3"))
    with pytest.raises(ValueError, match=r"rules\.toml: \[decision\] review_from: must be a score in \[0, 1\], got 3$"):
        check_rules(load_rules(path), names, schema, 0.5, path)
    for text, message in [("[[rules]]\ncode = 1\n", "unknown key 'rules'; a rules file holds a [decision] table"),
                          ("[decision]\nreview = 0.3\n", "[decision] unknown key 'review' (known: review_from"),
                          ("[[rule]\n", "not valid TOML"), ("decision = 3\n", "'decision' must be a table")]:
        path.write_text(text)
        with pytest.raises(ValueError) as error:
            load_rules(path)
        assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)
    with pytest.raises(FileNotFoundError, match="no such rules file"):
        load_rules(tmp_path / "absent.toml")


def test_the_compile_command_takes_a_rules_file(small_training, tmp_path, capsys):
    from libfraud.cli import main
    model_dir = small_training.save(tmp_path / "trained")
    rules = tmp_path / "rules.toml"
    # A bad rule: exit 2, one line naming the file and the rule (then the condition and a caret).
    rules.write_text(RULES_TOML.replace('"mcc in [7995, 7800]"', '"mcc in [7995, \\"7800\\"]"'))
    assert main(["-q", "compile", str(model_dir), "--out", str(tmp_path / "b"), "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "b").exists()
    first, *rest = err.splitlines()
    assert first == (f"libfraud compile: {rules}: [[rule]] 2 'gambling': when, column 15: 'mcc' holds integer codes "
                     "(the schema's codes = \"int\"): write the code as a number, not a string")
    assert rest == ['    mcc in [7995, "7800"]', "    " + " " * 14 + "^"]
    rules.write_text(RULES_TOML.replace('action = "decline"', 'action = "block"'))
    assert main(["-q", "compile", str(model_dir), "--out", str(tmp_path / "b"), "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert err == (f"libfraud compile: {rules}: [[rule]] 1 'big_and_fast'.action: must be \"review\" or "
                   "\"decline\", got \"block\"\n")
    # A good file, a flag replacing its review band: the bundle carries the section and opens.
    rules.write_text(RULES_TOML)
    assert main(["-q", "compile", str(model_dir), "--out", str(tmp_path / "b"), "--rules", str(rules),
                 "--review-from", "0.25"]) == 0
    manifest = read_manifest(tmp_path / "b")
    assert manifest["decision"] == {**load_rules(rules), "review_from": 0.25}
    _core.Engine(str(tmp_path / "b"))
