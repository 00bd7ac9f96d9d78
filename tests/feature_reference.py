"""A brute-force reference of the generic feature engine (export/SCHEMA.md, "Kinds and their exact
semantics"), written for clarity: the test oracle the C++ core is compared against.

`reference_features(schema_json, spec_json, events, labels)` returns, for each event in stream
order, the features of `spec_json["features"]` as the core would compute them *just before that
event is ingested* (a replay): float32 [n, F].

The rules, exactly (the C++ is checked against these):

History
    Events are ingested in stream order (index 0, 1, ...). When event i is computed the store holds
    events 0..i-1. The history of entity type e for event i is, if the event's id `x` for e is
    present (>= 0), the events j < i with entity_id[j, e] == x that are RETAINED (below) and have
    time_ms[j] < time_ms[i] (strictly; a tie is not history), oldest first (= ingest order). An
    absent id (-1) has no history: its features are NaN.

Retention (a filter on that candidate set; the C++ store evicts, the result is the same)
    - retention_ms > 0: the watermark W_i = max(time_ms[0..i-1]) (no eviction when i == 0); event j
      is gone when time_ms[j] < W_i - retention_ms (an event exactly at W_i - retention_ms stays).
    - max_history_per_entity = M > 0: for each (entity type, id), only the M newest events among
      0..i-1 with that id, counted in ingest order (ties included, whatever their time, and counting
      events that the time rule would drop), stay in that entity's history. Dropping an event from
      one entity's history leaves it in the others'.
    Both rules apply (an event is in a history when it passes both). The store refuses events older
    than its watermark, so streams are non-decreasing in time; with such streams this is what
    cpp/src/store/temporal_store.h's eviction keeps.

Windows
    "The window" = the history's events with time in [t - offset_ms - window_ms, t - offset_ms):
    an event exactly at t - offset - window is in, one at t - offset is out. "The k most recent"
    events are the last k in history order. window_ms must be > 0 for window, distinct and label;
    amount_vs_history's window_ms 0 means the whole history. offset_ms defaults to 0 (distinct and
    amount_vs_history accept it too, though SCHEMA.md lists it only for window and label).

max_scan
    The feature's "max_scan" key, else the spec's, else 1024. It bounds (with "the k most recent"
    above): filtered windows (filter applied to the window's max_scan most recent events), distinct,
    novelty (the history's max_scan most recent, no window), label (the window's max_scan most
    recent). Unfiltered windows, time_since_last, changed and amount_vs_history read everything.

Labels
    Labels are attributes of events (matched by event_id); their order in `labels` does not matter.
    A label of event j counts for event i only when label_time_ms[j] < time_ms[i] (strictly: a label
    known exactly at t is not counted). A label must be 0/1 and not before its event's time; the same
    label twice keeps the earliest time; two different labels for one event are an error.

Arithmetic
    float64 throughout, saturated to +-float32 max and cast to float32 at the end (never +-inf). Sums are
    direct sequential sums in history (= time) order, oldest first, starting from +0.0: a window that
    no longer holds a 1e200 gives the exact sum of what it holds. mean = sum / n. Sample std (ddof 1)
    is 0 exactly when all values are equal, else a two-pass std around that mean, scaled by the
    largest |deviation| so that values such as 1e200 do not overflow (std of [1e200, 0] is finite,
    ~7.07e199, so a z-score against it is finite). ratio_to_mean against a history whose mean is 0
    is NaN. Missing numeric values (NaN) are skipped by every
    aggregate and never pass a filter (not even "!="). A categorical pass-through of a code is
    float(code) (int64 -> double, correctly rounded) then float32. time_since_last is
    float(t - t_last) / 1000.0. Calendar parts use floor division of the local ms (correct before
    1970); 1970-01-01 was a Thursday (day_of_week 3).

Kinds (SCHEMA.md, restated where a reading was needed)
    changed: compares the raw values of `of` (-1 included): a missing value after a present one is a
    change; both missing is not. distinct counts present values only. novelty is NaN when the event's
    own value is absent/missing. amount_vs_history: "no history" = no non-missing value of the field
    in the history (or window); zscore NaN when fewer than 2 such values or std <= 1e-6 * |mean|.
    label fraud_rate = fraud_count / (number of events scanned, labelled or not); NaN when that is 0.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from libfraud.events import EventArrays, LabelArrays

__all__ = ["DEFAULT_MAX_SCAN", "EXACT_KINDS", "feature_is_exact", "reference_features",
           "INT64_MIN", "INT64_MAX"]

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
DEFAULT_MAX_SCAN = 1024
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
MIN_REL_STD = 1e-6
NAN = math.nan

#: Kinds whose output must match the core bit for bit (NaN where NaN).
EXACT_KINDS = frozenset({"amount", "numeric", "categorical", "calendar", "distinct", "novelty",
                         "changed"})


def feature_is_exact(feature: dict) -> bool:
    """True when the core must reproduce this feature bit for bit: pass-throughs, calendar, counts
    (window count, distinct, novelty, changed, label fraud_count / labelled_count). The others
    (log_amount, window sum/mean/std/min/max, time_since_last, amount_vs_history, label fraud_rate)
    are compared with a tolerance (tests/test_feature_plan.py)."""
    kind = feature["kind"]
    if kind in EXACT_KINDS:
        return True
    if kind == "window":
        return feature["agg"] == "count"
    if kind == "label":
        return feature["agg"] in ("fraud_count", "labelled_count")
    return False


# --- small arithmetic helpers -----------------------------------------------------------------

def _seq_sum(values: np.ndarray) -> float:
    """Direct summation, oldest first, starting from +0.0 (np.cumsum is strictly sequential;
    np.sum and Python's sum are not plain sequential sums)."""
    if len(values) == 0:
        return 0.0
    return 0.0 + float(np.cumsum(values, dtype=np.float64)[-1])


def _mean(values: np.ndarray) -> float:
    return _seq_sum(values) / len(values)


def _sample_std(values: np.ndarray) -> float:
    """ddof 1; the caller guarantees len >= 2. 0 exactly when all values are equal."""
    n = len(values)
    if np.all(values == values[0]):
        return 0.0
    mean = _mean(values)
    deviations = values - mean
    scale = float(np.max(np.abs(deviations)))  # > 0: the values are not all equal
    scaled = deviations / scale
    return scale * math.sqrt(_seq_sum(scaled * scaled) / (n - 1))


def _clamp64(x: int) -> int:
    """Clamp a Python int to int64 (comparisons against an int64 array keep their meaning)."""
    return max(INT64_MIN, min(INT64_MAX, x))


# --- the reference ----------------------------------------------------------------------------

class _Stream:
    """The stream's columns, looked up by the schema's names."""

    def __init__(self, schema: dict, events: EventArrays, labels: LabelArrays | None):
        self.schema = schema
        self.n = len(events)
        self.time = np.asarray(events.time_ms, dtype=np.int64)
        self.amount = np.asarray(events.amount, dtype=np.float64)
        self.entity_id = np.asarray(events.entity_id, dtype=np.int64).reshape(self.n, -1)
        self.numeric = np.asarray(events.numeric, dtype=np.float64).reshape(self.n, -1)
        self.categorical = np.asarray(events.categorical, dtype=np.int64).reshape(self.n, -1)
        self.entity_index = {e["name"]: k for k, e in enumerate(schema["entities"])}
        self.numeric_index = {x["name"]: k for k, x in enumerate(schema.get("numeric") or [])}
        self.categorical_index = {x["name"]: k for k, x in enumerate(schema.get("categorical") or [])}
        self.has_amount = schema.get("amount") is not None
        if self.entity_id.shape[1] != len(self.entity_index):
            raise ValueError(f"events have {self.entity_id.shape[1]} entity columns, the schema "
                             f"{len(self.entity_index)}")
        if self.numeric.shape[1] != len(self.numeric_index):
            raise ValueError("events: numeric columns do not match the schema")
        if self.categorical.shape[1] != len(self.categorical_index):
            raise ValueError("events: categorical columns do not match the schema")
        for e in schema["entities"]:
            k = self.entity_index[e["name"]]
            if e.get("required", True) and np.any(self.entity_id[:, k] < 0):
                raise ValueError(f"entity {e['name']!r} is required but absent in some event")
        offsets = schema["time"]["utc_offsets"]
        self.offset_from = [int(a) for a, _ in offsets]
        self.offset_seconds = [int(b) for _, b in offsets]
        if not self.offset_from or self.offset_from[0] != INT64_MIN:
            raise ValueError("time.utc_offsets: the first entry must start at INT64_MIN")
        if self.offset_from != sorted(self.offset_from):
            raise ValueError("time.utc_offsets: not sorted")
        self._label_arrays(labels, events)

    def _label_arrays(self, labels: LabelArrays | None, events: EventArrays) -> None:
        self.label = np.full(self.n, -1, dtype=np.int64)  # -1 = never labelled
        self.label_time = np.full(self.n, INT64_MAX, dtype=np.int64)
        if labels is None or len(labels) == 0:
            return
        row_of = {int(x): i for i, x in enumerate(np.asarray(events.event_id))}
        if len(row_of) != self.n:
            raise ValueError("events: duplicate event_id")
        for eid, lab, lt in zip(labels.event_id.tolist(), labels.label.tolist(),
                                labels.label_time_ms.tolist()):
            if eid not in row_of:
                raise ValueError(f"label for unknown event_id {eid}")
            i = row_of[eid]
            if lab not in (0, 1):
                raise ValueError(f"label {lab} for event_id {eid}: must be 0 or 1")
            if lt < self.time[i]:
                raise ValueError(f"label time {lt} before event {eid}'s time {self.time[i]}")
            if self.label[i] >= 0 and self.label[i] != lab:
                raise ValueError(f"conflicting labels for event_id {eid}")
            self.label[i] = lab
            self.label_time[i] = min(int(self.label_time[i]), lt)

    # Columns by name: float64 values (NaN = missing) and int64 codes (-1 = absent / missing).
    def field_values(self, field: str) -> np.ndarray:
        if field == "amount":
            if not self.has_amount:
                raise ValueError("an amount feature on a schema without amount")
            return self.amount
        if field not in self.numeric_index:
            raise ValueError(f"unknown numeric field {field!r}")
        return self.numeric[:, self.numeric_index[field]]

    def categorical_codes(self, field: str) -> np.ndarray:
        if field not in self.categorical_index:
            raise ValueError(f"unknown categorical field {field!r}")
        return self.categorical[:, self.categorical_index[field]]

    def of_values(self, of: dict) -> np.ndarray:
        if set(of) == {"entity"}:
            if of["entity"] not in self.entity_index:
                raise ValueError(f"unknown entity {of['entity']!r}")
            return self.entity_id[:, self.entity_index[of["entity"]]]
        if set(of) == {"categorical"}:
            return self.categorical_codes(of["categorical"])
        raise ValueError(f"'of' must be {{'entity': name}} or {{'categorical': name}}, got {of!r}")

    def entity_column(self, name: str) -> int:
        if name not in self.entity_index:
            raise ValueError(f"unknown entity {name!r}")
        return self.entity_index[name]

    def local_ms(self, t: int) -> int:
        k = bisect.bisect_right(self.offset_from, t) - 1  # the last entry with from <= t
        return t + self.offset_seconds[k] * 1000


class _Histories:
    """Which stored events each entity of event i sees (the rules in the module docstring)."""

    def __init__(self, stream: _Stream, retention_ms: int, max_history_per_entity: int):
        if retention_ms < 0 or max_history_per_entity < 0:
            raise ValueError("retention_ms and max_history_per_entity must be >= 0")
        self.s = stream
        self.retention_ms = retention_ms
        self.max_history = max_history_per_entity
        n_types = stream.entity_id.shape[1]
        self.stored: list[dict[int, list[int]]] = [{} for _ in range(n_types)]  # ingest order
        self.watermark: int | None = None
        self.i = 0
        self._cache: dict[int, np.ndarray | None] = {}

    def begin(self, i: int) -> None:
        self.i = i
        self._cache = {}

    def of(self, e: int) -> np.ndarray | None:
        """Row indices (oldest first) of the history of event i's entity of type e; None if absent."""
        if e not in self._cache:
            self._cache[e] = self._compute(e)
        return self._cache[e]

    def _compute(self, e: int) -> np.ndarray | None:
        s, i = self.s, self.i
        x = int(s.entity_id[i, e])
        if x < 0:
            return None
        rows = self.stored[e].get(x, [])
        if self.max_history > 0:
            rows = rows[-self.max_history:]
        rows = np.asarray(rows, dtype=np.int64)
        times = s.time[rows]
        keep = times < s.time[i]
        if self.retention_ms > 0 and self.watermark is not None:
            keep &= times >= _clamp64(self.watermark - self.retention_ms)
        return rows[keep]

    def ingest(self, i: int) -> None:
        s = self.s
        for e in range(s.entity_id.shape[1]):
            x = int(s.entity_id[i, e])
            if x >= 0:
                self.stored[e].setdefault(x, []).append(i)
        t = int(s.time[i])
        self.watermark = t if self.watermark is None else max(self.watermark, t)


def _window(s: _Stream, rows: np.ndarray, t: int, window_ms: int, offset_ms: int) -> np.ndarray:
    """The rows with time in [t - offset - window, t - offset)."""
    lo = _clamp64(t - offset_ms - window_ms)
    hi = _clamp64(t - offset_ms)
    times = s.time[rows]
    return rows[(times >= lo) & (times < hi)]


_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
        "==": np.equal, "!=": np.not_equal}


def _passes(s: _Stream, flt: dict, rows: np.ndarray) -> np.ndarray:
    """Which of rows pass the filter; a missing value never passes."""
    if "in" in flt:
        codes = s.categorical_codes(flt["field"])[rows]
        wanted = np.asarray([int(c) for c in flt["in"]], dtype=np.int64)
        return (codes != -1) & np.isin(codes, wanted)
    op = flt.get("op")
    if op not in _OPS:
        raise ValueError(f"filter: unknown op {op!r}")
    values = s.field_values(flt["field"])[rows]
    return ~np.isnan(values) & _OPS[op](values, float(flt["value"]))


def _present(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def _f_window(s, h, f, i, t, max_scan):
    rows = h.of(s.entity_column(f["entity"]))
    if rows is None:
        return NAN
    w = _window(s, rows, t, int(f["window_ms"]), int(f.get("offset_ms", 0)))
    if f.get("filter") is not None:
        scanned = w[-max_scan:]
        w = scanned[_passes(s, f["filter"], scanned)]
    agg = f["agg"]
    if agg == "count":
        return float(len(w))
    values = _present(s.field_values(f["field"])[w])
    if agg == "sum":
        return _seq_sum(values)
    if len(values) == 0:
        return NAN
    if agg == "mean":
        return _mean(values)
    if agg == "min":
        return float(np.min(values))
    if agg == "max":
        return float(np.max(values))
    if agg == "std":
        return NAN if len(values) < 2 else _sample_std(values)
    raise ValueError(f"window: unknown agg {agg!r}")


def _f_time_since_last(s, h, f, i, t, max_scan):
    rows = h.of(s.entity_column(f["entity"]))
    if rows is None or len(rows) == 0:
        return NAN
    return float(t - int(s.time[rows[-1]])) / 1000.0


def _f_amount_vs_history(s, h, f, i, t, max_scan):
    rows = h.of(s.entity_column(f["entity"]))
    column = s.field_values(f["field"])
    value = float(column[i])
    if rows is None or math.isnan(value):
        return NAN
    window_ms = int(f.get("window_ms", 0))
    if window_ms > 0:
        rows = _window(s, rows, t, window_ms, int(f.get("offset_ms", 0)))
    values = _present(column[rows])
    stat = f["stat"]
    if stat == "ratio_to_mean":
        if len(values) == 0:
            return NAN
        mean = _mean(values)
        return NAN if mean == 0 else float(np.float64(value) / np.float64(mean))
    if stat == "zscore":
        if len(values) < 2:
            return NAN
        mean = _mean(values)
        std = _sample_std(values)
        if std <= MIN_REL_STD * abs(mean):
            return NAN
        return (value - mean) / std
    raise ValueError(f"amount_vs_history: unknown stat {stat!r}")


def _f_distinct(s, h, f, i, t, max_scan):
    rows = h.of(s.entity_column(f["entity"]))
    if rows is None:
        return NAN
    w = _window(s, rows, t, int(f["window_ms"]), int(f.get("offset_ms", 0)))[-max_scan:]
    values = s.of_values(f["of"])[w]
    return float(len(set(values[values != -1].tolist())))


def _f_novelty(s, h, f, i, t, max_scan):
    rows = h.of(s.entity_column(f["entity"]))
    of = s.of_values(f["of"])
    value = int(of[i])
    if rows is None or value == -1 or len(rows) == 0:
        return NAN
    return 0.0 if np.any(of[rows[-max_scan:]] == value) else 1.0


def _f_changed(s, h, f, i, t, max_scan):
    rows = h.of(s.entity_column(f["entity"]))
    if rows is None or len(rows) == 0:
        return NAN
    of = s.of_values(f["of"])
    return 1.0 if int(of[rows[-1]]) != int(of[i]) else 0.0


def _f_label(s, h, f, i, t, max_scan):
    rows = h.of(s.entity_column(f["entity"]))
    if rows is None:
        return NAN
    scanned = _window(s, rows, t, int(f["window_ms"]), int(f.get("offset_ms", 0)))[-max_scan:]
    known = (s.label[scanned] >= 0) & (s.label_time[scanned] < t)
    fraud = int(np.count_nonzero(known & (s.label[scanned] == 1)))
    agg = f["agg"]
    if agg == "fraud_count":
        return float(fraud)
    if agg == "labelled_count":
        return float(np.count_nonzero(known))
    if agg == "fraud_rate":
        return NAN if len(scanned) == 0 else fraud / len(scanned)
    raise ValueError(f"label: unknown agg {agg!r}")


def _f_amount(s, h, f, i, t, max_scan):
    s.field_values("amount")  # refuses a schema without amount
    return float(s.amount[i])


def _f_log_amount(s, h, f, i, t, max_scan):
    s.field_values("amount")
    return float(np.log1p(s.amount[i]))


def _f_numeric(s, h, f, i, t, max_scan):
    if f["field"] not in s.numeric_index:
        raise ValueError(f"unknown numeric field {f['field']!r}")
    return float(s.field_values(f["field"])[i])


def _f_categorical(s, h, f, i, t, max_scan):
    code = int(s.categorical_codes(f["field"])[i])
    if code == -1:
        return NAN
    vocabulary = f.get("vocabulary")
    if vocabulary is None:
        return float(code)
    vocabulary = [int(c) for c in vocabulary]
    return float(vocabulary.index(code)) if code in vocabulary else float(len(vocabulary))


def _f_calendar(s, h, f, i, t, max_scan):
    local = s.local_ms(t)
    hour = (local // MS_PER_HOUR) % 24
    day_of_week = (local // MS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    part = f["part"]
    if part == "hour":
        return float(hour)
    if part == "day_of_week":
        return float(day_of_week)
    if part == "weekend":
        return 1.0 if day_of_week >= 5 else 0.0
    if part == "night":
        return 1.0 if hour >= 22 or hour < 6 else 0.0
    raise ValueError(f"calendar: unknown part {part!r}")


_KINDS = {
    "amount": _f_amount, "log_amount": _f_log_amount, "numeric": _f_numeric,
    "categorical": _f_categorical, "calendar": _f_calendar, "window": _f_window,
    "time_since_last": _f_time_since_last, "amount_vs_history": _f_amount_vs_history,
    "distinct": _f_distinct, "novelty": _f_novelty, "changed": _f_changed, "label": _f_label,
}


def _check_feature(f: dict) -> None:
    if f.get("kind") not in _KINDS:
        raise ValueError(f"feature {f.get('name')!r}: unknown kind {f.get('kind')!r}")
    if f["kind"] in ("window", "distinct", "label") and int(f["window_ms"]) <= 0:
        raise ValueError(f"feature {f.get('name')!r}: window_ms must be > 0")
    if int(f.get("offset_ms", 0)) < 0 or int(f.get("window_ms", 0)) < 0:
        raise ValueError(f"feature {f.get('name')!r}: negative duration")
    if f["kind"] == "window" and f["agg"] != "count" and "field" not in f:
        raise ValueError(f"feature {f.get('name')!r}: window {f['agg']} needs a field")


def reference_features(schema_json: dict, spec_json: dict, events: EventArrays,
                       labels: LabelArrays | None = None, *, retention_ms: int = 0,
                       max_history_per_entity: int = 0) -> np.ndarray:
    """The features of each event of the stream, computed just before it is ingested (see the
    module docstring for every rule): float32 [len(events), len(spec_json["features"])]."""
    stream = _Stream(schema_json, events, labels)
    features = list(spec_json["features"])
    for f in features:
        _check_feature(f)
    spec_scan = int(spec_json.get("max_scan", DEFAULT_MAX_SCAN))
    scans = [int(f.get("max_scan", spec_scan)) for f in features]
    if any(k < 1 for k in scans):
        raise ValueError("max_scan must be >= 1")
    kinds = [_KINDS[f["kind"]] for f in features]
    histories = _Histories(stream, int(retention_ms), int(max_history_per_entity))
    out = np.empty((stream.n, len(features)), dtype=np.float64)
    with np.errstate(all="ignore"):
        for i in range(stream.n):
            histories.begin(i)
            t = int(stream.time[i])
            for k, (f, compute, max_scan) in enumerate(zip(features, kinds, scans)):
                out[i, k] = compute(stream, histories, f, i, t, max_scan)
            histories.ingest(i)
        limit = float(np.finfo(np.float32).max)
        return np.clip(out, -limit, limit).astype(np.float32)
