"""Load a feature state into Redis for the online reader, atomically.

The state (:func:`approvals.features.state.build_state`, the offline SQL's compacted history)
becomes one packed value per family key (layout in :mod:`approvals.features.tiles`):
:func:`pack_state`. :func:`approvals.features.versions.write_version` writes them as a new
version and switches readers to it; a model's pre-packed online state
(:mod:`approvals.features.packed`) holds the same values and goes through the same writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from approvals.errors import UserError
from approvals.features.definitions import FAMILIES, Family
from approvals.features.tiles import (
    NO_TIME,
    RECORD,
    SEP,
    TILES,
    US,
    code_field,
    epoch_us,
    key_text,
    pack,
    tile_spans,
)
from approvals.features.versions import (
    DEFAULT_TTL,
    OLD_VERSION_TTL_S,
    WRITE_TIMEOUT_S,
    FamilyBatch,
    MaterializeResult,
    Progress,
    VersionContent,
    check_reachable,
    version_fields,
    write_version,
)

if TYPE_CHECKING:
    import pandas as pd

    from approvals.features.redis_settings import RedisSettings
    from approvals.features.state import FeatureState

__all__ = [
    "DEFAULT_TTL",
    "OLD_VERSION_TTL_S",
    "FamilyValues",
    "MaterializeResult",
    "family_values",
    "materialize",
    "materialize_file",
    "pack_state",
]


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


def pack_state(state: FeatureState) -> VersionContent:
    """The version ``state`` becomes: its meta fields, and each family's values as they are
    needed (a family is packed when the writer reaches it).

    Raises:
        UserError: the state holds no outcome.
    """
    if state.end is None:
        raise UserError("no labelled attempts: nothing to materialize")
    rows = {name: len(table) for name, table in state.tables.items()}
    return VersionContent(state.end, version_fields(state.end, rows), _batches(state))


def _batches(state: FeatureState) -> Iterator[FamilyBatch]:
    assert state.end is not None
    end_us = epoch_us(state.end)
    for family in FAMILIES:
        table = state.tables.get(family.name)
        if table is None or table.empty:
            continue
        stored = family_values(table, family, end_us)
        records = len(stored.keys) + int(stored.tiles.sum())
        yield FamilyBatch(family.name, stored.keys, stored.values, len(table), records)


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
    return write_version(
        pack_state(state), settings, ttl=ttl, chunk_size=chunk_size, progress=progress,
        timeout_s=timeout_s, allow_older=allow_older,
    )  # fmt: skip


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
    check_reachable(settings)  # fail before the expensive part when Redis is unreachable
    frame = read_attempts(path, labels=True)
    say(f"building feature state from {len(frame):,} attempts")
    state = build_state(frame)
    say(f"state: {state.rows:,} rows up to {state.end}; writing to Redis")
    return materialize(state, settings, ttl=ttl, progress=progress, allow_older=allow_older)
