"""The request edge of the validator: the values JSON or protobuf carry, as the model reads them.

Requests follow the :class:`~approvals.contract.attempt.Attempt` model exactly (the property
tests in ``tests/bento/test_fast_path.py``): whitespace stripped as pydantic strips it, ""
optional codes are null, naive times are UTC, ids of 1 to 128 characters, attempt numbers 1 to
1000. Values of another type than JSON or protobuf normally carry (a number as text, say) are
coerced by pydantic's own validator for the field's type, so the lax conversions are the
model's; every rule is then :func:`approvals.contract.table.check`. A rejected request is
described by the model for its first bad attempt, which names the field
(``attempts[3].card_bin``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from approvals.contract.attempt import Attempt
from approvals.contract.columns import COLUMNS, Column, Kind
from approvals.contract.table import REQUESTS, AttemptColumns, Decoded, check
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
REQUEST_COLUMNS = tuple(c for c in COLUMNS if c.need != "label")

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
    try:
        distinct = set(raw)  # texts repeat (countries, BINs, codes): each is checked once
    except TypeError:  # a list or an object among them
        return _decode_odd_text(list(raw), col)
    nulls = {None, "", MISSING} & distinct if col.nullable else set()
    texts = distinct - nulls
    if not set(map(type, texts)) <= {str}:
        return _decode_odd_text(list(raw), col)
    values = _objects(raw)
    if "" in nulls:  # "" is null (the model's _empty_is_null), and so is an absent code
        values[values == ""] = None
    if MISSING in nulls:
        values[[v is MISSING for v in values]] = None
    # str.strip() removes a superset of pydantic's whitespace, and returns the same object
    # when there is nothing to remove: a padded value is rare
    if col.choices is None and any(t.strip() is not t for t in texts):
        values = _objects([v if v is None else v.strip(REQUEST_WHITESPACE) for v in values])
        texts = set(values.tolist()) - {None}
    return Decoded(values, distinct=texts)


def _decode_odd_text(values: list[Any], col: Column) -> Decoded:
    """Values that are not all text (or null, for a code): those are unreadable."""
    if col.nullable:
        values = [None if v is None or v is MISSING or v == "" else v for v in values]
    allowed = {str, type(None)} if col.nullable else {str}
    unreadable = np.fromiter((type(v) not in allowed for v in values), bool, len(values))
    values = [v if type(v) in allowed else None if col.nullable else "" for v in values]
    if col.choices is None:  # a str is stripped first; a Literal is compared as given
        values = [v if v is None else v.strip(REQUEST_WHITESPACE) for v in values]
    return Decoded(_objects(values), unreadable)


def _objects(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values  # str and None only: nothing numpy would take for a nested sequence
    return out


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
