"""Live outcomes: labelled attempts applied to the live online version, as materialize would.

:func:`apply_outcomes` validates a batch of labelled attempts (contract rows), adds up in numpy
what the batch brings to every family key it touches (the lifetime sums; per tile group, for
each tile the batch touches, the sums of that tile and every later one; for cards the last
outcome's time and code) and sends that in one ``EVALSHA`` of :data:`APPLY_SCRIPT`. The script
resolves the live version (``{prefix}:current``) itself, finds which attempts that version has
not seen (a marker per ``attempt_id``) and are not late, and, when those are the ones the sums
were made for, merges the sums into each key: a stored tile gains the batch's sums from its
start on (tiles hold suffix sums, see :mod:`approvals.features.tiles`), a new tile those plus
the stored sums after it; only the counters of a record are unpacked and packed again. When it
finds duplicates or late outcomes the call did not expect, it writes nothing and says which:
a second call carries the sums of the others (:meth:`Prepared.again`). Readers then answer, for
any request after every outcome applied, exactly what the offline SQL gives on the history plus
these outcomes (integer counters bit for bit; the ``*slog`` sums are added in another order, so
they agree to rounding).

- **All or nothing**: the script reads and checks everything before its first write, so a bad
  stored value or a failing command leaves the version untouched (a Lua script is not rolled
  back: nothing may fail after the first write, and nothing does).
- **Ageing**: the reference time is the newest event time the version knows (its state end,
  the newest outcome applied, this batch). A rewritten key drops tiles no request after it can
  read (older than the family's longest window of that tile size, as materialize drops them).
  An outcome older than the oldest tile any family keeps (7 days, aligned to 6-hour tiles) is
  ``late``: ignored, so every family's lifetime stays consistent and no marker has to outlive
  the window. New keys expire with the pointer (its PTTL), rewritten ones keep their TTL.
- **Readers**: each write bumps the meta field ``gen``, which the online reader holds shared
  values under, so a write is seen by the next read.

Measured on the 2-core dev machine against redis-server 7.0 (``make bench-outcomes``;
docs/serving.md, "Live outcomes"): batches of 500 apply at about 9,000 outcomes/s (53 to 55 ms
a batch, 11 to 12 ms of it in Python; 35x the same run's round-trip floor; before this merge
2,900 to 3,400 outcomes/s, 112 to 116x), a batch touching about 1,900 keys and 12,600 stored
records. MEMORY USAGE per key is unchanged, mean: card 589 B, bin_route 574 B, bin 1,020 B,
lifetime-only families about 210 B; a dedup marker 120 B. At about 3 attempts per card a week
that is about 1 GB per million cards (card keys and markers).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from approvals.contract import COLUMNS, MISSING, AttemptColumns, validate_request
from approvals.contract.table import Decoded, Rules, check
from approvals.errors import ContractError, UserError
from approvals.features.outcome_script import (
    APPLY_SCRIPT,
    FINITE,
    SHA,
    outcome_counters,
    script_args,
)
from approvals.features.versions import DEFAULT_TTL, client

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from approvals.features.redis_settings import RedisSettings

__all__ = [
    "APPLY_SCRIPT",
    "FINITE",
    "MAX_BATCH",
    "SHA",
    "ApplyResult",
    "OutcomeWriter",
    "apply_outcomes",
    "outcome_counters",
    "prepare",
    "script_args",
    "validate_outcomes",
    "validate_reports",
]

MAX_BATCH = 1000
MARKER_TTL = DEFAULT_TTL  # a version's keys live this long by default; markers as long
_TRIES = 5  # script calls per batch: statuses that keep changing mean concurrent writers
LABELLED = Rules(limits=True, unique_ids=False, labels=True)  # repeats are duplicates, not errors


@dataclass(frozen=True)
class ApplyResult:
    """What one batch of outcomes did.

    Attributes:
        applied: outcomes counted now.
        duplicates: outcomes whose ``attempt_id`` this version had counted (or that repeat an
            earlier one of the batch): ignored.
        late: outcomes older than every tile still kept: ignored.
        version: the version written to ("" when the batch was empty).
        statuses: per outcome, in order: ``a`` applied, ``d`` duplicate, ``l`` late.
    """

    applied: int
    duplicates: int
    late: int
    version: str
    statuses: str


def validate_outcomes(
    rows: Sequence[Mapping[str, Any]], where: str = "outcomes", now: datetime | None = None
) -> AttemptColumns:
    """Labelled attempts (contract rows) checked by the contract's one validator, and none
    later than :data:`MAX_AHEAD` after ``now`` (default: the wall clock).

    An outcome from the future would move the store's reference time ahead and age out every
    tile a correct outcome still needs: refused, not applied.

    Raises:
        ContractError: naming ``where[i].field`` of the first bad outcome and how many are bad.
    """
    columns = {name: [r.get(name, MISSING) for r in rows] for name in _REQUEST_FIELDS}
    attempts = validate_request(columns, where=where, row=rows.__getitem__)
    decoded = {name: Decoded(values) for name, values in attempts.columns.items()}
    decoded["approved"] = _decode_bools([r.get("approved", MISSING) for r in rows])
    decoded["response_code"] = _decode_codes([r.get("response_code", MISSING) for r in rows])
    for column, problem, bad in check(decoded, LABELLED):
        if bad is not None and bad.any():
            first = int(np.argmax(bad))
            raise ContractError(f"{where}[{first}].{column}", problem, int(bad.sum()))
    limit = np.datetime64((now or datetime.now(UTC)).replace(tzinfo=None) + MAX_AHEAD, "us")
    ahead = decoded["event_time"].values > limit
    if ahead.any():
        first = int(np.argmax(ahead))
        problem = f"more than {MAX_AHEAD} after the service's clock (clock skew?)"
        raise ContractError(f"{where}[{first}].event_time", problem, int(ahead.sum()))
    return AttemptColumns({name: d.values for name, d in decoded.items()})


MAX_AHEAD = timedelta(minutes=5)  # clock skew allowed between a producer and the service


_REQUEST_FIELDS = tuple(c.name for c in COLUMNS if c.need != "label")


def _decode_bools(values: list[Any]) -> Decoded:
    """``approved`` as pydantic's lax bool reads it (JSON and protobuf carry a bool)."""
    out, unreadable = np.zeros(len(values), bool), np.zeros(len(values), bool)
    for i, value in enumerate(values):
        try:
            out[i] = value if type(value) is bool else _BOOL.validate_python(value)
        except ValidationError:
            unreadable[i] = True
    return Decoded(out, unreadable)


_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def _decode_codes(values: list[Any]) -> Decoded:
    """``response_code`` as text, stripped (anything else is missing)."""
    unreadable = np.array([type(v) is not str for v in values], dtype=bool)
    texts = np.empty(len(values), dtype=object)
    texts[:] = [v.strip() if type(v) is str else "" for v in values]
    return Decoded(texts, unreadable)


def report_rows(reports: Sequence[Any]) -> list[Mapping[str, Any]]:
    """Reports in the API's shape (``{"attempt": {...}, "approved", "response_code",
    "merchant_advice_code"}``, as JSON decodes them) as flat contract rows.

    Raises:
        ContractError: naming ``outcomes[i]`` or ``outcomes[i].<field>`` of a report that is
            not an object, lacks its attempt, or has an unknown field or a bad
            ``merchant_advice_code``.
    """
    rows: list[Mapping[str, Any]] = []
    for i, report in enumerate(reports):
        if not isinstance(report, Mapping):
            raise ContractError(f"outcomes[{i}]", "must be an object")
        unknown = sorted(set(report) - _REPORT_FIELDS, key=str)
        if unknown:
            raise ContractError(f"outcomes[{i}].{unknown[0]}", "unknown field")
        attempt = report.get("attempt")
        if not isinstance(attempt, Mapping):
            raise ContractError(f"outcomes[{i}].attempt", "must be an object (the scored attempt)")
        mac = report.get("merchant_advice_code")
        if mac is not None and not (type(mac) is str and _MAC.fullmatch(mac)):
            raise ContractError(f"outcomes[{i}].merchant_advice_code", "must be 2 digits")
        row = dict(attempt)
        row["approved"] = report.get("approved", MISSING)
        row["response_code"] = report.get("response_code", MISSING)
        rows.append(row)
    return rows


_REPORT_FIELDS = {"attempt", "approved", "response_code", "merchant_advice_code"}
_MAC = re.compile(r"[0-9]{2}")


def validate_reports(reports: Sequence[Any]) -> AttemptColumns:
    """Reports in the API's shape, validated as one table (see :func:`validate_outcomes`).

    Errors name the field as the request holds it: ``outcomes[3].attempt.card_bin``,
    ``outcomes[0].response_code``.

    Raises:
        ContractError: the first bad report's field, and how many reports are bad.
    """
    if len(reports) > MAX_BATCH:
        raise ContractError("outcomes", f"at most {MAX_BATCH} outcomes per request", len(reports))
    try:
        return validate_outcomes(report_rows(reports), "outcomes")
    except ContractError as exc:
        head, _, field = exc.column.partition("].")
        if field and field.split(".")[0] in _ATTEMPT_FIELDS:
            exc = ContractError(f"{head}].attempt.{field}", exc.problem, exc.count)
        raise exc from None


_ATTEMPT_FIELDS = set(_REQUEST_FIELDS)


@dataclass(frozen=True)
class Prepared:
    """A validated batch, ready for an ``EVALSHA`` of :data:`APPLY_SCRIPT`.

    The call expects every outcome to be new (but repeats within the batch); when the script
    finds duplicates or late ones it writes nothing and :meth:`again` makes the call that
    expects what it found.
    """

    size: int
    pointer: str
    args: list[bytes | str]
    columns: AttemptColumns | None = None
    prefix: str = ""
    marker_ttl: timedelta = MARKER_TTL

    def again(self, reply: Sequence[Any]) -> Prepared | None:
        """The next call of the batch after ``reply``, or None: ``reply`` is the result."""
        if reply[0] != b"again" or b"a" not in reply[2] or self.columns is None:
            return None
        return prepare(self.columns, self.prefix, self.marker_ttl, reply[2].decode())


def prepare(
    columns: AttemptColumns,
    prefix: str,
    marker_ttl: timedelta = MARKER_TTL,
    statuses: str | None = None,
) -> Prepared:
    """The script call for validated outcomes (``columns`` from :func:`validate_outcomes`).

    Args:
        columns: the outcomes.
        prefix: the store's key prefix.
        marker_ttl: how long an ``attempt_id`` is remembered.
        statuses: what the script is to find per outcome (see :func:`script_args`).

    Raises:
        ContractError: more than :data:`MAX_BATCH` outcomes.
        ValueError: ``marker_ttl`` under the longest window.
    """
    if len(columns) > MAX_BATCH:
        raise ContractError("outcomes", f"at most {MAX_BATCH} outcomes per batch", len(columns))
    if marker_ttl.total_seconds() < max(s for _, s in FINITE):
        raise ValueError(f"marker_ttl {marker_ttl} is shorter than the longest window")
    args = script_args(columns, prefix, marker_ttl, statuses) if len(columns) else []
    return Prepared(len(columns), f"{prefix}:current", args, columns, prefix, marker_ttl)


def finish(reply: Sequence[Any], prefix: str) -> ApplyResult:
    """The script's final reply as a result (an ``again`` one only if nothing is new).

    Raises:
        UserError: there is no live version, or it has other feature definitions.
        ValueError: an ``again`` reply with new outcomes (:meth:`Prepared.again` makes the
            call that applies them).
    """
    kind = reply[0].decode()
    if kind == "no_version":
        raise UserError(f"no live feature version under {prefix!r}: run approvals materialize")
    if kind == "definitions":
        raise UserError(f"live version {reply[1].decode()} has other feature definitions")
    if kind == "again":  # nothing was written
        statuses = reply[2].decode()
        if "a" in statuses:
            raise ValueError("the script found other statuses than expected: call again")
        return ApplyResult(0, statuses.count("d"), statuses.count("l"), reply[1].decode(),
                           statuses)  # fmt: skip
    return ApplyResult(int(reply[2]), int(reply[3]), int(reply[4]), reply[1].decode(),
                       reply[5].decode())  # fmt: skip


def _changing() -> Exception:
    from redis.exceptions import WatchError

    return WatchError(f"outcomes turned duplicate or late on each of {_TRIES} tries: retry")


def apply_outcomes(
    target: redis.Redis | RedisSettings,
    outcomes: Sequence[Mapping[str, Any]],
    *,
    prefix: str | None = None,
    marker_ttl: timedelta = MARKER_TTL,
    where: str = "outcomes",
) -> ApplyResult:
    """Apply a batch of labelled attempts to the live online version, atomically, once each.

    Args:
        target: a Redis client (reuse it: one round trip per batch once the script is
            loaded, two when some outcomes turn out to be repeats or late) or settings (a
            client is opened and closed for this call).
        outcomes: up to :data:`MAX_BATCH` contract rows with ``approved`` and
            ``response_code``.
        prefix: the store's key prefix (required with a client; settings carry their own).
        marker_ttl: how long an ``attempt_id`` is remembered (at least the longest window).
        where: how errors name the outcomes (``outcomes[3].response_code``).

    Raises:
        ContractError: an outcome breaks the contract, or the batch is too large; nothing is
            applied.
        UserError: there is no live version, or it has other feature definitions.
        ValueError: a client without ``prefix``, or ``marker_ttl`` under the longest window.
        redis.RedisError: Redis failed (``WatchError``: concurrent writers kept turning
            outcomes duplicate on every try); nothing of the batch is applied.
    """
    if len(outcomes) > MAX_BATCH:
        raise ContractError(where, f"at most {MAX_BATCH} outcomes per batch", len(outcomes))
    from approvals.features.redis_settings import RedisSettings

    if isinstance(target, RedisSettings):
        prefix = target.prefix
    elif prefix is None:
        raise ValueError("pass the store's prefix with a Redis client")
    call = prepare(validate_outcomes(outcomes, where), prefix, marker_ttl)
    if not call.size:
        return ApplyResult(0, 0, 0, "", "")
    if not isinstance(target, RedisSettings):
        return finish(_apply(target, call), prefix)
    conn = client(target, target.timeout_ms / 1000)
    try:
        return finish(_apply(conn, call), prefix)
    finally:
        conn.close()


def _apply(conn: redis.Redis, call: Prepared) -> Any:
    """The final reply of the script for a batch (a second call if it had duplicates)."""
    for _ in range(_TRIES):
        reply = _evalsha(conn, call)
        again = call.again(reply)
        if again is None:
            return reply
        call = again
    raise _changing()


def _evalsha(conn: redis.Redis, call: Prepared) -> Any:
    from redis.exceptions import NoScriptError

    try:
        return conn.evalsha(SHA, 1, call.pointer, *call.args)
    except NoScriptError:
        conn.script_load(APPLY_SCRIPT)
        return conn.evalsha(SHA, 1, call.pointer, *call.args)


class OutcomeWriter:
    """Applies batches of outcomes from an asyncio program (the service, the stream consumer).

    One asyncio client of its own, made on first use on the running loop; every batch is one
    ``EVALSHA`` (two when some outcomes turn out to be repeats or late; the script is loaded
    once per Redis), bounded by ``timeout_s``.
    """

    def __init__(self, settings: RedisSettings, timeout_s: float = 5.0) -> None:
        self.settings, self.timeout_s = settings, timeout_s
        self._conn: redis.asyncio.Redis | None = None

    async def apply(self, columns: AttemptColumns) -> ApplyResult:
        """Apply validated outcomes (:func:`validate_outcomes` / :func:`validate_reports`).

        Raises:
            UserError: there is no live version, or it has other feature definitions.
            redis.RedisError, TimeoutError: Redis failed or was too slow; the batch is either
                applied whole or not at all (a retry counts the applied ones as duplicates).
        """
        call = prepare(columns, self.settings.prefix)
        if not call.size:
            return ApplyResult(0, 0, 0, "", "")
        async with asyncio.timeout(self.timeout_s):
            for _ in range(_TRIES):
                reply = await self._evalsha(call)
                again = call.again(reply)
                if again is None:
                    return finish(reply, self.settings.prefix)
                call = again
        raise _changing()

    async def _evalsha(self, call: Prepared) -> Any:
        from redis.exceptions import NoScriptError

        conn = self._client()
        try:
            return await conn.evalsha(SHA, 1, call.pointer, *call.args)
        except NoScriptError:
            await conn.script_load(APPLY_SCRIPT)
            return await conn.evalsha(SHA, 1, call.pointer, *call.args)

    def _client(self) -> redis.asyncio.Redis:
        if self._conn is None:
            import redis.asyncio

            options = {**self.settings.client_options(), "socket_timeout": self.timeout_s}
            options["socket_connect_timeout"] = max(
                self.timeout_s / 3, self.settings.connect_timeout_ms / 1000
            )
            self._conn = redis.asyncio.Redis.from_url(self.settings.url, **options)
        return self._conn

    async def aclose(self) -> None:
        """Close the client's connections."""
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None
