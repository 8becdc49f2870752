"""``approvals decisions sink``: the decision stream to hourly Parquet, by a consumer group.

The service appends ``decision`` and ``outcome`` entries to ``{prefix}:decisions``
(docs/decisions.md). One :class:`DecisionSink` of the group (default ``sink``):

1. creates the group if missing (``MKSTREAM``, from id ``0``: the whole stream);
2. re-reads its own pending entries (``XREADGROUP`` from ``0``), delivered before a restart;
3. every ``claim_interval_s``, takes over entries other consumers left pending longer than
   ``claim_idle_ms`` (``XAUTOCLAIM``): a crashed sink's entries are delivered again;
4. reads new entries (``XREADGROUP >``) into a buffer, and flushes it when ``max_rows`` are
   buffered, ``flush_seconds`` after its first entry, and on stop.

A flush writes one Parquet file per kind and UTC hour (:mod:`approvals.experiments.sink_files`),
then, only once every file is written, copies bad entries to ``{prefix}:decisions:dead`` and
acknowledges everything in one ``MULTI``. A kill before that means the entries are delivered
again and written again: the reader drops the duplicates by ``entry_id``. A failed write or
Redis call is retried with backoff, holding the buffer; in ``once`` mode it ends the run.
Metrics and probes are served as the outcome consumer serves them (``/metrics``, ``/livez``,
``/readyz``: :func:`approvals.features.consumer_telemetry.serve_http`).

Run it as ``approvals decisions sink`` or, in the serving image (no typer, no pandas), as
``python -m approvals.experiments.sink`` with the same flags (:func:`main`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from approvals.errors import UserError
from approvals.experiments.sink_entries import FeatureNames, parse_entries
from approvals.experiments.sink_files import Destination, plan_files
from approvals.experiments.sink_settings import SinkSettings, parse_command
from approvals.experiments.sink_telemetry import SinkMetrics, SinkTotals
from approvals.features.consumer_telemetry import (
    ConsumerMetrics,
    Health,
    configure_logging,
    serve_http,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import redis

    from approvals.features.redis_settings import RedisSettings

__all__ = ["DecisionSink", "SinkSettings", "SinkTotals", "main", "serve"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Entry = tuple[bytes, dict[bytes, bytes] | None]
ACK_CHUNK = 10_000


@dataclass
class Plan:
    """One flush: its files (``written`` as they are), and what to acknowledge after them."""

    files: list[tuple[str, pa.Table]]
    ids: list[bytes]
    bad: list[tuple[bytes, str]]
    unnamed: int
    written: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class Stopped(Exception):  # noqa: N818 - a signal to unwind, not an error
    """Raised out of a retried call once the sink is told to stop."""


class DecisionSink:
    """One consumer of the group: buffers entries, writes them as files, then acknowledges."""

    def __init__(
        self, settings: SinkSettings, store: RedisSettings, destination: Destination
    ) -> None:
        import redis

        self.settings, self.destination = settings, destination
        self.metrics = SinkMetrics()
        self.stream = f"{store.prefix}:decisions"
        self.dead_letter = f"{self.stream}:dead"
        # A blocked read holds its connection for block_ms: the timeout must outlast it.
        wait = max(store.timeout_ms / 1000, 5.0)
        options = {**store.client_options(), "socket_timeout": settings.block_ms / 1000 + wait,
                   "socket_connect_timeout": max(store.connect_timeout_ms / 1000, 5.0)}  # fmt: skip
        self.conn: redis.Redis = redis.Redis.from_url(store.url, **options)
        self.names = FeatureNames(self.conn, f"{self.stream}:features")
        self.health = Health(stale_after_s=max(60.0, 4 * settings.retry_max_s))
        self.buffer: dict[bytes, dict[bytes, bytes] | None] = {}
        self.first_at: float | None = None
        self.stop, self.once = threading.Event(), False

    def run(self, *, once: bool = False) -> SinkTotals:
        """Work until :attr:`stop` is set (or, ``once``, the stream is drained); flush last."""
        self.once = once
        with contextlib.suppress(Stopped):
            self._retrying(self.ensure_group, "create group")
            self._retrying(self.recover, "read own pending")
            self._loop()
        try:
            self.flush()
        except Stopped:
            log.warning("stopped with %d entries unacknowledged: delivered again on restart",
                        len(self.buffer))  # fmt: skip
        return self.metrics.totals

    def _loop(self) -> None:
        next_claim = next_lag = time.monotonic()
        while not self.stop.is_set():
            self.health.beat()
            if time.monotonic() >= next_lag:
                self.metrics.refresh_lag(self.conn, self.stream, self.settings.group)
                next_lag = time.monotonic() + self.settings.lag_interval_s
            if time.monotonic() >= next_claim:
                self._retrying(self.claim, "claim")
                next_claim = time.monotonic() + self.settings.claim_interval_s
            block = None if self.once else self._block_ms()
            read = self._retrying(functools.partial(self.poll, block), "read")
            if self.first_at is not None and time.monotonic() >= self._due():
                self.flush()
            if self.once and not read:
                return

    def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists."""
        from redis.exceptions import ResponseError

        try:
            self.conn.xgroup_create(self.stream, self.settings.group, id="0", mkstream=True)
            log.info("group %s created on %s", self.settings.group, self.stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def recover(self) -> int:
        """Buffer this consumer's own pending entries (delivered before a restart)."""
        after, done = b"0", 0
        while entries := self._read(after, block=None):
            done, after = done + self._take(entries), entries[-1][0]
        if done:
            log.info("own pending entries read again: %d", done)
        return done

    def claim(self) -> int:
        """Buffer entries other consumers left pending longer than ``claim_idle_ms``."""
        s, cursor, done = self.settings, b"0-0", 0
        while True:
            reply: Any = self.conn.xautoclaim(self.stream, s.group, s.consumer, s.claim_idle_ms,
                                              cursor, count=s.batch)  # fmt: skip
            cursor, entries = reply[0], reply[1]
            if len(reply) > 2 and reply[2]:  # trimmed while pending: Redis forgets them
                log.warning("%d pending entries were trimmed before they were written",
                            len(reply[2]))  # fmt: skip
            done += self._take(entries)
            if cursor in (b"0-0", "0-0"):
                break
        if done:
            self.metrics.claimed.inc(done)
            log.info("claimed idle entries: %d", done)
        return done

    def poll(self, block: int | None) -> int:
        """Buffer up to ``batch`` new entries, waiting up to ``block`` ms (None: not at all)."""
        return self._take(self._read(b">", block))

    def flush(self) -> None:
        """Write the buffer's files, then dead-letter its bad entries and acknowledge it all.

        Raises:
            Stopped: told to stop while a failed call was retried; nothing is acknowledged.
        """
        if not self.buffer:
            return
        plan = self._retrying(self._plan, "look up feature names")
        self._retrying(lambda: self._write(plan), "write files")
        self._retrying(lambda: self._ack(plan), "acknowledge")
        self._count(plan)
        self.buffer, self.first_at = {}, None
        self.metrics.buffered.set(0)

    def _read(self, after: bytes, block: int | None) -> list[Entry]:
        s = self.settings
        reply: Any = self.conn.xreadgroup(s.group, s.consumer, {self.stream: after},
                                          count=s.batch, block=block)  # fmt: skip
        return list(reply[0][1]) if reply else []

    def _take(self, entries: list[Entry]) -> int:
        """Buffer entries (flushing once ``max_rows`` are held); how many were given."""
        entries = [e for e in entries if e[0] is not None]  # Redis < 7: a deleted entry claimed
        if entries and self.first_at is None:
            self.first_at = time.monotonic()
        self.buffer.update(entries)
        self.metrics.buffered.set(len(self.buffer))
        if len(self.buffer) >= self.settings.max_rows:
            self.flush()
        return len(entries)

    def _due(self) -> float:
        return (self.first_at or time.monotonic()) + self.settings.flush_seconds

    def _block_ms(self) -> int:
        if self.first_at is None:
            return self.settings.block_ms
        left = int((self._due() - time.monotonic()) * 1000)
        return max(1, min(self.settings.block_ms, left))

    def _plan(self) -> Plan:
        parsed, bad = parse_entries(self.buffer)
        versions = {p.model_version or "" for p in parsed if p.features}
        files, unnamed = plan_files(parsed, self.names.lookup(versions))
        return Plan(files, list(self.buffer), bad, unnamed)

    def _write(self, plan: Plan) -> None:
        """Write the files not written yet (a retry after a failure skips the others)."""
        for key, table in plan.files[len(plan.written) :]:
            plan.written.append(self.destination.write(key, table))

    def _ack(self, plan: Plan) -> None:
        """Dead-letter and acknowledge in one transaction: a bad entry is copied once."""
        pipe = self.conn.pipeline(transaction=True)
        for entry_id, error in plan.bad:
            copy: dict[bytes, bytes] = dict(self.buffer.get(entry_id) or {})
            copy.update({b"error": error.encode(), b"source_id": entry_id})
            pipe.xadd(self.dead_letter, copy, maxlen=self.settings.dead_letter_maxlen)  # type: ignore[arg-type]
        for start in range(0, len(plan.ids), ACK_CHUNK):
            pipe.xack(self.stream, self.settings.group, *plan.ids[start : start + ACK_CHUNK])
        pipe.execute()

    def _count(self, plan: Plan) -> None:
        seconds = time.monotonic() - plan.started
        rows = self.metrics.count(plan.files, len(plan.ids), len(plan.bad), plan.unnamed, seconds)
        for entry_id, error in plan.bad:  # the id and the problem, never the payload
            log.warning("bad entry %s dead-lettered: %s", entry_id.decode(), error)
        log.info("flushed rows=%d files=%d bad=%d unnamed_features=%d seconds=%.3f to %s: %s",
                 rows, len(plan.files), len(plan.bad), plan.unnamed, seconds,
                 self.destination, " ".join(plan.written))  # fmt: skip

    def _retrying(self, call: Callable[[], T], what: str) -> T:
        """``call()`` until it succeeds, backing off after each failure.

        Raises:
            Stopped: told to stop meanwhile.
            RedisError, OSError, BotoCoreError, ClientError: in ``once`` mode, the first failure.
        """
        delay = self.settings.retry_min_s
        while True:
            try:
                result = call()
                self.health.ready = True
                return result
            except _transient() as exc:
                if self.once:
                    raise
                self._failed(exc, what, delay)
            if self.stop.wait(delay):
                raise Stopped
            self.health.beat()
            delay = min(delay * 2, self.settings.retry_max_s)

    def _failed(self, exc: BaseException, what: str, delay: float) -> None:
        from redis.exceptions import RedisError, ResponseError

        self.health.ready = False
        self.metrics.failures.labels(
            reason="redis" if isinstance(exc, RedisError) else "write"
        ).inc()
        log.warning("%s failed, retrying in %.1fs: %s: %s", what, delay, type(exc).__name__, exc)
        self.metrics.refresh_lag(self.conn, self.stream, self.settings.group)  # it grows meanwhile
        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            with contextlib.suppress(RedisError):  # the stream or group was deleted: remake
                self.ensure_group()


def _transient() -> tuple[type[BaseException], ...]:
    """Failures worth a retry: Redis, the file system or network, S3."""
    from botocore.exceptions import BotoCoreError, ClientError
    from redis.exceptions import RedisError

    return RedisError, OSError, BotoCoreError, ClientError


def serve(
    settings: SinkSettings, store: RedisSettings, destination: Destination, *, once: bool = False
) -> SinkTotals:
    """Run one sink (and its metrics port) until SIGTERM or SIGINT, or, ``once``, until the
    stream is drained.

    Returns:
        The totals, after the last flush.

    Raises:
        UserError: the metrics port cannot be bound.
        RedisError, OSError, BotoCoreError, ClientError: in ``once`` mode, the first failure.
    """
    sink = DecisionSink(settings, store, destination)
    server = None
    if settings.metrics_port:
        try:  # serve_http reads nothing but the metrics' registry
            server = serve_http(cast(ConsumerMetrics, sink.metrics), sink.health,
                                settings.metrics_host, settings.metrics_port)  # fmt: skip
        except OSError as exc:
            sink.conn.close()
            raise UserError(f"metrics port {settings.metrics_port}: {exc.strerror}") from None
    handlers = {sig: signal.signal(sig, lambda *_: sink.stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}  # fmt: skip
    log.info("sink %s/%s reading %s (tls=%s) into %s, metrics port %d",
             settings.group, settings.consumer, sink.stream, store.tls, destination,
             settings.metrics_port)  # fmt: skip
    try:
        return sink.run(once=once)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sink.conn.close()
        if server is not None:
            server.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m approvals.experiments.sink``: the flags of ``approvals decisions sink``,
    JSON log lines on stdout; exit 0 when done (and after SIGTERM), 2 on a bad flag or setting,
    a metrics port in use or, with ``--once``, the first failed call."""
    from redis.exceptions import RedisError

    from approvals.experiments.sink_files import open_destination

    try:
        command = parse_command(argv)
    except UserError as exc:
        _exit(str(exc))
    try:
        destination = open_destination(command.out)
    except UserError as exc:
        _exit(f"--out {exc}")
    configure_logging(command.log_level)
    try:
        totals = serve(command.settings, command.store, destination, once=command.once)
    except UserError as exc:
        _exit(str(exc))
    except RedisError as exc:  # with --once: the first failure ends the run
        _exit(f"Redis at {command.store.url}: {type(exc).__name__}: {exc}")
    except _transient() as exc:
        _exit(f"--out {destination}: {type(exc).__name__}: {exc}")
    print(
        f"{totals.entries} entries: {totals.rows} rows in {totals.files} files, {totals.bad} "
        f"bad (dead-lettered), {totals.unnamed_features} unnamed feature vectors"
    )


def _exit(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
