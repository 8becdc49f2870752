"""The one validator: attempt columns checked against the contract with numpy.

Files (:mod:`approvals.contract.files`), HTTP batches and gRPC batches
(:mod:`approvals.contract.request`) all end here. Each edge decodes its own encoding (pandas
reads files; a request hands over the values JSON or protobuf carry) into :class:`Decoded`
columns, and :func:`check` applies every rule of the one :data:`COLUMNS` table over whole
columns: presence, patterns, choices, ranges, the first-attempt rule, and for files the
duplicate ids and label agreement. The result is one type, :class:`AttemptColumns`, in the
dtypes feature derivation and the online reader read. No pandas here: the serving image has
none.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import repeat
from typing import Any

import numpy as np

from approvals.contract.columns import (
    COLUMNS,
    MAX_ATTEMPT_NUMBER,
    MAX_ID_LENGTH,
    Column,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US  # datetime's range
LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _ONE_US


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
    distinct: set[Any] | None = None  # the distinct non-null values, when the edge knows them


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
            yield col.name, f"not 1 to {MAX_ID_LENGTH} characters", _wrong_length(v)
        if col.pattern is not None:
            yield col.name, f"does not match {col.pattern}", _outside_domain(d, col)
        if col.choices is not None:
            yield col.name, f"not one of {', '.join(col.choices)}", _outside_domain(d, col)
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


def _wrong_length(values: np.ndarray) -> np.ndarray | None:
    lengths = set(map(len, values))
    if not lengths or 1 <= min(lengths) <= max(lengths) <= MAX_ID_LENGTH:
        return None
    sizes = np.fromiter(map(len, values), np.int64, len(values))
    return (sizes < 1) | (sizes > MAX_ID_LENGTH)


def _or(left: np.ndarray | None, right: np.ndarray) -> np.ndarray:
    return right if left is None else left | right


def _present(values: np.ndarray) -> np.ndarray:
    return np.fromiter(map(operator.is_not, values, repeat(None)), bool, len(values))


def _members(values: np.ndarray, allowed: frozenset[Any]) -> np.ndarray:
    return np.fromiter(map(allowed.__contains__, values), bool, len(values))


def _outside_domain(d: Decoded, col: Column) -> np.ndarray | None:
    """Rows whose (non-null) value breaks the pattern or choices; each distinct value is
    checked once (BINs, countries and codes repeat across attempts)."""
    values = d.values
    distinct = d.distinct if d.distinct is not None else set(values.tolist()) - {None}
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
