"""Champion, challenger and holdout in one service: arms by payment, static holdout, shadow."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pandas as pd
import pytest
import redis
from approval.v1 import approval_pb2 as pb
from approval.v1 import approval_pb2_grpc as pb_grpc
from config import ServingSettings
from pydantic import ValidationError

from approvals.experiments.assignment import Split
from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.model.package import ModelPackage
from approvals.model.train import TrainResult
from dev.redis_server import RedisServer
from dev.requests import attempt_json, attempt_message
from tests.bento.conftest import Served, serve

pytestmark = [pytest.mark.servers, pytest.mark.slow]
SHARES = {"holdout": 0.2, "challenger": 0.4, "champion": 0.4}
ROUTES = ["r_gb", "r_us", "r_eu"]


@pytest.fixture(scope="module")
def arms_redis(
    tmp_path_factory: pytest.TempPathFactory, serving_model: tuple[TrainResult, Path]
) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("arms-redis")) as server:
        materialize(ModelPackage.load(serving_model[1]).state(), RedisSettings(url=server.url))
        yield server


@pytest.fixture(scope="module")
def ab(
    serving_model: tuple[TrainResult, Path], arms_redis: RedisServer, challenger_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:  # fmt: skip
    server = serve(
        serving_model[1], arms_redis.url, tmp_path_factory.mktemp("ab"),
        APPROVALS_CHALLENGER_DIR=str(challenger_dir), APPROVALS_EXPERIMENT="ab",
        APPROVALS_CHALLENGER_SHARE="0.4", APPROVALS_HOLDOUT_SHARE="0.2",
        APPROVALS_EXPERIMENT_SALT="t", APPROVALS_REDIS_TIMEOUT_MS="5000",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def attempts(serving_model: tuple[TrainResult, Path]) -> pd.DataFrame:
    rows = serving_model[0].test.drop(columns=["approved", "response_code"])
    rows = rows[rows["attempt_number"] == 1].drop_duplicates("payment_id").head(60)
    return rows.reset_index(drop=True)


def post(served: Served, path: str, body: object) -> dict:
    answer = httpx.post(f"{served.http}{path}", json=body, timeout=30)
    assert answer.is_success, answer.text
    return answer.json()


def test_each_payment_is_answered_in_its_arm_by_its_model(
    ab: Served, attempts: pd.DataFrame, package: ModelPackage
) -> None:
    split = Split(SHARES, "t")
    expected = [split.arm(p) for p in attempts["payment_id"]]
    assert set(expected) == set(SHARES), "the sample holds every arm"
    stub = pb_grpc.ApprovalServiceStub(grpc.insecure_channel(ab.grpc))
    # when every attempt is scored alone over HTTP and gRPC, and all together in a batch
    http = [post(ab, "/score", {"attempt": attempt_json(row)}) for _, row in attempts.iterrows()]
    over_grpc = [
        stub.Score(pb.ScoreRequest(attempt=attempt_message(row)), timeout=30)
        for _, row in attempts.iterrows()
    ]
    batch = post(
        ab, "/score_batch", {"attempts": [attempt_json(r) for _, r in attempts.iterrows()]}
    )
    # then each answer is in the payment's arm, from that arm's model
    assert [a["variant"] for a in http] == expected
    assert [a.variant for a in over_grpc] == expected
    assert [s["variant"] for s in batch["scores"]] == expected and batch["variant"] == "mixed"
    for answer, arm in zip(http, expected, strict=True):
        challenger = answer["model_version"].endswith("-challenger")
        assert challenger == (arm == "challenger"), (arm, answer["model_version"])
    # and the batch gives each attempt what it got alone
    assert [s["p_approve"] for s in batch["scores"]] == pytest.approx(
        [a["p_approve"] for a in http], abs=1e-12
    )
    # and a batch of one arm names that arm and its model
    mine = [attempt_json(r) for (_, r), arm in zip(attempts.iterrows(), expected, strict=True)
            if arm == "challenger"]  # fmt: skip
    alone = post(ab, "/score_batch", {"attempts": mine})
    assert alone["variant"] == "challenger" and alone["model_version"].endswith("-challenger")
    # and a retry of a payment stays in its arm
    retry = attempts.iloc[0].copy()
    retry["attempt_id"] = retry["attempt_id"] + "-2"
    retry["attempt_number"], retry["previous_response_code"] = 2, "51"
    assert post(ab, "/score", {"attempt": attempt_json(retry)})["variant"] == expected[0]


def test_the_holdout_routes_and_retries_by_the_static_policy(
    ab: Served, attempts: pd.DataFrame
) -> None:
    split = Split(SHARES, "t")
    arms = [split.arm(p) for p in attempts["payment_id"]]
    holdout = attempts.iloc[arms.index("holdout")]
    modelled = attempts.iloc[arms.index("champion")]
    # a holdout payment's routes come back in the merchant's order, whatever the model says
    ranked = post(ab, "/rank_routes", {"attempt": attempt_json(holdout), "route_ids": ROUTES})
    assert ranked["variant"] == "holdout"
    assert [r["route_id"] for r in ranked["routes"]] == ROUTES
    # a champion payment's by expected value
    ranked = post(ab, "/rank_routes", {"attempt": attempt_json(modelled), "route_ids": ROUTES})
    values = [r["expected_value"] for r in ranked["routes"]]
    assert ranked["variant"] == "champion" and values == sorted(values, reverse=True)
    # a soft decline in the holdout is retried at once on the first route, no model asked
    body = {"attempt": attempt_json(holdout), "response_code": "51", "route_ids": ROUTES,
            "delays_hours": [24, 1]}  # fmt: skip
    advice = post(ab, "/advise_retry", body)
    assert (advice["variant"], advice["action"], advice["reason"]) == (
        "holdout", "retry", "static_policy"
    )  # fmt: skip
    assert (advice["route_id"], advice["delay_hours"]) == ("r_gb", 24)
    # and a hard decline stops by the scheme rules in every arm
    body["response_code"] = "14"
    assert post(ab, "/advise_retry", body)["reason"] == "hard_decline"


def test_a_shadow_challenger_is_logged_and_never_answers(
    serving_model: tuple[TrainResult, Path], arms_redis: RedisServer, challenger_dir: Path,
    attempts: pd.DataFrame, tmp_path: Path,
) -> None:  # fmt: skip
    conn = redis.Redis.from_url(arms_redis.url)
    conn.delete("shadow:decisions")
    materialize(
        ModelPackage.load(serving_model[1]).state(),
        RedisSettings(url=arms_redis.url, prefix="shadow"),
    )
    served = serve(
        serving_model[1], arms_redis.url, tmp_path, APPROVALS_CHALLENGER_DIR=str(challenger_dir),
        APPROVALS_EXPERIMENT="shadow", APPROVALS_REDIS_PREFIX="shadow",
    )  # fmt: skip
    try:
        answers = [
            post(served, "/score", {"attempt": attempt_json(r)})
            for _, r in attempts.head(10).iterrows()
        ]
    finally:
        deadline = time.monotonic() + 10
        while conn.xlen("shadow:decisions") < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        served.stop()
    # then the champion answered every call
    assert {a["variant"] for a in answers} == {"champion"}
    assert not any(a["model_version"].endswith("-challenger") for a in answers)
    # and the stream has the champion's and the shadow's decision of every attempt
    logged = [json.loads(f[b"data"]) for _, f in conn.xrange("shadow:decisions")]
    shadows = [d for d in logged if d["shadow"]]
    assert len(shadows) == 10 and {d["variant"] for d in shadows} == {"challenger"}
    assert {d["model_version"] for d in shadows} == {
        ModelPackage.load(challenger_dir).model_version
    }
    champion = {d["attempt"]["attempt_id"]: d["p_approve"] for d in logged if not d["shadow"]}
    assert {d["attempt"]["attempt_id"] for d in shadows} == set(champion)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APPROVALS_EXPERIMENT": "ab", "APPROVALS_CHALLENGER_SHARE": "0.5"}, "needs a challenger"),
        ({"APPROVALS_EXPERIMENT": "ab", "APPROVALS_CHALLENGER_DIR": "/m"}, "CHALLENGER_SHARE"),
        ({"APPROVALS_HOLDOUT_SHARE": "0.7"}, "holdout_share"),
        ({"APPROVALS_CHALLENGER_DIR": "/m", "APPROVALS_EXPERIMENT": "ab",
          "APPROVALS_CHALLENGER_SHARE": "0.6", "APPROVALS_HOLDOUT_SHARE": "0.4"},
         "leave the champion"),
        ({"APPROVALS_EXPERIMENT": "canary"}, "experiment"),
    ],
)  # fmt: skip
def test_impossible_experiments_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        ServingSettings()
