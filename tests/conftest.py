"""Shared test harness: real servers on free ports, started once per session.

- ``redis_url``: ``REDIS_URL`` when set, otherwise a throwaway ``redis-server`` on a free port.
- ``s3_endpoint``: moto's standalone server (a real HTTP S3 endpoint) on a free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from approvals.contract import validate_frame
from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.model.package import ModelPackage
from approvals.model.train import TrainConfig, TrainResult, save_result, train
from dev.local import free_port
from tests.approvals.factories import random_attempts


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on the port, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listened on {host}:{port} within {timeout}s")


class RedisServer:
    """A throwaway redis-server process that a test may stop and start again."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not on PATH: run `make test` (it installs one)")
        self.binary, self.tmp, self.port = binary, tmp, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.tmp),
            "--enable-debug-command",  # DEBUG SLEEP lets a test hold requests in flight
            "local",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis: REDIS_URL when set, otherwise a throwaway server."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server owned by one test (for tests that stop it on purpose)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server on a free port; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, timeout=60)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials so no test can ever reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


SERVING_CONFIG = TrainConfig(learning_rate=0.1, max_rounds=200, min_data_in_leaf=50, threads=2)


@pytest.fixture(scope="session")
def serving_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path]:
    """A model trained once on 12k factory attempts, and its package directory."""
    data = validate_frame(random_attempts(12_000, seed=11, days=30), labels=True)
    result = train(data, SERVING_CONFIG)
    return result, save_result(result, tmp_path_factory.mktemp("serving") / "package")


@pytest.fixture(scope="session")
def package(serving_model: tuple[TrainResult, Path]) -> ModelPackage:
    """The saved package, loaded as the service loads it."""
    return ModelPackage.load(serving_model[1])


@pytest.fixture(scope="session")
def test_rows(serving_model: tuple[TrainResult, Path]) -> pd.DataFrame:
    """Attempts after the package's feature state ends (the test split), without labels."""
    return serving_model[0].test.drop(columns=["approved", "response_code"])


@pytest.fixture(scope="session")
def features_redis(
    tmp_path_factory: pytest.TempPathFactory, package: ModelPackage
) -> Iterator[RedisServer]:
    """A redis-server holding the package's feature state (tests may stop and restart it)."""
    server = RedisServer(tmp_path_factory.mktemp("features-redis"))
    server.start()
    materialize(package.state(), RedisSettings(url=server.url))
    yield server
    server.stop()
