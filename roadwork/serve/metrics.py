"""Prometheus metrics shared by the batcher and both front-ends.

Each `Metrics` owns its own `CollectorRegistry`, so several servers (or tests) in one process do
not collide in prometheus_client's global registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the HTTP app)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("roadwork_requests", "Requests answered, by front-end and outcome.",
                                ["frontend", "outcome"], registry=r)
        self.images = Counter("roadwork_images", "Images answered, by front-end.", ["frontend"], registry=r)
        self.errors = Counter("roadwork_errors", "Inputs or requests that failed, by front-end and reason.",
                              ["frontend", "reason"], registry=r)
        self.latency = Histogram("roadwork_request_latency_seconds", "Request latency, by front-end.",
                                 ["frontend"], buckets=LATENCY_BUCKETS, registry=r)
        self.fallbacks = Counter("roadwork_fallback_answers",
                                 "Answers that are a configured fallback instead of a model output.",
                                 ["frontend", "reason"], registry=r)
        self.batch_size = Histogram("roadwork_batch_size", "Images per engine call.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("roadwork_inference_seconds", "Wall time of one engine call.",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("roadwork_queue_depth", "Images waiting for the engine.", registry=r)
        self.answered_by = Counter("roadwork_answers_by_tier", "Images answered, by the tier that decided.",
                                   ["tier"], registry=r)
        self.escalations = Counter("roadwork_tier_escalations",
                                   "Images a tier found uncertain and passed to the next tier.",
                                   ["tier"], registry=r)
        self.engine_deadline = Counter("roadwork_engine_deadline_cuts",
                                       "Images answered by an earlier tier because the deadline was near.",
                                       registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
