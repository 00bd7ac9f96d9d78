"""The bundle's `decision` section (BUNDLE.md "decision"): score bands and rules, checked by the
core's own parser (``_core.DecisionPolicy``) so that the compiler refuses exactly what a loader
would, with the core's message naming the rule, the key and the position in its condition."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

__all__ = ["DECISION_VERSION", "check_decision"]

#: The rule language's version (the section's `version` key); the core refuses any other.
DECISION_VERSION = 1


def check_decision(decision: Mapping[str, Any], feature_names: Sequence[str], schema: Mapping,
                   threshold: float) -> dict:
    """``decision`` as the manifest will carry it (a plain JSON object), after the core compiled it
    against the model's feature names, the schema (JSON form) and the bundle's threshold (what
    `review_from` defaults to). ``version`` is required, as in the manifest (DECISION_VERSION).

    Raises ValueError with the core's message ("decision.rules[2] 'big_and_fast': when, column 19:
    unknown name 'amout' ..."), never compiling anything first."""
    from libfraud import _core

    if not isinstance(decision, Mapping):
        raise ValueError(f"decision must be a mapping (the manifest's `decision` section), got "
                         f"{type(decision).__name__}")
    try:
        text = json.dumps(dict(decision), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"decision: not JSON-serialisable: {e}") from None
    try:
        _core.DecisionPolicy(text, list(feature_names), json.dumps(dict(schema)), float(threshold))
    except _core.FraudError as e:
        raise ValueError(str(e)) from None
    return json.loads(text)
