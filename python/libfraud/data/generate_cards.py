"""Seeded synthetic card transactions with two entities (customer, terminal), day by day.

The shape of the public "Fraud Detection Handbook" simulator (Le Borgne et al., "Reproducible
Machine Learning for Credit Card Fraud Detection", chapter 3), the two-entity shape the ``cards``
feature preset is made for, plus the kind of extra columns a user's data has:

- Customers: a location (x, y uniform in [0, 100]), a spending profile (mean amount uniform in
  [5, 100], std half of it) and an activity (mean transactions per day uniform in [0, 4]).
- Terminals: a location and a channel fixed per terminal: 75% ``pos``, 20% ``ecom``, 5% ``atm``.
- Each customer uses the terminals within a radius, picked uniformly (the radius is 5 for the
  simulator's 10 000 terminals and scales as 1/sqrt(n_terminals), so a customer has ~80 nearby
  terminals at any population size; one with none uses the nearest).
- Each day a customer makes Poisson(activity) transactions, at a time ~ normal(noon, 20 000 s)
  (draws outside the day are dropped); amount ~ normal(mean, std), a negative draw replaced by a
  uniform in [0, 2 * mean], rounded to cents. ATM amounts are rounded to multiples of 20 (at
  least 20). Account verifications are legitimate 0.00 amounts (3% of ecom, 0.3% of pos rows).
- ``RISK_SCORE``: an upstream vendor score in [0, 1], weakly informative (beta(2, 5) on legitimate
  rows, beta(2.6, 4) on fraud), missing (NaN) on 8% of rows.

Fraud scenarios (``TX_FRAUD_SCENARIO``; a later one overrides an earlier one on the same row):

1. Any amount > 220 is fraud (a sharp rule: it holds exactly, also for scenario 2/3 rows).
2. Compromised terminals: each day a few random terminals are compromised; all their
   transactions from that day on for 28 days (that day included) are fraud.
3. Compromised customers: each day a few random customers are compromised; in the 14 days from
   that day on, each of their non-zero transactions is, with probability 1/3, multiplied by 5
   (rounded to cents) and fraud.

The simulator's intensities (2 terminals and 3 customers a day for 10 000 terminals and 5 000
customers) scale with the populations and with ``fraud_rate`` (whose default, 0.008, is about the
simulator's own): a share of rows of ~0.56% * s from scenario 2 and ~0.28% * s from scenario 3,
with ``s`` chosen so that, with the expected share from rule 1 (~0.1-0.2%, not adjustable), the
fraud rate is about ``fraud_rate``. Compromise counts accumulate deterministically (a day gets
the whole part of its running expected count) and start before day 0, so the rate is stationary
from the first day.

Populations default to ``n / 240`` customers and twice as many terminals: about 120 days of data.
Determinism: the world comes from ``(seed, 0)``; day ``d``'s transactions from ``(seed, 1, d)``,
its new compromises from ``(seed, 2, d)``; rows are sorted within each day, days follow each other,
so any ``chunk_size`` yields the same rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["CARD_COLUMNS", "CHANNELS", "DEFAULT_CARDS_START", "generate_card_transactions",
           "write_card_transactions"]

DEFAULT_CARDS_START = "2026-01-01"
"""Midnight UTC (naive timestamps are UTC) of the first day."""

CHANNELS: tuple[str, ...] = ("pos", "ecom", "atm")
"""Values of the CHANNEL column."""

CARD_COLUMNS: tuple[str, ...] = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID",
                                 "TX_AMOUNT", "TX_FRAUD", "TX_FRAUD_SCENARIO", "CHANNEL",
                                 "RISK_SCORE")
"""Column order of the frames (and files)."""

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How TX_DATETIME is written in CSV."""

_DAY_S = 86_400
_SHARP_RULE = 220.0
_TERMINAL_DAYS = 28
_CUSTOMER_DAYS = 14
_CUSTOMER_SHARE = 1.0 / 3.0
_CUSTOMER_FACTOR = 5.0
# The simulator's daily compromises per terminal and per customer, and the shares of rows they
# make (scenario 2: 2/10000 * 28; scenario 3: 3/5000 * 14 / 3).
_TERMINAL_PER_DAY = 2.0 / 10_000
_CUSTOMER_PER_DAY = 3.0 / 5_000
_UNIT_SHARE = _TERMINAL_PER_DAY * _TERMINAL_DAYS + _CUSTOMER_PER_DAY * _CUSTOMER_DAYS * _CUSTOMER_SHARE
_CHANNEL_P = np.array([0.75, 0.20, 0.05])
_POS, _ECOM, _ATM = range(3)
_VERIFY_P = np.array([0.003, 0.03, 0.0])  # 0.00 account verifications, by channel
_NAN_P = 0.08
_TIME_SD_S = 20_000
_CHANNEL_ARRAY = np.array(CHANNELS, dtype=object)


def _norm_sf(z: np.ndarray) -> np.ndarray:
    erfc = np.frompyfunc(math.erfc, 1, 1)
    return erfc(np.asarray(z, np.float64) / math.sqrt(2.0)).astype(np.float64) / 2.0


def _available(cx, cy, tx, ty, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr, terminals) of the terminals within ``radius`` of each customer (grid buckets)."""
    nc = len(cx)
    ncell = max(1, int(math.ceil(100.0 / radius)))
    tcell = np.minimum((tx / radius).astype(np.int64), ncell - 1) * ncell + \
        np.minimum((ty / radius).astype(np.int64), ncell - 1)
    order = np.argsort(tcell, kind="stable")
    keys = tcell[order]
    ccx = np.minimum((cx / radius).astype(np.int64), ncell - 1)
    ccy = np.minimum((cy / radius).astype(np.int64), ncell - 1)
    custs, terms = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            nx, ny = ccx + dx, ccy + dy
            ok = (nx >= 0) & (nx < ncell) & (ny >= 0) & (ny < ncell)
            key = nx * ncell + ny
            lo = np.searchsorted(keys, key, "left")
            cnt = np.where(ok, np.searchsorted(keys, key, "right") - lo, 0)
            total = int(cnt.sum())
            cust = np.repeat(np.arange(nc), cnt)
            within = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            term = order[np.repeat(lo, cnt) + within]
            near = (tx[term] - cx[cust]) ** 2 + (ty[term] - cy[cust]) ** 2 <= radius * radius
            custs.append(cust[near])
            terms.append(term[near])
    cust = np.concatenate(custs)
    term = np.concatenate(terms)
    lonely = np.setdiff1d(np.arange(nc), cust)
    if len(lonely):  # nobody within the radius: the nearest terminal
        d2 = (tx[None, :] - cx[lonely, None]) ** 2 + (ty[None, :] - cy[lonely, None]) ** 2
        cust = np.concatenate([cust, lonely])
        term = np.concatenate([term, np.argmin(d2, axis=1)])
    order = np.lexsort((term, cust))
    cust, term = cust[order], term[order]
    return np.searchsorted(cust, np.arange(nc + 1)), term


class _CardWorld:
    def __init__(self, seed: int, fraud_rate: float, n_customers: int, n_terminals: int):
        rng = np.random.default_rng([seed, 0])
        self.seed = seed
        nc, nt = n_customers, n_terminals
        self.nc, self.nt = nc, nt
        cx, cy = rng.uniform(0, 100, size=nc), rng.uniform(0, 100, size=nc)
        self.mean_amount = rng.uniform(5, 100, size=nc)
        self.std_amount = self.mean_amount / 2
        self.mean_tx = rng.uniform(0, 4, size=nc)
        tx, ty = rng.uniform(0, 100, size=nt), rng.uniform(0, 100, size=nt)
        self.channel = rng.choice(len(CHANNELS), size=nt, p=_CHANNEL_P)
        radius = min(5.0 * math.sqrt(10_000 / nt), 150.0)
        self.ptr, self.terms = _available(cx, cy, tx, ty, radius)
        self.navail = np.diff(self.ptr)

        # Intensity: what rule 1 does not already make, from scenarios 2 and 3.
        w = self.mean_tx / max(self.mean_tx.sum(), 1e-12)
        rule1 = float((w * _norm_sf((_SHARP_RULE + 0.005 - self.mean_amount) / self.std_amount)).sum())
        scale = max(0.0, fraud_rate - rule1) / _UNIT_SHARE
        self.term_per_day = _TERMINAL_PER_DAY * nt * scale
        self.cust_per_day = _CUSTOMER_PER_DAY * nc * scale
        # Compromised until (exclusive day index); compromises from before day 0 are running.
        self.term_until = np.full(nt, -(1 << 40), np.int64)
        self.cust_until = np.full(nc, -(1 << 40), np.int64)
        for d in range(-_TERMINAL_DAYS + 1, 0):
            self._compromise(d)

    def _count(self, per_day: float, d: int) -> int:
        # Offset so that day -27 is the first: the running expected count's whole part.
        k = d + _TERMINAL_DAYS
        return int(math.floor(per_day * (k + 1) + 0.5) - math.floor(per_day * k + 0.5))

    def _compromise(self, d: int) -> None:
        rng = np.random.default_rng([self.seed, 2, d + _TERMINAL_DAYS])
        kt = min(self._count(self.term_per_day, d), self.nt)
        new_t = rng.choice(self.nt, size=kt, replace=False)
        self.term_until[new_t] = np.maximum(self.term_until[new_t], d + _TERMINAL_DAYS)
        if d > -_CUSTOMER_DAYS:
            kc = min(self._count(self.cust_per_day, d), self.nc)
            new_c = rng.choice(self.nc, size=kc, replace=False)
            self.cust_until[new_c] = np.maximum(self.cust_until[new_c], d + _CUSTOMER_DAYS)

    def day(self, d: int) -> dict[str, np.ndarray]:
        self._compromise(d)
        rng = np.random.default_rng([self.seed, 1, d])
        cnt = rng.poisson(self.mean_tx)
        cust = np.repeat(np.arange(self.nc), cnt)
        m = len(cust)
        secs = np.round(rng.normal(_DAY_S / 2, _TIME_SD_S, size=m))
        amount = rng.normal(self.mean_amount[cust], self.std_amount[cust])
        neg = amount < 0
        amount[neg] = rng.uniform(0, 2 * self.mean_amount[cust[neg]])
        pick = (rng.random(m) * self.navail[cust]).astype(np.int64)
        term = self.terms[self.ptr[cust] + pick]
        chan = self.channel[term]
        atm = chan == _ATM
        amount[atm] = np.maximum(20.0, np.round(amount[atm] / 20.0) * 20.0)
        amount = np.round(amount, 2)
        amount[rng.random(m) < _VERIFY_P[chan]] = 0.0

        scenario = np.zeros(m, np.int8)
        scenario[amount > _SHARP_RULE] = 1
        scenario[self.term_until[term] > d] = 2
        hit = (self.cust_until[cust] > d) & (amount > 0) & (rng.random(m) < _CUSTOMER_SHARE)
        amount[hit] = np.round(amount[hit] * _CUSTOMER_FACTOR, 2)
        scenario[hit] = 3
        fraud = scenario > 0
        risk = np.where(fraud, rng.beta(2.6, 4.0, size=m), rng.beta(2.0, 5.0, size=m))
        risk = np.round(risk, 3)
        risk[rng.random(m) < _NAN_P] = np.nan

        keep = (secs >= 0) & (secs < _DAY_S)
        order = np.flatnonzero(keep)[np.argsort(secs[keep], kind="stable")]
        return dict(t=(d * _DAY_S + secs[order]).astype(np.int64), cust=cust[order], term=term[order],
                    amount=amount[order], fraud=fraud[order].astype(np.int8),
                    scenario=scenario[order], chan=chan[order], risk=risk[order])


def _frame(ev: dict[str, np.ndarray], first_id: int, start_s: int) -> pd.DataFrame:
    m = len(ev["t"])
    when = ((start_s + ev["t"]) * 1_000_000_000).astype("datetime64[ns]")
    return pd.DataFrame({
        "TRANSACTION_ID": np.arange(first_id, first_id + m, dtype=np.int64),
        "TX_DATETIME": when,
        "CUSTOMER_ID": ev["cust"].astype(np.int64),
        "TERMINAL_ID": ev["term"].astype(np.int64),
        "TX_AMOUNT": ev["amount"].astype(np.float64),
        "TX_FRAUD": ev["fraud"].astype(np.int8),
        "TX_FRAUD_SCENARIO": ev["scenario"].astype(np.int8),
        "CHANNEL": pd.Series(_CHANNEL_ARRAY[ev["chan"]], dtype="str"),
        "RISK_SCORE": ev["risk"].astype(np.float64),
    })


_EMPTY = dict(t=np.zeros(0, np.int64), cust=np.zeros(0, np.int64), term=np.zeros(0, np.int64),
              amount=np.zeros(0), fraud=np.zeros(0, np.int8), scenario=np.zeros(0, np.int8),
              chan=np.zeros(0, np.int64), risk=np.zeros(0))


def _start_seconds(start) -> int:
    ts = pd.Timestamp(start)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value // 1_000_000_000)


def _populations(n: int, n_customers: int | None, n_terminals: int | None) -> tuple[int, int]:
    nc = max(16, round(n / 240)) if n_customers is None else int(n_customers)
    nt = 2 * nc if n_terminals is None else int(n_terminals)
    if nc < 1 or nt < 1:
        raise ValueError(f"need n_customers >= 1 and n_terminals >= 1, got {nc}, {nt}")
    return nc, nt


def generate_card_transactions(n: int, *, seed: int = 0, fraud_rate: float = 0.008,
                               start: str | datetime | pd.Timestamp = DEFAULT_CARDS_START,
                               n_customers: int | None = None, n_terminals: int | None = None,
                               chunk_size: int = 100_000) -> Iterator[pd.DataFrame]:
    """Yield ``n`` synthetic card transactions as frames of ``chunk_size`` rows (the last may be short).

    Columns :data:`CARD_COLUMNS`: TRANSACTION_ID (int64, 0..n-1 in time order), TX_DATETIME
    (datetime64[ns], naive UTC, whole seconds, non-decreasing), CUSTOMER_ID and TERMINAL_ID
    (int64, 0-based), TX_AMOUNT (float64, >= 0, cents; some 0.00), TX_FRAUD (int8 0/1),
    TX_FRAUD_SCENARIO (int8 0..3), CHANNEL (str: pos, ecom, atm), RISK_SCORE (float64 in [0, 1],
    some NaN). ``start`` is the first day's midnight (a tz-aware time is converted to UTC).
    ``n_customers`` defaults to ``max(16, n / 240)`` (about 120 days of data), ``n_terminals`` to
    twice that. ``fraud_rate`` in [0, 0.1]: the scenario intensities are set for it; the
    rule-1 share (~0.1-0.2%) is a floor. Same ``seed`` gives the same rows whatever
    ``chunk_size``.
    """
    if n < 0 or chunk_size < 1:
        raise ValueError(f"need n >= 0 and chunk_size >= 1, got n={n}, chunk_size={chunk_size}")
    if not 0.0 <= fraud_rate <= 0.1:
        raise ValueError(f"fraud_rate must be in [0, 0.1], got {fraud_rate}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    nc, nt = _populations(n, n_customers, n_terminals)
    start_s = _start_seconds(start)
    if n == 0:
        return
    world = _CardWorld(seed, fraud_rate, nc, nt)
    out: list[dict[str, np.ndarray]] = []
    buffered = emitted = 0
    d = 0
    while emitted < n:
        ev = world.day(d)
        d += 1
        if len(ev["t"]):
            out.append(ev)
            buffered += len(ev["t"])
        elif d > 1_000_000:
            raise RuntimeError("the customers make (almost) no transactions")
        while buffered >= chunk_size or (buffered and emitted + buffered >= n):
            cat = {key: np.concatenate([o[key] for o in out]) for key in out[0]}
            take = min(chunk_size, n - emitted)
            yield _frame({key: v[:take] for key, v in cat.items()}, emitted, start_s)
            emitted += take
            if emitted >= n:
                return
            out = [{key: v[take:] for key, v in cat.items()}]
            buffered -= take


def write_card_transactions(path: str | os.PathLike, n: int, *, seed: int = 0,
                            fraud_rate: float = 0.008,
                            start: str | datetime | pd.Timestamp = DEFAULT_CARDS_START,
                            n_customers: int | None = None, n_terminals: int | None = None,
                            fmt: str | None = None, progress: bool = False,
                            chunk_size: int = 100_000) -> Path:
    """Generate ``n`` card transactions into a .csv or .parquet file, chunk by chunk; returns the path.

    ``fmt`` ("csv" or "parquet") defaults to the suffix of ``path``. In CSV, TX_DATETIME is
    written as "YYYY-MM-DD HH:MM:SS" and a missing RISK_SCORE is an empty cell; Parquet keeps
    the frame's types (TX_DATETIME a timestamp). ``progress`` shows a tqdm bar.
    """
    from .io import write_chunks
    chunks = generate_card_transactions(n, seed=seed, fraud_rate=fraud_rate, start=start,
                                        n_customers=n_customers, n_terminals=n_terminals,
                                        chunk_size=chunk_size)
    return write_chunks(path, chunks, total=n, empty=_frame(_EMPTY, 0, 0), fmt=fmt, progress=progress,
                        csv_options={"date_format": DATETIME_FORMAT})
