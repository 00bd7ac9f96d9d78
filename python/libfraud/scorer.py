"""Scorer: a bundle served by the C++ core, from pandas (in the user's own column names, as the
bundle's declared schema names them) or libfraud.events arrays. It calls the same C API a payment
switch calls, so Python and C give the same scores."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import _core
from .events import EventArrays, LabelArrays


_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}
_logger = logging.getLogger("libfraud")


def _forward_log(level: int, message: str) -> None:
    _logger.log(_LEVELS.get(level, logging.ERROR), message)


# The core never prints; its messages go to the "libfraud" logger (the handlers decide what shows).
_core.set_log_callback(_forward_log, 0)


def _bundle_schema(bundle):
    """The declared schema a bundle's manifest carries: how the user's columns map to events."""
    from .data.declared import Schema
    path = Path(bundle) / "manifest.json"
    return Schema.from_json(json.loads(path.read_text(encoding="utf-8"))["schema"], source=str(path))


class Scorer:
    """Open a bundle; keep a temporal store; score transactions.

    Thread safety follows the C API: `score` and `features` may run from many threads;
    `ingest` and `score_and_ingest` are exclusive (the core serialises them).
    """

    def __init__(self, bundle: str | os.PathLike, *, expected_transactions: int = 0,
                 gnn_backend: str = "", plugin_dir: str | os.PathLike = "",
                 state_dir: str | os.PathLike = "", fsync_every_ingest: bool = False,
                 retention_ms: int = 0, max_history_per_entity: int = 0,
                 trusted_public_key: str | os.PathLike = "", explain_table_bytes: int = 0,
                 max_ahead_ms: int = 0, quarantine_corrupt_log_tail: bool = False,
                 drift_window_events: int = 0):
        """gnn_backend: "native", "aoti", "torchscript"... for a GNN bundle; "" = the first of the
        bundle's backends (its default first) that loads on this machine (see `gnn_backend`).
        state_dir: keep the store durable there (snapshot + log of every acknowledged ingest;
        restored on open). retention_ms / max_history_per_entity: bound the store's memory.
        trusted_public_key: an ed25519 PEM; the bundle's manifest must be signed by its key.
        explain_table_bytes: memory for the fast reasons kernel's tables (0 = 256 MiB; past it,
        the recursive TreeSHAP: the same reasons, slower). max_ahead_ms: refuse to store an event
        more than this far ahead of the later of the store's watermark and the clock (0 = no bound;
        one far-future event would make every later one out of order).
        quarantine_corrupt_log_tail: open a state_dir whose log's last record is damaged (a bit
        flip, not a crash) by moving its bytes to store.log.quarantine-<unix ms> (logged at WARN;
        its transactions are not restored) instead of refusing with FRAUD_STATUS_IO_ERROR.
        drift_window_events: the scored events `drift` compares with the bundle's reference
        (1000 .. 2**32; 0 = 10000)."""
        self.bundle = os.fspath(bundle)
        self._engine = _core.Engine(self.bundle, expected_transactions, gnn_backend,
                                    os.fspath(plugin_dir), os.fspath(state_dir), fsync_every_ingest,
                                    retention_ms, max_history_per_entity, os.fspath(trusted_public_key),
                                    int(explain_table_bytes), int(max_ahead_ms),
                                    bool(quarantine_corrupt_log_tail), int(drift_window_events))
        self.schema = _bundle_schema(self.bundle)
        self._challenger: str | None = None

    def events(self, transactions) -> EventArrays:
        """The core's arrays for a DataFrame in the schema's columns (or EventArrays as they are)."""
        if isinstance(transactions, EventArrays):
            return transactions
        if isinstance(transactions, pd.DataFrame):
            from .data.declared import load_events
            return load_events(transactions, self.schema, labels=False)[0]
        raise TypeError("transactions must be a pandas DataFrame with the schema's columns "
                        "or libfraud.events.EventArrays")

    @property
    def gnn_backend(self) -> str:
        """The GNN backend in use, or "none" for a tree-only bundle."""
        return self._engine.gnn_backend

    @property
    def feature_names(self) -> list[str]:
        return list(self._engine.feature_names)

    @property
    def threshold(self) -> float:
        return self._engine.threshold

    @property
    def store_size(self) -> int:
        return int(self._engine.store_size()[0])

    @property
    def watermark_ms(self) -> int:
        return int(self._engine.store_size()[1])

    def swap_bundle(self, bundle: str | os.PathLike, *, gnn_backend: str = "",
                    plugin_dir: str | os.PathLike = "") -> None:
        """Load and verify another bundle, then serve with it; the store (and the challenger, if
        any) is kept. On failure the current bundle keeps serving and FraudError says why."""
        schema = _bundle_schema(bundle)  # before the swap: a bundle whose manifest cannot be read stays out
        self._engine.swap_bundle(os.fspath(bundle), gnn_backend, os.fspath(plugin_dir))
        self.bundle = os.fspath(bundle)
        # The core kept the store's layout; the columns (names, time unit) may differ.
        self.schema = schema

    # ---- decisions, a shadow challenger, decision records (fraud.h "Decisions")

    @property
    def decision_bands(self) -> dict:
        """The serving bundle's score bands: {"review_from", "decline_from"} (inf = no such band)."""
        review, decline = self._engine.decision_bands
        return {"review_from": review, "decline_from": decline}

    @property
    def rules(self) -> list[dict]:
        """The serving bundle's decision rules: [{"code", "name", "when", "action", "shadow"}]."""
        return list(self._engine.rules)

    @property
    def bundle_sha256(self) -> str:
        """SHA-256 of the serving bundle's manifest.json: what decision records name."""
        return self._engine.bundle_sha256[0]

    @property
    def challenger(self) -> str | None:
        """The shadow challenger's bundle directory, or None."""
        return self._challenger

    def set_challenger(self, bundle: str | os.PathLike | None, *, gnn_backend: str = "",
                       plugin_dir: str | os.PathLike = "") -> None:
        """Score every event with this bundle too, beside the serving one, on the same store state:
        its scores and decisions go to the decide frames' challenger columns, the decision records
        and stats() (challenger_*); the served scores are unchanged. It must have the serving
        bundle's schema. None or "" clears it. On failure nothing changes and FraudError says why."""
        path = os.fspath(bundle) if bundle else ""
        self._engine.set_challenger(path, gnn_backend, os.fspath(plugin_dir))
        self._challenger = path or None

    def promote_challenger(self) -> None:
        """The challenger becomes the serving bundle at once (no reload; a hot swap); afterwards
        there is no challenger."""
        self._engine.promote_challenger()
        self.bundle, self._challenger = self._challenger or self.bundle, None
        self.schema = _bundle_schema(self.bundle)

    def decision_log(self, path: str | os.PathLike | None) -> None:
        """Append every decide call's records to this file as JSON Lines (fraud.h
        fraud_engine_set_decision_log); None closes it."""
        self._engine.set_decision_log(os.fspath(path) if path else "")

    def set_decision_callback(self, fn) -> None:
        """fn(records: list[dict]) once per decide call, from the calling thread (the GIL taken
        inside); decision codes are ints (0 allow, 1 review, 2 decline), rule hits bit masks.
        It must not call this scorer's decide or exclusive methods. None removes it."""
        self._engine.set_decision_callback(fn)

    def decide(self, transactions, k: int = 0, *, min_score: float = 0.0) -> pd.DataFrame:
        """Scores and the bundle's decisions against the store as it stands (nothing is stored):
        a frame with ``event_id`` (the core's id), ``score``, ``decision`` ("allow", "review",
        "decline"), ``rule_hits`` (codes of the rules that held), with a challenger set
        ``challenger_score`` and ``challenger_decision``, and for k >= 1 the reason columns of
        explain. Each decision comes from the same row as its score."""
        events = self.events(transactions)
        out = self._engine.decide(*events.args(), k=int(k), min_score=float(min_score))
        return self._decision_frame(out, events.event_id, int(k), getattr(transactions, "index", None))

    def score_and_ingest_decide(self, transactions, k: int = 0, *, min_score: float = 0.0) -> pd.DataFrame:
        """The serving call with decisions: as score_and_ingest, and the frame of decide."""
        events = self.events(transactions)
        out = self._engine.decide(*events.args(), k=int(k), min_score=float(min_score), ingest=True)
        return self._decision_frame(out, events.event_id, int(k), getattr(transactions, "index", None))

    def decide_replaying_labels(self, transactions, k: int = 0, *, min_score: float = 0.0,
                                labels: LabelArrays | None = None, history=None) -> pd.DataFrame:
        """score_and_ingest_replaying_labels with decisions: the frame of decide."""
        events, labels = self._events_and_labels(transactions, labels)
        parts: list[tuple] = []
        self._replay(events, labels, history, decide=(int(k), float(min_score), parts))
        return self._decision_frame(self._merged_decisions(parts, int(k)), events.event_id, int(k),
                                    getattr(transactions, "index", None))

    def decide_after(self, history, transactions, k: int = 0, *, min_score: float = 0.0) -> pd.DataFrame:
        """score_and_ingest_after with decisions: the frame of decide."""
        events = self.events(transactions)
        parts: list[tuple] = []
        self._replay(events, None, history, decide=(int(k), float(min_score), parts))
        return self._decision_frame(self._merged_decisions(parts, int(k)), events.event_id, int(k),
                                    getattr(transactions, "index", None))

    @staticmethod
    def _merged_decisions(parts: list[tuple], k: int) -> tuple:
        if not parts:
            return (np.empty(0, np.float32), np.empty(0, np.float32), np.empty(0, np.int32),
                    np.empty(0, np.int32), np.empty(0, np.uint64), np.empty(0, np.uint64),
                    *(np.empty((0, k)) for _ in range(5)), np.empty(0, np.uint64))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(12))

    _DECISION_NAMES = np.array(["allow", "review", "decline", None], dtype=object)

    def _decision_frame(self, out: tuple, event_id, k: int, index) -> pd.DataFrame:
        scores, ch_scores, decisions, ch_decisions, hits, _, *reasons = out
        codes = [r["code"] for r in self.rules]
        names = self._DECISION_NAMES
        frame = pd.DataFrame({
            "event_id": np.asarray(event_id, dtype=np.int64),
            "score": np.asarray(scores, dtype=np.float32),
            "decision": names[np.asarray(decisions, dtype=np.int64)],
            "rule_hits": [[c for i, c in enumerate(codes) if int(h) >> i & 1] for h in hits],
        }, index=index)
        if self._challenger is not None:
            frame["challenger_score"] = np.asarray(ch_scores, dtype=np.float32)
            frame["challenger_decision"] = names[np.asarray(ch_decisions, dtype=np.int64)]  # -1: the last, None
        if k > 0:
            explained = self._reason_frame((scores, *reasons), k, index)
            frame = pd.concat([frame, explained.drop(columns="score")], axis=1)
        return frame

    def snapshot(self) -> None:
        """Write the store's snapshot to the state directory and start the new log it names."""
        self._engine.snapshot()

    def stats(self) -> dict:
        """Counters: scored, ingested, rejected (by status), swaps, store size, recent p50/p99 us;
        the challenger's since it was set (challenger_set, _scored, _decision_disagreements,
        _score_abs_diff_sum/_mean, _latency_p50_us/_p99_us, _failures); decision_records and
        decision_log_errors."""
        return self._engine.stats()

    def drift(self) -> pd.DataFrame:
        """Population stability of the last scored events against the bundle's drift reference
        (fraud_engine_drift; export/BUNDLE.md "drift"): one row per model feature, then ``score``
        (the served score), with ``feature``, ``index`` (in the feature order; -1 for the score),
        ``psi`` (NaN while nothing was scored) and ``window_events``, largest PSI first. Reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25
        significant. FraudError (FRAUD_STATUS_NO_DRIFT_REFERENCE) for a bundle without one."""
        index, psi, events = self._engine.drift()
        names = self.feature_names
        frame = pd.DataFrame({"feature": ["score" if i < 0 else names[i] for i in index],
                              "index": np.asarray(index, dtype=np.int64),
                              "psi": np.asarray(psi, dtype=np.float64), "window_events": int(events)})
        return frame.sort_values("psi", ascending=False, kind="stable", na_position="last").reset_index(drop=True)

    def ingest(self, transactions) -> None:
        self._engine.ingest(*self.events(transactions).args())

    def score(self, transactions) -> np.ndarray:
        """Probabilities against the store as it stands; nothing is stored."""
        return self._engine.score(*self.events(transactions).args())

    def score_and_ingest(self, transactions) -> np.ndarray:
        """The serving call: each transaction scored, then stored, in order."""
        return self._engine.score_and_ingest(*self.events(transactions).args())

    # ---- reasons (fraud_engine_explain_events; export/BUNDLE.md "explanation")

    @property
    def reason_families(self) -> list[dict]:
        """The bundle's reason families: [{"code", "name", "text"}]; [] without explanation data."""
        return [{"code": c, "name": n, "text": t} for c, n, t in self._engine.reason_families]

    def explain(self, transactions, k: int = 3, *, min_score: float = 0.0) -> pd.DataFrame:
        """Scores and their reasons against the store as it stands (nothing is stored): a frame
        with ``score`` and, for j = 1..k, ``reason_j`` (the family's name), ``reason_j_code``,
        ``reason_j_text``, ``reason_j_contribution`` (log-odds of the trees' margin),
        ``reason_j_feature`` and ``reason_j_value`` (the family's most contributing feature and
        its value). Reasons are the families that raised the score, largest first: fewer than k
        when fewer did, none for a score below ``min_score``. FraudError
        (FRAUD_STATUS_NO_EXPLANATION) for a bundle without explanation data."""
        events = self.events(transactions)
        out = self._engine.explain(*events.args(), k=int(k), min_score=float(min_score))
        return self._reason_frame(out, int(k), getattr(transactions, "index", None))

    def score_and_ingest_explained(self, transactions, k: int = 3, *, min_score: float = 0.0) -> pd.DataFrame:
        """The serving call with reasons: as score_and_ingest, and the frame of explain."""
        events = self.events(transactions)
        out = self._engine.explain(*events.args(), k=int(k), min_score=float(min_score), ingest=True)
        return self._reason_frame(out, int(k), getattr(transactions, "index", None))

    def explain_replaying_labels(self, transactions, k: int = 3, *, min_score: float = 0.0,
                                 labels: LabelArrays | None = None, history=None) -> pd.DataFrame:
        """score_and_ingest_replaying_labels with reasons: the frame of explain."""
        events, labels = self._events_and_labels(transactions, labels)
        parts: list[tuple] = []
        self._replay(events, labels, history, reasons=(int(k), float(min_score), parts))
        return self._reason_frame(self._merged(parts, int(k)), int(k), getattr(transactions, "index", None))

    @staticmethod
    def _merged(parts: list[tuple], k: int) -> tuple:
        if not parts:
            return ((np.empty(0, np.float32),) + tuple(np.empty((0, k)) for _ in range(5))
                    + (np.empty(0, np.uint64),))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(7))

    def explain_after(self, history, transactions, k: int = 3, *, min_score: float = 0.0) -> pd.DataFrame:
        """score_and_ingest_after with reasons: the frame of explain."""
        parts: list[tuple] = []
        self._replay(self.events(transactions), None, history, reasons=(int(k), float(min_score), parts))
        return self._reason_frame(self._merged(parts, int(k)), int(k), getattr(transactions, "index", None))

    def explain_neighbours(self, transactions, m: int = 3) -> pd.DataFrame:
        """GNN bundles: for each transaction (scored against the store as it stands, nothing
        stored), the up to m sampled earlier events whose absence lowers the trees' log-odds most:
        one row per (transaction, neighbour) with ``row`` (the transaction's position),
        ``neighbour_event_id``, ``via`` (the entity type it was sampled through), ``slot`` and
        ``delta`` (log-odds with it minus without it). FraudError (FRAUD_STATUS_NO_EXPLANATION)
        for a bundle without a GNN."""
        ids, types, slots, deltas, counts = self._engine.explain_neighbours(
            *self.events(transactions).args(), m=int(m))
        entity_types = list(self._engine.entity_types)
        rows = [(i, int(ids[i, j]), entity_types[types[i, j]], int(slots[i, j]), float(deltas[i, j]))
                for i in range(len(counts)) for j in range(int(counts[i]))]
        return pd.DataFrame(rows, columns=["row", "neighbour_event_id", "via", "slot", "delta"])

    def contributions(self, rows) -> pd.DataFrame:
        """Each feature's TreeSHAP contribution to the trees' margin (log-odds, before calibration)
        for rows in the bundle's feature order (a frame of them, e.g. from ``features``), and
        ``expected_value``; each row sums to its margin."""
        values = self._engine.contributions(np.ascontiguousarray(rows, dtype=np.float32))
        return pd.DataFrame(values, columns=self.feature_names + ["expected_value"],
                            index=getattr(rows, "index", None))

    def _reason_frame(self, out: tuple, k: int, index) -> pd.DataFrame:
        scores, codes, families, contributions, features, values, counts = out
        names = [f["name"] for f in self.reason_families]
        texts = [f["text"] for f in self.reason_families]
        feature_names = self.feature_names
        frame = {"score": np.asarray(scores, dtype=np.float32)}
        for j in range(k):
            fam = np.asarray(families)[:, j] if len(scores) else np.empty(0, np.int32)
            used = fam >= 0
            feat = np.asarray(features)[:, j] if len(scores) else np.empty(0, np.int32)
            frame[f"reason_{j + 1}"] = np.where(used, np.array(names + [""], dtype=object)[fam], None)
            frame[f"reason_{j + 1}_code"] = np.asarray(codes)[:, j] if len(scores) else np.empty(0, np.int32)
            frame[f"reason_{j + 1}_text"] = np.where(used, np.array(texts + [""], dtype=object)[fam], None)
            frame[f"reason_{j + 1}_contribution"] = (np.asarray(contributions)[:, j] if len(scores)
                                                     else np.empty(0))
            frame[f"reason_{j + 1}_feature"] = np.where(feat >= 0, np.array(feature_names + [""],
                                                                             dtype=object)[feat], None)
            frame[f"reason_{j + 1}_value"] = np.asarray(values)[:, j] if len(scores) else np.empty(0, np.float32)
        frame["n_reasons"] = np.asarray(counts, dtype=np.int64)
        return pd.DataFrame(frame, index=index)

    def score_and_ingest_replaying_labels(self, transactions, labels: LabelArrays | None = None,
                                          history=None) -> np.ndarray:
        """Serving as it happens, for evaluation: each event scored then stored, in order, and each
        label applied (fraud_engine_label) as soon as its label time has passed, before the first
        event after it. ``labels`` default to the frame's own label columns. The scores equal the
        training replay's (labels become visible strictly after their label time either way).
        ``history``: earlier events (a DataFrame with its labels, or EventArrays) stored first,
        unscored, their labels applied on the same clock (warm-up)."""
        events, labels = self._events_and_labels(transactions, labels)
        return self._replay(events, labels, history)

    def warm_up(self, history) -> None:
        """Store earlier events with their labels (each applied once its label time has passed):
        the store then holds what a switch running since then would."""
        self._replay(EventArrays.make([], []), None, history)

    def score_and_ingest_after(self, history, transactions) -> np.ndarray:
        """warm_up(history), then score_and_ingest(transactions), the history's labels still
        applied as they fall due; the transactions' own labels are not used."""
        return self._replay(self.events(transactions), None, history)

    def _events_and_labels(self, transactions, labels):
        if labels is None and isinstance(transactions, pd.DataFrame):
            from .data.declared import load_events
            return load_events(transactions, self.schema)
        return self.events(transactions), labels

    def _replay(self, events: EventArrays, labels: LabelArrays | None, history=None,
                reasons: tuple | None = None, decide: tuple | None = None) -> np.ndarray:
        """reasons: (k, min_score, parts): scored batches are explained, their explain outputs
        appended to parts in order; decide: the same with the decide outputs."""
        scored_from = 0
        if history is not None:
            past, past_labels = self._events_and_labels(history, None)
            if len(past) and len(events) and past.time_ms[-1] > events.time_ms[0]:
                raise ValueError("the history must end before the scored transactions start (its last "
                                 "event is later than their first)")
            scored_from = len(past)
            events = EventArrays.concat([past, events])
            labels = LabelArrays.concat([past_labels, labels])
        scores = np.empty(len(events), dtype=np.float32)

        def step(a: int, b: int) -> None:
            # History rows are stored unscored; the rest scored then stored, in order.
            if a < scored_from:
                self._engine.ingest(*events.slice(a, min(b, scored_from)).args())
                a = min(b, scored_from)
            if a < b and decide is not None:
                k, min_score, parts = decide
                out = self._engine.decide(*events.slice(a, b).args(), k=k, min_score=min_score, ingest=True)
                scores[a:b] = out[0]
                parts.append(out)
            elif a < b and reasons is not None:
                k, min_score, parts = reasons
                out = self._engine.explain(*events.slice(a, b).args(), k=k, min_score=min_score, ingest=True)
                scores[a:b] = out[0]
                parts.append(out)
            elif a < b:
                scores[a:b] = self._engine.score_and_ingest(*events.slice(a, b).args())

        if labels is None or len(labels) == 0:
            step(0, len(events))
            return scores[scored_from:]
        from .features import rows_of
        # Labels of events outside this batch must name stored events; the core says so otherwise.
        order = np.argsort(labels.label_time_ms, kind="stable")
        labels = labels.take(order)
        due = np.searchsorted(labels.label_time_ms, events.time_ms, side="left")  # labels with L < t
        cuts = np.flatnonzero(np.diff(due)) + 1  # where more labels become due
        starts = np.concatenate([[0], cuts]).astype(np.int64)
        stops = np.concatenate([cuts, [len(events)]]).astype(np.int64)
        applied = 0
        for a, b in zip(starts, stops):
            if due[a] > applied:
                self._engine.label(*labels.take(np.arange(applied, due[a])).args())
                applied = int(due[a])
            step(int(a), int(b))
        if applied < len(labels):
            rest = labels.take(np.arange(applied, len(labels)))
            known = rows_of(events.event_id, rest.event_id) >= 0
            self._engine.label(*rest.take(known).args())
        return scores[scored_from:]

    def label(self, labels) -> None:
        """Labels for stored events (fraud_engine_label): LabelArrays, or a DataFrame in the
        schema's columns with its event id, label and (when declared) label time columns.
        All or nothing; a changed label, an unknown event or a label time before its event raise
        FraudError naming it."""
        if isinstance(labels, pd.DataFrame):
            from .data.declared import load_labels
            labels = load_labels(labels, self.schema)
        if not isinstance(labels, LabelArrays):
            raise TypeError("labels must be libfraud.events.LabelArrays or a DataFrame")
        self._engine.label(*labels.args())

    def features(self, transactions) -> pd.DataFrame:
        rows = self._engine.features(*self.events(transactions).args())
        return pd.DataFrame(rows, columns=self.feature_names)

    def score_features(self, rows: np.ndarray) -> np.ndarray:
        """The compiled trees alone on rows in the bundle's feature order (NaN = missing)."""
        return self._engine.score_features(np.ascontiguousarray(rows, dtype=np.float32))

    def score_and_ingest_timed(self, transactions) -> tuple[np.ndarray, np.ndarray]:
        """As score_and_ingest, one C API call per transaction; also each call's latency in ns
        measured inside the core's caller (no Python overhead in the figure)."""
        return self._engine.score_and_ingest_timed(*self.events(transactions).args())
