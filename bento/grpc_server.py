"""The gRPC face of the service: ``approval.v1.ApprovalService`` on its own port.

Why a ``grpc.aio`` server inside the BentoML front-end process: the ``@bentoml.service`` API
serves HTTP only, and BentoML's legacy ``serve-grpc`` needs grpcio 1.62, which the Pulumi SDK's
grpcio >= 1.68 excludes. Started from the service's startup hook, on the same event loop as the
HTTP API, the servicer calls the same :class:`~gateway.Gateway` as HTTP does, so both protocols
share validation, admission, metrics and the adaptive batcher of the worker process.

Requests are translated field by field (no ``MessageToDict``: it costs more than scoring) into
the pydantic models of :mod:`schemas`; ScoreBatch's attempts become columns, validated as one
table by the contract (:func:`approvals.contract.validate_request`). A validation error becomes
``INVALID_ARGUMENT`` naming the field, :class:`~gateway.OverloadedError` becomes
``RESOURCE_EXHAUSTED``.

The health service reports the server and the approval service SERVING while the service is
ready (``/readyz``'s rule, see :mod:`readiness`) and NOT_SERVING otherwise, checked every
second, and NOT_SERVING from the start of a shutdown.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import numpy as np
from approval.v1 import approval_pb2 as pb
from approval.v1 import approval_pb2_grpc as pb_grpc
from gateway import Gateway, OverloadedError, StoreUnavailableError
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import BaseModel, ValidationError
from schemas import (
    MAX_BATCH,
    AdviseRetryRequest,
    RankRoutesRequest,
    ReportOutcomesRequest,
    ScoreBatchRequest,
    ScoreRequest,
)
from telemetry import log_event

from approvals.contract import AttemptColumns, validate_request
from approvals.errors import ContractError
from approvals.features.outcomes import validate_reports

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ApprovalService"].full_name
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
Req = TypeVar("Req", bound=BaseModel)


def message_to_dict(message: Message) -> dict[str, Any]:
    """A request message as the dict its pydantic model validates.

    Fields with presence (sub-messages, ``optional`` scalars) appear only when set, so an unset
    ``attempt`` or ``event_time`` is reported as missing; ``Timestamp`` becomes an aware
    ``datetime`` (one outside datetime's range becomes text validation rejects, naming the
    field); plain scalars keep their proto3 defaults ("" or 0), which validation rejects by
    name where the contract forbids them.
    """
    plan = _plan(message.DESCRIPTOR)
    out = dict(zip(plan.scalars, plan.scalar_values(message), strict=True))
    for name, kind in plan.others:
        if kind is _Kind.REPEATED_MESSAGE:
            out[name] = [message_to_dict(v) for v in getattr(message, name)]
        elif kind is _Kind.REPEATED:
            out[name] = list(getattr(message, name))
        elif not message.HasField(name):
            continue
        elif kind is _Kind.TIMESTAMP:
            out[name] = _datetime(getattr(message, name))
        elif kind is _Kind.MESSAGE:
            out[name] = message_to_dict(getattr(message, name))
        else:
            out[name] = getattr(message, name)
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime(stamp: Any) -> datetime | str:
    """A ``Timestamp`` as an aware UTC datetime (microseconds, as ``ToDatetime`` truncates)."""
    try:
        return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)
    except OverflowError:
        return "outside the supported range"


class _Kind(enum.Enum):
    SCALAR = "scalar"  # no presence: always present, proto3 default when unset
    OPTIONAL = "optional"  # scalar with presence
    MESSAGE = "message"
    TIMESTAMP = "timestamp"
    REPEATED = "repeated"
    REPEATED_MESSAGE = "repeated_message"


@dataclass(frozen=True)
class _Plan:
    """How to read a message type: its plain scalars in one call, the other fields one by one."""

    scalars: tuple[str, ...]
    scalar_values: Callable[[Message], tuple[Any, ...]]
    others: tuple[tuple[str, _Kind], ...]


@functools.cache
def _plan(descriptor: Any) -> _Plan:
    """How to read each field of a message type (worked out once per type, not per message)."""
    kinds = []
    for field in descriptor.fields:
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if field.label == FieldDescriptor.LABEL_REPEATED:
            kind = _Kind.REPEATED_MESSAGE if is_message else _Kind.REPEATED
        elif is_message and field.message_type.full_name == "google.protobuf.Timestamp":
            kind = _Kind.TIMESTAMP
        elif is_message:
            kind = _Kind.MESSAGE
        else:
            kind = _Kind.OPTIONAL if field.has_presence else _Kind.SCALAR
        kinds.append((field.name, kind))
    scalars = tuple(name for name, kind in kinds if kind is _Kind.SCALAR)
    others = tuple((name, kind) for name, kind in kinds if kind is not _Kind.SCALAR)
    return _Plan(scalars, _getter(scalars), others)


def _getter(names: tuple[str, ...]) -> Callable[[Message], tuple[Any, ...]]:
    """The values of ``names`` as a tuple, in one C-level call (``attrgetter``)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    return lambda message: tuple(getattr(message, n) for n in names)


def describe(error: ValidationError) -> str:
    """``field.path: message`` for every error, without the offending values."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class ApprovalServicer(pb_grpc.ApprovalServiceServicer):
    """Translates protobuf to the shared request models and back; no logic of its own."""

    def __init__(self, gateway: Gateway) -> None:
        """Serve with ``gateway`` (the same one the HTTP API uses)."""
        self.gateway = gateway

    async def Score(self, request: pb.ScoreRequest, context: Any) -> pb.ScoreResponse:  # noqa: N802
        """See ``approval.proto``."""
        answer = await self._call(request, context, ScoreRequest, self.gateway.score)
        return pb.ScoreResponse(**answer.model_dump())

    async def ScoreBatch(  # noqa: N802
        self, request: pb.ScoreBatchRequest, context: Any
    ) -> pb.ScoreBatchResponse:
        """See ``approval.proto``."""
        if not 0 < len(request.attempts) <= MAX_BATCH:  # the request's own limits, by name
            await self._parse(request, context, ScoreBatchRequest)
        try:
            table = attempt_table(request)
        except ContractError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        answer = await self._answer(table, context, self.gateway.score_batch)
        response = pb.ScoreBatchResponse(
            model_version=answer.model_version, degraded=answer.degraded, variant=answer.variant
        )
        add = response.scores.add  # in place: no message built and then copied per attempt
        for attempt_id, p, variant in zip(
            answer.attempt_ids, answer.p_approve, answer.variants, strict=True
        ):
            add(attempt_id=attempt_id, p_approve=p, variant=variant)
        return response

    async def RankRoutes(  # noqa: N802
        self, request: pb.RankRoutesRequest, context: Any
    ) -> pb.RankRoutesResponse:
        """See ``approval.proto``."""
        answer = await self._call(request, context, RankRoutesRequest, self.gateway.rank_routes)
        return pb.RankRoutesResponse(**answer.model_dump())

    async def AdviseRetry(  # noqa: N802
        self, request: pb.AdviseRetryRequest, context: Any
    ) -> pb.AdviseRetryResponse:
        """See ``approval.proto``."""
        answer = await self._call(request, context, AdviseRetryRequest, self.gateway.advise_retry)
        return pb.AdviseRetryResponse(**answer.model_dump())

    async def ReportOutcomes(  # noqa: N802
        self, request: pb.ReportOutcomesRequest, context: Any
    ) -> pb.ReportOutcomesResponse:
        """See ``approval.proto``."""
        if not 0 < len(request.outcomes) <= MAX_BATCH:  # the request's own limits, by name
            await self._parse(request, context, ReportOutcomesRequest)
        try:
            table = validate_reports([message_to_dict(o) for o in request.outcomes])
        except ContractError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        answer = await self._answer(table, context, self.gateway.report_outcomes)
        return pb.ReportOutcomesResponse(**answer.model_dump())

    async def _call(
        self,
        request: Message,
        context: grpc.aio.ServicerContext,
        model: type[Req],
        handler: Callable[[Req, str], Awaitable[Any]],
    ) -> Any:
        return await self._answer(await self._parse(request, context, model), context, handler)

    async def _parse(
        self, request: Message, context: grpc.aio.ServicerContext, model: type[Req]
    ) -> Req:
        try:
            return model.model_validate(message_to_dict(request))
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, describe(exc))
            raise  # abort raises; this line is for type checkers

    async def _answer(
        self, parsed: Any, context: grpc.aio.ServicerContext, handler: Callable[..., Awaitable[Any]]
    ) -> Any:
        try:
            return await handler(parsed, "grpc")
        except OverloadedError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise
        except StoreUnavailableError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise


def attempt_table(request: pb.ScoreBatchRequest) -> AttemptColumns:
    """The request's attempts validated as one table.

    Raises:
        ContractError: naming ``attempts[i].field`` of the first bad attempt.
    """
    attempts = request.attempts
    *values, seconds, nanos = zip(*map(_attempt_values, attempts), strict=True)
    columns: dict[str, Any] = dict(zip(_ATTEMPT_FIELDS, values, strict=True))
    seconds, nanos = np.array(seconds), np.array(nanos)
    has_time = (seconds != 0) | (nanos != 0)  # only the epoch itself may be unset
    for i in np.flatnonzero(~has_time):
        has_time[i] = attempts[int(i)].HasField("event_time")
    columns["event_time"] = _times(has_time, seconds, nanos)
    return validate_request(columns, row=lambda i: message_to_dict(attempts[i]))


def _times(has_time: np.ndarray, seconds: np.ndarray, nanos: np.ndarray) -> np.ndarray:
    """``Timestamp``s as ``message_to_dict`` reads them, in microseconds; NaT when unset or
    outside datetime's range."""
    ok = has_time & (seconds > _FIRST_US // 1_000_000 - 3) & (seconds < _LAST_US // 1_000_000 + 3)
    us = np.where(ok, seconds, 0) * 1_000_000 + nanos // 1000  # nanos: int32, +-2.2 s at most
    ok &= (us >= _FIRST_US) & (us <= _LAST_US)
    return np.where(ok, us, np.iinfo(np.int64).min).astype("datetime64[us]")  # int64 min: NaT


# Every Attempt field in one C-level call per attempt, the Timestamp as seconds and nanos.
_ATTEMPT_FIELDS = tuple(f.name for f in pb.Attempt.DESCRIPTOR.fields if f.name != "event_time")
_attempt_values = operator.attrgetter(*_ATTEMPT_FIELDS, "event_time.seconds", "event_time.nanos")
_FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_LAST_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def build_server(
    gateway: Gateway, port: int, host: str = "[::]", *, shared: bool = False
) -> tuple[Any, Any]:
    """A gRPC server with the approval service, health checking and reflection.

    Args:
        gateway: what the calls go to.
        port: the gRPC port.
        host: the bind address.
        shared: the port is shared with this service's other worker processes
            (``SO_REUSEPORT``: the kernel spreads connections over them). Otherwise a second
            server on the same port fails to start, loudly.

    Returns:
        ``(server, health_servicer)``; call ``await server.start()`` on the running loop.

    Raises:
        RuntimeError: the port could not be bound.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", int(shared)),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    pb_grpc.add_ApprovalServiceServicer_to_server(ApprovalServicer(gateway), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise RuntimeError(f"cannot bind gRPC port {port}")
    return server, health_servicer


async def start(
    server: Any, health_servicer: Any, port: int, ready: Callable[[], Awaitable[bool]]
) -> asyncio.Task[None]:
    """Start serving; report the health of the server and the approval service as ``ready()``
    says, now and then every ``HEALTH_INTERVAL_S``.

    Returns:
        The task that keeps the health current (:func:`stop` cancels it).
    """
    await server.start()
    reported = await _report(health_servicer, await ready(), None)
    task = asyncio.create_task(_follow(health_servicer, ready, reported), name="grpc-health")
    task.add_done_callback(_log_end)
    loop = type(asyncio.get_running_loop())
    log_event("grpc server started", port=port, event_loop=f"{loop.__module__}.{loop.__name__}")
    return task


HEALTH_INTERVAL_S = 1.0  # as often as the readiness answer is refreshed
SERVING, NOT_SERVING = (
    health_pb2.HealthCheckResponse.SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING,
)


async def _follow(
    health_servicer: Any, ready: Callable[[], Awaitable[bool]], reported: int
) -> None:
    while True:
        await asyncio.sleep(HEALTH_INTERVAL_S)
        reported = await _report(health_servicer, await ready(), reported)


async def _report(health_servicer: Any, ready: bool, reported: int | None) -> int:
    """Set SERVING or NOT_SERVING for the server and the service when it changed; the status."""
    status = SERVING if ready else NOT_SERVING
    if status != reported:
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
    return status


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log_event("grpc health no longer follows readiness", logging.ERROR, error=repr(exc))


async def stop(
    server: Any, health_servicer: Any, grace_seconds: float, health_task: asyncio.Task[None] | None
) -> None:
    """Report NOT_SERVING, stop accepting calls, let in-flight calls finish within the grace."""
    if health_task is not None:
        health_task.cancel()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_seconds)
    log_event("grpc server stopped", logging.INFO, grace_seconds=grace_seconds)
