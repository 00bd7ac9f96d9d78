"""Typed parameters from config tables and ``--flag KEY=VALUE`` pairs (strings from the command
line converted to each field's type), one rule for every parameter dataclass."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path


def read_toml(path, label: str, missing: str = "no such file") -> dict:
    """A TOML file's tables; a missing file or bad TOML raises naming ``label`` (how the user gave
    the file, e.g. ``--config run.toml``)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{label}: {missing}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{label}: not valid TOML: {e}") from None


def dataclass_from_mapping(cls, values: dict, source: str, aliases: dict | None = None):
    """``cls(**values)`` with keys checked against its fields and strings converted."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        name = (aliases or {}).get(key, key)
        if name not in fields:
            raise ValueError(f"{source}: unknown parameter {key!r}; known: {', '.join(sorted(fields))}")
        out[name] = _convert(value, hints[name], f"{source}: {key}")
    return cls(**out)


def _convert(value, hint, what: str):
    if not isinstance(value, str):
        return value
    kinds = typing.get_args(hint) or (hint,)
    if type(None) in kinds and value.lower() in ("none", "auto", "null"):
        return None
    for kind in kinds:
        if kind is bool:
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
        elif kind is int:
            try:
                return int(value)
            except ValueError:
                continue
        elif kind is float:
            try:
                return float(value)
            except ValueError:
                continue
        elif kind is str:
            return value
    raise ValueError(f"{what} = {value!r} is not a valid {' or '.join(getattr(k, '__name__', str(k)) for k in kinds)}")
