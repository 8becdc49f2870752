"""The stream path for live outcomes: a Redis Streams consumer-group worker.

Payment backends ``XADD`` one entry per authorization outcome to the stream (default
``<prefix>:outcomes``), field ``outcome`` holding the JSON of one report in the API's shape
(docs/outcomes.md). Every worker of the group (one per pod; the name defaults to the host
name, which is the pod's) applies them to the live feature version as ``ReportOutcomes`` does:

1. creates the group if missing (``MKSTREAM``, from ``$`` or ``0``);
2. re-reads its own pending entries (``XREADGROUP`` from ``0``): delivered before a crash,
   applied or not; applying again is safe, the store counts each ``attempt_id`` once;
3. every ``claim_interval_s``, takes over entries other (dead) consumers left pending longer
   than ``claim_idle_ms`` (``XAUTOCLAIM``);
4. reads up to ``batch`` new entries (``XREADGROUP >``), checks them
   (:class:`~approvals.features.outcome_events.OutcomeApplier`, transport-neutral), applies the
   valid ones in one ``EVALSHA``, then in one ``MULTI``: copies each bad entry to the
   dead-letter stream (its fields plus ``error`` and ``source_id``) and acknowledges the batch
   (``XACK``).

A failed apply (Redis down, slow, or no live version) acknowledges nothing: the worker backs off
and tries the same batch again. SIGTERM finishes the current batch, acknowledges it and exits
0. Run it as ``python -m approvals.features.consumer`` (settings from ``APPROVALS_OUTCOMES_*``
and ``APPROVALS_REDIS_*``) or ``approvals outcomes consume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from approvals.errors import UserError
from approvals.features.consumer_settings import ConsumerSettings, stream_key
from approvals.features.consumer_telemetry import (
    LOGGER_NAME,
    ConsumerMetrics,
    Health,
    configure_logging,
    measure_lag,
    serve_http,
)
from approvals.features.outcome_events import (
    EVENT_FIELD,
    DecodeError,
    Handled,
    OutcomeApplier,
    Rejected,
    decode_event,
)
from approvals.features.outcomes import OutcomeWriter
from approvals.features.redis_settings import RedisSettings

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["ConsumerSettings", "StreamConsumer", "main", "run", "serve", "stream_key"]

log = logging.getLogger(LOGGER_NAME)
Entry = tuple[bytes, dict[bytes, bytes]]
T = TypeVar("T")


class StreamConsumer:
    """One consumer of the group: reads, applies, dead-letters and acknowledges entries."""

    def __init__(
        self, settings: ConsumerSettings, store: RedisSettings, metrics: ConsumerMetrics
    ) -> None:
        import redis.asyncio

        self.settings, self.metrics = settings, metrics
        self.stream = settings.stream_key(store.prefix)
        self.dead_letter = settings.dead_letter_key(store.prefix)
        self.writer = OutcomeWriter(store, settings.apply_timeout_s)
        self.applier: OutcomeApplier[bytes] = OutcomeApplier(self.writer)
        # A blocked read holds its connection for block_ms: the timeout must outlast it.
        timeout = settings.block_ms / 1000 + settings.apply_timeout_s
        options = {**store.client_options(), "socket_timeout": timeout}
        self.conn: redis.asyncio.Redis = redis.asyncio.Redis.from_url(store.url, **options)
        stale = 2 * (timeout + settings.apply_timeout_s + settings.retry_max_s)
        self.health = Health(stale_after_s=max(60.0, stale))

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set: own pending entries first, then claims and new ones."""
        await self._retrying(self.ensure_group, stop, "create group")
        if stop.is_set():
            return
        await self._measure_lag()  # before any work: the gauges never show a made-up 0
        lag = asyncio.create_task(self._watch_lag(stop))
        try:
            await self._retrying(lambda: self.recover(stop), stop, "read own pending")
            next_claim = time.monotonic()
            while not stop.is_set():
                self.health.beat()
                if time.monotonic() >= next_claim:
                    await self._retrying(lambda: self.claim(stop), stop, "claim")
                    next_claim = time.monotonic() + self.settings.claim_interval_s
                await self._retrying(lambda: self.poll(stop), stop, "read")
        finally:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag

    async def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists."""
        from redis.exceptions import ResponseError

        try:
            await self.conn.xgroup_create(
                self.stream, self.settings.group, id=self.settings.start_id, mkstream=True
            )
            log.info("group created", extra={"fields": self.where})
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def recover(self, stop: asyncio.Event) -> int:
        """Handle this consumer's own pending entries (delivered before a restart)."""
        after, done = b"0", 0
        while not stop.is_set():
            entries = await self._read(after, block=None)
            if not entries or not await self.handle(entries, stop):
                break
            done, after = done + len(entries), entries[-1][0]
        if done:
            log.info("own pending entries handled", extra={"fields": {"entries": done}})
        return done

    async def claim(self, stop: asyncio.Event) -> int:
        """Take over and handle entries left pending by other consumers for too long."""
        cursor, done = b"0-0", 0
        while not stop.is_set():
            reply = await self.conn.xautoclaim(
                self.stream, self.settings.group, self.settings.consumer,
                self.settings.claim_idle_ms, cursor, count=self.settings.batch,
            )  # fmt: skip
            cursor, entries = reply[0], reply[1]
            if len(reply) > 2 and reply[2]:  # trimmed away while pending: Redis drops them
                log.warning("pending entries were deleted before they were applied",
                            extra={"fields": {"entries": len(reply[2])}})  # fmt: skip
            if entries:
                self.metrics.claimed.inc(len(entries))
                done += len(entries)
                if not await self.handle(entries, stop):
                    break
            if cursor in (b"0-0", "0-0"):
                break
        if done:
            log.info("claimed idle entries", extra={"fields": {"entries": done}})
        return done

    async def poll(self, stop: asyncio.Event) -> int:
        """Read up to ``batch`` new entries (waiting up to ``block_ms``) and handle them."""
        entries = await self._read(b">", block=self.settings.block_ms)
        if entries:
            await self.handle(entries, stop)
        return len(entries)

    async def handle(self, entries: Sequence[Entry], stop: asyncio.Event) -> bool:
        """Apply a batch, dead-letter its bad entries and acknowledge it all.

        Returns:
            False when ``stop`` came while a failed call was being retried: nothing of the
            batch is acknowledged (it stays pending, and is applied again later, safely).
        """
        self.health.beat()
        items, rejected = [], []
        for entry_id, fields in entries:
            try:  # an entry deleted before it was read has no fields
                items.append((entry_id, decode_event((fields or {}).get(EVENT_FIELD.encode()))))
            except DecodeError as exc:
                rejected.append(Rejected(entry_id, str(exc)))
        timed = await self._retrying(lambda: self._apply(items), stop, "apply")
        if timed is None:
            return False
        handled, seconds = timed
        dead = [*rejected, *handled.rejected]
        ids = [entry_id for entry_id, _ in entries]
        acked = await self._retrying(lambda: self._ack(ids, dead, dict(entries)), stop, "ack")
        if acked is None:
            return False
        self.metrics.count(handled.result, len(dead))
        r = handled.result
        summary = {"entries": len(ids), "applied": r.applied, "duplicates": r.duplicates,
                   "late": r.late, "dead_lettered": len(dead), "version": r.version,
                   "apply_ms": round(seconds * 1000, 1)}  # fmt: skip
        log.info("batch applied", extra={"fields": summary})
        return True

    async def _apply(self, items: list[tuple[bytes, Any]]) -> tuple[Handled[bytes], float]:
        """One apply, timed (the latency histogram has successful calls only)."""
        started = time.monotonic()
        handled = await self.applier.apply(items)
        seconds = time.monotonic() - started
        if handled.applied:
            self.metrics.apply_seconds.observe(seconds)
        return handled, seconds

    async def _ack(
        self, ids: list[bytes], dead: list[Rejected[bytes]], fields: dict[bytes, Any]
    ) -> bool:
        """Dead-letter and acknowledge in one transaction: a bad entry is copied once."""
        pipe = self.conn.pipeline(transaction=True)
        for bad in dead:
            copy = {**(fields.get(bad.ref) or {}), "error": bad.error, "source_id": bad.ref}
            pipe.xadd(self.dead_letter, copy, maxlen=self.settings.dead_letter_maxlen)
        pipe.xack(self.stream, self.settings.group, *ids)
        await pipe.execute()
        for bad in dead:
            log.warning(
                "entry dead-lettered", extra={"fields": {"id": bad.ref, "error": bad.error}}
            )
        return True

    async def _read(self, after: bytes, block: int | None) -> list[Entry]:
        reply: Any = await self.conn.xreadgroup(
            self.settings.group, self.settings.consumer, {self.stream: after},
            count=self.settings.batch, block=block,
        )  # fmt: skip
        return list(reply[0][1]) if reply else []

    async def _retrying(
        self, call: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str
    ) -> T | None:
        """``call()`` until it succeeds, backing off after each failure; None if stopped."""
        from redis.exceptions import RedisError, ResponseError

        delay = self.settings.retry_min_s
        while True:
            try:
                result = await call()
                self.health.ready = True
                return result
            except UserError as exc:  # no live version (yet): wait for materialize
                reason, message = "feature_store", str(exc)
            except (RedisError, TimeoutError, OSError) as exc:
                reason, message = "redis", f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    reason = "no_group"  # the stream or group was deleted: make them again
                    with contextlib.suppress(RedisError, TimeoutError, OSError):
                        await self.ensure_group()
            self.health.ready = False
            self.metrics.failures.labels(reason=reason).inc()
            fields = {"reason": reason, "error": message, "retry_in_s": delay}
            log.warning(f"{what} failed, retrying: {message}", extra={"fields": fields})
            self.health.beat()
            if await _wait(stop, delay):
                return None
            delay = min(delay * 2, self.settings.retry_max_s)

    async def _watch_lag(self, stop: asyncio.Event) -> None:
        while not await _wait(stop, self.settings.lag_interval_s):
            await self._measure_lag()

    async def _measure_lag(self) -> None:
        from redis.exceptions import RedisError

        try:
            self.metrics.set_lag(await measure_lag(self.conn, self.stream, self.settings.group))
        except (RedisError, TimeoutError, OSError, LookupError) as exc:
            log.debug("lag not measured", extra={"fields": {"error": type(exc).__name__}})

    @property
    def where(self) -> dict[str, str]:
        """Stream, group and consumer name, for log lines."""
        s = self.settings
        return {"stream": self.stream, "group": s.group, "consumer": s.consumer}

    async def aclose(self) -> None:
        """Close both clients."""
        await self.writer.aclose()
        await self.conn.aclose()


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True if stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def serve(settings: ConsumerSettings, store: RedisSettings) -> None:
    """Run one worker with its HTTP port until SIGTERM or SIGINT."""
    metrics = ConsumerMetrics()
    worker = StreamConsumer(settings, store, metrics)
    server = None
    if settings.metrics_port:
        server = serve_http(metrics, worker.health, settings.metrics_host, settings.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = {**worker.where, "dead_letter": worker.dead_letter, "tls": store.tls,
             "batch": settings.batch, "metrics_port": settings.metrics_port}  # fmt: skip
    log.info("consumer started", extra={"fields": where})
    try:
        await worker.run(stop)
    finally:
        await worker.aclose()
        if server is not None:
            server.shutdown()
    log.info("consumer stopped", extra={"fields": worker.where})


def run(settings: ConsumerSettings, store: RedisSettings) -> None:
    """Log JSON lines at the settings' level and serve until SIGTERM (then return)."""
    configure_logging(settings.log_level)
    asyncio.run(serve(settings, store))


def main() -> None:
    """``python -m approvals.features.consumer``: settings from the environment; exit 0 on
    SIGTERM, 2 on bad settings."""
    try:
        settings, store = ConsumerSettings(), RedisSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"error: {where}: {first['msg']} ({exc.error_count()} problem(s))", file=sys.stderr)
        sys.exit(2)
    run(settings, store)


if __name__ == "__main__":
    main()
