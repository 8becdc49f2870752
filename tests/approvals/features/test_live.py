"""Whether the live version holds a model's features: the online store's readiness check
against a real redis-server, its verdicts, its cache and its bounds."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from approvals.contract import validate_frame
from approvals.features.live import LIVE_SCRIPT, LiveVersion, Readiness, features_status
from approvals.features.materialize import materialize
from approvals.features.online import OnlineFeatureStore
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import FeatureState, build_state
from approvals.features.tiles import LAYOUT, definitions_hash, epoch_us
from dev.processes import free_port
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def state() -> FeatureState:
    return build_state(validate_frame(random_attempts(600, seed=5, days=5), labels=True))


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def store_for(url: str, prefix: str, clock: Clock | None = None) -> OnlineFeatureStore:
    settings = RedisSettings(url=url, prefix=prefix, timeout_ms=5000)
    return OnlineFeatureStore(settings, clock=clock or Clock())


def status_of(store: OnlineFeatureStore, model_end_us: int | None) -> Readiness:
    async def ask() -> Readiness:
        try:
            return (await store.afeatures_status(model_end_us)).readiness
        finally:
            await store.aclose()

    return asyncio.run(ask())


@pytest.mark.parametrize(
    ("field", "value", "shift_us", "expected"),
    [
        (None, None, 0, Readiness.READY),  # the model's own state
        (None, None, -1, Readiness.READY),  # features ending after the model's state
        (None, None, 1, Readiness.STALE),  # features ending before it
        ("defs", "0123456789abcdef", 0, Readiness.DEFINITIONS),
        ("layout", "1", 0, Readiness.LAYOUT),
    ],
)
def test_the_live_version_is_judged_against_the_model(
    redis_url: str,
    state: FeatureState,
    field: str | None,
    value: str | None,
    shift_us: int,
    expected: Readiness,
) -> None:
    # given a live version of the state, maybe with one meta field changed
    prefix = f"l{uuid.uuid4().hex[:8]}"
    written = materialize(state, RedisSettings(url=redis_url, prefix=prefix))
    if field is not None:
        meta = f"{prefix}:{written.version}:meta"
        redis.Redis.from_url(redis_url).hset(meta, field, str(value))
    # when a model whose state ends `shift_us` after it asks
    assert state.end is not None
    verdict = status_of(store_for(redis_url, prefix), epoch_us(state.end) + shift_us)
    # then the verdict names the reason
    assert verdict is expected


def test_nothing_live_is_absent_and_a_dead_redis_unreachable_without_the_breaker(
    redis_url: str,
) -> None:
    assert status_of(store_for(redis_url, f"l{uuid.uuid4().hex[:8]}"), None) is Readiness.ABSENT
    store = store_for(f"redis://127.0.0.1:{free_port()}/0", "approvals")
    assert status_of(store, None) is Readiness.UNREACHABLE
    assert store.breaker.state == "closed", "a failed probe is not a failed request"


def test_the_answer_is_kept_a_second_and_a_probe_storm_reads_redis_once(
    own_redis: RedisServer, state: FeatureState
) -> None:
    # given a live version and a store on a clock the test moves
    materialize(state, RedisSettings(url=own_redis.url, prefix="approvals"))
    client, clock = redis.Redis.from_url(own_redis.url), Clock()
    store = store_for(own_redis.url, "approvals", clock)

    async def storm() -> list[Readiness]:
        answers = await asyncio.gather(*(store.afeatures_status(None) for _ in range(50)))
        return [a.readiness for a in answers]

    async def scenario() -> tuple[list[Readiness], Readiness, Readiness]:
        try:
            first = await storm()
            client.delete("approvals:current")  # the features go away
            clock.now += 0.5
            kept = (await store.afeatures_status(None)).readiness
            clock.now += 0.6
            return first, kept, (await store.afeatures_status(None)).readiness
        finally:
            await store.aclose()

    client.script_load(LIVE_SCRIPT)  # so that no call is a NOSCRIPT miss and its retry
    client.config_resetstat()
    # when 50 probes arrive at once, then again within the second, then after it
    first, kept, later = asyncio.run(scenario())
    # then the 50 share one script call, the next gets the kept answer, the last a fresh one
    assert first == [Readiness.READY] * 50
    calls = client.info("commandstats")
    scripts = sum(calls.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))
    assert scripts == 2, f"{scripts} script calls for 50 probes then one more read"
    assert kept is Readiness.READY, "within the second the kept answer stands"
    assert later is Readiness.ABSENT, "after it Redis is read again"


def test_a_verdict_describes_itself_in_one_line(state: FeatureState) -> None:
    assert state.end is not None
    end = epoch_us(state.end)
    assert features_status(None, end).describe() == "no live version"
    stale = features_status(LiveVersion("v1", definitions_hash(), str(LAYOUT), end - 1), end)
    assert stale.readiness is Readiness.STALE and not stale.ready
    assert "v1" in stale.describe() and "before" in stale.describe(), stale.describe()
