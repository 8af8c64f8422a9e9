"""Prometheus metrics of the service (``GET /metrics``, text format 0.0.4).

:class:`Metrics` holds the counters, histograms and gauges in a registry of the app's own (several apps in
one process, as in the tests, do not mix); :class:`MetricsMiddleware` counts every HTTP response by route
template, method and status, and times it.  prometheus_client (pure Python, about 100 kB) gets the
exposition format's escaping, histogram buckets and ``_created`` series right, which a hand-written
exporter would have to re-implement.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..._version import __version__

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self, model_info: dict[str, Any]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("soundscene_http_requests", "HTTP requests by endpoint, method and status code",
                                ["endpoint", "method", "status"], registry=r)
        self.duration = Histogram("soundscene_http_request_duration_seconds",
                                  "Time from request to response end, by endpoint", ["endpoint"], registry=r,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.classify_errors = Counter("soundscene_classify_errors",
                                       "Refused or failed /v1/classify requests by reason", ["reason"],
                                       registry=r)
        self.inference = Histogram("soundscene_classify_inference_seconds",
                                   "Model time per classified upload (decode, resample, features, network)",
                                   registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.audio_seconds = Counter("soundscene_classified_audio_seconds",
                                     "Seconds of audio classified", registry=r)
        self.upload_bytes = Counter("soundscene_upload_bytes", "Request body bytes received by /v1/classify",
                                    registry=r)
        self.in_progress = Gauge("soundscene_classify_in_progress", "/v1/classify requests being handled",
                                 registry=r)
        info = Gauge("soundscene_build_info", "soundscene's version and the model served (always 1)",
                     ["version", "model_name", "model_trained_with"], registry=r)
        info.labels(__version__, str(model_info.get("name") or ""), str(model_info.get("trained_with") or "")).set(1)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response by route template, method and status."""

    def __init__(self, app, metrics: Metrics, known_paths: set[str]):
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or scope.get("path", "")
            if endpoint not in self.known_paths:
                endpoint = "other"  # unknown URLs do not create new series
            method = scope.get("method", "")
            if method not in HTTP_METHODS:
                method = "other"
            self.metrics.requests.labels(endpoint, method, str(status["code"])).inc()
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - start)
