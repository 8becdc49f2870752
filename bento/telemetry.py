"""Prometheus metrics and structured JSON logs of the service.

Metrics go through ``bentoml.metrics`` so that every worker process of ``bentoml serve``
writes into BentoML's multiprocess registry and ``/metrics`` shows them together.

Logs: under ``bentoml serve`` every logger of the process (the service's, BentoML's, uvicorn's,
circus', the online store's, the trees loader's, gRPC's, Python warnings) writes one JSON
object a line to stdout (:func:`json_logging`), with the trace and span id of the request
where there is one. They carry what an operator needs (call, protocol, outcome, sizes,
latency, model version) and never a request field: no card fingerprints, BINs, amounts or
ids. Errors refusing a request carry no input either: the request models hide their input
in validation errors.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from opentelemetry import trace
from pydantic import ValidationError

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
    outcomes: Any
    decisions: Any

    def count_keys(self, read: int, held: int) -> None:
        """Count the keys of one online read by where their hashes came from."""
        from_redis, from_held = self._key_series()
        if read:
            from_redis.inc(read)
        if held:
            from_held.inc(held)

    # Labelled series are resolved once, not per call: the lookup cost more than the update.
    # (B019: one Metrics per process, see metrics(), so the caches hold nothing extra.)
    @cache  # noqa: B019
    def _key_series(self) -> tuple[Any, Any]:
        return self.online_keys.labels(source="redis"), self.online_keys.labels(source="held")

    @cache  # noqa: B019
    def answered(self, endpoint: str, protocol: str) -> tuple[Any, Any]:
        """The latency histogram and the ``outcome="ok"`` counter of one endpoint and protocol."""
        labels = {"endpoint": endpoint, "protocol": protocol}
        return self.latency.labels(**labels), self.requests.labels(**labels, outcome="ok")


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
        outcomes=bentoml.metrics.Counter(
            name="approvals_outcomes_total",
            documentation="Reported outcomes by what became of them: applied, duplicate "
            "(attempt_id counted before), late (older than every window kept)",
            labelnames=["status"],
        ),
        decisions=bentoml.metrics.Counter(
            name="approvals_decisions_total",
            documentation="Decision log entries by outcome: logged, queue_full or "
            "redis_error (not logged; the call was answered all the same)",
            labelnames=["outcome"],
        ),
    )


class TraceIds(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current OpenTelemetry span, where there is one.

    BentoML opens a span for every HTTP request; its span id is the ``X-BentoML-Request-ID``
    header of the answer, so a log line of a request names the request. A batch computed for
    several requests runs in the context of the one that started it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class ClientErrors(logging.Filter):
    """BentoML logs every refused request (400, 429) as an ERROR with the traceback of the
    exception that refused it: keep one WARNING line that names the exception instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Downgrade the record if its exception is the client's; never drops it."""
        exc = record.exc_info[1] if record.exc_info else None
        client = isinstance(exc, ValidationError) or (
            isinstance(exc, BentoMLException) and exc.error_code < 500
        )
        if client:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
            record.error = type(exc).__name__
        return True


def json_handler() -> logging.Handler:
    """A stdout handler writing one JSON object a line: ts, level, logger, message, the
    record's extra fields, the trace ids of the request and the traceback of an error."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="ts",
        )
    )
    handler.addFilter(TraceIds())
    handler.addFilter(ClientErrors())
    return handler


def json_logging() -> bool:
    """Under ``bentoml serve``, make every logger of the process write JSON lines.

    BentoML sets up the logging of each of its processes (one text handler, shared by the root
    logger and ``bentoml``, ``uvicorn.error`` and ``circus``) before it imports the service, and
    has no setting for the format; its documentation leaves other formats to Python's logging,
    configured from the service definition. So, where that handler is found, it is replaced by
    :func:`json_handler` on the root logger and every logger propagates to it (levels stay as
    BentoML set them; ``approvals.*`` logs from INFO); elsewhere (``bentoml build``, tests that
    import the service) nothing changes.

    Returns:
        True if the process serves and now logs JSON.
    """
    from bentoml._internal.log import TraceRecordFilter

    root = logging.getLogger()
    named = [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    served = False
    for log in (root, *named):
        bentoml_handlers = [
            h for h in log.handlers if any(isinstance(f, TraceRecordFilter) for f in h.filters)
        ]
        for handler in bentoml_handlers:
            log.removeHandler(handler)
            log.propagate = True
            served = True
    if served:
        root.addHandler(json_handler())
        logging.getLogger("approvals").setLevel(logging.INFO)
        logging.captureWarnings(True)
    return served


def logger() -> logging.Logger:
    """The service logger (``approvals.service``); :func:`json_logging` gives it its handler."""
    return logging.getLogger(LOGGER_NAME)


def log_event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event; ``fields`` (top-level keys of the JSON line) must hold no
    request data."""
    logger().log(level, message, extra=fields)
