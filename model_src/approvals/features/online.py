"""Online feature reader: the window counters of the offline SQL, read from Redis.

Materialized values (packed records; layout and tile arithmetic in
:mod:`approvals.features.tiles`) are read by one Lua script that resolves the live version and
returns every value of a request concatenated, in one round trip, so a request never mixes two
versions and the whole reply is parsed with one ``numpy.frombuffer``. For any request after the
materialized state's end the counters equal :func:`approvals.features.offline.query_counts`.

A version changes only through live outcomes (:mod:`approvals.features.outcomes`), which count
their writes in its meta, so the values of shared keys (BIN, route, merchant, ...: every family
not keyed by the card) are kept in process for the live version and write count: the script
skips the keys the reader already holds while both are still live, and reads everything when
they are not (the kept values then start over).

When Redis is slow, down or empty the reader answers zeros with ``degraded=True`` instead of
failing (a broken pooled connection, e.g. after a failover, is retried once at once; a timeout
never is); a circuit breaker stops hammering a Redis that keeps failing and closes again by
itself once a probe succeeds.

Whether the live version holds a model's features at all
(:meth:`OnlineFeatureStore.afeatures_status`, the service's readiness when it requires
features) is one more small script call, made at most about once a second.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import compress, repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.features.breaker import CircuitBreaker, OnlineStats
from approvals.features.definitions import FAMILIES
from approvals.features.live import (
    LIVE_SCRIPT,
    FeaturesStatus,
    Readiness,
    features_status,
    parse_live,
)
from approvals.features.tiles import (
    Plan,
    Value,
    counts_from_records,
    default_counts,
    definitions_hash,
    parse_value,
    plan,
    plan_columns,
    plan_row,
    row_counts,
    unpack,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from approvals.features.redis_settings import RedisSettings

__all__ = ["READ_SCRIPT", "FeaturesStatus", "OnlineCounts", "OnlineFeatureStore", "OnlineRow"]

log = logging.getLogger("approvals.online")

# KEYS[1] = pointer; ARGV[1] = prefix; ARGV[2] = the definitions hash the reader expects;
# ARGV[3] = the version the reader holds values of ("" if none); ARGV[4] = the request's keys
# "<family>:<key>" concatenated, ARGV[5] = their lengths in bytes, comma-separated, ARGV[6] =
# one byte per key, 1 for a key whose value the reader holds (a fixed number of arguments
# whatever the number of keys: one argument per key cost the client more than the script).
# Held keys are skipped (as absent) while ARGV[3] still names what is live: the version, with
# "@<gen>" once live outcomes have changed it (:mod:`approvals.features.outcomes` counts its
# writes in the meta field ``gen``, so held values never outlive a write). The reply is the
# version, the meta fields, every value concatenated, their lengths (uint32 little-endian, 0
# for an absent or skipped key), whether held keys were skipped and the name held values are
# kept under; just the version and meta when the definitions differ (a state of another
# layout is never read).
READ_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then return {false} end
local base = ARGV[1] .. ':' .. version .. ':'
local meta = redis.call('HMGET', base .. 'meta', 'defs', 'end_us', 'gen')
if meta[1] ~= ARGV[2] then return {version, meta} end
local held_as = meta[3] and (version .. '@' .. meta[3]) or version
local same = ARGV[3] == held_as
local keys, held = ARGV[4], ARGV[6]
local values, lengths = {}, {}
local at, i = 1, 0
for size in string.gmatch(ARGV[5], '%d+') do
  i = i + 1
  local value = false
  if not (same and string.byte(held, i) == 1) then
    value = redis.call('GET', base .. string.sub(keys, at, at + size - 1))
  end
  at = at + size
  if value then
    values[#values + 1] = value
    lengths[i] = struct.pack('<I4', #value)
  else
    lengths[i] = struct.pack('<I4', 0)
  end
end
return {version, meta, table.concat(values), table.concat(lengths), same and 1 or 0, held_as}
"""
# Families whose keys many requests share (not keyed by the card): worth keeping.
SHARED = np.array(["card_fingerprint" not in f.keys for f in FAMILIES])
_SHARED_ROW = SHARED.tolist()  # by slot of a one-attempt plan (one key per family)


@dataclass
class _Request:
    """A read as sent: its arguments, and the values it relies on the reader holding."""

    args: list[str | bytes]
    version: str  # the version the held values belong to ("" when none)
    held_slots: list[int]  # plan slots of the keys sent as held
    held_values: list[bytes]  # their values


class _Held:
    """Stored values of shared keys of one materialized version (the oldest go first)."""

    def __init__(self, size: int, prefix: str, defs: str) -> None:
        self.size = size
        self.prefix = prefix
        self.defs = defs
        self.version = ""
        self.values: dict[str, bytes] = {}
        self.parsed: dict[str, Value] = {}  # of the same values, parsed by the row path

    def request(self, p: Plan) -> _Request:
        keys = p.relkeys
        found = list(map(self.values.get, keys)) if self.version else [None] * len(keys)
        held = list(map(operator.is_not, found, repeat(None)))
        joined = "".join(keys)
        if joined.isascii():  # lengths in characters are lengths in bytes
            data, lengths = joined.encode(), ",".join(map(str, map(len, keys)))
        else:
            encoded = [k.encode() for k in keys]
            data, lengths = b"".join(encoded), ",".join(map(str, map(len, encoded)))
        args: list[str | bytes] = [self.prefix, self.defs, self.version, data, lengths, bytes(held)]
        slots = list(compress(range(len(keys)), held))
        return _Request(args, self.version, slots, list(compress(found, held)))  # type: ignore[arg-type]

    def keep(self, version: str, p: Plan, data: bytes, lengths: np.ndarray) -> None:
        """Remember the shared values just read (a new version replaces the old ones)."""
        if not self._switch(version):
            return
        ends = np.cumsum(lengths)
        for slot in np.flatnonzero(SHARED[p.families] & (lengths > 0)).tolist():
            relkey = p.relkeys[slot]
            if relkey not in self.values:
                self.values[relkey] = data[ends[slot] - lengths[slot] : ends[slot]]
        self._bound()

    def keep_row(self, version: str, p: Plan, read: Sequence[tuple[int, bytes, Value]]) -> None:
        """:meth:`keep` for the row path: the shared values among ``read`` (slot, stored
        value, parsed), kept with their parsed form."""
        if not self._switch(version):
            return
        for slot, value, parsed in read:
            relkey = p.relkeys[slot]
            if _SHARED_ROW[slot] and relkey not in self.values:
                self.values[relkey] = value
                self.parsed[relkey] = parsed
        self._bound()

    def _switch(self, version: str) -> bool:
        """Hold values of ``version`` from now on (forgetting others); False when none are."""
        if not self.size:
            return False
        if version != self.version:
            self.version = version
            self.values.clear()
            self.parsed.clear()
        return True

    def _bound(self) -> None:
        """Forget the oldest values beyond ``size``."""
        if len(self.values) > self.size:
            for relkey in list(self.values)[: len(self.values) - self.size]:
                del self.values[relkey]
                self.parsed.pop(relkey, None)

    def parse(self, version: str, relkey: str, value: bytes) -> Value:
        """:func:`~approvals.features.tiles.parse_value` of a value of ``version``, parsed once
        while ``version`` is the one held (a read in flight across a version switch parses
        its values without keeping them)."""
        if version != self.version:
            return parse_value(value)
        parsed = self.parsed.get(relkey)
        if parsed is None:
            parsed = self.parsed[relkey] = parse_value(value)
        return parsed


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


@dataclass(frozen=True)
class OnlineRow:
    """Window counters of one attempt, as plain values (the single-attempt serving path).

    Attributes:
        counts: the keys of :attr:`OnlineCounts.counts`, each with the attempt's value (a
            float; ``card_last_code`` a str or None).
        degraded: True when Redis could not answer and every counter is a default.
        version: the materialized version read (None when degraded).
    """

    counts: dict[str, float | str | None]
    degraded: bool
    version: str | None


_DEFAULT_ROW = {
    name: (column.tolist()[0] if column.dtype != object else None)
    for name, column in default_counts(1).items()
}


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
        self._held = _Held(settings.cache_keys, settings.prefix, self._defs)
        self._sync: redis.Redis | None = None
        self._async: redis.asyncio.Redis | None = None
        self._clock = clock or time.monotonic
        self._status_lock = asyncio.Lock()
        self._status: tuple[float, int | None, FeaturesStatus] | None = None  # (read at, for, what)

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

        request = self._held.request(p)
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
        fetched = await self._fetch(p)
        if isinstance(fetched, str):
            return self._degraded(p, fetched)
        return self._answer(p, *fetched)

    async def _fetch(self, p: Plan) -> tuple[list[Any], _Request] | str:
        """The read script's reply to ``p`` and the request sent, or why there is none
        (``breaker_open``, or ``error`` once the failure is counted)."""
        if not self.breaker.allow():
            return "breaker_open"
        from redis.exceptions import RedisError

        request = self._held.request(p)
        try:
            return await self._aexecute(request), request
        except (RedisError, OSError) as exc:  # OSError includes TimeoutError
            self._count_failure(exc)
            return "error"

    async def acounts_columns(self, columns: Mapping[str, Any]) -> OnlineCounts:
        """:meth:`acounts` of attempts given as columns (``event_time`` naive UTC datetime64).

        The serving path: key texts are built per column, not per attempt and family.

        Raises:
            ValueError: a key field is missing.
        """
        t_us = np.asarray(columns["event_time"], dtype="datetime64[us]").astype(np.int64)
        return await self._aread(plan_columns(columns, t_us))

    async def acounts_row(self, attempt: Mapping[str, Any], t_us: int) -> OnlineRow:
        """:meth:`acounts_columns` of one attempt, without numpy's cost per call on one row.

        Args:
            attempt: the attempt's key fields as values.
            t_us: its request time, epoch microseconds.

        Raises:
            ValueError: a key field is missing.
        """
        p = plan_row(attempt, t_us)
        fetched = await self._fetch(p)
        if isinstance(fetched, str):
            return self._default_row(fetched)
        return self._answer_row(p, *fetched)

    async def afeatures_status(
        self, model_end_us: int | None, max_age_s: float = 1.0
    ) -> FeaturesStatus:
        """Whether the live version holds the features of a model whose state ends at
        ``model_end_us`` (epoch microseconds; None: any version of these definitions does).

        One script call bounded like a read (``timeout_ms`` plus ``connect_timeout_ms``); its
        answer is kept ``max_age_s``, and callers arriving meanwhile wait for it, so a storm of
        probes costs one Redis read. A Redis that fails answers ``unreachable``, which the
        breaker does not count (it judges requests, not probes).
        """
        async with self._status_lock:
            kept = self._status
            if kept is not None and kept[1] == model_end_us and self._clock() - kept[0] < max_age_s:
                return kept[2]
            status = await self._read_status(model_end_us)
            self._status = (self._clock(), model_end_us, status)
            return status

    async def _read_status(self, model_end_us: int | None) -> FeaturesStatus:
        from redis.exceptions import RedisError

        self._async_client()
        budget_s = (self.settings.timeout_ms + self.settings.connect_timeout_ms) / 1000
        try:
            async with asyncio.timeout(budget_s):
                reply = await self._async_live(keys=[self._pointer], args=[self.settings.prefix])
            live = parse_live(reply)
        except (RedisError, OSError, ValueError):  # OSError includes TimeoutError
            return FeaturesStatus(Readiness.UNREACHABLE, None, model_end_us)
        return features_status(live, model_end_us)

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

    async def _aexecute(self, request: _Request) -> Any:
        """The read script's reply, within ``timeout_ms`` (plus ``connect_timeout_ms`` when no
        pooled connection is idle, so one may be opened).

        The asyncio client has no socket timeout of its own: redis-py bounds a send with
        ``asyncio.wait_for``, which in Python 3.11 starts a task per command, and that task
        cost more than the read itself. One ``asyncio.timeout`` around the whole call bounds
        it instead; a call cut short drops its connection (redis-py never reuses one that is
        mid-reply) and counts as a failure.

        Raises:
            TimeoutError: Redis did not answer in time.
            redis.RedisError: Redis answered with an error or the connection broke.
        """
        script = self._async_script()
        pool = self._async.connection_pool if self._async is not None else None
        idle = getattr(pool, "_available_connections", None)
        budget_ms = self.settings.timeout_ms + (0 if idle else self.settings.connect_timeout_ms)
        async with asyncio.timeout(budget_ms / 1000):
            return await script(keys=[self._pointer], args=request.args)

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
        self._async_client()
        return self._async_reader

    def _async_client(self) -> None:
        """The asyncio client and its scripts, made on first use."""
        if self._async is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # no socket timeout: each call is bounded as a whole (see _aexecute)
            options = {**self.settings.client_options(), "socket_timeout": None}
            retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            self._async = redis.asyncio.Redis.from_url(self.settings.url, retry=retry, **options)
            self._async_reader = self._async.register_script(READ_SCRIPT)
            self._async_live = self._async.register_script(LIVE_SCRIPT)

    def _answer(self, p: Plan, reply: list[Any], request: _Request) -> OnlineCounts:
        if refusal := self._refusal(reply):
            return self._degraded(p, refusal)
        end_us = reply[1][1]
        try:
            version = reply[0].decode()
            data, lengths = reply[2], np.frombuffer(reply[3], "<u4").astype(np.int64)
            if len(lengths) != len(p.relkeys):
                raise ValueError(f"read script returned {len(lengths)} values for a plan's keys")
            held_as = reply[5].decode()
            held = request.held_slots if bool(reply[4]) and held_as == request.version else []
            positions = None
            if held:  # held values first, then those read, in plan order
                read = np.ones(len(lengths), dtype=bool)
                read[held] = False
                order = np.concatenate([held, np.flatnonzero(read)])
                positions = np.empty(len(order), dtype=np.int64)
                positions[order] = np.arange(len(order))
                sizes = np.fromiter(map(len, request.held_values), np.int64, len(held))
                joined = b"".join([*request.held_values, data])
                records = unpack(joined, np.concatenate([sizes, lengths[read]]))
            else:
                records = unpack(data, lengths)
            counts = counts_from_records(p, records, positions)
            # Outcomes at or after t may be inside a state that ends after t: count it.
            early = int(np.count_nonzero(p.t_us <= int(end_us)))
        except (ValueError, KeyError, IndexError, UnicodeDecodeError, TypeError):
            return self._degraded(p, "data")
        self._held.keep(held_as, p, data, lengths)
        self.stats.read(early, keys_read=len(p.relkeys) - len(held), keys_held=len(held))
        return OnlineCounts(counts, degraded=False, version=version)

    def _answer_row(self, p: Plan, reply: list[Any], request: _Request) -> OnlineRow:
        """:meth:`_answer` of a one-attempt plan, parsed into plain values."""
        if refusal := self._refusal(reply):
            return self._default_row(refusal)
        end_us = reply[1][1]
        keys = p.relkeys
        try:
            version = reply[0].decode()
            data, lengths = reply[2], struct.unpack(f"<{len(keys)}I", reply[3])
            held_as = reply[5].decode()
            same = bool(reply[4]) and held_as == request.version
            held = dict(zip(request.held_slots, request.held_values, strict=True)) if same else {}
            values: list[Value | None] = []
            read: list[tuple[int, bytes, Value]] = []
            at = 0
            for slot, size in enumerate(lengths):
                if slot in held:
                    values.append(self._held.parse(held_as, keys[slot], held[slot]))
                elif size:
                    value = data[at : at + size]
                    values.append(parse_value(value))
                    read.append((slot, value, values[-1]))  # type: ignore[arg-type]
                    at += size
                else:
                    values.append(None)
            if at != len(data):
                raise ValueError("stored values are not whole records")
            counts = row_counts(p, values)
            early = int(int(p.t_us[0]) <= int(end_us))
        except (ValueError, KeyError, IndexError, UnicodeDecodeError, TypeError, struct.error):
            return self._default_row("data")
        self._held.keep_row(held_as, p, read)
        self.stats.read(early, keys_read=len(keys) - len(held), keys_held=len(held))
        return OnlineRow(counts, degraded=False, version=version)

    def _refusal(self, reply: list[Any]) -> str | None:
        """Why an answer of Redis holds no counters (``no_version``, ``definitions``), if so;
        an answer at all closes an open breaker."""
        if self.breaker.success():
            log.warning("online features: Redis answers again; circuit breaker closed")
        if not reply or reply[0] is None:
            return "no_version"
        defs = reply[1][0]
        if defs is None or defs.decode() != self._defs:
            return "definitions"
        return None

    def _default_row(self, reason: str) -> OnlineRow:
        self.stats.degrade(reason)
        return OnlineRow(dict(_DEFAULT_ROW), degraded=True, version=None)

    def _failed(self, p: Plan, exc: BaseException) -> OnlineCounts:
        self._count_failure(exc)
        return self._degraded(p, "error")

    def _count_failure(self, exc: BaseException) -> None:
        self.stats.failure()
        if self.breaker.failure():
            log.warning(
                "online features: circuit breaker opened after %s (%s); cooling down %.1fs",
                type(exc).__name__,
                " ".join(str(exc).split())[:200],
                self.settings.cooldown_s,
            )

    def _degraded(self, p: Plan, reason: str) -> OnlineCounts:
        self.stats.degrade(reason)
        return OnlineCounts(default_counts(len(p.t_us)), degraded=True, version=None)
