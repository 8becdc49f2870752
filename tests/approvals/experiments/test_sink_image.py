"""``python -m approvals.experiments.sink`` as the cluster runs it: from the serving image, which
has the ``serve`` and ``sink`` extras only (no pandas, DuckDB, typer or rich), against a real
redis-server and moto's S3, settings from flags and ``APPROVALS_REDIS_*``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
import redis

from tests.approvals.experiments.test_sink import HOUR, attempts, decision, outcome, publish
from tests.approvals.features.test_preload import blocker

pytestmark = pytest.mark.servers
# What the image lacks: training and CLI libraries (pyarrow and boto3 are the sink extra).
NOT_IN_IMAGE = ("pandas", "duckdb", "typer", "rich")


def run_sink(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The module entry point in a subprocess that cannot import :data:`NOT_IN_IMAGE`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("APPROVALS_")}
    program = blocker(NOT_IN_IMAGE) + (
        'runpy.run_module("approvals.experiments.sink", run_name="__main__")'
    )
    return subprocess.run(
        [sys.executable, "-c", program, *args], env={**base, **env},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_help_needs_no_cli_library() -> None:
    done = run_sink("--help")
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout and "--flush-seconds" in done.stdout, "the command's flags"


def test_once_writes_the_stream_to_s3_without_the_training_libraries(
    redis_url: str, s3_endpoint: str, bucket: str, s3_client: Any
) -> None:
    # Given decisions of two hours and an outcome on a fresh prefix
    prefix = f"img{os.getpid()}"
    conn = redis.Redis.from_url(redis_url)
    rows = [attempts(4).iloc[i] for i in range(4)]
    publish(conn, prefix, [decision(r, HOUR + timedelta(minutes=20 * i))
                           for i, r in enumerate(rows)])  # fmt: skip
    publish(conn, prefix, [outcome(rows[0], HOUR + timedelta(hours=1), True, "00")])
    # When the image's entry point drains it to s3://bucket/decisions, Redis from the env
    done = run_sink(
        "--out", f"s3://{bucket}/decisions", "--once", "--metrics-port", "0",
        APPROVALS_REDIS_URL=redis_url, APPROVALS_REDIS_PREFIX=prefix,
        AWS_ENDPOINT_URL=s3_endpoint,
    )  # fmt: skip
    # Then it exits 0, saying what it wrote, and the objects follow the layout under decisions/
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("5 entries: 5 rows in 3 files")
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="decisions/")["Contents"]
    folders = sorted(o["Key"].rsplit("/", 1)[0] for o in listed)
    assert folders == [
        "decisions/decisions/date=2026-01-01/hour=18",
        "decisions/decisions/date=2026-01-01/hour=19",
        "decisions/outcomes/date=2026-01-01/hour=19",
    ], folders
    assert int(conn.xpending(f"{prefix}:decisions", "sink")["pending"]) == 0, "all acknowledged"
    conn.close()


def test_a_bad_setting_exits_2_naming_the_flag() -> None:
    done = run_sink("--out", "/tmp/never", "--flush-seconds", "0")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --flush-seconds:"), done.stderr


def test_an_unreachable_redis_with_once_exits_2_naming_it(tmp_path: Any) -> None:
    done = run_sink(
        "--out", str(tmp_path / "out"), "--once", "--metrics-port", "0",
        APPROVALS_REDIS_URL="redis://127.0.0.1:1/0", APPROVALS_REDIS_CONNECT_TIMEOUT_MS="200",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: Redis at redis://127.0.0.1:1/0" in done.stderr, done.stderr[-2000:]
