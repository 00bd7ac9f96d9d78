"""The declared schema and feature spec (export/SCHEMA.md): TOML -> objects -> JSON, their errors,
the presets, schema inference and loading a user's frame into the core's arrays."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from libfraud import _core
from libfraud.data.declared import (
    CategoricalField, DeclaredError, Entity, EventIdColumn, FeatureSpec, LabelColumn, NumericField,
    Schema, TimeColumn, infer_schema, load_config, load_events, load_preset, load_schema, load_spec,
    parse_duration, utc_offsets, window_label,
)
from libfraud.data.schema import SchemaError

H, DAY = 3_600_000, 86_400_000
INT64_MIN = -(2 ** 63)

PAYMENTS_NAMES = (
    ["amount", "log_amount", "hour_of_day", "country", "mcc"]
    + [f"{e}_{what}_{w}" for e in ("card", "device", "merchant", "ip") for w in ("1h", "24h", "7d")
       for what in ("count", "amount_sum")]
    + [f"{e}_seconds_since_last" for e in ("card", "device", "merchant", "ip")]
    + ["card_amount_ratio_to_mean", "card_amount_zscore", "merchant_amount_ratio_to_mean",
       "card_distinct_devices_24h", "card_distinct_ips_24h", "device_distinct_cards_24h",
       "ip_distinct_cards_24h", "card_device_is_new", "card_ip_is_new", "card_mcc_is_new",
       "card_country_changed"])


MASK64 = 2 ** 64 - 1


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def ref_hash(s: str) -> int:
    """SCHEMA.md "Ids", in Python: FNV-1a 64, the splitmix64 finaliser, the top bit cleared."""
    mask = MASK64
    h = fnv1a64(s)
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & mask
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & mask
    h ^= h >> 31
    return h & (2 ** 63 - 1)


# ---------------------------------------------------------------------------------------------
# TOML -> JSON -> from_json

FULL = """
[schema]
name = "my-cards"

[event_id]
column = "TRANSACTION_ID"

[time]
column = "TX_DATETIME"
unit = "datetime"
timezone = "Europe/Paris"

[amount]
column = "TX_AMOUNT"

[[entities]]
name = "customer"
column = "CUSTOMER_ID"

[[entities]]
name = "terminal"
column = "TERMINAL_ID"
ids = "string"
required = false

[[numeric]]
name = "risk_score"
column = "RISK"

[[categorical]]
name = "mcc"
column = "MCC"

[label]
column = "TX_FRAUD"
time_column = "LABEL_TIME"
delay = "7d"

[features]
max_scan = 512

[[feature]]
kind = "amount"

[[feature]]
kind = "log_amount"

[[feature]]
kind = "numeric"
field = "risk_score"

[[feature]]
kind = "categorical"
field = "mcc"
vocabulary = [5411, 5812]

[[feature]]
kind = "calendar"
part = "day_of_week"

[[feature]]
kind = "window"
entity = "terminal"
agg = "std"
field = "risk_score"
window = "90s"
offset = "30m"

[[feature]]
kind = "window"
entity = "customer"
agg = "count"
window = 1500
filter = { field = "amount", op = ">", value = 100 }
name = "customer_big_count"
max_scan = 64

[[feature]]
kind = "time_since_last"
entity = "customer"

[[feature]]
kind = "amount_vs_history"
entity = "customer"
stat = "zscore"
window = "2d"

[[feature]]
kind = "distinct"
entity = "customer"
of = "terminal"
window = "7d"

[[feature]]
kind = "novelty"
entity = "customer"
of = { categorical = "mcc" }

[[feature]]
kind = "changed"
entity = "terminal"
of = "customer"

[[feature]]
kind = "label"
entity = "terminal"
agg = "fraud_rate"
window = "28d"
offset = "label_delay"
"""


def write(tmp_path, text: str, name: str = "schema.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_declaration_to_json_and_back(tmp_path):
    schema, spec = load_config(write(tmp_path, FULL))
    assert load_schema(tmp_path / "schema.toml") == schema
    assert load_spec(tmp_path / "schema.toml", schema) == spec
    sj = json.loads(json.dumps(schema.to_json()))
    assert sj["format"] == "libfraud-schema" and sj["version"] == 1 and sj["name"] == "my-cards"
    assert sj["event_id"] == {"column": "TRANSACTION_ID", "ids": "int"}
    assert sj["amount"] == {"column": "TX_AMOUNT"}
    assert sj["entities"] == [
        {"name": "customer", "column": "CUSTOMER_ID", "ids": "int", "required": True},
        {"name": "terminal", "column": "TERMINAL_ID", "ids": "string", "required": False}]
    assert sj["numeric"] == [{"name": "risk_score", "column": "RISK"}]
    assert sj["categorical"] == [{"name": "mcc", "column": "MCC", "codes": "int"}]
    assert sj["label"] == {"column": "TX_FRAUD", "time_column": "LABEL_TIME", "delay_ms": 7 * DAY}
    assert sj["time"]["utc_offsets"][0] == [INT64_MIN, 3600]
    assert Schema.from_json(sj) == schema

    fj = json.loads(json.dumps(spec.to_json()))
    assert fj["format"] == "libfraud-features" and fj["version"] == 1 and fj["max_scan"] == 512
    assert [f["name"] for f in fj["features"]] == [
        "amount", "log_amount", "risk_score", "mcc", "day_of_week", "terminal_risk_score_std_90s_after_30m",
        "customer_big_count", "customer_seconds_since_last", "customer_amount_zscore_2d",
        "customer_distinct_terminals_7d", "customer_mcc_is_new", "terminal_customer_changed",
        "terminal_fraud_rate_28d_after_7d"]
    by = {f["name"]: f for f in fj["features"]}
    assert by["mcc"] == {"name": "mcc", "kind": "categorical", "field": "mcc", "vocabulary": [5411, 5812]}
    assert by["terminal_risk_score_std_90s_after_30m"] == {
        "name": "terminal_risk_score_std_90s_after_30m", "kind": "window", "entity": "terminal",
        "agg": "std", "field": "risk_score", "window_ms": 90_000, "offset_ms": 30 * 60_000,
        "filter": None}
    assert by["customer_big_count"] == {
        "name": "customer_big_count", "kind": "window", "entity": "customer", "agg": "count",
        "field": None, "window_ms": 1500, "offset_ms": 0,
        "filter": {"field": "amount", "op": ">", "value": 100.0}, "max_scan": 64}
    assert by["customer_amount_zscore_2d"]["window_ms"] == 2 * DAY
    assert by["customer_distinct_terminals_7d"]["of"] == {"entity": "terminal"}
    assert by["customer_mcc_is_new"]["of"] == {"categorical": "mcc"}
    assert by["terminal_fraud_rate_28d_after_7d"]["offset_ms"] == 7 * DAY
    back = FeatureSpec.from_json(fj, schema)
    assert back == spec and back.to_json() == fj


def test_from_json_accepts_absent_optional_keys_and_refuses_bad_ones():
    schema, spec = load_preset("payments")
    d = spec.to_json()
    for f in d["features"]:
        for k in ("filter", "vocabulary", "offset_ms"):
            f.pop(k, None)
        if f.get("field", "") is None:
            del f["field"]
    assert FeatureSpec.from_json(d, schema) == spec
    with pytest.raises(DeclaredError, match="format 'libfraud-features'"):
        FeatureSpec.from_json({**d, "format": "x"})
    bad = json.loads(json.dumps(d))
    bad["features"][5]["kind"] = "windw"
    with pytest.raises(DeclaredError, match=r"feature 6: kind 'windw' is not one of"):
        FeatureSpec.from_json(bad)
    bad["features"][5]["kind"] = "window"
    bad["features"][5]["entity"] = "cart"
    with pytest.raises(DeclaredError, match=r"entity 'cart' is not declared \(entities: card, dev"):
        FeatureSpec.from_json(bad, schema)
    sj = schema.to_json()
    with pytest.raises(DeclaredError, match="unknown key 'extra'"):
        Schema.from_json({**sj, "extra": 1})
    with pytest.raises(DeclaredError, match="schema: expected format 'libfraud-schema' version 1"):
        Schema.from_json({**sj, "version": 2})


def test_durations_and_window_labels():
    assert [parse_duration(x) for x in ("90s", "30m", "1h", "24h", "7d", "1500ms", 250, " 2 h ")] \
        == [90_000, 1_800_000, H, 24 * H, 7 * DAY, 1500, 250, 2 * H]
    for bad in ("7x", "1.5h", "", "h", True, 1.5, None):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)
    cases = {H: "1h", DAY: "24h", 2 * DAY: "2d", 7 * DAY: "7d", 30 * DAY: "30d", 36 * H: "36h",
             90_000: "90s", 1500: "1500ms", 30 * 60_000: "30m", 1: "1ms", 1000: "1s"}
    assert {ms: window_label(ms) for ms in cases} == cases


def test_timezone_table_for_europe_paris_across_dst():
    table = utc_offsets("Europe/Paris")
    assert table[0] == [INT64_MIN, 3600]
    assert all(a[0] < b[0] for a, b in zip(table, table[1:]))
    spring = int(datetime(2021, 3, 28, 1, tzinfo=timezone.utc).timestamp() * 1000)
    autumn = int(datetime(2021, 10, 31, 1, tzinfo=timezone.utc).timestamp() * 1000)
    assert [spring, 7200] in table and [autumn, 3600] in table
    assert table[-1][0] < int(datetime(2101, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    assert 2 * 100 < len(table) < 2 * 131 + 5  # two a year since the 1970s, to 2100

    def offset_at(t_ms: int) -> int:  # what the core does with the table
        return [o for start, o in table if start <= t_ms][-1]

    zone = zoneinfo.ZoneInfo("Europe/Paris")
    for t_ms in (spring - 1, spring, autumn - 1, autumn, 0, 4_000_000_000_000,
                 *np.random.default_rng(3).integers(0, 4_100_000_000_000, 200).tolist()):
        want = datetime.fromtimestamp(t_ms // 1000, zone).utcoffset().total_seconds()
        assert offset_at(t_ms) == want, t_ms
    assert offset_at(spring - 1) == 3600 and offset_at(autumn - 1) == 7200
    assert utc_offsets("UTC") == [[INT64_MIN, 0]]


# ---------------------------------------------------------------------------------------------
# Errors name the file and the key

BASE = """
[event_id]
column = "id"
[time]
column = "t"
unit = "ms"
[amount]
column = "amt"
[[entities]]
name = "customer"
column = "c"
[[entities]]
name = "terminal"
column = "term"
[[numeric]]
name = "risk"
column = "r"
[[categorical]]
name = "channel"
column = "ch"
[label]
column = "y"
delay = "7d"
"""
OK_FEATURES = """
[[feature]]
kind = "amount"
[[feature]]
kind = "window"
entity = "customer"
agg = "count"
window = "1h"
"""


def config_error(tmp_path, text: str) -> str:
    with pytest.raises(DeclaredError) as e:
        load_config(write(tmp_path, text))
    assert isinstance(e.value, SchemaError) and e.value.path == "schema.toml"
    msg = str(e.value)
    assert msg.startswith("schema.toml: "), msg
    return msg


def test_the_documented_unknown_entity_message(tmp_path):
    msg = config_error(tmp_path, BASE + OK_FEATURES + """
[[feature]]
kind = "label"
entity = "termnal"
agg = "fraud_rate"
window = "7d"
name = "terminal_fraud_rate_7d"
""")
    assert msg == ("schema.toml: [[feature]] 3 (terminal_fraud_rate_7d): entity 'termnal' is not "
                   "declared (entities: customer, terminal)")


def feat(**keys) -> str:
    body = "\n".join(f"{k} = {v}" for k, v in keys.items())
    return BASE + OK_FEATURES + "\n[[feature]]\n" + body + "\n"


FEATURE_ERRORS = {
    "unknown field": (feat(kind='"numeric"', field='"risc"'),
                      "[[feature]] 3 (risc): field 'risc' is not declared (want a numeric field; declared: risk)"),
    "window zero": (feat(kind='"window"', entity='"customer"', agg='"count"', window='"0s"'),
                    "[[feature]] 3: window: must be > 0"),
    "window negative": (feat(kind='"window"', entity='"customer"', agg='"count"', window="-5"),
                        "[[feature]] 3: window: must be > 0, got -5"),
    "window missing": (feat(kind='"distinct"', entity='"customer"', of='"terminal"'),
                       "[[feature]] 3: missing key 'window'"),
    "bad duration": (feat(kind='"window"', entity='"customer"', agg='"count"', window='"1 week"'),
                     "[[feature]] 3: window: '1 week' is not a duration"),
    "bad agg": (feat(kind='"window"', entity='"customer"', agg='"median"', field='"amount"', window='"1h"'),
                "[[feature]] 3: agg 'median' is not one of count, sum, mean, std, min, max"),
    "bad label agg": (feat(kind='"label"', entity='"customer"', agg='"count"', window='"1h"'),
                      "agg 'count' is not one of fraud_count, fraud_rate, labelled_count"),
    "bad kind": (feat(kind='"velocity"'), "[[feature]] 3: kind 'velocity' is not one of amount"),
    "bad part": (feat(kind='"calendar"', part='"minute"'),
                 "[[feature]] 3: part 'minute' is not one of hour, day_of_week, weekend, night"),
    "bad stat": (feat(kind='"amount_vs_history"', entity='"customer"', stat='"median"'),
                 "stat 'median' is not one of ratio_to_mean, zscore"),
    "bad op": (feat(kind='"window"', entity='"customer"', agg='"count"', window='"1h"', name='"x"',
                    filter='{ field = "risk", op = "=>", value = 1 }'),
               "[[feature]] 3 (x): filter: op '=>' is not one of"),
    "duplicate name": (feat(kind='"window"', entity='"customer"', agg='"count"', window="3600000"),
                       "[[feature]] 3 (customer_count_1h): name 'customer_count_1h' is also "
                       "[[feature]] 2 (customer_count_1h)'s"),
    "filter without name": (feat(kind='"window"', entity='"customer"', agg='"count"', window='"1h"',
                                 filter='{ field = "risk", op = ">", value = 1 }'),
                            "[[feature]] 3: a filtered feature needs a `name`"),
    "numeric as categorical": (feat(kind='"categorical"', field='"risk"'),
                               "[[feature]] 3 (risk): field 'risk' is a numeric field, not a categorical field"),
    "categorical as window field": (
        feat(kind='"window"', entity='"customer"', agg='"sum"', field='"channel"', window='"1h"'),
        "field 'channel' is a categorical field, not \"amount\" or a numeric field"),
    "entity as field": (feat(kind='"numeric"', field='"terminal"'),
                        "field 'terminal' is an entity, not a numeric field"),
    "numeric as of": (feat(kind='"novelty"', entity='"customer"', of='"risk"'),
                      "[[feature]] 3: of: 'risk' is a numeric field: `of` takes an entity or a categorical"),
    "of itself": (feat(kind='"changed"', entity='"customer"', of='"customer"'),
                  "of: 'customer' is the feature's own entity"),
    "field on count": (feat(kind='"window"', entity='"customer"', agg='"count"', field='"amount"', window='"2h"'),
                       "field: a count takes no field"),
    "mean without field": (feat(kind='"window"', entity='"customer"', agg='"mean"', window='"2h"'),
                           "[[feature]] 3: missing key 'field'"),
    "in on numeric": (feat(kind='"window"', entity='"customer"', agg='"count"', window='"2h"', name='"x"',
                           filter='{ field = "risk", in = [1] }'),
                      "filter: in: field 'risk' is a numeric field, not a categorical field"),
    "op on categorical": (feat(kind='"window"', entity='"customer"', agg='"count"', window='"2h"', name='"x"',
                               filter='{ field = "channel", op = ">", value = 1 }'),
                          "filter field 'channel' is a categorical field, not \"amount\" or a numeric field"),
    "int codes as strings": (feat(kind='"categorical"', field='"channel"', vocabulary='["web"]'),
                             "[[feature]] 3: vocabulary: 'web': 'channel' has int codes"),
    "unknown feature key": (feat(kind='"window"', entity='"customer"', agg='"count"', windw='"2h"'),
                            "[[feature]] 3: missing key 'window'"),
    "typo key": (feat(kind='"amount"', nmae='"x"'), "[[feature]] 3: unknown key 'nmae'"),
    "negative offset": (feat(kind='"label"', entity='"customer"', agg='"fraud_rate"', window='"1h"',
                             offset="-1"), "offset: must be >= 0, got -1"),
    "bad max_scan": (feat(kind='"amount"', name='"a2"', max_scan="0"), "max_scan: must be >= 1"),
    "unknown preset": (BASE + '[[preset]]\nname = "banking"\n',
                       "[[preset]] 1: preset 'banking' is not one of payments, cards"),
}


@pytest.mark.parametrize("case", list(FEATURE_ERRORS))
def test_feature_errors_name_file_and_key(tmp_path, case):
    text, want = FEATURE_ERRORS[case]
    msg = config_error(tmp_path, text)
    assert want in msg, msg


NO_AMOUNT = BASE.replace('[amount]\ncolumn = "amt"\n', "")
NO_LABEL = BASE.replace('[label]\ncolumn = "y"\ndelay = "7d"\n', "")


@pytest.mark.parametrize("text, want", [
    (NO_AMOUNT + '[[feature]]\nkind = "log_amount"\n',
     "[[feature]] 1 (log_amount): kind 'log_amount' uses the amount, but the schema declares no [amount]"),
    (NO_AMOUNT + '[[feature]]\nkind = "window"\nentity = "customer"\nagg = "sum"\nfield = "amount"\nwindow = "1h"\n',
     "[[feature]] 1 (customer_amount_sum_1h): field uses the amount"),
    (NO_AMOUNT + '[[feature]]\nkind = "amount_vs_history"\nentity = "customer"\nstat = "zscore"\n',
     "(customer_amount_zscore): field uses the amount"),
    (NO_AMOUNT + '[[feature]]\nkind = "window"\nentity = "customer"\nagg = "count"\nwindow = "1h"\n'
                 'name = "big"\nfilter = { field = "amount", op = ">", value = 5 }\n',
     "[[feature]] 1 (big): filter uses the amount"),
    (NO_LABEL + '[[feature]]\nkind = "label"\nentity = "customer"\nagg = "fraud_count"\nwindow = "1h"\n',
     "[[feature]] 1 (customer_fraud_count_1h): label features need a [label] in the schema"),
    (NO_LABEL + '[[feature]]\nkind = "window"\nentity = "customer"\nagg = "count"\nwindow = "1h"\n'
                'offset = "label_delay"\n',
     "[[feature]] 1: offset: 'label_delay' needs a [label] in the schema"),
    (NO_AMOUNT + '[[preset]]\nname = "payments"\n',
     "[[preset]] 1 'payments': feature 1 (amount): kind 'amount' uses the amount"),
    (BASE + '[[preset]]\nname = "payments"\n',
     "[[preset]] 1 'payments': feature 4 (country): field 'country' is not declared "
     "(want a categorical field; declared: channel)"),
    (BASE.replace('"channel"', '"country"') + '[[categorical]]\nname = "mcc"\ncolumn = "m"\n'
     + '[[preset]]\nname = "payments"\n',
     "[[preset]] 1 'payments': feature 6 (card_count_1h): entity 'card' is not declared "
     "(entities: customer, terminal)"),
    (BASE, "schema.toml: declares no features"),
])
def test_amount_label_and_preset_errors(tmp_path, text, want):
    msg = config_error(tmp_path, text)
    assert want in msg, msg


def _entities(k: int) -> str:
    return "".join(f'[[entities]]\nname = "e{i}"\ncolumn = "E{i}"\n' for i in range(k))


SCHEMA_HEAD = '[event_id]\ncolumn = "id"\n[time]\ncolumn = "t"\nunit = "ms"\n'


@pytest.mark.parametrize("text, want", [
    (SCHEMA_HEAD + OK_FEATURES, "[[entities]]: declare 1 to 16 entities, got 0"),
    (SCHEMA_HEAD + _entities(17), "[[entities]]: declare 1 to 16 entities, got 17"),
    (SCHEMA_HEAD + _entities(1) + '[[categorical]]\nname = "e0"\ncolumn = "X"\n',
     "[[categorical]] 1 'e0': name 'e0' is already declared in [[entities]] 1"),
    (SCHEMA_HEAD + _entities(2).replace('"e1"', '"e0"'),
     "[[entities]] 2 'e0': name 'e0' is already declared in [[entities]] 1"),
    (SCHEMA_HEAD + '[[entities]]\nname = "Card"\ncolumn = "c"\n',
     "[[entities]] 1 'Card': name 'Card' must match [a-z][a-z0-9_]*"),
    (SCHEMA_HEAD + _entities(1) + '[[numeric]]\nname = "amount"\ncolumn = "x"\n',
     "[[numeric]] 1 'amount': name 'amount' is reserved"),
    (SCHEMA_HEAD.replace('"ms"', '"minutes"') + _entities(1),
     "[time] unit: 'minutes' is not one of s, ms, us, datetime"),
    (SCHEMA_HEAD + 'timezone = "Mars/Olympus"\n' + _entities(1),
     "[time] timezone: 'Mars/Olympus' is not an IANA timezone name"),
    (SCHEMA_HEAD + '[[entities]]\nname = "c"\ncolumn = "c"\nids = "uuid"\n',
     "[[entities]] 1 'c': ids: 'uuid' is not one of int, string"),
    (SCHEMA_HEAD + '[[entities]]\nname = "c"\ncolumn = "c"\nrequird = false\n',
     "[[entities]] 1 'c': unknown key 'requird'"),
    (SCHEMA_HEAD + '[[entities]]\nname = "c"\ncolumn = "c"\nrequired = "yes"\n',
     "[[entities]] 1 'c': required: expected bool, got a string 'yes'"),
    (SCHEMA_HEAD + _entities(1) + '[[categorical]]\nname = "x"\ncolumn = "X"\ncodes = "float"\n',
     "[[categorical]] 1 'x': codes: 'float' is not one of int, string"),
    (SCHEMA_HEAD + _entities(1) + '[label]\ncolumn = "y"\ndelay = "-1d"\n',
     "[label]: delay: '-1d' is not a duration"),
    ('[time]\ncolumn = "t"\nunit = "ms"\n' + _entities(1), "schema.toml: missing table [event_id]"),
    (SCHEMA_HEAD + _entities(1) + "[models]\nx = 1\n", "schema.toml: unknown table [models]"),
    (SCHEMA_HEAD + "[[entities]\n", "schema.toml: not valid TOML"),
    (SCHEMA_HEAD.replace('column = "t"\n', "") + _entities(1), "[time]: missing key 'column'"),
])
def test_schema_errors_name_file_and_key(tmp_path, text, want):
    with pytest.raises(DeclaredError) as e:
        load_schema(write(tmp_path, text))
    msg = str(e.value)
    assert msg.startswith("schema.toml: ") and want in msg, msg


def test_a_schema_built_in_code_is_checked_too():
    with pytest.raises(DeclaredError, match=r"\[\[entities\]\]: declare 1 to 16 entities, got 0"):
        Schema(EventIdColumn("id"), TimeColumn("t", "ms"), entities=())
    s = Schema(EventIdColumn("id"), TimeColumn("t", "ms"), [Entity("card", "card_id")])
    assert s.entities == (Entity("card", "card_id", "int", True),) and s.amount is None


# ---------------------------------------------------------------------------------------------
# Presets


def test_payments_preset_is_the_legacy_44_features():
    schema, spec = load_preset("payments")
    assert spec.names == PAYMENTS_NAMES and len(spec.names) == 44
    assert schema.entity_names == ["card", "device", "merchant", "ip"]
    assert [e.required for e in schema.entities] == [True, False, True, False]
    assert [(c.name, c.codes) for c in schema.categorical] == [("country", "int"), ("mcc", "int")]
    assert (schema.event_id.column, schema.time.column, schema.time.unit, schema.time.timezone,
            schema.amount) == ("txn_id", "timestamp_ms", "ms", "UTC", "amount")
    assert schema.label == LabelColumn("label", None, 0)
    by = {f["name"]: f for f in spec.to_json()["features"]}
    assert by["hour_of_day"] == {"name": "hour_of_day", "kind": "calendar", "part": "hour"}
    assert by["country"] == {"name": "country", "kind": "categorical", "field": "country",
                             "vocabulary": None}
    assert by["card_amount_sum_7d"]["window_ms"] == 7 * DAY
    assert by["card_amount_zscore"] == {"name": "card_amount_zscore", "kind": "amount_vs_history",
                                        "entity": "card", "field": "amount", "stat": "zscore",
                                        "window_ms": 0}
    assert by["device_distinct_cards_24h"] == {"name": "device_distinct_cards_24h",
                                               "kind": "distinct", "entity": "device",
                                               "of": {"entity": "card"}, "window_ms": DAY}
    assert by["card_mcc_is_new"]["of"] == {"categorical": "mcc"}
    assert by["card_country_changed"] == {"name": "card_country_changed", "kind": "changed",
                                          "entity": "card", "of": {"categorical": "country"}}
    with_times, _ = load_preset("payments", columns=["txn_id", "label", "label_time_ms"])
    assert with_times.label == LabelColumn("label", "label_time_ms", 0)


def test_cards_preset():
    schema, spec = load_preset("cards")
    assert [(e.name, e.column) for e in schema.entities] == [("customer", "CUSTOMER_ID"),
                                                            ("terminal", "TERMINAL_ID")]
    assert schema.label == LabelColumn("TX_FRAUD", None, 7 * DAY) and schema.time.unit == "datetime"
    windows = ("24h", "7d", "30d")
    assert spec.names == (
        ["amount", "log_amount", "hour_of_day", "is_weekend", "is_night"]
        + [n for w in windows for n in (f"customer_count_{w}", f"customer_amount_mean_{w}")]
        + [f"terminal_count_{w}" for w in windows]
        + [n for w in windows for n in (f"terminal_fraud_count_{w}_after_7d",
                                        f"terminal_fraud_rate_{w}_after_7d")]
        + ["customer_amount_zscore", "customer_amount_ratio_to_mean_30d", "customer_amount_max_30d"])
    labels = [f for f in spec.features if f["kind"] == "label"]
    assert {f["offset_ms"] for f in labels} == {7 * DAY}


def test_presets_expand_in_place_against_the_users_schema(tmp_path):
    # the user's schema has the preset's entities, and its own label delay
    text = FULL.split("[features]")[0].replace('delay = "7d"', 'delay = "3d"')
    path = write(tmp_path, text + """
[[feature]]
kind = "numeric"
field = "risk_score"

[[feature]]
preset = "cards"

[[feature]]
kind = "window"
entity = "terminal"
agg = "max"
field = "amount"
window = "1h"
""")
    names = load_config(path)[1].names
    assert names[0] == "risk_score" and names[-1] == "terminal_amount_max_1h"
    assert names[1:-1] == [n.replace("after_7d", "after_3d") for n in load_preset("cards")[1].names]


# ---------------------------------------------------------------------------------------------
# Inference

ENTITY_NAMES = ["card", "device", "merchant", "ip", "account", "email", "phone", "shop"]


def make_frame(n_entities: int, *, string_ids: bool, time_kind: str, n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    t_ms = 1_700_000_000_000 + np.sort(rng.integers(0, 20 * DAY, n))
    cols: dict = {"txn_id": [f"tx-{i}" for i in range(n)] if string_ids else np.arange(n) + 100}
    if time_kind == "ms":
        cols["event_time"] = t_ms
    elif time_kind == "us":
        cols["event_time"] = t_ms * 1000 + rng.integers(0, 1000, n)
    elif time_kind == "s":
        cols["event_time"] = t_ms // 1000
    elif time_kind == "iso":
        cols["event_time"] = pd.to_datetime(t_ms, unit="ms", utc=True).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        cols["event_time"] = pd.to_datetime(t_ms, unit="ms")
    for k, e in enumerate(ENTITY_NAMES[:n_entities]):
        ids = rng.integers(0, 40, n)
        col = [f"{e}-{x}" for x in ids] if string_ids else ids
        if k == 4:  # the fifth entity is sometimes absent: empty cells
            col = [None if j % 10 == 3 else x for j, x in enumerate(col)]
        cols[f"{e}_id"] = col
    cols["amount"] = rng.gamma(2.0, 30.0, n).round(2)
    cols["risk_score"] = rng.random(n)
    cols["hour_bucket"] = rng.integers(0, 6, n)
    if string_ids:
        cols["channel"] = rng.choice(["web", "app", "pos"], n)
    cols["is_fraud"] = (rng.random(n) < 0.05).astype(int)
    return pd.DataFrame(cols), t_ms


def _infer_cases():
    for k, string_ids, time_kind in [(2, False, "ms"), (3, True, "iso"), (4, False, "s"),
                                     (5, True, "datetime64"), (6, False, "us"), (8, True, "ms"),
                                     (8, False, "iso")]:
        yield pytest.param(k, string_ids, time_kind,
                           id=f"{k}-entities-{'hashed' if string_ids else 'int'}-ids-{time_kind}")


@pytest.mark.parametrize("k, string_ids, time_kind", list(_infer_cases()))
def test_infer_parses_back_and_assigns_roles(tmp_path, k, string_ids, time_kind):
    df, t_ms = make_frame(k, string_ids=string_ids, time_kind=time_kind)
    draft = infer_schema(df)
    schema, spec = load_config(write(tmp_path, draft))
    assert schema.event_id == EventIdColumn("txn_id", "string" if string_ids else "int")
    unit = {"ms": "ms", "s": "s", "us": "us"}.get(time_kind, "datetime")
    assert (schema.time.column, schema.time.unit) == ("event_time", unit)
    assert schema.amount == "amount"
    assert [(e.name, e.column, e.ids, e.required) for e in schema.entities] == [
        (e, f"{e}_id", "string" if string_ids else "int", i != 4)
        for i, e in enumerate(ENTITY_NAMES[:k])]
    assert schema.numeric == (NumericField("risk_score", "risk_score"),)
    assert schema.categorical[0] == CategoricalField("hour_bucket", "hour_bucket", "int")
    if string_ids:
        assert schema.categorical[1] == CategoricalField("channel", "channel", "string")
    assert schema.label == LabelColumn("is_fraud", None, 7 * DAY)
    for e in ENTITY_NAMES[:k]:
        assert {f"{e}_count_24h", f"{e}_seconds_since_last",
                f"{e}_fraud_rate_30d_after_7d"} <= set(spec.names)
    events, labels = load_events(df, schema)
    np.testing.assert_array_equal(events.time_ms, t_ms if time_kind != "s" else t_ms // 1000 * 1000)
    assert events.entity_id.shape == (len(df), k) and len(labels) == len(df)
    if k >= 5:
        np.testing.assert_array_equal(events.entity_id[:, 4] == -1, df["account_id"].isna())


def test_infer_reads_a_file_and_lists_what_it_cannot_place(tmp_path):
    df, t_ms = make_frame(2, string_ids=False, time_kind="ms")
    df["fraud_reported_at"] = t_ms + 3 * DAY
    df["notes"] = None
    df["TX_FRAUD_SCENARIO"] = np.arange(len(df)) % 3
    df["constant"] = 7
    df["seq"] = np.arange(len(df)) * 3
    df.to_csv(tmp_path / "events.csv", index=False)
    draft = infer_schema(tmp_path / "events.csv")
    assert 'name = "events"' in draft
    for col, why in [("notes", "always empty"), ("TX_FRAUD_SCENARIO", "may leak it"),
                     ("constant", "constant"), ("seq", "unique per row")]:
        line = next(ln for ln in draft.splitlines() if ln.startswith(f'#   "{col}"'))
        assert why in line, line
    schema, _ = load_config(write(tmp_path, draft))
    assert schema.entity_names == ["card", "device"]
    assert schema.label == LabelColumn("is_fraud", "fraud_reported_at", 0)
    _, labels = load_events(pd.read_csv(tmp_path / "events.csv"), schema)
    np.testing.assert_array_equal(labels.label_time_ms, t_ms + 3 * DAY)


def test_infer_keeps_at_most_16_entities(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({"txn_id": np.arange(n), "timestamp": 1_700_000_000 + np.arange(n) * 60})
    for i in range(18):
        df[f"e{i}_id"] = rng.integers(0, 30, n)
    draft = infer_schema(df)
    schema, _ = load_config(write(tmp_path, draft))
    assert len(schema.entities) == 16 and schema.time.unit == "s"
    assert '#   "e17_id"' in draft and "past the 16 entities" in draft


def test_infer_finds_the_presets(tmp_path):
    from libfraud.data import generate_transactions
    df = next(iter(generate_transactions(500, seed=2)))
    draft = infer_schema(df)
    assert '[[preset]]\nname = "payments"' in draft
    schema, spec = load_config(write(tmp_path, draft))
    assert spec.names == PAYMENTS_NAMES
    assert schema.label.time_column == ("label_time_ms" if "label_time_ms" in df else None)
    events, labels = load_events(df, schema)
    assert len(events) == len(df) and len(labels) == len(df)
    np.testing.assert_array_equal(events.entity_id[:, 1], df["device_id"].to_numpy())

    rng = np.random.default_rng(0)
    n = 200
    cards = pd.DataFrame({
        "TRANSACTION_ID": np.arange(n),
        "TX_DATETIME": pd.date_range("2024-01-01", periods=n, freq="7min").astype(str),
        "CUSTOMER_ID": rng.integers(0, 50, n), "TERMINAL_ID": rng.integers(0, 20, n),
        "TX_AMOUNT": rng.gamma(2, 30, n).round(2), "TX_TIME_SECONDS": np.arange(n) * 420,
        "TX_FRAUD": (rng.random(n) < 0.1).astype(int), "RISK": rng.random(n),
        "CHANNEL": rng.choice(["pos", "ecom"], n)})
    draft = infer_schema(cards)
    assert '[[preset]]\nname = "cards"' in draft and '#   "TX_TIME_SECONDS"' in draft
    schema, spec = load_config(write(tmp_path, draft))
    # the preset, then the data's other fields as they are
    assert spec.names == load_preset("cards")[1].names + ["risk", "channel"]
    assert schema.categorical == (CategoricalField("channel", "CHANNEL", "string"),)
    events, _ = load_events(cards, schema)
    np.testing.assert_array_equal(events.numeric[:, 0], cards["RISK"])


# ---------------------------------------------------------------------------------------------
# load_events

SMALL = Schema(
    event_id=EventIdColumn("id"), time=TimeColumn("t", "ms"), amount="amt",
    entities=[Entity("card", "card"), Entity("device", "dev", required=False)],
    numeric=[NumericField("risk", "r")], categorical=[CategoricalField("mcc", "m")],
    label=LabelColumn("y", "yt", 1000), source="small.toml")


def small_frame(**over):
    d = {"id": [1, 2, 3], "t": [1000, 2000, 2000], "amt": [5.0, 0.0, 7.5], "card": [10, 11, 10],
         "dev": [7.0, np.nan, -1], "r": [0.5, np.nan, 1.0], "m": [5411, None, 0],
         "y": [1, None, 0], "yt": [5000, None, None]}
    d.update(over)
    return pd.DataFrame(d)


def test_load_events_layout():
    ev, lb = load_events(small_frame(), SMALL)
    np.testing.assert_array_equal(ev.event_id, [1, 2, 3])
    np.testing.assert_array_equal(ev.time_ms, [1000, 2000, 2000])
    np.testing.assert_array_equal(ev.amount, [5.0, 0.0, 7.5])
    np.testing.assert_array_equal(ev.entity_id, [[10, 7], [11, -1], [10, -1]])
    np.testing.assert_array_equal(ev.numeric, [[0.5], [np.nan], [1.0]])
    np.testing.assert_array_equal(ev.categorical, [[5411], [-1], [0]])
    # the row with an empty label is unknown; an empty label time is time + delay
    np.testing.assert_array_equal(lb.event_id, [1, 3])
    np.testing.assert_array_equal(lb.label, [1, 0])
    np.testing.assert_array_equal(lb.label_time_ms, [5000, 3000])
    assert ev.entity_id.dtype == np.int64 and lb.label.dtype == np.int8


def test_load_events_reads_csv_text_cells(tmp_path):
    small_frame().to_csv(tmp_path / "d.csv", index=False)
    as_text = pd.read_csv(tmp_path / "d.csv", dtype=str, keep_default_na=False)
    a, la = load_events(as_text, SMALL)
    b, lb = load_events(small_frame(), SMALL)
    for x, y in zip(a.args() + la.args(), b.args() + lb.args()):
        np.testing.assert_array_equal(x, y)


def test_labels_are_optional_unless_asked_for():
    df = small_frame().drop(columns=["y", "yt"])
    ev, lb = load_events(df, SMALL)
    assert lb is None and len(ev) == 3
    with pytest.raises(DeclaredError, match=r"small.toml: \[label\]: column 'y' not in d.csv"):
        load_events(df, SMALL, path="d.csv", labels=True)
    assert load_events(small_frame(), SMALL, labels=False)[1] is None


T0 = 1_700_000_000_123


@pytest.mark.parametrize("unit, values, want", [
    ("ms", [T0, T0 + 1], [T0, T0 + 1]),
    ("s", [T0 // 1000, T0 // 1000 + 2], [T0 // 1000 * 1000, T0 // 1000 * 1000 + 2000]),
    ("s", [1.5, 2.25], [1500, 2250]),
    ("us", [T0 * 1000 + 999, T0 * 1000 + 1999], [T0, T0 + 1]),
    ("datetime", pd.to_datetime([T0, T0 + 5], unit="ms"), [T0, T0 + 5]),
    ("datetime", pd.to_datetime([T0, T0 + 5], unit="ms", utc=True).tz_convert("Asia/Tokyo"),
     [T0, T0 + 5]),
    ("datetime", ["2024-01-01T00:00:00Z", "2024-01-01T02:30:00+01:00"],
     [1704067200000, 1704067200000 + 90 * 60_000]),
    ("datetime", ["2024-01-01 00:00:00", "2024-01-01 00:00:00.250"], [1704067200000, 1704067200250]),
    ("datetime", ["1969-12-31T23:59:59.9995", "1970-01-01"], [-1, 0]),
])
def test_time_conversions(unit, values, want):
    s = Schema(EventIdColumn("id"), TimeColumn("t", unit), [Entity("c", "c")])
    df = pd.DataFrame({"id": [1, 2], "t": values, "c": [1, 2]})
    ev, _ = load_events(df, s)
    np.testing.assert_array_equal(ev.time_ms, want)


def value_error(df, schema=SMALL, **kw) -> DeclaredError:
    with pytest.raises(DeclaredError) as e:
        load_events(df, schema, path="d.csv", **kw)
    assert isinstance(e.value, SchemaError) and e.value.path == "d.csv"
    return e.value


@pytest.mark.parametrize("over, row, column, want", [
    (dict(card=[10, None, 10]), 1, "card", "empty cell, and entity 'card' is required"),
    (dict(card=[10, -1, 10]), 1, "card", "id -1 is negative, and entity 'card' is required"),
    (dict(dev=[1, -2, 3]), 1, "dev", "id -2 is negative"),
    (dict(card=[10, 1.5, 10]), 1, "card", "1.5 is not an integer"),
    (dict(card=["10", "x7", "10"]), 1, "card", "'x7' is not an integer (declare ids = \"string\""),
    (dict(r=[0.5, np.inf, 1.0]), 1, "r", "inf is not finite"),
    (dict(r=["0.5", "high", ""]), 1, "r", "'high' is not a number"),
    (dict(amt=[5.0, np.nan, 1.0]), 1, "amt", "empty amount"),
    (dict(amt=[5.0, -0.5, 1.0]), 1, "amt", "amount -0.5 is negative"),
    (dict(amt=[5.0, 1.0, -np.inf]), 2, "amt", "amount -inf is not finite"),
    (dict(m=[1, -3, 2]), 1, "m", "code -3 is negative: int codes must be >= 0"),
    (dict(y=[1, 2, 0]), 1, "y", "label 2 is not 0 or 1"),
    (dict(yt=[500, None, None]), 0, "yt", "label time 500 is before its event's time 1000"),
    (dict(t=[1000, None, 3000]), 1, "t", "empty time"),
    (dict(t=[1000, 3000, 2000]), 2, "t", "time 2000 is earlier than the previous row's 3000: rows "
                                         "must be sorted by time (load_events(..., sort=True)"),
    (dict(id=[1, 2, 1]), 2, "id", "duplicate event id 1 (first at row 0)"),
    (dict(id=[1, -2, 3]), 1, "id", "event id -2 is negative"),
])
def test_value_errors_name_row_and_column(over, row, column, want):
    e = value_error(small_frame(**over))
    assert (e.row, e.column) == (row, column)
    assert str(e).startswith(f"d.csv: row {row}, column {column!r} (") and want in str(e), str(e)


def test_missing_column_names_the_schema_key():
    with pytest.raises(DeclaredError) as e:
        load_events(small_frame().drop(columns=["dev"]), SMALL, path="d.csv")
    assert str(e.value).startswith("small.toml: [[entities]] 2 'device': column 'dev' not in d.csv "
                                   "(columns: id, t, amt, card, r, m, y, yt)")
    assert e.value.column == "dev"


def test_unit_mismatches_are_explained():
    s = Schema(EventIdColumn("id"), TimeColumn("t", "datetime"), [Entity("c", "c")])
    e = value_error(pd.DataFrame({"id": [1], "t": [T0], "c": [1]}), s)
    assert 'declare unit = "s", "ms" or "us"' in str(e)
    e = value_error(pd.DataFrame({"id": [1, 2], "t": ["2024-01-01", "next week"], "c": [1, 1]}), s)
    assert e.row == 1 and "'next week' is not an ISO-8601 date-time" in str(e)
    s = Schema(EventIdColumn("id"), TimeColumn("t", "ms"), [Entity("c", "c")])
    e = value_error(pd.DataFrame({"id": [1], "t": pd.to_datetime([T0], unit="ms"), "c": [1]}), s)
    assert 'declare unit = "datetime"' in str(e)


def test_sort_reorders_events_and_their_labels():
    df = small_frame(t=[3000, 1000, 2000], yt=[None, None, None], y=[1, 0, None])
    ev, lb = load_events(df, SMALL, sort=True)
    np.testing.assert_array_equal(ev.event_id, [2, 3, 1])
    np.testing.assert_array_equal(ev.time_ms, [1000, 2000, 3000])
    np.testing.assert_array_equal(ev.entity_id[:, 0], [11, 10, 10])
    np.testing.assert_array_equal(lb.event_id, [2, 1])
    np.testing.assert_array_equal(lb.label_time_ms, [2000, 4000])
    # ties keep the frame's order
    ev, _ = load_events(small_frame(t=[5, 5, 1]), SMALL, sort=True, labels=False)
    np.testing.assert_array_equal(ev.event_id, [3, 1, 2])


def test_no_amount_stores_zero():
    s = Schema(EventIdColumn("id"), TimeColumn("t", "ms"), [Entity("c", "c")])
    ev, lb = load_events(pd.DataFrame({"id": [1, 2], "t": [1, 2], "c": [3, 4]}), s)
    np.testing.assert_array_equal(ev.amount, [0.0, 0.0])
    assert ev.numeric.shape == (2, 0) and ev.categorical.shape == (2, 0) and lb is None


# ---------------------------------------------------------------------------------------------
# Hashed ids: the core's hash_ids against the documented function

HASH_SAMPLES = ["", "a", "card-123", "0", "12", "é", "ÿ-\u20ac-\U0001f600", "x" * 300]


def test_core_hash_ids_is_the_documented_hash():
    # the reference's FNV-1a against the published test vectors
    assert fnv1a64("") == 0xCBF29CE484222325 and fnv1a64("a") == 0xAF63DC4C8601EC8C
    assert fnv1a64("foobar") == 0x85944171F73967E8
    got = _core.hash_ids(HASH_SAMPLES)
    assert got.dtype == np.int64
    assert got.tolist() == [ref_hash(s) for s in HASH_SAMPLES]
    assert all(v >= 0 for v in got.tolist())


def test_hashed_ids_codes_and_filters(tmp_path):
    s = Schema(EventIdColumn("id", "string"), TimeColumn("t", "ms"),
               [Entity("user", "u", "string"), Entity("shop", "s", "string", required=False)],
               categorical=[CategoricalField("channel", "ch", "string")])
    df = pd.DataFrame({"id": ["a", "b", "c"], "t": [1, 2, 3], "u": ["u1", "u2", "u1"],
                       "s": [12.0, np.nan, 7.0], "ch": ["web", "", "app"]})
    ev, _ = load_events(df, s)
    assert ev.event_id.tolist() == [ref_hash(x) for x in "abc"]
    assert ev.entity_id[:, 0].tolist() == [ref_hash("u1"), ref_hash("u2"), ref_hash("u1")]
    # an int column read as floats (it has empty cells) hashes as its text: "12", not "12.0"
    assert ev.entity_id[:, 1].tolist() == [ref_hash("12"), -1, ref_hash("7")]
    assert ev.categorical[:, 0].tolist() == [ref_hash("web"), -1, ref_hash("app")]

    text = FULL.replace('[[categorical]]\nname = "mcc"\ncolumn = "MCC"\n',
                        '[[categorical]]\nname = "mcc"\ncolumn = "MCC"\n\n'
                        '[[categorical]]\nname = "channel"\ncolumn = "CH"\ncodes = "string"\n')
    text += """
[[feature]]
kind = "categorical"
field = "channel"
vocabulary = ["ecom", "pos"]

[[feature]]
kind = "window"
entity = "customer"
agg = "sum"
field = "amount"
window = "24h"
filter = { field = "channel", in = ["ecom"] }
name = "customer_ecom_amount_24h"
"""
    schema, spec = load_config(write(tmp_path, text))
    fj = spec.to_json()["features"]
    assert fj[-2]["vocabulary"] == [ref_hash("ecom"), ref_hash("pos")]
    assert fj[-1]["filter"] == {"field": "channel", "in": [ref_hash("ecom")]}
    assert FeatureSpec.from_json(spec.to_json(), schema) == spec
    bad = text.replace('in = ["ecom"]', "in = [3]")
    with pytest.raises(DeclaredError, match=r"filter: in: 3: 'channel' has string codes"):
        load_config(write(tmp_path, bad))


def test_a_hash_collision_of_event_ids_is_reported_as_a_duplicate(monkeypatch):
    import libfraud.data.declared_load as dl
    monkeypatch.setattr(dl, "hash_ids", lambda strings: np.zeros(len(strings), np.int64))
    s = Schema(EventIdColumn("id", "string"), TimeColumn("t", "ms"), [Entity("c", "c")])
    e = value_error(pd.DataFrame({"id": ["a", "b"], "t": [1, 2], "c": [1, 1]}), s)
    assert e.row == 1 and "duplicate event id 'b' (first at row 0): 'a' hashes to the same id" in str(e)
