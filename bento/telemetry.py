"""Prometheus metrics and structured JSON logs of the service.

Metrics go through ``bentoml.metrics`` so that every worker process of ``bentoml serve``
(front end and scorer) writes into BentoML's multiprocess registry and ``/metrics`` shows them
together. Logs carry what an operator needs (call, protocol, outcome, sizes, latency, model
version) and never a request field: no card fingerprints, BINs, amounts or ids.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import bentoml

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LOGGER_NAME = "approvals.service"


@dataclass(frozen=True)
class Metrics:
    """The service's own metrics (BentoML adds its request counters and histograms)."""

    latency: Any
    requests: Any
    errors: Any
    degraded: Any
    batch_size: Any
    online_keys: Any

    def count_keys(self, read: int, held: int) -> None:
        """Count the keys of one online read by where their hashes came from."""
        if read:
            self.online_keys.labels(source="redis").inc(read)
        if held:
            self.online_keys.labels(source="held").inc(held)


@cache
def metrics() -> Metrics:
    """The metrics, created once per process on first use (not at import)."""
    return Metrics(
        latency=bentoml.metrics.Histogram(
            name="approvals_request_duration_seconds",
            documentation="Time to answer a call, by endpoint and protocol",
            labelnames=["endpoint", "protocol"],
            buckets=LATENCY_BUCKETS,
        ),
        requests=bentoml.metrics.Counter(
            name="approvals_requests_total",
            documentation="Calls answered, by endpoint, protocol and outcome",
            labelnames=["endpoint", "protocol", "outcome"],
        ),
        errors=bentoml.metrics.Counter(
            name="approvals_errors_total",
            documentation="Calls not answered with a result, by endpoint, protocol and kind",
            labelnames=["endpoint", "protocol", "kind"],
        ),
        degraded=bentoml.metrics.Counter(
            name="approvals_degraded_total",
            documentation="Calls answered with default features (online store unavailable)",
            labelnames=["endpoint", "protocol"],
        ),
        batch_size=bentoml.metrics.Histogram(
            name="approvals_model_batch_size",
            documentation="Rows per model call of the adaptive batcher",
            buckets=BATCH_BUCKETS,
        ),
        online_keys=bentoml.metrics.Counter(
            name="approvals_online_keys_total",
            documentation="Feature keys of online reads, by source: redis, or held hashes of "
            "the live materialized version",
            labelnames=["source"],
        ),
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"))


@cache
def logger() -> logging.Logger:
    """The service logger, writing JSON lines to stderr (configured once per process)."""
    log = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def log_event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event; ``fields`` must hold no request data."""
    logger().log(level, message, extra={"fields": fields})
