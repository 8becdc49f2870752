"""Where a serving worker's CPU goes under open-loop Score load: py-spy samples, by stage.

One command (``make profile``; not part of the tests)::

    python bench/profile.py --model PACKAGE_DIR --data ATTEMPTS --rps 300 --protocol grpc

Serves the model with one worker and materialized features (as ``bench/serving.py`` does),
drives Score at a fixed rate and samples the worker with py-spy (``--nonblocking``: the worker
is never paused; ``--gil``: only samples holding the GIL, so time a thread spends waiting in a
system call or in gRPC's poller thread is not counted as busy). Each sample is charged to the
stage of the innermost frame that names one (validation, batcher, online read, Redis client,
features, model, gRPC, HTTP, metrics, ...), and the table gives every stage's share of the
worker's busy samples and the matching part of its measured CPU per call (the share times the
total: an estimate, as system calls made without the GIL are spread over the stages). The raw
collapsed stacks are written next to the table for a flame graph
(``flamegraph.pl`` or https://www.speedscope.app).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import aiohttp
import grpc
import psutil

from bench.load import CALL_TIMEOUT_S, Clients, measured, score_requests
from bench.serving import bench_stack, prepare
from dev.stack import Service
from dev.stubs import grpc_stubs

# (stage, substrings of a frame "function (file)"), tried on each frame from the innermost out;
# the first stage whose substring a frame holds gets the sample.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("approvals/model/", "model/package.py", "model/trees.py", "lightgbm")),
    ("features", ("features/derive.py", "features/row.py")),
    ("online read (keys, unpack)", ("features/tiles.py", "features/online.py")),
    ("redis client", ("redis/",)),
    ("validation", ("approvals/contract", "pydantic", "schemas.py")),
    ("gRPC translation", ("grpc_server.py",)),
    ("engine", ("serving/engine.py",)),
    ("batcher", ("batching.py",)),
    ("metrics and logs", ("prometheus_client", "telemetry.py", "gateway.py", "logging/")),
    ("HTTP (BentoML, Starlette, uvicorn)", ("bentoml", "starlette", "uvicorn", "traffic.py")),
    ("gRPC (grpc.aio)", ("grpc/", "cygrpc")),
    ("asyncio event loop, gRPC core (C and Cython, no Python frames)", ("asyncio/",)),
)


def stage_of(stack: str) -> str:
    """The stage of one sample's stack (frames root first, ``;``-separated)."""
    frames = stack.split(";")[::-1]
    for frame in frames:
        for stage, needles in STAGES:
            if any(needle in frame for needle in needles):
                return stage
    return "other"


def breakdown(raw: Path) -> Counter[str]:
    """Busy samples per stage, from py-spy's raw (collapsed) output."""
    stages: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stages[stage_of(stack)] += int(count)
    return stages


def worker_pid(server_pid: int) -> int:
    """The serving worker under ``bentoml serve`` (one worker: its only Python child)."""
    children = psutil.Process(server_pid).children(recursive=True)
    workers = [c for c in children if "_bentoml_impl.worker" in " ".join(c.cmdline())]
    if len(workers) != 1:
        raise SystemExit(f"expected one serving worker under {server_pid}, found {len(workers)}")
    return workers[0].pid


async def drive(
    protocol: str, service: Service, rows: list, rps: int, seconds: float, pid: int
) -> float:
    """Score at ``rps`` for ``seconds`` over ``protocol``; the server's CPU ms per call."""
    _, pb_grpc = grpc_stubs()
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        grpc.aio.insecure_channel(service.grpc) as channel,
    ):
        stub = pb_grpc.ApprovalServiceStub(channel)
        clients = Clients(http, service.http, stub, *score_requests(rows))
        send = clients.score_grpc if protocol == "grpc" else clients.score_http
        result = await measured(send, rps, seconds, pid)
    print(f"Score {protocol} {rps}/s: {result.outcome.line()}")
    return result.cpu_ms_per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--redis-url")
    parser.add_argument("--rps", type=int, default=300)
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path(".demo/profile"))
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    served_model = Path(tempfile.mkdtemp(prefix="approvals-profile-model-"))
    try:
        _, requests, state = prepare(args.model, args.data, served_model)
        rows = [r for _, r in requests.iterrows()]
        args.out.mkdir(parents=True, exist_ok=True)
        raw = args.out / f"profile-{args.protocol}-{args.rps}.txt"
        with (
            tempfile.TemporaryDirectory(prefix="approvals-profile-") as tmp,
            bench_stack(Path(tmp), served_model, state, 1, args.redis_url) as stack,
        ):
            service = stack.service
            pid = worker_pid(service.proc.pid)
            asyncio.run(drive(args.protocol, service, rows, args.rps, 3, pid))  # warm
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(raw),
                 "--rate", str(args.rate), "--nonblocking", "--gil", "--nolineno",
                 "--duration", str(int(args.seconds))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            cpu_ms = asyncio.run(
                drive(args.protocol, service, rows, args.rps, args.seconds - 1, pid)
            )
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0:
                raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    finally:
        shutil.rmtree(served_model, ignore_errors=True)
    stages = breakdown(raw)
    total = sum(stages.values())
    print(f"worker CPU {cpu_ms:.3f} ms per call; {total:,} busy samples; raw stacks: {raw}")
    for stage, count in stages.most_common():
        share = count / total
        print(f"  {stage:64s} {share:6.1%}   ~{share * cpu_ms * 1e3:5.0f} us/call")


if __name__ == "__main__":
    main()
