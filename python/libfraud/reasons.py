"""Reason families: what an analyst reads next to a score ("why was this card declined?").

Every model feature belongs to one family. The family comes from the feature's own ``reason`` key
when the feature spec declares one (``[[feature]] reason = "velocity"``), else from its kind (table
below); the GNN's outputs are the ``graph`` family. A spec may declare families of its own, or give
a built-in one another code or text, with ``[[reason]] name = "..." code = N text = "..."``.
Codes are stable: an analyst's tooling, a case system or a cardholder letter keys on them.

The bundle's manifest carries the families its features use and each feature's family
(``explanation``, export/BUNDLE.md); the core sums TreeSHAP contributions per family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

__all__ = ["BUILTIN_FAMILIES", "Family", "ReasonError", "default_family", "explanation_families",
           "family_table"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_TEXT = 120
MAX_CODE = 2**31 - 1


class ReasonError(ValueError):
    """A reason family or a feature's reason that is not well declared."""


@dataclass(frozen=True)
class Family:
    name: str
    code: int
    text: str

    def to_json(self) -> dict:
        return {"name": self.name, "code": self.code, "text": self.text}


BUILTIN_FAMILIES: tuple[Family, ...] = (
    Family("velocity", 1, "Unusual number of transactions in a short time"),
    Family("amount", 2, "Transaction amount"),
    Family("amount_vs_normal", 3, "Amount out of line with this account's usual spending"),
    Family("spending", 4, "Recent spending pattern"),
    Family("new_counterparty", 5, "New or changed device, counterparty or location"),
    Family("entity_risk", 6, "Fraud already confirmed on this or a linked account"),
    Family("graph", 7, "Linked to a suspicious network of accounts, devices or merchants"),
    Family("time_of_day", 8, "Time of day or week"),
    Family("event_attributes", 9, "Attributes of the transaction itself"),
)
GNN_FAMILY = "graph"


def default_family(feature: Mapping) -> str:
    """The family of a feature (SCHEMA.md JSON form) that declares no ``reason``: by its kind."""
    kind = feature["kind"]
    if kind in ("amount", "log_amount"):
        return "amount"
    if kind == "amount_vs_history":
        return "amount_vs_normal"
    if kind == "window":
        return "velocity" if feature.get("agg") == "count" else "spending"
    if kind == "time_since_last":
        return "velocity"
    if kind in ("distinct", "novelty", "changed"):
        return "new_counterparty"
    if kind == "label":
        return "entity_risk"
    if kind == "calendar":
        return "time_of_day"
    return "event_attributes"  # numeric, categorical: the event's own fields


def check_family(raw: Mapping, where: str) -> Family:
    """One declared family (``{"name", "code", "text"}``), checked."""
    unknown = sorted(set(raw) - {"name", "code", "text"})
    if unknown:
        raise ReasonError(f"{where}: unknown key {unknown[0]!r} (keys: code, name, text)")
    name, code, text = raw.get("name"), raw.get("code"), raw.get("text")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ReasonError(f"{where}: name must match [a-z][a-z0-9_]* (at most 40 characters), got {name!r}")
    if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= MAX_CODE:
        raise ReasonError(f"{where} ({name}): code must be an integer in 1..{MAX_CODE}, got {code!r}")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise ReasonError(f"{where} ({name}): text must be a non-empty string of at most {MAX_TEXT} "
                          f"characters, got {text!r}")
    return Family(name, code, text)


def family_table(declared: Iterable[Mapping] = ()) -> dict[str, Family]:
    """The built-in families with the declared ones added or overriding (by name); codes unique."""
    table = {f.name: f for f in BUILTIN_FAMILIES}
    seen: set[str] = set()
    for i, raw in enumerate(declared, 1):
        family = check_family(raw, f"[[reason]] {i}")
        if family.name in seen:
            raise ReasonError(f"[[reason]] {i}: family {family.name!r} is declared twice")
        seen.add(family.name)
        table[family.name] = family
    by_code: dict[int, str] = {}
    for family in table.values():
        if family.code in by_code:
            raise ReasonError(f"reason code {family.code} is both {by_code[family.code]!r}'s and "
                              f"{family.name!r}'s: codes must be unique")
        by_code[family.code] = family.name
    return table


def explanation_families(features: Sequence[Mapping], feature_order: Sequence[str],
                         gnn_outputs: Sequence[str] = (),
                         declared: Iterable[Mapping] = ()) -> tuple[list[Family], list[int]]:
    """(families used, in code order; each of ``feature_order``'s family index) for a bundle.
    ``features``: the spec's features (JSON form) in the model's order, then the GNN outputs."""
    table = family_table(declared)
    by_name = {f["name"]: f for f in features}
    gnn = set(gnn_outputs)
    names: list[str] = []
    for feature in feature_order:
        if feature in gnn:
            names.append(GNN_FAMILY)
            continue
        spec = by_name[feature]
        family = spec.get("reason") or default_family(spec)
        if family not in table:
            raise ReasonError(f"feature {feature!r}: reason {family!r} is not a family (families: "
                              f"{', '.join(sorted(table))}; declare others with [[reason]])")
        names.append(family)
    used = sorted({table[n] for n in names}, key=lambda f: f.code)
    index = {f.name: i for i, f in enumerate(used)}
    return used, [index[n] for n in names]
