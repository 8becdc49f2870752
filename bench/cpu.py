# ruff: noqa: E501
"""Server CPU per Score call, against do-nothing servers driven by the same client in the same run.

What is stable from one machine or day to the next is not latency but the CPU a server spends
per call: its processes' user + system time over an open-loop run, divided by the calls. This
section drives, at each rate and over each protocol, a do-nothing server and the service one
after the other with the same requests:

- gRPC: ``bench/null_grpc.py``, a plain ``grpc.aio`` server answering a constant;
- HTTP: ``bench/null_service.py``, a BentoML service answering a constant, with the service's
  BentoML settings (one worker, no access log);

and prints the service's CPU per call and p99 as ratios to the do-nothing server's. Run as part
of ``bench/serving.py`` (``make bench``), against a stack of one serving worker, so both sides
are one process answering one client.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc

from bench.load import CALL_TIMEOUT_S, Clients, Measured, measured, open_loop, score_requests
from dev.processes import free_port, stop_group, wait_for_port
from dev.stack import BENTO_DIR, Service, bentoml_env
from dev.stubs import grpc_stubs

HERE = Path(__file__).resolve().parent
RATES = (50, 300)


def event_loop() -> str:
    """The event loop the servers run: uvloop where installed (uvicorn's "auto"), else asyncio."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


@dataclass(frozen=True)
class Server:
    """Where a server answers and the pid whose process tree's CPU is its cost."""

    name: str
    pid: int
    http: str | None = None  # base URL
    grpc: str | None = None  # host:port


@contextlib.contextmanager
def null_servers(workdir: Path) -> Iterator[tuple[Server, Server]]:
    """The do-nothing gRPC server and the do-nothing BentoML service, running."""
    grpc_port, http_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (workdir / "null-grpc.log").open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, str(HERE / "null_grpc.py"), "--port", str(grpc_port)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
        wait_for_port(grpc_port, proc=procs[-1])
        log = workdir / "null-bentoml.log"
        env = bentoml_env(workdir / "bentoml")  # with the service's modules importable
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENTO_DIR), env.get("PYTHONPATH")]))
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bentoml", "serve", "null_service:Null",
                 "--host", "127.0.0.1", "--port", str(http_port)],
                cwd=HERE, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
        http = f"http://127.0.0.1:{http_port}"
        Service(procs[-1], http, "", log).wait_ready()
        yield (
            Server("null grpc.aio", procs[0].pid, grpc=f"127.0.0.1:{grpc_port}"),
            Server("null BentoML", procs[1].pid, http=http),
        )
    finally:
        for proc in procs:
            stop_group(proc, timeout=10)


@dataclass(frozen=True)
class Pair:
    """The service and a do-nothing server measured at one rate over one protocol."""

    protocol: str
    rps: int
    service: Measured
    null: Measured

    def line(self) -> str:
        s50, s99 = self.service.outcome.percentiles()
        n50, n99 = self.null.outcome.percentiles()
        s_cpu, n_cpu = self.service.cpu_ms_per_call, self.null.cpu_ms_per_call
        failed = sum(self.service.outcome.errors.values()) + sum(self.null.outcome.errors.values())
        note = (
            f"   FAILED CALLS service {self.service.outcome.errors} null {self.null.outcome.errors}"
        )
        return (
            f"{self.protocol:4s} {self.rps:4d}/s   CPU/call service {s_cpu:5.2f} ms  null {n_cpu:5.2f} ms"
            f"  ratio {s_cpu / n_cpu:4.2f}x   p50 {s50:5.2f}/{n50:5.2f} ms   p99 {s99:6.2f}/{n99:6.2f} ms"
            f"  ratio {s99 / n99:4.2f}x   degraded {self.service.outcome.degraded}"
            + (note if failed else "")
        )


async def compare(
    service: Server, nulls: tuple[Server, Server], rows: list, seconds: float,
    rates: tuple[int, ...] = RATES,
) -> list[Pair]:  # fmt: skip
    """Each rate and protocol: the do-nothing server, then the service, same requests."""
    _, pb_grpc = grpc_stubs()
    bodies, messages = score_requests(rows)
    null_grpc, null_http = nulls
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    async with contextlib.AsyncExitStack() as stack:

        async def clients(server: Server, base: str | None, target: str | None) -> Clients:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1000))
            )
            stub = None
            if target is not None:
                channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
                stub = pb_grpc.ApprovalServiceStub(channel)
            return Clients(http, base or "", stub, bodies, messages)

        ours = await clients(service, service.http, service.grpc)
        floor_grpc = await clients(null_grpc, None, null_grpc.grpc)
        floor_http = await clients(null_http, null_http.http, None)
        for send in (
            ours.score_grpc,
            ours.score_http,
            floor_grpc.score_grpc,
            floor_http.score_http,
        ):
            await open_loop(send, 50, 2)  # connected, warm; not reported
        pairs = []
        for rps in rates:
            for protocol, ours_send, floor_send, null in (
                ("grpc", ours.score_grpc, floor_grpc.score_grpc, null_grpc),
                ("http", ours.score_http, floor_http.score_http, null_http),
            ):
                base = await measured(floor_send, rps, seconds, null.pid)
                mine = await measured(ours_send, rps, seconds, service.pid)
                pairs.append(Pair(protocol, rps, mine, base))
                print(pairs[-1].line(), flush=True)
    return pairs
