"""The outcome stream's consumer against a real redis-server: applied and acknowledged, bad
entries dead-lettered, duplicates once, crashes (SIGKILL) and restarts, lag, graceful stop.

In-process tests drive one :class:`StreamConsumer` step by step; the process tests run
``python -m approvals.features.consumer`` as the pod does and read its ``/metrics`` over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from approvals.contract import validate_frame
from approvals.errors import ContractError
from approvals.features.consumer import StreamConsumer
from approvals.features.consumer_settings import ConsumerSettings
from approvals.features.consumer_telemetry import ConsumerMetrics, Lag, measure_lag
from approvals.features.materialize import materialize
from approvals.features.online import OnlineFeatureStore
from approvals.features.outcome_events import check_reports, event_error
from approvals.features.outcomes import apply_outcomes
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import FeatureState, build_state
from dev.processes import free_port
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts
from tests.approvals.features.test_online import records, settings_for, split
from tests.approvals.features.test_outcomes import counter_mismatches, outcome_rows, probes

pytestmark = pytest.mark.servers
SECRET = "consumer-t0ken-never-logged-5c1d"  # a test value, not a credential
Data = tuple[pd.DataFrame, pd.DataFrame, FeatureState]


@pytest.fixture(scope="module")
def data() -> Data:
    """History (materialized as the live version) and about 2,000 later outcomes."""
    frame = validate_frame(random_attempts(5000, seed=21, days=12), labels=True)
    history, later = split(frame, 0.6)
    return history, later, build_state(history)


def reports(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Outcomes as a payment backend reports them: the API's JSON shape."""
    out = []
    for row in outcome_rows(frame):
        labels = {"approved": row.pop("approved"), "response_code": row.pop("response_code")}
        out.append({"attempt": {**row, "event_time": row["event_time"].isoformat()}, **labels})
    return out


def publish(conn: redis.Redis, stream: str, events: list[Any]) -> list[bytes]:
    """XADD one entry per event (a dict is sent as JSON, bytes as they are)."""
    pipe = conn.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream, {"outcome": event if isinstance(event, bytes) else json.dumps(event)})
    return pipe.execute()


def worker_settings(**extra: Any) -> ConsumerSettings:
    fast = {"group": "features", "consumer": "c1", "metrics_port": 0, "block_ms": 50,
            "start_id": "0", "retry_min_s": 0.05, "retry_max_s": 0.2,
            "lag_interval_s": 0.1}  # fmt: skip
    return ConsumerSettings(**{**fast, **extra})


def consume(store: RedisSettings, settings: ConsumerSettings) -> ConsumerMetrics:
    """One worker in this process: its own pending entries, then new ones until none is left."""
    metrics = ConsumerMetrics()

    async def drain() -> None:
        worker, stop = StreamConsumer(settings, store, metrics), asyncio.Event()
        try:
            await worker.ensure_group()
            await worker.recover(stop)
            while await worker.poll(stop):
                pass
        finally:
            await worker.aclose()

    asyncio.run(asyncio.wait_for(drain(), 60))
    return metrics


def counted(metrics: ConsumerMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(f"approvals_outcomes_{name}_total")
    return value or 0.0


def reference(redis_url: str, state: FeatureState, frame: pd.DataFrame) -> RedisSettings:
    """The same outcomes applied straight with apply_outcomes, under a prefix of their own."""
    ref = settings_for(redis_url, timeout_ms=5000)
    materialize(state, ref)
    rows = outcome_rows(frame)
    for start in range(0, len(rows), 1000):
        apply_outcomes(ref, rows[start : start + 1000])
    return ref


def assert_same_counts(
    store: RedisSettings, ref: RedisSettings, later: pd.DataFrame, applied: pd.DataFrame
) -> None:
    """Readers of both stores answer the same for attempts after the applied outcomes."""
    frame = probes(later, applied["event_time"].max())
    ours, theirs = (OnlineFeatureStore(s).counts(records(frame)) for s in (store, ref))
    assert not ours.degraded and not theirs.degraded, "both stores answered"
    assert counter_mismatches(theirs.counts, ours.counts) == [], "stream vs apply_outcomes"


def markers(conn: redis.Redis, store: RedisSettings) -> int:
    """Outcomes the live version has counted (one marker per attempt_id)."""
    version = conn.get(f"{store.prefix}:current")
    assert isinstance(version, bytes), "a live version"
    match = f"{store.prefix}:{version.decode()}:seen:*"
    return sum(1 for _ in conn.scan_iter(match=match, count=1000))


async def group_lag(url: str, stream: str) -> Lag:
    conn = redis.asyncio.Redis.from_url(url)
    try:
        return await measure_lag(conn, stream, "features")
    finally:
        await conn.aclose()


def pending(conn: redis.Redis, stream: str, group: str = "features") -> int:
    return int(conn.xpending(stream, group)["pending"])


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """``check()``'s first truthy answer, polled; fails the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(0.02)
    pytest.fail(f"not within {timeout:.0f}s: {what}")


# --- in process: apply, acknowledge, dead-letter, duplicates --------------------------------


def test_a_stream_of_outcomes_is_applied_and_acknowledged(redis_url: str, data: Data) -> None:
    # Given a live version and 600 outcome events on the stream
    _, later, state = data
    store = settings_for(redis_url, timeout_ms=5000)
    materialize(state, store)
    conn = redis.Redis.from_url(redis_url)
    stream, batch = f"{store.prefix}:outcomes", later.head(600)
    publish(conn, stream, reports(batch))
    # When a worker reads them in batches of 250
    metrics = consume(store, worker_settings(batch=250))
    # Then all are counted once, acknowledged, and the store answers as apply_outcomes does
    assert counted(metrics, "applied") == 600, "every outcome applied"
    assert counted(metrics, "dead_lettered") == 0, "nothing dead-lettered"
    assert pending(conn, stream) == 0, "every entry acknowledged"
    assert markers(conn, store) == 600, "one marker per attempt_id"
    assert_same_counts(store, reference(redis_url, state, batch), later, batch)
    lag = asyncio.run(group_lag(redis_url, stream))
    assert (lag.entries, lag.pending, lag.seconds) == (0, 0, 0.0), "caught up"


def test_bad_entries_are_dead_lettered_naming_the_field_and_the_good_ones_apply(
    redis_url: str, data: Data
) -> None:
    # Given 20 events of which three are bad: a short BIN, not JSON, no `outcome` field
    _, later, state = data
    store = settings_for(redis_url, timeout_ms=5000)
    materialize(state, store)
    conn = redis.Redis.from_url(redis_url)
    stream, frame = f"{store.prefix}:outcomes", later.head(20)
    events: list[Any] = reports(frame)
    events[3]["attempt"]["card_bin"] = "12"
    events[7] = b'{"attempt": '
    ids = publish(conn, stream, events)
    conn.xdel(stream, ids[11])
    bad_id = conn.xadd(stream, {"outcom": json.dumps(events[11])})
    # When the worker handles them
    metrics = consume(store, worker_settings(batch=50))
    # Then the good ones apply, the bad ones are on the dead-letter stream, all acknowledged
    assert counted(metrics, "applied") == 17 and counted(metrics, "dead_lettered") == 3
    assert pending(conn, stream) == 0, "bad entries are acknowledged too"
    entries: Any = conn.xrange(f"{stream}:dead")
    dead = {fields[b"source_id"]: fields for _, fields in entries}
    assert set(dead) == {ids[3], ids[7], bad_id}, "exactly the bad entries"
    assert dead[ids[3]][b"error"].startswith(b"attempt.card_bin: "), dead[ids[3]][b"error"]
    assert json.loads(dead[ids[3]][b"outcome"]) == events[3], "the original fields are kept"
    assert dead[ids[7]][b"error"].startswith(b"outcome: not JSON"), dead[ids[7]][b"error"]
    assert dead[bad_id][b"error"] == b"outcome: missing field"
    good = frame.drop(index=frame.index[[3, 7, 11]])
    assert_same_counts(store, reference(redis_url, state, good), later, frame)


def test_a_duplicate_event_counts_once(redis_url: str, data: Data) -> None:
    # Given ten outcomes, one repeated in the same batch and one in a later batch
    _, later, state = data
    store = settings_for(redis_url, timeout_ms=5000)
    materialize(state, store)
    conn = redis.Redis.from_url(redis_url)
    stream, frame = f"{store.prefix}:outcomes", later.head(10)
    events = reports(frame)
    publish(conn, stream, [*events, events[2]])
    first = consume(store, worker_settings())
    publish(conn, stream, [events[5]])
    second = consume(store, worker_settings())
    # Then each attempt counts once, the repeats as duplicates, all acknowledged
    assert (counted(first, "applied"), counted(first, "duplicates")) == (10, 1)
    assert (counted(second, "applied"), counted(second, "duplicates")) == (0, 1)
    assert pending(conn, stream) == 0 and markers(conn, store) == 10
    assert_same_counts(store, reference(redis_url, state, frame), later, frame)


def test_each_bad_report_names_its_own_field() -> None:
    good = {"attempt": {"attempt_id": "x"}, "approved": True, "response_code": "00"}
    columns, refs, rejected = check_reports([(1, good), (2, [1]), (3, {**good, "extra": 1})])
    assert columns is None and refs == [], "none is valid"
    errors = {r.ref: r.error for r in rejected}
    assert errors[2] == "outcome: must be an object", errors
    assert errors[3] == "extra: unknown field", errors
    assert errors[1].startswith("attempt.payment_id: "), errors
    named = ContractError("outcomes[0].attempt.card_bin", "does not match")
    assert event_error(named) == "attempt.card_bin: does not match"


def test_settings_defaults_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVALS_OUTCOMES_GROUP", "from-env")
    settings = ConsumerSettings()
    assert settings.stream_key("live") == "live:outcomes", "stream under the store's prefix"
    assert settings.dead_letter_key("live") == "live:outcomes:dead"
    assert (settings.batch, settings.metrics_port, settings.group) == (500, 9100, "from-env")
    assert settings.consumer, "named after the host (the pod)"
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        ConsumerSettings(batch=1001)
    with pytest.raises(ValueError, match="Extra inputs"):
        ConsumerSettings(batchsize=10)  # type: ignore[call-arg]


# --- the real process: SIGKILL and restart, claims, lag over HTTP, SIGTERM ------------------


class Consumer:
    """``python -m approvals.features.consumer`` with its settings in the environment."""

    def __init__(
        self, url: str, prefix: str, log: Path, password: str | None = None, **settings: Any
    ) -> None:
        self.port, self.log = free_port(), log
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVALS_")}
        env.update({"APPROVALS_REDIS_URL": url, "APPROVALS_REDIS_PREFIX": prefix,
                    "APPROVALS_REDIS_TIMEOUT_MS": "5000"})  # fmt: skip
        if password is not None:
            env["APPROVALS_REDIS_PASSWORD"] = password
        fast = {"consumer": "c1", "block_ms": 50, "start_id": "0", "retry_min_s": 0.05,
                "retry_max_s": 0.2, "lag_interval_s": 0.05, "metrics_host": "127.0.0.1",
                "metrics_port": self.port, **settings}  # fmt: skip
        env.update({f"APPROVALS_OUTCOMES_{k.upper()}": str(v) for k, v in fast.items()})
        with log.open("ab") as out:
            command = [sys.executable, "-m", "approvals.features.consumer"]
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics`` by name (labels appended), {} while not listening."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.TransportError:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            return {}
        return {
            s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def until(self, check: Callable[[dict[str, float]], bool], what: str) -> dict[str, float]:
        """The first scrape that passes ``check``."""
        found: dict[str, float] = eventually(lambda: (m := self.metrics()) and check(m) and m, what)
        return found

    def status(self, path: str) -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=15)


@pytest.fixture
def consumers(tmp_path: Path) -> Iterator[Callable[..., Consumer]]:
    """Start consumer processes; any left running is killed at the end."""
    started: list[Consumer] = []

    def start(url: str, prefix: str, **settings: Any) -> Consumer:
        started.append(Consumer(url, prefix, tmp_path / f"consumer-{len(started)}.log", **settings))
        return started[-1]

    yield start
    for consumer in started:
        if consumer.proc.poll() is None:
            consumer.proc.kill()
            consumer.proc.wait(timeout=10)


def held_by(conn: redis.Redis, stream: str, name: str) -> int:
    """Entries delivered to consumer ``name`` and not acknowledged."""
    found = {c["name"]: c["pending"] for c in conn.xinfo_consumers(stream, "features")}
    return int(found.get(name.encode(), 0))


def test_a_consumer_killed_between_apply_and_ack_counts_everything_once_after_restart(
    own_redis: RedisServer, data: Data, consumers: Callable[..., Consumer]
) -> None:
    # Given a consumer whose Redis user may apply but not XACK: it applies its first batch,
    # then retries the acknowledgement; it is killed (SIGKILL) holding those entries
    _, later, state = data
    store = RedisSettings(url=own_redis.url, prefix="live", timeout_ms=5000)
    materialize(state, store)
    conn = redis.Redis.from_url(own_redis.url)
    conn.execute_command("ACL", "SETUSER", "noack", "on", f">{SECRET}", "~*", "&*", "+@all",
                         "-xack")  # fmt: skip
    stream, frame = "live:outcomes", later.head(1000)
    publish(conn, stream, reports(frame))
    url = own_redis.url.replace("redis://", "redis://noack@")
    first = consumers(url, "live", password=SECRET, batch=200)
    first.until(lambda m: m.get("approvals_outcomes_failures_total{reason=redis}", 0) >= 1,
                "the first batch's XACK refused")  # fmt: skip
    assert markers(conn, store) == 200 and pending(conn, stream) == 200, "applied, not acked"
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    # When it restarts under the same (pod) name, allowed to acknowledge
    second = consumers(own_redis.url, "live", batch=200)
    done = second.until(
        lambda m: (
            m.get("approvals_outcomes_applied_total") == 800
            and m.get("approvals_outcomes_pending_entries") == 0
            and m.get("approvals_outcomes_lag_entries") == 0
        ),
        "the rest applied and everything acknowledged",
    )
    # Then the re-read batch counts as duplicates and every outcome counts exactly once
    assert done["approvals_outcomes_duplicates_total"] == 200, "its own pending re-read first"
    assert markers(conn, store) == 1000 and pending(conn, stream) == 0, "the pending list drained"
    assert second.stop() == 0, second.log.read_text()[-3000:]
    assert_same_counts(store, reference(own_redis.url, state, frame), later, frame)
    assert SECRET not in first.log.read_text() + second.log.read_text(), "the token is never logged"


def test_a_consumer_killed_mid_batch_is_taken_over_by_another(
    redis_url: str, data: Data, consumers: Callable[..., Consumer]
) -> None:
    # Given consumer `a` working through a backlog, frozen and killed while it holds entries
    _, later, state = data
    store = settings_for(redis_url, timeout_ms=5000)
    materialize(state, store)
    conn = redis.Redis.from_url(redis_url)
    stream, frame = f"{store.prefix}:outcomes", later.head(1500)
    publish(conn, stream, reports(frame))
    a = consumers(redis_url, store.prefix, consumer="a", batch=100)
    a.until(lambda m: m.get("approvals_outcomes_applied_total", 0) >= 200, "a few batches applied")
    while True:  # frozen, it cannot acknowledge between the look and the kill
        a.proc.send_signal(signal.SIGSTOP)
        if held_by(conn, stream, "a"):
            break
        a.proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    assert a.stop(signal.SIGKILL) == -signal.SIGKILL
    assert held_by(conn, stream, "a") > 0, "killed holding delivered, unacknowledged entries"
    before = markers(conn, store)
    # When consumer `b` starts and claims what `a` left idle
    b = consumers(redis_url, store.prefix, consumer="b", batch=100, claim_idle_ms=300,
                  claim_interval_s=0.1)  # fmt: skip
    done = b.until(
        lambda m: (
            m.get("approvals_outcomes_claimed_total", 0) > 0
            and m.get("approvals_outcomes_pending_entries") == 0
            and m.get("approvals_outcomes_lag_entries") == 0
        ),
        "a's entries claimed and everything acknowledged",
    )
    # Then every outcome counts once, whatever `a` had applied before it died
    assert markers(conn, store) == 1500 and held_by(conn, stream, "a") == 0
    assert done["approvals_outcomes_applied_total"] == 1500 - before, "b counted only the rest"
    assert b.stop() == 0, b.log.read_text()[-3000:]
    assert_same_counts(store, reference(redis_url, state, frame), later, frame)


def test_lag_shows_entries_and_seconds_and_nothing_is_acked_without_a_live_version(
    redis_url: str, data: Data, consumers: Callable[..., Consumer]
) -> None:
    # Given 30 events published 90 s ago (ids are millisecond times) and no live version yet
    _, later, state = data
    store = settings_for(redis_url, timeout_ms=5000)
    conn = redis.Redis.from_url(redis_url)
    stream, then = f"{store.prefix}:outcomes", int(time.time() * 1000) - 90_000
    for i, event in enumerate(reports(later.head(30))):
        conn.xadd(stream, {"outcome": json.dumps(event)}, id=f"{then}-{i}")
    # When a consumer reads a batch of 10 it cannot apply
    c = consumers(redis_url, store.prefix, batch=10)
    stuck = c.until(
        lambda m: (
            m.get("approvals_outcomes_pending_entries") == 10
            and m.get("approvals_outcomes_lag_entries") == 20
            and m.get("approvals_outcomes_failures_total{reason=feature_store}", 0) >= 1
        ),
        "one batch held, twenty waiting",
    )
    # Then the gauges show the backlog and its age, and nothing is acknowledged
    assert 89 <= stuck["approvals_outcomes_lag_seconds"] < 150, stuck
    assert stuck.get("approvals_outcomes_applied_total") == 0
    assert (c.status("/livez"), c.status("/readyz")) == (200, 503), "alive, not ready"
    # And once a version is materialized the backlog drains to zero
    materialize(state, store)
    c.until(
        lambda m: (
            m.get("approvals_outcomes_applied_total") == 30
            and m.get("approvals_outcomes_lag_entries") == 0
            and m.get("approvals_outcomes_pending_entries") == 0
            and m.get("approvals_outcomes_lag_seconds") == 0
        ),
        "caught up",
    )
    assert c.status("/readyz") == 200, "ready again"
    assert c.stop() == 0


def test_sigterm_finishes_the_batch_acknowledges_it_and_exits_0(
    redis_url: str, data: Data, consumers: Callable[..., Consumer]
) -> None:
    # Given a consumer in the middle of a backlog
    _, later, state = data
    store = settings_for(redis_url, timeout_ms=5000)
    materialize(state, store)
    conn = redis.Redis.from_url(redis_url)
    stream = f"{store.prefix}:outcomes"
    publish(conn, stream, reports(later.head(1500)))
    c = consumers(redis_url, store.prefix, batch=100)
    c.until(lambda m: m.get("approvals_outcomes_applied_total", 0) >= 200, "working")
    # When it gets SIGTERM, Then it exits 0 with nothing delivered left unacknowledged
    assert c.stop(signal.SIGTERM) == 0, c.log.read_text()[-3000:]
    (group,) = conn.xinfo_groups(stream)
    assert group["pending"] == 0, "the current batch was acknowledged"
    assert markers(conn, store) == group["entries-read"], "every delivered entry was applied"
    # And its log is JSON lines without a report's fields
    lines = [json.loads(line) for line in c.log.read_text().splitlines()]
    assert lines[0]["message"] == "consumer started" and lines[-1]["message"] == "consumer stopped"
    assert all(set(line) >= {"time", "level", "message"} for line in lines)
    text = c.log.read_text()
    assert "card_" not in text and "amount" not in text, "no card data in the log"
