"""``approvals decisions sink`` against a real redis-server (and moto's S3), and its reader.

Entries are produced as the service writes them (docs/decisions.md): ``XADD`` of ``kind`` and
``data`` to ``{prefix}:decisions``. In-process tests run the sink with ``once`` (one runs it in
a thread until stopped, its bucket missing at first); the crash test runs the command in a
subprocess, denied ``XACK`` by a Redis ACL, scrapes its metrics and kills it (SIGKILL).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from approvals.cli.exits import ExitCode
from approvals.cli.main import main
from approvals.contract import FEATURE_COLUMNS, validate_frame
from approvals.errors import UserError
from approvals.experiments.log import read_log, validate_log
from approvals.experiments.sink import DecisionSink, SinkSettings, SinkTotals, serve
from approvals.experiments.sink_files import LocalDestination, S3Destination, open_destination
from approvals.experiments.sink_reader import is_sink_layout, read_sink
from approvals.features.redis_settings import RedisSettings
from dev.processes import free_port, port_open
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts

pytestmark = pytest.mark.servers
NAMES = ("bin_rate", "route_rate", "amount_ratio")
HOUR = datetime(2026, 1, 1, 18, 0, tzinfo=UTC)
SECRET = "sink-t0ken-never-logged-9e2a"  # a test value, not a credential
Fields = dict[str, str]


def iso(moment: Any) -> str:
    """An ISO 8601 UTC time with ``Z``, as the service writes it."""
    return pd.Timestamp(moment).tz_localize(None).isoformat() + "Z"


def attempts(n: int, seed: int = 0) -> pd.DataFrame:
    return validate_frame(random_attempts(n, seed=seed, days=2), labels=True)


def attempt_json(row: pd.Series) -> dict[str, Any]:
    """One attempt as the HTTP API takes it."""
    out = {name: row[name] for name in FEATURE_COLUMNS if name in row}
    out["event_time"] = iso(row["event_time"])
    return json.loads(json.dumps(out, default=lambda v: v.item()))


def decision(
    row: pd.Series, at: datetime, *, endpoint: str = "score", variant: str = "champion",
    p: float | None = 0.9, version: str = "v1", features: Sequence[float | None] = (),
    retry: dict[str, Any] | None = None, shadow: bool = False, **attempt: Any,
) -> Fields:  # fmt: skip
    data = {"endpoint": endpoint, "variant": variant, "model_version": version,
            "decided_at": iso(at), "degraded": False, "p_approve": p,
            "attempt": {**attempt_json(row), **attempt}, "retry": retry, "shadow": shadow,
            "features": list(features)}  # fmt: skip
    return {"kind": "decision", "data": json.dumps(data)}


def outcome(row: pd.Series, at: datetime, approved: bool, code: str) -> Fields:
    data = {"attempt_id": row["attempt_id"], "payment_id": row["payment_id"],
            "approved": bool(approved), "response_code": code, "merchant_advice_code": None,
            "reported_at": iso(at)}  # fmt: skip
    return {"kind": "outcome", "data": json.dumps(data)}


def vector(i: int) -> list[float | None]:
    return [0.1 * i, None if i % 3 == 0 else float(i), 1.0 + i]


def publish(conn: redis.Redis, prefix: str, entries: Sequence[Fields]) -> list[str]:
    """XADD every entry; their stream ids."""
    pipe = conn.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(f"{prefix}:decisions", fields)  # type: ignore[arg-type]
    return [i.decode() for i in pipe.execute()]


def pending(conn: redis.Redis, prefix: str) -> int:
    return int(conn.xpending(f"{prefix}:decisions", "sink")["pending"])


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.hset(f"{prefix}:decisions:features", "v1", json.dumps(NAMES))
    yield client
    client.close()


def sink_once(url: str, prefix: str, out: str | Path, **settings: Any) -> SinkTotals:
    store = RedisSettings(url=url, prefix=prefix, timeout_ms=5000)
    settings = {"metrics_port": 0, **settings}
    return serve(SinkSettings(**settings), store, open_destination(str(out)), once=True)


def partitions(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


# --- layout, types, features, outcomes ------------------------------------------------------


def test_entries_of_two_hours_land_in_two_partitions_and_read_back_equal(
    redis_url: str, prefix: str, conn: redis.Redis, tmp_path: Path
) -> None:
    # Given 30 decisions over two UTC hours, a retry advice, and two vectors without names
    frame = attempts(33)
    times = [HOUR + timedelta(minutes=10, seconds=i) for i in range(15)]
    times += [HOUR + timedelta(hours=1, minutes=5, seconds=i) for i in range(15)]
    entries = [decision(frame.iloc[i], t, p=i / 40, features=vector(i))
               for i, t in enumerate(times)]  # fmt: skip
    advice = {"action": "retry_later", "reason": "soft", "route_id": "r_eu", "delay_hours": 2.0}
    entries += [
        decision(frame.iloc[30], times[-1], endpoint="advise_retry", p=None, retry=advice),
        decision(frame.iloc[31], times[-1], version="v9", features=[1.0]),  # names unknown
        decision(frame.iloc[32], times[-1], features=[1.0, 2.0]),  # length differs
    ]
    ids = publish(conn, prefix, entries)
    # When the sink drains the stream
    totals = sink_once(redis_url, prefix, tmp_path)
    # Then one file per hour, named by the hour's first stream id, everything acknowledged
    assert partitions(tmp_path) == [
        f"decisions/date=2026-01-01/hour=18/part-{ids[0]}.parquet",
        f"decisions/date=2026-01-01/hour=19/part-{ids[15]}.parquet",
    ], "hive partitions by decided_at"
    assert (totals.rows, totals.files, totals.bad, totals.unnamed_features) == (33, 2, 0, 2)
    assert pending(conn, prefix) == 0, "acknowledged after the write"
    schema = pq.read_schema(tmp_path / partitions(tmp_path)[1])
    expected = {"event_time": pa.timestamp("us", tz="UTC"), "amount": pa.float64(),
                "attempt_number": pa.int64(), "network_token": pa.bool_(),
                "p_approve": pa.float64(), "decided_at": pa.timestamp("us", tz="UTC"),
                "degraded": pa.bool_(), "retry_delay_hours": pa.float64(),
                "entry_id": pa.string(), "feature_route_rate": pa.float64()}  # fmt: skip
    assert {k: schema.field(k).type for k in expected} == expected, "the columns' types"
    assert "approved" not in schema.names and "response_code" not in schema.names
    advice_row = pq.read_table(tmp_path / partitions(tmp_path)[1]).to_pandas().iloc[15]
    assert advice_row["retry_action"] == "retry_later" and advice_row["retry_delay_hours"] == 2
    # and the reader gives back the sending decisions, values and features equal
    log = read_sink(tmp_path)
    assert log["attempt_id"].tolist() == frame["attempt_id"].iloc[[*range(30), 31, 32]].tolist()
    sent = frame.drop(columns=["approved", "response_code"]).iloc[[*range(30), 31, 32]]
    pd.testing.assert_frame_equal(
        validate_log(log)[list(sent.columns)], sent.reset_index(drop=True), check_dtype=False
    )
    features = log[[f"feature_{n}" for n in NAMES]].to_numpy()
    np.testing.assert_array_equal(features[:30], np.array(vector_rows(30), dtype=float))
    assert np.isnan(features[30:]).all(), "vectors without names have no feature values"
    assert log["p_approve"].tolist()[:30] == [i / 40 for i in range(30)]
    assert log["approved"].isna().all() and log["response_code"].isna().all(), "no outcome yet"


def vector_rows(n: int) -> list[list[float]]:
    return [[np.nan if v is None else v for v in vector(i)] for i in range(n)]


def test_outcomes_join_by_attempt_latest_wins_and_missing_ones_are_null(
    redis_url: str, prefix: str, conn: redis.Redis, tmp_path: Path
) -> None:
    # Given a0 scored then ranked, a1 declined then approved (stream order reversed), a2 one
    # outcome, a3-a5 none, and an outcome of an attempt never decided
    frame = attempts(7)
    rows = [frame.iloc[i] for i in range(7)]
    publish(conn, prefix, [
        decision(rows[0], HOUR, p=0.2),
        decision(rows[0], HOUR + timedelta(seconds=10), endpoint="rank_routes", p=0.7,
                 route_id="r_best"),
        *(decision(rows[i], HOUR + timedelta(seconds=i)) for i in range(1, 6)),
        outcome(rows[1], HOUR + timedelta(minutes=3), True, "00"),
        outcome(rows[1], HOUR + timedelta(minutes=1), False, "05"),
        outcome(rows[2], HOUR + timedelta(hours=1), False, "51"),
        outcome(rows[6], HOUR, True, "00"),
    ])  # fmt: skip
    sink_once(redis_url, prefix, tmp_path)
    # When the layout is read (one decision file copied, as a sink killed before its ack
    # would have written it twice under another name)
    first = tmp_path / partitions(tmp_path)[0]
    shutil.copy(first, first.with_name("part-0-0.parquet"))
    log = validate_log(read_sink(tmp_path))
    # Then one row per attempt, its latest decision, and its latest outcome
    assert len(partitions(tmp_path)) == 4, "2 decision files and the outcomes of 2 hours"
    assert log["attempt_id"].tolist() == [f"a{i}" for i in range(1, 6)] + ["a0"]
    by_id = log.set_index("attempt_id")
    assert by_id.loc["a0", "route_id"] == "r_best" and by_id.loc["a0", "p_approve"] == 0.7
    assert by_id.loc["a0", "endpoint"] == "rank_routes", "the latest decided_at wins"
    assert by_id.loc["a1", "approved"] and by_id.loc["a1", "response_code"] == "00"
    assert not by_id.loc["a2", "approved"] and by_id.loc["a2", "response_code"] == "51"
    assert by_id.loc[["a3", "a4", "a5", "a0"], "approved"].isna().all(), "no outcome: null"
    assert by_id.loc[["a3", "a4", "a5", "a0"], "response_code"].isna().all()
    assert log["entry_id"].is_unique, "the copied file's entries counted once"


def test_shadow_answers_are_left_out_and_retry_advice_joins_its_attempt(
    redis_url: str, prefix: str, conn: redis.Redis, tmp_path: Path
) -> None:
    # Given two scored attempts, the challenger's shadow answer to each (later), and retry
    # advice for a0 twice (the later one wins) and for an attempt never scored
    frame = attempts(5)
    rows = [frame.iloc[i] for i in range(3)]
    first = {"action": "retry_later", "reason": "soft", "route_id": "r_eu", "delay_hours": 6.0}
    last = {"action": "retry_now", "reason": "route", "route_id": "r_gb", "delay_hours": None}
    publish(conn, prefix, [
        decision(rows[0], HOUR, p=0.4), decision(rows[1], HOUR, p=0.6),
        *(decision(r, HOUR + timedelta(seconds=5), variant="challenger", p=0.99, shadow=True)
          for r in rows[:2]),
        decision(rows[0], HOUR + timedelta(minutes=1), endpoint="advise_retry", retry=first),
        decision(rows[0], HOUR + timedelta(minutes=2), endpoint="advise_retry", retry=last),
        decision(rows[2], HOUR, endpoint="advise_retry", retry=first),
    ])  # fmt: skip
    # When the sink drains the stream and the layout is read
    sink_once(redis_url, prefix, tmp_path)
    log = validate_log(read_sink(tmp_path)).set_index("attempt_id")
    # Then one row per scored attempt, the champion's answer, and a0's latest advice
    assert log.index.tolist() == ["a0", "a1"], "no shadow row, no row for advice alone"
    assert log["p_approve"].tolist() == [0.4, 0.6] and set(log["variant"]) == {"champion"}
    assert (log.loc["a0", "retry_action"], log.loc["a0", "retry_route_id"]) == ("retry_now", "r_gb")
    assert np.isnan(log.loc["a0", "retry_delay_hours"]) and log.loc["a1", "retry_action"] is None
    assert "shadow" not in log.columns and log["endpoint"].eq("score").all()
    # and a file that is not Parquet is named, not skipped
    (tmp_path / "outcomes" / "part-x.parquet").parent.mkdir(exist_ok=True)
    (tmp_path / "outcomes" / "part-x.parquet").write_text("not parquet")
    with pytest.raises(UserError, match=r"part-x\.parquet: not a readable Parquet file"):
        read_sink(tmp_path)


def test_bad_entries_are_counted_dead_lettered_and_skipped(
    redis_url: str, prefix: str, conn: redis.Redis, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Given good decisions among entries that are not JSON, miss a field, or disagree
    frame = attempts(5)
    good = [decision(frame.iloc[i], HOUR) for i in range(5)]
    bare = json.loads(good[0]["data"])
    del bare["decided_at"]
    bad: list[Fields] = [
        {"kind": "decision", "data": "{not json " + SECRET},
        {"kind": "decision", "data": json.dumps({**bare, "variant": SECRET})},
        {"kind": "mystery", "data": "{}"},
        {"kind": "decision"},
        outcome(frame.iloc[0], HOUR, True, "05"),  # a decline code said approved
    ]
    ids = publish(conn, prefix, [*good[:2], *bad, *good[2:]])
    # When the sink drains the stream
    with caplog.at_level(logging.INFO, logger="approvals.experiments.sink"):
        totals = sink_once(redis_url, prefix, tmp_path)
    # Then the good ones are written, the bad ones counted, copied and acknowledged
    assert (totals.rows, totals.bad, totals.entries) == (5, 5, 10)
    assert read_sink(tmp_path)["attempt_id"].tolist() == [f"a{i}" for i in range(5)]
    dead = conn.xrange(f"{prefix}:decisions:dead")
    assert [f[b"source_id"].decode() for _, f in dead] == ids[2:7], "each bad entry copied"
    errors = [f[b"error"].decode() for _, f in dead]
    assert errors[0] == "data: not JSON" and errors[1].startswith("decided_at:"), errors
    assert errors[2].startswith("kind:") and errors[3] == "data: missing field", errors
    assert errors[4] == "response_code: disagrees with 'approved'"
    assert pending(conn, prefix) == 0, "bad entries acknowledged too"
    assert all(i in caplog.text for i in ids[2:7]) and "flushed rows=5" in caplog.text
    assert SECRET not in caplog.text, "never the payload"


def test_a_restarted_sink_reads_its_own_pending_entries_again(
    redis_url: str, prefix: str, conn: redis.Redis, tmp_path: Path
) -> None:
    # Given a sink that read entries and stopped before it flushed (a crash)
    frame = attempts(40)
    publish(conn, prefix, [decision(frame.iloc[i], HOUR) for i in range(40)])
    store = RedisSettings(url=redis_url, prefix=prefix, timeout_ms=5000)
    crashed = DecisionSink(SinkSettings(consumer="one", batch=25), store,
                           open_destination(str(tmp_path)))  # fmt: skip
    crashed.ensure_group()
    assert crashed.poll(block=None) == 25
    crashed.conn.close()
    assert pending(conn, prefix) == 25 and not partitions(tmp_path)
    gone = conn.xrange(f"{prefix}:decisions", count=1)[0][0]
    conn.xdel(f"{prefix}:decisions", gone)  # trimmed away while pending
    # When it starts again under its name, with a flush every 10 entries
    totals = sink_once(redis_url, prefix, tmp_path, consumer="one", batch=25, max_rows=10)
    # Then its own pending entries are written, and the rest, each once
    assert (totals.rows, totals.bad, pending(conn, prefix)) == (39, 1, 0)
    assert totals.flushes == 2, "a flush as soon as a read brings max_rows: 25, then 15"
    assert sorted(read_sink(tmp_path)["attempt_id"]) == sorted(frame["attempt_id"].iloc[1:])
    [(_, dead)] = conn.xrange(f"{prefix}:decisions:dead")
    assert dead == {b"error": b"entry: deleted from the stream before it was written",
                    b"source_id": gone}, "the deleted entry is dead-lettered, by id"  # fmt: skip


# --- the command: SIGKILL before the ack, S3, exit codes ------------------------------------


def command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from approvals.cli.main import main; main()", *args]


SINK = "approvals_decisions_sink"


def scrape(port: int) -> dict[str, float]:
    """The samples of a sink's /metrics, by name with labels as exposed."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, value in lines}


def probe(port: int, path: str) -> int:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := check():
            return answer
        time.sleep(0.05)
    pytest.fail(f"not within {timeout:.0f}s: {what}")


def test_a_sink_killed_after_writing_before_acking_is_restarted_and_counts_each_once(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    # Given a sink whose Redis user may read but not XACK: it writes its files, then retries
    # the acknowledgement, and is killed (SIGKILL) holding every entry
    conn = redis.Redis.from_url(own_redis.url)
    conn.execute_command("ACL", "SETUSER", "noack", "on", f">{SECRET}", "~*", "&*", "+@all",
                         "-xack")  # fmt: skip
    frame = attempts(60)
    rows = [frame.iloc[i] for i in range(60)]
    decided = [decision(r, HOUR + timedelta(minutes=2 * i)) for i, r in enumerate(rows)]
    publish(conn, "live", decided)
    publish(conn, "live", [outcome(r, HOUR + timedelta(minutes=90), True, "00") for r in rows[:20]])
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVALS_")}
    out, log = tmp_path / "out", tmp_path / "sink.log"
    url, port = own_redis.url.replace("redis://", "redis://noack@"), free_port()
    args = ("decisions", "sink", "--prefix", "live", "--out", str(out), "--consumer", "c1")
    with log.open("ab") as sink_log:
        first = subprocess.Popen(
            command(*args, "--redis-url", url, "--flush-seconds", "0.2", "--metrics-port",
                    str(port)),
            env={**env, "APPROVALS_REDIS_PASSWORD": SECRET}, stdout=sink_log, stderr=sink_log,
        )  # fmt: skip
    try:
        eventually(lambda: "acknowledge failed" in log.read_text(), "the XACK refused")
        assert len(partitions(out)) == 3, "files written: decisions of 2 hours, outcomes"
        assert pending(conn, "live") == 80, "written, not acknowledged"
        # and its metrics say so: nothing counted as written, 80 pending, not ready
        metrics = eventually(lambda: (m := scrape(port))[f"{SINK}_pending_entries"] == 80 and m,
                             "the lag measured after the failure")  # fmt: skip
        assert metrics[f'{SINK}_failures_total{{reason="redis"}}'] >= 1
        assert metrics[f'{SINK}_rows_total{{kind="decisions"}}'] == 0, "counted once acked"
        assert metrics[f"{SINK}_buffered_entries"] == 80 and metrics[f"{SINK}_lag_seconds"] > 0
        assert metrics[f"{SINK}_lag_entries"] == 0, "every entry delivered"
        assert probe(port, "/livez") == 200 and probe(port, "/readyz") == 503
    finally:
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    # When another sink (another name: a new pod) starts once, taking over idle entries
    time.sleep(0.3)
    late = [outcome(r, HOUR + timedelta(minutes=95), False, "05") for r in rows[20:25]]
    publish(conn, "live", late)
    again = subprocess.run(
        command(*args[:-1], "c2", "--redis-url", own_redis.url, "--once", "--flush-seconds",
                "0.05", "--claim-idle-ms", "200", "--metrics-port", "0"),
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # Then it exits 0, everything is acknowledged, the first files are kept beside the new
    # ones, and each decision is in the log once
    assert again.returncode == 0, again.stderr[-3000:]
    assert "85 entries: 85 rows" in again.stdout and pending(conn, "live") == 0
    again_names = [p for p in partitions(out) if p.endswith(".1.parquet")]
    assert len(again_names) == 3, f"written again under new names: {partitions(out)}"
    read = validate_log(read_sink(out))
    assert sorted(read["attempt_id"]) == sorted(frame["attempt_id"]), "each decision once"
    assert int(read["approved"].sum()) == 20 and int((~read["approved"]).sum()) == 5
    assert SECRET not in log.read_text() + again.stderr, "the token is never logged"


def test_sigterm_flushes_what_the_sink_holds_acknowledges_it_and_exits_0(
    redis_url: str, prefix: str, conn: redis.Redis, tmp_path: Path
) -> None:
    # Given a running sink holding entries it would flush only in a minute
    frame = attempts(10)
    publish(conn, prefix, [decision(frame.iloc[i], HOUR) for i in range(10)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVALS_")}
    port = free_port()
    sink = subprocess.Popen(
        command("decisions", "sink", "--redis-url", redis_url, "--prefix", prefix, "--out",
                str(tmp_path), "--metrics-port", str(port)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        eventually(lambda: port_open(port) and scrape(port)[f"{SINK}_buffered_entries"] == 10,
                   "the entries buffered")  # fmt: skip
        assert not partitions(tmp_path) and pending(conn, prefix) == 10
        # When it is told to stop (a rollout)
        sink.send_signal(signal.SIGTERM)
        out, err = sink.communicate(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
    # Then it writes and acknowledges them before it exits 0
    assert sink.returncode == 0, err[-3000:]
    assert "10 entries: 10 rows in 1 files" in out and pending(conn, prefix) == 0
    assert sorted(read_sink(tmp_path)["attempt_id"]) == sorted(frame["attempt_id"])


def test_s3_output_through_the_command_and_read_back_from_s3(
    redis_url: str, prefix: str, conn: redis.Redis, s3_endpoint: str, bucket: str,
    s3_client: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Given decisions of two hours and outcomes, and AWS_ENDPOINT_URL pointing at moto
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    frame = attempts(20)
    rows = [frame.iloc[i] for i in range(20)]
    publish(conn, prefix, [decision(r, HOUR + timedelta(minutes=6 * i), features=vector(i))
                           for i, r in enumerate(rows)])  # fmt: skip
    publish(conn, prefix, [outcome(r, HOUR + timedelta(hours=3), r["approved"],
                                   r["response_code"]) for r in rows[:10]])  # fmt: skip
    # When `approvals decisions sink --once` writes to s3://bucket/logs
    main(["decisions", "sink", "--redis-url", redis_url, "--prefix", prefix,
          "--out", f"s3://{bucket}/logs/", "--once", "--metrics-port", "0"])  # fmt: skip
    # Then the objects follow the layout, and read_sink reads them back from S3
    listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    keys = sorted(o["Key"].rsplit("/", 1)[0] for o in listed)
    assert keys == [
        "logs/decisions/date=2026-01-01/hour=18",
        "logs/decisions/date=2026-01-01/hour=19",
        "logs/outcomes/date=2026-01-01/hour=21",
    ], keys
    assert "20 entries" not in capsys.readouterr().err and is_sink_layout(f"s3://{bucket}/logs")
    assert not is_sink_layout(f"s3://{bucket}/elsewhere")
    log = validate_log(read_sink(f"s3://{bucket}/logs"))
    assert log["attempt_id"].tolist() == frame["attempt_id"].tolist()
    assert log["approved"].iloc[:10].tolist() == frame["approved"].iloc[:10].tolist()
    assert log["approved"].iloc[10:].isna().all()
    np.testing.assert_array_equal(log[[f"feature_{n}" for n in NAMES]], vector_rows(20))


def test_a_failed_write_acknowledges_nothing_and_is_retried_until_it_succeeds(
    redis_url: str, prefix: str, conn: redis.Redis, s3_endpoint: str, s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given a running sink whose bucket does not exist yet
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    frame = attempts(10)
    publish(conn, prefix, [decision(frame.iloc[i], HOUR) for i in range(10)])
    name = f"later-{uuid.uuid4().hex[:12]}"
    store = RedisSettings(url=redis_url, prefix=prefix, timeout_ms=5000)
    settings = SinkSettings(flush_seconds=0.05, claim_idle_ms=1000, block_ms=50,
                            retry_min_s=0.05, retry_max_s=0.2, metrics_port=0)  # fmt: skip
    sink = DecisionSink(settings, store, S3Destination(name, "logs", s3_client))
    worker = threading.Thread(target=sink.run)
    worker.start()
    try:
        failures = {"reason": "write"}
        eventually(lambda: (sink.metrics.registry.get_sample_value(
            f"{SINK}_failures_total", failures) or 0) >= 2, "failed writes retried")  # fmt: skip
        # Then nothing is acknowledged while the write fails
        assert pending(conn, prefix) == 10 and sink.metrics.totals.rows == 0
        # When the bucket appears, the same buffer is written and acknowledged
        s3_client.create_bucket(Bucket=name)
        eventually(lambda: pending(conn, prefix) == 0, "the buffer written once S3 answers")
    finally:
        sink.stop.set()
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert sorted(read_sink(f"s3://{name}/logs")["attempt_id"]) == sorted(frame["attempt_id"])


def test_a_failed_write_with_once_exits_2_and_leaves_every_entry_pending(
    redis_url: str, prefix: str, conn: redis.Redis, s3_endpoint: str, bucket: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Given entries, and an output bucket that does not exist
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    frame = attempts(5)
    publish(conn, prefix, [decision(frame.iloc[i], HOUR) for i in range(5)])
    args = ["decisions", "sink", "--redis-url", redis_url, "--prefix", prefix, "--once",
            "--metrics-port", "0", "--consumer", "c1"]  # fmt: skip
    # When the sink runs once
    with pytest.raises(SystemExit) as done:
        main([*args, "--out", "s3://no-such-bucket-for-the-sink/logs"])
    # Then it exits 2 naming the output, and nothing is acknowledged
    err = capsys.readouterr().err
    assert done.value.code == ExitCode.USER_ERROR and "--out s3://no-such-bucket" in err, err
    assert "NoSuchBucket" in err and pending(conn, prefix) == 5, "all delivered again later"
    # and the next run (same name) writes them all
    main([*args, "--out", f"s3://{bucket}/logs"])
    assert "5 entries: 5 rows" in capsys.readouterr().out and pending(conn, prefix) == 0


def test_a_destination_never_replaces_a_file_of_the_same_name(
    tmp_path: Path, s3_client: Any, bucket: str, s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given two different tables for one key (a slow sink and the one that took over from it)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    key = "decisions/date=2026-01-01/hour=18/part-1-0.parquet"
    tables = [pa.table({"entry_id": ["1-0", "2-0"]}), pa.table({"entry_id": ["1-0"]})]
    for destination, read in [
        (LocalDestination(tmp_path), lambda name: pq.read_table(tmp_path / name)),
        (S3Destination(bucket, "p", s3_client), lambda name: pq.read_table(io.BytesIO(
            s3_client.get_object(Bucket=bucket, Key=f"p/{name}")["Body"].read()))),
    ]:  # fmt: skip
        # When both are written
        names = [destination.write(key, table) for table in tables]
        # Then the second goes beside the first, and both are whole
        assert names == [key, key.replace(".parquet", ".1.parquet")], (destination, names)
        assert [read(n) for n in names] == tables, destination
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "no temporary left"


def test_bad_options_exit_2_naming_the_option(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    base = ["--redis-url", redis_url, "--out", str(tmp_path)]
    cases = {
        "--redis-url": ["--redis-url", "http://127.0.0.1:1", "--out", str(tmp_path)],
        "--out": ["--redis-url", redis_url, "--out", str(tmp_path / "file")],
        "--claim-idle-ms": [*base, "--flush-seconds", "1", "--claim-idle-ms", "1000"],
        "--metrics-port": [*base, "--metrics-port", "70000"],
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        used = [*base, "--metrics-port", str(taken.getsockname()[1])]
        for option, args in [*cases.items(), ("metrics port", used)]:
            with pytest.raises(SystemExit) as done:
                main(["decisions", "sink", *args, "--once"])
            err = capsys.readouterr().err
            assert done.value.code == ExitCode.USER_ERROR, (option, err)
            assert option in err and len(err.strip().splitlines()) == 1, err


# --- the log it gives: validated, and an experiment report runs on it -----------------------


def test_the_log_read_back_validates_and_an_experiment_report_runs_on_it(
    redis_url: str, prefix: str, conn: redis.Redis, tmp_path: Path
) -> None:
    # Given 400 decisions in two arms, 360 of them with outcomes
    frame = attempts(400, seed=3)
    rows = [frame.iloc[i] for i in range(400)]
    arms = ["champion", "challenger"]
    publish(conn, prefix, [
        decision(r, HOUR + timedelta(seconds=20 * i), variant=arms[i % 2], p=0.8)
        for i, r in enumerate(rows)
    ])  # fmt: skip
    publish(conn, prefix, [
        outcome(r, HOUR + timedelta(hours=3), r["approved"], r["response_code"])
        for r in rows[:360]
    ])  # fmt: skip
    # When the sink drains it and `approvals experiment report --log` reads its output
    out = tmp_path / "sink"
    sink_once(redis_url, prefix, out)
    main(["experiment", "report", "--log", str(out), "--out", str(tmp_path / "report")])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # Then the report measures both arms on the labelled attempts
    assert set(report["arms"]) == set(arms)
    assert sum(a["unlabelled_attempts"] for a in report["arms"].values()) == 40
    assert report["uplift"] and report["uplift"][0]["versus"] == "champion"
    assert read_log(out).equals(validate_log(read_sink(out))), "read_log reads the layout"
