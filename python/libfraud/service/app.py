"""The HTTP service: FastAPI routes over one `Scorer` (the C++ core) per worker process.

Threading follows the core's contract: scoring calls run in the server's thread pool and release
the GIL inside the core, so many score at once; the calls that change the store (ingest, labels)
are serialised by the core itself (one writer at a time, scores see whole batches). No Python lock
sits on the scoring path. Bodies are read with a size limit and a deadline before any worker
thread is used, so a slow or oversized client costs a connection, never a scoring thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import threading
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import _core
from ..scorer import Scorer
from .config import ServiceConfig
from .events_json import EventDecoder, RequestError
from .metrics import CONTENT_TYPE, ServiceMetrics
from .openapi import event_schema, label_schema

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("libfraud.service")

# fraud_status -> HTTP status: the client's input (422), a conflict with the store's state (409),
# the server's own trouble (503: the durable log could not be written; 500: a bug).
_HTTP_STATUS = {
    "FRAUD_STATUS_INVALID_ARGUMENT": 422, "FRAUD_STATUS_INVALID_TRANSACTION": 422,
    "FRAUD_STATUS_OUT_OF_RETENTION": 422, "FRAUD_STATUS_INVALID_LABEL": 422,
    "FRAUD_STATUS_OUT_OF_ORDER": 409, "FRAUD_STATUS_DUPLICATE_TRANSACTION": 409,
    "FRAUD_STATUS_LABEL_CONFLICT": 409, "FRAUD_STATUS_NO_EXPLANATION": 409,
    "FRAUD_STATUS_UNKNOWN_EVENT": 404,
    # /admin/swap named a bundle the core refuses (the old one keeps serving)
    "FRAUD_STATUS_BUNDLE_INVALID": 422, "FRAUD_STATUS_BUNDLE_VERSION": 422, "FRAUD_STATUS_BUNDLE_CHECKSUM": 422,
    "FRAUD_STATUS_LOAD_ERROR": 422, "FRAUD_STATUS_BACKEND_UNAVAILABLE": 422,
    "FRAUD_STATUS_IO_ERROR": 503,
}


class _HttpError(Exception):
    def __init__(self, code: int, detail, headers: dict | None = None, status: str = ""):
        self.code, self.detail, self.headers, self.status = code, detail, headers, status


def _json(payload, code: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, allow_nan=False, separators=(",", ":")), status_code=code,
                    media_type="application/json", headers=headers)


def _finite(x: float):
    return float(x) if math.isfinite(x) else None


def manifest_sha256(bundle: str) -> str:
    """sha256 of the bundle's manifest.json: the id a decision record and /metrics carry."""
    return hashlib.sha256((Path(bundle) / "manifest.json").read_bytes()).hexdigest()


class Service:
    """One worker's state: the scorer (opened, then warmed in the background), its decoder, metrics."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.scorer: Scorer | None = None
        self.decoder: EventDecoder | None = None
        self.bundle_path = config.bundle
        self.bundle_sha256 = ""
        self.rules: list[dict] = []
        self.generation = 0  # even: stable; odd: a swap or promotion is running
        self.error: str | None = None
        self.ready = threading.Event()
        self.metrics = ServiceMetrics(self)
        self._admin = threading.Lock()  # one swap or snapshot at a time

    def open(self) -> None:
        """Open the bundle (restoring the state directory), then replay the history files."""
        c = self.config
        try:
            scorer = Scorer(c.bundle, state_dir=c.state_dir, retention_ms=c.retention_ms,
                            max_history_per_entity=c.max_history_per_entity,
                            trusted_public_key=c.trusted_public_key, max_ahead_ms=c.max_ahead_ms,
                            gnn_backend=c.gnn_backend, drift_window_events=c.drift_window_events)
            self.decoder = EventDecoder(scorer.schema, c.max_batch)
            if c.challenger:
                scorer.set_challenger(c.challenger)
            if c.decision_log:
                scorer.decision_log(c.decision_log)
            self.scorer = scorer
            self.serving_changed()
            for path in c.history:
                from ..data.input_file import read_table
                log.info("replaying history %s", path)
                scorer.warm_up(read_table(path))
            self.ready.set()
            log.info("ready: bundle %s (sha256 %s), %d events in the store", c.bundle, self.bundle_sha256,
                     scorer.store_size)
        except Exception as e:  # reported by /readyz and every route; the process stays up to say so
            self.error = f"{type(e).__name__}: {e}"
            log.error("cannot serve: %s", self.error)

    @contextlib.contextmanager
    def changing(self):
        """Around a swap or promotion: the generation is odd while the serving bundle may change."""
        self.generation += 1
        try:
            yield
        finally:
            self.serving_changed()
            self.generation += 1

    def serving_changed(self) -> None:
        """After an open, swap or promotion: what responses and /metrics name."""
        s = self.scorer
        self.rules = s.rules
        self.bundle_sha256 = s.bundle_sha256
        self.bundle_path = s.bundle

    def require_ready(self) -> Scorer:
        if self.error:
            raise _HttpError(503, self.error)
        if not self.ready.is_set():
            raise _HttpError(503, "warming up: the store is being restored", {"Retry-After": "5"})
        return self.scorer

    def feature_drift(self) -> list[tuple[str, float]]:
        drift = getattr(self.scorer, "drift", None)
        if drift is None or not self.ready.is_set():
            return []
        try:
            frame = drift()
        except _core.FraudError:
            return []
        return [(str(f), float(p)) for f, i, p in zip(frame["feature"], frame["index"], frame["psi"])
                if i >= 0 and math.isfinite(p)]  # index -1: the score, its own gauge


async def _read_json(request: Request, config: ServiceConfig):
    """The body as JSON, within the size limit and the deadline."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
        raise _HttpError(413, f"body of {length} bytes; at most {config.max_body_bytes} (--max-body-bytes)")
    chunks, size = [], 0

    async def read():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise _HttpError(413, f"body over {config.max_body_bytes} bytes (--max-body-bytes)")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), config.body_timeout_s)
    except asyncio.TimeoutError:
        raise _HttpError(408, f"the body did not arrive within {config.body_timeout_s:g} s "
                              f"(--body-timeout)", {"Connection": "close"}) from None
    raw = b"".join(chunks)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RequestError(["body"], f"not UTF-8 at byte {e.start}", "json_invalid") from None
    except json.JSONDecodeError as e:
        raise RequestError(["body", e.pos], f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}",
                           "json_invalid") from None


def _min_score(body) -> float:
    v = body.get("min_score", 0.0) if isinstance(body, dict) else 0.0
    if type(v) not in (int, float) or not math.isfinite(v):
        raise RequestError(["body", "min_score"], f"min_score must be a number, got {v!r}")
    return float(v)


def _k(body, default: int) -> int:
    k = body.get("k", default) if isinstance(body, dict) else default
    if type(k) is not int or not 1 <= k <= 64:
        raise RequestError(["body", "k"], f"k must be an integer 1..64, got {k!r}")
    return k


_DECISIONS = ("allow", "review", "decline")


def _decided(ids: list, raw: tuple, rules: list[dict] | None, reasons: list | None) -> list[dict]:
    """One result per event from the core's decide arrays: score, decision, the codes of the active
    rules that held (and of the shadow ones, apart). A challenger's score is never returned: it goes
    to the decision log and the challenger's counters only, so no caller can act on it."""
    scores, decisions, hits = (np.asarray(raw[i]).tolist() for i in (0, 2, 4))
    out = []
    for i, event_id in enumerate(ids):
        r = {"event_id": event_id, "score": _finite(scores[i]), "decision": _DECISIONS[decisions[i]]}
        if rules is None:
            r["rules"] = None
            r["rules_note"] = "a bundle swap ran during this request: the decision record names the rules"
        elif hits[i]:
            held = [rule for j, rule in enumerate(rules) if hits[i] >> j & 1]
            r["rules"] = [x["code"] for x in held if not x["shadow"]]
            shadow = [x["code"] for x in held if x["shadow"]]
            if shadow:
                r["shadow_rules"] = shadow
        else:
            r["rules"] = []
        if reasons is not None:
            r["reasons"] = reasons[i]
        out.append(r)
    return out


def _results(ids: list, scores: np.ndarray, reasons: list | None = None) -> list[dict]:
    out = [{"event_id": i, "score": _finite(s)} for i, s in zip(ids, scores.tolist())]
    if reasons is not None:
        for r, rs in zip(out, reasons):
            r["reasons"] = rs
    return out


def _reason_lists(scorer: Scorer, raw: tuple) -> list[list[dict]]:
    """The core's reason arrays (codes, families, contributions, features, values, counts) as one
    list of {code, family, text, contribution, feature, value} per event."""
    codes, families, contributions, features, values, counts = raw
    fam = scorer.reason_families
    names = scorer.feature_names
    out = []
    for i, n in enumerate(np.asarray(counts).tolist()):
        out.append([{"code": int(codes[i][j]), "family": fam[int(families[i][j])]["name"],
                     "text": fam[int(families[i][j])]["text"], "contribution": float(contributions[i][j]),
                     "feature": names[int(features[i][j])], "value": _finite(float(values[i][j]))}
                    for j in range(n)])
    return out


def create_app(config: ServiceConfig, *, open_now: bool = False) -> FastAPI:
    """The FastAPI app serving ``config.bundle``. The bundle opens (and the history replays) in a
    background thread at startup; /readyz says when it can serve. ``open_now``: open before
    returning (tests, and callers that want errors at once)."""
    service = Service(config)
    scorer_schema = None
    if open_now:
        service.open()
        if service.error:
            raise RuntimeError(service.error)
    else:
        from ..scorer import _bundle_schema
        scorer_schema = _bundle_schema(config.bundle)  # for the OpenAPI page before the bundle opens

    def lifespan(app):
        class _Span:
            async def __aenter__(self):
                if not open_now:
                    threading.Thread(target=service.open, name="libfraud-open", daemon=True).start()

            async def __aexit__(self, *exc):
                return False
        return _Span()

    app = FastAPI(title="libfraud", version=_core.__version__,
                  description="Real-time fraud scoring over the bundle's declared schema: "
                              "events as JSON objects keyed by your own column names.",
                  lifespan=lifespan)
    app.state.service = service
    schema = service.scorer.schema if service.scorer else scorer_schema
    events_body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": event_schema(schema, config.max_batch)}}}}
    labels_body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": label_schema(schema, config.max_batch)}}}}

    async def serve(request: Request, endpoint: str, work, *, admin: bool = False) -> Response:
        t0 = time.perf_counter()
        code, n = 500, 0
        try:
            if admin:
                _check_token(request, config)
            body = await _read_json(request, config)
            payload, n = await run_in_threadpool(work, body)
            code = 200
            return _json(payload)
        except RequestError as e:
            code = 422
            return _json({"detail": e.detail()}, 422)
        except _HttpError as e:
            code = e.code
            return _json({"detail": e.detail, **({"status": e.status} if e.status else {})}, e.code, e.headers)
        except _core.FraudError as e:
            code = _HTTP_STATUS.get(getattr(e, "status", ""), 500)
            return _json({"detail": str(e), "status": getattr(e, "status", "")}, code)
        except Exception as e:  # a bug: say so, keep serving
            log.exception("%s failed", endpoint)
            code = 500
            return _json({"detail": f"internal error: {type(e).__name__}: {e}"}, 500)
        finally:
            service.metrics.observe(endpoint, code, time.perf_counter() - t0, n)

    def score_work(ingest: bool):
        def work(body):
            scorer = service.require_ready()
            if ingest and config.read_only:
                raise _HttpError(403, "this service is --read-only: it scores, it does not store")
            events, ids = service.decoder.events(body)
            k = _k(body, 3) if isinstance(body, dict) and "k" in body else 0
            min_score = _min_score(body)
            # Every served score goes through decide: bands, rules, the challenger, the decision log.
            # Rule hits are bits of the serving bundle's rule list: if a swap ran during the call,
            # which list applies is unknown, so a score is asked again and an ingest says so.
            for attempt in range(3):
                before, rules, sha = service.generation, service.rules, service.bundle_sha256
                raw = scorer._engine.decide(*events.args(), k=k, min_score=min_score, ingest=ingest)
                if service.generation == before and before % 2 == 0:
                    break
                if ingest or attempt == 2:  # stored, or swaps kept racing: say the codes are unknown
                    rules = rules if rules == service.rules else None
                    break
            reasons = _reason_lists(scorer, raw[6:]) if k else None
            results = _decided(ids, raw, rules, reasons)
            return {"results": results, "bundle_sha256": sha}, len(ids)
        return work

    def explain_work(body):
        scorer = service.require_ready()
        events, ids = service.decoder.events(body)
        k = _k(body, 3)
        raw = scorer._engine.explain(*events.args(), k=k, min_score=_min_score(body))
        return {"results": _results(ids, np.asarray(raw[0]), _reason_lists(scorer, raw[1:])),
                "bundle_sha256": service.bundle_sha256}, len(ids)

    def label_work(body):
        scorer = service.require_ready()
        if config.read_only:
            raise _HttpError(403, "this service is --read-only: it takes no labels")
        labels = service.decoder.labels(body)
        scorer._engine.label(*labels.args())
        return {"applied": len(labels)}, len(labels)

    def swap_work(body):
        scorer = service.require_ready()
        bundle = body.get("bundle") if isinstance(body, dict) else None
        if not isinstance(bundle, str) or not bundle:
            raise RequestError(["body", "bundle"], "'bundle' must be the path of a bundle directory on the server")
        _single_worker("a swap")
        with service._admin:
            with service.changing():
                try:
                    scorer.swap_bundle(bundle)
                except (OSError, ValueError, KeyError) as e:  # no manifest, or an unreadable schema
                    raise RequestError(["body", "bundle"], f"cannot swap to {bundle}: {e}") from None
                except _core.FraudError as e:
                    raise _bundle_refused(e, "swap to", bundle) from None
        log.info("swapped to %s (sha256 %s)", bundle, service.bundle_sha256)
        return {"bundle": bundle, "bundle_sha256": service.bundle_sha256}, 0

    def challenger_work(body):
        scorer = service.require_ready()
        bundle = body.get("bundle") if isinstance(body, dict) else None
        if bundle is not None and (not isinstance(bundle, str) or not bundle):
            raise RequestError(["body", "bundle"], "'bundle' must be a bundle directory on the server, or null "
                                                   "to stop shadow scoring")
        _single_worker("setting a challenger")
        with service._admin:
            try:
                scorer.set_challenger(bundle)
            except (OSError, ValueError, KeyError) as e:
                raise RequestError(["body", "bundle"], f"cannot shadow with {bundle}: {e}") from None
            except _core.FraudError as e:
                raise _bundle_refused(e, "shadow with", bundle) from None
        return {"challenger": bundle}, 0

    def promote_work(body):
        scorer = service.require_ready()
        if scorer.challenger is None:
            raise _HttpError(409, "no challenger to promote: POST /admin/challenger first")
        _single_worker("a promotion")
        with service._admin, service.changing():
            scorer.promote_challenger()
        log.info("promoted the challenger %s (sha256 %s)", service.bundle_path, service.bundle_sha256)
        return {"bundle": service.bundle_path, "bundle_sha256": service.bundle_sha256}, 0

    def _single_worker(what: str) -> None:
        if config.workers > 1:
            raise _HttpError(409, f"this service runs several worker processes; {what} would reach one of them: "
                                  f"restart it instead")

    def snapshot_work(body):
        scorer = service.require_ready()
        with service._admin:
            scorer.snapshot()
        return {"store_events": scorer.store_size}, 0

    @app.post("/score", openapi_extra=events_body, summary="Score events without storing them")
    async def score(request: Request):
        return await serve(request, "score", score_work(False))

    @app.post("/score_and_ingest", openapi_extra=events_body,
              summary="Score each event, then store it (the serving call)")
    async def score_and_ingest(request: Request):
        return await serve(request, "score_and_ingest", score_work(True))

    @app.post("/explain", openapi_extra=events_body, summary="Scores and their top-k reason codes")
    async def explain(request: Request):
        return await serve(request, "explain", explain_work)

    @app.post("/label", openapi_extra=labels_body, summary="Labels for stored events")
    async def label(request: Request):
        return await serve(request, "label", label_work)

    @app.post("/admin/swap", summary="Hot swap to another bundle (Authorization: Bearer token)")
    async def swap(request: Request):
        return await serve(request, "admin_swap", swap_work, admin=True)

    @app.post("/admin/challenger", summary="Shadow-score every event with another bundle ({\"bundle\": null} stops)")
    async def challenger(request: Request):
        return await serve(request, "admin_challenger", challenger_work, admin=True)

    @app.post("/admin/promote", summary="The challenger becomes the serving bundle (a hot swap)")
    async def promote(request: Request):
        return await serve(request, "admin_promote", promote_work, admin=True)

    @app.post("/admin/snapshot", summary="Snapshot the durable store (a maintenance call)")
    async def snapshot(request: Request):
        return await serve(request, "admin_snapshot", snapshot_work, admin=True)

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return _json({"status": "ok"})

    @app.get("/readyz", summary="The bundle is open and the store restored")
    async def readyz():
        if service.error:
            return _json({"ready": False, "error": service.error}, 503)
        if not service.ready.is_set():
            return _json({"ready": False, "status": "warming up"}, 503)
        s = service.scorer
        return _json({"ready": True, "bundle": service.bundle_path, "bundle_sha256": service.bundle_sha256,
                      "challenger": s.challenger, "gnn_backend": s.gnn_backend, "store_events": s.store_size,
                      "decision_bands": {k: _finite(v) for k, v in s.decision_bands.items()},
                      "rules": service.rules})

    @app.get("/metrics", summary="Prometheus text format")
    async def metrics():
        return Response(service.metrics.text(), media_type=CONTENT_TYPE)

    return app


def _bundle_refused(e, what: str, bundle: str) -> Exception:
    """A bundle named by an admin request and refused by the core: the request's fault (422), the
    serving bundle unchanged. Other statuses keep their own mapping."""
    status = getattr(e, "status", "")
    if status == "FRAUD_STATUS_IO_ERROR" or _HTTP_STATUS.get(status) == 422:
        return _HttpError(422, f"cannot {what} {bundle}: {e} (the serving bundle is unchanged)", status=status)
    return e


def _check_token(request: Request, config: ServiceConfig) -> None:
    if not config.admin_token:
        raise _HttpError(403, "admin endpoints are off: start the service with --admin-token-file")
    got = request.headers.get("authorization", "")
    import hmac
    if not hmac.compare_digest(got.encode(), f"Bearer {config.admin_token}".encode()):
        raise _HttpError(401, "a valid 'Authorization: Bearer <token>' header is required",
                         {"WWW-Authenticate": "Bearer"})


def create_app_from_env() -> FastAPI:
    """uvicorn's factory for worker processes (`libfraud serve --workers N`)."""
    return create_app(ServiceConfig.from_env())
