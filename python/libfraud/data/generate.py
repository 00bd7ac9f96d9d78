"""Seeded synthetic payment network with labelled fraud, generated in time-ordered chunks.

The simulation runs hour by hour over about 30 days (entity populations scale with ``n``).
Fraud is meant to be hard per transaction (realistic tree AUPRC ~0.6-0.8 at 1%), without label noise:

- Legitimate: cards with heavy-tailed (lognormal) activity; 1-2 home devices, 1-2 home IPs, a home
  country, 3 favourite merchants; Zipf merchant popularity, one mcc each; lognormal amounts set
  by the mcc and the card's spending level; a daily cycle (busiest mid-afternoon UTC).
- Legitimate look-alikes: shared household devices (10% of cards); new phones (25% of cards switch
  device mid-month); browser reinstalls and borrowed/office/family devices shared by unrelated
  cards; carrier/corporate NAT IPs shared by many cards; public wifi hotspots; new mobile IPs;
  2-10 day trips abroad (some to "fraud" countries) with roaming IPs and travel merchants;
  card-present sales via a merchant's tablet (one device/IP for many cards); bursts of 3-10
  small amounts within minutes (transit taps, in-app) on the card's own device; subscription
  renewals without device/IP; big one-off purchases at high-value merchants.
- Fraud rings (``ring``): 10-50 cards (80% breached real cards, chosen by activity so they have
  history; 20% synthetic), each held by a fraudster on one of ~size/4 ring devices, acting slowly
  (episodes of 5-30 rows over 0.5-5 days), 80% through residential proxies (other cards' home
  IPs), amounts mimicking the card's normal spend at 3-6 popular resale merchants, mostly in the
  card's home country. Hard per row; a graph reveals it (devices shared with other fraud cards).
- Colluding merchants (``merchant_collusion``): ring episodes at the ring's mule, an ordinary shop
  (own mcc and legit trade) with ring cards paying it normal-looking amounts.
- Card testing: 5-25 amounts under 5 on one card at low-value merchants (the ones legit bursts
  use), fast (2-15 min) or low-and-slow (1-8 h), from a tester device/IP reused across stolen
  cards or a fresh one; 40% end with a cash-out at a high-value merchant 0.5-6 h later.
- Account takeover: an existing card (chosen by activity), 1-5 purchases within 6 hours; 25% on
  the victim's own device and home IP (malware / remote access), the rest on a new device and IP;
  half at high-value merchants, half at ordinary ones; most amounts above the card's normal.
- Compromised merchants (``compromised_merchant``, ~15% of fraud rows by default, see
  ``compromised_share``): ordinary merchants breached for 2-10 days each (a few a month; their
  number scales with ``n * fraud_rate``; :func:`compromised_merchants` lists them). 60% of the
  cards with a legitimate row there during the breach are captured (that row stays legitimate)
  and defrauded elsewhere 1-14 days later: 1-5 rows within 36 h, a skimmed card cloned and used
  card-present (no device/IP; high-value and resale shops; 30% abroad), breached card data
  used online from a fresh device and IP (30% via residential proxies). A card is captured once
  at most. The signal spans two hops: the merchant's own rows are not fraud, its past customers
  later are.
- Labels: 1 on exactly the fraud rows (no label noise). Fraud rows are scheduled so that their
  share tracks ``fraud_rate`` (compromised-merchant rows count in the hour they happen); half
  follow the daily cycle, half are flat over the day.
- Label times (``label_time_ms``, always >= timestamp_ms): a fraud row is reported after a
  lognormal delay (median 5 days, sigma 0.7: 95% within ~16 days; capped at 30 days), 5% the
  same day (10 min - 16 h); a legitimate row's 0 is known after :data:`LEGIT_LABEL_DELAY_MS`
  (30 days, the longest a fraud report can take).

Determinism: the world comes from ``seed``; hour ``k`` from ``(seed, k)``; breaches from
``(seed, 2)``, captures and victims in hour ``k`` from ``(seed, 2, k)``, label times from the
last draws of ``(seed, k)``; rows are merged in time order independently of ``chunk_size``, so
any chunking yields the same rows. With ``compromised_share=0`` the rows (all but label_time_ms)
are those of the generator before compromised merchants existed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .schema import ABSENT_ID, FRAUD_TYPES

__all__ = ["DEFAULT_START_MS", "GENERATED_FRAUD_TYPES", "LEGIT_LABEL_DELAY_MS",
           "compromised_merchants", "generate_transactions", "write_transactions"]

DEFAULT_START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z."""

_HOUR_MS = 3_600_000
_MIN_MS = 60_000
_SPAN_HOURS = 30 * 24

# mcc, share of merchants, typical amount, log-spread
_MCC = np.array([
    (5411, 0.20, 45, 0.7), (5812, 0.12, 35, 0.6), (5814, 0.10, 12, 0.5), (5541, 0.10, 40, 0.4),
    (5311, 0.06, 70, 0.8), (5912, 0.06, 25, 0.7), (5999, 0.06, 40, 1.0), (4121, 0.06, 20, 0.5),
    (5815, 0.06, 9, 0.8), (4899, 0.04, 15, 0.4), (4111, 0.03, 3, 0.4), (5732, 0.04, 180, 0.9), (5944, 0.02, 300, 1.0),
    (4511, 0.03, 350, 0.6), (7011, 0.03, 200, 0.6), (5691, 0.02, 80, 0.7),
])
_MCC_CODE = _MCC[:, 0].astype(np.int32)
_MCC_P = _MCC[:, 1] / _MCC[:, 1].sum()
_MCC_MU = np.log(_MCC[:, 2])
_MCC_SIGMA = _MCC[:, 3]
_LOW_VALUE_MCC = (5815, 5814, 4899, 4111)
_HIGH_VALUE_MCC = (5732, 5944, 4511, 7011)
_TRAVEL_MCC = (4511, 7011, 5812)
_RESALE_MCC = (5732, 5944, 5311, 5999, 5691, 5411)  # goods and gift cards that resell easily
# Legitimate small-amount bursts: share of a bursty card's rows that start one, extra rows per row.
_BURST_P = 0.06
_BURST_EXTRA = 0.2 * _BURST_P * 6.5

_HOME_COUNTRIES = np.array([840, 826, 124, 276, 250, 36, 392, 484], dtype=np.int32)
_HOME_P = np.array([0.60, 0.10, 0.08, 0.07, 0.05, 0.04, 0.03, 0.03])
_FRAUD_COUNTRIES = np.array([566, 643, 804, 156, 76, 608, 642, 360], dtype=np.int32)

GENERATED_FRAUD_TYPES: tuple[str, ...] = FRAUD_TYPES + tuple(
    t for t in ("compromised_merchant",) if t not in FRAUD_TYPES)
"""Values of the ``fraud_type`` column: the schema's FRAUD_TYPES plus any typology it lacks."""

# Fraud typologies: code in GENERATED_FRAUD_TYPES, share of fraud rows, mean rows per episode.
_RING, _CARD_TESTING, _ATO, _COLLUSION, _COMPROMISED = (
    GENERATED_FRAUD_TYPES.index(t) for t in
    ("ring", "card_testing", "account_takeover", "merchant_collusion", "compromised_merchant"))
_EP_TYPES = np.array([_RING, _COLLUSION, _CARD_TESTING, _ATO])
_EP_SHARE = np.array([0.35, 0.15, 0.30, 0.20])
_CASHOUT_P = 0.4
_EP_MEAN = np.array([17.5, 17.5, 15.0 + _CASHOUT_P, 3.0])
_EP_P = (_EP_SHARE / _EP_MEAN) / (_EP_SHARE / _EP_MEAN).sum()

# Compromised merchants: default share of fraud rows; chance that a card seen by a breached
# merchant is then defrauded; victim episodes of 1-5 rows (mean 3) over up to 36 h, 1-14 days
# after the capture.
_COMPROMISED_SHARE = 0.15
_CAPTURE_P = 0.6
_VICTIM_ROWS_MEAN = 3.0
_BREACH_VICTIMS = 15.0  # expected victims per breach (so the number of breaches scales with n)
_DAY_MS = 24 * _HOUR_MS

# Label times: fraud is reported after a lognormal delay (chargeback; median 5 days, 95% within
# ~16 days, capped at 30), a few the same day (within 10 min - 16 h); a legitimate row counts as
# labelled once it is 30 days old (the longest a fraud report can take).
LEGIT_LABEL_DELAY_MS = 30 * _DAY_MS
"""Delay after which a legitimate row's label 0 is known (= the longest fraud report delay)."""
_FRAUD_DELAY_MEDIAN_MS = 5 * _DAY_MS
_FRAUD_DELAY_SIGMA = 0.7
_FRAUD_DELAY_MAX_MS = 30 * _DAY_MS
_SAME_DAY_P = 0.05

# Ids are scrambled by an odd-multiplier bijection of [0, 2**40) so that they carry no order.
_ID_MASK = np.uint64(2 ** 40 - 1)
_ID_MUL = {"card": 0x9E3779B97F, "device": 0xC2B2AE3D27, "merchant": 0x165667B19F, "ip": 0x27D4EB2F17}


def _scramble(ids: np.ndarray, kind: str) -> np.ndarray:
    absent = ids < 0
    u = ids.astype(np.uint64) * np.full(1, _ID_MUL[kind], np.uint64) + np.uint64(_ID_MUL[kind] >> 7)
    out = (u & _ID_MASK).astype(np.int64)
    out[absent] = ABSENT_ID
    return out


def _pick(rng: np.random.Generator, base: np.ndarray, count: np.ndarray) -> np.ndarray:
    """base[i] + uniform integer in [0, count[i]) for each i."""
    return base + (rng.random(len(base)) * count).astype(np.int64)


class _World:
    """Entity populations and the per-hour event generator."""

    def __init__(self, n: int, seed: int, fraud_rate: float,
                 compromised_share: float = _COMPROMISED_SHARE):
        rng = np.random.default_rng([seed, 0])
        self.seed, self.fraud_rate = seed, fraud_rate
        self.rate = n / _SPAN_HOURS  # expected transactions per hour, all kinds

        # Merchants: Zipf popularity (random rank order), one mcc each; mules look ordinary.
        nm = max(32, n // 150)
        self.merchant_mcc = rng.choice(len(_MCC), size=nm, p=_MCC_P)
        for codes in (_LOW_VALUE_MCC, _HIGH_VALUE_MCC, _TRAVEL_MCC):
            if not np.isin(_MCC_CODE[self.merchant_mcc], codes).any():
                self.merchant_mcc[rng.integers(nm)] = int(np.flatnonzero(np.isin(_MCC_CODE, codes))[0])
        pop = 1.0 / rng.permutation(np.arange(1, nm + 1)) ** 1.05
        n_mules = max(2, nm // 400)
        # Mules are ordinary shops (own mcc, own legit trade), chosen ~ popularity ** 0.5.
        w = pop ** 0.5
        self.mules = rng.choice(nm, size=n_mules, replace=False, p=w / w.sum())
        self.merchant_cdf = np.cumsum(pop) / pop.sum()
        ordinary = np.ones(nm, bool)
        ordinary[self.mules] = False
        mcc_codes = _MCC_CODE[self.merchant_mcc]
        self.low_merchants = np.flatnonzero(np.isin(mcc_codes, _LOW_VALUE_MCC) & ordinary)
        self.high_merchants = np.flatnonzero(np.isin(mcc_codes, _HIGH_VALUE_MCC) & ordinary)
        self.travel_merchants = np.flatnonzero(np.isin(mcc_codes, _TRAVEL_MCC) & ordinary)
        resale = np.flatnonzero(np.isin(mcc_codes, _RESALE_MCC) & ordinary)
        self.resale_merchants = resale
        self.kiosk = rng.random(nm) < 0.25  # card-present through the merchant's own tablet

        # Cards: heavy-tailed activity, home devices/IPs/country, favourite merchants.
        nc = max(64, n // 25)
        self.n_cards = nc
        act = rng.lognormal(0.0, 1.3, size=nc)
        self.card_cdf = np.cumsum(act) / act.sum()
        self.card_ndev = 1 + (rng.random(nc) < 0.35).astype(np.int64)
        self.card_dev = np.concatenate([[0], np.cumsum(self.card_ndev)[:-1]])
        n_home_dev = int(self.card_ndev.sum())
        household = rng.random(nc) < 0.10  # shares its partner's first device
        partner = rng.integers(nc, size=nc)
        self.card_dev[household] = self.card_dev[partner[household]]
        self.card_ndev[household] = 1
        self.card_nip = 1 + (rng.random(nc) < 0.5).astype(np.int64)
        self.card_ip = np.concatenate([[0], np.cumsum(self.card_nip)[:-1]])
        n_home_ip = int(self.card_nip.sum())
        self.card_spend = rng.normal(0.0, 0.35, size=nc)
        self.card_fav = np.searchsorted(self.merchant_cdf, rng.random((nc, 3)))
        # New phone: from hour upg_h on, the card's main device is a new one (upg_dev + card).
        self.upg_h = np.where(rng.random(nc) < 0.25, rng.integers(0, _SPAN_HOURS, size=nc), 1 << 40)
        self.upg_dev = n_home_dev
        self.kiosk_dev = n_home_dev + nc
        # Trips: 2-10 days abroad with a roaming/hotel IP (trip_ip + card) and travel merchants.
        self.trip_h = np.where(rng.random(nc) < 0.25, rng.integers(-_SPAN_HOURS // 4, _SPAN_HOURS, size=nc),
                               -(1 << 40))
        self.trip_len = rng.integers(48, 240, size=nc)
        self.trip_country = np.where(rng.random(nc) < 0.7, rng.choice(_HOME_COUNTRIES, size=nc),
                                     rng.choice(_FRAUD_COUNTRIES, size=nc))
        self.n_nat = max(4, nc // 300)
        self.nat_base = n_home_ip
        self.trip_ip = self.nat_base + self.n_nat
        self.kiosk_ip = self.trip_ip + nc
        # Public wifi hotspots and shared devices (office PCs, family tablets, a borrowed phone):
        # each seen with a handful of unrelated cards, like a ring's devices and IPs.
        self.n_hotspot = max(8, nc // 15)
        self.hotspot_ip = self.kiosk_ip + nm
        self.n_shared_dev = max(8, nc // 25)
        self.shared_dev = self.kiosk_dev + nm
        # Commuters/gamers make bursts of small amounts; many cards renew a subscription.
        self.bursty = rng.random(nc) < 0.2
        self.burst_merchant = rng.choice(self.low_merchants, size=nc)
        self.sub_merchant = rng.choice(self.low_merchants, size=nc)
        self.sub_amount = np.round(rng.lognormal(np.log(11.0), 0.5, size=nc), 0) - 0.01

        # Rings: member cards (CSR; most are compromised real cards), several devices each holding
        # a few of the cards, residential-proxy IPs, 3-6 target merchants, a mule, a home base.
        n_rings = max(2, round(n * fraud_rate * 0.5 / 100))
        size = rng.integers(10, 51, size=n_rings)
        synthetic = rng.random(int(size.sum())) < 0.2
        members = np.searchsorted(self.card_cdf, rng.random(len(synthetic)))  # breached: busy cards too
        members[synthetic] = nc + np.arange(int(synthetic.sum()))
        n_synth = int(synthetic.sum())
        self.ring_cards, self.ring_size = members, size
        self.ring_card_ptr = np.concatenate([[0], np.cumsum(size)[:-1]])
        self.ring_ndev = 1 + size // 4
        self.ring_dev = self.shared_dev + self.n_shared_dev + np.concatenate([[0], np.cumsum(self.ring_ndev)[:-1]])
        self.ring_nip = 1 + size // 4
        self.ring_ip = self.hotspot_ip + self.n_hotspot + np.concatenate([[0], np.cumsum(self.ring_nip)[:-1]])
        self.ring_nmerch = rng.integers(3, 7, size=n_rings)
        self.ring_merch = rng.choice(resale, size=(n_rings, 6), p=pop[resale] / pop[resale].sum())
        self.ring_mule = rng.choice(self.mules, size=n_rings)
        self.ring_country = rng.choice(_FRAUD_COUNTRIES, size=n_rings)
        self.n_rings = n_rings

        # Synthetic cards get a home country and spending level like real ones.
        self.card_country = rng.choice(_HOME_COUNTRIES, size=nc + n_synth, p=_HOME_P)
        self.card_spend = np.concatenate([self.card_spend, rng.normal(0.0, 0.35, size=n_synth)])

        # Card-testing tools, reused across stolen cards.
        self.n_testers = max(2, round(n * fraud_rate * 0.3 / 15.4 / 8))
        self.tester_dev = int(self.ring_dev[-1] + self.ring_ndev[-1])
        self.tester_ip = int(self.ring_ip[-1] + self.ring_nip[-1])
        self.next_dev = self.tester_dev + self.n_testers  # fresh one-off devices from here on
        self.next_ip = self.tester_ip + self.n_testers

        self.fraud_target = 0.0  # fraud rows owed so far
        self.fraud_made = 0
        h = np.arange(24) + 0.5
        self.cycle = 1.0 + 0.75 * np.cos(2 * np.pi * (h - 14.0) / 24.0)
        self._breaches(n, seed, nm, ordinary, compromised_share)

    def _breaches(self, n: int, seed: int, nm: int, ordinary: np.ndarray, share: float) -> None:
        """Breach schedule (own random stream, so the rest of the world does not depend on it).

        Enough breaches for ``share`` of the fraud rows; each an ordinary merchant whose expected
        traffic over its 2-10 day breach yields about the wanted number of victims.
        """
        rng = np.random.default_rng([seed, 2])
        self.comp_ledger: dict[int, int] = {}  # hour -> victim fraud rows that happen in it
        self.compromised = np.zeros(self.n_cards, bool)  # a card is defrauded once at most
        self.merchant_breach = np.full(nm, -1, np.int64)
        # A quarter of the victims' fraud would fall after the simulated month: plan for more.
        victims = share * self.fraud_rate * n / _VICTIM_ROWS_MEAN / 0.75
        nb = int(round(victims / _BREACH_VICTIMS))
        if nb == 0 and victims >= 3:
            nb = 1
        dur = rng.integers(48, 241, size=nb) * _HOUR_MS
        self.breach_t0 = (rng.integers(-72, _SPAN_HOURS - 72, size=nb) * _HOUR_MS
                          + rng.integers(0, _HOUR_MS, size=nb))
        self.breach_t1 = self.breach_t0 + dur
        self.breach_skimmer = rng.random(nb) < 0.5  # card-present skimmer, else a data breach
        want = victims / max(nb, 1) * rng.uniform(0.5, 1.5, size=nb)
        visits = np.diff(np.concatenate([[0.0], self.merchant_cdf]))
        per_hour = (1.0 - self.fraud_rate) * self.rate * visits  # expected legit rows
        free = ordinary.copy()
        merchant = np.zeros(nb, np.int64)
        for b in range(nb):
            # Repeat visits by favourites: ~1.3 rows per distinct card.
            rows = want[b] / _CAPTURE_P * 1.3
            expect = per_hour * dur[b] / _HOUR_MS
            score = np.abs(np.log(expect / rows + 1e-12)) + rng.gumbel(0, 0.3, size=nm)
            score[~free] = np.inf
            merchant[b] = int(np.argmin(score))
            free[merchant[b]] = False
        self.breach_merchant = merchant
        self.merchant_breach[merchant] = np.arange(nb)

    def _fresh(self, what: str, count: int) -> np.ndarray:
        attr = "next_dev" if what == "device" else "next_ip"
        first = getattr(self, attr)
        setattr(self, attr, first + count)
        return np.arange(first, first + count, dtype=np.int64)

    def _amount(self, rng, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        return np.maximum(np.round(rng.lognormal(mu, sigma), 2), 0.01)

    def _main_device(self, card: np.ndarray, k: int) -> np.ndarray:
        """The card's first home device, or its new phone once it has one."""
        return np.where(k >= self.upg_h[card], self.upg_dev + card, self.card_dev[card])

    def hour(self, k: int, start_ms: int) -> dict[str, np.ndarray]:
        """All events of hour ``k`` (some spill into later hours), unsorted."""
        rng = np.random.default_rng([self.seed, 1, k])
        t0 = start_ms + k * _HOUR_MS
        parts = [self._legit(rng, t0, k)]
        # Victims of breaches seen this hour: their fraud comes 1-14 days later (counted then).
        victims = self._captures(k, parts[0], start_ms)
        if victims is not None:
            parts.append(victims)
        self.fraud_made += self.comp_ledger.pop(k, 0)
        # Fraud half follows the daily cycle (operators in the victims' time zones), half is flat.
        self.fraud_target += self.fraud_rate * self.rate * (0.5 + 0.5 * self.cycle[k % 24])
        deficit = self.fraud_target - self.fraud_made
        if deficit > 0:
            parts.append(self._fraud(rng, t0, k, deficit))
        ev = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        ev["lt"] = self._label_times(rng, ev["ts"], ev["ftype"])  # the hour's last draws
        return ev

    @staticmethod
    def _label_times(rng, ts: np.ndarray, ftype: np.ndarray) -> np.ndarray:
        m = len(ts)
        same_day = rng.random(m) < _SAME_DAY_P
        quick = rng.integers(10 * _MIN_MS, 16 * _HOUR_MS, size=m)
        slow = np.minimum(rng.lognormal(np.log(_FRAUD_DELAY_MEDIAN_MS), _FRAUD_DELAY_SIGMA, size=m),
                          _FRAUD_DELAY_MAX_MS).astype(np.int64)
        delay = np.where(same_day, quick, slow)
        return ts + np.where(ftype != 0, delay, LEGIT_LABEL_DELAY_MS)

    def _captures(self, k: int, legit: dict[str, np.ndarray],
                  start_ms: int) -> dict[str, np.ndarray] | None:
        """Cards newly captured by a breached merchant in hour ``k``, and their later fraud rows."""
        if not len(self.breach_merchant):
            return None
        b = self.merchant_breach[legit["merchant"]]
        rel = legit["ts"] - start_ms
        hit = np.flatnonzero((b >= 0) & (rel >= self.breach_t0[b]) & (rel < self.breach_t1[b]))
        if not len(hit):
            return None
        hit = hit[np.argsort(legit["ts"][hit], kind="stable")]
        rng = np.random.default_rng([self.seed, 2, k])
        take = rng.random(len(hit)) < _CAPTURE_P
        hit = hit[take & ~self.compromised[legit["card"][hit]]]
        card, first = np.unique(legit["card"][hit], return_index=True)
        if not len(card):
            return None
        hit = hit[np.sort(first)]
        card = legit["card"][hit]
        self.compromised[card] = True
        ev = self._victims(rng, card, legit["ts"][hit], self.breach_skimmer[b[hit]])
        hours, counts = np.unique((ev["ts"] - start_ms) // _HOUR_MS, return_counts=True)
        for h, c in zip(hours.tolist(), counts.tolist()):
            self.comp_ledger[h] = self.comp_ledger.get(h, 0) + c
        return ev

    def _victims(self, rng, card, captured, skimmer) -> dict[str, np.ndarray]:
        """Fraud on captured cards elsewhere: 1-5 rows over up to 36 h, 1-14 days after capture.

        Skimmed cards are cloned and used card-present (no device/IP) at high-value and resale
        shops, often abroad; breached card data is used online from a fresh device and IP (30%
        through residential proxies).
        """
        e = len(card)
        start = captured + rng.integers(_DAY_MS, 14 * _DAY_MS, size=e)
        size = rng.integers(1, 6, size=e)
        spree = rng.integers(30 * _MIN_MS, 36 * _HOUR_MS, size=e)
        dev = np.where(skimmer, ABSENT_ID, self._fresh("device", e))
        ip = np.where(skimmer, ABSENT_ID, self._fresh("ip", e))
        ep = np.repeat(np.arange(e), size)
        m = len(ep)
        ts = start[ep] + (rng.random(m) * spree[ep]).astype(np.int64)
        high = rng.random(m) < 0.5
        merchant = np.where(high, rng.choice(self.high_merchants, size=m),
                            rng.choice(self.resale_merchants, size=m))
        online = ~skimmer[ep]
        anywhere = online & (rng.random(m) < 0.3)  # online: also ordinary popular shops
        merchant[anywhere] = np.searchsorted(self.merchant_cdf, rng.random(int(anywhere.sum())))
        dev, ip = dev[ep], ip[ep]
        proxy = online & (rng.random(m) < 0.3)
        ip[proxy] = rng.integers(self.nat_base, size=int(proxy.sum()))
        abroad = rng.random(m) < np.where(skimmer[ep], 0.3, 0.1)
        cards = card[ep]
        country = np.where(abroad, rng.choice(_FRAUD_COUNTRIES, size=m), self.card_country[cards])
        mi = self.merchant_mcc[merchant]
        amount = self._amount(rng, _MCC_MU[mi] + self.card_spend[cards] + 0.6, _MCC_SIGMA[mi])
        return dict(ts=ts, card=cards, dev=dev, merchant=merchant, ip=ip, country=country,
                    mcc=_MCC_CODE[mi], amount=amount, ftype=np.full(m, _COMPROMISED, np.int8))

    def _legit(self, rng, t0: int, k: int) -> dict[str, np.ndarray]:
        lam = (1.0 - self.fraud_rate) * self.rate * self.cycle[k % 24] / (1.0 + _BURST_EXTRA)
        m = int(rng.poisson(lam))
        ts = t0 + rng.integers(0, _HOUR_MS, size=m)
        card = np.searchsorted(self.card_cdf, rng.random(m))
        dev = _pick(rng, self.card_dev[card], self.card_ndev[card])
        upgraded = (k >= self.upg_h[card]) & (dev == self.card_dev[card])
        dev[upgraded] = self.upg_dev + card[upgraded]
        ip = _pick(rng, self.card_ip[card], self.card_nip[card])
        nat = rng.random(m) < 0.15  # carrier / corporate NAT: one IP for many cards
        ip[nat] = self.nat_base + rng.integers(self.n_nat, size=int(nat.sum()))
        trip = (k >= self.trip_h[card]) & (k < self.trip_h[card] + self.trip_len[card])
        ip[trip] = self.trip_ip + card[trip]
        new_dev = rng.random(m) < 0.03  # browser/app reinstall
        dev[new_dev] = self._fresh("device", int(new_dev.sum()))
        shared = rng.random(m) < 0.03
        dev[shared] = self.shared_dev + rng.integers(self.n_shared_dev, size=int(shared.sum()))
        new_ip = rng.random(m) < 0.10  # mobile data
        ip[new_ip] = self._fresh("ip", int(new_ip.sum()))
        wifi = rng.random(m) < 0.08
        ip[wifi] = self.hotspot_ip + rng.integers(self.n_hotspot, size=int(wifi.sum()))
        fav = rng.random(m) < 0.5
        merchant = np.searchsorted(self.merchant_cdf, rng.random(m))
        merchant[fav] = self.card_fav[card[fav], rng.integers(3, size=int(fav.sum()))]
        trav = trip & (rng.random(m) < 0.3)
        merchant[trav] = rng.choice(self.travel_merchants, size=int(trav.sum()))
        present = rng.random(m) < 0.12  # card-present: no device/IP, or the merchant's tablet
        tablet = present & self.kiosk[merchant]
        dev[present] = ABSENT_ID
        ip[present] = ABSENT_ID
        dev[tablet] = self.kiosk_dev + merchant[tablet]
        ip[tablet] = self.kiosk_ip + merchant[tablet]
        lift = np.zeros(m)
        big = rng.random(m) < 0.015  # a big one-off: new TV, flight, ring; often a new shop
        merchant[big] = rng.choice(self.high_merchants, size=int(big.sum()))
        lift[big] = 1.0
        mi = self.merchant_mcc[merchant]
        amount = self._amount(rng, _MCC_MU[mi] + self.card_spend[card] + lift, _MCC_SIGMA[mi])
        renew = rng.random(m) < 0.04  # merchant-initiated subscription renewal
        merchant[renew] = self.sub_merchant[card[renew]]
        amount[renew] = self.sub_amount[card[renew]]
        dev[renew] = ABSENT_ID
        ip[renew] = ABSENT_ID
        country = self.card_country[card].copy()
        country[trip] = self.trip_country[card[trip]]
        travel = rng.random(m) < 0.01
        country[travel] = rng.choice(_HOME_COUNTRIES, size=int(travel.sum()))
        exotic = rng.random(m) < 0.002
        country[exotic] = rng.choice(_FRAUD_COUNTRIES, size=int(exotic.sum()))
        base = dict(ts=ts, card=card, dev=dev, merchant=merchant, ip=ip, country=country,
                    amount=amount)

        # Small-amount bursts (transit taps, in-app purchases) on the card's own device.
        head = np.flatnonzero(self.bursty[card] & ~present & ~renew & (rng.random(m) < _BURST_P))
        size = rng.integers(3, 11, size=len(head))
        ep = np.repeat(head, size)
        b = len(ep)
        burst = {key: v[ep] for key, v in base.items()}
        dur = rng.integers(2 * _MIN_MS, 20 * _MIN_MS, size=len(head))
        burst["ts"] = burst["ts"] + (rng.random(b) * np.repeat(dur, size)).astype(np.int64)
        burst["merchant"] = self.burst_merchant[burst["card"]]
        burst["amount"] = np.round(rng.uniform(0.75, 4.99, size=b), 2)
        ev = {key: np.concatenate([base[key], burst[key]]) for key in base}
        ev["mcc"] = _MCC_CODE[self.merchant_mcc[ev["merchant"]]]
        ev["ftype"] = np.zeros(len(ev["ts"]), np.int8)
        return ev

    def _fraud(self, rng, t0: int, k: int, deficit: float) -> dict[str, np.ndarray]:
        cand = int(np.ceil(deficit)) + 1
        kind = rng.choice(len(_EP_TYPES), size=cand, p=_EP_P)
        size = np.where(kind < 2, rng.integers(5, 31, size=cand),
                        np.where(kind == 2, rng.integers(5, 26, size=cand), rng.integers(1, 6, size=cand)))
        cashout = (kind == 2) & (rng.random(cand) < _CASHOUT_P)
        size = size + cashout
        take = int(np.searchsorted(np.cumsum(size), deficit)) + 1
        kind, size, cashout = kind[:take], size[:take], cashout[:take]
        self.fraud_made += int(size.sum())
        start = t0 + rng.integers(0, _HOUR_MS, size=take)
        parts = []
        ring = kind < 2
        if ring.any():
            parts.append(self._ring(rng, start[ring], size[ring], kind[ring] == 1))
        if (kind == 2).any():
            parts.append(self._card_testing(rng, start[kind == 2], size[kind == 2], cashout[kind == 2]))
        if (kind == 3).any():
            parts.append(self._ato(rng, k, start[kind == 3], size[kind == 3]))
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _ring(self, rng, start, size, collusion) -> dict[str, np.ndarray]:
        e = len(start)
        r = rng.integers(self.n_rings, size=e)
        dur = rng.integers(12 * 60 * _MIN_MS, 120 * 60 * _MIN_MS, size=e)  # slow: over 0.5-5 days
        ep = np.repeat(np.arange(e), size)
        m, rr = len(ep), r[ep]
        ts = start[ep] + (rng.random(m) * dur[ep]).astype(np.int64)
        j = _pick(rng, np.zeros(m, np.int64), self.ring_size[rr])
        card = self.ring_cards[self.ring_card_ptr[rr] + j]
        # Each fraudster holds a few of the cards on one device; now and then phones are swapped.
        slot = np.where(rng.random(m) < 0.9, j % self.ring_ndev[rr],
                        (rng.random(m) * self.ring_ndev[rr]).astype(np.int64))
        dev = self.ring_dev[rr] + slot
        ip = self.ring_ip[rr] + slot % self.ring_nip[rr]
        # Residential proxies: exits through infected home machines, i.e. other cards' home IPs.
        proxy = rng.random(m) < 0.8
        ip[proxy] = rng.integers(self.nat_base, size=int(proxy.sum()))
        merchant = self.ring_merch[rr, (rng.random(m) * self.ring_nmerch[rr]).astype(np.int64)]
        coll = collusion[ep]
        merchant[coll] = self.ring_mule[rr[coll]]
        mi = self.merchant_mcc[merchant]
        # Amounts mimic what the card normally spends at such a shop, pushed up a little.
        amount = self._amount(rng, _MCC_MU[mi] + self.card_spend[card] + 0.1, _MCC_SIGMA[mi])
        country = np.where(rng.random(m) < 0.1, self.ring_country[rr], self.card_country[card])
        ftype = np.where(coll, _COLLUSION, _RING).astype(np.int8)
        return dict(ts=ts, card=card, dev=dev, merchant=merchant, ip=ip, country=country,
                    mcc=_MCC_CODE[mi], amount=amount, ftype=ftype)

    def _card_testing(self, rng, start, size, cashout) -> dict[str, np.ndarray]:
        e = len(start)
        card = rng.integers(self.n_cards, size=e)
        tester = rng.integers(self.n_testers, size=e)
        fresh = rng.random(e) < 0.5
        dev = self.tester_dev + tester
        dev[fresh] = self._fresh("device", int(fresh.sum()))
        ip = self.tester_ip + tester
        ip[fresh] = self._fresh("ip", int(fresh.sum()))
        slow = rng.random(e) < 0.4  # low and slow: spread over hours to dodge velocity rules
        dur = np.where(slow, rng.integers(60 * _MIN_MS, 8 * 60 * _MIN_MS, size=e),
                       rng.integers(2 * _MIN_MS, 15 * _MIN_MS, size=e))
        shops = rng.choice(self.low_merchants, size=(e, 2))
        abroad = rng.random(e) < 0.3
        country = np.where(abroad, rng.choice(_FRAUD_COUNTRIES, size=e), self.card_country[card])
        ep = np.repeat(np.arange(e), size)
        m = len(ep)
        # The last row of an episode with a cash-out is the cash-out.
        last = np.cumsum(size) - 1
        is_cash = np.zeros(m, bool)
        is_cash[last[cashout]] = True
        ts = start[ep] + (rng.random(m) * dur[ep]).astype(np.int64)
        wait = rng.integers(30 * _MIN_MS, 6 * 60 * _MIN_MS, size=m)
        ts = np.where(is_cash, start[ep] + dur[ep] + wait, ts)
        merchant = shops[ep, rng.integers(2, size=m)]
        merchant[is_cash] = rng.choice(self.high_merchants, size=int(is_cash.sum()))
        amount = np.round(rng.uniform(0.5, 4.99, size=m), 2)
        mi = self.merchant_mcc[merchant]
        cash_card = card[ep][is_cash]
        amount[is_cash] = self._amount(rng, _MCC_MU[mi[is_cash]] + self.card_spend[cash_card] + 0.5,
                                       _MCC_SIGMA[mi[is_cash]])
        return dict(ts=ts, card=card[ep], dev=dev[ep], merchant=merchant, ip=ip[ep],
                    country=country[ep], mcc=_MCC_CODE[mi], amount=amount,
                    ftype=np.full(m, _CARD_TESTING, np.int8))

    def _ato(self, rng, k, start, size) -> dict[str, np.ndarray]:
        e = len(start)
        card = np.searchsorted(self.card_cdf, rng.random(e))
        # Stolen credentials: 40% used on the victim's own device (malware / remote access) and
        # home IP, the rest on a new device and IP.
        own = rng.random(e) < 0.25
        dev = np.where(own, self._main_device(card, k), self._fresh("device", e))
        ip = np.where(own, self.card_ip[card], self._fresh("ip", e))
        lift = np.where(rng.random(e) < 0.65, 0.9, 0.2)
        high = rng.random(e) < 0.5  # unusual high-value shop, or an ordinary popular one
        abroad = rng.random(e) < 0.15
        country = np.where(abroad, rng.choice(_FRAUD_COUNTRIES, size=e), self.card_country[card])
        ep = np.repeat(np.arange(e), size)
        m = len(ep)
        ts = start[ep] + rng.integers(0, 6 * 60 * _MIN_MS, size=m)
        merchant = np.where(high[ep], rng.choice(self.high_merchants, size=m),
                            np.searchsorted(self.merchant_cdf, rng.random(m)))
        mi = self.merchant_mcc[merchant]
        amount = self._amount(rng, _MCC_MU[mi] + self.card_spend[card[ep]] + lift[ep], _MCC_SIGMA[mi])
        return dict(ts=ts, card=card[ep], dev=dev[ep], merchant=merchant, ip=ip[ep],
                    country=country[ep], mcc=_MCC_CODE[mi], amount=amount,
                    ftype=np.full(m, _ATO, np.int8))


_FRAUD_TYPE_ARRAY = np.array(GENERATED_FRAUD_TYPES, dtype=object)


def _frame(ev: dict[str, np.ndarray], first_id: int) -> pd.DataFrame:
    m = len(ev["ts"])
    return pd.DataFrame({
        "txn_id": np.arange(first_id, first_id + m, dtype=np.int64),
        "timestamp_ms": ev["ts"].astype(np.int64),
        "amount": ev["amount"].astype(np.float64),
        "card_id": _scramble(ev["card"], "card"),
        "device_id": _scramble(ev["dev"], "device"),
        "merchant_id": _scramble(ev["merchant"], "merchant"),
        "ip_id": _scramble(ev["ip"], "ip"),
        "country": ev["country"].astype(np.int32),
        "mcc": ev["mcc"].astype(np.int32),
        "label": (ev["ftype"] != 0).astype(np.int8),
        "label_time_ms": ev["lt"].astype(np.int64),
        "fraud_type": pd.Series(_FRAUD_TYPE_ARRAY[ev["ftype"]], dtype="str"),
    })


_EMPTY = dict(ts=np.zeros(0, np.int64), card=np.zeros(0, np.int64), dev=np.zeros(0, np.int64),
              merchant=np.zeros(0, np.int64), ip=np.zeros(0, np.int64),
              country=np.zeros(0, np.int32), mcc=np.zeros(0, np.int32),
              amount=np.zeros(0), ftype=np.zeros(0, np.int8), lt=np.zeros(0, np.int64))


def _check_args(n: int, seed: int, fraud_rate: float, compromised_share: float) -> None:
    if n < 0:
        raise ValueError(f"need n >= 0, got n={n}")
    if not 0.0 <= fraud_rate <= 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5], got {fraud_rate}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= compromised_share <= 0.5:
        raise ValueError(f"compromised_share must be in [0, 0.5], got {compromised_share}")


def generate_transactions(n: int, *, seed: int = 0, fraud_rate: float = 0.01,
                          start_ms: int = DEFAULT_START_MS, chunk_size: int = 100_000,
                          compromised_share: float = _COMPROMISED_SHARE) -> Iterator[pd.DataFrame]:
    """Yield ``n`` synthetic transactions as frames of ``chunk_size`` rows (the last may be short).

    Rows are globally sorted by timestamp_ms, with txn_id = 0..n-1 in that order; columns are the
    schema's (with ``label``), then ``label_time_ms`` (int64, when the row's label became known,
    >= timestamp_ms) and ``fraud_type`` (one of :data:`GENERATED_FRAUD_TYPES`). Memory is
    proportional to the entity populations and one chunk, not to ``n``. Same ``seed`` gives the
    same rows whatever ``chunk_size``. ``seed`` must be >= 0, ``fraud_rate`` in [0, 0.5] and
    ``compromised_share`` (the wanted share of fraud rows from compromised merchants) in
    [0, 0.5]; with 0 there are no breaches and the other rows are those of the generator
    without them.
    """
    _check_args(n, seed, fraud_rate, compromised_share)
    if chunk_size < 1:
        raise ValueError(f"need chunk_size >= 1, got chunk_size={chunk_size}")
    if n == 0:
        return
    world = _World(n, seed, fraud_rate, compromised_share)
    pending = _EMPTY
    out: list[dict[str, np.ndarray]] = []
    buffered = emitted = 0
    k = 0
    while emitted < n:
        ev = world.hour(k, start_ms)
        ev = {key: np.concatenate([pending[key], ev[key]]) for key in ev}
        order = np.argsort(ev["ts"], kind="stable")
        cut = int(np.searchsorted(ev["ts"][order], start_ms + (k + 1) * _HOUR_MS))
        ready = {key: v[order[:cut]] for key, v in ev.items()}
        pending = {key: v[order[cut:]] for key, v in ev.items()}
        k += 1
        if cut:
            out.append(ready)
            buffered += cut
        while buffered >= chunk_size or (buffered and emitted + buffered >= n):
            cat = {key: np.concatenate([o[key] for o in out]) for key in out[0]}
            take = min(chunk_size, n - emitted)
            yield _frame({key: v[:take] for key, v in cat.items()}, emitted)
            emitted += take
            if emitted >= n:
                return
            out = [{key: v[take:] for key, v in cat.items()}]
            buffered -= take


def compromised_merchants(n: int, *, seed: int = 0, fraud_rate: float = 0.01,
                          start_ms: int = DEFAULT_START_MS,
                          compromised_share: float = _COMPROMISED_SHARE) -> pd.DataFrame:
    """The breaches behind ``generate_transactions(n, ...)`` with the same arguments (ground truth).

    One row per breached merchant: ``merchant_id`` (as in the transactions), ``start_ms`` and
    ``end_ms`` (legitimate rows there with start_ms <= timestamp_ms < end_ms may capture their
    card) and ``kind`` ("skimmer": cloned-card fraud card-present; "data_breach": online fraud).
    """
    _check_args(n, seed, fraud_rate, compromised_share)
    if n == 0:
        return pd.DataFrame({"merchant_id": np.zeros(0, np.int64), "start_ms": np.zeros(0, np.int64),
                             "end_ms": np.zeros(0, np.int64), "kind": pd.Series([], dtype="str")})
    w = _World(n, seed, fraud_rate, compromised_share)
    order = np.argsort(w.breach_t0, kind="stable")
    return pd.DataFrame({
        "merchant_id": _scramble(w.breach_merchant[order], "merchant"),
        "start_ms": (start_ms + w.breach_t0[order]).astype(np.int64),
        "end_ms": (start_ms + w.breach_t1[order]).astype(np.int64),
        "kind": pd.Series(np.where(w.breach_skimmer[order], "skimmer", "data_breach"), dtype="str"),
    })


def write_transactions(path: str | os.PathLike, n: int, *, seed: int = 0,
                       fraud_rate: float = 0.01, fmt: str | None = None, progress: bool = False,
                       chunk_size: int = 100_000,
                       compromised_share: float = _COMPROMISED_SHARE) -> Path:
    """Generate ``n`` transactions into a .csv or .parquet file, chunk by chunk; returns the path.

    ``fmt`` ("csv" or "parquet") defaults to the suffix of ``path``. In CSV an absent
    device_id/ip_id is an empty cell. ``progress`` shows a tqdm bar.
    """
    from .io import write_chunks
    chunks = generate_transactions(n, seed=seed, fraud_rate=fraud_rate, chunk_size=chunk_size,
                                   compromised_share=compromised_share)
    return write_chunks(path, chunks, total=n, empty=_frame(_EMPTY, 0), fmt=fmt, progress=progress,
                        csv_view=_csv_view)


def _csv_view(df: pd.DataFrame) -> pd.DataFrame:
    """Absent optional ids as empty CSV cells."""
    df = df.copy()
    for col in ("device_id", "ip_id"):
        v = df[col]
        df[col] = v.astype("Int64").mask(v == ABSENT_ID)
    return df
