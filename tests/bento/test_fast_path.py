"""The ScoreBatch bulk check: it takes only what per-attempt validation accepts unchanged.

:func:`grpc_server.attempt_table` validates a whole request in bulk instead of one pydantic
model per attempt. It may send any request back to the per-attempt path (None), but when it
answers, its table must be exactly what validating attempt by attempt gives, and it must
never accept a request that per-attempt validation rejects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from approval.v1 import approval_pb2 as pb
from grpc_server import attempt_table, message_to_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemas import ScoreBatchRequest

from approvals.contract import validate_frame
from approvals.serving.engine import columns_of
from dev.requests import attempt_message
from tests.approvals.factories import random_attempts

TEXT_EDGES = [
    "", " ", "1234", " 1234", "1234 ", "1234\n", "１２３４", "12", "51", "5", " 51", "N7", "n7",
    "US", "us", "USD", "411111", "41111111", "411111111", "visa", "VISA", "visa\u00a0", "credit",
    "ecommerce", "none", "challenge", "route-a", "\x1froute", "route\x1f", "a\x00 b", "x" * 128,
    "x" * 129, "商户", "\u2003id",
]  # fmt: skip
NUMBER_EDGES = [0, 1, 2, 1000, 1001, -1]
AMOUNT_EDGES = [0.0, -0.0, 12.5, -1.0, float("nan"), float("inf"), 1e308]
SECONDS_EDGES = [0, 1, 1_700_000_000, -62135596800, -62135596801, 253402300799, 253402300800]
NANOS_EDGES = [0, 1, 999_999_999, 1_000_000_000, -1]
TEXT_FIELDS = [
    f.name for f in pb.Attempt.DESCRIPTOR.fields
    if f.type == f.TYPE_STRING and f.name not in ("previous_response_code", "merchant_advice_code")
]  # fmt: skip


def valid_attempts(count: int) -> list[pb.Attempt]:
    frame = validate_frame(random_attempts(count, seed=3, days=5), labels=True)
    rows = frame.drop(columns=["approved", "response_code"])
    return [attempt_message(row) for _, row in rows.iterrows()]


BASE = valid_attempts(40)


def per_attempt(request: pb.ScoreBatchRequest) -> tuple[list[str], dict[str, np.ndarray]] | None:
    """What per-attempt validation gives: attempt ids and columns, or None when it rejects."""
    try:
        parsed = ScoreBatchRequest.model_validate(message_to_dict(request))
    except ValidationError:
        return None
    return [a.attempt_id for a in parsed.attempts], columns_of(parsed.attempts)


def assert_same_columns(left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> None:
    assert left.keys() == right.keys()
    for name, values in left.items():
        assert values.dtype == right[name].dtype, name
        if values.dtype == object:
            assert values.tolist() == right[name].tolist(), name
        else:
            np.testing.assert_array_equal(values, right[name], err_msg=name)


def test_plainly_valid_requests_take_the_bulk_path_with_identical_columns() -> None:
    request = pb.ScoreBatchRequest(attempts=valid_attempts(1000))
    table = attempt_table(request)
    expected = per_attempt(request)
    assert table is not None and expected is not None, "valid attempts must take the bulk path"
    assert table.attempt_ids == expected[0]
    assert_same_columns(table.columns, expected[1])
    assert sum(a.HasField("previous_response_code") for a in request.attempts) > 0


def test_requests_of_no_attempt_or_too_many_are_left_to_per_attempt_validation() -> None:
    assert attempt_table(pb.ScoreBatchRequest()) is None
    assert attempt_table(pb.ScoreBatchRequest(attempts=BASE * 26)) is None  # 1040 > 1000


@st.composite
def changed_attempt(draw: st.DrawFn) -> pb.Attempt:
    attempt = pb.Attempt()
    attempt.CopyFrom(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["text", "code", "number", "amount", "time", "unset"]))
        if kind == "text":
            setattr(attempt, draw(st.sampled_from(TEXT_FIELDS)), draw(st.sampled_from(TEXT_EDGES)))
        elif kind == "code":
            name = draw(st.sampled_from(["previous_response_code", "merchant_advice_code"]))
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


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(changed_attempt(), min_size=1, max_size=4))
def test_the_bulk_path_accepts_only_what_per_attempt_validation_accepts_unchanged(
    attempts: list[pb.Attempt],
) -> None:
    request = pb.ScoreBatchRequest(attempts=attempts)
    table = attempt_table(request)
    expected = per_attempt(request)
    if table is None:
        return  # per-attempt validation decides (and names the field when it rejects)
    assert expected is not None, "the bulk path accepted a request validation rejects"
    assert table.attempt_ids == expected[0]
    assert_same_columns(table.columns, expected[1])


def test_edge_values_the_bulk_path_accepts_are_exact() -> None:
    attempt: Any = pb.Attempt()
    attempt.CopyFrom(BASE[0])
    attempt.event_time.seconds, attempt.event_time.nanos = -62135596800, 999_999_999
    attempt.amount = -0.0
    request = pb.ScoreBatchRequest(attempts=[attempt])
    table, expected = attempt_table(request), per_attempt(request)
    assert table is not None and expected is not None
    assert_same_columns(table.columns, expected[1])
    assert pd.Timestamp(table.columns["event_time"][0]) == pd.Timestamp(
        "0001-01-01T00:00:00.999999"
    )
