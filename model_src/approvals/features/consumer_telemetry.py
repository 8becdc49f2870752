"""What the outcome consumer tells operators: lag, Prometheus metrics, health endpoints, logs.

One HTTP port answers ``/metrics`` (the worker's own registry, in Prometheus' text format),
``/livez`` (200 while the worker loop keeps turning, 503 once it stalled: the kubelet restarts
the container) and ``/readyz`` (200 while the last Redis call succeeded, 503 while the worker
backs off). prometheus_client's ``start_http_server`` answers metrics on every path, so the
same WSGI app it builds (``make_wsgi_app``) is served behind those two routes instead.

Log lines are one JSON object each, with the event's counts, ids of stream entries and error
names; never a report field (no card fingerprint, BIN or amount) and never the AUTH token.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from approvals.features.outcomes import ApplyResult

if TYPE_CHECKING:
    import redis.asyncio

APPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOGGER_NAME = "approvals.outcomes"


@dataclass(frozen=True)
class Lag:
    """How far the group is behind the stream.

    Attributes:
        entries: entries not yet delivered to any consumer of the group.
        pending: entries delivered and not yet acknowledged.
        seconds: age of the oldest entry not yet acknowledged (pending or undelivered),
            from its id's millisecond time; 0 when the group is caught up.
    """

    entries: int
    pending: int
    seconds: float


LAG_COUNT_CAP = 10_000  # counting undelivered entries one by one stops here


async def measure_lag(conn: redis.asyncio.Redis, stream: str, group: str) -> Lag:
    """The group's lag, from ``XINFO GROUPS`` (its ``lag`` field on Redis 7, else counted)
    and the oldest unacknowledged entry's id against the server's clock.

    Raises:
        LookupError: the group does not exist.
    """
    groups = await conn.xinfo_groups(stream)
    info = next((g for g in groups if _text(g["name"]) == group), None)
    if info is None:
        raise LookupError(f"no group {group!r} on {stream!r}")
    last = _text(info["last-delivered-id"])
    first: Any = await conn.xrange(stream, f"({last}", "+", count=1)
    entries = info.get("lag")
    if entries is None:  # entries deleted mid-stream (Redis 7 cannot tell), or Redis < 7
        entries = await _undelivered(conn, stream, last, info.get("entries-read"))
    oldest = [_id_ms(first[0][0])] if first else []
    if info["pending"]:  # (acknowledged since, maybe: then XPENDING has no min)
        least = (await conn.xpending(stream, group))["min"]
        oldest.extend([_id_ms(least)] if least else [])
    seconds, micros = await conn.time()
    now_ms = seconds * 1000 + micros // 1000
    age = max(0, now_ms - min(oldest)) / 1000 if oldest else 0.0
    return Lag(int(entries), int(info["pending"]), age)


async def _undelivered(
    conn: redis.asyncio.Redis, stream: str, last: str, entries_read: int | None
) -> int:
    """Entries after ``last``: entries added minus entries read when Redis keeps both
    counters (an upper bound after deletions), else counted, up to :data:`LAG_COUNT_CAP`."""
    if entries_read is not None:
        added = (await conn.xinfo_stream(stream)).get("entries-added")
        if added is not None:
            return max(0, int(added) - int(entries_read))
    counted: Any = await conn.xrange(stream, f"({last}", "+", count=LAG_COUNT_CAP)
    return len(counted)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_ms(entry_id: bytes | str) -> int:
    """The millisecond time of an auto-generated stream id (``<ms>-<seq>``)."""
    return int(_text(entry_id).split("-", 1)[0])


class ConsumerMetrics:
    """The worker's metrics, in a registry of their own (several workers may share a process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, labelnames=labels, registry=self.registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=self.registry)

        self.applied = counter("approvals_outcomes_applied", "Outcomes counted in the store")
        self.duplicates = counter(
            "approvals_outcomes_duplicates", "Outcomes whose attempt_id was already counted"
        )
        self.late = counter("approvals_outcomes_late", "Outcomes older than every kept tile")
        self.dead_lettered = counter(
            "approvals_outcomes_dead_lettered", "Events sent to the dead-letter stream"
        )
        self.claimed = counter(
            "approvals_outcomes_claimed", "Idle pending entries taken over from other consumers"
        )
        self.failures = counter(
            "approvals_outcomes_failures", "Failed Redis calls, by reason", ["reason"]
        )
        self.apply_seconds = Histogram(
            "approvals_outcomes_apply_seconds", "Time to apply one batch (one EVALSHA)",
            buckets=APPLY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.lag_entries = gauge("approvals_outcomes_lag_entries", "Entries not yet delivered")
        self.pending_entries = gauge(
            "approvals_outcomes_pending_entries", "Entries delivered and not yet acknowledged"
        )
        self.lag_seconds = gauge(
            "approvals_outcomes_lag_seconds", "Age of the oldest entry not yet acknowledged"
        )

    def count(self, result: ApplyResult, dead_lettered: int) -> None:
        """Count one batch's outcome."""
        self.applied.inc(result.applied)
        self.duplicates.inc(result.duplicates)
        self.late.inc(result.late)
        self.dead_lettered.inc(dead_lettered)

    def set_lag(self, lag: Lag) -> None:
        """Show the group's latest lag."""
        self.lag_entries.set(lag.entries)
        self.pending_entries.set(lag.pending)
        self.lag_seconds.set(lag.seconds)


class Health:
    """Liveness (the loop's last heartbeat) and readiness (the last Redis call's success)."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.ready = False
        self._beat = time.monotonic()

    def beat(self) -> None:
        """The worker loop is turning."""
        self._beat = time.monotonic()

    @property
    def alive(self) -> bool:
        """Whether the loop turned within ``stale_after_s``."""
        return time.monotonic() - self._beat <= self.stale_after_s


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no access log."""


def serve_http(metrics: ConsumerMetrics, health: Health, host: str, port: int) -> WSGIServer:
    """Answer ``/metrics``, ``/livez`` and ``/readyz`` on ``host:port`` from a daemon thread.

    Returns:
        The server (``shutdown()`` stops it).
    """
    scrape = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/livez", "/readyz"):
            ok = health.alive if path == "/livez" else health.ready and health.alive
            start("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ok\n"]
        return scrape(environ, start)

    server = make_server(host, port, app, _Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """Send every logger of the process to stdout as JSON lines, at ``level``."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
