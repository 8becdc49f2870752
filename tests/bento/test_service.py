"""The bento really served: HTTP and gRPC clients against ``bentoml serve`` with real Redis.

One server for the whole module (starting one costs ~15 s on two cores); the graceful shutdown
test starts and stops one of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from approval.v1 import approval_pb2 as pb
from approval.v1 import approval_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from approvals.features.materialize import materialize
from approvals.features.redis_settings import RedisSettings
from approvals.model import predict
from approvals.model.package import ModelPackage
from dev.redis_server import RedisServer
from dev.requests import attempt_json, attempt_message
from tests.bento.conftest import Served, serve

pytestmark = [pytest.mark.servers, pytest.mark.slow]
BURST = 60
ADMITTED = 32  # APPROVALS_MAX_INFLIGHT of the module's server
FUZZED_EXAMPLES = 25  # per operation; the coverage phase adds its own cases
OPENAPI_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


@pytest.fixture(scope="module")
def stub(served: Served) -> pb_grpc.ApprovalServiceStub:
    return pb_grpc.ApprovalServiceStub(grpc.insecure_channel(served.grpc))


def post(served: Served, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{served.http}{path}", json=body, timeout=30)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_http_and_grpc_score_equal_batch_prediction(
    served: Served, stub: pb_grpc.ApprovalServiceStub, package: ModelPackage,
    test_rows: pd.DataFrame,
) -> None:  # fmt: skip
    rows = test_rows.head(20)
    expected = predict.score(package, rows)
    # when each attempt is scored over HTTP and over gRPC
    over_http = [
        post(served, "/score", {"attempt": attempt_json(r)}).json() for _, r in rows.iterrows()
    ]
    over_grpc = [
        stub.Score(pb.ScoreRequest(attempt=attempt_message(r))) for _, r in rows.iterrows()
    ]
    # then both give batch prediction's probabilities, the model version, and no degradation
    np.testing.assert_allclose([a["p_approve"] for a in over_http], expected, atol=1e-9)
    np.testing.assert_allclose([a.p_approve for a in over_grpc], expected, atol=1e-9)
    assert {a["model_version"] for a in over_http} == {package.model_version}
    assert {a.model_version for a in over_grpc} == {package.model_version}
    assert not any(a["degraded"] for a in over_http) and not any(a.degraded for a in over_grpc)


def test_batch_rank_and_advise_answer_on_both_protocols(
    served: Served, stub: pb_grpc.ApprovalServiceStub, test_rows: pd.DataFrame
) -> None:
    rows = test_rows.head(50)
    batch = post(
        served, "/score_batch", {"attempts": [attempt_json(r) for _, r in rows.iterrows()]}
    )
    grpc_batch = stub.ScoreBatch(
        pb.ScoreBatchRequest(attempts=[attempt_message(r) for _, r in rows.iterrows()])
    )
    assert batch.status_code == 200, batch.text
    assert [s["attempt_id"] for s in batch.json()["scores"]] == list(rows["attempt_id"])
    np.testing.assert_allclose(
        [s["p_approve"] for s in batch.json()["scores"]], [s.p_approve for s in grpc_batch.scores]
    )
    first = rows.iloc[0]
    ranked = post(
        served, "/rank_routes", {"attempt": attempt_json(first), "route_ids": ["r_us", "r_gb"]}
    )
    grpc_ranked = stub.RankRoutes(
        pb.RankRoutesRequest(attempt=attempt_message(first), route_ids=["r_us", "r_gb"])
    )
    assert [r["route_id"] for r in ranked.json()["routes"]] == [
        r.route_id for r in grpc_ranked.routes
    ]
    advice = post(served, "/advise_retry", {"attempt": attempt_json(first), "response_code": "14"})
    grpc_advice = stub.AdviseRetry(
        pb.AdviseRetryRequest(attempt=attempt_message(first), response_code="14")
    )
    assert (advice.json()["action"], advice.json()["reason"]) == ("stop", "hard_decline")
    assert (grpc_advice.action, grpc_advice.reason) == ("stop", "hard_decline")


def test_bad_input_is_rejected_naming_the_field(
    served: Served, stub: pb_grpc.ApprovalServiceStub, test_rows: pd.DataFrame
) -> None:
    good = attempt_json(test_rows.iloc[0])
    # HTTP: 400 with the field's location, and no echo of the request values
    response = post(served, "/score", {"attempt": {**good, "card_bin": "12"}})
    assert response.status_code == 400
    assert ["attempt", "card_bin"] in [e["loc"] for e in response.json()["detail"]]
    assert "input" not in response.text
    assert post(served, "/score", {"attempt": {**good, "amount": -1}}).status_code == 400
    assert (
        post(served, "/advise_retry", {"attempt": good, "response_code": "00"}).status_code == 400
    )
    # gRPC: INVALID_ARGUMENT naming the field
    message = attempt_message(test_rows.iloc[0])
    message.mcc = "54"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Score(pb.ScoreRequest(attempt=message))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "attempt.mcc" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as missing:
        stub.Score(pb.ScoreRequest())
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "attempt: Field required" in (missing.value.details() or "")


def test_health_and_reflection_are_served(served: Served) -> None:
    channel = grpc.insecure_channel(served.grpc)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "approval.v1.ApprovalService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(reflect.ServerReflectionInfo(iter([request]))))
    names = {s.name for s in reply.list_services_response.service}
    assert {"approval.v1.ApprovalService", "grpc.health.v1.Health"} <= names
    assert httpx.get(f"{served.http}/livez").status_code == 200
    assert httpx.get(f"{served.http}/readyz").status_code == 200


def test_concurrent_requests_of_both_protocols_are_batched(
    served: Served, stub: pb_grpc.ApprovalServiceStub, test_rows: pd.DataFrame
) -> None:
    before = httpx.get(f"{served.http}/metrics").text
    rows = [r for _, r in test_rows.head(40).iterrows()]

    def one(i: int) -> str:
        row = rows[i % len(rows)]
        if i % 2 == 0:
            return str(post(served, "/score", {"attempt": attempt_json(row)}).status_code)
        try:
            stub.Score(pb.ScoreRequest(attempt=attempt_message(row)))
        except grpc.RpcError as exc:
            return exc.code().name
        return "200"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(400)))
    # load shedding may refuse a few calls, but never fails one
    assert set(outcomes) <= {"200", "429", "RESOURCE_EXHAUSTED"}, sorted(set(outcomes))
    answered = outcomes.count("200")
    assert answered >= 300, f"only {answered} of 400 calls answered"
    after = httpx.get(f"{served.http}/metrics").text
    # then the model saw fewer calls than requests: some calls carried several rows
    calls = metric(after, "approvals_model_batch_size_count") - metric(
        before, "approvals_model_batch_size_count"
    )
    rows_seen = metric(after, "approvals_model_batch_size_sum") - metric(
        before, "approvals_model_batch_size_sum"
    )
    assert rows_seen >= answered, "every answered request reached the model"
    assert calls < rows_seen, f"{calls} model calls for {rows_seen} rows: no batching"
    for protocol in ("http", "grpc"):
        count = metric(
            after, "approvals_request_duration_seconds_count", endpoint="score", protocol=protocol
        )
        assert count >= 150, f"latency histogram of {protocol}"
    # and repeated shared keys (BIN, route, merchant) came from the held hashes, cards from Redis
    held = metric(after, "approvals_online_keys_total", source="held") - metric(
        before, "approvals_online_keys_total", source="held"
    )
    read = metric(after, "approvals_online_keys_total", source="redis") - metric(
        before, "approvals_online_keys_total", source="redis"
    )
    assert held > 0 and read > 0, f"online keys: {held} held, {read} read"


def test_callers_that_give_up_mid_call_leave_the_service_answering_undegraded(
    served: Served, stub: pb_grpc.ApprovalServiceStub, test_rows: pd.DataFrame
) -> None:
    # given Score calls their clients cancel while they are being scored (a lone call runs in
    # its caller's task, so a cancelled call cancels its own Redis read)
    requests = [
        pb.ScoreRequest(attempt=attempt_message(r)) for _, r in test_rows.head(40).iterrows()
    ]

    async def give_up_then_ask() -> tuple[int, list[bool]]:
        async with grpc.aio.insecure_channel(served.grpc) as channel:
            aio = pb_grpc.ApprovalServiceStub(channel)
            await aio.Score(requests[0], timeout=10)  # connected
            cut = 0
            for i, request in enumerate(requests):
                call = aio.Score(request, timeout=10)
                await asyncio.sleep((i % 8) * 0.0004)  # sent, and at some stage of scoring
                cut += bool(call.cancel())  # False when it was answered already
            answers = [(await aio.Score(r, timeout=10)).degraded for r in requests[:10]]
            return cut, answers

    cut, degraded = asyncio.run(give_up_then_ask())
    # then the calls after them are answered, from Redis
    assert cut > 0, "some calls were cancelled before their answer"
    assert degraded == [False] * 10
    assert not stub.Score(requests[0], timeout=10).degraded


def test_redis_outage_degrades_then_recovers(
    served: Served, stub: pb_grpc.ApprovalServiceStub, features_redis: RedisServer,
    package: ModelPackage, test_rows: pd.DataFrame,
) -> None:  # fmt: skip
    body = {"attempt": attempt_json(test_rows.iloc[0])}
    assert post(served, "/score", body).json()["degraded"] is False
    # when Redis stops: answers continue, flagged degraded, counted
    features_redis.stop()
    try:
        down = post(served, "/score", body)
        assert down.status_code == 200 and down.json()["degraded"] is True
        assert stub.Score(pb.ScoreRequest(attempt=attempt_message(test_rows.iloc[0]))).degraded
        assert httpx.get(f"{served.http}/readyz").status_code == 200, "degraded mode is accepted"
        text = httpx.get(f"{served.http}/metrics").text
        assert metric(text, "approvals_degraded_total", endpoint="score") >= 2
    finally:
        features_redis.start()
        materialize(package.state(), RedisSettings(url=features_redis.url))
    # then, with Redis back, the breaker closes by itself (no restart)
    recovered = False
    for _ in range(40):
        if post(served, "/score", body).json()["degraded"] is False:
            recovered = True
            break
        threading.Event().wait(0.25)
    assert recovered, "service recovered from the Redis outage"


def test_openapi_documents_optional_answer_fields_as_nullable(served: Served) -> None:
    # BentoML publishes OpenAPI 3.0.2, where a null is allowed by `nullable: true` only
    spec = httpx.get(f"{served.http}/docs.json").json()
    fields = spec["components"]["schemas"]["AdviseRetryResponseIODescriptor"]["properties"]
    for name in ("route_id", "delay_hours", "p_approve", "expected_value"):
        assert fields[name].get("nullable") is True, f"{name}: {fields[name]}"
        assert "anyOf" not in fields[name], f"{name} keeps JSON Schema's null type"


def test_schemathesis_run_finds_no_server_error_or_undeclared_answer(
    served: Served, tmp_path: Path, features_redis: RedisServer, package: ModelPackage
) -> None:
    """``schemathesis run`` as a new user runs it: its CLI, default phases (examples, coverage,
    fuzzing; the coverage phase sends malformed Content-Types, bodies and methods)."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{served.http}/docs.json",
        "--checks", ",".join(OPENAPI_CHECKS), "--max-examples", str(FUZZED_EXAMPLES),
        "--report", "json", "--report-json-path", str(tmp_path / "run.json"), "--no-color",
    ]  # fmt: skip
    # the CLI, not @schema.parametrize(): schemathesis 4.32's pytest plugin needs pytest < 9.2
    try:
        done = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )
    finally:  # a fuzzed outcome the contract accepts is applied: later tests get clean features
        materialize(package.state(), RedisSettings(url=features_redis.url))
    run = json.loads((tmp_path / "run.json").read_text())
    shown = done.stdout[-4000:]
    # then every operation was tested in the coverage and fuzzing phases, and no request got a
    # server error or an answer whose status, media type or body the document does not declare
    assert run["operations"]["tested"] == run["operations"]["total"] == 9, shown
    assert run["phases"]["coverage"]["status"] == "success", shown
    assert run["phases"]["fuzzing"]["status"] == "success", shown
    assert run["failures"] == [] and run["errors"] == [], shown
    assert done.returncode == 0, shown


@pytest.mark.parametrize(
    ("headers", "body", "status", "problem"),
    [
        ({"Content-Type": "multipart/form-data"}, b"{}", 415, "multipart/form-data"),
        ({"Content-Type": "text/plain"}, b"{}", 415, "text/plain"),
        ({"Content-Type": "application/json; charset=latin-1"}, b"{}", 415, "charset"),
        ({"Content-Type": "application/json"}, b"", 400, "body is empty"),
        ({}, b"", 400, "body is empty"),
        ({"Content-Type": "application/json"}, b"card=4111", 400, "Invalid JSON"),
        ({"Content-Type": "application/json"}, b"[]", 400, "should be an object"),
    ],
)
def test_bodies_that_are_not_json_are_refused_naming_the_problem(
    served: Served, headers: dict[str, str], body: bytes, status: int, problem: str
) -> None:
    for path in ("/score", "/score_batch", "/rank_routes", "/advise_retry", "/report_outcomes"):
        # when a request's body is not JSON, or not declared as JSON
        answer = httpx.post(f"{served.http}{path}", content=body, headers=headers, timeout=10)
        # then it is refused with a JSON error that names the problem, never 500
        assert answer.status_code == status, f"{path}: {answer.status_code} {answer.text}"
        assert answer.headers["content-type"] == "application/json", path
        assert problem in answer.text, f"{path}: {answer.text}"
        assert "4111" not in answer.text, "the body is not echoed"


def test_burst_above_capacity_gets_429_or_resource_exhausted_never_5xx(
    served: Served, stub: pb_grpc.ApprovalServiceStub, features_redis: RedisServer,
    test_rows: pd.DataFrame,
) -> None:  # fmt: skip
    import redis

    body = {"attempts": [attempt_json(r) for _, r in test_rows.head(50).iterrows()]}
    message = pb.ScoreBatchRequest(
        attempts=[attempt_message(r) for _, r in test_rows.head(50).iterrows()]
    )

    async def grpc_call(channel: grpc.aio.Channel) -> str:
        try:
            await pb_grpc.ApprovalServiceStub(channel).ScoreBatch(message, timeout=60)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"

    async def burst() -> tuple[list[int], list[str]]:
        channels = [grpc.aio.insecure_channel(served.grpc) for _ in range(8)]
        try:
            await asyncio.gather(*(grpc_call(c) for c in channels))  # connected before the burst
            async with httpx.AsyncClient(base_url=served.http, timeout=60) as client:
                http_calls = [client.post("/score_batch", json=body) for _ in range(BURST)]
                grpc_calls = [grpc_call(channels[i % 8]) for i in range(BURST)]
                answers = await asyncio.gather(*http_calls, *grpc_calls)
        finally:
            await asyncio.gather(*(c.close() for c in channels))
        return [r.status_code for r in answers[:BURST]], list(answers[BURST:])

    blocker = threading.Thread(
        target=lambda: redis.Redis.from_url(features_redis.url).execute_command(
            "DEBUG", "SLEEP", "3"
        )
    )
    with ThreadPoolExecutor(ADMITTED) as pool:
        # given Redis busy for 3 s, and as many calls as the admission limit (32) in flight,
        # half of each protocol: they share one limit
        blocker.start()
        threading.Event().wait(0.1)
        half = ADMITTED // 2
        admitted = [pool.submit(post, served, "/score_batch", body) for _ in range(half)]
        admitted += [pool.submit(stub.ScoreBatch, message, timeout=60) for _ in range(half)]
        threading.Event().wait(0.6)
        # when a burst of both protocols arrives
        http_codes, grpc_codes = asyncio.run(burst())
        waiting = sum(not f.done() for f in admitted)
        results = [f.result() for f in admitted]
    blocker.join()
    # then the burst is refused at once with 429 / RESOURCE_EXHAUSTED, while the admitted calls
    # still wait for Redis and are then answered; nothing answers 5xx
    assert set(http_codes) == {429}, f"HTTP statuses {sorted(set(http_codes))}"
    assert set(grpc_codes) == {"RESOURCE_EXHAUSTED"}, f"gRPC codes {sorted(set(grpc_codes))}"
    assert waiting == ADMITTED, "the refusals came before the admitted calls were answered"
    assert [r.status_code for r in results[: ADMITTED // 2]] == [200] * (ADMITTED // 2)
    assert all(len(r.scores) == 50 for r in results[ADMITTED // 2 :])


def test_every_server_log_line_is_json_with_request_ids_and_no_card_data(
    served: Served, features_redis: RedisServer, package: ModelPackage, test_rows: pd.DataFrame
) -> None:
    """Runs after the module's other tests on its server: their traffic (fuzzing, bursts,
    outages) is in the log too."""
    secret = {"card_bin": "987654", "card_fingerprint": "fp-7e57-secret", "amount": 4321.98}
    body = {"attempt": {**attempt_json(test_rows.iloc[0]), **secret}}
    # given a refused request (BentoML logs it), an answered one and an online store outage
    refused = post(served, "/score", {**body, "attempt": {**body["attempt"], "mcc": "1"}})
    assert refused.status_code == 400
    features_redis.stop()
    try:  # enough failed reads to open the breaker (threshold 5)
        assert all(post(served, "/score", body).json()["degraded"] for _ in range(6))
    finally:
        features_redis.start()
        materialize(package.state(), RedisSettings(url=features_redis.url))
    for _ in range(40):  # until the breaker closes again (cooldown 0.5 s)
        if not post(served, "/score", body).json()["degraded"]:
            break
        threading.Event().wait(0.25)
    lines = served.log.read_text().splitlines()
    # then every line is one JSON object with level, logger and message
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) for e in entries)
    assert all({"level", "logger", "message", "ts"} <= set(e) for e in entries), entries[:3]
    loggers = {e["logger"] for e in entries}
    assert {"bentoml.serve", "approvals.service", "approvals.online"} <= loggers, loggers
    # and a request's lines name it: trace id, and the span id BentoML answers as request id
    request_id = refused.headers["x-bentoml-request-id"]
    mine = [e for e in entries if e.get("span_id") == request_id]
    assert [e["message"] for e in mine] == ["Exception on /score [POST]"], mine
    assert mine[0]["level"] == "WARNING" and "exc_info" not in mine[0], "a client error"
    breaker = [e for e in entries if "circuit breaker" in e["message"]]
    assert len(breaker) >= 2, "opened, then closed"
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["trace_id"]) for e in breaker), breaker
    # and no card data: neither the BIN, the fingerprint nor the amount sent
    text = served.log.read_text()
    assert not [v for v in map(str, secret.values()) if v in text], "card data in the log"


def test_sigterm_drains_in_flight_requests(
    serving_model: tuple[object, Path], features_redis: RedisServer, test_rows: pd.DataFrame,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A server of its own: no earlier test's load shapes the batcher's shedding estimates."""
    import redis

    served = serve(
        serving_model[1], features_redis.url, tmp_path,
        APPROVALS_REDIS_TIMEOUT_MS="5000", APPROVALS_MAX_LATENCY_MS="10000",
    )  # fmt: skip
    body = {"attempt": attempt_json(test_rows.iloc[0])}
    message = pb.ScoreRequest(attempt=attempt_message(test_rows.iloc[0]))
    slept: list[object] = []
    blocker = threading.Thread(
        target=lambda: slept.append(
            redis.Redis.from_url(features_redis.url).execute_command("DEBUG", "SLEEP", "1.5")
        )
    )
    try:
        with grpc.insecure_channel(served.grpc) as channel, ThreadPoolExecutor(8) as pool:
            stub = pb_grpc.ApprovalServiceStub(channel)
            stub.Score(message, timeout=30)  # connected and warm before Redis is held
            # given requests held in flight (Redis is busy for 1.5 s)
            blocker.start()
            threading.Event().wait(0.1)
            http_calls = [pool.submit(post, served, "/score", body) for _ in range(4)]
            grpc_calls = [pool.submit(stub.Score, message, timeout=30) for _ in range(4)]
            threading.Event().wait(0.5)
            # when the server is told to stop
            code = served.stop()
            # then every in-flight request still completes successfully
            assert [f.result().status_code for f in http_calls] == [200] * 4
            assert all(re.fullmatch(r"\d{14}-\w+", f.result().model_version) for f in grpc_calls)
    finally:
        served.stop()
        if blocker.is_alive():
            blocker.join()
    assert slept == [b"OK"], "Redis really held the requests in flight"
    assert code == 0, f"clean exit, got {code}"


def test_two_workers_share_the_grpc_port_and_one_metrics_view(
    serving_model: tuple[object, Path], features_redis: RedisServer, test_rows: pd.DataFrame,
    tmp_path: Path,
) -> None:  # fmt: skip
    import psutil

    served = serve(serving_model[1], features_redis.url, tmp_path, APPROVALS_WORKERS="2")
    port = int(served.grpc.rsplit(":", 1)[1])

    def workers() -> list[psutil.Process]:
        return [
            p for p in psutil.Process(served.proc.pid).children(recursive=True)
            if "_bentoml_impl.worker.service" in " ".join(p.cmdline())
        ]  # fmt: skip

    def with_port(status: str) -> list[psutil.Process]:
        return [
            w for w in workers()
            if any(c.laddr.port == port and c.status == status for c in w.net_connections("tcp"))
        ]  # fmt: skip

    # /readyz answers once one worker is ready; the second may not listen yet
    deadline = time.monotonic() + 60
    while len(with_port(psutil.CONN_LISTEN)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    message = pb.ScoreRequest(attempt=attempt_message(test_rows.iloc[0]))
    # separate subchannel pools: otherwise channels to one target share one connection
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(served.grpc, options=options) for _ in range(16)]
    try:
        # given 16 clients, each on its own gRPC connection, and 8 HTTP calls
        answers = [pb_grpc.ApprovalServiceStub(c).Score(message, timeout=30) for c in channels]
        for _ in range(8):
            assert post(served, "/score", {"attempt": attempt_json(test_rows.iloc[0])}).is_success
        # then both worker processes serve some of the gRPC connections
        serving = with_port(psutil.CONN_ESTABLISHED)
        assert len(workers()) == 2 and len(serving) == 2, "the kernel spreads connections"
        assert len({a.p_approve for a in answers}) == 1, "every worker gives the same answer"
        # and /metrics counts the calls of both workers
        text = httpx.get(f"{served.http}/metrics", timeout=10).text
        for protocol, calls in (("grpc", 16), ("http", 8)):
            got = metric(text, "approvals_requests_total", endpoint="score", protocol=protocol)
            assert got == calls, f"{protocol}: {got} calls counted, {calls} made"
        # and both shut down cleanly on SIGTERM
        assert served.stop() == 0
    finally:
        for channel in channels:
            channel.close()
        served.stop()
