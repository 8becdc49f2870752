"""The protocol-independent front of the service: admission, metrics, logs, engine calls.

Both the HTTP API (``service.py``) and the gRPC servicer (``grpc_server.py``) call a
:class:`Gateway` with validated request models, so the two protocols share one code path down
to the adaptive batcher. Protocol adapters only translate requests, answers and the two
exceptions raised here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

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

from approvals.contract import AttemptColumns
from approvals.errors import UserError
from approvals.features.outcomes import OutcomeWriter
from approvals.serving.engine import Engine, OneAttempt

Answer = TypeVar("Answer")
Protocol = str  # "http" or "grpc"


@dataclass(frozen=True)
class BatchScores:
    """A ScoreBatch answer, before it becomes JSON or protobuf."""

    attempt_ids: list[str]
    p_approve: list[float]
    model_version: str
    degraded: bool

    def response(self) -> ScoreBatchResponse:
        """The answer as the HTTP API's model."""
        rows = [
            AttemptScore(attempt_id=i, p_approve=p)
            for i, p in zip(self.attempt_ids, self.p_approve, strict=True)
        ]
        return ScoreBatchResponse(
            scores=rows, model_version=self.model_version, degraded=self.degraded
        )


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
    """Answers the four calls of the API for either protocol."""

    engine: Engine
    admission: Admission
    metrics: Metrics
    outcomes: OutcomeWriter

    async def score(self, request: ScoreRequest, protocol: Protocol) -> ScoreResponse:
        """One attempt -> calibrated probability."""

        async def run() -> ScoreResponse:
            scores = await self.engine.score(OneAttempt(request.attempt))
            self._count_degraded("score", protocol, scores.degraded)
            return ScoreResponse(
                attempt_id=request.attempt.attempt_id, p_approve=float(scores.p[0]),
                model_version=self.engine.model_version, degraded=scores.degraded,
            )  # fmt: skip

        return await self._call("score", protocol, 1, run)

    async def score_batch(self, attempts: AttemptColumns, protocol: Protocol) -> BatchScores:
        """Many validated attempts (one request's table) -> probabilities in request order."""

        async def run() -> BatchScores:
            scores = await self.engine.score(attempts)
            self._count_degraded("score_batch", protocol, scores.degraded)
            return BatchScores(
                attempts.attempt_ids, scores.p.tolist(), self.engine.model_version,
                scores.degraded,
            )  # fmt: skip

        return await self._call("score_batch", protocol, len(attempts), run)

    async def rank_routes(
        self, request: RankRoutesRequest, protocol: Protocol
    ) -> RankRoutesResponse:
        """Candidate routes ranked by expected value."""

        async def run() -> RankRoutesResponse:
            ranked, degraded = await self.engine.rank_routes(request.attempt, request.route_ids)
            self._count_degraded("rank_routes", protocol, degraded)
            routes = [
                RankedRouteOut(route_id=r.route_id, p_approve=r.p_approve,
                               expected_value=r.expected_value)
                for r in ranked
            ]  # fmt: skip
            return RankRoutesResponse(
                routes=routes, model_version=self.engine.model_version, degraded=degraded
            )

        return await self._call("rank_routes", protocol, len(request.route_ids), run)

    async def advise_retry(
        self, request: AdviseRetryRequest, protocol: Protocol
    ) -> AdviseRetryResponse:
        """Stop, or retry with route, delay and corrections."""

        async def run() -> AdviseRetryResponse:
            advice, degraded = await self.engine.advise_retry(
                request.attempt, request.decline(), request.options()
            )
            self._count_degraded("advise_retry", protocol, degraded)
            return AdviseRetryResponse(
                **advice.to_dict(), model_version=self.engine.model_version, degraded=degraded
            )

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
            return ReportOutcomesResponse(
                applied=done.applied, duplicates=done.duplicates, late=done.late
            )

        return await self._call("report_outcomes", protocol, len(outcomes), run)

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
