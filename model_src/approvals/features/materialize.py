"""Load the feature state into Redis for the online reader, atomically.

The state (:func:`approvals.features.state.build_state`, the offline SQL's compacted history)
becomes one packed value per family key (layout in :mod:`approvals.features.tiles`). Every key of a
new version is written with a TTL, in pipelined chunks; the meta hash goes last; then the
pointer ``{prefix}:current`` is switched with one SET and the previous version is left to
expire shortly after. A failure before the switch leaves the previous pointer and keys as they
were, so readers never see a half-written version.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from approvals.errors import UserError
from approvals.features.definitions import FAMILIES, Family
from approvals.features.tiles import (
    LAYOUT,
    NO_TIME,
    RECORD,
    SEP,
    TILES,
    US,
    code_field,
    definitions_hash,
    key_text,
    pack,
    tile_spans,
)

if TYPE_CHECKING:
    import pandas as pd
    import redis

    from approvals.features.redis_settings import RedisSettings
    from approvals.features.state import FeatureState

DEFAULT_TTL = timedelta(days=8)
OLD_VERSION_TTL_S = 120  # readers of the previous version get this long to finish
WRITE_TIMEOUT_S = 30.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MaterializeResult:
    """What a materialization wrote.

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


def _key_column(table: pd.DataFrame, family: Family) -> pd.Series:
    parts = [table[k].map(key_text) for k in family.keys]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + SEP + part
    return f"{family.name}:" + joined


@dataclass(frozen=True)
class FamilyValues:
    """The stored values of one family's keys (layout in :mod:`approvals.features.tiles`).

    Attributes:
        keys: version-relative Redis key of each value.
        values: the packed records of each key.
        tiles: number of tile records of each key (its recent tiles).
    """

    keys: list[str]
    values: list[bytes]
    tiles: np.ndarray


def family_values(table: pd.DataFrame, family: Family, end_us: int) -> FamilyValues:
    """Every key of one family: lifetime sums, recent tile suffix sums, card's last outcome.

    Args:
        table: the family's state table (keys, ``us``, counters, ``last_code``).
        family: its definition.
        end_us: the state's end; tiles no request after it can need are left out.
    """
    import pandas as pd

    counters = list(family.counters)
    rows = table.assign(_key=_key_column(table, family))
    life = rows.groupby("_key", sort=True)[counters].sum()
    keys = life.index
    heads = np.zeros(len(keys), RECORD)
    heads["a"] = NO_TIME
    heads["v"][:, : len(counters)] = life.to_numpy(dtype=float)
    if family.name == "card":
        last = rows.sort_values("us", kind="stable").groupby("_key", sort=False).tail(1)
        at = keys.get_indexer(pd.Index(last["_key"]))
        heads["a"][at] = last["us"].to_numpy(dtype=np.int64)
        heads["b"][at] = code_field([str(c) for c in last["last_code"]])
    parts = []
    for tile, span in tile_spans(family).items():
        first = (end_us // (tile * US)) * tile * US - span * US
        recent = rows.loc[rows["us"] >= first]
        starts = ((recent["us"] // (tile * US)) * tile).rename("_start")
        sums = recent.groupby(["_key", starts], sort=True)[counters].sum()
        # each tile holds its own sums plus those of every later tile of its key and size
        suffix = sums.iloc[::-1].groupby(level="_key", sort=False).cumsum().iloc[::-1]
        parts.append(
            pd.DataFrame({
                "owner": keys.get_indexer(suffix.index.get_level_values("_key")),
                "group": TILES.index(tile),
                "start": suffix.index.get_level_values("_start").to_numpy(dtype=np.int64),
            }).join(pd.DataFrame(suffix.to_numpy(dtype=float)))
        )  # fmt: skip
    tiles = np.zeros(0, RECORD)
    owner = np.zeros(0, dtype=np.int64)
    if parts:
        frame = pd.concat(parts, ignore_index=True).sort_values(["owner", "group", "start"])
        tiles = np.zeros(len(frame), RECORD)
        tiles["a"], tiles["b"] = frame["group"], frame["start"]
        tiles["v"][:, : len(counters)] = frame[list(range(len(counters)))].to_numpy()
        owner = frame["owner"].to_numpy(dtype=np.int64)
    counts = np.bincount(owner, minlength=len(keys))
    return FamilyValues(list(keys), pack(heads, tiles, owner), counts)


def _client(settings: RedisSettings, timeout_s: float) -> redis.Redis:
    import redis

    options = {**settings.client_options(), "socket_timeout": timeout_s}
    options["socket_connect_timeout"] = max(timeout_s / 3, settings.connect_timeout_ms / 1000)
    return redis.Redis.from_url(settings.url, **options)


def new_version() -> str:
    """A unique, sortable version name (UTC time plus a random suffix)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def materialize(
    state: FeatureState,
    settings: RedisSettings,
    *,
    ttl: timedelta = DEFAULT_TTL,
    chunk_size: int = 2000,
    progress: Progress | None = None,
    timeout_s: float = WRITE_TIMEOUT_S,
    allow_older: bool = False,
) -> MaterializeResult:
    """Write ``state`` as a new version and switch readers to it.

    Args:
        state: compacted feature state (must hold at least one outcome).
        settings: Redis location and prefix.
        ttl: lifetime of the new keys and pointer (materialize again before it runs out).
        chunk_size: keys per pipelined round trip.
        progress: callback for one-line progress messages (one per family).
        timeout_s: socket timeout of the bulk writes.
        allow_older: replace a live version whose state ends later (a rollback).

    Raises:
        UserError: the state is empty, or older than the live one without ``allow_older``.
        redis.RedisError: Redis failed; the previous version stays live.
    """
    if state.end is None:
        raise UserError("no labelled attempts: nothing to materialize")
    started, say = time.monotonic(), progress or (lambda _msg: None)
    client, version = _client(settings, timeout_s), new_version()
    base, ttl_s = f"{settings.prefix}:{version}:", int(ttl.total_seconds())
    try:
        if not allow_older:
            _refuse_older(client, settings.prefix, state.end)
        try:
            keys, records = _write_families(client, state, base, ttl_s, chunk_size, say)
            _write_meta(client, state, base, ttl_s, keys)
        except BaseException:
            _discard(client, base)
            raise
        old = _switch(client, settings.prefix, version, ttl_s)
    finally:
        client.close()
    say(f"switched {settings.prefix}:current to {version} (previous: {old})")
    elapsed = time.monotonic() - started
    return MaterializeResult(version, old, state.end, keys, records, elapsed)


def _refuse_older(client: redis.Redis, prefix: str, end: datetime) -> None:
    """Stop a stale job from replacing newer live features (a rollback must say so)."""
    live = client.get(f"{prefix}:current")
    if not isinstance(live, bytes):
        return
    live_end = client.hget(f"{prefix}:{live.decode()}:meta", "end_us")
    if isinstance(live_end, bytes) and int(live_end) > _end_us(end):
        raise UserError(
            f"state ends {end.isoformat()}, before the live version {live.decode()}; "
            "pass allow_older (--allow-older) to roll back on purpose"
        )


def _switch(client: redis.Redis, prefix: str, version: str, ttl_s: int) -> str | None:
    """Point readers at ``version`` (one SET) and let the previous version expire soon."""
    previous = client.set(f"{prefix}:current", version, ex=ttl_s, get=True)
    old = previous.decode() if isinstance(previous, bytes) else None
    if old and old != version:
        _expire_version(client, f"{prefix}:{old}:", OLD_VERSION_TTL_S)
    return old


def _write_families(
    client: redis.Redis, state: FeatureState, base: str, ttl_s: int, chunk: int, say: Progress
) -> tuple[int, int]:
    assert state.end is not None
    end_us = _end_us(state.end)
    keys = records = 0
    pipe = client.pipeline(transaction=False)
    for family in FAMILIES:
        table = state.tables.get(family.name)
        if table is None or table.empty:
            continue
        stored = family_values(table, family, end_us)
        for key, value in zip(stored.keys, stored.values, strict=True):
            pipe.set(base + key, value, ex=ttl_s)
            keys += 1
            if keys % chunk == 0:
                pipe.execute()
        records += len(stored.keys) + int(stored.tiles.sum())
        say(f"family {family.name}: {len(stored.keys):,} keys from {len(table):,} state rows")
    pipe.execute()
    return keys, records


def _end_us(end: datetime) -> int:
    aware = end if end.tzinfo is not None else end.replace(tzinfo=UTC)
    return int((aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def _write_meta(client: redis.Redis, state: FeatureState, base: str, ttl_s: int, keys: int) -> None:
    assert state.end is not None
    meta = {
        "defs": definitions_hash(),
        "layout": str(LAYOUT),
        "end": state.end.isoformat(),
        "end_us": str(_end_us(state.end)),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "keys": str(keys),
        **{f"rows_{name}": str(len(table)) for name, table in state.tables.items()},
    }
    client.hset(base + "meta", mapping=meta)  # type: ignore[arg-type]
    client.expire(base + "meta", ttl_s)


def _expire_version(client: redis.Redis, base: str, seconds: int) -> int:
    pipe, count = client.pipeline(transaction=False), 0
    for key in client.scan_iter(match=_glob_escape(base) + "*", count=1000):
        pipe.expire(key, seconds)
        count += 1
        if count % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return count


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _discard(client: redis.Redis, base: str) -> None:
    """Best effort: let a half-written version go quickly (its TTL removes it anyway)."""
    from redis.exceptions import RedisError

    with contextlib.suppress(RedisError, OSError):
        _expire_version(client, base, 1)


def materialize_file(
    path: Path,
    settings: RedisSettings,
    *,
    ttl: timedelta = DEFAULT_TTL,
    progress: Progress | None = None,
    allow_older: bool = False,
) -> MaterializeResult:
    """Validate a labelled attempts file, build its feature state and materialize it."""
    from approvals.contract import read_attempts
    from approvals.features.state import build_state

    say = progress or (lambda _msg: None)
    client = _client(settings, WRITE_TIMEOUT_S)
    try:
        client.ping()  # fail before the expensive part when Redis is unreachable
    finally:
        client.close()
    frame = read_attempts(path, labels=True)
    say(f"building feature state from {len(frame):,} attempts")
    state = build_state(frame)
    say(f"state: {state.rows:,} rows up to {state.end}; writing to Redis")
    return materialize(state, settings, ttl=ttl, progress=progress, allow_older=allow_older)
