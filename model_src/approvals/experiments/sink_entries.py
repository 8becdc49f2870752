"""The decision stream (docs/decisions.md) as the sink reads it: entries and feature names.

Each entry has the fields ``kind`` (``decision`` or ``outcome``) and ``data`` (one JSON object).
:func:`parse_entry` checks one against the pydantic models below, attempts by the contract's
:class:`~approvals.contract.Attempt`, and returns the columns of its row; a bad entry raises
:class:`BadEntryError`, whose message names the field and never repeats the payload.
:class:`FeatureNames` reads the names of each model version's feature vector (a hash beside
the stream).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from approvals.codes import is_approved
from approvals.contract import FEATURE_COLUMNS, Attempt
from approvals.contract.columns import ADVICE_RE, CODE_RE, MAX_ID_LENGTH

if TYPE_CHECKING:
    import redis

__all__ = [
    "RETRY_COLUMNS",
    "BadEntryError",
    "DecisionEntry",
    "FeatureNames",
    "OutcomeEntry",
    "Parsed",
    "id_order",
    "parse_entries",
    "parse_entry",
]

RETRY_COLUMNS = ("retry_action", "retry_reason", "retry_route_id", "retry_delay_hours")
Kind = Literal["decision", "outcome"]
Text = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class BadEntryError(ValueError):
    """An entry that cannot become a row (the message names the field, not the payload)."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # a ValueError is a bad field; an OverflowError would stop the sink
        raise ValueError("outside the supported range once in UTC") from None


class RetryAdvice(BaseModel):
    """The ``retry`` object of an ``advise_retry`` decision."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    action: Text
    reason: str | None = None
    route_id: str | None = None
    delay_hours: float | None = Field(default=None, allow_inf_nan=False)


class DecisionEntry(BaseModel):
    """The ``data`` of a ``decision`` entry."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoint: Literal["score", "score_batch", "rank_routes", "advise_retry"]
    variant: Text
    model_version: str | None = None
    decided_at: datetime
    degraded: bool
    p_approve: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None
    attempt: Attempt
    retry: RetryAdvice | None = None
    shadow: bool = False
    features: list[float | None] = Field(default_factory=list)

    @field_validator("decided_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return _utc(value)


class OutcomeEntry(BaseModel):
    """The ``data`` of an ``outcome`` entry."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    attempt_id: Text
    payment_id: Text
    approved: bool
    response_code: Annotated[str, Field(pattern=CODE_RE)]
    merchant_advice_code: Annotated[str, Field(pattern=ADVICE_RE)] | None = None
    reported_at: datetime

    @field_validator("reported_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return _utc(value)


@dataclass(frozen=True)
class Parsed:
    """One good entry as a row.

    Attributes:
        kind: ``decision`` or ``outcome``.
        entry_id: the stream id (``<ms>-<seq>``).
        at: ``decided_at`` or ``reported_at`` (UTC): the hour partition it goes to.
        row: its column values, features aside.
        model_version: the version whose feature names ``features`` follows.
        features: the feature vector (None for NaN); empty when not logged.
    """

    kind: Kind
    entry_id: str
    at: datetime
    row: dict[str, Any]
    model_version: str | None = None
    features: tuple[float | None, ...] = ()


def parse_entry(entry_id: str, fields: dict[bytes, bytes] | None) -> Parsed:
    """Check one stream entry and return its row.

    Raises:
        BadEntryError: an entry deleted while pending, a missing or unknown ``kind``, ``data``
            not a JSON object, or a bad field.
    """
    if not fields:  # trimmed from the stream while pending: Redis returns the id alone
        raise BadEntryError("entry: deleted from the stream before it was written")
    kind = fields.get(b"kind", b"").decode("utf-8", "replace")
    if kind not in ("decision", "outcome"):
        raise BadEntryError(f"kind: expected 'decision' or 'outcome' (got {kind[:20]!r})")
    data = _json_object(fields.get(b"data"))
    try:
        if kind == "decision":
            return _decision(entry_id, DecisionEntry.model_validate(data))
        return _outcome(entry_id, OutcomeEntry.model_validate(data))
    except ValidationError as exc:
        raise BadEntryError(_problem(exc)) from None


def _json_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise BadEntryError("data: missing field")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadEntryError("data: not JSON") from None
    if not isinstance(data, dict):
        raise BadEntryError(f"data: expected a JSON object (got {type(data).__name__})")
    return data


def _problem(exc: ValidationError) -> str:
    """The first error's field and message, without the offending value."""
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "data"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _decision(entry_id: str, entry: DecisionEntry) -> Parsed:
    row = {name: getattr(entry.attempt, name) for name in FEATURE_COLUMNS}
    row.update(
        p_approve=entry.p_approve, model_version=entry.model_version, variant=entry.variant,
        endpoint=entry.endpoint, decided_at=entry.decided_at, degraded=entry.degraded,
        shadow=entry.shadow,
    )  # fmt: skip
    row.update(_retry_columns(entry.retry), entry_id=entry_id)
    features = tuple(entry.features)
    return Parsed("decision", entry_id, entry.decided_at, row, entry.model_version, features)


def _retry_columns(retry: RetryAdvice | None) -> dict[str, Any]:
    if retry is None:
        return dict.fromkeys(RETRY_COLUMNS)
    values = (retry.action, retry.reason, retry.route_id, retry.delay_hours)
    return dict(zip(RETRY_COLUMNS, values, strict=True))


def _outcome(entry_id: str, entry: OutcomeEntry) -> Parsed:
    if entry.approved != is_approved(entry.response_code):
        raise BadEntryError("response_code: disagrees with 'approved'")
    row = {**entry.model_dump(), "entry_id": entry_id}
    return Parsed("outcome", entry_id, entry.reported_at, row)


def parse_entries(
    entries: Mapping[bytes, dict[bytes, bytes] | None],
) -> tuple[list[Parsed], list[tuple[bytes, str]]]:
    """Every entry checked: the rows of the good ones, and the id and problem of each bad one."""
    parsed: list[Parsed] = []
    bad: list[tuple[bytes, str]] = []
    for entry_id, fields in entries.items():
        try:
            parsed.append(parse_entry(entry_id.decode(), fields))
        except BadEntryError as exc:
            bad.append((entry_id, str(exc)))
    return parsed, bad


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream id's sort key (``<ms>-<seq>`` compared as numbers, not as text)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class FeatureNames:
    """The feature names of each model version (hash ``{prefix}:decisions:features``), cached."""

    def __init__(self, conn: redis.Redis, key: str) -> None:
        self.conn, self.key = conn, key
        self.known: dict[str, tuple[str, ...]] = {}

    def lookup(self, versions: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """The names of every known version; unknown ones are asked for (again) first."""
        if missing := sorted({v for v in versions if v not in self.known}):
            for version, raw in zip(missing, self.conn.hmget(self.key, missing), strict=True):
                if (names := _names(raw)) is not None:
                    self.known[version] = names
        return self.known


def _names(raw: bytes | str | None) -> tuple[str, ...] | None:
    """A JSON list of names, or None when absent or anything else."""
    try:
        names = json.loads(raw) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None
