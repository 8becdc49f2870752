"""Contract rows as request bodies: HTTP JSON objects and ``approval.v1.Attempt`` messages.

Shared by the tests, the serving benchmark and the demo, so they all send the same requests.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pandas as pd

from dev.stubs import grpc_stubs

OPTIONAL = ("previous_response_code", "merchant_advice_code")


def attempt_json(row: pd.Series) -> dict[str, object]:
    """One contract row (naive UTC ``event_time``) as the JSON object of an HTTP request."""
    out: dict[str, object] = {}
    for name, value in row.items():
        if name == "event_time":
            out[name] = pd.Timestamp(value).tz_localize("UTC").isoformat()
        elif value is None or (isinstance(value, float) and pd.isna(value)):
            continue
        elif hasattr(value, "item"):
            out[str(name)] = value.item()
        else:
            out[str(name)] = value
    return out


def attempt_message(row: pd.Series) -> Any:
    """One contract row (labels dropped) as an ``approval.v1.Attempt``."""
    pb, _ = grpc_stubs()
    fields = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    when = pd.Timestamp(fields.pop("event_time")).tz_localize("UTC").to_pydatetime()
    for name in OPTIONAL:
        if fields.get(name) is None or (isinstance(fields.get(name), float)):
            fields.pop(name, None)
    message = pb.Attempt(**fields)
    message.event_time.FromDatetime(when.astimezone(UTC))
    return message


LABELS = ("approved", "response_code")


def outcome_json(row: pd.Series) -> dict[str, object]:
    """One labelled contract row as an outcome of an HTTP ``/report_outcomes`` body."""
    return {
        "attempt": attempt_json(row.drop(list(LABELS))),
        "approved": bool(row["approved"]),
        "response_code": str(row["response_code"]),
    }


def outcome_message(row: pd.Series) -> Any:
    """One labelled contract row as an ``approval.v1.Outcome``."""
    pb, _ = grpc_stubs()
    return pb.Outcome(
        attempt=attempt_message(row.drop(list(LABELS))),
        approved=bool(row["approved"]),
        response_code=str(row["response_code"]),
    )
