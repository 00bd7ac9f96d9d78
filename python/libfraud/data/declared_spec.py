"""The declared feature spec (export/SCHEMA.md "Feature spec"): TOML in, JSON-form dicts out.

A :class:`FeatureSpec` is the list of features the core computes, in output order, each a dict in
the JSON form (durations in ms, string codes hashed). It is checked for structure when built and
against a :class:`Schema` by :meth:`FeatureSpec.validate` (the TOML loaders always do).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping, NoReturn

import numpy as np

from .declared import (
    _REQUIRED, DeclaredError, LabelColumn, Schema, _Ctx, _duration, _read_toml, _schema_from_toml,
    _Table, hash_ids, window_label,
)

__all__ = ["DEFAULT_MAX_SCAN", "FeatureSpec", "PRESETS", "default_feature_name", "load_config",
           "load_preset", "load_spec"]

FEATURES_FORMAT, FORMAT_VERSION = "libfraud-features", 1
DEFAULT_MAX_SCAN = 1024
PRESETS = ("payments", "cards")
_FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LABEL_DELAY = "label_delay"
"""An ``offset`` that means "the schema's [label] delay" (so it follows edits of the delay)."""


def load_spec(path, schema: Schema) -> "FeatureSpec":
    """The feature spec declared in a TOML file, checked against ``schema``."""
    doc, ctx = _read_toml(path)
    return _spec_from_toml(doc, schema, ctx)


def load_config(path) -> tuple[Schema, "FeatureSpec"]:
    """The schema and the feature spec of one TOML file holding both."""
    doc, ctx = _read_toml(path)
    schema = _schema_from_toml(doc, ctx)
    return schema, _spec_from_toml(doc, schema, ctx)


# ---------------------------------------------------------------------------------------------
# Feature spec

_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "amount": (), "log_amount": (),
    "numeric": ("field",),
    "categorical": ("field", "vocabulary"),
    "calendar": ("part",),
    "window": ("entity", "agg", "field", "window_ms", "offset_ms", "filter"),
    "time_since_last": ("entity",),
    "amount_vs_history": ("entity", "field", "stat", "window_ms"),
    "distinct": ("entity", "of", "window_ms"),
    "novelty": ("entity", "of"),
    "changed": ("entity", "of"),
    "label": ("entity", "agg", "window_ms", "offset_ms"),
}
# Keys that may be absent (or null) in JSON; they are written as these defaults.
_OPTIONAL = {"vocabulary": None, "filter": None, "offset_ms": 0}
_AGGS = {"window": ("count", "sum", "mean", "std", "min", "max"),
         "label": ("fraud_count", "fraud_rate", "labelled_count")}
_PARTS = ("hour", "day_of_week", "weekend", "night")
_PART_NAMES = {"hour": "hour_of_day", "day_of_week": "day_of_week", "weekend": "is_weekend",
               "night": "is_night"}
_STATS = ("ratio_to_mean", "zscore")
_OPS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class FeatureSpec:
    """The features the core computes, in output order: dicts in the JSON form of SCHEMA.md."""

    features: tuple[dict, ...]
    max_scan: int = DEFAULT_MAX_SCAN
    source: str | None = field(default=None, compare=False)
    # Declared reason families ({"name", "code", "text"}; libfraud.reasons): added to the built-in
    # ones or overriding them by name. A feature's "reason" key names its family.
    reasons: tuple[dict, ...] = ()

    def __post_init__(self):
        ctx = _Ctx(self.source)
        if not _is_int(self.max_scan) or self.max_scan < 1:
            ctx.at("[features] max_scan").fail(f"must be an integer >= 1, got {self.max_scan!r}")
        if not self.features:
            ctx.fail("declares no features (add [[feature]] tables or a [[preset]])")
        feats = tuple(_normalize_feature(f, ctx.at(f"feature {i}"))
                      for i, f in enumerate(self.features, 1))
        seen: dict[str, int] = {}
        for i, f in enumerate(feats, 1):
            if f["name"] in seen:
                ctx.at(f"feature {i} ({f['name']})").fail(
                    f"name {f['name']!r} is also feature {seen[f['name']]}'s: give one a `name`")
            seen[f["name"]] = i
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "reasons", tuple(dict(r) for r in self.reasons))
        from ..reasons import ReasonError, family_table
        try:
            table = family_table(self.reasons)
        except ReasonError as e:
            ctx.fail(str(e))
        for i, f in enumerate(feats, 1):
            if f.get("reason") is not None and f["reason"] not in table:
                ctx.at(f"feature {i} ({f['name']})").fail(
                    f"reason {f['reason']!r} is not a family (families: {', '.join(sorted(table))}; "
                    "declare others with [[reason]] name/code/text)")

    @property
    def names(self) -> list[str]:
        return [f["name"] for f in self.features]

    def validate(self, schema: Schema) -> "FeatureSpec":
        """Checks every feature's references (entities, fields, amount, label) against a schema."""
        for i, f in enumerate(self.features, 1):
            _check_refs(f, schema, _Ctx(self.source, f"feature {i} ({f['name']})"))
        return self

    def to_json(self) -> dict:
        out = {"format": FEATURES_FORMAT, "version": FORMAT_VERSION, "max_scan": self.max_scan,
               "features": [_copy(f) for f in self.features]}
        if self.reasons:
            out["reasons"] = [dict(r) for r in self.reasons]
        return out

    @classmethod
    def from_json(cls, d: Mapping, schema: Schema | None = None, *,
                  source: str | None = None) -> "FeatureSpec":
        """A manifest's ``features.spec``; checked against ``schema`` when given."""
        ctx = _Ctx(source, "features.spec")
        t = _Table(d, ctx)
        if t.get("format", str) != FEATURES_FORMAT or t.get("version", int) != FORMAT_VERSION:
            ctx.fail(f"expected format {FEATURES_FORMAT!r} version {FORMAT_VERSION}, got "
                     f"{d.get('format')!r} version {d.get('version')!r}")
        spec = cls(tuple(t.get("features", list)), t.get("max_scan", int), source=source,
                   reasons=tuple(t.get("reasons", list, [])))
        t.done()
        return spec if schema is None else spec.validate(schema)


def _copy(f: dict) -> dict:
    return {k: (_copy(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
            for k, v in f.items()}


def _normalize_feature(f: Any, ctx: _Ctx, *, require_name: bool = True) -> dict:
    """A feature's canonical JSON dict (every key of its kind, in order), structure checked."""
    t = _Table(f, ctx)
    kind = t.get("kind", str)
    if kind not in _KIND_KEYS:
        ctx.fail(f"kind {kind!r} is not one of {', '.join(_KIND_KEYS)}")
    name = t.get("name", (str, type(None)), None)
    if name is None and require_name:
        ctx.fail("missing key 'name'")
    if name is not None and not _FEATURE_NAME.match(name):
        ctx.fail(f"name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
    out: dict = {"name": name, "kind": kind}
    for key in _KIND_KEYS[kind]:
        default = _OPTIONAL.get(key, _REQUIRED)
        if kind == "window" and key == "field":
            default = None  # checked below: required unless count
        v = t.get(key, object, default)
        if v is None and default is _REQUIRED:
            ctx.fail(f"missing key {key!r}")
        out[key] = default if v is None else v
    scan = t.get("max_scan", (int, type(None)), None)
    reason = t.get("reason", (str, type(None)), None)
    t.done()
    _check_values(out, ctx)
    if scan is not None:
        if scan < 1:
            ctx.fail(f"max_scan: must be >= 1, got {scan}")
        out["max_scan"] = int(scan)
    if reason is not None:  # written only when declared: the family is otherwise the kind's
        out["reason"] = reason
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_values(f: dict, ctx: _Ctx) -> None:
    kind = f["kind"]
    for key in ("field", "entity", "part", "stat", "agg"):
        if key in f and f[key] is not None and not isinstance(f[key], str):
            ctx.fail(f"{key}: expected a string, got {f[key]!r}")
    if kind in _AGGS and f["agg"] not in _AGGS[kind]:
        ctx.fail(f"agg {f['agg']!r} is not one of {', '.join(_AGGS[kind])}")
    if kind == "window":
        if f["agg"] == "count" and f["field"] is not None:
            ctx.fail("field: a count takes no field (remove it)")
        if f["agg"] != "count" and f["field"] is None:
            ctx.fail(f"missing key 'field' (agg {f['agg']!r} needs \"amount\" or a numeric field)")
    if kind == "calendar" and f["part"] not in _PARTS:
        ctx.fail(f"part {f['part']!r} is not one of {', '.join(_PARTS)}")
    if kind == "amount_vs_history" and f["stat"] not in _STATS:
        ctx.fail(f"stat {f['stat']!r} is not one of {', '.join(_STATS)}")
    if "window_ms" in f:
        w = f["window_ms"]
        lo = 0 if kind == "amount_vs_history" else 1
        if not _is_int(w) or w < lo:
            ctx.fail(f"window: must be {'>= 0' if lo == 0 else '> 0'} ms, got {w!r}")
        f["window_ms"] = int(w)  # a Python int: numpy ints do not go to JSON
    if "offset_ms" in f:
        if not _is_int(f["offset_ms"]) or f["offset_ms"] < 0:
            ctx.fail(f"offset: must be >= 0 ms, got {f['offset_ms']!r}")
        f["offset_ms"] = int(f["offset_ms"])
    if "of" in f:
        of = f["of"]
        ok = (isinstance(of, Mapping) and len(of) == 1
              and next(iter(of)) in ("entity", "categorical")
              and isinstance(next(iter(of.values())), str))
        if not ok:
            ctx.fail(f"of: expected {{\"entity\": name}} or {{\"categorical\": name}}, got {of!r}")
        f["of"] = dict(of)
    if f.get("vocabulary") is not None:
        voc = f["vocabulary"]
        if not isinstance(voc, list) or not voc or not all(_is_int(c) and c >= 0 for c in voc):
            ctx.fail(f"vocabulary: expected a non-empty list of codes >= 0, got {voc!r}")
        if len(set(voc)) != len(voc):
            ctx.fail("vocabulary: a code appears twice")
        f["vocabulary"] = [int(c) for c in voc]
    if f.get("filter") is not None:
        f["filter"] = _check_filter(f["filter"], ctx.at("filter"))


def _check_filter(flt: Any, ctx: _Ctx) -> dict:
    t = _Table(flt, ctx)
    fld = t.get("field", str)
    if "in" in flt:
        codes = t.get("in", list)
        t.done()
        if not codes or not all(_is_int(c) and c >= 0 for c in codes):
            ctx.fail(f"in: expected a non-empty list of codes >= 0, got {codes!r}")
        return {"field": fld, "in": [int(c) for c in codes]}
    op = t.get("op", str)
    value = t.get("value", (int, float))
    t.done()
    if op not in _OPS:
        ctx.fail(f"op {op!r} is not one of {' '.join(_OPS)}")
    if not math.isfinite(value):
        ctx.fail(f"value: must be finite, got {value!r}")
    return {"field": fld, "op": op, "value": float(value)}


def default_feature_name(f: Mapping) -> str:
    """The name SCHEMA.md derives for a feature in JSON form (filtered features have none)."""
    kind = f["kind"]
    if kind in ("amount", "log_amount"):
        return kind
    if kind in ("numeric", "categorical"):
        return f["field"]
    if kind == "calendar":
        return _PART_NAMES[f["part"]]
    e = f["entity"]
    after = f"_after_{window_label(f['offset_ms'])}" if f.get("offset_ms") else ""
    if kind == "window":
        what = "count" if f["agg"] == "count" else f"{f['field']}_{f['agg']}"
        return f"{e}_{what}_{window_label(f['window_ms'])}{after}"
    if kind == "label":
        return f"{e}_{f['agg']}_{window_label(f['window_ms'])}{after}"
    if kind == "time_since_last":
        return f"{e}_seconds_since_last"
    if kind == "amount_vs_history":
        # Not in SCHEMA.md's list: a windowed stat gets its window, so it cannot clash with the
        # whole-history one.
        w = f"_{window_label(f['window_ms'])}" if f["window_ms"] else ""
        return f"{e}_{f['field']}_{f['stat']}{w}"
    of = next(iter(f["of"].values()))
    if kind == "distinct":
        return f"{e}_distinct_{of}s_{window_label(f['window_ms'])}"
    return f"{e}_{of}_is_new" if kind == "novelty" else f"{e}_{of}_changed"


_ROLE_TEXT = {"entity": "an entity", "numeric": "a numeric field",
              "categorical": "a categorical field"}


def _role_fail(schema: Schema, ctx: _Ctx, key: str, name: str, roles: tuple[str, ...],
               amount: bool = False) -> NoReturn:
    """`name` (the value of `key`) is not of the roles the feature needs: say what it is."""
    want = " or ".join((['"amount"'] if amount else []) + [_ROLE_TEXT[r] for r in roles])
    role = schema.role(name)
    if role is not None:
        ctx.fail(f"{key} {name!r} is {_ROLE_TEXT[role]}, not {want}")
    ok = (["amount"] if amount and schema.amount is not None else []) + [
        x.name for r, items in (("entity", schema.entities), ("numeric", schema.numeric),
                                ("categorical", schema.categorical)) if r in roles for x in items]
    ctx.fail(f"{key} {name!r} is not declared (want {want}; declared: {', '.join(ok) or 'none'})")


def _check_refs(f: dict, schema: Schema, ctx: _Ctx) -> None:
    """A normalized feature's references against the schema."""
    kind = f["kind"]
    names = ", ".join(schema.entity_names)

    def needs_amount(what: str) -> None:
        if schema.amount is None:
            ctx.fail(f"{what} uses the amount, but the schema declares no [amount]")

    def role_error(key: str, name: str, *roles: str, amount: bool = False) -> NoReturn:
        _role_fail(schema, ctx, key, name, roles, amount)

    if kind in ("amount", "log_amount"):
        needs_amount(f"kind {kind!r}")
    if kind == "numeric" and schema.role(f["field"]) != "numeric":
        role_error("field", f["field"], "numeric")
    if kind == "categorical" and schema.role(f["field"]) != "categorical":
        role_error("field", f["field"], "categorical")
    if "entity" in f and schema.role(f["entity"]) != "entity":
        role = schema.role(f["entity"])
        ctx.fail(f"entity {f['entity']!r} is " + (f"a {role} field, not an entity" if role
                                                  else "not declared") + f" (entities: {names})")
    if kind in ("window", "amount_vs_history") and f["field"] is not None:
        if f["field"] == "amount":
            needs_amount("field")
        elif schema.role(f["field"]) != "numeric":
            role_error("field", f["field"], "numeric", amount=True)
    if "of" in f:
        (role, name), = f["of"].items()
        if schema.role(name) != role:
            role_error("of", name, role)
        if name == f["entity"]:
            ctx.fail(f"of: {name!r} is the feature's own entity")
    flt = f.get("filter")
    if flt is not None:
        if "in" in flt and schema.role(flt["field"]) != "categorical":
            role_error("filter field", flt["field"], "categorical")
        if "op" in flt:
            if flt["field"] == "amount":
                needs_amount("filter")
            elif schema.role(flt["field"]) != "numeric":
                role_error("filter field", flt["field"], "numeric", amount=True)
    if kind == "label" and schema.label is None:
        ctx.fail("label features need a [label] in the schema")


# ---------------------------------------------------------------------------------------------
# Feature spec from TOML

_TOML_KEYS = {k: tuple({"window_ms": "window", "offset_ms": "offset"}.get(x, x) for x in v)
              for k, v in _KIND_KEYS.items()}
_TOML_KEYS["amount_vs_history"] = ("entity", "field", "stat", "window")


def _spec_from_toml(doc: Mapping, schema: Schema, ctx: _Ctx) -> FeatureSpec:
    head = _Table(doc.get("features", {}), ctx.at("[features]"))
    max_scan = head.get("max_scan", int, DEFAULT_MAX_SCAN)
    head.done()
    feats: list[tuple[str, dict]] = []  # (where it was declared, feature)
    for key in ("preset", "feature"):
        if not isinstance(doc.get(key, []), list):
            ctx.at(key).fail(f"must be an array of tables: write [[{key}]]")
    for i, raw in enumerate(doc.get("preset", []), 1):
        t = _Table(raw, ctx.at(f"[[preset]] {i}"))
        feats += _preset_features(t.get("name", str), schema, t.ctx)
        t.done()
    for i, raw in enumerate(doc.get("feature", []), 1):
        if isinstance(raw, Mapping) and "preset" in raw:
            # `[[feature]] preset = "cards"` expands in place (TOML keeps no order between
            # [[preset]] and [[feature]] tables, so [[preset]] ones come first).
            t = _Table(raw, ctx.at(f"[[feature]] {i}"))
            feats += _preset_features(t.get("preset", str), schema, t.ctx)
            t.done()
        else:
            feats.append(_feature_from_toml(raw, schema, ctx.at(f"[[feature]] {i}")))
    seen: dict[str, str] = {}
    for key, f in feats:
        if f["name"] in seen:
            _Ctx(ctx.path, key).fail(f"name {f['name']!r} is also {seen[f['name']]}'s: give one "
                                     f"of them another `name`")
        seen[f["name"]] = key
    if not feats:
        ctx.fail("declares no features (add [[feature]] tables or a [[preset]])")
    if not isinstance(doc.get("reason", []), list):
        ctx.at("reason").fail("must be an array of tables: write [[reason]]")
    return FeatureSpec(tuple(f for _, f in feats), max_scan, source=ctx.path,
                       reasons=tuple(doc.get("reason", [])))


# TOML keys that may be left out (the others of a kind are required).
_TOML_OPTIONAL = {"vocabulary", "filter", "offset"}


def _feature_from_toml(raw: Any, schema: Schema, ctx: _Ctx) -> tuple[str, dict]:
    """(its key for messages, the feature in JSON form) from one [[feature]] table."""
    label = raw.get("name") if isinstance(raw, Mapping) else None
    key = ctx.key + (f" ({label})" if isinstance(label, str) else "")
    ctx = _Ctx(ctx.path, key)
    t = _Table(raw, ctx)
    kind = t.get("kind", str)
    if kind not in _TOML_KEYS:
        ctx.fail(f"kind {kind!r} is not one of {', '.join(_TOML_KEYS)}")
    d: dict = {"kind": kind, "name": t.get("name", str, None)}
    if kind == "amount_vs_history":
        d.update(field="amount", window_ms=0)  # defaults: the amount, over the whole history
    for k in _TOML_KEYS[kind]:
        if k not in raw:
            optional = (k in _TOML_OPTIONAL
                        or kind == "amount_vs_history" and k in ("field", "window")
                        or k == "field" and raw.get("agg") == "count")
            if not optional:
                ctx.fail(f"missing key {k!r}")
        elif k == "window":
            d["window_ms"] = _duration(t, "window", allow_zero=kind == "amount_vs_history")
        elif k == "offset":
            d["offset_ms"] = _offset(t, schema)
        elif k == "of":
            d["of"] = _of(t.get("of", (str, dict)), schema, ctx.at("of"))
        elif k == "vocabulary":
            d["vocabulary"] = _codes(t.get("vocabulary", list), raw.get("field"), schema,
                                     ctx.at("vocabulary"))
        elif k == "filter":
            d["filter"] = _filter(t.get("filter", dict), schema, ctx.at("filter"))
        else:
            d[k] = t.get(k, str)
    if "max_scan" in raw:
        d["max_scan"] = t.get("max_scan", int)
    if "reason" in raw:
        d["reason"] = t.get("reason", str)
    t.done()
    f = _normalize_feature(d, ctx, require_name=False)
    if f["name"] is None:
        if f.get("filter") is not None:
            ctx.fail("a filtered feature needs a `name`")
        f["name"] = default_feature_name(f)
        key = f"{key} ({f['name']})"
    _check_refs(f, schema, _Ctx(ctx.path, key))
    return key, f


def _offset(t: _Table, schema: Schema) -> int:
    if t.data.get("offset") == LABEL_DELAY:
        t.used.add("offset")
        if schema.label is None:
            t.ctx.fail(f"offset: {LABEL_DELAY!r} needs a [label] in the schema")
        return schema.label.delay_ms
    return _duration(t, "offset", allow_zero=True)


def _of(v: Any, schema: Schema, ctx: _Ctx) -> dict:
    if isinstance(v, str):
        role = schema.role(v)
        if role not in ("entity", "categorical"):
            ctx.fail(f"{v!r} is " + (f"a {role} field" if role else "not declared")
                     + ": `of` takes an entity or a categorical")
        return {role: v}
    return dict(v)  # {entity = ...} / {categorical = ...}: checked by _normalize_feature


def _codes(values: list, fld: Any, schema: Schema, ctx: _Ctx) -> list:
    """Codes of a categorical field as int64: strings hashed for ``codes = "string"``."""
    if not isinstance(fld, str) or schema.role(fld) != "categorical":
        _role_fail(schema, ctx, "field", str(fld), ("categorical",))
    if schema.categorical_field(fld).codes == "int":
        bad = [v for v in values if not _is_int(v)]
        if bad:
            ctx.fail(f"{bad[0]!r}: {fld!r} has int codes (codes = \"int\"); write integers")
        return values
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        ctx.fail(f"{bad[0]!r}: {fld!r} has string codes (codes = \"string\"); write strings")
    return [int(c) for c in hash_ids(values)]


def _filter(v: Mapping, schema: Schema, ctx: _Ctx) -> dict:
    out = dict(v)
    if "in" in v and "op" in v:
        ctx.fail("write either `in` (a categorical) or `op` and `value` (a number), not both")
    if "in" in v:
        if not isinstance(v["in"], list):
            ctx.fail(f"in: expected an array, got {v['in']!r}")
        out["in"] = _codes(v["in"], v.get("field"), schema, ctx.at("in"))
    return out


@lru_cache(maxsize=None)
def _preset_doc(name: str) -> dict:
    text = (resources.files("libfraud") / "presets" / f"{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def _preset_features(name: str, schema: Schema, ctx: _Ctx) -> list[tuple[str, dict]]:
    if name not in PRESETS:
        ctx.fail(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    ctx = _Ctx(ctx.path, f"{ctx.key} {name!r}")
    return [_feature_from_toml(raw, schema, ctx.at(f"feature {i}"))
            for i, raw in enumerate(_preset_doc(name)["feature"], 1)]


def load_preset(name: str, columns=None) -> tuple[Schema, FeatureSpec]:
    """A preset's schema and features. ``columns`` (the data's) adapts the schema: payments data
    with a ``label_time_ms`` column takes its label times from it (else labels are known at once).
    """
    if name not in PRESETS:
        raise DeclaredError(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    doc = _preset_doc(name)
    ctx = _Ctx(f"presets/{name}.toml")
    schema = _schema_from_toml(doc, ctx)
    if name == "payments" and columns is not None and "label_time_ms" in set(columns):
        schema = replace(schema, label=LabelColumn("label", "label_time_ms", 0))
    return schema, _spec_from_toml(doc, schema, ctx)


