"""JSON Schema of the request bodies, from the bundle's declared schema: what /docs shows a client.

The service itself converts and checks bodies with the package's loader (events_json.py); this
only documents them, in the user's own column names and types.
"""

from __future__ import annotations

from ..data.declared import Schema

__all__ = ["event_schema", "label_schema"]


def _ids(kind: str, nullable: bool, what: str) -> dict:
    t = {"type": "string", "minLength": 1} if kind == "string" else {"type": "integer", "minimum": 0}
    t = {**t, "description": what}
    return {"anyOf": [t, {"type": "null"}], "description": what} if nullable else t


def _time(schema: Schema) -> dict:
    unit = schema.time.unit
    if unit == "datetime":
        return {"type": "string", "description": f"ISO-8601 date-time (naive = {schema.time.timezone})"}
    return {"type": "integer", "description": f"Unix epoch, {unit}"}


def _event(schema: Schema) -> dict:
    props = {schema.event_id.column: _ids(schema.event_id.ids, False, "event id, unique"),
             schema.time.column: _time(schema)}
    required = [schema.event_id.column, schema.time.column]
    if schema.amount is not None:
        props[schema.amount] = {"type": "number", "minimum": 0, "description": "amount"}
        required.append(schema.amount)
    for e in schema.entities:
        props[e.column] = _ids(e.ids, not e.required, f"entity {e.name!r}" + ("" if e.required else "; null = absent"))
        if e.required:
            required.append(e.column)
    for x in schema.numeric:
        props[x.column] = {"anyOf": [{"type": "number"}, {"type": "null"}],
                           "description": f"numeric field {x.name!r}; null = missing"}
    for c in schema.categorical:
        props[c.column] = _ids(c.codes, True, f"categorical field {c.name!r}; null = missing")
    return {"type": "object", "properties": props, "required": required,
            "description": "One event, keyed by the schema's column names (other keys are ignored)"}


def _batch(item: dict, key: str, max_batch: int) -> dict:
    return {"oneOf": [item, {"type": "object", "required": [key], "properties": {
        key: {"type": "array", "items": item, "minItems": 1, "maxItems": max_batch},
        "k": {"type": "integer", "minimum": 1, "maximum": 64,
              "description": "reasons per event (then each result carries its top-k reason codes)"},
        "min_score": {"type": "number", "description": "explain only events scoring at least this"}}}]}


def event_schema(schema: Schema, max_batch: int) -> dict:
    return _batch(_event(schema), "events", max_batch)


def label_schema(schema: Schema, max_batch: int) -> dict:
    if schema.label is None:
        return {"type": "object", "description": "the bundle's schema declares no label"}
    lb = schema.label
    props = {schema.event_id.column: _ids(schema.event_id.ids, False, "the labelled event's id"),
             lb.column: {"type": "integer", "enum": [0, 1], "description": "1 fraud, 0 legitimate"}}
    time_col = lb.time_column or schema.time.column
    props[time_col] = {**_time(schema), "description": "when the label became known"
                       if lb.time_column else "the event's time (the label is known after the declared delay)"}
    item = {"type": "object", "properties": props, "required": [schema.event_id.column, lb.column, time_col]}
    return _batch(item, "labels", max_batch)
