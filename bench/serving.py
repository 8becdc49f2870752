# ruff: noqa: E501
"""Serving benchmark: model floor, CPU per call against do-nothing servers, latency, throughput.

One command (not part of the tests)::

    uv run --frozen --all-extras python bench/serving.py --model PACKAGE_DIR --data ATTEMPTS

``--data`` is a labelled attempts file: its feature state is materialized into a throwaway
redis-server (or ``--redis-url``) and its last rows are the requests. Sections (``--sections``):

- ``model``: the service's model call against raw ``Booster.predict`` on the same rows;
- ``cpu``: server CPU per Score call and p99 over gRPC and HTTP at 50 and 300 calls/s, the
  service (one worker) against a do-nothing ``grpc.aio`` server and a do-nothing BentoML
  service driven by the same client in the same run, as ratios (:mod:`bench.cpu`);
- ``latency``: Score p50/p99 at 100, 300 and 600 calls/s with one worker per core;
- ``batch``: ScoreBatch throughput against raw ``Booster.predict`` on one core;
- ``shadow``: what the decision log and a shadowing challenger cost: Score p50/p99 and server
  CPU per call at 100 and 300 calls/s over both protocols (one worker per core), with the
  decision log off (the floor), on, and on with a challenger of the same size in mode
  ``shadow`` (every request scored twice, the second answer logged).

Every figure is printed with its ratio to a floor measured in the same run. Loopback only;
every call has a timeout and the whole run a deadline (``--deadline``), so a stuck server
fails the run instead of hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np

from approvals import features
from approvals.contract import read_attempts
from approvals.features.state import build_state
from approvals.model.package import ModelPackage
from approvals.model.trees import RawTrees, compile_trees
from bench import cpu
from bench.load import CALL_TIMEOUT_S, Clients, Outcome, open_loop, score_requests, server_cpu_s
from dev.requests import attempt_message
from dev.stack import LocalStack
from dev.stubs import grpc_stubs

RATES = (100, 300, 600)


def per_row_us(fn: Callable[[np.ndarray], object], x: np.ndarray, repeat: int) -> float:
    """Median microseconds per row of ``fn(x)`` over ``repeat`` runs (after one warm-up)."""
    fn(x)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / len(x) * 1e6


def model_floor(package: ModelPackage, x: np.ndarray) -> float:
    """Raw ``Booster.predict`` per row against the service's model call (linear + trees + calibrator).

    Returns raw ``Booster.predict``'s microseconds per row in batches (the throughput floor).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    one = x[:1].copy()

    def raw(m: np.ndarray) -> object:
        return package.booster.predict(m, raw_score=True, num_threads=1)

    c_api = RawTrees(package.booster)
    raw_1, raw_b = per_row_us(raw, one, 3000), per_row_us(raw, x, 100)
    api_1, api_b = per_row_us(c_api, one, 3000), per_row_us(c_api, x, 100)
    trees_1, trees_b = per_row_us(package.trees, one, 3000), per_row_us(package.trees, x, 100)
    pkg_1, pkg_b = per_row_us(package.predict, one, 3000), per_row_us(package.predict, x, 100)
    diff = float(np.max(np.abs(package.trees(x) - np.asarray(raw(x)))))
    kind = type(package.trees).__name__
    print(f"raw Booster.predict   single {raw_1:8.1f} us/row   batch({len(x)}) {raw_b:6.2f} us/row")
    print(f"trees via C API       single {api_1:8.1f} us/row   batch({len(x)}) {api_b:6.2f} us/row")
    print(
        f"service trees ({kind}) single {trees_1:8.1f} us/row   batch({len(x)}) {trees_b:6.2f} us/row   largest difference to Booster.predict {diff:.2g}"
    )
    print(f"service model call    single {pkg_1:8.1f} us/row   batch({len(x)}) {pkg_b:6.2f} us/row")
    print(
        f"model cost ratio      single {pkg_1 / raw_1:8.2f} x        batch       {pkg_b / raw_b:6.2f} x"
    )
    return raw_b


async def batch_sizes(base: str) -> tuple[float, float]:
    """(model calls, rows) so far, from the service's batch-size histogram."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        text = await response.text()
    calls = rows = 0.0
    for line in text.splitlines():
        if line.startswith("approvals_model_batch_size_count"):
            calls += float(line.rsplit(" ", 1)[1])
        elif line.startswith("approvals_model_batch_size_sum"):
            rows += float(line.rsplit(" ", 1)[1])
    return calls, rows


async def latency_table(
    base: str, target: str, rows: list, seconds: float, pid: int, rates: tuple[int, ...]
) -> None:
    _, pb_grpc = grpc_stubs()
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=1000)
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as http,
        grpc.aio.insecure_channel(target) as channel,
    ):
        clients = Clients(
            http, base, pb_grpc.ApprovalServiceStub(channel), *score_requests(rows)
        )  # fmt: skip
        for send in (clients.score_http, clients.score_grpc):  # warm-up, not reported
            await open_loop(send, 50, 3)
        for rps in rates:
            for name, send in (("http", clients.score_http), ("grpc", clients.score_grpc)):
                # steady state: the client's connection pool sized for this rate (uvicorn closes
                # keep-alive connections idle for 5 s, e.g. during the other protocol's run)
                await open_loop(send, rps, 1)
                before, cpu = await batch_sizes(base), server_cpu_s(pid)
                outcome = await open_loop(send, rps, seconds)
                cpu = (server_cpu_s(pid) - cpu) / max(1, int(rps * seconds)) * 1e3
                after = await batch_sizes(base)
                calls, rows_seen = after[0] - before[0], after[1] - before[1]
                mean = rows_seen / calls if calls else float("nan")
                print(
                    f"Score {name:4s} {rps:4d} rps   {outcome.line()}   mean batch {mean:5.1f}"
                    f"   server CPU {cpu:4.2f} ms/call"
                )


async def shadow_rows(
    base: str, target: str, pid: int, rows: list, seconds: float, name: str,
    floors: dict[tuple[str, int], tuple[float, float]],
) -> None:  # fmt: skip
    """Score p99 and CPU per call of one setup at 100 and 300 calls/s, with ratios to the
    first setup measured (``floors``, filled on its run)."""
    _, pb_grpc = grpc_stubs()
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1000)) as http,
        grpc.aio.insecure_channel(target) as channel,
    ):
        clients = Clients(http, base, pb_grpc.ApprovalServiceStub(channel), *score_requests(rows))
        for send in (clients.score_http, clients.score_grpc):  # warm-up, not reported
            await open_loop(send, 50, 3)
        for rps in RATES[:-1]:
            for protocol, send in (("http", clients.score_http), ("grpc", clients.score_grpc)):
                await open_loop(send, rps, 1)
                before = server_cpu_s(pid)
                outcome = await open_loop(send, rps, seconds)
                cpu_ms = (server_cpu_s(pid) - before) / max(1, int(rps * seconds)) * 1e3
                p99 = outcome.percentiles()[1]
                floor = floors.setdefault((protocol, rps), (p99, cpu_ms))
                print(
                    f"{name:18s} Score {protocol:4s} {rps:3d} rps   {outcome.line()}   "
                    f"server CPU {cpu_ms:4.2f} ms/call   p99 x{p99 / floor[0]:4.2f}, "
                    f"CPU x{cpu_ms / floor[1]:4.2f} of log off"
                )


async def batch_throughput(
    target: str,
    rows: list,
    seconds: float,
    pid: int,
    floor_us: float,
    *,
    clients: int = 4,
    connections: int = 4,
) -> None:
    """ScoreBatch calls of 1000 attempts, back to back from ``clients`` clients.

    Clients are spread over ``connections`` gRPC connections (their own subchannel pools, so
    channels do not share one): like separate backend instances, each with its connection
    to the service, which the kernel spreads over the worker processes.
    """
    pb, pb_grpc = grpc_stubs()
    request = pb.ScoreBatchRequest(attempts=[attempt_message(r) for r in rows[:1000]])
    outcome = Outcome()
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    try:
        stubs = [pb_grpc.ApprovalServiceStub(channel) for channel in channels]
        for stub in stubs:
            await stub.ScoreBatch(request, timeout=30)  # connected and warm
        deadline = time.perf_counter() + seconds

        async def client(stub: Any) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    answer = await stub.ScoreBatch(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as exc:
                    outcome.fail(exc.code().name)
                    continue
                outcome.latencies.append((time.perf_counter() - start) * 1e3)
                outcome.degraded += int(answer.degraded)

        start, cpu = time.perf_counter(), server_cpu_s(pid)
        await asyncio.gather(*(client(stubs[i % connections]) for i in range(clients)))
        elapsed, cpu = time.perf_counter() - start, server_cpu_s(pid) - cpu
    finally:
        for channel in channels:
            await channel.close()
    answered = len(outcome.latencies) * len(request.attempts)
    rate = answered / elapsed
    print(
        f"ScoreBatch gRPC ({len(request.attempts)} per call, {clients} clients, {connections} connection(s)): "
        f"{rate:,.0f} attempts/s   {outcome.line()}   server CPU {cpu / max(answered, 1) * 1e6:.1f} us/attempt"
    )
    # end to end (gRPC, validation, Redis features, model) against the bare model on one core
    print(
        f"  vs raw Booster.predict in batches on one core ({1e6 / floor_us:,.0f} rows/s in this run): {rate * floor_us / 1e6:.2f} x"
    )


SECTIONS = ("model", "cpu", "latency", "batch", "shadow")
# (name, service settings) of the shadow section; the first is the floor of the ratios
SHADOW_SETUPS = (
    ("decision log off", {"APPROVALS_DECISIONS": "false"}),
    ("decision log on", {}),
    ("log on + shadow", {"APPROVALS_EXPERIMENT": "shadow"}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--redis-url")
    parser.add_argument("--seconds", type=float, default=10, help="per rate and protocol")
    parser.add_argument("--deadline", type=float, default=900, help="whole run, seconds")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1,
        help="serving processes of the latency and batch sections (one per core)",
    )  # fmt: skip
    parser.add_argument(
        "--sections", default=",".join(SECTIONS),
        help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    args.sections = [name for name in args.sections.split(",") if name]
    if unknown := sorted(set(args.sections) - set(SECTIONS)):
        parser.error(
            f"--sections: unknown {', '.join(unknown)} (choose from {', '.join(SECTIONS)})"
        )
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench deadline")))
    signal.alarm(int(args.deadline))

    # the service's model as the bento ships it: the package with its trees compiled
    served_model = Path(tempfile.mkdtemp(prefix="approvals-bench-model-"))
    try:
        run(args, served_model)
    finally:
        shutil.rmtree(served_model, ignore_errors=True)
    signal.alarm(0)


def prepare(model: Path, data_path: Path, served_model: Path) -> tuple[ModelPackage, Any, Any]:
    """The package as the bento ships it (trees compiled) at ``served_model``, and the data.

    Returns:
        ``(package, requests, state)``: the last 2000 attempts of ``data_path`` as requests
        (labels dropped) and the feature state of every attempt before them.
    """
    shutil.copytree(model, served_model, dirs_exist_ok=True, ignore=shutil.ignore_patterns("state"))
    compile_trees(served_model)
    package = ModelPackage.load(served_model)
    data = read_attempts(data_path, labels=True).sort_values("event_time")
    requests = data.tail(2000).drop(columns=["approved", "response_code"])
    return package, requests, build_state(data.iloc[: len(data) - 2000])


def bench_stack(
    tmp: Path, served_model: Path, state: Any, workers: int, redis_url: str | None,
    extra: dict[str, str] | None = None,
) -> LocalStack:  # fmt: skip
    """Redis with ``state`` and the service of ``workers`` processes, logging into ``tmp``."""
    env = {
        "APPROVALS_REDIS_TIMEOUT_MS": os.environ.get("APPROVALS_REDIS_TIMEOUT_MS", "500"),
        "APPROVALS_WORKERS": str(workers),
        **(extra or {}),
    }
    return LocalStack(
        tmp, model_dir=served_model, redis_url=redis_url, state=state, env=env,
        log=tmp / "serve.log",
    )  # fmt: skip


def run(args: argparse.Namespace, served_model: Path) -> None:
    """Every section asked for, with the served model package at ``served_model``."""
    package, requests, state = prepare(args.model, args.data, served_model)
    rows = [r for _, r in requests.iterrows()]
    floor_us = float("nan")
    if "model" in args.sections or "batch" in args.sections:
        counts = features.counts_for(requests, None, state)
        x = features.matrix(counts, features.frame_columns(requests), package.spec)
        print("== model: the service's model call against raw Booster.predict on the same rows")
        floor_us = model_floor(package, x[:1000])

    def stack(tmp: str, workers: int, extra: dict[str, str] | None = None) -> LocalStack:
        return bench_stack(Path(tmp), served_model, state, workers, args.redis_url, extra)

    if "cpu" in args.sections:
        print(
            "== cpu: server CPU per Score call and p99, service (1 worker) / do-nothing server,"
            f" same client, open loop; event loop {cpu.event_loop()} in all three"
        )
        with (
            tempfile.TemporaryDirectory(prefix="approvals-bench-") as tmp,
            stack(tmp, 1) as local,
            cpu.null_servers(Path(tmp)) as nulls,
        ):
            service = local.service
            served = cpu.Server("service", service.proc.pid, service.http, service.grpc)
            asyncio.run(cpu.compare(served, nulls, rows, args.seconds))
    if "latency" in args.sections or "batch" in args.sections:
        with (
            tempfile.TemporaryDirectory(prefix="approvals-bench-") as tmp,
            stack(tmp, args.workers) as local,
        ):
            measure(local, rows, args, floor_us)
    if "shadow" in args.sections:
        print(f"== shadow: Score with the decision log and a shadowing challenger "
              f"({args.workers} worker(s); the challenger is a copy of the model)")  # fmt: skip
        floors: dict[tuple[str, int], tuple[float, float]] = {}
        for name, setup in SHADOW_SETUPS:
            challenger = {"APPROVALS_CHALLENGER_DIR": str(served_model)}
            extra = {**setup, **(challenger if "APPROVALS_EXPERIMENT" in setup else {})}
            with (
                tempfile.TemporaryDirectory(prefix="approvals-bench-") as tmp,
                stack(tmp, args.workers, extra) as local,
            ):
                service = local.service
                asyncio.run(shadow_rows(service.http, service.grpc, service.proc.pid, rows,
                                        args.seconds, name, floors))  # fmt: skip


def measure(stack: LocalStack, rows: list, args: argparse.Namespace, floor_us: float) -> None:
    """Latency at each rate and protocol, then ScoreBatch throughput, against the stack."""
    base, target, pid = stack.service.http, stack.service.grpc, stack.service.proc.pid
    latency, batch = "latency" in args.sections, "batch" in args.sections
    print(f"== latency and batch: {args.workers} serving worker(s)")
    # the overload rate last: it leaves the batcher's latency model inflated for a while
    if latency:
        asyncio.run(latency_table(base, target, rows, args.seconds, pid, RATES[:-1]))
    if batch:
        asyncio.run(batch_throughput(target, rows, args.seconds, pid, floor_us))
        if args.workers > 1:  # one connection is served by one worker process
            asyncio.run(batch_throughput(target, rows, args.seconds, pid, floor_us, connections=1))
    if latency:
        asyncio.run(latency_table(base, target, rows, args.seconds, pid, RATES[-1:]))


if __name__ == "__main__":
    main()
