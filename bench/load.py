"""Open-loop load and server CPU accounting, shared by the benchmark's sections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import numpy as np
import psutil

from dev.requests import attempt_json, attempt_message
from dev.stubs import grpc_stubs

CALL_TIMEOUT_S = 5.0


@dataclass
class Outcome:
    """Latencies (ms) of the answered calls and counts of everything else."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    degraded: int = 0

    def fail(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def percentiles(self) -> tuple[float, float]:
        """(p50, p99) in ms; NaN when nothing was answered."""
        if not self.latencies:
            return float("nan"), float("nan")
        p50, p99 = np.percentile(np.array(self.latencies), [50, 99])
        return float(p50), float(p99)

    def line(self) -> str:
        p50, p99 = self.percentiles()
        errors = sum(self.errors.values())
        detail = f" {self.errors}" if errors else ""
        return (
            f"p50 {p50:6.2f} ms   p99 {p99:7.2f} ms   ok {len(self.latencies):5d}   "
            f"errors {errors}{detail}   degraded {self.degraded}"
        )


Send = Callable[[int], Awaitable[bool]]  # request number -> degraded flag of the answer


async def open_loop(send: Send, rps: int, seconds: float) -> Outcome:
    """Start calls at a fixed rate whatever the answers; wait for them at most CALL_TIMEOUT_S."""
    outcome = Outcome()

    async def one(i: int) -> None:
        start = time.perf_counter()
        try:
            degraded = await asyncio.wait_for(send(i), CALL_TIMEOUT_S)
        except TimeoutError:
            outcome.fail("timeout")
        except Exception as exc:  # every failure is counted by kind, none stops the run
            outcome.fail(kind_of(exc))
        else:
            outcome.latencies.append((time.perf_counter() - start) * 1e3)
            outcome.degraded += int(degraded)

    tasks, t0 = [], time.perf_counter()
    for i in range(int(rps * seconds)):
        delay = t0 + i / rps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    _, pending = await asyncio.wait(tasks, timeout=CALL_TIMEOUT_S + 1)
    for task in pending:
        task.cancel()
        outcome.fail("unfinished")
    return outcome


def kind_of(exc: BaseException) -> str:
    """A failure's kind: the gRPC status, the HTTP status or the exception's class."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    return type(exc).__name__


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server process and all its children."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def score_requests(rows: Sequence[Any]) -> tuple[list[dict[str, object]], list[Any]]:
    """The Score requests of attempt rows: as HTTP JSON bodies and as ``ScoreRequest``s."""
    pb, _ = grpc_stubs()
    bodies: list[dict[str, object]] = [{"attempt": attempt_json(r)} for r in rows]
    return bodies, [pb.ScoreRequest(attempt=attempt_message(r)) for r in rows]


@dataclass
class Clients:
    """One HTTP session and one gRPC channel to a server, with the Score requests to send."""

    http: aiohttp.ClientSession
    base: str
    stub: Any  # approval.v1 ApprovalServiceStub
    bodies: list[dict[str, object]]
    messages: list[Any]  # approval.v1 ScoreRequest

    async def score_http(self, i: int) -> bool:
        body = self.bodies[i % len(self.bodies)]
        async with self.http.post(f"{self.base}/score", json=body) as response:
            response.raise_for_status()
            return bool((await response.json())["degraded"])

    async def score_grpc(self, i: int) -> bool:
        message = self.messages[i % len(self.messages)]
        return bool((await self.stub.Score(message, timeout=CALL_TIMEOUT_S)).degraded)


@dataclass(frozen=True)
class Measured:
    """One open-loop run against one server: latencies and the server's CPU per call."""

    outcome: Outcome
    cpu_ms_per_call: float


async def measured(send: Send, rps: int, seconds: float, pid: int) -> Measured:
    """``open_loop`` after a 1 s warm-up at the same rate, with the server's CPU per call.

    The warm-up sizes the client's connection pool for the rate (uvicorn closes keep-alive
    connections idle for 5 s) and is not counted.
    """
    await open_loop(send, rps, 1)
    cpu = server_cpu_s(pid)
    outcome = await open_loop(send, rps, seconds)
    calls = max(1, int(rps * seconds))
    return Measured(outcome, (server_cpu_s(pid) - cpu) / calls * 1e3)
