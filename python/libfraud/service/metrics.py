"""Prometheus text for `GET /metrics`: the core's own counters, read at scrape time, and the
service's request counts and latencies. One registry per worker process (each scrape is answered
by the worker that took it; the `pid` label tells them apart)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["ServiceMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds; a scoring request is tens of microseconds in the core and ~1 ms over HTTP.
_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

# (stats key, metric name, help): counters that only grow while the process lives.
_COUNTERS = (
    ("scored", "libfraud_events_scored", "Events scored by the core"),
    ("ingested", "libfraud_events_ingested", "Events stored by the core"),
    ("rejected", "libfraud_events_rejected", "Events refused by the core (all reasons)"),
    ("bundle_swaps", "libfraud_bundle_swaps", "Hot swaps that installed a bundle"),
    ("bundle_swap_failures", "libfraud_bundle_swap_failures", "Hot swaps refused (the old bundle kept serving)"),
    ("evicted", "libfraud_events_evicted", "Events evicted from the store by retention"),
    ("labels_applied", "libfraud_labels_applied", "Labels stored"),
    ("labels_rejected", "libfraud_labels_rejected", "Labels refused"),
    ("challenger_scored", "libfraud_challenger_scored", "Events scored by the shadow challenger"),
    ("challenger_decision_disagreements", "libfraud_challenger_decision_disagreements",
     "Events the challenger decided differently from the champion"),
)
_GAUGES = (
    ("store_transactions", "libfraud_store_events", "Events in the store now"),
    ("store_bytes", "libfraud_store_bytes", "Approximate memory held by the store"),
    ("store_labels", "libfraud_store_labels", "Labelled events in the store now"),
    ("latency_p50_us", "libfraud_core_latency_p50_microseconds", "Median core time per event, recent calls"),
    ("latency_p99_us", "libfraud_core_latency_p99_microseconds", "99th percentile core time per event, recent calls"),
    ("drift_score_psi", "libfraud_drift_score_psi", "Population stability of the score over the recent window"),
    ("drift_max_feature_psi", "libfraud_drift_max_feature_psi", "Largest feature PSI over the recent window"),
    ("drift_window_events", "libfraud_drift_window_events", "Events in the drift window"),
)


class _CoreCollector:
    """Reads the engine's stats (fraud_engine_get_stats) and drift when Prometheus scrapes."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        scorer = self.service.scorer
        if scorer is None:
            return
        stats = scorer.stats()
        pid = str(os.getpid())
        for key, name, doc in _COUNTERS:
            if key in stats:
                c = CounterMetricFamily(name, doc, labels=["pid"])
                c.add_metric([pid], float(stats[key]))
                yield c
        for key, name, doc in _GAUGES:
            if key in stats and stats[key] is not None:
                g = GaugeMetricFamily(name, doc, labels=["pid"])
                g.add_metric([pid], float(stats[key]))
                yield g
        by_status = CounterMetricFamily("libfraud_events_rejected_by_status",
                                        "Events and labels refused, by fraud_status", labels=["pid", "status"])
        for status, n in sorted(stats.get("rejected_by_status", {}).items()):
            by_status.add_metric([pid, str(status)], float(n))
        yield by_status
        info = GaugeMetricFamily("libfraud_bundle_info", "The bundle serving (value 1)",
                                 labels=["pid", "bundle", "sha256", "gnn_backend"])
        info.add_metric([pid, self.service.bundle_path, self.service.bundle_sha256,
                         str(stats.get("gnn_backend", ""))], 1.0)
        yield info
        drift = self.service.feature_drift()
        if drift:
            g = GaugeMetricFamily("libfraud_drift_feature_psi", "Population stability of each model feature "
                                  "over the recent window", labels=["pid", "feature"])
            for feature, psi in drift:
                g.add_metric([pid, feature], float(psi))
            yield g


class ServiceMetrics:
    def __init__(self, service):
        disable_created_metrics()  # the *_created series double the page and nothing here reads them
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("libfraud_http_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "code"], registry=self.registry)
        self.latency = Histogram("libfraud_http_request_seconds", "Time from request to response, by endpoint",
                                 ["endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.events = Counter("libfraud_http_events", "Events received in requests, by endpoint",
                              ["endpoint"], registry=self.registry)
        self.registry.register(_CoreCollector(service))

    def observe(self, endpoint: str, code: int, seconds: float, events: int = 0) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if events:
            self.events.labels(endpoint).inc(events)

    def text(self) -> bytes:
        return generate_latest(self.registry)
