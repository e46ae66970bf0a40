"""Prometheus metrics of one server, in a registry of its own (``GET /metrics``):

- ``conceptseg_requests_total{route,method,status}`` — requests answered;
- ``conceptseg_request_seconds{route,method}`` — latency histogram (until the response
  starts; a streamed propagation counts its first line);
- ``conceptseg_queue_depth`` — inference jobs waiting;
- ``conceptseg_sessions{kind}`` — open image and video sessions;
- ``conceptseg_encodings_cached`` — image encodings held (image sessions);
- ``conceptseg_batched_phrases`` — phrases that rode along in another request's batch.

``route`` is the route's template (``/v1/images/{image_id}/segment``), never the raw path, so
the label set stays bounded whatever clients send; unmatched paths count as ``unmatched``.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The server's collectors; gauges read their values when scraped."""

    def __init__(self, queue_depth: Callable[[], int], image_sessions: Callable[[], int],
                 video_sessions: Callable[[], int], batched: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.requests = Counter("conceptseg_requests", "HTTP requests answered",
                                ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram("conceptseg_request_seconds", "HTTP request latency",
                                 ("route", "method"), buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        Gauge("conceptseg_queue_depth", "inference jobs waiting",
              registry=self.registry).set_function(queue_depth)
        sessions = Gauge("conceptseg_sessions", "open sessions", ("kind",), registry=self.registry)
        sessions.labels("image").set_function(image_sessions)
        sessions.labels("video").set_function(video_sessions)
        Gauge("conceptseg_encodings_cached", "image encodings held",
              registry=self.registry).set_function(image_sessions)
        Gauge("conceptseg_batched_phrases", "phrases batched into another request's call",
              registry=self.registry).set_function(batched)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
