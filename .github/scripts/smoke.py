"""Smoke test of a deployed approvals service over HTTP and gRPC.

Checks, with a deadline for the rollout to settle: HTTP ``/readyz`` and ``/livez`` answer 200;
``POST /score`` with a synthetic attempt answers a probability in [0, 1] from the expected model
version; gRPC ``grpc.health.v1`` reports SERVING and server reflection lists
``approval.v1.ApprovalService``. Exits 0 when all pass, 1 with one line per failed check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVICE = "approval.v1.ApprovalService"
ATTEMPT = Path(__file__).with_name("smoke-attempt.json")


def http_ok(base: str, path: str) -> str | None:
    """None when GET base+path answers 200, else what went wrong."""
    response = httpx.get(f"{base}{path}", timeout=5)
    return None if response.status_code == 200 else f"GET {path}: HTTP {response.status_code}"


def http_score(base: str, expected_version: str | None) -> str | None:
    """None when POST /score answers a valid probability from the expected model version."""
    attempt = json.loads(ATTEMPT.read_text())
    response = httpx.post(f"{base}/score", json={"attempt": attempt}, timeout=10)
    if response.status_code != 200:
        return f"POST /score: HTTP {response.status_code}"
    body = response.json()
    p = body.get("p_approve")
    if not isinstance(p, int | float) or not 0 <= p <= 1:
        return f"POST /score: p_approve {p!r} is not a probability"
    if expected_version and body.get("model_version") != expected_version:
        return f"POST /score: model_version {body.get('model_version')!r} != {expected_version!r}"
    return None


def grpc_health(target: str) -> str | None:
    """None when the gRPC health service says SERVING."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    serving = health_pb2.HealthCheckResponse.SERVING
    return None if reply.status == serving else f"gRPC health: status {reply.status}"


def grpc_reflection(target: str) -> str | None:
    """None when server reflection lists the approval service."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for r in replies for s in r.list_services_response.service}
    return None if SERVICE in names else f"gRPC reflection: {SERVICE} not in {sorted(names)}"


def run_checks(checks: dict[str, Callable[[], str | None]], deadline_s: float) -> list[str]:
    """Retry failing checks until they pass or the deadline passes; the remaining failures."""
    deadline = time.monotonic() + deadline_s
    failures: dict[str, str] = {}
    while True:
        failures = {}
        for name, check in checks.items():
            try:
                problem = check()
            except (httpx.HTTPError, grpc.RpcError, ValueError) as exc:
                problem = f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            if problem:
                failures[name] = problem
        if not failures or time.monotonic() >= deadline:
            return list(failures.values())
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    """Run every check; print one line per failure; 0 when all pass."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", required=True, help="base URL, e.g. http://127.0.0.1:3000")
    parser.add_argument("--grpc", required=True, help="host:port of the gRPC server")
    parser.add_argument("--expect-version", default=None, help="model version to expect")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds to keep trying")
    args = parser.parse_args(argv)
    base = args.http.rstrip("/")
    checks: dict[str, Callable[[], str | None]] = {
        "readyz": lambda: http_ok(base, "/readyz"),
        "livez": lambda: http_ok(base, "/livez"),
        "score": lambda: http_score(base, args.expect_version),
        "grpc-health": lambda: grpc_health(args.grpc),
        "grpc-reflection": lambda: grpc_reflection(args.grpc),
    }
    failures = run_checks(checks, args.deadline)
    for failure in failures:
        print(f"smoke: FAIL {failure}", file=sys.stderr)
    if not failures:
        print(f"smoke: OK ({', '.join(checks)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
