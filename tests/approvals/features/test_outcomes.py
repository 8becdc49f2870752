"""Live outcomes applied to the online store (real redis-server): parity with the offline SQL,
idempotency, atomicity, ageing and late outcomes, version switches."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from approvals.contract import validate_frame
from approvals.errors import ContractError, UserError
from approvals.features import counts_for, frame_columns
from approvals.features.definitions import FAMILIES, FAMILY_BY_NAME
from approvals.features.derive import FeatureSpec, categorical_values, feature_columns, fit_vocab
from approvals.features.materialize import materialize
from approvals.features.online import OnlineFeatureStore
from approvals.features.outcomes import OutcomeWriter, apply_outcomes, validate_outcomes
from approvals.features.redis_settings import RedisSettings
from approvals.features.row import RowFeatures
from approvals.features.state import FeatureState, build_state
from approvals.features.tiles import TILES, US, epoch_us, family_key, parse_value, tile_spans
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


def materialize_mismatches(
    conn: redis.Redis, settings: RedisSettings, events: pd.DataFrame, touched: pd.DataFrame
) -> tuple[int, list[str]]:
    """Keys of ``touched`` whose live value differs from what materialize writes for ``events``
    (tile starts, head, integer counters exactly; sums of logs to 1e-9): how many were
    compared, and the differing ones."""
    fresh = settings_for(settings.url, timeout_ms=5000)
    materialize(build_state(events), fresh)
    checked, bad = 0, []
    for family in FAMILIES:
        counted = len(family.counters)
        exact = [j for j, c in enumerate(family.counters) if not c.endswith("slog")]
        for values in touched[list(family.keys)].drop_duplicates().itertuples(index=False):
            relkey = family_key(family, values)
            ours, theirs = (parse_value(live_value(conn, s, relkey)) for s in (settings, fresh))
            same = (
                ours.starts == theirs.starts
                and ours.last_code == theirs.last_code
                and np.array_equal(ours.last_us, theirs.last_us, equal_nan=True)
                and [ours.life[j] for j in exact] == [theirs.life[j] for j in exact]
                and np.allclose(ours.life[:counted], theirs.life[:counted], rtol=0, atol=1e-9)
            )
            for mine, other in zip(ours.sums, theirs.sums, strict=True):
                left, right = np.array(mine).reshape(-1, 8), np.array(other).reshape(-1, 8)
                same = same and left.shape == right.shape
                same = same and np.array_equal(left[:, exact], right[:, exact])
                same = same and np.allclose(left[:, :counted], right[:, :counted], atol=1e-9)
            checked += 1
            if not same:
                bad.append(relkey)
    return checked, bad


def script_calls(conn: redis.Redis) -> int:
    """EVALSHA calls this Redis has served."""
    return int(conn.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


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


# --- the shapes a batch can take: shared keys, order, old tiles, repeats ---------------------


def test_a_batch_whose_outcomes_all_hit_one_shared_key_adds_them_all(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    # Given the history materialized, and a batch whose outcomes share one BIN, route and
    # merchant (many outcomes, many tiles, one key per shared family)
    history, later, state = factory
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    conn = redis.Redis.from_url(redis_url)
    top = {k: history[k].mode()[0] for k in ("card_bin", "route_id", "merchant_id")}
    batch = later.head(300).assign(**top)
    # When it is applied in one call
    result = apply_outcomes(conn, outcome_rows(batch), prefix=settings.prefix)
    assert (result.applied, result.duplicates, result.late) == (300, 0, 0)
    # Then every key it touched holds what materialize writes for history and batch
    events = pd.concat([history, batch], ignore_index=True)
    checked, bad = materialize_mismatches(conn, settings, events, batch)
    assert checked > 150 and bad == [], f"{len(bad)} keys differ, e.g. {bad[:3]}"


def test_outcomes_out_of_time_order_within_a_batch_count_as_in_order(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    # Given a batch in shuffled order (times spread over hours, some tied)
    history, later, state = factory
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    conn = redis.Redis.from_url(redis_url)
    batch = later.head(200).sample(frac=1.0, random_state=3)
    assert not batch["event_time"].is_monotonic_increasing
    # When it is applied
    assert apply_outcomes(conn, outcome_rows(batch), prefix=settings.prefix).applied == 200
    # Then the store is what materialize writes, and readers agree with the SQL
    events = pd.concat([history, batch], ignore_index=True)
    checked, bad = materialize_mismatches(conn, settings, events, batch)
    assert checked > 100 and bad == [], f"{len(bad)} keys differ, e.g. {bad[:3]}"
    frame = probes(later, batch["event_time"].max())
    online = OnlineFeatureStore(settings).counts(records(frame))
    assert counter_mismatches(counts_for(frame, events), online.counts) == []


def test_an_outcome_in_a_tile_older_than_the_stored_ones_gets_its_own_tile(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    # Given a BIN x route key, and outcomes for it before its oldest stored 6-hour tile, in a
    # gap between its hourly tiles, and at the newest time (all inside their windows)
    history, _, state = factory
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    conn = redis.Redis.from_url(redis_url)
    family = FAMILY_BY_NAME["bin_route"]
    end = history["event_time"].max()
    template = history.loc[history["event_time"] == end].head(1)
    key = template[list(family.keys)].iloc[0].tolist()
    stored = parse_value(live_value(conn, settings, family_key(family, key)))
    six, hour = TILES.index(6 * 3600), TILES.index(3600)
    end_s = epoch_us(end.to_pydatetime()) // US
    before_oldest = min(stored.starts[six]) - 6 * 3600 + 60
    assert before_oldest >= end_s - end_s % (6 * 3600) - 7 * 86400, "inside the 7-day window"
    hours = stored.starts[hour]
    gaps = [a + 3600 for a, b in itertools.pairwise(hours) if b - a > 3600]
    times = [before_oldest, *(gaps[:1] or [hours[0] - 3600]), end_s]
    batch = pd.concat([template] * len(times), ignore_index=True).assign(
        event_time=[pd.Timestamp(t, unit="s") for t in times],
        attempt_id=[f"old{i}" for i in range(len(times))],
        card_fingerprint=[f"old-card-{i}" for i in range(len(times))],
    )
    # When they are applied
    result = apply_outcomes(conn, outcome_rows(batch), prefix=settings.prefix)
    assert (result.applied, result.late) == (len(times), 0)
    # Then the key has tiles for them, holding the suffix sums materialize computes
    after = parse_value(live_value(conn, settings, family_key(family, key)))
    assert min(after.starts[six]) < min(stored.starts[six]), "no tile before the oldest one"
    events = pd.concat([history, batch], ignore_index=True)
    checked, bad = materialize_mismatches(conn, settings, events, batch)
    assert checked > 0 and bad == [], f"{len(bad)} keys differ, e.g. {bad[:3]}"


def test_a_batch_mixing_repeats_late_and_new_outcomes_applies_only_the_new_ones(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    # Given 20 outcomes applied, then a batch repeating 10 of them, with 3 late ones and 20
    # new ones (the script finds what the first call did not expect: a second call applies)
    history, later, state = factory
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    conn = redis.Redis.from_url(redis_url)
    first, new = later.iloc[:20], later.iloc[20:40]
    late = later.iloc[40:43].assign(
        event_time=history["event_time"].min(), attempt_id=["late1", "late2", "late3"]
    )
    assert apply_outcomes(conn, outcome_rows(first), prefix=settings.prefix).applied == 20
    batch = pd.concat([first.iloc[10:], late, new], ignore_index=True)
    calls = script_calls(conn)
    # When the batch is applied
    result = apply_outcomes(conn, outcome_rows(batch), prefix=settings.prefix)
    # Then only the new ones count, in two script calls
    assert (result.applied, result.duplicates, result.late) == (20, 10, 3)
    assert result.statuses == "d" * 10 + "l" * 3 + "a" * 20
    assert script_calls(conn) - calls == 2, "one call that found repeats, one that applied"
    # (keys the last write skipped may keep tiles materialize would drop: readers never ask)
    events = pd.concat([history, first, new], ignore_index=True)
    checked, bad = materialize_mismatches(conn, settings, events, new)
    assert checked > 50 and bad == [], f"{len(bad)} keys differ, e.g. {bad[:3]}"
    # And the same batch once more is all repeats and late ones, found in one call
    calls = script_calls(conn)
    again = apply_outcomes(conn, outcome_rows(batch), prefix=settings.prefix)
    assert (again.applied, again.duplicates, again.late) == (0, 30, 3)
    assert script_calls(conn) - calls == 1


def test_the_asyncio_writer_applies_a_batch_with_repeats(
    redis_url: str, factory: tuple[pd.DataFrame, pd.DataFrame, FeatureState]
) -> None:
    _, later, state = factory
    settings = settings_for(redis_url, timeout_ms=5000)
    materialize(state, settings)
    rows = outcome_rows(later.head(30))

    async def apply_twice() -> tuple[Any, Any]:
        writer = OutcomeWriter(settings)
        try:
            first = await writer.apply(validate_outcomes(rows[:10]))
            return first, await writer.apply(validate_outcomes(rows))
        finally:
            await writer.aclose()

    first, second = asyncio.new_event_loop().run_until_complete(apply_twice())
    assert (first.applied, second.applied, second.duplicates) == (10, 20, 10)
    assert second.statuses == "d" * 10 + "a" * 20


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
        # from the future: it would age out tiles that correct outcomes still need
        ("event_time", datetime.now(UTC) + timedelta(hours=1), "outcomes[3].event_time"),
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


@pytest.mark.parametrize("damage", ["not whole records", "another type", "tiles out of order"])
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
    elif damage == "tiles out of order":
        value = conn.get(key)
        assert isinstance(value, bytes) and len(value) >= 3 * 80, "a route with two tiles"
        conn.set(key, value[:80] + value[160:240] + value[80:160] + value[240:], keepttl=True)
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
