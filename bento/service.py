"""The approvals BentoML service: validation and wiring only.

One service, ``APPROVALS_WORKERS`` worker processes (default 1; one per core): each runs the
HTTP API and a gRPC server started from its startup hook on the same event loop (the workers
share the gRPC port). In a worker, both protocols go through one :class:`~gateway.Gateway`
into one adaptive batcher (:mod:`batching`) whose every batch is one Redis read, one feature
build and one model call. See ``docs/serving.md`` for the design and the measurements behind
the batching parameters and the worker count.

The model, in one of two modes, checked the same way at load (the package's files and format,
its compiled trees against the booster, else LightGBM scores):

- **Local** (``bentoml serve service:Approvals`` from ``bento/``, ``make serve``, tests):
  ``APPROVALS_MODEL_DIR`` names a model package directory; nothing is declared to BentoML.
- **Model store** (a built bento, or ``APPROVALS_MODEL_TAG`` without ``APPROVALS_MODEL_DIR``):
  the service declares ``approvals:<model_version>`` as a ``BentoModel`` on its class, so
  ``bentoml build`` names it in the bento's manifest, and BentoML ships it with the bento and
  resolves it before the workers start; the service loads the package from the model's
  directory and refuses one whose version is not the tag's. A bento's ``serving.env``
  (``bundle.py``) sets the tag; ``APPROVALS_MODEL_DIR`` still overrides it.
"""

from __future__ import annotations

import asyncio
import gc
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bentoml
import grpc_server
import telemetry
import traffic
from arms import Arms
from batching import Batcher
from bentoml.exceptions import BentoMLException
from config import ServingSettings
from decision_log import DecisionLog
from gateway import Admission, Gateway, OverloadedError, StoreUnavailableError
from readiness import ReadyCheck
from schemas import (
    AdviseRetryRequest,
    AdviseRetryResponse,
    RankRoutesRequest,
    RankRoutesResponse,
    ReportOutcomesRequest,
    ReportOutcomesResponse,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
)

from approvals.decisions.costs import load_costs
from approvals.errors import PackageError
from approvals.features.online import OnlineFeatureStore
from approvals.features.outcomes import OutcomeWriter
from approvals.features.redis_settings import RedisSettings
from approvals.model.package import ModelPackage
from approvals.model.trees import CompiledTrees
from approvals.serving.engine import Engine, Pipeline, min_retry_probability

traffic.install()  # BentoML's HTTP timeout without its 10 s retention of every request
# BentoML configures a process's logging before it imports the service and has no hook after:
# here is the only place that reaches the `bentoml serve` process as well as its workers.
telemetry.json_logging()
SETTINGS = ServingSettings()  # at import: where BentoML reads the service's configuration


class TooManyRequests(BentoMLException):
    """HTTP 429: the service is at capacity; retry with backoff."""

    error_code = HTTPStatus.TOO_MANY_REQUESTS


class StoreUnavailable(BentoMLException):
    """HTTP 503: the online store cannot take outcomes now; retry (repeats are duplicates)."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


@bentoml.service(
    name="approvals",
    workers=SETTINGS.workers,
    traffic={"timeout": 10},
    endpoints={"livez": "/livez", "readyz": "/readyz"},
    # A log line per call costs more CPU than scoring it; /metrics counts every call and
    # the gateway logs every failure.
    logging={"access": {"enabled": False}},
)
class Approvals:
    """Score, ScoreBatch, RankRoutes, AdviseRetry and ReportOutcomes over HTTP and gRPC."""

    # The models of the store mode (see the module's docstring); None in the local mode.
    model_ref = (
        bentoml.models.BentoModel(SETTINGS.model_tag)
        if SETTINGS.model_tag and SETTINGS.model_dir is None
        else None
    )
    challenger_ref = (
        bentoml.models.BentoModel(SETTINGS.challenger_tag)
        if SETTINGS.challenger_tag and SETTINGS.challenger_dir is None
        else None
    )

    def __init__(self) -> None:
        self.settings = ServingSettings()
        self.package = self._load_package(self.settings.model_dir, self.model_ref)
        self.challenger = (
            self._load_package(self.settings.challenger_dir, self.challenger_ref)
            if self.settings.challenger_dir is not None or self.challenger_ref is not None
            else None
        )
        metrics = telemetry.metrics()
        self.store = OnlineFeatureStore(RedisSettings(), on_keys=metrics.count_keys)
        self.batchers: list[Batcher] = []
        champion = self._engine(self.package, metrics)
        challenger = self._engine(self.challenger, metrics) if self.challenger else None
        s = self.settings
        arms = Arms.configure(
            champion, challenger, s.experiment, s.challenger_share, s.holdout_share,
            s.experiment_salt,
        )  # fmt: skip
        self.outcomes = OutcomeWriter(RedisSettings(), self.settings.outcomes_timeout_ms / 1000)
        self.decisions = self._decision_log(metrics)
        self.gateway = Gateway(
            arms, Admission(self.settings.max_inflight), metrics, self.outcomes, self.decisions
        )
        self.ready = ReadyCheck(self.settings, self.store, self.package.spec.state_end)
        self.grpc: tuple[Any, Any] | None = None
        self.health: asyncio.Task[None] | None = None

    def _decision_log(self, metrics: telemetry.Metrics) -> DecisionLog | None:
        """The writer of every answer to the decision log stream (None when switched off)."""
        if not self.settings.decisions:
            return None
        return DecisionLog(
            RedisSettings(), maxlen=self.settings.decisions_maxlen,
            queue=self.settings.decisions_queue,
            features={p.model_version: p.spec.names for p in (self.package, self.challenger) if p},
            counter=metrics.decisions,
            with_features=self.settings.decisions_features,
        )  # fmt: skip

    def _engine(self, package: ModelPackage, metrics: telemetry.Metrics) -> Engine:
        """One model's engine, through an adaptive batcher of its own."""
        batcher = Batcher(
            Pipeline(package, self.store),
            self.settings.max_batch_size,
            self.settings.max_latency_ms,
            self.settings.max_concurrent_batches,
            on_batch=metrics.batch_size.observe,
        )
        self.batchers.append(batcher)
        return Engine(
            model_version=package.model_version, predict=batcher,
            costs=load_costs(self.settings.costs),
            min_retry_probability=min_retry_probability(package.manifest),
        )  # fmt: skip

    @staticmethod
    def _load_package(directory: Path | None, declared: Any) -> ModelPackage:
        """The package of a directory (local mode), else of the declared model.

        Raises:
            PackageError: no model is configured, or it is not a usable package of the
                version its tag names.
        """
        if directory is not None:
            package = ModelPackage.load(directory)
        elif declared is None:
            raise PackageError("no model: set APPROVALS_MODEL_DIR or APPROVALS_MODEL_TAG")
        else:  # resolved in the bento's model store, or the local one
            package = ModelPackage.load(declared.path)
            if package.model_version != declared.tag.version:
                raise PackageError(f"model {declared.tag} holds version {package.model_version}")
        telemetry.log_event(
            "model loaded", model_version=package.model_version,
            source=str(package.path) if directory is not None else str(declared.tag),
            trees="compiled" if isinstance(package.trees, CompiledTrees) else "lightgbm",
        )  # fmt: skip
        return package

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        """Serve gRPC on this worker's event loop, next to the HTTP API."""
        port = self.settings.grpc_port
        self.grpc = grpc_server.build_server(
            self.gateway, port, self.settings.grpc_host, shared=self.settings.workers > 1
        )
        self.health = await grpc_server.start(*self.grpc, port, self.__is_ready__)
        # Everything loaded so far (framework, model, schemas) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise pause every call.
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    async def stop_grpc(self) -> None:
        """Drain in-flight gRPC calls, then close the online store's connections."""
        if self.grpc is not None:
            await grpc_server.stop(*self.grpc, self.settings.shutdown_grace_s, self.health)
        for batcher in self.batchers:
            batcher.shutdown()
        await self.store.aclose()
        await self.outcomes.aclose()
        if self.decisions is not None:
            await self.decisions.aclose()

    async def __is_ready__(self) -> bool:
        """Model loaded (by construction), gRPC up, and, as configured, the model's features
        in Redis and Redis reachable (:mod:`readiness`)."""
        return await self.ready(self.grpc is not None)

    async def _http(self, call: Any, request: Any) -> Any:
        try:
            return await call(request, "http")
        except OverloadedError as exc:
            raise TooManyRequests(str(exc)) from exc
        except StoreUnavailableError as exc:
            raise StoreUnavailable(str(exc)) from exc

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /) -> ScoreResponse:
        """One attempt -> calibrated approval probability."""
        return await self._http(self.gateway.score, request)

    @bentoml.api(route="/score_batch")
    async def score_batch(self, request: ScoreBatchRequest, /) -> ScoreBatchResponse:
        """Up to 1000 attempts -> probabilities in request order."""
        return (await self._http(self.gateway.score_batch, request.attempts)).response()

    @bentoml.api(route="/rank_routes")
    async def rank_routes(self, request: RankRoutesRequest, /) -> RankRoutesResponse:
        """An attempt and candidate routes -> routes ranked by expected value."""
        return await self._http(self.gateway.rank_routes, request)

    @bentoml.api(route="/advise_retry")
    async def advise_retry(self, request: AdviseRetryRequest, /) -> AdviseRetryResponse:
        """A declined attempt -> stop, or retry with route, delay and corrections."""
        return await self._http(self.gateway.advise_retry, request)

    @bentoml.api(route="/report_outcomes")
    async def report_outcomes(self, request: ReportOutcomesRequest, /) -> ReportOutcomesResponse:
        """Outcomes of scored attempts (1 to 1000) -> applied before the answer, once each."""
        return await self._http(self.gateway.report_outcomes, request.outcomes)


# Inside BentoML's metrics, tracing and timeout middleware, a request meets these in order.
Approvals.add_asgi_middleware(traffic.JsonBodies)
Approvals.add_asgi_middleware(traffic.OpenApiErrors, service=Approvals)
