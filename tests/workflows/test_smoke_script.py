"""The deploy smoke test (.github/scripts/smoke.py) against real local HTTP and gRPC servers."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dev.processes import free_port
from tests.workflows.conftest import GITHUB

pytestmark = pytest.mark.servers


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smoke", GITHUB / "scripts" / "smoke.py")
    assert spec and spec.loader, "smoke.py is importable"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = _load()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._send(200 if self.path in {"/readyz", "/livez"} else 404, {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ok = self.path == "/score" and body["attempt"]["attempt_id"] == "smoke-0001"
        answer = {"p_approve": 0.83, "model_version": "v7", "degraded": False}
        self._send(200 if ok else 422, answer)

    def _send(self, code: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, str, health.HealthServicer]]:
    """A local HTTP server and a gRPC server with health checking and reflection."""
    http = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    names = (smoke.SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    grpc_port = free_port()
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    server.start()
    yield f"http://127.0.0.1:{http.server_address[1]}", f"127.0.0.1:{grpc_port}", checker
    server.stop(grace=None)
    http.shutdown()


def test_smoke_passes_on_a_healthy_service(service, capsys) -> None:
    http, target, checker = service
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    code = smoke.main(["--http", http, "--grpc", target, "--expect-version", "v7"])
    assert code == 0, f"all checks pass: {capsys.readouterr().err}"


def test_smoke_fails_on_wrong_model_version(service, capsys) -> None:
    http, target, checker = service
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    argv = ["--http", http, "--grpc", target, "--expect-version", "v8", "--deadline", "0"]
    assert smoke.main(argv) == 1, "a stale model version fails the rollout"
    assert "model_version 'v7' != 'v8'" in capsys.readouterr().err, "the failure is explained"


def test_smoke_fails_when_grpc_is_not_serving(service, capsys) -> None:
    http, target, checker = service
    checker.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert smoke.main(["--http", http, "--grpc", target, "--deadline", "0"]) == 1, "not serving"
    assert "gRPC health" in capsys.readouterr().err, "names the failing check"
    checker.set("", health_pb2.HealthCheckResponse.SERVING)


def test_smoke_fails_when_nothing_listens(capsys) -> None:
    port = free_port()
    argv = ["--http", f"http://127.0.0.1:{port}", "--grpc", f"127.0.0.1:{port}", "--deadline", "0"]
    assert smoke.main(argv) == 1, "an unreachable service fails"
    assert capsys.readouterr().err.count("smoke: FAIL") == 5, "every check reports its failure"
