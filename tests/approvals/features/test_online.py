"""Online feature reader against a real redis-server: parity, degraded mode, settings."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from pydantic import SecretStr, ValidationError

from approvals.contract import validate_frame
from approvals.features import counts_for
from approvals.features.breaker import CircuitBreaker
from approvals.features.materialize import materialize
from approvals.features.online import OnlineFeatureStore
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import FeatureState, build_state
from approvals.features.tiles import (
    NO_TIME,
    RECORD,
    TILES,
    code_field,
    default_counts,
    pack,
    unpack,
)
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts

pytestmark = pytest.mark.servers
SECRET = "t0ken-that-must-never-show-9f3a"  # a test value, not a credential


def split(data: pd.DataFrame, share: float = 0.8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History strictly before a cut time, and the attempts at or after it."""
    cut = data["event_time"].iloc[int(len(data) * share)]
    early = data["event_time"] < cut
    return data.loc[early].reset_index(drop=True), data.loc[~early].reset_index(drop=True)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Attempts as the service hands them over: dicts with aware UTC datetimes."""
    out = frame.to_dict("records")
    for row in out:
        row["event_time"] = row["event_time"].to_pydatetime().replace(tzinfo=UTC)
    return out


def differing(offline: dict[str, np.ndarray], online: dict[str, np.ndarray]) -> list[str]:
    """Names of the counters where the two answers disagree (beyond float tolerance)."""
    bad = sorted(set(offline) ^ set(online))
    for key in set(offline) & set(online):
        left, right = offline[key], online[key]
        if left.dtype == object:
            same = list(left) == list(right)
        else:
            same = right.dtype == np.float64 and np.allclose(left, right, equal_nan=True)
        if not same or len(left) != len(right):
            bad.append(key)
    return bad


def settings_for(url: str, **extra: Any) -> RedisSettings:
    return RedisSettings(url=url, prefix=f"t{uuid.uuid4().hex[:8]}", **extra)


@pytest.fixture(scope="module")
def factory_data() -> tuple[pd.DataFrame, pd.DataFrame, FeatureState]:
    data = validate_frame(random_attempts(3000, seed=5, days=20), labels=True)
    history, later = split(data)
    return history, later, build_state(history)


def later_queries(later: pd.DataFrame) -> pd.DataFrame:
    """Real later attempts, plus the same ones days later and with unseen keys."""
    shifted = later.head(80).assign(event_time=later["event_time"].head(80) + pd.Timedelta("3D"))
    unseen = later.head(20).assign(card_fingerprint="never-seen", card_bin="49999999")
    return pd.concat([later, shifted, unseen], ignore_index=True)


def test_online_counts_equal_offline_sql_for_factory_data(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    # Given the state of the history materialized into Redis
    history, later, state = factory_data
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    queries = later_queries(later)
    # When the reader answers for attempts after the state's end (sync and async)
    store = OnlineFeatureStore(settings)
    online = store.counts(records(queries))
    async_online = asyncio.run(store.acounts(records(queries)))
    # Then every counter equals the offline SQL over the state and over the full history
    assert not online.degraded and online.version, "a healthy Redis gave a degraded answer"
    assert differing(counts_for(queries, None, state), online.counts) == [], "state parity"
    assert differing(counts_for(queries, history), online.counts) == [], "history parity"
    assert differing(online.counts, async_online.counts) == [], "async differs from sync"
    store.close()


def test_online_counts_equal_offline_sql_for_simulated_data(redis_url: str) -> None:
    simulate = pytest.importorskip("approvals.simulate")
    data = simulate.simulate(1500, seed=3, days=12).attempts
    data = validate_frame(data, labels=True)
    history, later = split(data, 0.85)
    state = build_state(history)
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    sample = later.sample(min(400, len(later)), random_state=1).reset_index(drop=True)
    online = OnlineFeatureStore(settings).counts(records(sample))
    assert differing(counts_for(sample, None, state), online.counts) == [], "simulator parity"


def test_missing_field_is_rejected_naming_it(redis_url: str) -> None:
    store = OnlineFeatureStore(settings_for(redis_url))
    attempt = records(random_attempts(8, seed=1))[0]
    del attempt["route_id"]
    with pytest.raises(ValueError, match="route_id"):
        store.counts([attempt])
    assert store.stats.failures == 0, "bad input was counted as a Redis failure"


def test_nothing_materialized_answers_defaults_as_degraded(redis_url: str) -> None:
    reasons: list[str] = []
    store = OnlineFeatureStore(settings_for(redis_url), on_degraded=reasons.append)
    answer = store.counts(records(random_attempts(8, seed=2).head(3)))
    assert answer.degraded and answer.version is None, "an empty prefix must be degraded"
    assert reasons == ["no_version"], f"hook heard {reasons}"
    assert differing(default_counts(3), answer.counts) == [], "defaults are zeros/NaN/None"


def test_redis_down_degrades_then_recovers_without_a_new_store(
    own_redis: RedisServer, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    # Given a store reading a materialized state, with a short breaker cooldown
    _, later, state = factory_data
    settings = settings_for(own_redis.url, failure_threshold=2, cooldown_s=0.3)
    materialize(state, settings)
    store, batch = OnlineFeatureStore(settings), records(later.head(5))
    good = store.counts(batch)
    assert not good.degraded, "first read should be served"
    # When Redis stops
    own_redis.stop()
    answers = [store.counts(batch) for _ in range(4)]
    # Then answers are defaults, failures are counted and the breaker opens
    assert all(a.degraded for a in answers), "Redis down must give degraded answers"
    assert store.stats.failures == 2, f"breaker should stop calls after 2, saw {store.stats}"
    assert store.stats.degraded_by_reason["breaker_open"] == 2, "open breaker skips Redis"
    assert store.breaker.state == "open", "two failures must open the breaker"
    # When Redis comes back (empty: scripts and keys gone) and the state is loaded again
    own_redis.start()
    materialize(state, settings)
    time.sleep(0.35)
    back = store.counts(batch)
    # Then the same store serves again: NOSCRIPT handled, breaker closed by its probe
    assert not back.degraded, "the store did not recover after Redis returned"
    assert store.breaker.state == "closed", "a good probe must close the breaker"
    assert differing(good.counts, back.counts) == [], "recovered answer differs"


def test_slow_redis_times_out_quickly_as_degraded(
    own_redis: RedisServer, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory_data
    settings = settings_for(own_redis.url, timeout_ms=50)
    materialize(state, settings)
    store, batch = OnlineFeatureStore(settings), records(later.head(3))
    assert not store.counts(batch).degraded, "warm-up read should be served"
    redis.Redis.from_url(own_redis.url).execute_command("CLIENT", "PAUSE", 1500, "ALL")
    started = time.monotonic()
    answer = asyncio.run(store.acounts(batch))
    elapsed = time.monotonic() - started
    assert answer.degraded, "a paused Redis must give a degraded answer"
    assert elapsed < 0.6, f"the read waited {elapsed:.2f}s despite a 50 ms timeout"


def test_auth_token_works_and_never_shows(
    own_redis: RedisServer,
    factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a Redis that requires an AUTH token, and the token in the environment
    _, later, state = factory_data
    redis.Redis.from_url(own_redis.url).config_set("requirepass", SECRET)
    monkeypatch.setenv("APPROVALS_REDIS_PASSWORD", SECRET)
    settings = settings_for(own_redis.url, failure_threshold=1)
    materialize(state, settings)
    assert not OnlineFeatureStore(settings).counts(records(later.head(2))).degraded, "AUTH"
    # When a store uses a wrong token (errors get logged)
    caplog.set_level(logging.DEBUG)
    wrong = settings.model_copy(update={"password": SecretStr("wrong-" + SECRET)})
    store = OnlineFeatureStore(wrong)
    assert store.counts(records(later.head(2))).degraded, "a wrong token must degrade"
    # Then neither the token nor the wrong one appears in reprs, str or logs
    shown = [repr(settings), str(settings), repr(store), repr(wrong), caplog.text]
    assert caplog.records, "the opening breaker should have logged a warning"
    assert not any(SECRET in text for text in shown), "the AUTH token leaked"


def test_settings_accept_tls_and_reject_bad_urls() -> None:
    tls = RedisSettings(url="rediss://master.approvals.cache.amazonaws.com:6379/0")
    assert tls.tls and RedisSettings(url="redis://localhost:6379").tls is False, "TLS flag"
    for bad in ("http://localhost:6379", "localhost:6379", "redis://", f"redis://:{SECRET}@h"):
        with pytest.raises(ValidationError) as caught:
            RedisSettings(url=bad)
        assert SECRET not in str(caught.value), "a rejected URL echoed the password"
    with pytest.raises(ValidationError, match="extra"):
        RedisSettings(url="redis://h", passwd="x")  # type: ignore[call-arg]


def test_now_overrides_event_time(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory_data
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    store, batch = OnlineFeatureStore(settings), records(later.head(30))
    far = batch[0]["event_time"] + timedelta(days=30)
    answer = store.counts(batch, now=far)
    assert not answer.counts["bin_7d_n"].any(), "30 days later the 7-day window must be empty"
    assert answer.counts["bin_life_n"].sum() > 0, "lifetime counters do not expire"
    assert store.stats.not_after_state == 0, "attempts after the state were flagged"
    assert state.end is not None
    store.counts(batch, now=state.end)
    assert store.stats.not_after_state == len(batch), "attempts at the state's end not counted"


def test_empty_request_and_changed_definitions(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory_data
    settings = settings_for(redis_url, timeout_ms=5000)
    done = materialize(state, settings)
    store = OnlineFeatureStore(settings)
    empty = store.counts([])
    assert not empty.degraded and all(len(v) == 0 for v in empty.counts.values()), "empty"
    client = redis.Redis.from_url(redis_url)
    client.hset(f"{settings.prefix}:{done.version}:meta", "defs", "other-definitions")
    answer = store.counts(records(later.head(2)))
    assert answer.degraded, "a state built from other feature definitions must not be used"
    assert store.stats.degraded_by_reason["definitions"] == 1, "reason should be counted"


def test_breaker_probes_once_after_cooldown_and_reopens_on_failure() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown_s=10, clock=lambda: now[0])
    opened = [breaker.failure() for _ in range(3)]
    assert opened == [False, False, True], "the third consecutive failure opens it"
    assert not breaker.allow(), "an open breaker skips calls"
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow(), "exactly one probe after the cooldown"
    assert breaker.failure() and breaker.state == "open", "a failed probe reopens it"
    now[0] = 15.0
    assert not breaker.allow(), "the new cooldown starts at the failed probe"
    now[0] = 20.0
    assert breaker.allow() and breaker.success(), "a good probe closes it"
    assert breaker.state == "closed" and breaker.allow(), "closed again"
    assert not breaker.failure(), "failures count again from zero after closing"


def exactly_equal(left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> bool:
    """Bit-for-bit the same counters (object columns compared as lists)."""
    if set(left) != set(right):
        return False
    return all(
        list(left[k]) == list(right[k])
        if left[k].dtype == object
        else np.array_equal(left[k], right[k], equal_nan=True)
        for k in left
    )


def live_store(
    redis_url: str, state: FeatureState, **extra: Any
) -> tuple[OnlineFeatureStore, RedisSettings, str]:
    """A reader of ``state`` freshly materialized under a prefix of its own; the version."""
    settings = settings_for(redis_url, timeout_ms=5000, **extra)
    version = materialize(state, settings).version
    return OnlineFeatureStore(settings), settings, version


def test_shared_values_are_held_per_version_and_answers_do_not_change(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory_data
    held, settings, version = live_store(redis_url, state)
    queries = records(later_queries(later))
    fresh = OnlineFeatureStore(settings.model_copy(update={"cache_keys": 0}))
    # Given a reader that answered once, and held what it read of shared keys
    first = held.counts(queries[:150])
    assert held._held.version == version and held._held.values, "shared values were kept"
    assert not any(k.startswith("card:") for k in held._held.values), "card values are not kept"
    # When shared keys are deleted from Redis (a live version never changes: only a reader that
    # really skips them still sees them), and the reader answers again, sync and async
    client = redis.Redis.from_url(redis_url)
    gone = [f"{settings.prefix}:{version}:{k}" for k in list(held._held.values)[:50]]
    expected = fresh.counts(queries)  # read before the deletion: the full truth
    client.delete(*gone)
    again = held.counts(queries)
    async_again = asyncio.run(held.acounts(queries))
    # Then the answers are bit for bit those of a reader without a cache
    assert exactly_equal(again.counts, expected.counts), "held values changed the answer"
    assert exactly_equal(async_again.counts, expected.counts), "async held answer differs"
    assert exactly_equal(first.counts, {k: v[:150] for k, v in expected.counts.items()})
    assert not exactly_equal(fresh.counts(queries).counts, expected.counts), "keys were deleted"
    held.close()
    fresh.close()


def test_a_new_version_replaces_the_held_values(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    history, later, state = factory_data
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(build_state(history.head(len(history) // 2)), settings)
    queries = records(later_queries(later))
    store = OnlineFeatureStore(settings)
    store.counts(queries)
    old_version = store._held.version
    # When a newer state is materialized (pointer switch) and the same reader reads again
    new_version = materialize(state, settings).version
    answer = store.counts(queries)
    # Then it answers from the new version only, as a fresh reader does, and holds its values
    assert new_version != old_version and answer.version == new_version
    assert store._held.version == new_version
    assert exactly_equal(answer.counts, OnlineFeatureStore(settings).counts(queries).counts)
    assert differing(counts_for(later_queries(later), None, state), answer.counts) == []
    store.close()


def test_the_held_values_are_bounded(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory_data
    store, settings, _ = live_store(redis_url, state, cache_keys=5)
    queries = records(later_queries(later))
    answers = [store.counts(queries[i : i + 40]) for i in range(0, 200, 40)]
    assert 0 < len(store._held.values) <= 5
    fresh = OnlineFeatureStore(settings.model_copy(update={"cache_keys": 0}))
    for i, answer in enumerate(answers):
        assert exactly_equal(answer.counts, fresh.counts(queries[i * 40 : (i + 1) * 40]).counts)
    store.close()
    fresh.close()


def test_an_attempt_gets_the_same_counters_alone_or_in_any_batch(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory_data
    store, _, _ = live_store(redis_url, state, cache_keys=0)
    queries = records(later_queries(later))
    batch = store.counts(queries).counts
    reversed_batch = store.counts(queries[::-1]).counts
    for i in range(0, len(queries), 17):
        alone = store.counts([queries[i]]).counts
        assert exactly_equal(alone, {k: v[i : i + 1] for k, v in batch.items()}), i
        j = len(queries) - 1 - i
        assert exactly_equal(alone, {k: v[j : j + 1] for k, v in reversed_batch.items()}), i
    store.close()


def test_keys_with_any_characters_are_read_back(redis_url: str) -> None:
    data = validate_frame(random_attempts(1500, seed=8, days=10), labels=True)
    odd = {m: f"mé,r?chänt\x1d{i}\x1f\\ 商户" for i, m in enumerate(data["merchant_id"].unique())}
    data = data.assign(
        merchant_id=data["merchant_id"].map(odd),
        card_fingerprint="?" + data["card_fingerprint"] + "\x1e✓",
    )
    history, later = split(data)
    state = build_state(history)
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    store = OnlineFeatureStore(settings)
    for _ in range(2):  # the second read skips the held shared keys
        online = store.counts(records(later))
        assert not online.degraded
        assert differing(counts_for(later, None, state), online.counts) == []
    store.close()


def damage_widest(
    client: redis.Redis, settings: RedisSettings, version: str, damage: str
) -> tuple[bytes, bytes, list[str]]:
    """Damage the stored BIN x route value with the most tiles in a way the materializer never
    writes; its key, its original value and its (card_bin, route_id)."""
    widest = max(
        client.scan_iter(match=f"{settings.prefix}:{version}:bin_route:*", count=1000),
        key=client.strlen,
    )
    original = client.get(widest)
    stored = np.frombuffer(original, RECORD).copy()
    assert len(stored) > 2, "a key with tiles is needed"
    if damage == "truncated":
        value = original[:-8]
    elif damage == "reordered":
        value = np.concatenate([stored[:1], stored[1:][::-1]]).tobytes()
    else:
        stored["a"][1] = len(TILES)
        value = stored.tobytes()
    client.set(widest, value)
    relkey = widest.decode().removeprefix(f"{settings.prefix}:{version}:bin_route:")
    return widest, original, relkey.split("\x1f")


@pytest.mark.parametrize("damage", ["truncated", "reordered", "unknown tile size"])
def test_a_damaged_stored_value_degrades_the_answer_instead_of_failing(
    redis_url: str, factory_data: tuple[pd.DataFrame, pd.DataFrame, FeatureState], damage: str
) -> None:
    _, later, state = factory_data
    store, settings, version = live_store(redis_url, state, cache_keys=0)
    client = redis.Redis.from_url(redis_url)
    # Given the stored value with the most tiles, changed in a way the materializer never writes
    widest, original, (card_bin, route_id) = damage_widest(client, settings, version, damage)
    query = [{**records(later.head(1))[0], "card_bin": card_bin, "route_id": route_id}]
    # When a request reads it
    answer = store.counts(query)
    # Then the answer is the defaults, flagged and counted; once repaired, the key reads again
    assert answer.degraded and store.stats.degraded_by_reason["data"] == 1, damage
    assert exactly_equal(answer.counts, default_counts(1))
    client.set(widest, original)
    assert not store.counts(query).degraded
    store.close()


def test_pack_refuses_unsorted_tiles_and_unpack_reads_what_it_packs() -> None:
    heads = np.zeros(2, RECORD)
    heads["a"] = [NO_TIME, 1_700_000_000_000_000]
    heads["b"] = code_field([None, "51"])
    heads["v"][:, 0] = [3.0, 4.0]
    tiles = np.zeros(3, RECORD)  # key 0: (group 0, 600 s), (group 1, 3600 s); key 1: (0, 300 s)
    tiles["a"], tiles["b"], tiles["v"][:, 1] = [0, 1, 0], [600, 3600, 300], [1.0, 2.0, 5.0]
    owner = np.array([0, 0, 1])
    with pytest.raises(ValueError, match="sorted"):
        pack(heads, tiles[[1, 0, 2]], owner)
    with pytest.raises(ValueError, match="ASCII"):
        code_field(["a code far too long"])
    values = pack(heads, tiles, owner)
    # read back in another order, with an absent key between them
    parsed = unpack(b"".join([values[1], values[0]]), np.array([len(values[1]), 0, len(values[0])]))
    assert parsed.life[:, 0].tolist() == [4.0, 0.0, 3.0]
    assert parsed.last_us[0] == 1_700_000_000_000_000 and np.isnan(parsed.last_us[1:]).all()
    assert parsed.last_code.tolist() == ["51", None, None]
    is_tile = (parsed.tile_keys >> 32) % (len(TILES) + 1) > 0  # run 0: a key's head record
    assert parsed.tile_sums[is_tile, 1].tolist() == [5.0, 1.0, 2.0]
    assert parsed.tile_sums[~is_tile, 0].tolist() == [4.0, 3.0]
    assert np.all(np.diff(parsed.tile_keys) > 0)
    with pytest.raises(ValueError, match="whole records"):
        unpack(values[0][:-1], np.array([len(values[0]) - 1]))
