"""The one validator for batches: it accepts a request iff the per-attempt model accepts it.

gRPC ScoreBatch (:func:`grpc_server.attempt_table`) and HTTP ``/score_batch``
(:class:`schemas.ScoreBatchRequest`) validate a whole request as one table with the contract's
vectorised validator. The property: for any request, the table accepts exactly when
validating attempt by attempt with :class:`~approvals.contract.Attempt` does, then with the
same columns; and when it rejects, it names the field the model names first
(``attempts[i].field``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from approval.v1 import approval_pb2 as pb
from gateway import Admission, Gateway
from grpc_server import ApprovalServicer, attempt_table, message_to_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from schemas import MAX_BATCH, ScoreBatchRequest
from telemetry import metrics

from approvals.contract import Attempt, AttemptColumns, validate_frame, validate_rows
from approvals.decisions.costs import load_costs
from approvals.errors import ContractError
from approvals.features.outcomes import OutcomeWriter
from approvals.features.redis_settings import RedisSettings
from approvals.serving.engine import Engine
from dev.requests import attempt_json, attempt_message
from tests.approvals.factories import random_attempts

TEXT_EDGES = [
    "", " ", "1234", " 1234", "1234 ", "1234\n", "１２３４", "12", "51", "5", " 51", "N7", "n7",
    "US", "us", "USD", "411111", "41111111", "411111111", "visa", "VISA", "visa\u00a0", "credit",
    "ecommerce", "none", "challenge", "route-a", "\x1froute", "route\x1f", "a\x00 b", "x" * 128,
    "x" * 129, " " + "x" * 128, "商户", "\u2003id", "1234\x005678", "\u200bid",
]  # fmt: skip
NUMBER_EDGES = [0, 1, 2, 1000, 1001, -1]
AMOUNT_EDGES = [0.0, -0.0, 12.5, -1.0, float("nan"), float("inf"), 1e308]
SECONDS_EDGES = [0, 1, 1_700_000_000, -62135596800, -62135596801, 253402300799, 253402300800]
NANOS_EDGES = [0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)]
TEXT_FIELDS = [
    f.name for f in pb.Attempt.DESCRIPTOR.fields
    if f.type == f.TYPE_STRING and f.name not in ("previous_response_code", "merchant_advice_code")
]  # fmt: skip
CODES = ("previous_response_code", "merchant_advice_code")
FIELDS = tuple(Attempt.model_fields)
ATTEMPTS = TypeAdapter(list[Attempt])
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def valid_rows(count: int) -> pd.DataFrame:
    frame = validate_frame(random_attempts(count, seed=3, days=5), labels=True)
    return frame.drop(columns=["approved", "response_code"])


BASE_ROWS = valid_rows(40)
BASE = [attempt_message(row) for _, row in BASE_ROWS.iterrows()]
BASE_JSON = [attempt_json(row) for _, row in BASE_ROWS.iterrows()]


def reference_columns(attempts: Sequence[Attempt]) -> dict[str, np.ndarray]:
    """The columns of validated models, laid out independently of the validator."""
    columns = {name: [getattr(a, name) for a in attempts] for name in FIELDS}
    times = [(t - _EPOCH) // timedelta(microseconds=1) for t in columns.pop("event_time")]
    typed = {
        "event_time": np.array(times, dtype=np.int64).astype("datetime64[us]"),
        "amount": np.array(columns.pop("amount"), dtype=np.float64),
        "attempt_number": np.array(columns.pop("attempt_number"), dtype=np.int64),
        "network_token": np.array(columns.pop("network_token"), dtype=bool),
    }
    return {**typed, **{k: np.array(v, dtype=object) for k, v in columns.items()}}


def per_attempt(rows: list[dict[str, Any]]) -> dict[str, np.ndarray] | str:
    """What attempt-by-attempt validation gives: the columns, or the field it names first."""
    try:
        return reference_columns(ATTEMPTS.validate_python(rows))
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        return f"attempts[{loc[0]}].{'.'.join(map(str, loc[1:])) or 'previous_response_code'}"


def assert_same_columns(table: AttemptColumns, expected: Mapping[str, np.ndarray]) -> None:
    assert table.columns.keys() == expected.keys(), "the same columns"
    for name, values in expected.items():
        got = table.columns[name]
        assert got.dtype == values.dtype, f"dtype of {name}"
        if values.dtype == object:
            assert got.tolist() == values.tolist(), name
            assert [type(v) for v in got] == [type(v) for v in values], f"types in {name}"
        else:
            np.testing.assert_array_equal(got, values, err_msg=name)


def grpc_outcome(attempts: list[pb.Attempt]) -> AttemptColumns | str:
    try:
        return attempt_table(pb.ScoreBatchRequest(attempts=attempts))
    except ContractError as exc:
        return exc.column


def assert_agree(table: AttemptColumns | str, expected: dict[str, np.ndarray] | str) -> None:
    if isinstance(expected, str):
        assert table == expected, "rejected, naming the field the model names first"
    else:
        assert isinstance(table, AttemptColumns), f"the validator rejected a valid request: {table}"
        assert_same_columns(table, expected)


def test_valid_requests_give_the_models_columns() -> None:
    # given 1000 valid attempts, some of them retries with a previous code
    rows = valid_rows(1000)
    messages = [attempt_message(row) for _, row in rows.iterrows()]
    assert sum(m.HasField("previous_response_code") for m in messages) > 0
    # when validated as one table over gRPC and over HTTP
    over_grpc = attempt_table(pb.ScoreBatchRequest(attempts=messages))
    body = json.dumps({"attempts": [attempt_json(row) for _, row in rows.iterrows()]})
    over_http = ScoreBatchRequest.model_validate_json(body).attempts
    # then both equal the columns of the models, attempt by attempt
    expected = per_attempt([message_to_dict(m) for m in messages])
    assert not isinstance(expected, str)
    assert_same_columns(over_grpc, expected)
    assert_same_columns(over_http, expected)
    assert over_grpc.attempt_ids == list(rows["attempt_id"])


@st.composite
def changed_attempt(draw: st.DrawFn) -> pb.Attempt:
    attempt = pb.Attempt()
    attempt.CopyFrom(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["text", "code", "number", "amount", "time", "unset"]))
        if kind == "text":
            setattr(attempt, draw(st.sampled_from(TEXT_FIELDS)), draw(st.sampled_from(TEXT_EDGES)))
        elif kind == "code":
            name = draw(st.sampled_from(CODES))
            value = draw(st.sampled_from([None, *TEXT_EDGES]))
            attempt.ClearField(name) if value is None else setattr(attempt, name, value)
        elif kind == "number":
            attempt.attempt_number = draw(st.sampled_from(NUMBER_EDGES))
        elif kind == "amount":
            attempt.amount = draw(st.sampled_from(AMOUNT_EDGES))
        elif kind == "time":
            attempt.event_time.seconds = draw(st.sampled_from(SECONDS_EDGES))
            attempt.event_time.nanos = draw(st.sampled_from(NANOS_EDGES))
        else:
            attempt.ClearField("event_time")
    return attempt


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(changed_attempt(), min_size=1, max_size=4))
def test_grpc_table_accepts_iff_the_model_accepts_every_attempt(
    attempts: list[pb.Attempt],
) -> None:
    expected = per_attempt([message_to_dict(a) for a in attempts])
    assert_agree(grpc_outcome(attempts), expected)


JSON_EDGES: list[Any] = [
    *TEXT_EDGES, None, 0, 1, 12, -1, 1001, 2.0, 2.5, True, False, "1", "2", " 2 ", "12.5", "1e3",
    "nan", "inf", "true", "no", "on", "0", 10**30, [], {}, ["5411"],
    "2026-01-02T03:04:05Z", "2026-01-02T03:04:05", "2026-01-02T03:04:05.123456+02:00",
    "2026-01-02 03:04:05", "2026-01-02", "2026-02-30T00:00:00", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00", 1_700_000_000, 1_700_000_000_000, "1700000000",
]  # fmt: skip


@st.composite
def changed_json(draw: st.DrawFn) -> dict[str, Any]:
    attempt = dict(draw(st.sampled_from(BASE_JSON)))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*FIELDS, "extra"]))
        if draw(st.booleans()) and name in attempt:
            del attempt[name]
        else:
            attempt[name] = draw(st.sampled_from(JSON_EDGES))
    return attempt


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(changed_json(), min_size=1, max_size=4))
def test_http_table_accepts_iff_the_model_accepts_every_attempt(
    attempts: list[dict[str, Any]],
) -> None:
    # given attempts as decoded JSON, with values of any JSON type
    expected = per_attempt(attempts)
    body = json.dumps({"attempts": attempts})
    # when the request is validated as one table
    try:
        table: AttemptColumns | str = ScoreBatchRequest.model_validate_json(body).attempts
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        table = f"attempts[{loc[1]}].{'.'.join(map(str, loc[2:])) or 'previous_response_code'}"
    # then it agrees with the model, and HTTP's errors stay pydantic's (loc per field)
    assert_agree(table, expected)
    # and so does the validator on its own, naming the field itself
    try:
        direct: AttemptColumns | str = validate_rows(attempts)
    except ContractError as exc:
        direct = exc.column
    assert_agree(direct, expected)


def test_edge_values_the_table_accepts_are_exact() -> None:
    attempt: Any = pb.Attempt()
    attempt.CopyFrom(BASE[0])
    attempt.event_time.seconds, attempt.event_time.nanos = -62135596800, 999_999_999
    attempt.amount = -0.0
    table = grpc_outcome([attempt])
    assert isinstance(table, AttemptColumns)
    assert pd.Timestamp(table.columns["event_time"][0]) == pd.Timestamp(
        "0001-01-01T00:00:00.999999"
    )


def test_a_rejected_request_names_the_attempt_and_the_field_not_the_value() -> None:
    attempts = [pb.Attempt() for _ in range(6)]
    for attempt in attempts:
        attempt.CopyFrom(BASE[0])
    attempts[3].card_bin = "12"
    attempts[5].card_bin = "1x"
    with pytest.raises(ContractError) as caught:
        attempt_table(pb.ScoreBatchRequest(attempts=attempts))
    assert caught.value.column == "attempts[3].card_bin"
    assert caught.value.count == 2, "both bad attempts are counted"
    assert "'12'" not in str(caught.value), "request values stay out of errors (and logs)"


class Context:
    """A gRPC servicer context that records the abort."""

    code: grpc.StatusCode | None = None
    details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise RuntimeError("aborted")


class Model:
    """A model that records the size of every request it scores."""

    def __init__(self) -> None:
        self.scored: list[int] = []

    async def __call__(self, job: AttemptColumns) -> np.ndarray:
        self.scored.append(len(job))
        return np.zeros((len(job), 2))


def servicer(model: Model) -> ApprovalServicer:
    writer = OutcomeWriter(RedisSettings())  # never called here
    return ApprovalServicer(
        Gateway(Engine("v1", model, load_costs()), Admission(8), metrics(), writer)
    )


def test_score_batch_with_one_bad_attempt_is_refused_and_nothing_is_scored() -> None:
    # given a gateway whose model records every call, and a batch with one bad attempt
    model = Model()
    attempts = [pb.Attempt() for _ in range(4)]
    for attempt, base in zip(attempts, BASE, strict=False):
        attempt.CopyFrom(base)
    attempts[2].mcc = "54"
    context = Context()
    # when it is sent over gRPC
    with pytest.raises(RuntimeError, match="aborted"):
        asyncio.run(servicer(model).ScoreBatch(pb.ScoreBatchRequest(attempts=attempts), context))
    # then INVALID_ARGUMENT names the attempt and the field, and the model never ran
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "attempts[2].mcc" in context.details
    # and over HTTP, the request model refuses it naming the same field (BentoML: 400)
    rows = [message_to_dict(a) for a in attempts]
    for row in rows:
        row["event_time"] = row["event_time"].isoformat()
    with pytest.raises(ValidationError) as refused:
        ScoreBatchRequest.model_validate_json(json.dumps({"attempts": rows}))
    assert [e["loc"] for e in refused.value.errors()] == [("attempts", 2, "mcc")]
    assert model.scored == [], "nothing was scored"


def test_requests_of_no_attempt_or_too_many_are_refused_by_name() -> None:
    model, context = Model(), Context()
    for request in (pb.ScoreBatchRequest(), pb.ScoreBatchRequest(attempts=BASE * 26)):
        with pytest.raises(RuntimeError, match="aborted"):
            asyncio.run(servicer(model).ScoreBatch(request, context))
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT
        assert context.details.startswith("attempts: List should have")
    assert len(BASE) * 26 > MAX_BATCH and model.scored == []


def test_a_valid_batch_is_scored_as_one_request() -> None:
    model, context = Model(), Context()
    answer = asyncio.run(servicer(model).ScoreBatch(pb.ScoreBatchRequest(attempts=BASE), context))
    assert model.scored == [len(BASE)], "one table through the engine"
    assert [s.attempt_id for s in answer.scores] == list(BASE_ROWS["attempt_id"])
