"""Random schemas, feature specs, event streams and labels for the feature-engine tests, in the JSON
forms of export/SCHEMA.md and the columnar layout of libfraud.events. Everything is a deterministic
function of the NumPy Generator passed in (`np.random.default_rng(seed)`).

The streams are built to reach the edges: tied times and bursts, gaps of exactly a window length,
1 ms windows and multi-day ones, absent optional entities, small id pools (long histories) next to
large hashed-looking ids, missing numerics, values 0, -0.0, 1e17 and 1e200 and negative ones,
categorical codes near 2**63, labels known exactly at a later event's time or 1 ms before it, and
labels far in the future. Times are non-decreasing (the store refuses anything older than its
watermark).

Extreme values have a sign per numeric field ("profiles"), so no window sums +1e17 with -1e17:
those sums would depend on summation order, which SCHEMA.md does not pin down.
"""

from __future__ import annotations

import numpy as np

from libfraud.events import EventArrays, LabelArrays

__all__ = ["random_schema", "random_spec", "random_events", "random_labels", "random_case",
           "BASE_TIME_MS", "SMALL_CODES", "LARGE_CODES"]

INT64_MIN = -(2 ** 63)
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
#: Streams mostly start near here (2023-11-14); the random time zones put their transitions after it.
BASE_TIME_MS = 1_700_000_000_000
#: A stream that starts before 1970 (calendar parts must floor, not truncate).
EARLY_TIME_MS = -86_400_000 * 400 - 12_345
#: Categorical codes: a small alphabet plus a few large (hashed-looking) ones.
SMALL_CODES = list(range(6))
#: 2**60 + 2**36 + 1 tells float32(double(code)) (SCHEMA.md: computed in double) from float32(code).
LARGE_CODES = [2 ** 62 + 12_345, 2 ** 63 - 1, 1_234_567_890_123_456_789, 16_777_217,
               2 ** 60 + 2 ** 36 + 1]

_ENTITY_NAMES = ["card", "customer", "terminal", "device", "merchant", "ip", "account", "email",
                 "phone", "address"]
_NUMERIC_NAMES = ["risk", "score", "velocity", "balance", "age_days"]
_CATEGORICAL_NAMES = ["channel", "country", "mcc", "currency", "device_type"]
_OFFSET_SECONDS = [0, 3600, 7200, -18000, -14400, 19800, 20700, -34200, 46800, -43200, 50400]
_NUMERIC_PROFILES = ["normal", "positive_extreme", "negative_extreme", "integer"]


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


# --- schema -----------------------------------------------------------------------------------

def _utc_offsets(rng: np.random.Generator) -> list[list[int]]:
    if rng.random() < 0.5:
        return [[INT64_MIN, 0]]
    table = [[INT64_MIN, int(_choice(rng, _OFFSET_SECONDS))]]
    if rng.random() < 0.3:  # a transition before 1970, for the early streams
        table.append([EARLY_TIME_MS + int(rng.integers(0, 30 * DAY)), int(_choice(rng, _OFFSET_SECONDS))])
    # Transitions inside the streams' usual span, some on round hours (a tie with an event's time
    # then exercises "the last entry with utc_ms_from <= t").
    starts = set()
    for _ in range(int(rng.integers(1, 6))):
        at = BASE_TIME_MS + int(rng.integers(0, 20 * DAY))
        if rng.random() < 0.5:
            at -= at % HOUR
        starts.add(at)
    for at in sorted(starts):
        table.append([at, int(_choice(rng, _OFFSET_SECONDS))])
    return table


def random_schema(rng: np.random.Generator, n_entities: int | None = None) -> dict:
    """A schema (SCHEMA.md's JSON): 1-8 entity types (the first required most of the time, the
    others often optional), 0-3 numeric, 0-3 categorical, with or without amount, UTC or a random
    offset table."""
    n_e = int(rng.integers(1, 9)) if n_entities is None else int(n_entities)
    if not 1 <= n_e <= len(_ENTITY_NAMES):
        raise ValueError(f"n_entities: 1..{len(_ENTITY_NAMES)}, got {n_e}")
    names = [str(x) for x in rng.choice(_ENTITY_NAMES, size=n_e, replace=False)]
    required = [bool(rng.random() < (0.85 if k == 0 else 0.4)) for k in range(n_e)]
    numeric = [str(x) for x in rng.choice(_NUMERIC_NAMES, size=int(rng.integers(0, 4)), replace=False)]
    categorical = [str(x) for x in
                   rng.choice(_CATEGORICAL_NAMES, size=int(rng.integers(0, 4)), replace=False)]
    utc_offsets = _utc_offsets(rng)
    return {
        "format": "libfraud-schema", "version": 1, "name": "random",
        "event_id": {"column": "EVENT_ID", "ids": "int"},
        "time": {"column": "TIME", "unit": "ms",
                 "timezone": "UTC" if utc_offsets == [[INT64_MIN, 0]] else "Test/Random",
                 "utc_offsets": utc_offsets},
        "amount": {"column": "AMOUNT"} if rng.random() < 0.8 else None,
        "entities": [{"name": n, "column": n.upper(), "ids": "int", "required": r}
                     for n, r in zip(names, required)],
        "numeric": [{"name": n, "column": n.upper()} for n in numeric],
        "categorical": [{"name": n, "column": n.upper(), "codes": "int"} for n in categorical],
        "label": {"column": "LABEL", "time_column": "LABEL_TIME", "delay_ms": 7 * DAY},
    }


# --- spec -------------------------------------------------------------------------------------

_WINDOWS = [1, 2, 5, 1000, MINUTE, 10 * MINUTE, HOUR, DAY, 2 * DAY, 3 * DAY, 7 * DAY, 30 * DAY]
_OFFSETS = [1, 1000, HOUR, DAY, 7 * DAY]


def _window_ms(rng) -> int:
    if rng.random() < 0.15:
        return int(rng.integers(1, 3 * DAY))
    return int(_choice(rng, _WINDOWS))


def _offset_ms(rng) -> int:
    r = rng.random()
    if r < 0.55:
        return 0
    if r < 0.9:
        return int(_choice(rng, _OFFSETS))
    return int(rng.integers(1, 2 * DAY))


def _fields(schema) -> list[str]:
    return (["amount"] if schema.get("amount") is not None else []) + \
        [x["name"] for x in schema["numeric"]]


def _codes_subset(rng, k_max=4) -> list[int]:
    """Distinct codes, mostly ones the streams use (the small ones first), some never used."""
    k = int(rng.integers(1, k_max + 1))
    codes: list[int] = []
    while len(codes) < k:
        r = rng.random()
        c = int(_choice(rng, SMALL_CODES[:3])) if r < 0.6 else \
            int(_choice(rng, SMALL_CODES + LARGE_CODES + [99]))  # 99 never occurs in the streams
        if c not in codes:
            codes.append(c)
    return codes


def _filter(rng, schema) -> dict | None:
    options = []
    if schema["categorical"]:
        options.append("in")
    if _fields(schema):
        options.append("op")
    if not options:
        return None
    if _choice(rng, options) == "in":
        return {"field": _choice(rng, schema["categorical"])["name"], "in": _codes_subset(rng)}
    return {"field": _choice(rng, _fields(schema)),
            "op": _choice(rng, ["<", "<=", ">", ">=", "==", "!="]),
            "value": float(_choice(rng, [0.0, 1.0, -1.0, 2.0, 0.5, 10.0, 100.0, 1e17]))}


def _of(rng, schema, entity: str) -> dict | None:
    options = [{"entity": e["name"]} for e in schema["entities"] if e["name"] != entity]
    options += [{"categorical": c["name"]} for c in schema["categorical"]]
    return _choice(rng, options) if options else None


def _applicable_kinds(schema) -> list[str]:
    kinds = ["calendar", "window", "time_since_last", "label"]
    if schema.get("amount") is not None:
        kinds += ["amount", "log_amount"]
    if schema["numeric"]:
        kinds.append("numeric")
    if schema["categorical"]:
        kinds.append("categorical")
    if _fields(schema):
        kinds.append("amount_vs_history")
    if len(schema["entities"]) > 1 or schema["categorical"]:
        kinds += ["distinct", "novelty", "changed"]
    return sorted(kinds)


def _feature(rng, schema, kind: str) -> dict:
    entity = _choice(rng, schema["entities"])["name"]
    f: dict = {"kind": kind}
    if kind == "numeric":
        f["field"] = _choice(rng, schema["numeric"])["name"]
    elif kind == "categorical":
        f["field"] = _choice(rng, schema["categorical"])["name"]
        if rng.random() < 0.5:
            f["vocabulary"] = _codes_subset(rng, k_max=5)
    elif kind == "calendar":
        f["part"] = _choice(rng, ["hour", "day_of_week", "weekend", "night"])
    elif kind == "window":
        aggs = ["count", "sum", "mean", "std", "min", "max"] if _fields(schema) else ["count"]
        f.update(entity=entity, agg=_choice(rng, aggs))
        if f["agg"] != "count":
            f["field"] = _choice(rng, _fields(schema))
        f.update(window_ms=_window_ms(rng), offset_ms=_offset_ms(rng))
        if rng.random() < 0.35:
            flt = _filter(rng, schema)
            if flt is not None:
                f["filter"] = flt
    elif kind == "time_since_last":
        f["entity"] = entity
    elif kind == "amount_vs_history":
        f.update(entity=entity, field=_choice(rng, _fields(schema)),
                 stat=_choice(rng, ["ratio_to_mean", "zscore"]),
                 window_ms=0 if rng.random() < 0.5 else _window_ms(rng))
    elif kind in ("distinct", "novelty", "changed"):
        f.update(entity=entity, of=_of(rng, schema, entity))
        if kind == "distinct":
            f["window_ms"] = _window_ms(rng)
    elif kind == "label":
        f.update(entity=entity, agg=_choice(rng, ["fraud_count", "fraud_rate", "labelled_count"]),
                 window_ms=_window_ms(rng), offset_ms=_offset_ms(rng))
    if kind in ("window", "distinct", "novelty", "label") and rng.random() < 0.2:
        f["max_scan"] = int(_choice(rng, [1, 2, 3, 7, 50]))
    return f


_KIND_WEIGHTS = {"window": 5.0, "label": 2.5, "amount_vs_history": 2.0, "distinct": 1.5,
                 "novelty": 1.0, "changed": 1.0, "time_since_last": 1.0, "calendar": 0.7,
                 "amount": 0.3, "log_amount": 0.3, "numeric": 0.5, "categorical": 0.7}


def random_spec(rng: np.random.Generator, schema: dict, n_features: int | None = None) -> dict:
    """A spec (SCHEMA.md's JSON) with every kind the schema allows at least once, then random ones
    (default 10-40 in all); explicit unique names; the spec's max_scan sometimes small."""
    kinds = _applicable_kinds(schema)
    total = int(rng.integers(10, 41)) if n_features is None else int(n_features)
    weights = np.asarray([_KIND_WEIGHTS.get(k, 1.0) for k in kinds])
    extra = rng.choice(len(kinds), size=max(0, total - len(kinds)), p=weights / weights.sum())
    chosen = list(kinds) + [kinds[j] for j in extra.tolist()]
    chosen = [chosen[j] for j in rng.permutation(len(chosen))]
    features = []
    for k, kind in enumerate(chosen):
        f = _feature(rng, schema, kind)
        f = {"name": f"f{k:02d}_{kind}", **f}
        features.append(f)
    max_scan = int(_choice(rng, [1024, 1024, 1024, 64, 5, 2, 1]))
    return {"format": "libfraud-features", "version": 1, "max_scan": max_scan, "features": features}


# --- events -----------------------------------------------------------------------------------

def _gaps(rng, n: int) -> np.ndarray:
    """Non-negative gaps: ties, bursts of ties, 1 ms, round durations (window edges), long quiet."""
    gaps = np.empty(n, dtype=np.int64)
    k = 0
    while k < n:
        r = rng.random()
        if r < 0.06:  # a burst: several events at one time
            burst = int(rng.integers(2, 12))
            gaps[k:k + burst] = 0
            k += burst
            continue
        if r < 0.25:
            g = 0
        elif r < 0.35:
            g = 1
        elif r < 0.45:
            g = int(_choice(rng, [2, 5, SECOND, MINUTE, 10 * MINUTE, HOUR, DAY]))
        elif r < 0.65:
            g = int(rng.integers(0, 2 * SECOND))
        elif r < 0.88:
            g = int(rng.exponential(5 * MINUTE))
        elif r < 0.97:
            g = int(rng.exponential(3 * HOUR))
        else:
            g = int(rng.integers(1, 10 * DAY))
        gaps[k] = g
        k += 1
    return gaps[:n]


def _entity_column(rng, n: int, required: bool) -> np.ndarray:
    pool_size = int(_choice(rng, [1, 2, 3, 5, 12, 40, 300]))
    if rng.random() < 0.5:
        pool = np.arange(pool_size, dtype=np.int64)
    else:  # large ids, including the largest int64
        pool = rng.integers(0, 2 ** 63 - 1, size=pool_size, dtype=np.int64)
        pool[0] = 2 ** 63 - 1
    # Skewed use of the pool: a few ids carry most events (long histories).
    weights = 1.0 / (1.0 + np.arange(pool_size)) ** float(rng.uniform(0.0, 1.5))
    ids = pool[rng.choice(pool_size, size=n, p=weights / weights.sum())]
    if not required:
        absent_rate = float(_choice(rng, [0.0, 0.1, 0.3, 0.6, 0.95]))
        ids[rng.random(n) < absent_rate] = -1
    return ids


def _amounts(rng, n: int) -> np.ndarray:
    a = np.round(rng.lognormal(3.0, 1.5, size=n), 2)
    r = rng.random(n)
    a[r < 0.04] = 0.0
    a[(r >= 0.04) & (r < 0.06)] = np.round(rng.uniform(0, 3, size=int(np.sum((r >= 0.04) & (r < 0.06)))))
    a[(r >= 0.06) & (r < 0.065)] = 1e17
    a[(r >= 0.065) & (r < 0.068)] = 1e200
    return a


def _numeric_column(rng, n: int) -> np.ndarray:
    profile = _choice(rng, _NUMERIC_PROFILES)
    r = rng.random(n)
    if profile == "normal":
        x = np.round(rng.normal(0.0, 10.0, size=n), 3)
        x[r < 0.03] = -0.0
    elif profile == "integer":
        x = rng.integers(-1, 3, size=n).astype(np.float64)
    else:
        sign = 1.0 if profile == "positive_extreme" else -1.0
        x = sign * np.round(rng.lognormal(1.0, 2.0, size=n), 4)
        x[r < 0.04] = 0.0
        x[(r >= 0.04) & (r < 0.06)] = sign * 1e17
        x[(r >= 0.06) & (r < 0.075)] = sign * 1e200
        x[(r >= 0.075) & (r < 0.09)] = sign * 1.0  # runs of equal values
    missing_rate = float(_choice(rng, [0.0, 0.05, 0.3, 0.8]))
    x[rng.random(n) < missing_rate] = np.nan
    return x


def _categorical_column(rng, n: int) -> np.ndarray:
    k = int(rng.integers(1, len(SMALL_CODES) + 1))
    pool = SMALL_CODES[:k] + ([int(_choice(rng, LARGE_CODES))] if rng.random() < 0.5 else [])
    codes = np.asarray(pool, dtype=np.int64)[rng.integers(0, len(pool), size=n)]
    missing_rate = float(_choice(rng, [0.0, 0.05, 0.3]))
    codes[rng.random(n) < missing_rate] = -1
    return codes


def random_events(rng: np.random.Generator, schema: dict, n: int) -> EventArrays:
    """n events in time order (non-decreasing; see the module docstring)."""
    start = EARLY_TIME_MS if rng.random() < 0.12 else BASE_TIME_MS + int(rng.integers(0, DAY))
    time_ms = start + np.cumsum(_gaps(rng, n))
    event_id = rng.choice(2 ** 62, size=n, replace=False).astype(np.int64)
    if n > 0 and rng.random() < 0.5:
        event_id[0] = 0
    amount = _amounts(rng, n) if schema.get("amount") is not None else np.zeros(n)
    entity_id = np.stack([_entity_column(rng, n, bool(e.get("required", True)))
                          for e in schema["entities"]], axis=1).reshape(n, len(schema["entities"]))
    numeric = np.stack([_numeric_column(rng, n) for _ in schema["numeric"]],
                       axis=1).reshape(n, len(schema["numeric"])) if schema["numeric"] \
        else np.zeros((n, 0))
    categorical = np.stack([_categorical_column(rng, n) for _ in schema["categorical"]],
                           axis=1).reshape(n, len(schema["categorical"])) if schema["categorical"] \
        else np.zeros((n, 0), np.int64)
    return EventArrays.make(event_id, time_ms, amount, entity_id, numeric, categorical)


def random_labels(rng: np.random.Generator, events: EventArrays) -> LabelArrays:
    """Labels for a random subset of the events that are in some history (at least one entity
    present), in a shuffled order. A label's time is at its event (0 ms delay), 1 ms after, exactly
    at a later event's time, 1 ms before a later event's time (never before its own event), some
    hours later, or far after the last event."""
    n = len(events)
    times = np.asarray(events.time_ms)
    candidates = np.flatnonzero(np.any(np.asarray(events.entity_id) >= 0, axis=1)) if n else \
        np.zeros(0, np.int64)
    rate = float(rng.uniform(0.2, 0.95))
    chosen = candidates[rng.random(len(candidates)) < rate]
    fraud_rate = float(rng.uniform(0.05, 0.6))
    label = (rng.random(len(chosen)) < fraud_rate).astype(np.int8)
    label_time = np.empty(len(chosen), dtype=np.int64)
    last = int(times[-1]) if n else 0
    for k, i in enumerate(chosen.tolist()):
        t = int(times[i])
        r = rng.random()
        later = int(times[int(rng.integers(i, n))])
        if r < 0.15:
            lt = t
        elif r < 0.22:
            lt = t + 1
        elif r < 0.47:
            lt = later
        elif r < 0.57:
            lt = max(t, later - 1)
        elif r < 0.82:
            lt = t + int(rng.exponential(2 * HOUR))
        else:
            lt = last + int(rng.integers(1, 30 * DAY))
        label_time[k] = lt
    order = rng.permutation(len(chosen))
    return LabelArrays.make(np.asarray(events.event_id)[chosen][order], label[order],
                            label_time[order])


def random_case(seed: int, n: int | None = None, n_range=(300, 2000)):
    """(schema, spec, events, labels) for one seed."""
    rng = np.random.default_rng(seed)
    schema = random_schema(rng)
    spec = random_spec(rng, schema)
    n = int(rng.integers(n_range[0], n_range[1] + 1)) if n is None else int(n)
    events = random_events(rng, schema, n)
    labels = random_labels(rng, events)
    return schema, spec, events, labels
