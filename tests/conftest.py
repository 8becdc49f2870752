"""Shared test harness: real servers on free ports, started once per session.

- ``redis_url``: ``REDIS_URL`` when set, otherwise a throwaway ``redis-server`` on a free port.
- ``own_redis``, ``features_redis``: redis-servers that tests may stop and start again.
- ``s3_endpoint``: moto's standalone server (a real HTTP S3 endpoint) on a free port.

The servers are :mod:`dev`'s, the same that ``make serve`` and the benchmark run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from approvals.contract import validate_frame
from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.model.package import ModelPackage
from approvals.model.train import TrainConfig, TrainResult, save_result, train
from dev.processes import free_port, wait_for_port
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis: REDIS_URL when set, otherwise a throwaway server."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer(tmp_path_factory.mktemp("redis"), debug_command=True) as server:
        yield server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server owned by one test (for tests that stop it on purpose)."""
    with RedisServer(tmp_path, debug_command=True) as server:
        yield server


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
def small_data() -> pd.DataFrame:
    """12k labelled attempts over 30 days from the test factory (not the simulator)."""
    return validate_frame(random_attempts(12_000, seed=11, days=30), labels=True)


@pytest.fixture(scope="session")
def serving_model(
    small_data: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, Path]:
    """A model trained once on ``small_data``, and its package directory."""
    result = train(small_data, SERVING_CONFIG)
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
    with RedisServer(tmp_path_factory.mktemp("features-redis"), debug_command=True) as server:
        materialize(package.state(), RedisSettings(url=server.url))
        yield server
