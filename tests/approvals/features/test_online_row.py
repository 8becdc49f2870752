"""The single-attempt read (``acounts_row``) against the batch read, on a real redis-server.

The serving path reads one attempt's counters without numpy's cost per call; these tests hold
it to the batch reader's answers bit for bit (which the batch reader's own tests hold to the
offline SQL), with and without held shared values, across version switches and damage.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from approvals.contract import validate_frame
from approvals.features.materialize import materialize
from approvals.features.online import OnlineFeatureStore, OnlineRow
from approvals.features.state import FeatureState, build_state
from approvals.features.tiles import default_counts, epoch_us, plan, plan_row
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts
from tests.approvals.features.test_online import (
    damage_widest,
    later_queries,
    records,
    settings_for,
    split,
)

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, FeatureState]:
    frame = validate_frame(random_attempts(6000, seed=11, days=25), labels=True)
    history, later = split(frame, 0.7)
    return later_queries(later), build_state(history)


def read_rows(store: OnlineFeatureStore, queries: list[dict[str, Any]]) -> list[OnlineRow]:
    """Each attempt read alone by the row path, in order, on one event loop."""

    async def main() -> list[OnlineRow]:
        try:
            return [await store.acounts_row(q, epoch_us(q["event_time"])) for q in queries]
        finally:
            await store.aclose()

    return asyncio.run(main())


def same_value(left: Any, right: Any) -> bool:
    """Equal, NaN equal to NaN, and a float never equal to a str or None."""
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    return type(left) is type(right) and left == right


def mismatches(row: OnlineRow, batch: dict[str, np.ndarray], i: int) -> list[str]:
    """Counters where the row answer differs from row ``i`` of a batch answer."""
    wrong = sorted(set(row.counts) ^ set(batch))
    for name, column in batch.items():
        expected = column[i].item() if column.dtype != object else column[i]
        if name in row.counts and not same_value(row.counts[name], expected):
            wrong.append(name)
    return wrong


@pytest.mark.parametrize("cache_keys", [0, 100_000])
def test_each_attempt_read_alone_equals_its_row_of_the_batch_read(
    redis_url: str, data: tuple[pd.DataFrame, FeatureState], cache_keys: int
) -> None:
    queries_frame, state = data
    settings = settings_for(redis_url, timeout_ms=5000, cache_keys=cache_keys)
    version = materialize(state, settings).version
    queries = records(queries_frame)
    batch = OnlineFeatureStore(settings).counts(queries)
    assert not batch.degraded and len(queries) > 1500
    # When every attempt is read alone, twice (the second pass from held shared values)
    store = OnlineFeatureStore(settings)
    rows = read_rows(store, queries + queries)
    # Then each answer is bit for bit its row of the batch answer
    for i, row in enumerate(rows):
        assert not row.degraded and row.version == version, i
        assert mismatches(row, batch.counts, i % len(queries)) == [], i
    if cache_keys:
        assert store._held.parsed, "held shared values were parsed once and kept"
        assert store.stats.keys_held > 0


def test_the_row_plan_is_the_batch_plan_of_one_attempt(
    data: tuple[pd.DataFrame, FeatureState],
) -> None:
    queries_frame, _ = data
    odd = queries_frame.head(30).assign(
        merchant_id=[f"m\x1f{i}\\é商" for i in range(30)], network_token=True
    )
    for query in records(pd.concat([queries_frame.head(200), odd])):
        t_us = epoch_us(query["event_time"])
        row, batch = plan_row(query, t_us), plan([query], None)
        assert row.relkeys == batch.relkeys
        assert np.array_equal(row.families, batch.families)
        assert np.array_equal(row.index, batch.index) and row.t_us.tolist() == [t_us]


def test_a_missing_key_field_is_named(data: tuple[pd.DataFrame, FeatureState]) -> None:
    query = records(data[0].head(1))[0] | {"route_id": None}
    with pytest.raises(ValueError, match="route_id"):
        plan_row(query, 0)


def test_nothing_materialized_or_redis_down_answers_the_defaults_as_degraded(
    redis_url: str, data: tuple[pd.DataFrame, FeatureState]
) -> None:
    query = records(data[0].head(1))
    defaults = {k: None if v.dtype == object else v.item() for k, v in default_counts(1).items()}
    empty = OnlineFeatureStore(settings_for(redis_url, timeout_ms=5000))
    down = OnlineFeatureStore(settings_for("redis://127.0.0.1:1/0", connect_timeout_ms=50))
    for store, reason in ((empty, "no_version"), (down, "error")):
        [row] = read_rows(store, query)
        assert row.degraded and row.version is None, reason
        assert all(same_value(row.counts[k], v) for k, v in defaults.items()), reason
        assert set(row.counts) == set(defaults)
        assert store.stats.degraded_by_reason[reason] == 1


@pytest.mark.parametrize("damage", ["truncated", "reordered", "unknown tile size"])
def test_a_damaged_stored_value_degrades_the_row_answer(
    redis_url: str, data: tuple[pd.DataFrame, FeatureState], damage: str
) -> None:
    queries_frame, state = data
    settings = settings_for(redis_url, timeout_ms=5000, cache_keys=0)
    version = materialize(state, settings).version
    client = redis.Redis.from_url(redis_url)
    widest, original, (card_bin, route_id) = damage_widest(client, settings, version, damage)
    query = records(queries_frame.head(1))[0] | {"card_bin": card_bin, "route_id": route_id}
    store = OnlineFeatureStore(settings)
    [broken] = read_rows(store, [query])
    client.set(widest, original)
    [repaired] = read_rows(store, [query])
    assert broken.degraded and store.stats.degraded_by_reason["data"] == 1, damage
    assert not repaired.degraded


def test_a_slow_redis_is_cut_at_the_timeout_and_the_next_read_is_served(
    own_redis: RedisServer, data: tuple[pd.DataFrame, FeatureState]
) -> None:
    queries_frame, state = data
    settings = settings_for(own_redis.url, timeout_ms=50)
    materialize(state, settings)
    store, query = OnlineFeatureStore(settings), records(queries_frame.head(1))[0]
    t_us = epoch_us(query["event_time"])

    async def main() -> tuple[OnlineRow, OnlineRow, float, OnlineRow]:
        warm = await store.acounts_row(query, t_us)  # a pooled connection, idle
        redis.Redis.from_url(own_redis.url).execute_command("CLIENT", "PAUSE", 400, "ALL")
        started = time.monotonic()
        slow = await store.acounts_row(query, t_us)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.6)  # the pause is over
        after = await store.acounts_row(query, t_us)
        await store.aclose()
        return warm, slow, elapsed, after

    warm, slow, elapsed, after = asyncio.run(main())
    assert not warm.degraded and not after.degraded, "served before and after the pause"
    assert slow.degraded and store.stats.degraded_by_reason["error"] == 1
    assert elapsed < 0.25, f"the read waited {elapsed:.2f}s despite a 50 ms timeout"
