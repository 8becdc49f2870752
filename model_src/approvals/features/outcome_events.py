"""Outcome events: one report per message, decoded and checked alone, applied as one batch.

Transport-neutral on purpose: :class:`OutcomeApplier` knows nothing of Redis Streams. A
transport hands it the reports it read, each with its own reference (here a stream entry id;
for a Kafka/MSK consumer a ``(topic, partition, offset)``), and gets back which references it
may now acknowledge: the applied, the duplicates, the late ones, and the rejected, which it
must first put on its dead-letter destination. Nothing is acknowledged when the batch could not
be applied (the call raises): the transport keeps them and tries again, which is safe because
the store counts each ``attempt_id`` once per feature version.

An event is the JSON of one report in the API's shape (``ReportOutcomes``)::

    {"attempt": {<contract attempt fields>}, "approved": false, "response_code": "51",
     "merchant_advice_code": "02"}

A batch is validated as one table (the fast path). Only when that fails is each report checked
alone, so a bad one names its own field (``attempt.card_bin: ...``) and never holds back the
good ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from approvals.contract import AttemptColumns
from approvals.errors import ContractError
from approvals.features.outcomes import ApplyResult, OutcomeWriter, validate_reports

__all__ = [
    "EVENT_FIELD",
    "DecodeError",
    "Handled",
    "OutcomeApplier",
    "Rejected",
    "check_reports",
    "decode_event",
    "event_error",
]

EVENT_FIELD = "outcome"  # the stream entry's field (or the Kafka message value) holding the JSON
Ref = TypeVar("Ref")
_ONE = re.compile(r"^outcomes\[\d+\]\.?")


@dataclass(frozen=True)
class Rejected(Generic[Ref]):
    """An event that cannot be applied, ever: dead-letter it, then acknowledge it.

    Attributes:
        ref: the transport's reference of the event.
        error: the field and what is wrong with it (``attempt.card_bin: ...``); never a value.
    """

    ref: Ref
    error: str


@dataclass(frozen=True)
class Handled(Generic[Ref]):
    """What one batch did, and what the transport must do next.

    Attributes:
        result: the store's answer for the valid events (applied, duplicates, late).
        applied: references of the valid events, in order (``result.statuses`` matches them).
        rejected: the events to dead-letter.
    """

    result: ApplyResult
    applied: list[Ref] = field(default_factory=list)
    rejected: list[Rejected[Ref]] = field(default_factory=list)

    @property
    def ack(self) -> list[Ref]:
        """Every reference of the batch: all may be acknowledged once the rejected are
        dead-lettered."""
        return [*self.applied, *(r.ref for r in self.rejected)]


class DecodeError(ValueError):
    """An event that is not the JSON of a report (its message names the field, not a value)."""


def decode_event(payload: bytes | str | None) -> Any:
    """The report an event carries, as JSON decodes it (checked later).

    Raises:
        DecodeError: the field is absent, not UTF-8 or not JSON.
    """
    if payload is None:
        raise DecodeError(f"{EVENT_FIELD}: missing field")
    try:
        text = payload.decode() if isinstance(payload, bytes) else payload
    except UnicodeDecodeError:
        raise DecodeError(f"{EVENT_FIELD}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # the message has a position, never the text
        raise DecodeError(f"{EVENT_FIELD}: not JSON ({exc.msg} at char {exc.pos})") from None


def event_error(exc: ContractError) -> str:
    """A single report's contract error as its event's error: ``outcomes[0].attempt.card_bin``
    becomes ``attempt.card_bin`` (``outcome`` for the report itself)."""
    where = _ONE.sub("", exc.column) or EVENT_FIELD
    return f"{where}: {exc.problem}"


def check_reports(
    items: Sequence[tuple[Ref, Any]],
) -> tuple[AttemptColumns | None, list[Ref], list[Rejected[Ref]]]:
    """The valid reports as one validated table, their references, and the rejected ones.

    Args:
        items: ``(reference, decoded report)`` pairs, at most the store's batch size.
    """
    if not items:
        return None, [], []
    try:
        return validate_reports([report for _, report in items]), [r for r, _ in items], []
    except ContractError:
        pass  # at least one is bad: check each alone, so each error is its own
    good: list[tuple[Ref, AttemptColumns]] = []
    rejected: list[Rejected[Ref]] = []
    for ref, report in items:
        try:
            good.append((ref, validate_reports([report])))
        except ContractError as exc:
            rejected.append(Rejected(ref, event_error(exc)))
    columns = AttemptColumns.concat([c for _, c in good]) if good else None
    return columns, [ref for ref, _ in good], rejected


class OutcomeApplier(Generic[Ref]):
    """Checks a batch of decoded reports and applies the valid ones in one atomic call.

    Used by the Redis Streams worker (:mod:`approvals.features.consumer`); a Kafka/MSK
    consumer would use it as is, acknowledging by committing offsets and dead-lettering to a
    topic.
    """

    def __init__(self, writer: OutcomeWriter) -> None:
        self.writer = writer

    async def apply(self, items: Sequence[tuple[Ref, Any]]) -> Handled[Ref]:
        """Check every report, apply the valid ones (:meth:`OutcomeWriter.apply`).

        Raises:
            UserError: there is no live feature version (or it has other definitions).
            redis.RedisError, TimeoutError: the store failed; nothing may be acknowledged.
        """
        columns, refs, rejected = check_reports(items)
        if columns is None:
            return Handled(ApplyResult(0, 0, 0, "", ""), [], rejected)
        return Handled(await self.writer.apply(columns), refs, rejected)
