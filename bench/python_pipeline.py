"""The Python pipeline a team would write without libfraud, for bench/report.py: the same trained
models, the same transactions, one transaction per call.

  features   pandas point-in-time aggregates over an in-memory history (the payments preset's 44
             features, as export/SCHEMA.md defines them; windows and max_scan from the bundle's spec)
  sample     the 2-hop neighbourhood (most recent `fanout` per entity) built in Python/NumPy over
             per-entity index lists (same definitions as tests/test_sampler.py's reference; the
             sampler's graph fields, country and/or mcc, appended to the transaction features)
  gnn        the trained FraudGnn (PyG SAGEConv) in eager PyTorch, one intra-op thread, no_grad
  trees      xgboost Booster.inplace_predict on [features, GNN logit, embedding], nthread=1
  ingest     the transaction appended to the history and the entity indexes

Each stage is timed with perf_counter_ns; the sum is the per-transaction latency.
"""

from __future__ import annotations

import gc
import math
import time

import numpy as np
import pandas as pd

HOUR = 3_600_000
DAY = 24 * HOUR
ENTITIES = ("card", "device", "merchant", "ip")
CARD, DEVICE, MERCHANT, IP = range(4)
STAGES = ("features", "sample", "gnn", "trees", "ingest")
CODES = ("country", "mcc")  # the payments schema's categorical fields (possible graph fields)


def payments_names(windows, distinct_window_ms: int) -> list[str]:
    """The payments preset's feature names for these count/sum windows and distinct window."""
    from libfraud.data.declared import window_label
    wl, dl = [window_label(w) for w in windows], window_label(distinct_window_ms)
    return (["amount", "log_amount", "hour_of_day", "country", "mcc"]
            + [f"{e}_{what}_{w}" for e in ENTITIES for w in wl for what in ("count", "amount_sum")]
            + [f"{e}_seconds_since_last" for e in ENTITIES]
            + ["card_amount_ratio_to_mean", "card_amount_zscore", "merchant_amount_ratio_to_mean",
               f"card_distinct_devices_{dl}", f"card_distinct_ips_{dl}", f"device_distinct_cards_{dl}",
               f"ip_distinct_cards_{dl}", "card_device_is_new", "card_ip_is_new", "card_mcc_is_new",
               "card_country_changed"])


def payments_windows(spec: dict) -> tuple[list[int], int, int]:
    """(count/sum windows, distinct window, max_scan) of a payments-preset feature spec (JSON form);
    ValueError for any other spec: this pipeline hand-codes those 44 features."""
    feats = spec["features"]
    windows = [f["window_ms"] for f in feats if f["kind"] == "window" and f["entity"] == "card"
               and f["agg"] == "count"]
    distinct = [f["window_ms"] for f in feats if f["kind"] == "distinct"]
    plain = all(f.get("filter") is None and not f.get("offset_ms") and "max_scan" not in f for f in feats)
    names = [f["name"] for f in feats]
    if not distinct or not plain or names != payments_names(windows, distinct[0]):
        raise ValueError("the Python pipeline computes the payments preset's features only; the spec has "
                         f"{names[:6]}...")
    return windows, distinct[0], int(spec["max_scan"])


class PythonPipeline:
    def __init__(self, history: pd.DataFrame, capacity: int, booster, gnn_model, spec: dict,
                 fanout: int, graph_fields=()) -> None:
        """``spec``: the bundle's feature spec (manifest features.spec), the payments preset's
        features; ``graph_fields``: the sampler's (manifest gnn.sampler.graph_fields)."""
        import torch
        torch.set_num_threads(1)
        self.torch = torch
        self.booster = booster
        booster.set_param({"nthread": 1})
        self.model = gnn_model.eval()
        self.windows, self.dw, self.max_scan = payments_windows(spec)
        self.K = fanout
        unknown = [g for g in graph_fields if g not in CODES]
        if unknown:
            raise ValueError(f"graph fields {unknown}: the payments schema's are {CODES}")
        self.graph_fields = list(graph_fields)
        self.Ft = 4 + len(self.graph_fields)
        # The in-memory history: a preallocated DataFrame, rows appended in time order.
        n = len(history)
        self.df = pd.DataFrame({
            "timestamp_ms": np.zeros(capacity, np.int64), "amount": np.zeros(capacity, np.float64),
            **{e: np.full(capacity, -1, np.int64) for e in ENTITIES},
            "country": np.zeros(capacity, np.int32), "mcc": np.zeros(capacity, np.int32)})
        for col in ("timestamp_ms", "amount", "country", "mcc"):
            self.df.loc[: n - 1, col] = history[col].to_numpy()
        for e in ENTITIES:
            self.df.loc[: n - 1, e] = history[f"{e}_id"].to_numpy()
        self.n = n
        # entity type -> id -> row positions (append order)
        self.index: list[dict[int, list[int]]] = [{} for _ in ENTITIES]
        for e, name in enumerate(ENTITIES):
            for pos, eid in enumerate(history[f"{name}_id"].to_numpy()):
                if eid >= 0:
                    self.index[e].setdefault(int(eid), []).append(pos)

    # ------------------------------------------------------------------------------ stages
    def _hist(self, e: int, eid: int, t: int) -> pd.DataFrame | None:
        if eid < 0:
            return None
        pos = self.index[e].get(eid, [])
        h = self.df.take(pos)
        return h[h["timestamp_ms"] < t]

    def features(self, q: dict) -> np.ndarray:
        t, amount = q["timestamp_ms"], q["amount"]
        ids = [q[f"{e}_id"] for e in ENTITIES]
        hist = [self._hist(e, ids[e], t) for e in range(4)]
        row = [amount, math.log1p(amount), (t // HOUR) % 24, q["country"], q["mcc"]]
        for h in hist:
            for w in self.windows:
                if h is None:
                    row += [math.nan, math.nan]
                else:
                    inside = h[h["timestamp_ms"] >= t - w]
                    row += [len(inside), inside["amount"].sum()]
        for h in hist:
            row.append(math.nan if h is None or h.empty else (t - h["timestamp_ms"].max()) / 1000.0)
        card, merchant = hist[CARD], hist[MERCHANT]
        row.append(amount / card["amount"].mean() if card is not None and len(card) else math.nan)
        if card is not None and len(card) >= 2:
            mean, std = card["amount"].mean(), card["amount"].std(ddof=1)
            row.append((amount - mean) / std if std > 1e-6 * abs(mean) else math.nan)
        else:
            row.append(math.nan)
        row.append(amount / merchant["amount"].mean() if merchant is not None and len(merchant) else math.nan)

        def distinct(owner: int, other: int) -> float:
            h = hist[owner]
            if h is None:
                return math.nan
            recent = h.tail(self.max_scan)
            recent = recent[(recent["timestamp_ms"] >= t - self.dw) & (recent[ENTITIES[other]] >= 0)]
            return recent[ENTITIES[other]].nunique()

        row += [distinct(CARD, DEVICE), distinct(CARD, IP), distinct(DEVICE, CARD), distinct(IP, CARD)]
        recent_card = card.tail(self.max_scan) if card is not None else None
        for e in (DEVICE, IP):
            if ids[e] < 0 or recent_card is None or recent_card.empty:
                row.append(math.nan)
            else:
                row.append(float(not (recent_card[ENTITIES[e]] == ids[e]).any()))
        if recent_card is None or recent_card.empty:
            row += [math.nan, math.nan]
        else:
            row.append(float(not (recent_card["mcc"] == q["mcc"]).any()))
            row.append(float(card["country"].iloc[-1] != q["country"]))
        return np.asarray(row, dtype=np.float32)

    def _txn_x(self, ts: np.ndarray, amount: np.ndarray, codes: dict, t: int) -> np.ndarray:
        """log1p(amount), sin/cos of the UTC hour, log1p(age s) (0 for the target), graph fields
        (a code as a number, missing = 0)."""
        hour = (ts % DAY) // HOUR
        age = (t - ts) / 1000.0
        cols = [np.log1p(amount), np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
                np.where(age == 0, 0.0, np.log1p(age))]
        cols += [np.where(np.asarray(codes[g]) < 0, 0.0, codes[g]) for g in self.graph_fields]
        return np.stack(cols, axis=-1)

    def _degree(self, f: int, fid: int, ts: int) -> int:
        pos = self.index[f].get(fid)
        if not pos:
            return 0
        return int(np.searchsorted(self.df["timestamp_ms"].to_numpy()[pos], ts, side="left"))

    def sample(self, q: dict) -> dict:
        E, K, Ft = 4, self.K, self.Ft
        t = q["timestamp_ms"]
        a = {"target_x": np.zeros((1, Ft), np.float32), "ent1_x": np.zeros((1, E, E + 1), np.float32),
             "ent1_mask": np.zeros((1, E), np.float32), "txn2_x": np.zeros((1, E, K, Ft), np.float32),
             "txn2_mask": np.zeros((1, E, K), np.float32), "ent3_x": np.zeros((1, E, K, E, E + 1), np.float32),
             "ent3_mask": np.zeros((1, E, K, E), np.float32)}
        a["target_x"][0] = self._txn_x(np.array([t]), np.array([q["amount"]]),
                                       {g: np.array([q[g]]) for g in CODES}, t)[0]
        for e, name in enumerate(ENTITIES):
            eid = q[f"{name}_id"]
            if eid < 0:
                continue
            h = self._hist(e, eid, t)
            a["ent1_x"][0, e, e] = 1.0
            a["ent1_x"][0, e, E] = math.log1p(len(h))
            a["ent1_mask"][0, e] = 1.0
            picks = h.iloc[::-1].head(K)  # most recent first
            if picks.empty:
                continue
            k = len(picks)
            ts = picks["timestamp_ms"].to_numpy()
            a["txn2_x"][0, e, :k] = self._txn_x(ts, picks["amount"].to_numpy(),
                                                {g: picks[g].to_numpy() for g in CODES}, t)
            a["txn2_mask"][0, e, :k] = 1.0
            for f, fname in enumerate(ENTITIES):
                fids = picks[fname].to_numpy()
                for j in range(k):
                    if fids[j] < 0:
                        continue
                    a["ent3_x"][0, e, j, f, f] = 1.0
                    a["ent3_x"][0, e, j, f, E] = math.log1p(self._degree(f, int(fids[j]), int(ts[j])))
                    a["ent3_mask"][0, e, j, f] = 1.0
        return a

    def gnn(self, arrays: dict) -> np.ndarray:
        from libfraud.models.gnn import INPUT_NAMES
        torch = self.torch
        with torch.no_grad():
            logit, emb = self.model(*(torch.from_numpy(arrays[k]) for k in INPUT_NAMES))
        return np.concatenate([logit.numpy().reshape(1), emb.numpy().reshape(-1)])

    def trees(self, row: np.ndarray) -> float:
        return float(self.booster.inplace_predict(row.reshape(1, -1), missing=np.nan)[0])

    def ingest(self, q: dict) -> None:
        pos = self.n
        self.df.iloc[pos, :] = [q["timestamp_ms"], q["amount"], *(q[f"{e}_id"] for e in ENTITIES),
                                q["country"], q["mcc"]]
        for e, name in enumerate(ENTITIES):
            if q[f"{name}_id"] >= 0:
                self.index[e].setdefault(int(q[f"{name}_id"]), []).append(pos)
        self.n += 1

    # ------------------------------------------------------------------------------ driver
    def score_and_ingest_timed(self, live: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, features rows, ns [n, len(STAGES)]): each transaction scored then ingested."""
        clock = time.perf_counter_ns
        cols = ["timestamp_ms", "amount", *(f"{e}_id" for e in ENTITIES), "country", "mcc"]
        rows = [dict(zip(cols, (int(v) if c != "amount" else float(v) for c, v in zip(cols, r))))
                for r in live[cols].itertuples(index=False)]
        scores = np.empty(len(rows), np.float32)
        feats: list = [None] * len(rows)
        ns = np.empty((len(rows), len(STAGES)), np.int64)
        gc.disable()
        try:
            for i, q in enumerate(rows):
                t0 = clock()
                x = self.features(q)
                t1 = clock()
                arrays = self.sample(q)
                t2 = clock()
                g = self.gnn(arrays)
                t3 = clock()
                scores[i] = self.trees(np.concatenate([x, g]).astype(np.float32))
                t4 = clock()
                self.ingest(q)
                t5 = clock()
                ns[i] = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
                feats[i] = x
        finally:
            gc.enable()
        return scores, np.stack(feats), ns
