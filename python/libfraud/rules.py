"""`libfraud compile --rules rules.toml`: score bands and rules, from a TOML file, into the bundle's
`decision` section (export/BUNDLE.md "decision"), checked by the core's own rule compiler.

    [decision]
    review_from = 0.3           # default: the bundle's threshold
    decline_from = 0.8          # default: no decline band

    [[rule]]
    code = 1001                 # stable, unique
    name = "big_and_fast"       # unique
    when = "amount > 5000 and card_count_1h > 3"
    action = "decline"          # or "review"
    mode = "active"             # or "shadow": recorded in the rule hits, never changes the decision

Errors name the file and the rule as the file has it: "rules.toml: [[rule]] 2 'big_and_fast':
when, column 19: unknown name 'amout' ...".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config_values import read_toml

__all__ = ["check_rules", "load_rules"]

DECISION_KEYS = ("review_from", "decline_from")


def load_rules(path: str | Path | None = None, *, review_from: float | None = None,
               decline_from: float | None = None) -> dict:
    """The `decision` section of the TOML file at ``path`` (None: no rules, bands only), with
    ``review_from`` / ``decline_from`` (the command's flags) replacing the file's values."""
    from .export.decision import DECISION_VERSION

    doc: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        doc = read_toml(p, str(p), "no such rules file")
        unknown = sorted(set(doc) - {"decision", "rule"})
        if unknown:
            raise ValueError(f"{p}: unknown key {unknown[0]!r}; a rules file holds a [decision] table and "
                             "[[rule]] tables")
        if not isinstance(doc.get("decision", {}), dict):
            raise ValueError(f"{p}: 'decision' must be a table ([decision])")
        if not isinstance(doc.get("rule", []), list):
            raise ValueError(f"{p}: 'rule' must be tables ([[rule]])")
        unknown = sorted(set(doc.get("decision", {})) - set(DECISION_KEYS))
        if unknown:
            raise ValueError(f"{p}: [decision] unknown key {unknown[0]!r} (known: {', '.join(DECISION_KEYS)})")
    section: dict[str, Any] = {"version": DECISION_VERSION, **doc.get("decision", {})}
    if review_from is not None:
        section["review_from"] = review_from
    if decline_from is not None:
        section["decline_from"] = decline_from
    if doc.get("rule"):
        section["rules"] = list(doc["rule"])
    return section


_RULE = re.compile(r"^decision\.rules\[(\d+)\]")


def _as_written(message: str) -> str:
    """The core's key ("decision.rules[1] 'x'") as the TOML file has it ("[[rule]] 2 'x'")."""
    m = _RULE.match(message)
    if m:
        return f"[[rule]] {int(m.group(1)) + 1}" + message[m.end():]
    if message.startswith("decision."):
        return "[decision] " + message[len("decision."):]
    return message


def check_rules(section: Mapping, feature_names: Sequence[str], schema: Mapping, threshold: float,
                source: str | Path) -> dict:
    """``section`` (from load_rules) compiled by the core against the model; ValueError naming
    ``source`` (the rules file) and the rule otherwise."""
    from .export.decision import check_decision

    try:
        return check_decision(section, feature_names, schema, threshold)
    except ValueError as e:
        raise ValueError(f"{source}: {_as_written(str(e))}") from None
