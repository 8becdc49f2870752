"""The one writer of the online store: a version's values, its meta last, then the pointer.

Whatever the values come from (a feature state packed on the spot by
:func:`approvals.features.materialize.materialize`, or a model's pre-packed file read by
:mod:`approvals.features.preload`), :func:`write_version` writes them the same way: every key of
a new version with a TTL, in pipelined chunks; the meta hash last; then the pointer
``{prefix}:current`` is switched with one SET and the previous version is left to expire
shortly after. A failure before the switch leaves the previous pointer and keys as they were,
so readers never see a half-written version.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from approvals.errors import UserError
from approvals.features.live import read_live
from approvals.features.tiles import LAYOUT, definitions_hash, epoch_us

if TYPE_CHECKING:
    import redis

    from approvals.features.redis_settings import RedisSettings

DEFAULT_TTL = timedelta(days=8)
OLD_VERSION_TTL_S = 120  # readers of the previous version get this long to finish
WRITE_TIMEOUT_S = 30.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class FamilyBatch:
    """The stored values of one family's keys, ready to write.

    Attributes:
        name: the family.
        keys: version-relative Redis key of each value (``<family>:<key>``).
        values: the packed records of each key (layout in :mod:`approvals.features.tiles`).
        rows: feature state rows the values were computed from.
        records: records in the values (a head per key and its recent tiles).
    """

    name: str
    keys: Sequence[str]
    values: Sequence[bytes]
    rows: int
    records: int


@dataclass(frozen=True)
class VersionContent:
    """Everything a version holds, but the meta fields only a write knows.

    Attributes:
        end: last outcome in the state (naive UTC); the reader is exact after it.
        fields: meta fields of :func:`version_fields` (``keys`` and ``created`` are added by
            :func:`write_version`).
        families: the values, family by family (may be computed as they are written).
    """

    end: datetime
    fields: dict[str, str]
    families: Iterable[FamilyBatch]


@dataclass(frozen=True)
class MaterializeResult:
    """What a write of a version did.

    Attributes:
        version: the new live version.
        previous: the version it replaced (None on the first run).
        end: last outcome in the state (naive UTC); the reader is exact after it.
        keys: family keys written.
        records: records written (a head per key and its recent tiles).
        seconds: wall time of the whole run.
    """

    version: str
    previous: str | None
    end: datetime
    keys: int
    records: int
    seconds: float


def version_fields(end: datetime, rows: dict[str, int]) -> dict[str, str]:
    """The meta fields of a version of a state ending at ``end`` with ``rows`` per family."""
    return {
        "defs": definitions_hash(),
        "layout": str(LAYOUT),
        "end": end.isoformat(),
        "end_us": str(epoch_us(end)),
        **{f"rows_{name}": str(count) for name, count in rows.items()},
    }


def client(settings: RedisSettings, timeout_s: float) -> redis.Redis:
    """A synchronous client for bulk work: ``timeout_s`` per command, a roomy connect timeout."""
    import redis

    options = {**settings.client_options(), "socket_timeout": timeout_s}
    options["socket_connect_timeout"] = max(timeout_s / 3, settings.connect_timeout_ms / 1000)
    return redis.Redis.from_url(settings.url, **options)


def check_reachable(settings: RedisSettings) -> None:
    """Fail before expensive work when Redis cannot be reached.

    Raises:
        redis.RedisError: Redis did not answer a PING.
    """
    conn = client(settings, WRITE_TIMEOUT_S)
    try:
        conn.ping()
    finally:
        conn.close()


def new_version() -> str:
    """A unique, sortable version name (UTC time plus a random suffix)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def write_version(
    content: VersionContent,
    settings: RedisSettings,
    *,
    ttl: timedelta = DEFAULT_TTL,
    chunk_size: int = 2000,
    progress: Progress | None = None,
    timeout_s: float = WRITE_TIMEOUT_S,
    allow_older: bool = False,
) -> MaterializeResult:
    """Write ``content`` as a new version and switch readers to it.

    Args:
        content: the version's values and meta fields.
        settings: Redis location and prefix.
        ttl: lifetime of the new keys and pointer (write again before it runs out).
        chunk_size: keys per pipelined round trip.
        progress: callback for one-line progress messages (one per family).
        timeout_s: socket timeout of the bulk writes.
        allow_older: replace a live version whose state ends later (a rollback).

    Raises:
        UserError: the live version ends later and ``allow_older`` is false.
        redis.RedisError: Redis failed; the previous version stays live.
    """
    started, say = time.monotonic(), progress or (lambda _msg: None)
    conn, version = client(settings, timeout_s), new_version()
    base, ttl_s = f"{settings.prefix}:{version}:", int(ttl.total_seconds())
    try:
        if not allow_older:
            _refuse_older(conn, settings.prefix, content.end)
        try:
            keys, records = _write_families(conn, content.families, base, ttl_s, chunk_size, say)
            _write_meta(conn, content.fields, base, ttl_s, keys)
        except BaseException:
            _discard(conn, base)
            raise
        old = _switch(conn, settings.prefix, version, ttl_s)
    finally:
        conn.close()
    say(f"switched {settings.prefix}:current to {version} (previous: {old})")
    elapsed = time.monotonic() - started
    return MaterializeResult(version, old, content.end, keys, records, elapsed)


def _refuse_older(conn: redis.Redis, prefix: str, end: datetime) -> None:
    """Stop a stale job from replacing newer live features (a rollback must say so)."""
    live = read_live(conn, prefix)
    if live is not None and live.end_us is not None and live.end_us > epoch_us(end):
        raise UserError(
            f"state ends {end.isoformat()}, before the live version {live.version}; "
            "pass allow_older (--allow-older) to roll back on purpose"
        )


def _switch(conn: redis.Redis, prefix: str, version: str, ttl_s: int) -> str | None:
    """Point readers at ``version`` (one SET) and let the previous version expire soon."""
    previous = conn.set(f"{prefix}:current", version, ex=ttl_s, get=True)
    old = previous.decode() if isinstance(previous, bytes) else None
    if old and old != version:
        _expire_version(conn, f"{prefix}:{old}:", OLD_VERSION_TTL_S)
    return old


def _write_families(
    conn: redis.Redis,
    families: Iterable[FamilyBatch],
    base: str,
    ttl_s: int,
    chunk: int,
    say: Progress,
) -> tuple[int, int]:
    keys = records = 0
    pipe = conn.pipeline(transaction=False)
    for batch in families:
        for key, value in zip(batch.keys, batch.values, strict=True):
            pipe.set(base + key, value, ex=ttl_s)
            keys += 1
            if keys % chunk == 0:
                pipe.execute()
        records += batch.records
        say(f"family {batch.name}: {len(batch.keys):,} keys from {batch.rows:,} state rows")
    pipe.execute()
    return keys, records


def _write_meta(
    conn: redis.Redis, fields: dict[str, str], base: str, ttl_s: int, keys: int
) -> None:
    created = datetime.now(UTC).isoformat(timespec="seconds")
    meta = {**fields, "created": created, "keys": str(keys)}
    conn.hset(base + "meta", mapping=meta)  # type: ignore[arg-type]
    conn.expire(base + "meta", ttl_s)


def _expire_version(conn: redis.Redis, base: str, seconds: int) -> int:
    pipe, count = conn.pipeline(transaction=False), 0
    for key in conn.scan_iter(match=_glob_escape(base) + "*", count=1000):
        pipe.expire(key, seconds)
        count += 1
        if count % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return count


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _discard(conn: redis.Redis, base: str) -> None:
    """Best effort: let a half-written version go quickly (its TTL removes it anyway)."""
    from redis.exceptions import RedisError

    with contextlib.suppress(RedisError, OSError):
        _expire_version(conn, base, 1)
