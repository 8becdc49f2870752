"""Serving test harness: ``bentoml serve`` of the service source, one per module.

The model is trained once per session on the factory data (not the simulator); its feature
state is materialized into a real redis-server (``features_redis``) that the degraded-mode test
stops and starts. Servers come from :class:`dev.stack.LocalStack`, as for ``make serve``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from approvals.model.train import TrainResult
from dev.redis_server import RedisServer
from dev.stack import LocalStack, Service

Served = Service  # a running ``bentoml serve``: proc, http, grpc, log, stop()


@pytest.fixture(scope="session")
def challenger_dir(
    serving_model: tuple[TrainResult, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The serving model as another version (so answers show which model gave them)."""
    target = tmp_path_factory.mktemp("challenger") / "package"
    shutil.copytree(serving_model[1], target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["model_version"] = manifest["model_version"] + "-challenger"
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def serve(
    package_dir: Path, redis_url: str, tmp: Path, probe: str = "/readyz", **env: str
) -> Served:
    """Start ``bentoml serve service:Approvals`` on free ports and wait until ``probe`` answers
    200 (``/readyz``: ready; ``/livez``: started).

    The caller stops it (``stop()`` returns its exit code); Redis is left to its owner.
    """
    settings = {"APPROVALS_REDIS_COOLDOWN_S": "0.5", **env}
    stack = LocalStack(
        tmp, model_dir=package_dir, redis_url=redis_url, env=settings, log=tmp / "serve.log",
        ready_timeout=90, probe=probe,
    )  # fmt: skip
    return stack.start().service


@pytest.fixture(scope="module")
def served(
    serving_model: tuple[TrainResult, Path],
    features_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """The service for one test module (small admission limit so bursts reach it)."""
    tmp = tmp_path_factory.mktemp("served")
    server = serve(
        serving_model[1],
        features_redis.url,
        tmp,
        APPROVALS_MAX_INFLIGHT="32",
        APPROVALS_REDIS_TIMEOUT_MS="5000",
        APPROVALS_MAX_LATENCY_MS="10000",
    )
    yield server
    server.stop()
