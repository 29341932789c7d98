"""Prometheus metrics of the service, and the ASGI middleware that counts and times every request."""

from __future__ import annotations

import time
from collections.abc import Callable

from simlookup.server.limits import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """Prometheus metrics in the app's own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "simlookup_requests_total", "HTTP requests", ["route", "index", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "simlookup_request_seconds", "request latency", ["route", "index"], registry=self.registry
        )
        self.stage = Histogram(
            "simlookup_stage_seconds",
            "time per stage (encode, search)",
            ["stage", "index"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.batch_size = Histogram(
            "simlookup_batch_size",
            "queries answered by one encode + search call",
            ["queue"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.queue_time = Histogram(
            "simlookup_queue_seconds",
            "time a query waited for its batch to start",
            ["queue"],
            registry=self.registry,
            buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
        )

    def observer(self, queue: str) -> Callable[[int, list[float]], None]:
        """Records one batch: its size and how long each of its queries waited."""

        def observe(size: int, waits: list[float]) -> None:
            self.batch_size.labels(queue).observe(size)
            for w in waits:
                self.queue_time.labels(queue).observe(w)

        return observe

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class RequestMetrics:
    """Pure ASGI middleware: requests and latency per route, index and status (no per-request task group)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            index = scope.get("simlookup_index", "")
            self.metrics.requests.labels(path, index, str(status)).inc()
            self.metrics.latency.labels(path, index).observe(time.perf_counter() - t0)
