"""Online feature reader: the window counters of the offline SQL, read from Redis.

Materialized hashes (layout and tile arithmetic in :mod:`approvals.features.tiles`) are read
by one Lua script that resolves the live version and flattens every hash of a request in one
round trip, so a request never mixes two versions. For any request after the materialized
state's end the counters equal :func:`approvals.features.offline.query_counts`.

A version is immutable once its pointer is switched, so the parsed hashes of shared keys (BIN,
route, merchant, ...: every family not keyed by the card) are kept in process for the live
version: the script skips the keys the reader already holds when the version it names is
still live, and reads everything when it is not (the cache then starts over).

When Redis is slow, down or empty the reader answers zeros with ``degraded=True`` instead of
failing (a broken pooled connection, e.g. after a failover, is retried once at once; a timeout
never is); a circuit breaker stops hammering a Redis that keeps failing and closes again by
itself once a probe succeeds.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.breaker import CircuitBreaker, OnlineStats
from approvals.features.definitions import FAMILIES
from approvals.features.tiles import (
    Hashes,
    KeyData,
    Plan,
    counts_from_hashes,
    default_counts,
    definitions_hash,
    parse_hashes,
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

# KEYS[1] = pointer; ARGV[1] = prefix; ARGV[2] = the version the reader holds hashes of ("" if
# none); ARGV[3] = the request's keys "<family>:<key>" concatenated, ARGV[4] = their lengths in
# bytes, comma-separated (two arguments whatever the number of keys: packing one argument per
# key cost the client more than the script). A key "?<family>:<key>" is one the reader holds:
# skipped, as an empty hash, when ARGV[2] is still the live version. Each hash is flattened
# into one string (fields and values joined by \x1e) and the hashes into one reply (joined by
# \x1d, empty for a missing key), so the client parses one bulk string. The 4th element says
# whether held keys were skipped (1) or read (0).
READ_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then return {false} end
local same = ARGV[2] == version
local base = ARGV[1] .. ':' .. version .. ':'
local keys = ARGV[3]
local hashes = {}
local at = 1
for size in string.gmatch(ARGV[4], '%d+') do
  local key = string.sub(keys, at, at + size - 1)
  at = at + size
  if string.byte(key, 1) == 63 then
    if same then key = nil else key = string.sub(key, 2) end
  end
  if key then
    hashes[#hashes + 1] = table.concat(redis.call('HGETALL', base .. key), '\\30')
  else
    hashes[#hashes + 1] = ''
  end
end
return {version, redis.call('HMGET', base .. 'meta', 'defs', 'end_us'),
        table.concat(hashes, '\\29'), same and 1 or 0}
"""
HELD = "?"  # prefix of a key whose hash the reader holds for the version it names
# Families whose keys many requests share (not keyed by the card): worth keeping parsed.
SHARED = np.array(["card_fingerprint" not in f.keys for f in FAMILIES])


@dataclass
class _Request:
    """A read as sent: its arguments, and the parsed hashes it relies on the reader holding."""

    args: list[str | bytes]
    version: str  # the version the held hashes belong to ("" when none)
    held: dict[int, KeyData]  # plan slot -> parsed hash (for the key sent with HELD)


class _Held:
    """Parsed hashes of shared keys of one materialized version, least recently used first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.version = ""
        self.hashes: OrderedDict[str, KeyData] = OrderedDict()

    def request(self, prefix: str, p: Plan) -> _Request:
        keys: list[bytes] = []
        held: dict[int, KeyData] = {}
        for slot, relkey in enumerate(p.relkeys):
            data = self.hashes.get(relkey) if self.version else None
            if data is None:
                keys.append(relkey.encode())
            else:
                self.hashes.move_to_end(relkey)
                held[slot] = data
                keys.append((HELD + relkey).encode())
        lengths = ",".join([str(len(k)) for k in keys])
        return _Request([prefix, self.version, b"".join(keys), lengths], self.version, held)

    def keep(self, version: str, p: Plan, read: Hashes, slots: np.ndarray) -> None:
        """Remember the shared hashes just read (a new version replaces the old ones)."""
        if not self.size:
            return
        if version != self.version:
            self.version = version
            self.hashes.clear()
        for i, slot in enumerate(slots.tolist()):
            if SHARED[p.families[slot]] and p.relkeys[slot] not in self.hashes:
                self.hashes[p.relkeys[slot]] = read.key(i)
        while len(self.hashes) > self.size:
            self.hashes.popitem(last=False)


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
        on_keys: Callable[[int, int], None] | None = None,
    ) -> None:
        """Prepare clients lazily (nothing connects before the first request).

        Args:
            settings: where Redis is and how long to wait for it.
            on_degraded: called with the reason of every degraded answer (e.g. to count it in
                Prometheus): ``breaker_open``, ``error``, ``no_version``, ``definitions``, ``data``.
            clock: monotonic clock for the breaker (tests may pass their own).
            on_keys: called with (keys read from Redis, keys answered from held hashes) of
                every answer served from the store (e.g. to count them in Prometheus).
        """
        self.settings = settings
        self.stats = OnlineStats(on_degraded, on_keys)
        self.breaker = CircuitBreaker(settings.failure_threshold, settings.cooldown_s, clock)
        self._defs = definitions_hash()
        self._pointer = f"{settings.prefix}:current"
        self._held = _Held(settings.cache_keys)
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

        request = self._held.request(self.settings.prefix, p)
        try:
            reply = self._sync_script()(keys=[self._pointer], args=request.args)
        except (RedisError, OSError) as exc:
            return self._failed(p, exc)
        return self._answer(p, reply, request)

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

        request = self._held.request(self.settings.prefix, p)
        try:
            reply = await self._async_script()(keys=[self._pointer], args=request.args)
        except (RedisError, OSError) as exc:
            return self._failed(p, exc)
        return self._answer(p, reply, request)

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

    def _sync_script(self) -> Any:
        if self._sync is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            options = self.settings.client_options()
            retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            self._sync = redis.Redis.from_url(self.settings.url, retry=retry, **options)
            self._sync_reader = self._sync.register_script(READ_SCRIPT)
        return self._sync_reader

    def _async_script(self) -> Any:
        if self._async is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            options = self.settings.client_options()
            retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            self._async = redis.asyncio.Redis.from_url(self.settings.url, retry=retry, **options)
            self._async_reader = self._async.register_script(READ_SCRIPT)
        return self._async_reader

    def _answer(self, p: Plan, reply: list[Any], request: _Request) -> OnlineCounts:
        if self.breaker.success():
            log.warning("online features: Redis answers again; circuit breaker closed")
        if not reply or reply[0] is None:
            return self._degraded(p, "no_version")
        defs, end_us = reply[1]
        if defs is None or defs.decode() != self._defs:
            return self._degraded(p, "definitions")
        try:
            version = reply[0].decode()
            skipped = bool(reply[3]) and version == request.version
            held = request.held if skipped else {}
            slots = np.array([i for i in range(len(p.relkeys)) if i not in held], dtype=np.int64)
            blobs = split_blobs(reply[2], len(p.relkeys))
            read = parse_hashes(p.families[slots], [blobs[i] for i in slots.tolist()])
            counts = counts_from_hashes(p, read, slots, held)
            # Outcomes at or after t may be inside a state that ends after t: count it.
            early = int(np.count_nonzero(p.t_us <= int(end_us)))
        except (ValueError, KeyError, IndexError, UnicodeDecodeError, TypeError):
            return self._degraded(p, "data")
        self._held.keep(version, p, read, slots)
        self.stats.read(early, keys_read=len(slots), keys_held=len(held))
        return OnlineCounts(counts, degraded=False, version=version)

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
