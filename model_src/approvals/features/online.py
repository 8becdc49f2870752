"""Online feature reader: the window counters of the offline SQL, read from Redis.

Materialized hashes (layout and tile arithmetic in :mod:`approvals.features.tiles`) are read
by one Lua script that resolves the live version and flattens every hash of a request in one
round trip, so a request never mixes two versions. For any request after the materialized
state's end the counters equal :func:`approvals.features.offline.query_counts`.

When Redis is slow, down or empty the reader answers zeros with ``degraded=True`` instead of
failing; a circuit breaker stops hammering a Redis that keeps failing and closes again by
itself once a probe succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.breaker import CircuitBreaker, OnlineStats
from approvals.features.tiles import (
    Plan,
    counts_from_blobs,
    default_counts,
    definitions_hash,
    plan,
    plan_columns,
    split_blobs,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from approvals.settings import RedisSettings

__all__ = ["READ_SCRIPT", "OnlineCounts", "OnlineFeatureStore"]

log = logging.getLogger("approvals.online")

# KEYS[1] = pointer; ARGV[1] = prefix; ARGV[2..] = "<family>:<key>" of the request. Each hash
# is flattened into one string (fields and values joined by \x1e) and the hashes into one
# reply (joined by \x1d, empty for a missing key): a single bulk reply, whatever the number of
# keys, keeps the client's protocol parsing negligible.
READ_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then return {false} end
local base = ARGV[1] .. ':' .. version .. ':'
local hashes = {}
for i = 2, #ARGV do
  hashes[i - 1] = table.concat(redis.call('HGETALL', base .. ARGV[i]), '\\30')
end
return {version, redis.call('HMGET', base .. 'meta', 'defs', 'end_us'),
        table.concat(hashes, '\\29')}
"""


@dataclass(frozen=True)
class OnlineCounts:
    """Window counters of a request, shaped like the offline ``query_counts`` output.

    Attributes:
        counts: ``<family>_<window>_<counter>`` float arrays, ``card_last_us`` (float, NaN when
            unknown) and ``card_last_code`` (object, None when unknown), one row per attempt.
        degraded: True when Redis could not answer and every counter is a default.
        version: the materialized version read (None when degraded).
    """

    counts: dict[str, np.ndarray]
    degraded: bool
    version: str | None


class OnlineFeatureStore:
    """Reads a request's window counters from Redis in one round trip, degrading safely.

    Attributes:
        settings: connection settings (the password stays inside a SecretStr).
        stats: counters for metrics (reads, degraded answers by reason, failures).
        breaker: the circuit breaker guarding Redis.
    """

    def __init__(
        self,
        settings: RedisSettings,
        on_degraded: Callable[[str], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Prepare clients lazily (nothing connects before the first request).

        Args:
            settings: where Redis is and how long to wait for it.
            on_degraded: called with the reason of every degraded answer (e.g. to count it in
                Prometheus): ``breaker_open``, ``error``, ``no_version``, ``definitions``, ``data``.
            clock: monotonic clock for the breaker (tests may pass their own).
        """
        self.settings = settings
        self.stats = OnlineStats(on_degraded)
        self.breaker = CircuitBreaker(settings.failure_threshold, settings.cooldown_s, clock)
        self._defs = definitions_hash()
        self._pointer = f"{settings.prefix}:current"
        self._sync: redis.Redis | None = None
        self._async: redis.asyncio.Redis | None = None

    def __repr__(self) -> str:
        return f"OnlineFeatureStore(settings={self.settings!r}, breaker={self.breaker.state})"

    def counts(
        self, attempts: Sequence[Mapping[str, Any]], now: datetime | None = None
    ) -> OnlineCounts:
        """Window counters of ``attempts``, read in one round trip.

        Args:
            attempts: contract fields of each attempt (the family key fields and
                ``event_time``, a datetime; naive means UTC).
            now: request time for every attempt instead of its ``event_time`` (e.g. the
                server clock). Counters are exact for times after the state's end; earlier
                ones are counted in ``stats.not_after_state``.

        Raises:
            ValueError: an attempt lacks a key field or has no valid event_time.
        """
        p = plan(attempts, now)
        if not self.breaker.allow():
            return self._degraded(p, "breaker_open")
        from redis.exceptions import RedisError

        try:
            reply = self._sync_script()(keys=[self._pointer], args=self._args(p))
        except (RedisError, OSError) as exc:
            return self._failed(p, exc)
        return self._answer(p, reply)

    async def acounts(
        self, attempts: Sequence[Mapping[str, Any]], now: datetime | None = None
    ) -> OnlineCounts:
        """Asyncio twin of :meth:`counts` (redis.asyncio, same breaker and stats).

        The asyncio connection pool belongs to the event loop of the first call: use one
        loop per store (as a service does).
        """
        return await self._aread(plan(attempts, now))

    async def _aread(self, p: Plan) -> OnlineCounts:
        if not self.breaker.allow():
            return self._degraded(p, "breaker_open")
        from redis.exceptions import RedisError

        try:
            reply = await self._async_script()(keys=[self._pointer], args=self._args(p))
        except (RedisError, OSError) as exc:
            return self._failed(p, exc)
        return self._answer(p, reply)

    async def acounts_columns(self, columns: Mapping[str, Any]) -> OnlineCounts:
        """:meth:`acounts` of attempts given as columns (``event_time`` naive UTC datetime64).

        The serving path: key texts are built per column, not per attempt and family.

        Raises:
            ValueError: a key field is missing.
        """
        t_us = np.asarray(columns["event_time"], dtype="datetime64[us]").astype(np.int64)
        return await self._aread(plan_columns(columns, t_us))

    def close(self) -> None:
        """Close the synchronous connection pool."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the asyncio connection pool."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def _args(self, p: Plan) -> list[str]:
        return [self.settings.prefix, *p.relkeys]

    def _sync_script(self) -> Any:
        if self._sync is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            options = self.settings.client_options()
            self._sync = redis.Redis.from_url(
                self.settings.url, retry=Retry(NoBackoff(), 0), **options
            )
            self._sync_reader = self._sync.register_script(READ_SCRIPT)
        return self._sync_reader

    def _async_script(self) -> Any:
        if self._async is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            options = self.settings.client_options()
            self._async = redis.asyncio.Redis.from_url(
                self.settings.url, retry=Retry(NoBackoff(), 0), **options
            )
            self._async_reader = self._async.register_script(READ_SCRIPT)
        return self._async_reader

    def _answer(self, p: Plan, reply: list[Any]) -> OnlineCounts:
        if self.breaker.success():
            log.warning("online features: Redis answers again; circuit breaker closed")
        if not reply or reply[0] is None:
            return self._degraded(p, "no_version")
        defs, end_us = reply[1]
        if defs is None or defs.decode() != self._defs:
            return self._degraded(p, "definitions")
        try:
            counts = counts_from_blobs(p, split_blobs(reply[2], len(p.relkeys)))
            # Outcomes at or after t may be inside a state that ends after t: count it.
            early = int(np.count_nonzero(p.t_us <= int(end_us)))
        except (ValueError, KeyError, IndexError, UnicodeDecodeError, TypeError):
            return self._degraded(p, "data")
        self.stats.read(early)
        return OnlineCounts(counts, degraded=False, version=reply[0].decode())

    def _failed(self, p: Plan, exc: BaseException) -> OnlineCounts:
        self.stats.failure()
        if self.breaker.failure():
            log.warning(
                "online features: circuit breaker opened after %s (%s); cooling down %.1fs",
                type(exc).__name__,
                " ".join(str(exc).split())[:200],
                self.settings.cooldown_s,
            )
        return self._degraded(p, "error")

    def _degraded(self, p: Plan, reason: str) -> OnlineCounts:
        self.stats.degrade(reason)
        return OnlineCounts(default_counts(len(p.t_us)), degraded=True, version=None)
