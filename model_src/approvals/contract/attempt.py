"""One attempt of an online request as a pydantic model (the contract without label columns).

Single requests (Score, RankRoutes, AdviseRetry) are validated with it, and batches that the
vectorised validator rejects are described with it, so every error names the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from approvals.contract.columns import (
    ADVICE_RE,
    BIN_RE,
    CODE_RE,
    COUNTRY_RE,
    CURRENCY_RE,
    MAX_ATTEMPT_NUMBER,
    MAX_ID_LENGTH,
    MCC_RE,
)

NonEmpty = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class Attempt(BaseModel):
    """One authorization attempt to score (the contract without label columns)."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    attempt_id: NonEmpty
    payment_id: NonEmpty
    event_time: datetime
    merchant_id: NonEmpty
    mcc: Annotated[str, Field(pattern=MCC_RE)]
    merchant_country: Annotated[str, Field(pattern=COUNTRY_RE)]
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    currency: Annotated[str, Field(pattern=CURRENCY_RE)]
    card_fingerprint: NonEmpty
    card_bin: Annotated[str, Field(pattern=BIN_RE)]
    card_brand: Literal["visa", "mastercard", "amex", "discover", "jcb", "unionpay", "other"]
    card_type: Literal["credit", "debit", "prepaid"]
    issuer_country: Annotated[str, Field(pattern=COUNTRY_RE)]
    channel: Literal["ecommerce", "recurring", "in_app", "moto"]
    three_ds: Literal["none", "frictionless", "challenge"]
    network_token: bool
    route_id: NonEmpty
    attempt_number: Annotated[int, Field(ge=1, le=MAX_ATTEMPT_NUMBER)]
    previous_response_code: Annotated[str, Field(pattern=CODE_RE)] | None = None
    merchant_advice_code: Annotated[str, Field(pattern=ADVICE_RE)] | None = None

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # a ValueError names the field; OverflowError would be a 500
            raise ValueError("outside the supported range once in UTC") from None

    @field_validator("previous_response_code", "merchant_advice_code", mode="before")
    @classmethod
    def _empty_is_null(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _first_try_has_no_previous_code(self) -> Attempt:
        if self.attempt_number == 1 and self.previous_response_code is not None:
            raise ValueError("previous_response_code must be null when attempt_number is 1")
        return self
