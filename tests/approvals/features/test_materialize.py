"""Materialization into a real redis-server: TTLs, atomic switch, failures, the CLI (from an
attempts file or a model package's state)."""

from __future__ import annotations

import shutil
import threading
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import redis

from approvals.cli.main import main
from approvals.contract import validate_frame
from approvals.errors import UserError
from approvals.features.definitions import FAMILY_BY_NAME
from approvals.features.materialize import OLD_VERSION_TTL_S, family_values, materialize
from approvals.features.online import OnlineFeatureStore
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import FeatureState, build_state
from approvals.features.tiles import definitions_hash, epoch_us, tile_spans
from approvals.model.package import ModelPackage
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts
from tests.approvals.features.test_online import differing, records

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def states() -> tuple[FeatureState, FeatureState, pd.DataFrame]:
    """Two different states ending before the same later attempts."""
    data = validate_frame(random_attempts(2400, seed=8, days=15), labels=True)
    cut = data["event_time"].iloc[2000]
    early = data.loc[data["event_time"] < cut]
    flipped = early.assign(approved=~early["approved"])
    flipped["response_code"] = flipped["approved"].map({True: "00", False: "05"})
    later = data.loc[data["event_time"] >= cut].head(40).reset_index(drop=True)
    return build_state(early), build_state(flipped), later


def fresh(url: str) -> RedisSettings:
    return RedisSettings(url=url, prefix=f"m{uuid.uuid4().hex[:8]}", timeout_ms=5000)


def test_keys_meta_and_pointer_carry_ttls(
    redis_url: str, states: tuple[FeatureState, FeatureState, pd.DataFrame]
) -> None:
    state, _, _ = states
    settings = fresh(redis_url)
    done = materialize(state, settings, ttl=pd.Timedelta(days=2).to_pytimedelta())
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = list(client.scan_iter(match=f"{settings.prefix}:{done.version}:*", count=1000))
    assert len(keys) == done.keys + 1, "every family key plus meta should exist"
    ttls = {client.ttl(k) for k in [*keys, f"{settings.prefix}:current"]}
    assert all(2 * 86400 - 60 < t <= 2 * 86400 for t in ttls), f"unexpected TTLs {ttls}"
    meta = client.hgetall(f"{settings.prefix}:{done.version}:meta")
    assert meta["defs"] == definitions_hash(), "meta must carry the definitions hash"
    assert int(meta["end_us"]) == epoch_us(state.end), "meta must carry the state end"
    assert int(meta["rows_card"]) == len(state.tables["card"]), "meta must carry row counts"


def test_only_tiles_a_later_request_can_need_are_stored(
    states: tuple[FeatureState, FeatureState, pd.DataFrame],
) -> None:
    state, _, _ = states
    assert state.end is not None
    family = FAMILY_BY_NAME["bin_route"]
    stored = family_values(state.tables["bin_route"], family, epoch_us(state.end))
    limit = sum(span // tile + 1 for tile, span in tile_spans(family).items())
    widest = int(stored.tiles.max())
    assert 0 < widest <= limit, f"{widest} tiles in one key, at most {limit} needed"


def test_second_run_switches_pointer_and_expires_the_old_version(
    redis_url: str, states: tuple[FeatureState, FeatureState, pd.DataFrame]
) -> None:
    first_state, second_state, _ = states
    settings = fresh(redis_url)
    first = materialize(first_state, settings)
    second = materialize(second_state, settings)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert second.previous == first.version, "the result must name the replaced version"
    assert client.get(f"{settings.prefix}:current") == second.version, "pointer not switched"
    old_ttl = client.ttl(f"{settings.prefix}:{first.version}:meta")
    assert 0 < old_ttl <= OLD_VERSION_TTL_S, f"old version should expire soon, TTL {old_ttl}"


def test_an_older_state_does_not_replace_a_newer_one_unless_asked(
    redis_url: str, states: tuple[FeatureState, FeatureState, pd.DataFrame]
) -> None:
    newer, _, _ = states
    assert newer.end is not None
    older = replace(newer, end=newer.end - pd.Timedelta(days=1).to_pytimedelta())
    settings = fresh(redis_url)
    live = materialize(newer, settings)
    with pytest.raises(UserError, match="allow"):
        materialize(older, settings)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.get(f"{settings.prefix}:current") == live.version, "a stale run replaced it"
    rollback = materialize(older, settings, allow_older=True)
    assert client.get(f"{settings.prefix}:current") == rollback.version, "rollback refused"


def test_interrupted_materialization_keeps_the_old_version(
    redis_url: str, states: tuple[FeatureState, FeatureState, pd.DataFrame]
) -> None:
    # Given a live version and a state whose last family is broken
    good, other, later = states
    settings = fresh(redis_url)
    live = materialize(good, settings)
    store = OnlineFeatureStore(settings)
    before = store.counts(records(later))
    broken = replace(
        other, tables={**other.tables, "card": other.tables["card"].drop(columns="us")}
    )
    # When materialization fails after writing the earlier families
    with pytest.raises(KeyError):
        materialize(broken, settings, chunk_size=50)
    # Then readers still get the old version, unchanged, and the partial keys go away
    after = store.counts(records(later))
    assert after.version == live.version, "the pointer moved after a failed run"
    assert differing(before.counts, after.counts) == [], "old version changed"
    client = redis.Redis.from_url(redis_url)
    leftovers = [
        k
        for k in client.scan_iter(match=f"{settings.prefix}:*", count=1000)
        if not k.decode().startswith(f"{settings.prefix}:{live.version}")
        and client.ttl(k) > 1
        and not k.decode().endswith(":current")
    ]
    assert leftovers == [], f"{len(leftovers)} partial keys would outlive the failure"


def test_out_of_memory_mid_way_keeps_the_old_version(
    own_redis: RedisServer, states: tuple[FeatureState, FeatureState, pd.DataFrame]
) -> None:
    good, other, later = states
    settings = fresh(own_redis.url)
    live = materialize(good, settings)
    client = redis.Redis.from_url(own_redis.url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 150_000)  # room for a part of the next version
    with pytest.raises(redis.ResponseError, match="maxmemory"):
        materialize(other, settings, chunk_size=100)
    client.config_set("maxmemory", 0)
    answer = OnlineFeatureStore(settings).counts(records(later))
    assert answer.version == live.version and not answer.degraded, "old version lost"


def test_readers_during_a_switch_see_one_whole_version(
    redis_url: str, states: tuple[FeatureState, FeatureState, pd.DataFrame]
) -> None:
    # Given the answers of each version alone
    first_state, second_state, later = states
    settings = fresh(redis_url)
    store, batch = OnlineFeatureStore(settings), records(later)
    first = materialize(first_state, settings)
    expected = {first.version: store.counts(batch).counts}
    # When a reader loops while the second version is written in small chunks
    seen, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(store.counts(batch))

    reader = threading.Thread(target=read)
    reader.start()
    second = materialize(second_state, settings, chunk_size=20)
    stop.set()
    reader.join()
    expected[second.version] = store.counts(batch).counts
    # Then every answer equals one version's answer exactly
    assert len(seen) > 2, "the reader should have read during the write"
    assert differing(expected[first.version], expected[second.version]), "states must differ"
    mixed = [a.version for a in seen if differing(expected[str(a.version)], a.counts)]
    assert mixed == [], f"{len(mixed)} answers mixed versions"


def test_cli_materializes_with_the_token_from_the_environment(
    own_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "cli-t0ken-" + uuid.uuid4().hex
    redis.Redis.from_url(own_redis.url).config_set("requirepass", token)
    monkeypatch.setenv("APPROVALS_REDIS_PASSWORD", token)
    path = tmp_path / "attempts.csv"
    random_attempts(400, seed=4).to_csv(path, index=False)
    main(["materialize", "--data", str(path), "--redis-url", own_redis.url, "--prefix", "cli"])
    client = redis.Redis.from_url(own_redis.url, password=token, decode_responses=True)
    version = client.get("cli:current")
    assert version and client.exists(f"cli:{version}:meta"), "CLI did not switch the pointer"


@pytest.mark.parametrize(
    ("drop", "url", "named"),
    [("route_id", None, "route_id"), (None, "http://127.0.0.1:1", "url")],
)
def test_cli_rejects_bad_input_with_exit_2(
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    drop: str | None,
    url: str | None,
    named: str,
) -> None:
    frame = random_attempts(50, seed=4)
    path = tmp_path / "attempts.csv"
    (frame.drop(columns=drop) if drop else frame).to_csv(path, index=False)
    with pytest.raises(SystemExit) as done:
        main(["materialize", "--data", str(path), "--redis-url", url or redis_url])
    assert done.value.code == 2, "bad input must exit with code 2"
    assert named in capsys.readouterr().err, f"the error should name {named}"


def test_cli_materializes_the_state_of_a_model_package(
    redis_url: str, package_dir: Path, package: ModelPackage
) -> None:
    # when the CLI is given the package instead of an attempts file
    main(["materialize", "--model", str(package_dir), "--redis-url", redis_url, "--prefix", "pkg"])
    # then the live version holds the package's state, up to its end
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    version = client.get("pkg:current")
    meta = client.hgetall(f"pkg:{version}:meta")
    assert package.spec.state_end is not None
    expected = epoch_us(datetime.fromisoformat(package.spec.state_end))
    assert int(meta["end_us"]) == expected, "the package's state end"
    assert int(meta["rows_card"]) == len(package.state().tables["card"]), "the package's state"


@pytest.mark.parametrize("given", [(), ("data", "model"), ("stateless",)])
def test_cli_needs_exactly_one_of_data_and_a_model_with_state(
    redis_url: str,
    package_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: tuple[str, ...],
) -> None:
    path = tmp_path / "attempts.csv"
    random_attempts(50, seed=4).to_csv(path, index=False)
    stateless = tmp_path / "registered"  # a package as the model store holds it: no state/
    shutil.copytree(package_dir, stateless, ignore=shutil.ignore_patterns("state"))
    options = {"data": ["--data", str(path)], "model": ["--model", str(package_dir)],
               "stateless": ["--model", str(stateless)]}  # fmt: skip
    args = [a for name in given for a in options[name]]
    with pytest.raises(SystemExit) as done:
        main(["materialize", *args, "--redis-url", redis_url, "--prefix", "neither"])
    assert done.value.code == 2, "a wrong choice of input must exit with code 2"
    err = capsys.readouterr().err
    named = ("state/",) if given == ("stateless",) else ("--data", "--model")
    assert all(n in err for n in named), f"the error should name {named}: {err}"
    assert redis.Redis.from_url(redis_url).get("neither:current") is None, "nothing written"
