"""The local stack of ``dev/``: Redis given or throwaway, readiness, early exits, clean stops.

Most tests run stand-in processes (a few milliseconds each); one starts the real service.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis

from approvals.model.package import ModelPackage
from approvals.model.train import TrainResult
from dev.local import foreground_stack
from dev.processes import StackError, free_port, port_open
from dev.redis_server import RedisServer
from dev.requests import attempt_json
from dev.stack import LocalStack, Service

pytestmark = pytest.mark.servers


def stand_in(code: str, log: Path) -> Service:
    """A Python process in its own group, its output in ``log``, posing as the service."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Service(proc, f"http://127.0.0.1:{free_port()}", "127.0.0.1:1", log)


def test_a_given_redis_url_is_used_and_left_running(own_redis: RedisServer, tmp_path: Path) -> None:
    # given a Redis that the stack does not own
    stack = LocalStack(tmp_path, redis_url=own_redis.url)
    # when the stack starts its Redis and stops
    url = stack.start_redis()
    stack.stop()
    # then it used that Redis, started none of its own, and left it running
    assert url == own_redis.url, "the given URL is the stack's Redis"
    assert stack.redis is None, "no throwaway redis-server was started"
    assert redis.Redis.from_url(own_redis.url).ping(), "the given Redis still answers"


def test_make_serve_honours_REDIS_URL_and_MODEL_DIR(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given REDIS_URL, MODEL_DIR and ports in the environment
    for name, value in {"REDIS_URL": "redis://127.0.0.1:1/0", "MODEL_DIR": str(tmp_path / "model"),
                        "HTTP_PORT": "3100", "GRPC_PORT": "50100"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    # when make serve's stack is made from them
    stack = foreground_stack(tmp_path)
    # then it serves that model from that Redis, untouched, on those ports
    assert stack.redis_url == "redis://127.0.0.1:1/0", "REDIS_URL is the stack's Redis"
    assert stack.state is None, "an existing Redis is not materialized into"
    assert stack.model_dir == tmp_path / "model", "MODEL_DIR is the served model"
    assert (stack.http_port, stack.grpc_port) == (3100, 50100), "HTTP_PORT and GRPC_PORT"


def test_a_throwaway_redis_stops_and_starts_again_on_its_port(tmp_path: Path) -> None:
    # given a stack with its own Redis
    stack = LocalStack(tmp_path)
    url = stack.start_redis()
    assert stack.redis is not None and redis.Redis.from_url(url).ping(), "Redis answers"
    # when Redis is stopped, then started again
    stack.stop_redis()
    stopped = port_open(stack.redis.port)
    restarted = stack.start_redis()
    # then it was down in between and comes back at the same URL; stop() ends it
    assert not stopped, "nothing listens while Redis is stopped"
    assert restarted == url and redis.Redis.from_url(url).ping(), "same URL, answering again"
    stack.stop()
    assert not port_open(stack.redis.port), "stop() stops the throwaway Redis"


def test_a_server_that_exits_early_fails_with_the_end_of_its_log(tmp_path: Path) -> None:
    # given a server that writes an error and exits before it is ready
    service = stand_in(
        "print('cannot load the model package'); raise SystemExit(3)", tmp_path / "log"
    )
    # when the stack waits for it to be ready
    with pytest.raises(StackError) as failure:
        service.wait_ready(timeout=30)
    # then it fails at once, with the exit code and the end of the server's log
    assert "exited early (3)" in str(failure.value), "the exit code is reported"
    assert "cannot load the model package" in str(failure.value), "the log's end is shown"


def test_a_server_never_ready_is_killed_after_the_timeout(tmp_path: Path) -> None:
    # given a server that never answers /readyz
    service = stand_in(
        "import time; print('warming up', flush=True); time.sleep(60)", tmp_path / "log"
    )
    # when the stack waits one second for it
    with pytest.raises(StackError) as failure:
        service.wait_ready(timeout=1)
    # then it fails with the log's end, and the server is gone
    assert "not ready within 1s" in str(failure.value) and "warming up" in str(failure.value)
    assert service.proc.poll() is not None, "the server was killed"


def test_stop_returns_the_exit_code_and_kills_a_server_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    # given a server that exits 0 on SIGTERM, and one that ignores SIGTERM
    graceful = stand_in(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\nprint('up', flush=True)\n"
        "time.sleep(60)", tmp_path / "graceful.log",
    )  # fmt: skip
    stubborn = stand_in(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(60)", tmp_path / "stubborn.log",
    )  # fmt: skip
    for service in (graceful, stubborn):  # their SIGTERM handlers are in place
        for _ in range(200):
            if service.log is not None and "up" in service.log.read_text():
                break
            time.sleep(0.05)
    # when both are stopped
    codes = graceful.stop(), stubborn.stop(timeout=0.5)
    # then the first reports its own exit code, the second is killed; stopping again is harmless
    assert codes == (0, -signal.SIGKILL), f"exit codes {codes}"
    assert graceful.stop() == 0, "a stopped server only reports its exit code"


@pytest.mark.slow
def test_the_whole_stack_serves_features_and_stops_cleanly(
    tmp_path: Path, serving_model: tuple[TrainResult, Path], package: ModelPackage,
    test_rows: pd.DataFrame,
) -> None:  # fmt: skip
    # given a stack with its own Redis holding the package's features, serving the package
    stack = LocalStack(tmp_path, model_dir=serving_model[1], state=package.state(),
                       log=tmp_path / "serve.log")  # fmt: skip
    with stack:
        # when it is asked for a score
        body = {"attempt": attempt_json(test_rows.iloc[0])}
        answer = httpx.post(f"{stack.service.http}/score", json=body, timeout=30)
        assert stack.redis is not None, "a throwaway Redis was started"
        port = stack.redis.port
    # then the features came from Redis, and leaving stopped the service cleanly and Redis too
    assert answer.status_code == 200 and answer.json()["degraded"] is False, answer.text
    assert stack.service.proc.returncode == 0, "the service exited cleanly on SIGTERM"
    assert not port_open(port), "the throwaway Redis is stopped"
