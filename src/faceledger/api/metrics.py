"""Prometheus metrics of one API instance (own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "faceledger_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "faceledger_request_seconds",
            "request latency by route",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "faceledger_requests_in_flight", "requests being served", registry=self.registry
        )
        self.faces = Counter("faceledger_faces", "faces found by identify", registry=self.registry)
        self.matches = Counter(
            "faceledger_matches", "faces identified as an enrolled subject", registry=self.registry
        )
        self.unknowns = Counter(
            "faceledger_unknowns", "faces that matched nobody", registry=self.registry
        )
        self.pending_reviews = Gauge(
            "faceledger_pending_reviews", "events waiting for review", registry=self.registry
        )
        self.outbox = Gauge(
            "faceledger_outbox_depth", "webhook deliveries not yet made", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
