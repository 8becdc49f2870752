"""The serving engine: validated attempts in, calibrated probabilities and decisions out.

Pure glue shared by the HTTP and gRPC front ends of the BentoML service (``bento/``) and by
tests: the attempts of a whole batch of requests -> attempt columns -> online counters (one
Redis round trip) -> feature matrix -> calibrated probabilities (:class:`Pipeline`). Route
ranking and retry advice sit on top and reuse :mod:`approvals.decisions` and
:mod:`approvals.decisions.costs`; nothing here re-implements a feature or a decision.

The batched step is injected (``predict``), so the service can route it through its adaptive
batcher while tests call a :class:`Pipeline` directly.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from approvals import features
from approvals.contract import COLUMNS, MAX_ATTEMPT_NUMBER, MAX_ID_LENGTH, Attempt, Column
from approvals.decisions import retries, routes
from approvals.decisions.costs import CostConfig
from approvals.decisions.retries import DeclineContext, RetryAdvice, RetryOption
from approvals.decisions.routes import RankedRoute

if TYPE_CHECKING:
    from approvals.model.package import ModelPackage

STRING_FIELDS = (
    "merchant_country", "issuer_country", "card_brand", "card_type", "channel", "three_ds",
    "route_id", "mcc", "currency", "card_bin", "merchant_id", "card_fingerprint",
)  # fmt: skip
NULLABLE_FIELDS = ("previous_response_code", "merchant_advice_code")
_COLUMNS = ("event_time", "amount", "attempt_number", "network_token",
            *STRING_FIELDS, *NULLABLE_FIELDS)  # fmt: skip
_column_values = operator.attrgetter(*_COLUMNS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class CountsResult(Protocol):
    """What the online store answers: counters, and whether defaults replaced them."""

    counts: dict[str, np.ndarray]
    degraded: bool


class CountsSource(Protocol):
    """The online feature store (:class:`approvals.features.online.OnlineFeatureStore`)."""

    async def acounts_columns(self, columns: Mapping[str, Any]) -> CountsResult:
        """Counters for each attempt (given as columns), read in one round trip."""
        ...


@dataclass(frozen=True)
class Pipeline:
    """Attempts of many requests -> one Redis read, one feature build, one model call.

    The function an adaptive batcher calls: keys shared by several attempts (BIN, route,
    merchant) are read once per batch, and the numpy work is paid once per batch, not per
    request.
    """

    package: ModelPackage
    store: CountsSource

    async def __call__(self, batch: Sequence[Job]) -> list[np.ndarray]:
        """For each request, one row per attempt: (calibrated probability, degraded 0/1)."""
        size = sum(len(job) for job in batch)
        if not size:
            return [np.zeros((0, 2)) for _ in batch]
        columns = batch_columns(batch)
        online = await self.store.acounts_columns(columns)
        x = features.matrix(online.counts, columns, self.package.spec)
        rows = np.empty((size, 2))
        rows[:, 0] = self.package.predict(x)
        rows[:, 1] = float(online.degraded)
        return np.split(rows, np.cumsum([len(job) for job in batch])[:-1])


@dataclass(frozen=True)
class AttemptTable:
    """Valid attempts already laid out as :func:`columns_of` (see :func:`table_of`)."""

    attempt_ids: list[str]
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.attempt_ids)


Job = Sequence[Attempt] | AttemptTable  # one request's attempts


def batch_columns(batch: Sequence[Job]) -> dict[str, np.ndarray]:
    """The columns of every attempt of a batch of requests, in order."""
    if not any(isinstance(job, AttemptTable) for job in batch):
        return columns_of([a for job in batch for a in cast("Sequence[Attempt]", job)])
    parts = [job.columns if isinstance(job, AttemptTable) else columns_of(job) for job in batch]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


Predict = Callable[[Job], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class Scores:
    """Calibrated probabilities of a list of attempts, in order."""

    p: np.ndarray
    degraded: bool


def columns_of(attempts: Sequence[Attempt]) -> dict[str, np.ndarray]:
    """The columns feature derivation and the online reader read, with a frame's dtypes.

    Equals :func:`approvals.features.frame_columns` of the same attempts read from a file:
    ``event_time`` naive UTC ``datetime64[us]``, strings and nullable codes as object arrays;
    plus the key columns the online reader needs (BIN, merchant, card fingerprint).
    """
    values = list(zip(*map(_column_values, attempts), strict=True)) or [()] * len(_COLUMNS)
    times, amount, number, token, *texts = values  # one tuple per field: no getattr per value
    columns: dict[str, np.ndarray] = {
        "event_time": np.array([(t - _EPOCH) // _ONE_US for t in times], dtype="datetime64[us]"),
        "amount": np.array(amount, dtype=np.float64),
        "attempt_number": np.array(number, dtype=np.int64),
        "network_token": np.array(token, dtype=bool),
    }
    for name, column in zip(_COLUMNS[4:], texts, strict=True):
        columns[name] = np.array(column, dtype=object)
    return columns


def table_of(fields: Mapping[str, Sequence[Any]]) -> AttemptTable | None:
    """Attempts given as raw columns, when the :class:`~approvals.contract.Attempt` model
    would accept every value unchanged: then exactly the table validating them would give.

    A bulk check instead of one model per attempt, for large requests (gRPC ScoreBatch). It is
    conservative: it answers None for anything the model might reject or normalise (padding
    whitespace, an empty optional code, a timestamp out of range), and the caller then
    validates attempt by attempt, which names the offending field.

    Args:
        fields: every field of :class:`Attempt` except ``event_time``, plus ``event_seconds``
            and ``event_nanos`` (a protobuf ``Timestamp``; 0 and 0 counts as unset). Optional
            codes are "" when unset.
    """
    size = len(fields["attempt_id"])
    if not size or any(len(column) != size for column in fields.values()):
        return None
    if not all(_exactly(kind, set(fields[name])) for name, kind in _TYPED.items()):
        return None
    if not _texts_unchanged(fields):
        return None
    codes = {name: np.array(fields[name], dtype=object) for name in NULLABLE_FIELDS}
    has_previous_code = codes["previous_response_code"] != ""
    for code in codes.values():
        code[code == ""] = None
    seconds = np.array(fields["event_seconds"], dtype=np.int64)
    nanos = np.array(fields["event_nanos"], dtype=np.int64)
    amount = np.array(fields["amount"], dtype=np.float64)
    number = np.array(fields["attempt_number"], dtype=np.int64)
    ok = (
        (seconds >= _FIRST_SECOND) & (seconds <= _LAST_SECOND) & ((seconds != 0) | (nanos != 0))
        & (nanos >= 0) & (nanos < 1_000_000_000)
        & np.isfinite(amount) & (amount >= 0) & (number >= 1) & (number <= MAX_ATTEMPT_NUMBER)
        & ((number > 1) | ~has_previous_code)
    )  # fmt: skip
    if not ok.all():
        return None
    columns: dict[str, np.ndarray] = {
        "event_time": (seconds * 1_000_000 + nanos // 1000).astype("datetime64[us]"),
        "amount": amount,
        "attempt_number": number,
        "network_token": np.array(fields["network_token"], dtype=bool),
    }
    for name in STRING_FIELDS:
        columns[name] = np.array(fields[name], dtype=object)
    columns.update(codes)
    return AttemptTable(list(fields["attempt_id"]), columns)


def _exactly(kind: type, values: set[Any]) -> bool:
    return set(map(type, values)) <= {kind}


# The non-text fields and the one type each may have (no int for a float, no bool for an int).
_TYPED = {"amount": float, "attempt_number": int, "network_token": bool,
          "event_seconds": int, "event_nanos": int}  # fmt: skip


def _texts_unchanged(fields: Mapping[str, Sequence[Any]]) -> bool:
    """Every text field is one the model accepts as it is (no stripping, no "" -> None)."""
    for name in _IDS:
        column = list(fields[name])
        try:
            # str.strip removes at least what pydantic strips (and returns the same object
            # when there is nothing to remove: the comparison is mostly identity checks)
            if list(map(str.strip, column)) != column:
                return False
        except TypeError:  # not a str
            return False
        sizes = list(map(len, column))
        if not 1 <= min(sizes) <= max(sizes) <= MAX_ID_LENGTH:
            return False
    return all(check(set(fields[name])) for name, check in _DISTINCT_CHECKS.items())


_IDS = ("attempt_id", "payment_id", "merchant_id", "card_fingerprint", "route_id")
_FIRST_SECOND = -62135596800  # 0001-01-01T00:00:00Z, datetime's first second
_LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z


def _distinct_check(column: Column) -> Callable[[set[Any]], bool]:
    """Whether the distinct values of ``column`` are all ones the model accepts unchanged
    (for a nullable column: or "")."""
    if column.choices is not None:
        allowed = frozenset(column.choices)
        return lambda values: values <= allowed
    # one match over the values joined by NUL, which no pattern's characters match
    one = f"(?:{(column.pattern or '').removeprefix('^').removesuffix('$')})"
    many = re.compile(f"{one}(?:\x00{one})*")

    def check(values: set[Any]) -> bool:
        texts = values - {""} if column.nullable else values
        if not texts:
            return True
        return _exactly(str, texts) and many.fullmatch("\x00".join(texts)) is not None

    return check


_DISTINCT_CHECKS = {
    c.name: _distinct_check(c) for c in COLUMNS if c.need != "label" and (c.pattern or c.choices)
}


def route_variants(attempt: Attempt, route_ids: Sequence[str]) -> list[Attempt]:
    """The attempt as it would be sent through each candidate route."""
    return [attempt.model_copy(update={"route_id": r}) for r in route_ids]


def retry_variant(attempt: Attempt, decline: DeclineContext, option: RetryOption) -> Attempt:
    """The reattempt an option describes: next attempt number, later, maybe corrected.

    3DS correction means a challenge unless the declined attempt was already authenticated;
    the previous response code and Merchant Advice Code become the decline's.
    """
    three_ds = "challenge" if option.with_3ds and attempt.three_ds == "none" else attempt.three_ds
    update = {
        "attempt_id": f"{attempt.attempt_id}@{option.route_id}+{option.delay_hours:g}h",
        "route_id": option.route_id,
        "event_time": attempt.event_time + timedelta(hours=option.delay_hours),
        "attempt_number": attempt.attempt_number + 1,
        "previous_response_code": decline.response_code,
        "merchant_advice_code": decline.merchant_advice_code,
        "three_ds": three_ds,
        "network_token": attempt.network_token or option.with_network_token,
    }
    return attempt.model_copy(update=update)


def min_retry_probability(manifest: Mapping[str, Any]) -> float:
    """Smallest approval probability worth a reattempt, as chosen at training (0 if none)."""
    choice = manifest.get("decisions", {}).get("retry_threshold")
    if not isinstance(choice, Mapping):
        return 0.0
    return float(np.clip(choice.get("threshold", 0.0), 0.0, 1.0))


@dataclass(frozen=True)
class Engine:
    """Scores attempts and makes decisions with one model and one feature store.

    Attributes:
        model_version: published with every answer.
        predict: a request's attempts -> one row per attempt (probability, degraded 0/1); in
            the service, the adaptive batcher (``bento/batching.py``) over :class:`Pipeline`.
        costs: the cost configuration for expected values.
        min_retry_probability: passed to :func:`approvals.decisions.retries.advise_retry`.
    """

    model_version: str
    predict: Predict
    costs: CostConfig
    min_retry_probability: float = 0.0

    async def score(self, attempts: Job) -> Scores:
        """Calibrated approval probabilities of the attempts, in order."""
        if not len(attempts):
            return Scores(np.array([], dtype=np.float64), degraded=False)
        job = attempts if isinstance(attempts, AttemptTable) else list(attempts)
        rows = np.asarray(await self.predict(job), dtype=np.float64)
        if rows.shape != (len(attempts), 2):
            raise ValueError(f"model returned {rows.shape} rows for {len(attempts)} attempts")
        p = np.ascontiguousarray(rows[:, 0])
        if not np.all((p >= 0) & (p <= 1)):
            raise ValueError("model returned values outside [0, 1]")
        return Scores(p, degraded=bool(rows[:, 1].any()))

    async def rank_routes(
        self, attempt: Attempt, route_ids: Sequence[str]
    ) -> tuple[list[RankedRoute], bool]:
        """Candidate routes of the attempt, best expected value first."""
        candidates = list(dict.fromkeys(route_ids))
        scores = await self.score(route_variants(attempt, candidates))
        probabilities = dict(zip(candidates, scores.p.tolist(), strict=True))
        return routes.rank_routes(attempt.amount, probabilities, self.costs), scores.degraded

    async def advise_retry(
        self, attempt: Attempt, decline: DeclineContext, candidates: Sequence[RetryOption]
    ) -> tuple[RetryAdvice, bool]:
        """Scheme rules first, then the best allowed option by expected value (or stop)."""
        options = retries.allowed_options(decline, candidates)
        scores = await self.score([retry_variant(attempt, decline, o) for o in options])
        lookup = dict(zip(options, scores.p.tolist(), strict=True))
        advice = retries.advise_retry(
            decline,
            candidates,
            lambda chosen: [lookup[o] for o in chosen],
            self.costs,
            min_probability=self.min_retry_probability,
        )
        return advice, scores.degraded


def decline_context(
    attempt: Attempt,
    response_code: str,
    merchant_advice_code: str | None,
    reattempts_in_window: int,
    declines_24h: int,
    hours_since_decline: float,
) -> DeclineContext:
    """The :class:`DeclineContext` of a declined attempt (raises ``ValidationError``)."""
    return DeclineContext(
        response_code=response_code,
        merchant_advice_code=merchant_advice_code,
        attempt_number=attempt.attempt_number,
        reattempts_in_window=reattempts_in_window,
        declines_24h=declines_24h,
        hours_since_decline=hours_since_decline,
        amount=attempt.amount,
        card_brand=attempt.card_brand,
    )
