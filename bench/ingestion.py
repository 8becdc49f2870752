"""Ingestion benchmark: ReportOutcomes throughput through the service, and Score p99 under it.

One command (not part of the tests)::

    make bench-ingestion   # python bench/ingestion.py --model PACKAGE_DIR --data ATTEMPTS

``--data`` is a labelled attempts file: the feature state of its first half is materialized
into a throwaway redis-server (or ``--redis-url``); its second half, in event-time order, is
reported back in batches of ``--batch`` over gRPC ``ReportOutcomes``; its last rows are the
Score requests. Printed, each against a floor measured in the same run:

- the Redis round-trip floor: one ``EVAL`` of a script that only reads the apply script's
  arguments for a batch (the transfer no apply can avoid), and ``apply_outcomes`` called
  directly on the same connection (the library, no service);
- ReportOutcomes through the service alone: outcomes/s and ms per batch, ``--callers``
  concurrent callers, against the direct apply;
- Score p50/p99 over gRPC at ``--rps`` (open loop) before any ingestion, then while ingestion
  runs flat out, as a ratio to the run without.

The service runs one worker per core (as deployed). Every call has a timeout and the whole run
a deadline, so a stuck server fails the run instead of hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import redis

from approvals.contract import read_attempts
from approvals.features.outcomes import MARKER_TTL, apply_outcomes, script_args, validate_outcomes
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import build_state
from bench.load import CALL_TIMEOUT_S, open_loop, score_requests
from dev.requests import outcome_message
from dev.stack import LocalStack
from dev.stubs import grpc_stubs

FLOOR = "local n = 0 for i = 1, #ARGV do n = n + #ARGV[i] end return n"


def rows_of(frame: Any) -> list[dict[str, Any]]:
    """Contract rows as ``apply_outcomes`` takes them (datetimes, None for missing)."""
    rows = frame.to_dict("records")
    for row in rows:
        row["event_time"] = row["event_time"].to_pydatetime()
        for key in ("previous_response_code", "merchant_advice_code"):
            if not isinstance(row.get(key), str):
                row[key] = None
    return rows


def floors(url: str, prefix: str, batches: list[list[dict[str, Any]]]) -> tuple[float, float]:
    """(round-trip floor, direct apply) in ms per batch, on one connection.

    The direct apply writes to the live version the service reads, under suffixed ids, so the
    service's later reports of the same attempts are applied, not duplicates."""
    conn = redis.Redis.from_url(url)
    floor = conn.register_script(FLOOR)
    spent_floor = spent_apply = 0.0
    for outcomes in batches:
        args = script_args(validate_outcomes(outcomes), prefix, MARKER_TTL)
        start = time.perf_counter()
        floor(keys=[f"{prefix}:current"], args=args)
        spent_floor += time.perf_counter() - start
        tagged = [{**o, "attempt_id": f"{o['attempt_id']}-direct"} for o in outcomes]
        start = time.perf_counter()
        apply_outcomes(conn, tagged, prefix=prefix)
        spent_apply += time.perf_counter() - start
    conn.close()
    return 1000 * spent_floor / len(batches), 1000 * spent_apply / len(batches)


class Ingest:
    """Batches of ReportOutcomes sent back to back by ``callers`` concurrent callers."""

    def __init__(self, stub: Any, batches: list[Any]) -> None:
        self.stub, self.batches = stub, batches
        self.next = 0
        self.outcomes = 0
        self.applied = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    async def caller(self, until: float) -> None:
        while time.perf_counter() < until and self.next < len(self.batches):
            request = self.batches[self.next]
            self.next += 1
            start = time.perf_counter()
            try:
                answer = await self.stub.ReportOutcomes(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                self.errors[exc.code().name] = self.errors.get(exc.code().name, 0) + 1
                continue
            self.latencies.append(1000 * (time.perf_counter() - start))
            self.outcomes += len(request.outcomes)
            self.applied += answer.applied

    async def run(self, callers: int, seconds: float) -> float:
        """Send for ``seconds`` (or until the batches run out); the seconds it took."""
        start = time.perf_counter()
        until = start + seconds
        await asyncio.gather(*(self.caller(until) for _ in range(callers)))
        return time.perf_counter() - start


async def measure(
    target: str, score_rows: list[Any], report: list[Any], args: argparse.Namespace,
    floor_ms: float, direct_ms: float,
) -> None:  # fmt: skip
    _, pb_grpc = grpc_stubs()
    half = len(report) // 2
    async with grpc.aio.insecure_channel(target) as channel, grpc.aio.insecure_channel(
        target, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as ingest_channel:  # fmt: skip
        stub, ingest_stub = (pb_grpc.ApprovalServiceStub(c) for c in (channel, ingest_channel))
        _, messages = score_requests(score_rows)

        async def score(i: int) -> bool:
            message = messages[i % len(messages)]
            return bool((await stub.Score(message, timeout=CALL_TIMEOUT_S)).degraded)

        await open_loop(score, 50, 3)  # warm-up, not reported
        # Score before any outcome: the baseline
        quiet = await open_loop(score, args.rps, args.seconds)
        # ingestion alone
        alone = Ingest(ingest_stub, report[:half])
        took = await alone.run(args.callers, args.seconds)
        rate = alone.outcomes / took
        per_batch = sorted(alone.latencies)[len(alone.latencies) // 2]
        print(f"ReportOutcomes alone ({args.callers} callers, batches of {args.batch}): "
              f"{rate:,.0f} outcomes/s, median {per_batch:.1f} ms per call, "
              f"{alone.applied:,} of {alone.outcomes:,} applied, errors {alone.errors or 0}; "
              f"{per_batch / direct_ms:.2f}x the direct apply, "
              f"{per_batch / floor_ms:.1f}x the round-trip floor")  # fmt: skip
        # Score without, then with, ingestion
        busy_ingest = Ingest(ingest_stub, report[half:])
        ingesting = asyncio.create_task(busy_ingest.run(args.callers, args.seconds + 2))
        await asyncio.sleep(1)
        busy = await open_loop(score, args.rps, args.seconds)
        took = await ingesting
        p99_quiet, p99_busy = quiet.percentiles()[1], busy.percentiles()[1]
        print(f"Score grpc {args.rps} rps, no ingestion:   {quiet.line()}")
        print(f"Score grpc {args.rps} rps, while ingesting: {busy.line()}")
        print(f"  ingestion meanwhile: {busy_ingest.outcomes / took:,.0f} outcomes/s, "
              f"errors {busy_ingest.errors or 0}; Score p99 {p99_busy / p99_quiet:.2f}x the "
              f"run without ingestion")  # fmt: skip


def run(args: argparse.Namespace) -> None:
    """Prepare data and servers, then measure (see the module docstring)."""
    pb, _ = grpc_stubs()
    data = read_attempts(args.data, labels=True).sort_values("event_time", kind="stable")
    data = data.reset_index(drop=True)
    cut = len(data) // 2
    history, later = data.iloc[:cut], data.iloc[cut:]
    score_rows = [r for _, r in later.tail(2000).drop(columns=["approved", "response_code"])
                  .iterrows()]  # fmt: skip
    n = len(later) // args.batch * args.batch
    rows = rows_of(later.iloc[:n])
    batches = [rows[i : i + args.batch] for i in range(0, n, args.batch)]
    report = [
        pb.ReportOutcomesRequest(
            outcomes=[outcome_message(r) for _, r in later.iloc[i : i + args.batch].iterrows()]
        )
        for i in range(0, n, args.batch)
    ]
    print(f"{len(history):,} attempts materialized; {n:,} outcomes to report in "
          f"{len(report)} batches of {args.batch}")  # fmt: skip
    env = {"APPROVALS_WORKERS": str(args.workers), "APPROVALS_REDIS_TIMEOUT_MS": "500"}
    with tempfile.TemporaryDirectory(prefix="approvals-bench-") as tmp, LocalStack(
        Path(tmp), model_dir=args.model, redis_url=args.redis_url, state=build_state(history),
        env=env, log=Path(tmp) / "serve.log",
    ) as stack:  # fmt: skip
        settings = RedisSettings(url=stack.url)
        sample = batches[: min(len(batches), 20)]
        floor_ms, direct_ms = floors(stack.url, settings.prefix, sample)
        print(f"Redis round-trip floor {floor_ms:.2f} ms per batch; apply_outcomes direct "
              f"{direct_ms:.1f} ms per batch ({args.batch / direct_ms * 1000:,.0f} outcomes/s, "
              f"{direct_ms / floor_ms:.1f}x the floor)")  # fmt: skip
        # the prepared requests live as long as the run: keep them out of the client's full
        # collections, which would otherwise pause it and show as server latency
        gc.collect()
        gc.freeze()
        asyncio.run(measure(stack.service.grpc, score_rows, report, args, floor_ms, direct_ms))
        gc.unfreeze()


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--redis-url")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--callers", type=int, default=2)
    parser.add_argument("--rps", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--deadline", type=float, default=900, help="whole run, seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench deadline")))
    signal.alarm(int(args.deadline))
    run(args)
    signal.alarm(0)


if __name__ == "__main__":
    main()
