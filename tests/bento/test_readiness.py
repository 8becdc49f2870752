"""Readiness on features: a service that requires them is not ready (``/readyz`` 503, gRPC
health NOT_SERVING) until the deploy Job's preloader loads them into its Redis, and again not
ready when older features replace them. A real ``bentoml serve``, redis-server and preloader.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import grpc
import httpx
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.model.package import ModelPackage
from approvals.model.train import TrainResult
from dev.redis_server import RedisServer
from dev.requests import attempt_json
from tests.approvals.features.test_preload import pack_model, run_preload
from tests.bento.conftest import Served, serve

pytestmark = [pytest.mark.servers, pytest.mark.slow]
SERVICE = "approval.v1.ApprovalService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
T = TypeVar("T")


@pytest.fixture(scope="module")
def empty_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server holding no features (tests may stop and start it: it restarts empty)."""
    with RedisServer(tmp_path_factory.mktemp("empty-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def strict(
    serving_model: tuple[TrainResult, Path],
    empty_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """The service requiring features, started (not ready) against the empty Redis."""
    tmp = tmp_path_factory.mktemp("strict")
    server = serve(
        serving_model[1], empty_redis.url, tmp, probe="/livez",
        APPROVALS_REQUIRE_FEATURES="true", APPROVALS_REDIS_TIMEOUT_MS="5000",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def packed_model(package: ModelPackage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served package's state, packed as the bento's registered model holds it."""
    return pack_model(package.state(), tmp_path_factory.mktemp("registered"))


def readyz(served: Served) -> int:
    return httpx.get(f"{served.http}/readyz", timeout=10).status_code


def health(served: Served) -> tuple[int, int]:
    """gRPC health of the whole server and of the approval service."""
    with grpc.insecure_channel(served.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return tuple(  # type: ignore[return-value]
            stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
            for name in ("", SERVICE)
        )


def eventually(probe: Callable[[], T], wanted: T, seconds: float = 30.0) -> T:
    """``probe()`` once it equals ``wanted``, or its last answer after ``seconds``."""
    deadline, answer = time.monotonic() + seconds, probe()
    while answer != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = probe()
    return answer


def degraded(served: Served, rows: pd.DataFrame) -> bool:
    answer = httpx.post(
        f"{served.http}/score", json={"attempt": attempt_json(rows.iloc[0])}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["degraded"])


def preload(model: Path, redis: RedisServer) -> str:
    done = run_preload("--model", str(model), APPROVALS_REDIS_URL=redis.url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_not_ready_until_the_preloader_loads_the_features(
    strict: Served, empty_redis: RedisServer, packed_model: Path, package: ModelPackage,
    test_rows: pd.DataFrame,
) -> None:  # fmt: skip
    # given the service started against a Redis without its features: not ready, yet answering
    assert eventually(lambda: readyz(strict), 503) == 503, "ready without features"
    assert eventually(lambda: health(strict), (NOT_SERVING,) * 2) == (NOT_SERVING,) * 2
    assert degraded(strict, test_rows), "no features: answers are degraded"
    # when the Job's preloader loads the model's packed features into that Redis
    assert "family card" in preload(packed_model, empty_redis)
    # then the service becomes ready on both protocols, and answers from Redis
    assert eventually(lambda: readyz(strict), 200) == 200, "not ready with the features"
    assert eventually(lambda: health(strict), (SERVING,) * 2) == (SERVING,) * 2
    assert not degraded(strict, test_rows)
    # when features ending before the model's state replace them
    state = package.state()
    assert state.end is not None
    older = replace(state, end=state.end - timedelta(days=1))
    materialize(older, RedisSettings(url=empty_redis.url), allow_older=True)
    # then it is not ready again, until the preloader (seeing older features) writes anew
    assert eventually(lambda: readyz(strict), 503) == 503, "ready with stale features"
    assert eventually(lambda: health(strict), (NOT_SERVING,) * 2) == (NOT_SERVING,) * 2
    assert "writing a new version" in preload(packed_model, empty_redis)
    assert eventually(lambda: readyz(strict), 200) == 200


def test_an_outage_after_the_features_were_seen_leaves_readiness_to_require_redis(
    strict: Served, empty_redis: RedisServer, packed_model: Path, test_rows: pd.DataFrame
) -> None:
    # given the service ready with its features
    preload(packed_model, empty_redis)
    assert eventually(lambda: readyz(strict), 200) == 200
    # when Redis stops
    empty_redis.stop()
    try:
        # then it stays ready (degraded answers are accepted: no APPROVALS_REQUIRE_REDIS) over
        # more than a second of probes, each past the kept answer's age asking Redis again
        answers = []
        for _ in range(3):
            time.sleep(0.6)  # each probe comes after the kept answer aged
            answers.append(readyz(strict))
        assert answers == [200, 200, 200], answers
        assert degraded(strict, test_rows)
    finally:
        empty_redis.start()  # empty again
    # and a Redis that comes back without the features makes it not ready
    assert eventually(lambda: readyz(strict), 503) == 503, "ready without features"
    preload(packed_model, empty_redis)
    assert eventually(lambda: readyz(strict), 200) == 200
