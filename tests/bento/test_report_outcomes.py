"""ReportOutcomes really served: HTTP and gRPC clients against ``bentoml serve`` and a
redis-server of this module's own (outcomes change the features other modules read).

The live replay scores each attempt of a day, then reports its outcome, and holds every live
score equal to batch prediction with that day as history (``approvals predict --history``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from approval.v1 import approval_pb2 as pb
from approval.v1 import approval_pb2_grpc as pb_grpc

from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.model import predict
from approvals.model.package import ModelPackage
from approvals.model.train import TrainResult
from dev.redis_server import RedisServer
from dev.requests import attempt_json, attempt_message, outcome_json, outcome_message
from tests.bento.conftest import Served, serve
from tests.bento.test_service import metric

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture(scope="module")
def live_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("live-redis")) as server:
        yield server


@pytest.fixture
def fresh(live_redis: RedisServer, package: ModelPackage) -> str:
    """The package's features materialized again: a new live version no outcome has reached."""
    return materialize(package.state(), RedisSettings(url=live_redis.url)).version


@pytest.fixture(scope="module")
def live(
    serving_model: tuple[TrainResult, Path],
    live_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("live")
    materialize(ModelPackage.load(serving_model[1]).state(), RedisSettings(url=live_redis.url))
    server = serve(serving_model[1], live_redis.url, tmp, APPROVALS_REDIS_TIMEOUT_MS="5000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(live: Served) -> pb_grpc.ApprovalServiceStub:
    return pb_grpc.ApprovalServiceStub(grpc.insecure_channel(live.grpc))


@pytest.fixture(scope="module")
def labelled(serving_model: tuple[TrainResult, Path]) -> pd.DataFrame:
    """The test split (after the package's state), labelled, in time order, one per instant."""
    rows = serving_model[0].test.sort_values("event_time", kind="stable")
    return rows.drop_duplicates("event_time").reset_index(drop=True)


def post(served: Served, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{served.http}{path}", json=body, timeout=30)


def unlabelled(row: pd.Series) -> pd.Series:
    return row.drop(["approved", "response_code"])


def test_live_replay_scores_equal_batch_prediction_with_the_day_as_history(
    live: Served, stub: pb_grpc.ApprovalServiceStub, package: ModelPackage,
    labelled: pd.DataFrame, fresh: str,
) -> None:  # fmt: skip
    # given a day of attempts after the model's feature state, in time order
    day = labelled[labelled.event_time < labelled.event_time.iloc[0] + pd.Timedelta(days=1)]
    assert len(day) > 200 and day.card_fingerprint.duplicated().any()
    # when each is scored, then its outcome reported (the protocols alternate)
    live_p = []
    for i, (_, row) in enumerate(day.iterrows()):
        if i % 2:
            answer = post(live, "/score", {"attempt": attempt_json(unlabelled(row))}).json()
            assert answer["degraded"] is False
            live_p.append(answer["p_approve"])
            done = post(live, "/report_outcomes", {"outcomes": [outcome_json(row)]}).json()
            assert done == {"applied": 1, "duplicates": 0, "late": 0}
        else:
            scored = stub.Score(pb.ScoreRequest(attempt=attempt_message(unlabelled(row))))
            assert not scored.degraded
            live_p.append(scored.p_approve)
            reported = stub.ReportOutcomes(
                pb.ReportOutcomesRequest(outcomes=[outcome_message(row)])
            )
            assert (reported.applied, reported.duplicates, reported.late) == (1, 0, 0)
    # then every live score is the batch prediction with the day's earlier outcomes as history
    attempts = day.drop(columns=["approved", "response_code"])
    expected = predict.score(package, attempts, day)
    np.testing.assert_allclose(live_p, expected, rtol=0, atol=1e-9)
    # and the features moved: without the history, batch prediction differs
    assert np.abs(predict.score(package, attempts) - expected).max() > 1e-3


def test_reported_declines_move_the_next_score_and_repeats_are_duplicates(
    live: Served, stub: pb_grpc.ApprovalServiceStub, labelled: pd.DataFrame, fresh: str
) -> None:
    # given a card's next attempt, scored before anything is reported
    later = labelled.iloc[-1]
    probe = {"attempt": attempt_json(unlabelled(later))}
    before = post(live, "/score", probe).json()["p_approve"]
    # when three earlier attempts of that card are reported declined for insufficient funds
    earlier = labelled.iloc[:3].copy()
    earlier["card_fingerprint"] = later.card_fingerprint
    earlier["card_bin"] = later.card_bin
    earlier["attempt_id"] = [f"moved-{i}" for i in range(3)]
    earlier["approved"], earlier["response_code"] = False, "51"
    body = {"outcomes": [outcome_json(r) for _, r in earlier.iterrows()]}
    first = post(live, "/report_outcomes", body)
    # then they are applied, the next score sees them, and a repeat counts nothing
    assert first.status_code == 200 and first.json() == {"applied": 3, "duplicates": 0, "late": 0}
    after = post(live, "/score", probe).json()["p_approve"]
    assert after < before - 0.01, (before, after)
    again = stub.ReportOutcomes(
        pb.ReportOutcomesRequest(outcomes=[outcome_message(r) for _, r in earlier.iterrows()])
    )
    assert (again.applied, again.duplicates) == (0, 3)
    assert post(live, "/score", probe).json()["p_approve"] == after
    text = httpx.get(f"{live.http}/metrics").text
    assert metric(text, "approvals_outcomes_total", status="applied") >= 3
    assert metric(text, "approvals_outcomes_total", status="duplicate") >= 3


def test_a_late_outcome_is_counted_late_and_ignored(
    live: Served, labelled: pd.DataFrame, fresh: str
) -> None:
    old = labelled.iloc[0].copy()
    old["event_time"] = old.event_time - pd.Timedelta(days=30)
    old["attempt_id"] = "late-1"
    answer = post(live, "/report_outcomes", {"outcomes": [outcome_json(old)]})
    assert answer.json() == {"applied": 0, "duplicates": 0, "late": 1}
    text = httpx.get(f"{live.http}/metrics").text
    assert metric(text, "approvals_outcomes_total", status="late") >= 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"response_code": "00"}, "outcomes[1].response_code"),  # disagrees with approved
        ({"response_code": "5"}, "outcomes.1.response_code"),
        ({"attempt.card_bin": "12"}, "outcomes.1.attempt.card_bin"),
        ({"attempt.event_time": None}, "outcomes.1.attempt.event_time"),
        ({"merchant_advice_code": "x"}, "outcomes.1.merchant_advice_code"),
        ({"surprise": 1}, "outcomes.1.surprise"),
    ],
)
def test_one_bad_outcome_fails_the_request_naming_it_and_nothing_is_applied(
    live: Served, stub: pb_grpc.ApprovalServiceStub, labelled: pd.DataFrame, fresh: str,
    change: dict[str, object], field: str,
) -> None:  # fmt: skip
    rows = labelled.iloc[10:13].copy()
    rows["approved"], rows["response_code"] = False, "05"
    outcomes = [outcome_json(r) for _, r in rows.iterrows()]
    for key, value in change.items():
        target, name = (outcomes[1]["attempt"], key[8:]) if key.startswith("attempt.") else (
            outcomes[1], key)  # fmt: skip
        assert isinstance(target, dict)
        target[name] = value
    # over HTTP: 400 naming the outcome and field
    answer = post(live, "/report_outcomes", {"outcomes": outcomes})
    assert answer.status_code == 400, answer.text
    named = [".".join(map(str, e["loc"])) + ": " + e["msg"] for e in answer.json()["detail"]]
    assert any(field in n for n in named), named
    assert '"input":' not in answer.text, "no request values are echoed"
    # then the good outcomes of it were not applied: reporting them alone applies them now
    good = [outcomes[0], outcomes[2]]
    assert post(live, "/report_outcomes", {"outcomes": good}).json()["applied"] == 2


def test_grpc_bad_outcomes_are_invalid_argument_naming_the_field(
    stub: pb_grpc.ApprovalServiceStub, labelled: pd.DataFrame, fresh: str
) -> None:
    rows = labelled.iloc[20:23].copy()
    rows["approved"], rows["response_code"] = True, "00"
    messages = [outcome_message(r) for _, r in rows.iterrows()]
    messages[2].attempt.mcc = "54"
    cases = {
        "outcomes[2].attempt.mcc": messages,
        "outcomes[0].attempt": [pb.Outcome(approved=True, response_code="00")],
        "outcomes[0].response_code": [
            pb.Outcome(attempt=messages[0].attempt, approved=False, response_code="00")
        ],
        "outcomes: List should have at least 1 item": [],
    }
    for field, outcomes in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            stub.ReportOutcomes(pb.ReportOutcomesRequest(outcomes=outcomes))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in (caught.value.details() or ""), (field, caught.value.details())
    done = stub.ReportOutcomes(pb.ReportOutcomesRequest(outcomes=messages[:2]))
    assert done.applied == 2, "nothing of the refused requests was applied"


def test_without_a_live_version_reporting_is_unavailable_and_scoring_goes_on(
    live: Served, stub: pb_grpc.ApprovalServiceStub, live_redis: RedisServer,
    labelled: pd.DataFrame,
) -> None:  # fmt: skip
    import redis

    conn = redis.Redis.from_url(live_redis.url)
    conn.flushall()
    row = labelled.iloc[30]
    try:
        answer = post(live, "/report_outcomes", {"outcomes": [outcome_json(row)]})
        assert answer.status_code == 503, answer.text  # BentoML keeps 5xx reasons in the log
        with pytest.raises(grpc.RpcError) as caught:
            stub.ReportOutcomes(pb.ReportOutcomesRequest(outcomes=[outcome_message(row)]))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "materialize" in (caught.value.details() or "")
        assert post(live, "/score", {"attempt": attempt_json(unlabelled(row))}).status_code == 200
    finally:
        conn.close()
