"""What the decision sink tells operators: Prometheus metrics and the group's lag.

The metrics live in a registry of their own, served with ``/livez`` and ``/readyz`` by the
outcome consumer's :func:`~approvals.features.consumer_telemetry.serve_http`; the lag is
measured as that consumer's is, with the sink's synchronous client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from approvals.experiments.sink_entries import id_order
from approvals.experiments.sink_files import KIND_DIRS
from approvals.features.consumer_telemetry import LAG_COUNT_CAP, Lag

if TYPE_CHECKING:
    import pyarrow as pa
    import redis

__all__ = ["SinkMetrics", "SinkTotals", "measure_lag"]

log = logging.getLogger("approvals.experiments.sink")

FLUSH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class SinkTotals:
    """What the sink wrote and acknowledged since it started (the command's summary)."""

    entries: int = 0
    rows: int = 0
    files: int = 0
    bad: int = 0
    unnamed_features: int = 0
    flushes: int = 0


class SinkMetrics:
    """The sink's metrics, in a registry of their own (``approvals_decisions_sink_*``), and
    its :class:`SinkTotals`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.totals = SinkTotals()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"approvals_decisions_sink_{name}", doc, labels, registry=self.registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"approvals_decisions_sink_{name}", doc, registry=self.registry)

        self.rows = counter("rows", "Rows written to Parquet, by kind", ("kind",))
        self.files = counter("files", "Parquet files written")
        self.bad = counter("bad_entries", "Bad entries copied to the dead-letter stream")
        self.unnamed = counter("unnamed_features", "Feature vectors written without names")
        self.claimed = counter("claimed", "Idle pending entries taken over from other sinks")
        self.failures = counter("failures", "Failed calls (retried), by reason", ("reason",))
        self.flush_seconds = Histogram(
            "approvals_decisions_sink_flush_seconds", "Time to write and acknowledge one flush",
            buckets=FLUSH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.buffered = gauge("buffered_entries", "Entries read and not yet written")
        self.lag_entries = gauge("lag_entries", "Entries not yet delivered to the group")
        self.pending = gauge("pending_entries", "Entries delivered and not yet acknowledged")
        self.lag_seconds = gauge("lag_seconds", "Age of the oldest entry not yet acknowledged")
        for kind in KIND_DIRS.values():  # shown at 0 from the start, not from the first flush
            self.rows.labels(kind=kind)
        for reason in ("redis", "write"):
            self.failures.labels(reason=reason)

    def count(
        self, files: Sequence[tuple[str, pa.Table]], entries: int, bad: int, unnamed: int,
        seconds: float,
    ) -> int:  # fmt: skip
        """Count one flush, written and acknowledged: its files (by key), entries, bad
        entries, unnamed feature vectors and duration. Returns the rows written."""
        t, rows = self.totals, sum(table.num_rows for _, table in files)
        t.entries += entries
        t.rows += rows
        t.files += len(files)
        t.bad += bad
        t.unnamed_features += unnamed
        t.flushes += 1
        for key, table in files:
            self.rows.labels(kind=key.split("/", 1)[0]).inc(table.num_rows)
        self.files.inc(len(files))
        self.bad.inc(bad)
        self.unnamed.inc(unnamed)
        self.flush_seconds.observe(seconds)
        return rows

    def refresh_lag(self, conn: redis.Redis, stream: str, group: str) -> None:
        """Show the group's lag now (the gauges keep their values when it cannot be measured:
        Redis down, or no group yet)."""
        from redis.exceptions import RedisError

        try:
            lag = measure_lag(conn, stream, group)
        except (RedisError, LookupError) as exc:
            log.debug("lag not measured: %s", type(exc).__name__)
            return
        self.lag_entries.set(lag.entries)
        self.pending.set(lag.pending)
        self.lag_seconds.set(lag.seconds)


def measure_lag(conn: redis.Redis, stream: str, group: str) -> Lag:
    """The group's lag as :func:`approvals.features.consumer_telemetry.measure_lag` has it
    (``XINFO GROUPS``, the oldest unacknowledged id against the server's clock), sync.

    Raises:
        LookupError: the group does not exist.
    """
    info = next((g for g in conn.xinfo_groups(stream) if _text(g["name"]) == group), None)
    if info is None:
        raise LookupError(f"no group {group!r} on {stream!r}")
    after = f"({_text(info['last-delivered-id'])}"
    entries = info.get("lag")
    if entries is None:  # entries deleted mid-stream (Redis cannot tell), or Redis < 7
        entries = len(cast(list[Any], conn.xrange(stream, after, "+", count=LAG_COUNT_CAP)))
    first = cast(list[Any], conn.xrange(stream, after, "+", count=1))
    oldest = [_text(first[0][0])] if first else []
    if info["pending"] and (least := conn.xpending(stream, group)["min"]):
        oldest.append(_text(least))
    seconds, micros = conn.time()
    now_ms = seconds * 1000 + micros // 1000
    age = max(0, now_ms - min(id_order(i)[0] for i in oldest)) / 1000 if oldest else 0.0
    return Lag(int(entries), int(info["pending"]), age)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
