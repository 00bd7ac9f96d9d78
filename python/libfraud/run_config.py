"""A training run configured by one TOML file (`libfraud train --config run.toml`); flags override it.

Every table is optional::

    schema = "cards.toml"          # the schema and features (paths relative to this file), or
    preset = "cards"               # a built-in one
    history = "earlier.csv"        # warm-up events (fed to the store, not trained on)

    [periods]                      # libfraud.periods: dates (naive = UTC) or durations
    train_start = "2026-04-01"
    train_end = "7d"
    label_delay = "7d"
    test_end = "7d"

    [xgboost]                      # models.gbdt.GbdtParams fields (trees, depth, tree_method, ...)
    [gnn]                          # train_gnn.GnnParams fields; `enabled = false` for trees alone
    [sampler]                      # fanout, strategy, graph_fields
    [decision]                     # calibration = "platt"; threshold = "alerts_per_day:100"
    [evaluation]                   # k = 100; entity = "customer"; drop_known_compromised = true
    [tuning]                       # trials = 30; minutes = 20; folds = 2; storage = "study.db"
    [tracking]                     # uri = "http://mlflow:5000"; experiment = "cards"; enabled = true
    [model]                        # name = "cards-fraud"; version = "3"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config_values import read_toml

TABLES = ("periods", "xgboost", "gnn", "sampler", "decision", "evaluation", "tuning", "tracking", "model")
TOP_KEYS = ("schema", "features", "preset", "history")


@dataclass(frozen=True)
class RunConfig:
    path: Path | None = None
    top: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)

    def table(self, name: str) -> dict:
        return dict(self.tables.get(name, {}))

    def file(self, key: str) -> str | None:
        """A path key, resolved against the config file's folder."""
        value = self.top.get(key)
        if value is None or self.path is None:
            return value
        p = Path(value)
        return str(p if p.is_absolute() else self.path.parent / p)


def load_run_config(path: str | None) -> RunConfig:
    if path is None:
        return RunConfig()
    p = Path(path)
    doc = read_toml(p, f"--config {p}")
    top, tables = {}, {}
    for key, value in doc.items():
        if key in TABLES:
            if not isinstance(value, dict):
                raise ValueError(f"--config {p}: [{key}] must be a table")
            tables[key] = value
        elif key in TOP_KEYS:
            if not isinstance(value, str):
                raise ValueError(f"--config {p}: {key} must be a string")
            top[key] = value
        else:
            raise ValueError(f"--config {p}: unknown key {key!r}; known tables: {', '.join(TABLES)}; "
                             f"keys: {', '.join(TOP_KEYS)}")
    return RunConfig(p, top, tables)
