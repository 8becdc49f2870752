"""The protocol-independent front of the service: admission, metrics, logs, engine calls.

Both the HTTP API (``service.py``) and the gRPC servicer (``grpc_server.py``) call a
:class:`Gateway` with validated request models, so the two protocols share one code path down
to the adaptive batcher. Protocol adapters only translate requests, answers and the two
exceptions raised here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from arms import Arms
from decision_log import Decision, DecisionLog, Outcomes, now
from schemas import (
    AdviseRetryRequest,
    AdviseRetryResponse,
    AttemptScore,
    RankedRouteOut,
    RankRoutesRequest,
    RankRoutesResponse,
    ReportOutcomesResponse,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
)
from telemetry import Metrics, log_event

from approvals.contract import Attempt, AttemptColumns
from approvals.decisions.retries import static_retry
from approvals.errors import UserError
from approvals.features.outcomes import OutcomeWriter
from approvals.serving.engine import Engine, OneAttempt, Scores

Answer = TypeVar("Answer")
Protocol = str  # "http" or "grpc"


@dataclass(frozen=True)
class BatchScores:
    """A ScoreBatch answer, before it becomes JSON or protobuf."""

    attempt_ids: list[str]
    p_approve: list[float]
    model_version: str
    degraded: bool
    variant: str  # the arm of every attempt, or "mixed"
    variants: list[str]  # each attempt's arm

    def response(self) -> ScoreBatchResponse:
        """The answer as the HTTP API's model."""
        rows = [
            AttemptScore(attempt_id=i, p_approve=p, variant=v)
            for i, p, v in zip(self.attempt_ids, self.p_approve, self.variants, strict=True)
        ]
        return ScoreBatchResponse(
            scores=rows, model_version=self.model_version, degraded=self.degraded,
            variant=self.variant,
        )  # fmt: skip


class OverloadedError(Exception):
    """The service is at capacity: answer HTTP 429 / gRPC RESOURCE_EXHAUSTED, retry later."""


class StoreUnavailableError(Exception):
    """Outcomes could not be written (Redis down or slow, no live feature version): answer
    HTTP 503 / gRPC UNAVAILABLE. Nothing of the call was applied, or all of it was: a retry
    is safe (what was applied comes back as duplicates)."""


@dataclass
class Admission:
    """Bounded in-flight calls per process; beyond ``limit`` calls are refused at once.

    Refusing early keeps latency bounded for admitted calls and lets clients back off, instead
    of queueing until BentoML's own limits answer 503.
    """

    limit: int
    inflight: int = field(default=0, init=False)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one in-flight slot for the duration of a call.

        Raises:
            OverloadedError: every slot is taken.
        """
        if self.inflight >= self.limit:
            raise OverloadedError(f"{self.inflight} calls in flight (limit {self.limit})")
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1


@dataclass
class Gateway:
    """Answers the calls of the API for either protocol, in each payment's arm, and logs
    every answer (:mod:`arms`, :mod:`decision_log`)."""

    engine: Engine | Arms
    admission: Admission
    metrics: Metrics
    outcomes: OutcomeWriter
    decisions: DecisionLog | None = None
    shadow_limit: int = 64  # shadow scorings in flight at most; beyond, skipped and counted
    _shadows: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.arms = self.engine if isinstance(self.engine, Arms) else Arms(self.engine)

    async def score(self, request: ScoreRequest, protocol: Protocol) -> ScoreResponse:
        """One attempt -> calibrated probability."""
        attempt = request.attempt
        variant = self.arms.of(attempt.payment_id)

        async def run() -> ScoreResponse:
            engine = self.arms.engine(variant)
            scores = await engine.score(OneAttempt(attempt))
            self._count_degraded("score", protocol, scores.degraded)
            p = float(scores.p[0])
            self._log(Decision("score", variant, engine.model_version, scores.degraded,
                               attempt, [p], scores.features, None, now()))  # fmt: skip
            self._shadow(variant, "score", lambda e: e.score(OneAttempt(attempt)), attempt)
            return ScoreResponse(
                attempt_id=attempt.attempt_id, p_approve=p, model_version=engine.model_version,
                degraded=scores.degraded, variant=variant,
            )  # fmt: skip

        return await self._call("score", protocol, 1, run)

    async def score_batch(self, attempts: AttemptColumns, protocol: Protocol) -> BatchScores:
        """Many validated attempts (one request's table) -> probabilities in request order,
        each attempt scored in its payment's arm."""

        async def run() -> BatchScores:
            variants = self.arms.of_all(attempts.columns["payment_id"])
            groups = {v: np.flatnonzero(variants == v) for v in dict.fromkeys(variants.tolist())}
            parts = {v: _subset(attempts, rows) for v, rows in groups.items()}
            scored = await asyncio.gather(
                *(self.arms.engine(v).score(part) for v, part in parts.items())
            )
            p, degraded = np.empty(len(attempts)), False
            for (variant, rows), scores in zip(groups.items(), scored, strict=True):
                p[rows] = scores.p
                degraded |= scores.degraded
                version = self.arms.engine(variant).model_version
                self._log(Decision("score_batch", variant, version, scores.degraded,
                                   parts[variant], scores.p.tolist(), scores.features, None,
                                   now()))  # fmt: skip
                self._shadow(variant, "score_batch", lambda e, t=parts[variant]: e.score(t),
                             parts[variant])  # fmt: skip
            self._count_degraded("score_batch", protocol, degraded)
            # one arm: its model's version; mixed: the champion's (each attempt names its arm)
            shown = str(variants[0]) if len(groups) == 1 else "mixed"
            version = self.arms.engine(shown).model_version
            return BatchScores(
                attempts.attempt_ids, p.tolist(), version, degraded, shown, variants.tolist()
            )

        return await self._call("score_batch", protocol, len(attempts), run)

    async def rank_routes(
        self, request: RankRoutesRequest, protocol: Protocol
    ) -> RankRoutesResponse:
        """Candidate routes ranked by expected value (holdout: in the order given)."""
        variant = self.arms.of(request.attempt.payment_id)

        async def run() -> RankRoutesResponse:
            engine = self.arms.engine(variant)
            ranked, scores = await engine.rank_routes(request.attempt, request.route_ids)
            self._count_degraded("rank_routes", protocol, scores.degraded)
            order = list(dict.fromkeys(request.route_ids))
            if variant == "holdout":  # the merchant's order: no model decides
                ranked = sorted(ranked, key=lambda r: order.index(r.route_id))
            top = ranked[0]
            at = order.index(top.route_id)
            sent = request.attempt.model_copy(update={"route_id": top.route_id})
            self._log(Decision("rank_routes", variant, engine.model_version, scores.degraded,
                               sent, [top.p_approve], scores.features[at : at + 1], None,
                               now()))  # fmt: skip
            self._shadow(variant, "rank_routes", lambda e: _top(e, request), request.attempt)
            routes = [
                RankedRouteOut(route_id=r.route_id, p_approve=r.p_approve,
                               expected_value=r.expected_value)
                for r in ranked
            ]  # fmt: skip
            return RankRoutesResponse(
                routes=routes, model_version=engine.model_version, degraded=scores.degraded,
                variant=variant,
            )  # fmt: skip

        return await self._call("rank_routes", protocol, len(request.route_ids), run)

    async def advise_retry(
        self, request: AdviseRetryRequest, protocol: Protocol
    ) -> AdviseRetryResponse:
        """Stop, or retry with route, delay and corrections (holdout: the scheme rules' first
        allowed option, no model)."""
        variant = self.arms.of(request.attempt.payment_id)

        async def run() -> AdviseRetryResponse:
            engine = self.arms.engine(variant)
            if variant == "holdout":
                advice = static_retry(request.decline(), request.options())
                degraded, features = False, np.zeros((1, 0))
            else:
                advice, degraded, vector = await engine.advise_retry(
                    request.attempt, request.decline(), request.options()
                )
                features = vector[None, :]
            self._count_degraded("advise_retry", protocol, degraded)
            retry = {k: getattr(advice, k) for k in ("action", "reason", "route_id", "delay_hours")}
            self._log(Decision(
                "advise_retry", variant, engine.model_version, degraded, request.attempt,
                [advice.p_approve], features, retry, now(),
            ))  # fmt: skip
            return AdviseRetryResponse(
                **advice.to_dict(), model_version=engine.model_version, degraded=degraded,
                variant=variant,
            )  # fmt: skip

        return await self._call("advise_retry", protocol, 1, run)

    async def report_outcomes(
        self, outcomes: AttemptColumns, protocol: Protocol
    ) -> ReportOutcomesResponse:
        """Validated outcomes applied to the online store before the answer (read your writes).

        Raises:
            StoreUnavailableError: Redis failed or was too slow, or holds no usable live
                version.
        """

        async def run() -> ReportOutcomesResponse:
            from redis.exceptions import RedisError

            try:
                done = await self.outcomes.apply(outcomes)
            except (RedisError, TimeoutError, UserError) as exc:
                raise StoreUnavailableError(f"online store: {_one_line(exc)}") from exc
            for status, count in (("applied", done.applied), ("duplicate", done.duplicates),
                                  ("late", done.late)):  # fmt: skip
                if count:
                    self.metrics.outcomes.labels(status=status).inc(count)
            if self.decisions is not None and (done.applied or done.late):
                # labels of the log: counted now or too old for the features, not repeats
                keep = np.frombuffer(done.statuses.encode(), dtype=np.uint8) != ord("d")
                self.decisions.record(Outcomes(outcomes, keep, now()))
            return ReportOutcomesResponse(
                applied=done.applied, duplicates=done.duplicates, late=done.late
            )

        return await self._call("report_outcomes", protocol, len(outcomes), run)

    def _log(self, decision: Decision) -> None:
        if self.decisions is not None:
            self.decisions.record(decision)

    def _shadow(
        self, variant: str, endpoint: str, call: Callable[[Engine], Awaitable[Any]],
        attempts: Attempt | AttemptColumns,
    ) -> None:  # fmt: skip
        """The challenger's answer to the same request, after this one, logged (shadow)."""
        challenger = self.arms.shadows(variant)
        if challenger is None or self.decisions is None:
            return
        if len(self._shadows) >= self.shadow_limit:
            self.metrics.decisions.labels(outcome="shadow_skipped").inc()
            return

        async def run() -> None:
            try:
                scores = await call(challenger)
            except Exception:
                self.metrics.decisions.labels(outcome="shadow_failed").inc()
                return
            p, features, sent = _shadow_answer(scores, attempts)
            self._log(Decision(endpoint, "challenger", challenger.model_version,
                               bool(scores.degraded), sent, p, features, None, now(),
                               shadow=True))  # fmt: skip

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    def _count_degraded(self, endpoint: str, protocol: Protocol, degraded: bool) -> None:
        if degraded:
            self.metrics.degraded.labels(endpoint=endpoint, protocol=protocol).inc()

    async def _call(
        self, endpoint: str, protocol: Protocol, size: int, run: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        start = time.perf_counter()
        outcome = "ok"
        try:
            with self.admission.slot():
                return await run()
        except OverloadedError:
            outcome = "overloaded"
            raise
        except StoreUnavailableError as exc:
            outcome = "unavailable"
            log_event(
                "call failed", logging.WARNING, endpoint=endpoint, protocol=protocol, size=size,
                error=str(exc),
            )  # fmt: skip
            raise
        except Exception as exc:
            outcome = "error"
            log_event(
                "call failed", logging.ERROR, endpoint=endpoint, protocol=protocol, size=size,
                error=type(exc).__name__,
            )  # fmt: skip
            raise
        finally:
            latency, answered = self.metrics.answered(endpoint, protocol)
            latency.observe(time.perf_counter() - start)
            if outcome == "ok":
                answered.inc()
            else:
                labels = {"endpoint": endpoint, "protocol": protocol}
                self.metrics.requests.labels(**labels, outcome=outcome).inc()
                self.metrics.errors.labels(**labels, kind=outcome).inc()


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split()) if str(exc) else type(exc).__name__


def _subset(attempts: AttemptColumns, rows: np.ndarray) -> AttemptColumns:
    """The attempts at ``rows`` (all of them without a copy when that is every row)."""
    if len(rows) == len(attempts):
        return attempts
    return AttemptColumns({name: column[rows] for name, column in attempts.columns.items()})


@dataclass(frozen=True)
class _Top:
    """A RankRoutes answer as a shadow logs it: the top route's score and the attempt sent."""

    p: np.ndarray
    degraded: bool
    features: np.ndarray
    sent: Attempt


async def _top(engine: Engine, request: RankRoutesRequest) -> _Top:
    ranked, scores = await engine.rank_routes(request.attempt, request.route_ids)
    at = list(dict.fromkeys(request.route_ids)).index(ranked[0].route_id)
    sent = request.attempt.model_copy(update={"route_id": ranked[0].route_id})
    return _Top(scores.p[at : at + 1], scores.degraded, scores.features[at : at + 1], sent)


def _shadow_answer(
    scores: Scores | _Top, attempts: Attempt | AttemptColumns
) -> tuple[list[float | None], np.ndarray, Attempt | AttemptColumns]:
    if isinstance(scores, _Top):
        return scores.p.tolist(), scores.features, scores.sent
    return scores.p.tolist(), scores.features, attempts
