"""The decision log: every answer, over both protocols, on the Redis stream; never in the way."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import redis
from approval.v1 import approval_pb2 as pb
from approval.v1 import approval_pb2_grpc as pb_grpc

from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.model.package import ModelPackage
from approvals.model.train import TrainResult
from dev.redis_server import RedisServer
from dev.requests import attempt_json, attempt_message, outcome_json
from tests.bento.conftest import Served, serve
from tests.bento.test_service import metric

pytestmark = [pytest.mark.servers, pytest.mark.slow]
STREAM = "approvals:decisions"


@pytest.fixture(scope="module")
def log_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("log-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def logged(
    serving_model: tuple[TrainResult, Path], log_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:  # fmt: skip
    materialize(ModelPackage.load(serving_model[1]).state(), RedisSettings(url=log_redis.url))
    server = serve(
        serving_model[1], log_redis.url, tmp_path_factory.mktemp("logged"),
        APPROVALS_REDIS_TIMEOUT_MS="5000",
    )  # fmt: skip
    yield server
    server.stop()


def entries(url: str, count: int, timeout_s: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
    """The stream's entries once there are ``count`` of them (the writer runs in the back)."""
    conn = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    while conn.xlen(STREAM) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [
        (fields[b"kind"].decode(), json.loads(fields[b"data"])) for _, fields in conn.xrange(STREAM)
    ]


def test_every_answer_is_logged_with_its_variant_decision_and_features(
    logged: Served, log_redis: RedisServer, package: ModelPackage,
    serving_model: tuple[TrainResult, Path],
) -> None:  # fmt: skip
    rows = serving_model[0].test.sort_values("event_time").head(5).reset_index(drop=True)
    plain = rows.drop(columns=["approved", "response_code"])
    stub = pb_grpc.ApprovalServiceStub(grpc.insecure_channel(logged.grpc))
    redis.Redis.from_url(log_redis.url).delete(STREAM)
    # given one call of each kind, over HTTP and gRPC
    http = httpx.post(f"{logged.http}/score", json={"attempt": attempt_json(plain.iloc[0])}).json()
    over_grpc = stub.Score(pb.ScoreRequest(attempt=attempt_message(plain.iloc[1])), timeout=30)
    pair = {"attempts": [attempt_json(plain.iloc[i]) for i in (2, 3)]}
    batch = httpx.post(f"{logged.http}/score_batch", json=pair).json()
    routes = ["r_us", "r_eu", "r_gb"]
    ranked = stub.RankRoutes(
        pb.RankRoutesRequest(attempt=attempt_message(plain.iloc[4]), route_ids=routes), timeout=30
    )
    advice = httpx.post(f"{logged.http}/advise_retry", json={
        "attempt": attempt_json(plain.iloc[0]), "response_code": "51", "route_ids": routes,
    }).json()  # fmt: skip
    report = httpx.post(f"{logged.http}/report_outcomes",
                        json={"outcomes": [outcome_json(rows.iloc[0])]}).json()  # fmt: skip
    # then every answer names its arm
    assert {http["variant"], over_grpc.variant, batch["variant"], ranked.variant,
            advice["variant"]} == {"champion"}  # fmt: skip
    # and the stream holds one decision per scored attempt and the applied outcome
    got = entries(log_redis.url, 7)
    decisions = [d for kind, d in got if kind == "decision"]
    outcomes = [d for kind, d in got if kind == "outcome"]
    assert [d["endpoint"] for d in decisions] == [
        "score", "score", "score_batch", "score_batch", "rank_routes", "advise_retry"
    ]  # fmt: skip
    assert report["applied"] == 1 and len(outcomes) == 1
    assert outcomes[0]["attempt_id"] == rows.iloc[0]["attempt_id"]
    assert outcomes[0]["approved"] == bool(rows.iloc[0]["approved"])
    # with what was answered: probabilities, the route ranked first, the advice
    assert decisions[0]["p_approve"] == http["p_approve"]
    assert decisions[1]["p_approve"] == pytest.approx(over_grpc.p_approve, abs=0)
    assert [d["p_approve"] for d in decisions[2:4]] == [s["p_approve"] for s in batch["scores"]]
    assert decisions[4]["attempt"]["route_id"] == ranked.routes[0].route_id
    assert decisions[4]["p_approve"] == pytest.approx(ranked.routes[0].p_approve, abs=0)
    assert decisions[5]["retry"]["action"] == advice["action"]
    # and the attempt as sent, the model version, and the features in the named order
    assert decisions[0]["attempt"]["attempt_id"] == plain.iloc[0]["attempt_id"]
    assert decisions[2]["attempt"]["card_bin"] == plain.iloc[2]["card_bin"]
    assert {d["model_version"] for d in decisions} == {package.model_version}
    names = json.loads(redis.Redis.from_url(log_redis.url).hget(f"{STREAM}:features",
                                                                package.model_version))  # fmt: skip
    assert names == list(package.spec.names)
    for d in decisions[:5]:
        assert len(d["features"]) == len(names), d["endpoint"]
    # the logged vector is what the model scored: the same probability again
    vector = np.array([np.nan if v is None else v for v in decisions[0]["features"]])
    assert float(package.predict(vector[None, :])[0]) == pytest.approx(http["p_approve"], abs=1e-12)
    counted = metric(httpx.get(f"{logged.http}/metrics").text, "approvals_decisions_total",
                     outcome="logged")  # fmt: skip
    assert counted >= 7


def test_a_full_queue_and_a_dead_redis_drop_entries_and_count_them(
    log_redis: RedisServer, package: ModelPackage, serving_model: tuple[TrainResult, Path],
) -> None:  # fmt: skip
    from decision_log import Decision, DecisionLog

    class Counter:
        def __init__(self) -> None:
            self.counts: dict[str, float] = {}

        def labels(self, outcome: str) -> Any:
            counter = self

            class One:
                def inc(self, n: float = 1) -> None:
                    counter.counts[outcome] = counter.counts.get(outcome, 0) + n

            return One()

    rows = serving_model[0].test.head(3).drop(columns=["approved", "response_code"])
    from approvals.contract import validate_request

    table = validate_request({c: rows[c].tolist() for c in rows.columns})
    decision = Decision("score_batch", "champion", "v", False, table, [0.5] * 3, np.zeros((3, 0)))

    async def flood(url: str, queue: int) -> dict[str, float]:
        counter = Counter()
        log = DecisionLog(RedisSettings(url=url), maxlen=1000, queue=queue,
                          features={"v": []}, counter=counter)  # fmt: skip
        for _ in range(5):  # no await in between: the writer cannot run
            log.record(decision)
        await log.aclose(timeout_s=3)
        return counter.counts

    # a queue of two takes two requests and drops three (of three attempts each)
    assert asyncio.run(flood(log_redis.url, 2)) == {"queue_full": 9, "logged": 6}
    # a Redis that is not there loses what was queued, and says so
    dead = asyncio.run(flood("redis://127.0.0.1:1/0", 10))
    assert dead.get("redis_error", 0) >= 3 and "logged" not in dead
