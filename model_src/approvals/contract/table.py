"""The one validator: a table of attempt columns, checked against the contract with numpy.

Files (:mod:`approvals.contract.files`), HTTP batches and gRPC batches all end here. Each edge
decodes its own encoding (pandas reads files; the service hands over the values JSON or
protobuf carry), and :func:`check` applies every rule of the one :data:`COLUMNS` table over
whole columns: presence, patterns, choices, ranges, the first-attempt rule, and for files the
duplicate ids and label agreement. The result is one type, :class:`AttemptColumns`, in the
dtypes feature derivation and the online reader read.

Requests follow the :class:`~approvals.contract.attempt.Attempt` model exactly (the property
test in ``tests/bento/test_fast_path.py``): whitespace stripped as pydantic strips it, ""
optional codes are null, naive times are UTC, ids of 1 to 128 characters, attempt numbers 1 to
1000. Values of another type than JSON or protobuf normally carry (a number as text, say) are
coerced by pydantic's own validator for the field's type, so the lax conversions are the
model's. A rejected request is described by the model for its first bad attempt, which names
the field (``attempts[3].card_bin``). No pandas here: the serving image has none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from approvals.contract.attempt import Attempt
from approvals.contract.columns import (
    BY_NAME,
    COLUMNS,
    MAX_ATTEMPT_NUMBER,
    MAX_ID_LENGTH,
    Column,
    Kind,
)
from approvals.errors import ContractError


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # a field absent from an attempt of a request
# What pydantic's str_strip_whitespace strips (Unicode White_Space): Python's whitespace
# without the four separators \x1c-\x1f, which str.strip() alone would also remove.
REQUEST_WHITESPACE = "".join(
    c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\x1c\x1d\x1e\x1f"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US  # datetime's range
LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _ONE_US
REQUEST_COLUMNS = tuple(c for c in COLUMNS if c.need != "label")


@dataclass(frozen=True)
class AttemptColumns:
    """Validated attempts as numpy columns, one entry per contract column present.

    ``event_time`` is naive UTC ``datetime64[us]``, ``amount`` float64, ``attempt_number``
    int64, ``network_token`` and ``approved`` bool; text columns are object arrays of ``str``,
    with None for a null code.
    """

    columns: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["attempt_id"])

    @property
    def attempt_ids(self) -> list[str]:
        """The attempts' ids, in order."""
        ids: list[str] = self.columns["attempt_id"].tolist()
        return ids

    @staticmethod
    def concat(parts: Sequence[AttemptColumns]) -> AttemptColumns:
        """The attempts of several tables (with the same columns), in order."""
        if len(parts) == 1:
            return parts[0]
        names = parts[0].columns
        return AttemptColumns({n: np.concatenate([p.columns[n] for p in parts]) for n in names})


@dataclass(frozen=True)
class Decoded:
    """One column read as its kind by an edge: the values, and which rows could not be read
    (missing, or not a value of the kind); those rows hold a placeholder."""

    values: np.ndarray
    unreadable: np.ndarray | None = None


@dataclass(frozen=True)
class Rules:
    """Which rules apply besides the column domains every source shares."""

    limits: bool  # requests: ids of 1 to MAX_ID_LENGTH, attempt numbers, datetime's range
    unique_ids: bool  # files: attempt_id is unique
    labels: bool  # training and evaluation files: labels present and agreeing with codes


REQUESTS = Rules(limits=True, unique_ids=False, labels=False)
Finding = tuple[str, str, np.ndarray | None]  # column, problem, rows affected (None: none)


def check(decoded: Mapping[str, Decoded], rules: Rules) -> Iterator[Finding]:
    """Every rule over whole columns, in contract order, then the rules across columns.

    Lazy: a caller that stops at the first finding with rows pays for no further check.
    """
    for col in COLUMNS:
        if col.name in decoded:
            yield from _column_findings(col, decoded[col.name], rules)
    values = {name: d.values for name, d in decoded.items()}
    if rules.unique_ids:
        yield "attempt_id", "duplicate attempt_id", _duplicated(values["attempt_id"])
    first_with_code = (values["attempt_number"] == 1) & _present(values["previous_response_code"])
    yield "previous_response_code", "must be null on a first attempt", first_with_code
    if rules.labels:
        from approvals import codes

        approved_code = _members(values["response_code"], frozenset(codes.rules().approved_codes))
        mismatch = values["approved"] != approved_code
        yield "response_code", "disagrees with 'approved' (approval codes: 00, ...)", mismatch


def _column_findings(col: Column, d: Decoded, rules: Rules) -> Iterator[Finding]:
    v = d.values
    if col.kind == "string":
        yield col.name, "missing value", d.unreadable
        if rules.limits and col.is_id:
            sizes = np.fromiter(map(len, v), np.int64, len(v))
            yield col.name, f"not 1 to {MAX_ID_LENGTH} characters", (sizes < 1) | (sizes > 128)
        if col.pattern is not None:
            yield col.name, f"does not match {col.pattern}", _outside_domain(v, col)
        if col.choices is not None:
            yield col.name, f"not one of {', '.join(col.choices)}", _outside_domain(v, col)
    elif col.kind == "timestamp":
        bad = _or(d.unreadable, np.isnat(v))
        if rules.limits:
            us = v.astype(np.int64)
            bad = _or(bad, (us < FIRST_US) | (us > LAST_US))
        yield col.name, "not a UTC timestamp", bad
    elif col.kind == "float":
        yield col.name, "not a finite number", _or(d.unreadable, ~np.isfinite(v))
        yield col.name, "negative amount", v < 0
    elif col.kind == "int":
        yield col.name, "not an integer", d.unreadable
        yield col.name, "must be 1 or more", v < 1
        if rules.limits:
            yield col.name, f"must be {MAX_ATTEMPT_NUMBER} or less", v > MAX_ATTEMPT_NUMBER
    else:
        yield col.name, "not a boolean", d.unreadable


def _or(left: np.ndarray | None, right: np.ndarray) -> np.ndarray:
    return right if left is None else left | right


def _present(values: np.ndarray) -> np.ndarray:
    return np.fromiter((v is not None for v in values), bool, len(values))


def _members(values: np.ndarray, allowed: frozenset[Any]) -> np.ndarray:
    return np.fromiter(map(allowed.__contains__, values), bool, len(values))


def _outside_domain(values: np.ndarray, col: Column) -> np.ndarray | None:
    """Rows whose (non-null) value breaks the pattern or choices; each distinct value is
    checked once (BINs, countries and codes repeat across attempts)."""
    distinct = set(values.tolist()) - {None}
    if col.choices is not None:
        bad = distinct - set(col.choices)
    else:
        match = _regex(col.pattern or "").fullmatch
        bad = {v for v in distinct if not isinstance(v, str) or match(v) is None}
    return _members(values, frozenset(bad)) if bad else None


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _duplicated(values: np.ndarray) -> np.ndarray | None:
    """Every occurrence of a value after its first (pandas' ``duplicated``)."""
    if len(set(values.tolist())) == len(values):
        return None
    seen: set[Any] = set()
    repeated = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        repeated[i] = value in seen
        seen.add(value)
    return repeated


# --------------------------------------------------------------------------------------------
# Requests: the values JSON or protobuf carry
# --------------------------------------------------------------------------------------------

Row = Mapping[str, Any]


def validate_request(
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    *,
    where: str = "attempts",
    row: Callable[[int], Row] | None = None,
) -> AttemptColumns:
    """The attempts of one request, given as columns, validated as the ``Attempt`` model would.

    Args:
        columns: field name -> one raw value per attempt (MISSING where an attempt lacks the
            field; a field absent altogether is missing everywhere). ``event_time`` may be a
            ``datetime64`` array (NaT: unset or unreadable) or raw values (datetimes, text).
        where: how the request names its attempts in errors.
        row: attempt ``i`` as the ``Attempt`` model reads it, to describe a rejected attempt
            (default: from ``columns``).

    Raises:
        ContractError: naming ``where[i].field`` of the first bad attempt (the model's message
            for it) and the number of bad attempts; never the values.
    """
    absent = [MISSING] * len(columns["attempt_id"])
    decoded = {c.name: _DECODERS[c.kind](columns.get(c.name, absent), c) for c in REQUEST_COLUMNS}
    bad: np.ndarray | None = None
    first: dict[int, tuple[str, str]] = {}  # bad row -> the first finding there
    for column, problem, rows in check(decoded, REQUESTS):
        if rows is not None and rows.any():
            first.setdefault(int(np.argmax(rows)), (column, problem))
            bad = rows if bad is None else bad | rows
    if bad is None:
        return AttemptColumns({name: d.values for name, d in decoded.items()})
    i = int(np.argmax(bad))
    attempt = row(i) if row else _row_of(columns, i)
    raise _describe(attempt, f"{where}[{i}]", int(bad.sum()), *first[i])


def validate_rows(rows: Sequence[Row], *, where: str = "attempts") -> AttemptColumns:
    """The attempts of a request given as mappings (decoded JSON); see :func:`validate_request`."""
    columns = {c.name: [r.get(c.name, MISSING) for r in rows] for c in REQUEST_COLUMNS}
    return validate_request(columns, where=where, row=rows.__getitem__)


def _row_of(columns: Mapping[str, Sequence[Any] | np.ndarray], i: int) -> Row:
    out = {name: values[i] for name, values in columns.items() if values[i] is not MISSING}
    when = out.get("event_time")
    if isinstance(when, np.datetime64):
        out["event_time"] = _datetime(when) if not np.isnat(when) else MISSING
    return {k: v for k, v in out.items() if v is not MISSING}


def _datetime(when: np.datetime64) -> datetime | str:
    us = int(when.astype("datetime64[us]").astype(np.int64))
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        return "outside the supported range"


def _describe(row: Row, where: str, count: int, column: str, problem: str) -> ContractError:
    """The model's first complaint about one attempt (the validator's if the model has none:
    the property test keeps that from happening)."""
    try:
        Attempt.model_validate(row)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or column  # () for the first-try rule
        return ContractError(f"{where}.{field}", first["msg"], count)
    return ContractError(f"{where}.{column}", problem, count)


def _decode_text(raw: Sequence[Any] | np.ndarray, col: Column) -> Decoded:
    values = list(raw)
    if col.nullable:  # "" is null (the model's _empty_is_null), and so is an absent code
        values = [None if v is None or v is MISSING or v == "" else v for v in values]
    allowed = {str, type(None)} if col.nullable else {str}
    unreadable = None
    if not set(map(type, values)) <= allowed:
        unreadable = np.fromiter((type(v) not in allowed for v in values), bool, len(values))
        values = [v if type(v) in allowed else None if col.nullable else "" for v in values]
    if col.choices is None:  # a str is stripped first; a Literal is compared as given
        values = _stripped(values)
    return Decoded(_objects(values), unreadable)


# Whitespace at either end of a value, in the values joined by NUL: one regex pass tells
# whether any value needs stripping (a NUL inside a value can only cause a needless strip).
_WS = f"[{re.escape(REQUEST_WHITESPACE)}]"
_PADDED = re.compile(f"(?:^|\x00){_WS}|{_WS}(?:\x00|$)")


def _stripped(values: list[Any]) -> list[Any]:
    texts = [v for v in values if v is not None] if None in values else values
    if _PADDED.search("\x00".join(texts)) is None:
        return values
    return [v if v is None else v.strip(REQUEST_WHITESPACE) for v in values]


def _objects(values: Sequence[Any]) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))


def _decode_time(raw: Sequence[Any] | np.ndarray, col: Column) -> Decoded:
    if isinstance(raw, np.ndarray) and raw.dtype.kind == "M":
        return Decoded(raw.astype("datetime64[us]"))
    values = list(raw)
    if set(map(type, values)) == {datetime}:
        times: list[datetime | None] = values
    else:
        times = _coerce(values, datetime)
    us = [(_utc(t) - _EPOCH) // _ONE_US if t is not None else 0 for t in times]
    unreadable = np.fromiter((t is None for t in times), bool, len(times))
    return Decoded(np.array(us, dtype=np.int64).astype("datetime64[us]"), unreadable)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _decode_number(raw: Sequence[Any] | np.ndarray, col: Column) -> Decoded:
    kind, dtype = (float, np.float64) if col.kind == "float" else (int, np.int64)
    values = list(raw)
    if set(map(type, values)) <= ({float, int} if kind is float else {int}):
        try:
            return Decoded(np.array(values, dtype=dtype))
        except OverflowError:
            pass
    coerced = _coerce(values, kind)
    unreadable = np.fromiter((v is None for v in coerced), bool, len(coerced))
    limit = np.iinfo(np.int64).max
    if kind is int:  # beyond int64 is beyond every limit: unreadable
        unreadable |= np.fromiter(
            (v is not None and abs(v) > limit for v in coerced), bool, len(coerced)
        )
        coerced = [v if v is not None and abs(v) <= limit else 1 for v in coerced]
    else:
        coerced = [v if v is not None else 0.0 for v in coerced]
    return Decoded(np.array(coerced, dtype=dtype), unreadable)


def _decode_bool(raw: Sequence[Any] | np.ndarray, col: Column) -> Decoded:
    values = list(raw)
    if set(map(type, values)) == {bool}:
        return Decoded(np.array(values, dtype=bool))
    coerced = _coerce(values, bool)
    unreadable = np.fromiter((v is None for v in coerced), bool, len(coerced))
    return Decoded(np.array([bool(v) for v in coerced], dtype=bool), unreadable)


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _coerce(values: list[Any], kind: type) -> list[Any]:
    """Each value as pydantic's lax validator of the field's type reads it (None: it cannot)."""
    try:
        return _adapter(list[kind]).validate_python(values)  # type: ignore[valid-type]
    except ValidationError:
        pass
    one = _adapter(kind)
    out = []
    for value in values:
        try:
            out.append(None if value is MISSING else one.validate_python(value))
        except ValidationError:
            out.append(None)
    return out


_DECODERS: dict[Kind, Callable[[Sequence[Any] | np.ndarray, Column], Decoded]] = {
    "string": _decode_text,
    "timestamp": _decode_time,
    "float": _decode_number,
    "int": _decode_number,
    "bool": _decode_bool,
}
assert set(_DECODERS) == {c.kind for c in BY_NAME.values()}
