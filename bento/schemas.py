"""Request and response models of the API, shared by HTTP (JSON) and gRPC (protobuf).

The attempt itself is :class:`approvals.contract.Attempt` (the data contract without labels);
these models only add what each call needs. ``hide_input_in_errors`` keeps request values
(card fingerprints, BINs) out of error messages and therefore out of logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, model_validator
from pydantic_core import PydanticCustomError, core_schema

from approvals.contract import Attempt, AttemptColumns, validate_rows
from approvals.decisions.retries import (
    DEFAULT_DELAYS,
    DeclineContext,
    RetryOption,
    default_retry_options,
)
from approvals.errors import ContractError
from approvals.features.outcomes import validate_reports
from approvals.serving.engine import columns_of, decline_context

MAX_BATCH = 1000
MAX_ROUTES = 32
MAX_DELAYS = 16
RouteId = Annotated[str, Field(min_length=1, max_length=128)]
Probability = Annotated[float, Field(ge=0, le=1)]


def openapi30_nullable(schema: dict[str, Any]) -> None:
    """Write ``T | None`` fields the OpenAPI 3.0 way: ``{type: T, nullable: true}``.

    Pydantic emits JSON Schema's ``anyOf: [T, {type: null}]``; BentoML publishes the spec as
    OpenAPI 3.0.2, where ``type: null`` does not exist, so clients (and schemathesis) read such
    a field as a plain ``T`` and reject the ``null`` it carries.
    """
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf", [])
        if {"type": "null"} in options and len(options) == 2:
            (kind,) = (o for o in options if o != {"type": "null"})
            del prop["anyOf"]
            prop.update(kind, nullable=True)


class Request(BaseModel):
    """Base of every request: strict about unknown keys, silent about input values."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True,
        json_schema_extra=openapi30_nullable,
    )  # fmt: skip


class Answer(BaseModel):
    """Base of every response: the model version, whether features were degraded, and the
    experiment arm that answered."""

    model_config = ConfigDict(json_schema_extra=openapi30_nullable)

    model_version: str
    degraded: bool
    variant: str  # the arm that answered: champion, challenger or holdout


class ScoreRequest(Request):
    """One attempt to score."""

    attempt: Attempt


class ScoreResponse(Answer):
    """The calibrated approval probability of one attempt."""

    attempt_id: str
    p_approve: Probability


@dataclass(frozen=True)
class TableBatch:
    """A list of request items (in JSON, and in the schema), validated as one table.

    The whole list goes through a vectorised contract validator (``table``: attempts by
    :func:`approvals.contract.validate_rows`, outcomes by
    :func:`approvals.features.outcomes.validate_reports`) and becomes :class:`AttemptColumns`;
    only a list it rejects is validated item by item as ``list[item]``, for pydantic's usual
    errors, which name every bad field (``attempts.3.card_bin``,
    ``outcomes.3.attempt.card_bin``). A rule across fields that pydantic does not see
    (``response_code`` disagreeing with ``approved``) is named by the contract
    (``outcomes[3].response_code``).
    """

    item: type[BaseModel]
    table: Callable[[list[Any]], AttemptColumns]
    max_length: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate with :meth:`_validate` around the schema of ``list[item]``."""
        rows = Annotated[list[self.item], Field(min_length=1, max_length=self.max_length)]
        return core_schema.no_info_wrap_validator_function(
            self._validate, handler.generate_schema(rows)
        )

    def _validate(self, value: Any, rows: core_schema.ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, AttemptColumns):
            return value
        if not (isinstance(value, list) and 0 < len(value) <= self.max_length) or not all(
            isinstance(row, dict) for row in value
        ):
            return _items_table(rows(value))  # raises, naming what is wrong (or models given)
        try:
            return self.table(value)
        except ContractError as exc:
            rows(value)  # raises, naming every bad field
            raise PydanticCustomError("contract", str(exc)) from exc


def _items_table(items: list[BaseModel]) -> AttemptColumns:
    """Validated models given instead of JSON objects (``ScoreBatchRequest(attempts=[...])``)."""
    if all(isinstance(i, Attempt) for i in items):
        return columns_of(items)
    return validate_reports([i.model_dump() for i in items])


class ScoreBatchRequest(Request):
    """Attempts to score together (1 to 1000)."""

    # validated as one table (see TableBatch); the docstring is the OpenAPI description
    attempts: Annotated[AttemptColumns, TableBatch(Attempt, validate_rows, MAX_BATCH)]


class AttemptScore(BaseModel):
    """One attempt's probability inside a batch answer."""

    attempt_id: str
    p_approve: Probability
    variant: str  # this attempt's arm


class ScoreBatchResponse(Answer):
    """Probabilities in request order (``variant``: the arm of every attempt, or ``mixed``)."""

    scores: list[AttemptScore]


class RankRoutesRequest(Request):
    """An attempt and the routes it could be sent through."""

    attempt: Attempt
    route_ids: Annotated[list[RouteId], Field(min_length=1, max_length=MAX_ROUTES)]


class RankedRouteOut(BaseModel):
    """A candidate route with its probability and expected value."""

    route_id: str
    p_approve: Probability
    expected_value: float


class RankRoutesResponse(Answer):
    """Routes, best expected value first."""

    routes: list[RankedRouteOut]


class AdviseRetryRequest(Request):
    """A declined attempt, its decline and retry history, and the options to consider.

    ``route_ids`` defaults to the declined attempt's route and ``delays_hours`` to the
    service's grid; every route x delay is considered with and without 3DS.
    """

    attempt: Attempt
    response_code: Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]
    merchant_advice_code: Annotated[str, Field(pattern=r"^[0-9]{2}$")] | None = None
    reattempts_in_window: Annotated[int, Field(ge=0, le=1000)] = 0
    declines_24h: Annotated[int, Field(ge=0, le=1000)] = 1
    hours_since_decline: Annotated[float, Field(ge=0, le=24 * 365, allow_inf_nan=False)] = 0.0
    route_ids: Annotated[list[RouteId], Field(max_length=MAX_ROUTES)] = []
    delays_hours: Annotated[
        list[Annotated[float, Field(ge=0, le=24 * 60, allow_inf_nan=False)]],
        Field(max_length=MAX_DELAYS),
    ] = []

    @model_validator(mode="after")
    def _is_a_decline(self) -> AdviseRetryRequest:
        self.decline()  # raises a ValueError naming response_code for an approval code
        return self

    def decline(self) -> DeclineContext:
        """The decline as :mod:`approvals.decisions.retries` sees it."""
        try:
            return decline_context(
                self.attempt, self.response_code, self.merchant_advice_code,
                self.reattempts_in_window, self.declines_24h, self.hours_since_decline,
            )  # fmt: skip
        except ValueError as exc:
            raise ValueError(f"response_code: {self.response_code} is not a decline") from exc

    def options(self) -> list[RetryOption]:
        """Candidate retry options: routes x delays x (without, with 3DS)."""
        routes = self.route_ids or [self.attempt.route_id]
        delays = self.delays_hours or list(DEFAULT_DELAYS)
        return default_retry_options(routes, tuple(dict.fromkeys(delays)))


class AdviseRetryResponse(Answer):
    """Stop, or retry with a route, a delay and corrections."""

    action: Literal["stop", "retry"]
    reason: str
    route_id: str | None = None
    delay_hours: float | None = None
    with_3ds: bool = False
    with_network_token: bool = False
    p_approve: Probability | None = None
    expected_value: float | None = None


class Outcome(Request):
    """What the issuer answered to one attempt, as it was scored."""

    attempt: Attempt
    approved: bool
    response_code: Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]
    merchant_advice_code: Annotated[str, Field(pattern=r"^[0-9]{2}$")] | None = None


class ReportOutcomesRequest(Request):
    """Outcomes of scored attempts (1 to 1000), applied all or nothing, once per attempt_id."""

    # validated as one table (see TableBatch); the docstring is the OpenAPI description
    outcomes: Annotated[AttemptColumns, TableBatch(Outcome, validate_reports, MAX_BATCH)]


class ReportOutcomesResponse(BaseModel):
    """What the call did: outcomes counted now, repeats ignored, outcomes too old to count."""

    applied: int
    duplicates: int
    late: int
