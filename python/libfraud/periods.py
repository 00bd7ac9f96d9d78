"""Training, validation and test periods by time, with a label delay and warm-up history.

A fraud team trains on what it knew on the day the model went live. The timeline, in UTC epoch ms,
every period half-open ``[start, end)``::

    warm-up | train ............ | valid ...... | delay gap ...... | test ...... | (unused)
            train_start          valid_start    train_end          test_start   test_end

- **warm-up**: events (and their labels) before ``train_start`` feed the store, so features of the
  first training events see their history; they are never trained on.
- **train / valid**: validation is the last part of the training window (``valid_fraction`` of its
  labelled events, by time) unless given explicitly; it early-stops the trees, fits the calibrator
  and chooses the threshold.
- **cutoff** = ``test_start``, the day the model goes live. A training or validation label is used
  only if it was known strictly before the cutoff: its label time (the schema's, and never earlier
  than ``event time + label_delay``) is ``< cutoff``. Events in the gap are replayed, not trained on.
- **test**: every event in it is scored and judged against its (eventual) label.

Dates are ISO-8601 (``2026-01-08``, ``2026-01-08T12:00``; naive = UTC, as the schema's times);
``train_end`` and ``test_end`` may also be durations after their period's start (``7d``), and
``valid_start`` a duration before ``train_end``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from .splits import time_split

__all__ = ["PeriodError", "PeriodSpec", "Periods", "Split", "assign", "resolve", "prequential_folds"]

DAY_MS = 86_400_000


class PeriodError(ValueError):
    """A period that cannot be used, naming the flag (config key) to change."""


@dataclass(frozen=True)
class PeriodSpec:
    """Periods as the user wrote them: CLI flags or a config file's ``[periods]`` table.

    Every field None means: time-ordered fractions of the labelled events (``fractions``)."""

    train_start: str | None = None
    train_end: str | None = None
    valid_start: str | None = None
    valid_end: str | None = None
    valid_fraction: float = 0.2
    test_start: str | None = None
    test_end: str | None = None
    label_delay: str | None = None
    prequential_folds: int = 0
    unknown_labels: str = "legitimate"  # a training label not yet known at the cutoff (see assign)

    #: flag names, for errors (the config keys are the same with underscores)
    FLAGS = {"train_start": "--train-start", "train_end": "--train-end", "valid_start": "--valid-start",
             "valid_end": "--valid-end", "valid_fraction": "--valid-fraction", "test_start": "--test-start",
             "test_end": "--test-end", "label_delay": "--label-delay",
             "prequential_folds": "--prequential", "unknown_labels": "--unknown-labels"}

    @classmethod
    def from_mapping(cls, table: dict, source: str = "[periods]") -> "PeriodSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(table) - known)
        if unknown:
            raise PeriodError(f"{source}: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values = {k: (str(v) if k not in ("valid_fraction", "prequential_folds") and v is not None
                      and not isinstance(v, str) else v) for k, v in table.items()}
        return cls(**values)

    def given(self) -> bool:
        return any(getattr(self, k) is not None for k in
                   ("train_start", "train_end", "valid_start", "valid_end", "test_start", "test_end"))


@dataclass(frozen=True)
class Periods:
    """Resolved periods (UTC epoch ms, half-open) and the label cutoff."""

    train_start_ms: int
    valid_start_ms: int
    train_end_ms: int  # the end of the training window (validation included when carved from it)
    valid_end_ms: int
    test_start_ms: int
    test_end_ms: int
    label_delay_ms: int
    valid_carved: bool  # validation is the tail of the training window

    @property
    def cutoff_ms(self) -> int:
        return self.test_start_ms

    def to_json(self) -> dict:
        def iso(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        d = asdict(self)
        for k in list(d):
            if k.endswith("_ms") and k != "label_delay_ms":
                d[k[:-3]] = iso(d[k])
        d["label_cutoff"] = iso(self.cutoff_ms)
        return d

    def shifted(self, by_ms: int) -> "Periods":
        """Every boundary earlier by ``by_ms`` (a prequential fold)."""
        return replace(self, **{k: getattr(self, k) - by_ms for k in
                                ("train_start_ms", "valid_start_ms", "train_end_ms", "valid_end_ms",
                                 "test_start_ms", "test_end_ms")})


@dataclass(frozen=True)
class Split:
    """Event indices (into all events, time-ordered within each part) of one resolved timeline."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    counts: dict  # events per part (warm-up, gap, after) and labels not yet known at the cutoff
    y: np.ndarray  # int8 per event: train/valid labels as of the cutoff, the test's true labels, -1 elsewhere

    def rows(self) -> dict:
        return {"train": int(self.train.size), "valid": int(self.valid.size), "test": int(self.test.size),
                **self.counts}


def parse_time(value, flag: str) -> int:
    """UTC epoch ms of an ISO-8601 date or date-time (naive = UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise PeriodError(f"{flag} {value!r} is not an ISO-8601 date or date-time ({e})") from None
    if ts is pd.NaT:
        raise PeriodError(f"{flag} {value!r} is not a date")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _duration(value, flag: str) -> int | None:
    from .data.declared import parse_duration
    try:
        return parse_duration(value)
    except ValueError:
        return None


def _date_or_after(value, start_ms: int, flag: str) -> int:
    """A date, or a duration after ``start_ms``."""
    d = _duration(value, flag)
    if d is not None:
        if d <= 0:
            raise PeriodError(f"{flag} {value!r}: a duration must be > 0")
        return start_ms + d
    return parse_time(value, flag)


def effective_label_time(event_time_ms: np.ndarray, label_time_ms: np.ndarray, delay_ms: int) -> np.ndarray:
    """When each label became known: never before its event time + the label delay."""
    return np.maximum(label_time_ms, event_time_ms + delay_ms)


def resolve(spec: PeriodSpec, time_ms: np.ndarray, y: np.ndarray, *, default_delay_ms: int = 0,
            fractions=(0.7, 0.15, 0.15)) -> Periods:
    """Boundaries in ms from what the user gave (see the module docstring). ``y``: each event's
    label (1, 0, -1 unknown); used for the fraction default and the carved validation."""
    f = PeriodSpec.FLAGS
    if len(time_ms) == 0:
        raise PeriodError("no events")
    first, last = int(time_ms.min()), int(time_ms.max())
    delay = default_delay_ms
    if spec.label_delay is not None:
        delay = _duration(spec.label_delay, f["label_delay"])
        if delay is None or delay < 0:
            raise PeriodError(f"{f['label_delay']} {spec.label_delay!r} is not a duration >= 0 (e.g. 7d)")
    if not (isinstance(spec.valid_fraction, (int, float)) and 0 < spec.valid_fraction < 1):
        raise PeriodError(f"{f['valid_fraction']} must be in (0, 1), got {spec.valid_fraction!r}")

    if not spec.given():  # fractions of the labelled events, by time; ties never straddle a cut
        known = np.flatnonzero(y >= 0)
        if known.size < 3:
            raise PeriodError(f"{known.size} labelled events: too few for a train/valid/test split")
        tr, va, te = time_split(time_ms[known], fractions)
        t1, t2 = int(time_ms[known[va]].min()), int(time_ms[known[te]].min())
        return Periods(first, t1, t1, t2, t2, last + 1, delay, valid_carved=False)

    train_start = parse_time(spec.train_start, f["train_start"]) if spec.train_start else first
    if spec.train_end is None:
        raise PeriodError(f"{f['train_end']} is required with periods (a date, or a duration such as 7d)")
    train_end = _date_or_after(spec.train_end, train_start, f["train_end"])
    if train_end <= train_start:
        raise PeriodError(f"{f['train_end']} ({spec.train_end}) is not after {f['train_start']} "
                          f"({spec.train_start or 'the first event'})")
    if spec.valid_end is not None and spec.valid_start is None:
        raise PeriodError(f"{f['valid_end']} needs {f['valid_start']}")
    carved = spec.valid_start is None or spec.valid_end is None
    if spec.valid_start is not None and spec.valid_end is None:  # the tail of the training window
        d = _duration(spec.valid_start, f["valid_start"])
        valid_start = train_end - d if d is not None else parse_time(spec.valid_start, f["valid_start"])
        valid_end = train_end
    elif spec.valid_start is not None:
        valid_start = parse_time(spec.valid_start, f["valid_start"])
        valid_end = _date_or_after(spec.valid_end, valid_start, f["valid_end"])
        if valid_end <= valid_start:
            raise PeriodError(f"{f['valid_end']} ({spec.valid_end}) is not after {f['valid_start']}")
        if valid_start < train_end and valid_end > train_start:
            raise PeriodError(f"the validation period ({f['valid_start']} {spec.valid_start} .. "
                              f"{f['valid_end']} {spec.valid_end}) overlaps the training period")
    else:
        valid_start = None
        valid_end = train_end
    if valid_start is not None and carved and not train_start < valid_start < train_end:
        raise PeriodError(f"{f['valid_start']} ({spec.valid_start}) must fall inside the training period")
    window_end = max(train_end, valid_end)
    if spec.test_start is not None:
        test_start = parse_time(spec.test_start, f["test_start"])
        if test_start < window_end:
            raise PeriodError(f"{f['test_start']} ({spec.test_start}) is before the end of the training/"
                              f"validation periods: the test would overlap them")
    else:
        test_start = window_end + delay
    if test_start > last:
        raise PeriodError(f"the test period starts after the last event ({f['test_start']} / "
                          f"{f['label_delay']}: the delay or the periods are longer than the data)")
    test_end = _date_or_after(spec.test_end, test_start, f["test_end"]) if spec.test_end else last + 1
    if test_end <= test_start:
        raise PeriodError(f"{f['test_end']} ({spec.test_end}) is not after the test start")
    if valid_start is None:  # the last valid_fraction of the window's labelled events, by time
        in_window = (time_ms >= train_start) & (time_ms < train_end) & (y >= 0)
        times = np.sort(time_ms[in_window])
        if times.size < 2:
            raise PeriodError(f"{times.size} labelled events in the training period ({f['train_start']} .. "
                              f"{f['train_end']}): nothing to train on")
        cut = min(max(int(round(times.size * (1 - spec.valid_fraction))), 1), times.size - 1)
        valid_start = int(times[cut])
        if valid_start <= train_start:
            raise PeriodError(f"{f['valid_fraction']} leaves no training events before validation")
    return Periods(train_start, valid_start, train_end, valid_end, test_start, test_end, delay,
                   valid_carved=carved)


UNKNOWN_POLICIES = ("legitimate", "drop")


def assign(periods: Periods, time_ms: np.ndarray, y: np.ndarray, known_ms: np.ndarray, *,
           unknown: str = "legitimate") -> Split:
    """The events of each part, and the labels training may use.

    ``y``: labels (1, 0, -1 none); ``known_ms``: each label's effective label time
    (effective_label_time). Training and validation see the labels as of the cutoff: a label known
    strictly before it is used as it is; one not yet known is, with ``unknown="legitimate"`` (the
    default), a legitimate event (no fraud report yet: what the desk's own data says that day),
    or with ``unknown="drop"`` left out. The test keeps the true labels."""
    if unknown not in UNKNOWN_POLICIES:
        raise PeriodError(f"--unknown-labels must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
    p = periods
    labelled = y >= 0
    known = labelled & (known_ms < p.cutoff_ms)
    order = np.argsort(time_ms, kind="stable")
    t = time_ms[order]
    as_of = np.full(y.shape, -1, dtype=np.int8)

    def part(lo: int, hi: int, train_side: bool) -> tuple[np.ndarray, dict]:
        idx = order[(t >= lo) & (t < hi)]
        idx = idx[labelled[idx]]
        if not train_side:
            as_of[idx] = y[idx]
            return idx, {}
        late = idx[~known[idx]]
        counts = {"labels_not_yet_known": int(late.size),
                  "frauds_not_yet_known": int((y[late] == 1).sum())}
        if unknown == "drop":
            idx = idx[known[idx]]
        as_of[idx] = np.where(known[idx], y[idx], 0)
        return idx, counts

    train_hi = p.valid_start_ms if p.valid_carved else p.train_end_ms
    train, late_train = part(p.train_start_ms, train_hi, True)
    valid, late_valid = part(p.valid_start_ms, p.valid_end_ms, True)
    test, _ = part(p.test_start_ms, p.test_end_ms, False)
    window_end = max(p.train_end_ms, p.valid_end_ms)
    counts = {"warmup": int((time_ms < p.train_start_ms).sum()),
              "gap": int(((time_ms >= window_end) & (time_ms < p.test_start_ms)).sum()),
              "after_test": int((time_ms >= p.test_end_ms).sum()),
              "unknown_labels": unknown,
              "not_yet_known": {"train": late_train, "valid": late_valid}}
    f = PeriodSpec.FLAGS
    for name, idx, flag in (("training", train, f["train_end"]), ("validation", valid, f["valid_fraction"]),
                            ("test", test, f["test_end"])):
        positives = int((as_of[idx] == 1).sum())
        if idx.size == 0:
            raise PeriodError(f"the {name} period has no labelled events ({flag})")
        if positives == 0 or positives == idx.size:
            what = "no fraud" if positives == 0 else "no legitimate events"
            raise PeriodError(f"the {name} period has {what} among its {idx.size} labelled events "
                              f"as known at the cutoff ({flag}, {f['label_delay']})")
    return Split(train, valid, test, counts, as_of)


def prequential_folds(periods: Periods, folds: int) -> list[Periods]:
    """``folds`` timelines: the given one, then each shifted earlier by the validation length
    (time-shifted validation; the earlier folds train on warm-up history)."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
        raise PeriodError(f"{PeriodSpec.FLAGS['prequential_folds']} must be an integer >= 1, got {folds!r}")
    step = periods.valid_end_ms - periods.valid_start_ms
    if step <= 0 or not math.isfinite(step):
        raise PeriodError("the validation period is empty")
    return [periods.shifted(i * step) for i in range(int(folds))]
