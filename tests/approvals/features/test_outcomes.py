"""Live outcomes applied to the online store (real redis-server): parity with the offline SQL,
idempotency, atomicity, ageing and late outcomes, version switches."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from approvals.contract import validate_frame
from approvals.errors import ContractError, UserError
from approvals.features import counts_for, frame_columns
from approvals.features.definitions import FAMILY_BY_NAME
from approvals.features.derive import FeatureSpec, categorical_values, feature_columns, fit_vocab
from approvals.features.materialize import materialize
from approvals.features.online import OnlineFeatureStore
from approvals.features.outcomes import apply_outcomes
from approvals.features.redis_settings import RedisSettings
from approvals.features.row import RowFeatures
from approvals.features.state import FeatureState, build_state
from approvals.features.tiles import TILES, US, epoch_us, parse_value, tile_spans
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts
from tests.approvals.features.test_online import records, settings_for, split

pytestmark = pytest.mark.servers
FLOAT_SUMS = ("_slog", "_aslog", "_nsfslog")  # sums of logs: equal to rounding, not bit for bit


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A simulated fortnight split in time: history (60%) and the live part, time-ordered."""
    simulate = pytest.importorskip("approvals.simulate")
    data = validate_frame(simulate.simulate(2500, seed=7, days=10).attempts, labels=True)
    data = data.sort_values("event_time", kind="stable").reset_index(drop=True)
    return split(data, 0.6)


@pytest.fixture(scope="module")
def factory() -> tuple[pd.DataFrame, pd.DataFrame, FeatureState]:
    data = validate_frame(random_attempts(1500, seed=4, days=12), labels=True)
    history, later = split(data, 0.7)
    return history, later, build_state(history)


def outcome_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Labelled attempts as a reporter sends them (aware UTC datetimes, None for null codes)."""
    rows = records(frame)
    for row in rows:
        for name in ("previous_response_code", "merchant_advice_code"):
            if name in row and not isinstance(row[name], str):
                row[name] = None
    return rows


def batches(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Consecutive batches of about ``size``, cut only where the event time moves on."""
    times = frame["event_time"].to_numpy()
    cuts, at = [0], size
    while at < len(frame):
        while at < len(frame) and times[at] == times[at - 1]:
            at += 1
        cuts.append(at)
        at += size
    cuts.append(len(frame))
    return [frame.iloc[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def probes(rest: pd.DataFrame, after: pd.Timestamp) -> pd.DataFrame:
    """Attempts strictly after every applied outcome: the next ones, the same a day later, and
    unseen keys."""
    nxt = rest.loc[rest["event_time"] > after].head(60)
    later = nxt.head(30).assign(event_time=nxt["event_time"].head(30) + pd.Timedelta("1D"))
    unseen = nxt.head(5).assign(card_fingerprint="never-seen", card_bin="49999999")
    return pd.concat([nxt, later, unseen], ignore_index=True)


def counter_mismatches(offline: dict[str, np.ndarray], online: dict[str, np.ndarray]) -> list[str]:
    """Counters that differ: exactly, but for the sums of logs (to 1e-9)."""
    bad = sorted(set(offline) ^ set(online))
    for name in set(offline) & set(online):
        left, right = offline[name], online[name]
        if left.dtype == object:
            same = list(left) == list(right)
        elif name.endswith(FLOAT_SUMS):
            same = np.allclose(left, right, rtol=0, atol=1e-9)
        else:
            same = np.array_equal(left, right, equal_nan=True)
        if not same:
            bad.append(name)
    return bad


def feature_mismatches(
    offline: dict[str, np.ndarray], online: dict[str, np.ndarray], attempts: dict[str, Any]
) -> list[str]:
    """Model features that differ by more than 1e-9 (NaN equal to NaN)."""
    vocab = fit_vocab(categorical_values(attempts, offline))
    spec = FeatureSpec(global_rate=0.8, vocab=vocab)
    left = feature_columns(offline, attempts, spec)
    right = feature_columns(online, attempts, spec)
    return sorted(
        name
        for name in left
        if not np.allclose(left[name], right[name], rtol=0, atol=1e-9, equal_nan=True)
    )


def row_mismatches(
    store: OnlineFeatureStore, frame: pd.DataFrame, offline: dict[str, np.ndarray]
) -> list[int]:
    """Probes whose single-attempt read (the service's path) gives other model features."""
    attempts = frame_columns(frame)
    vocab = fit_vocab(categorical_values(attempts, offline))
    names = list(feature_columns(offline, attempts, FeatureSpec(0.8, vocab)))
    spec = FeatureSpec(global_rate=0.8, vocab=vocab, names=names)
    row_features, expected = RowFeatures(spec), feature_columns(offline, attempts, spec)

    async def read() -> list[int]:
        wrong = []
        for i, attempt in enumerate(outcome_rows(frame)):
            attempt["event_time_us"] = epoch_us(attempt["event_time"])
            answer = await store.acounts_row(attempt, attempt["event_time_us"])
            got = row_features(answer.counts, attempt)[0]
            want = np.array([expected[n][i] for n in names])
            if answer.degraded or not np.allclose(got, want, rtol=0, atol=1e-9, equal_nan=True):
                wrong.append(i)
        return wrong

    return asyncio.get_event_loop().run_until_complete(read())


def snapshot(conn: redis.Redis, prefix: str) -> dict[Any, Any]:
    """Every key of a prefix with its value (hashes as their fields), to compare states."""
    out: dict[Any, Any] = {}
    for key in conn.scan_iter(match=f"{prefix}:*", count=1000):
        kind = conn.type(key)
        if kind == b"hash":
            out[key] = repr(sorted(conn.hgetall(key).items())).encode()
        elif kind == b"list":
            out[key] = conn.lrange(key, 0, -1)
        else:
            out[key] = conn.get(key)
    return out


def live_value(conn: redis.Redis, settings: RedisSettings, relkey: str) -> bytes:
    """The stored value of a key of the live version (it must exist)."""
    version = conn.get(f"{settings.prefix}:current")
    value = conn.get(f"{settings.prefix}:{_text(version)}:{relkey}")
    assert isinstance(value, bytes), f"{relkey} is not stored"
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- the heart: parity with the offline SQL while outcomes stream in -----------------------


def test_applied_outcomes_give_the_offline_sql_counts_and_features(
    redis_url: str, simulated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Given the history materialized, and one reader kept across applies (holding shared keys)
    history, live = simulated
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(build_state(history), settings)
    store = OnlineFeatureStore(settings)
    conn = redis.Redis.from_url(redis_url)
    parts, applied, checked = batches(live, 120), [history], 0
    asyncio.set_event_loop(asyncio.new_event_loop())
    for n, batch in enumerate(parts):
        # When each batch's outcomes are applied in event-time order
        result = apply_outcomes(conn, outcome_rows(batch), prefix=settings.prefix)
        assert (result.applied, result.duplicates, result.late) == (len(batch), 0, 0), n
        applied.append(batch)
        if n not in (0, 2, len(parts) // 2, len(parts) - 2):
            continue
        # Then readers of later attempts get what the SQL gives on every outcome before them
        frame = probes(live, batch["event_time"].max())
        offline = counts_for(frame, pd.concat(applied, ignore_index=True))
        online = store.counts(records(frame))
        assert not online.degraded
        assert counter_mismatches(offline, online.counts) == [], f"counters after batch {n}"
        assert feature_mismatches(offline, online.counts, frame_columns(frame)) == [], n
        assert row_mismatches(store, frame, offline) == [], f"row path after batch {n}"
        checked += len(frame)
    assert checked >= 300 and store.stats.keys_held > 0, "probes ran, shared keys were held"


def test_applied_values_equal_what_materialize_writes_for_the_same_outcomes(
    redis_url: str, simulated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Given the history materialized and the live part applied in batches
    history, live = simulated
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(build_state(history), settings)
    conn = redis.Redis.from_url(redis_url)
    parts = batches(live, 200)
    for batch in parts:
        apply_outcomes(conn, outcome_rows(batch), prefix=settings.prefix)
    # When the whole data set is materialized afresh under another prefix
    fresh = settings_for(redis_url, timeout_ms=5000)
    materialize(build_state(pd.concat([history, live], ignore_index=True)), fresh)
    # Then every key the last batch rewrote holds the same tiles and integer counters
    last = parts[-1]
    checked = 0
    for family in ("card", "bin_route", "route", "merchant_bin"):
        keys = FAMILY_BY_NAME[family].keys
        for values in last[list(keys)].drop_duplicates().itertuples(index=False):
            relkey = f"{family}:" + "\x1f".join(map(str, values))
            ours, theirs = (parse_value(live_value(conn, s, relkey)) for s in (settings, fresh))
            assert ours.starts == theirs.starts, f"{relkey}: other tiles kept"
            assert ours.last_code == theirs.last_code, relkey
            assert np.array_equal(ours.last_us, theirs.last_us, equal_nan=True), relkey
            counted = len(FAMILY_BY_NAME[family].counters)
            assert ours.life[:2] == theirs.life[:2], f"{relkey}: lifetime n/a differ"
            for mine, other in zip(ours.sums, theirs.sums, strict=True):
                assert [t[:2] for t in mine] == [t[:2] for t in other], relkey
                left, right = np.array(mine).reshape(-1, 8), np.array(other).reshape(-1, 8)
                assert np.allclose(left[:, :counted], right[:, :counted]), relkey
            checked += 1
    assert checked > 50


# --- idempotency and atomicity --------------------------------------------------------------


def test_a_repeated_report_changes_nothing_and_counts_as_duplicates(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory
    settings = settings_for(redis_url)
    materialize(state, settings)
    conn = redis.Redis.from_url(redis_url)
    rows = outcome_rows(later.head(50))
    first = apply_outcomes(conn, rows, prefix=settings.prefix)
    before = snapshot(conn, settings.prefix)
    again = apply_outcomes(conn, [*rows[:10], rows[3]], prefix=settings.prefix)
    assert (first.applied, first.duplicates) == (50, 0)
    assert (again.applied, again.duplicates, again.statuses) == (0, 11, "d" * 11)
    assert snapshot(conn, settings.prefix) == before, "a repeated report changed the store"
    # Within one batch too: the first report counts, the repeat is a duplicate
    twice = outcome_rows(later.iloc[50:52])
    result = apply_outcomes(conn, [twice[0], twice[1], twice[0]], prefix=settings.prefix)
    assert (result.applied, result.duplicates, result.statuses) == (2, 1, "aad")


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("response_code", "05", "outcomes[3].response_code"),  # disagrees with approved=True
        ("approved", "perhaps", "outcomes[3].approved"),
        ("card_bin", "12", "outcomes[3].card_bin"),
        ("response_code", None, "outcomes[3].response_code"),
    ],
)
def test_a_batch_with_a_bad_outcome_applies_nothing_and_names_the_field(
    redis_url: str,
    factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState],
    field: str,
    value: Any,
    named: str,
) -> None:
    _, later, state = factory
    settings = settings_for(redis_url)
    materialize(state, settings)
    conn = redis.Redis.from_url(redis_url)
    before = snapshot(conn, settings.prefix)
    rows = outcome_rows(later.loc[later["approved"]].head(6))
    rows[3][field] = value
    with pytest.raises(ContractError, match=re.escape(f"'{named}'")):
        apply_outcomes(conn, rows, prefix=settings.prefix)
    assert snapshot(conn, settings.prefix) == before, "part of a rejected batch was applied"


@pytest.mark.parametrize("damage", ["not whole records", "another type"])
def test_a_failure_inside_the_script_leaves_the_version_untouched(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState], damage: str
) -> None:
    # Given a live version where one key the batch touches (its last route) is damaged
    _, later, state = factory
    settings = settings_for(redis_url)
    version = materialize(state, settings).version
    conn = redis.Redis.from_url(redis_url)
    rows = outcome_rows(later.head(40))
    key = f"{settings.prefix}:{version}:route:{rows[-1]['route_id']}"
    if damage == "another type":
        conn.delete(key)
        conn.rpush(key, "x")
    else:
        conn.append(key, b"xyz")
    before = snapshot(conn, settings.prefix)
    # When the batch is applied, Then it fails and nothing of it (markers included) is written
    with pytest.raises(redis.ResponseError):
        apply_outcomes(conn, rows, prefix=settings.prefix)
    assert snapshot(conn, settings.prefix) == before, "a failed batch was half applied"


def test_a_stopped_redis_raises_and_a_restarted_one_takes_outcomes_again(
    own_redis: RedisServer, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory
    settings = RedisSettings(url=own_redis.url, timeout_ms=2000)
    materialize(state, settings)
    rows = outcome_rows(later.head(30))
    assert apply_outcomes(settings, rows[:10]).applied == 10
    own_redis.stop()
    with pytest.raises(redis.ConnectionError):
        apply_outcomes(settings, rows[10:])
    own_redis.start()  # no persistence: an empty store, which refuses outcomes plainly
    with pytest.raises(UserError, match="no live feature version"):
        apply_outcomes(settings, rows[10:])
    materialize(state, settings)
    assert apply_outcomes(settings, rows).applied == 30, "a fresh version counts them all"


# --- ageing, late outcomes, TTLs, versions ---------------------------------------------------


def test_old_tiles_leave_rewritten_keys_and_late_outcomes_are_ignored(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    history, later, state = factory
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    conn = redis.Redis.from_url(redis_url)
    # When outcomes arrive 9 days after the state ends
    jump = later.head(40).assign(event_time=later["event_time"].head(40) + pd.Timedelta("9D"))
    jump = jump.assign(attempt_id=[f"j{i}" for i in range(len(jump))])
    assert apply_outcomes(conn, outcome_rows(jump), prefix=settings.prefix).applied == 40
    # Then every key they touched keeps only tiles a later request can read
    ref_s = epoch_us(jump["event_time"].max()) // US
    for route in jump["route_id"].unique():
        value = parse_value(live_value(conn, settings, f"route:{route}"))
        for tile, span in tile_spans(FAMILY_BY_NAME["route"]).items():
            starts = value.starts[TILES.index(tile)]
            assert starts and min(starts) >= ref_s - ref_s % tile - span, f"{route}: old tiles"
    # And an outcome from before the 7-day window is late: counted, ignored
    before = snapshot(conn, settings.prefix)
    old = later.iloc[50:53].assign(attempt_id=["o1", "o2", "o3"])
    result = apply_outcomes(conn, outcome_rows(old), prefix=settings.prefix)
    assert (result.applied, result.late, result.statuses) == (0, 3, "lll")
    assert snapshot(conn, settings.prefix) == before, "a late outcome changed the store"
    # And readers still agree with the SQL on everything applied
    frame = jump.assign(event_time=jump["event_time"].max() + pd.Timedelta("1h"))
    events = pd.concat([history, jump], ignore_index=True)
    online = OnlineFeatureStore(settings).counts(records(frame))
    assert counter_mismatches(counts_for(frame, events), online.counts) == []


def test_new_keys_expire_with_the_pointer_and_rewritten_ones_keep_their_ttl(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory
    settings = settings_for(redis_url)
    version = materialize(state, settings, ttl=timedelta(days=2)).version
    conn = redis.Redis.from_url(redis_url)
    row = outcome_rows(later.head(1))[0]
    route_key = f"{settings.prefix}:{version}:route:{row['route_id']}"
    conn.expire(route_key, 3600)  # a TTL of its own, to see it kept
    fresh = {**row, "card_fingerprint": "brand-new-card", "attempt_id": "new-1"}
    assert apply_outcomes(conn, [fresh], prefix=settings.prefix).applied == 1
    new_key = f"{settings.prefix}:{version}:card:brand-new-card"
    pointer_ttl = conn.pttl(f"{settings.prefix}:current")
    # same absolute expiry as the pointer; PTTL rounds to the millisecond either way
    assert -5 <= pointer_ttl - conn.pttl(new_key) < 60_000, "a new key expires with the pointer"
    assert 3500 < conn.ttl(route_key) <= 3600, "a rewritten key kept its TTL"
    marker_ttl = conn.ttl(f"{settings.prefix}:{version}:seen:new-1")
    assert marker_ttl > 7 * 86400, "markers outlive the longest window"


def test_outcomes_go_to_the_version_live_when_they_are_applied(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory
    settings = settings_for(redis_url)
    conn = redis.Redis.from_url(redis_url)
    old = materialize(state, settings).version
    rows = outcome_rows(later.head(20))
    assert apply_outcomes(conn, rows[:10], prefix=settings.prefix).version == old
    old_keys = snapshot(conn, f"{settings.prefix}:{old}")
    new = materialize(state, settings).version
    # the new version has not seen them: each version keeps its own markers
    result = apply_outcomes(conn, rows, prefix=settings.prefix)
    assert (result.version, result.applied) == (new, 20)
    after = snapshot(conn, f"{settings.prefix}:{old}")
    assert after == old_keys, "the replaced version was written to"


def test_a_reader_holding_shared_keys_sees_the_next_write(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory
    settings = settings_for(redis_url)
    materialize(state, settings)
    store = OnlineFeatureStore(settings)
    probe = later.tail(1).assign(event_time=later["event_time"].max() + pd.Timedelta("1h"))
    before = store.counts(records(probe)).counts["route_life_n"][0]
    assert store._held.values, "the reader holds shared values"
    apply_outcomes(settings, outcome_rows(later.head(30)))
    after = store.counts(records(probe)).counts["route_life_n"][0]
    same_route = int((later.head(30)["route_id"] == probe["route_id"].iloc[0]).sum())
    assert after == before + same_route, "a held route value hid the write"


def test_no_version_oversized_batches_and_a_client_without_prefix_are_refused(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, _ = factory
    rows = outcome_rows(later.head(2))
    with pytest.raises(UserError, match="no live feature version"):
        apply_outcomes(settings_for(redis_url), rows)
    with pytest.raises(ContractError, match="at most 1000"):
        apply_outcomes(settings_for(redis_url), rows * 501)
    with pytest.raises(ValueError, match="prefix"):
        apply_outcomes(redis.Redis.from_url(redis_url), rows)
    assert apply_outcomes(settings_for(redis_url), []).applied == 0
