"""``approvals outcomes publish`` and ``consume`` against a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from approvals.cli.exits import ExitCode
from approvals.cli.main import main
from approvals.contract import validate_frame
from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import build_state
from tests.approvals.factories import random_attempts
from tests.approvals.features.test_consumer import reports
from tests.approvals.features.test_online import split

pytestmark = pytest.mark.servers
SCRIPT = Path(sys.executable).with_name("approvals")


@pytest.fixture(scope="module")
def live() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = validate_frame(random_attempts(800, seed=3, days=10), labels=True)
    return split(frame, 0.7)


def lines_file(path: Path, events: list[Any]) -> Path:
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    return path


def publish(url: str, prefix: str, file: Path) -> None:
    main(["outcomes", "publish", "--redis-url", url, "--prefix", prefix, "--file", str(file)])


@pytest.mark.parametrize(
    ("line", "bad", "named"),
    [
        (3, {"card_bin": "12"}, "line 3: attempt.card_bin: "),
        (2, "not json", "line 2: outcome: not JSON"),
        (4, {"approved": "perhaps"}, "line 4: approved: "),
    ],
)
def test_publish_refuses_a_bad_line_naming_it_and_its_field(
    redis_url: str,
    tmp_path: Path,
    live: tuple[pd.DataFrame, pd.DataFrame],
    capsys: pytest.CaptureFixture[str],
    line: int,
    bad: Any,
    named: str,
) -> None:
    # Given a file whose line `line` is bad (a blank line before it still counts)
    events: list[Any] = reports(live[1].head(5))
    if isinstance(bad, str):
        events[line - 2] = bad
    elif "approved" in bad:
        events[line - 2].update(bad)
    else:
        events[line - 2]["attempt"].update(bad)
    file = lines_file(tmp_path / "outcomes.jsonl", ["", *events])
    prefix = f"t{uuid.uuid4().hex[:8]}"
    # When it is published, Then the command exits 2 naming the line and field, publishing none
    with pytest.raises(SystemExit) as done:
        publish(redis_url, prefix, file)
    assert done.value.code == ExitCode.USER_ERROR
    err = capsys.readouterr().err
    assert named in err and "(1 bad line(s))" in err, err
    assert redis.Redis.from_url(redis_url).xlen(f"{prefix}:outcomes") == 0, "nothing published"


def test_publish_then_consume_applies_every_line_and_exits_0_on_sigterm(
    redis_url: str, tmp_path: Path, live: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Given a live version and a file of 40 outcomes published to the stream
    history, later = live
    prefix = f"t{uuid.uuid4().hex[:8]}"
    materialize(build_state(history), RedisSettings(url=redis_url, prefix=prefix))
    publish(redis_url, prefix, lines_file(tmp_path / "o.jsonl", reports(later.head(40))))
    conn = redis.Redis.from_url(redis_url)
    assert conn.xlen(f"{prefix}:outcomes") == 40, "one entry per line"
    # When `approvals outcomes consume` runs
    env = {**os.environ, "APPROVALS_OUTCOMES_START_ID": "0", "APPROVALS_OUTCOMES_BLOCK_MS": "50"}
    command = [str(SCRIPT), "outcomes", "consume", "--redis-url", redis_url, "--prefix", prefix,
               "--batch", "15", "--metrics-port", "0", "--consumer", "cli"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _acknowledged(conn, prefix) < 40:
        time.sleep(0.05)
    # Then every entry is applied and acknowledged, and SIGTERM ends it with 0
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out.decode()[-3000:]
    assert _acknowledged(conn, prefix) == 40, out.decode()[-3000:]
    applied = [json.loads(line) for line in out.decode().splitlines() if "batch applied" in line]
    assert sum(line["applied"] for line in applied) == 40, "each outcome applied once"


def _acknowledged(conn: redis.Redis, prefix: str) -> int:
    groups = conn.xinfo_groups(f"{prefix}:outcomes") if conn.exists(f"{prefix}:outcomes") else []
    if not groups:
        return 0
    return int(groups[0]["entries-read"] or 0) - int(groups[0]["pending"])


def test_consume_refuses_bad_settings_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["outcomes", "consume", "--redis-url", "http://nowhere", "--metrics-port", "0"])
    assert done.value.code == ExitCode.USER_ERROR
    assert "redis:// or rediss://" in capsys.readouterr().err
