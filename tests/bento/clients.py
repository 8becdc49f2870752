"""Client-side helpers: contract rows as gRPC messages, a channel to the served service."""

from __future__ import annotations

from datetime import UTC

import pandas as pd
from approval.v1 import approval_pb2 as pb

OPTIONAL = ("previous_response_code", "merchant_advice_code")


def attempt_message(row: pd.Series) -> pb.Attempt:
    """One contract row (labels dropped) as an ``approval.v1.Attempt``."""
    fields = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    when = pd.Timestamp(fields.pop("event_time")).tz_localize("UTC").to_pydatetime()
    for name in OPTIONAL:
        if fields.get(name) is None or (isinstance(fields.get(name), float)):
            fields.pop(name, None)
    message = pb.Attempt(**fields)
    message.event_time.FromDatetime(when.astimezone(UTC))
    return message
