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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from approvals import features
from approvals.contract import FEATURE_COLUMNS, Attempt, AttemptColumns
from approvals.decisions import retries, routes
from approvals.decisions.costs import CostConfig
from approvals.decisions.retries import DeclineContext, RetryAdvice, RetryOption
from approvals.decisions.routes import RankedRoute
from approvals.features.row import RowFeatures

if TYPE_CHECKING:
    from approvals.model.package import ModelPackage


_attempt_values = operator.attrgetter(*FEATURE_COLUMNS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NONE = np.zeros(0)  # no features: nothing was scored
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class OneAttempt:
    """A request of one validated attempt: its values, laid out as columns only when it shares
    a batch (a lone attempt goes down the row path without ever becoming columns)."""

    attempt: Attempt

    def __len__(self) -> int:
        return 1

    @cached_property
    def columns(self) -> Mapping[str, np.ndarray]:
        """As :func:`columns_of` lays it out."""
        return columns_of([self.attempt]).columns

    @property
    def attempt_ids(self) -> list[str]:
        """The attempt's id."""
        return [self.attempt.attempt_id]

    def values(self) -> dict[str, Any]:
        """The contract fields as values, with ``event_time_us`` (epoch microseconds)."""
        values = dict(zip(FEATURE_COLUMNS, _attempt_values(self.attempt), strict=True))
        values["event_time_us"] = (values["event_time"] - _EPOCH) // _ONE_US
        return values


Job = AttemptColumns | OneAttempt  # one request's attempts, validated
Predict = Callable[[Job], Awaitable[np.ndarray]]


class CountsResult(Protocol):
    """What the online store answers: counters, and whether defaults replaced them."""

    counts: dict[str, np.ndarray]
    degraded: bool


class RowCounts(Protocol):
    """What the online store answers for one attempt: plain counter values."""

    counts: dict[str, float | str | None]
    degraded: bool


class CountsSource(Protocol):
    """The online feature store (:class:`approvals.features.online.OnlineFeatureStore`)."""

    async def acounts_columns(self, columns: Mapping[str, Any]) -> CountsResult:
        """Counters for each attempt (given as columns), read in one round trip."""
        ...

    async def acounts_row(self, attempt: Mapping[str, Any], t_us: int) -> RowCounts:
        """Counters of one attempt (given as values), read in one round trip."""
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
    row: RowFeatures = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "row", RowFeatures(self.package.spec))

    async def __call__(self, batch: Sequence[Job]) -> list[np.ndarray]:
        """For each request, one row per attempt: calibrated probability, degraded 0/1, then
        the model's features (what the decision log records)."""
        if len(batch) == 1 and len(batch[0]) == 1:
            return [await self.one(batch[0])]
        return await self.many(batch)

    async def many(self, batch: Sequence[Job]) -> list[np.ndarray]:
        """:meth:`__call__` through the batch paths of the store and the features."""
        size = sum(len(job) for job in batch)
        if not size:
            return [np.zeros((0, 2 + len(self.package.spec.names))) for _ in batch]
        columns = AttemptColumns.concat([AttemptColumns(job.columns) for job in batch]).columns
        online = await self.store.acounts_columns(columns)
        x = features.matrix(online.counts, columns, self.package.spec)
        rows = np.empty((size, 2 + x.shape[1]))
        rows[:, 0] = self.package.predict(x)
        rows[:, 1] = float(online.degraded)
        rows[:, 2:] = x
        return np.split(rows, np.cumsum([len(job) for job in batch])[:-1])

    async def one(self, job: Job) -> np.ndarray:
        """A batch of one attempt, through the row paths of the store and the features.

        Bit for bit the answer of the batch path (tests hold the two together), without
        numpy's cost per call on arrays of one row.
        """
        if isinstance(job, OneAttempt):
            attempt = job.values()
        else:
            attempt = dict(zip(job.columns, _first(job.columns.values()), strict=True))
            attempt["event_time_us"] = int(job.columns["event_time"].view(np.int64)[0])
        online = await self.store.acounts_row(attempt, attempt["event_time_us"])
        x = self.row(online.counts, attempt)
        p = self.package.predict(x)
        row = np.empty((1, 2 + x.shape[1]))
        row[0, 0], row[0, 1], row[0, 2:] = p[0], float(online.degraded), x[0]
        return row


def _first(columns: Iterable[np.ndarray]) -> Iterator[Any]:
    """The first value of each column, as a Python value (``datetime64`` as ``datetime``)."""
    for column in columns:
        yield column[0] if column.dtype == object else column[0].item()


@dataclass(frozen=True)
class Scores:
    """Calibrated probabilities of a list of attempts, in order, and the model's features of
    each (attempts x features; no columns when the predict step gives none)."""

    p: np.ndarray
    degraded: bool
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def columns_of(attempts: Sequence[Attempt]) -> AttemptColumns:
    """Attempts already validated by the ``Attempt`` model, laid out as a batch request's table.

    No check is repeated: the attempts are valid, and the variants the engine derives from them
    (another route, a later reattempt) need not fit a client's request limits. The columns equal
    what :func:`approvals.contract.validate_request` gives for the same attempts and
    :func:`approvals.features.frame_columns` for them read from a file: ``event_time`` naive UTC
    ``datetime64[us]``, strings and nullable codes as object arrays.
    """
    values = list(zip(*map(_attempt_values, attempts), strict=True)) or [()] * len(FEATURE_COLUMNS)
    fields = dict(zip(FEATURE_COLUMNS, values, strict=True))
    times = [(t - _EPOCH) // _ONE_US for t in fields.pop("event_time")]
    columns = {
        "event_time": np.array(times, dtype=np.int64).astype("datetime64[us]"),
        "amount": np.array(fields.pop("amount"), dtype=np.float64),
        "attempt_number": np.array(fields.pop("attempt_number"), dtype=np.int64),
        "network_token": np.array(fields.pop("network_token"), dtype=bool),
    }
    columns.update({name: np.array(column, dtype=object) for name, column in fields.items()})
    return AttemptColumns({name: columns[name] for name in FEATURE_COLUMNS})


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
        rows = np.asarray(await self.predict(attempts), dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] != len(attempts) or rows.shape[1] < 2:
            raise ValueError(f"model returned {rows.shape} rows for {len(attempts)} attempts")
        if rows.shape[0] == 1:  # one attempt: the checks on scalars
            if not 0 <= rows[0, 0] <= 1:
                raise ValueError("model returned values outside [0, 1]")
            return Scores(rows[:, 0], bool(rows[0, 1]), rows[:, 2:])
        p = np.ascontiguousarray(rows[:, 0])
        if not np.all((p >= 0) & (p <= 1)):
            raise ValueError("model returned values outside [0, 1]")
        return Scores(p, bool(rows[:, 1].any()), rows[:, 2:])

    async def rank_routes(
        self, attempt: Attempt, route_ids: Sequence[str]
    ) -> tuple[list[RankedRoute], Scores]:
        """Candidate routes of the attempt, best expected value first, and the scores of the
        distinct candidates in the order given."""
        candidates = list(dict.fromkeys(route_ids))
        scores = await self.score(columns_of(route_variants(attempt, candidates)))
        probabilities = dict(zip(candidates, scores.p.tolist(), strict=True))
        return routes.rank_routes(attempt.amount, probabilities, self.costs), scores

    async def advise_retry(
        self, attempt: Attempt, decline: DeclineContext, candidates: Sequence[RetryOption]
    ) -> tuple[RetryAdvice, bool, np.ndarray]:
        """Scheme rules first, then the best allowed option by expected value (or stop); with
        whether features were degraded and the model's features of the advised reattempt
        (empty when it stops)."""
        options = retries.allowed_options(decline, candidates)
        scores = await self.score(columns_of([retry_variant(attempt, decline, o) for o in options]))
        lookup = dict(zip(options, scores.p.tolist(), strict=True))
        advice = retries.advise_retry(
            decline,
            candidates,
            lambda chosen: [lookup[o] for o in chosen],
            self.costs,
            min_probability=self.min_retry_probability,
        )
        chosen = RetryOption(
            route_id=advice.route_id or attempt.route_id, delay_hours=advice.delay_hours or 0.0,
            with_3ds=advice.with_3ds, with_network_token=advice.with_network_token,
        )  # fmt: skip
        at = options.index(chosen) if advice.action == "retry" and chosen in options else None
        features = scores.features[at] if at is not None and scores.features.size else _NONE
        return advice, scores.degraded, features


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
