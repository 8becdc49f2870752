"""Serving test harness: one small model, one redis-server, one ``bentoml serve`` per module.

The model is trained once per session on the factory data (not the simulator); its feature
state is materialized into a real redis-server that the degraded-mode test stops and starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from approvals.model.train import TrainResult
from tests.conftest import RedisServer, free_port

BENTO_DIR = Path(__file__).resolve().parents[2] / "bento"
if str(BENTO_DIR) not in sys.path:
    sys.path.insert(0, str(BENTO_DIR))  # the bento's modules (service, gateway, approval.v1)


@dataclass
class Served:
    """A running ``bentoml serve``: its process, HTTP base URL and gRPC target."""

    proc: subprocess.Popen[bytes]
    http: str
    grpc: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it to exit; returns the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                return self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def serve(package_dir: Path, redis_url: str, tmp: Path, **env: str) -> Served:
    """Start ``bentoml serve service:Approvals`` on free ports and wait until it is ready."""
    http_port, grpc_port = free_port(), free_port()
    log = tmp / "serve.log"
    environ = {
        **os.environ,
        "APPROVALS_MODEL_DIR": str(package_dir),
        "APPROVALS_REDIS_URL": redis_url,
        "APPROVALS_REDIS_COOLDOWN_S": "0.5",
        "GRPC_PORT": str(grpc_port),
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        **env,
    }
    command = [sys.executable, "-m", "bentoml", "serve", "service:Approvals"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "--port", str(http_port), "--host", "127.0.0.1"],
            cwd=BENTO_DIR, env=environ, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    served = Served(proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)
    _wait_ready(served)
    return served


def _wait_ready(served: Served, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            pytest.fail(f"bentoml serve exited early:\n{served.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{served.http}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    served.stop(signal.SIGKILL)
    pytest.fail(f"service not ready within {timeout}s:\n{served.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(
    serving_model: tuple[TrainResult, Path],
    features_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """The service for one test module (small admission limit so bursts reach it)."""
    tmp = tmp_path_factory.mktemp("served")
    server = serve(
        serving_model[1],
        features_redis.url,
        tmp,
        APPROVALS_MAX_INFLIGHT="32",
        APPROVALS_REDIS_TIMEOUT_MS="5000",
        APPROVALS_MAX_LATENCY_MS="10000",
    )
    yield server
    server.stop()


def attempt_json(row: pd.Series) -> dict[str, object]:
    """One contract row as the JSON object of an HTTP request."""
    out: dict[str, object] = {}
    for name, value in row.items():
        if name == "event_time":
            out[name] = pd.Timestamp(value).tz_localize("UTC").isoformat()
        elif value is None or (isinstance(value, float) and pd.isna(value)):
            continue
        elif hasattr(value, "item"):
            out[str(name)] = value.item()
        else:
            out[str(name)] = value
    return out
