"""The hub's Prometheus metrics (``GET /metrics``): messages, ingest lag, errors, sensors per status."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .writer import BatchResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter("soundscene_hub_messages", "MQTT messages handled, by result "
                                "(stored, duplicate, expired, error)", ["result"], registry=r)
        self.errors = Counter("soundscene_hub_ingest_errors", "Messages refused (malformed, oversized, "
                              "schema-violating) and kept in ingest_errors", registry=r)
        self.lag = Histogram("soundscene_hub_ingest_lag_seconds", "From a decision's timestamp to its commit",
                             registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.sensors = Gauge("soundscene_hub_sensors", "Sensors by status", ["status"], registry=r)
        self.waiting = Gauge("soundscene_hub_waiting_messages", "Messages received, not yet stored", registry=r)
        self.alerts = Counter("soundscene_hub_alert_notifications", "Alert notifications by action and outcome",
                              ["action", "outcome"], registry=r)
        for status in ("online", "offline", "unknown"):
            self.sensors.labels(status).set(0)

    def observe(self, result: BatchResult) -> None:
        for key, name in (("stored", "stored"), ("duplicates", "duplicate"), ("expired", "expired"),
                          ("errors", "error")):
            if getattr(result, key):
                self.messages.labels(name).inc(getattr(result, key))
        if result.errors:
            self.errors.inc(result.errors)
        for lag in result.lags:
            self.lag.observe(max(lag, 0.0))

    def exposition(self, counts: dict, waiting: int) -> bytes:
        for status in ("online", "offline", "unknown"):
            self.sensors.labels(status).set(counts["sensors"].get(status, 0))
        self.waiting.set(waiting)
        return generate_latest(self.registry)
