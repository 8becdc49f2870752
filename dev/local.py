"""Run the service locally: a Redis with materialized features, a model, ``bentoml serve``.

Used by ``make serve`` (foreground until Ctrl-C or SIGTERM) and by ``make demo`` (serve, call,
shut down). Redis is ``REDIS_URL`` when set, otherwise a throwaway ``redis-server`` on a free
port; the model is ``MODEL_DIR`` when set, otherwise the demo's, trained first if missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from approvals.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
BENTO_DIR = ROOT / "bento"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise UserError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")


@contextmanager
def redis(workdir: Path) -> Iterator[str]:
    """``REDIS_URL`` when set; otherwise a throwaway redis-server for the duration."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise UserError("no redis-server on PATH and no REDIS_URL: run `make redis-bin`")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Service:
    """A running ``bentoml serve``."""

    proc: subprocess.Popen[bytes]
    http: str
    grpc: str

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: in-flight requests drain), then wait for the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return int(self.proc.wait(timeout=10))


SOURCE_SERVICE = "service:Approvals"


def serve_command(http_port: int, target: str = SOURCE_SERVICE) -> list[str]:
    """The ``bentoml serve`` command line: the service in ``bento/``, or a built bento's tag."""
    return [sys.executable, "-m", "bentoml", "serve", target,
            "--host", "127.0.0.1", "--port", str(http_port)]  # fmt: skip


def _bentoml_env(home: Path) -> dict[str, str]:
    """This process's environment with the BentoML store at ``home`` and no telemetry."""
    return {**os.environ, "BENTOML_HOME": str(home.resolve()), "BENTOML_DO_NOT_TRACK": "true"}


def service_env(
    model_dir: Path | None, redis_url: str, grpc_port: int, home: Path
) -> dict[str, str]:
    """Environment of the service process (settings reach it only through here).

    Without ``model_dir`` the service loads the model package baked into the bento.
    """
    env = {**_bentoml_env(home), "APPROVALS_REDIS_URL": redis_url, "GRPC_PORT": str(grpc_port)}
    env.pop("APPROVALS_MODEL_DIR", None)
    if model_dir is not None:
        env["APPROVALS_MODEL_DIR"] = str(model_dir.resolve())
    return env


def build_bento(model_dir: Path, home: Path) -> str:
    """``bento/bundle.py``: build the bento of ``model_dir`` into the store at ``home``; its tag.

    Raises:
        UserError: the build failed (with the end of its output).
    """
    done = subprocess.run(
        [sys.executable, str(BENTO_DIR / "bundle.py"), str(model_dir)],
        env=_bentoml_env(home), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise UserError(f"building the bento failed:\n{(done.stderr or done.stdout)[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def start_service(
    model_dir: Path | None, redis_url: str, workdir: Path, *, log: Path, bento: str | None = None
) -> Service:
    """Start the service on free ports and wait until ``/readyz`` answers 200.

    Serves the built bento ``bento`` (a tag in ``workdir/bentoml``, its baked model unless
    ``model_dir`` says otherwise) or, without one, the service source in ``bento/``.
    """
    http_port, grpc_port = free_port(), free_port()
    env = service_env(model_dir, redis_url, grpc_port, workdir / "bentoml")
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            serve_command(http_port, bento or SOURCE_SERVICE),
            cwd=BENTO_DIR if bento is None else workdir, env=env, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    service = Service(proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}")
    _wait_ready(service, log)
    return service


def _wait_ready(service: Service, log: Path, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise UserError(f"the service exited early; last lines of {log}:\n{_tail(log)}")
        try:
            if httpx.get(f"{service.http}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    service.stop()
    raise UserError(f"the service was not ready within {timeout:.0f}s; see {log}")


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def materialize_data(data: Path, redis_url: str) -> None:
    """Load the feature state of ``data`` into Redis (new version, then pointer switch)."""
    from approvals.features.materialize import materialize_file
    from approvals.features.redis_settings import RedisSettings

    result = materialize_file(data, RedisSettings(url=redis_url), allow_older=True)
    print(f"materialized {result.keys:,} feature keys (state end {result.end})", flush=True)


def demo_model(demo_dir: Path) -> tuple[Path, Path]:
    """The demo's model and data, simulating and training them first when missing."""
    from dev import demo

    model, data = demo_dir / "model", demo_dir / "sim" / "attempts.parquet"
    if not (model / "manifest.json").exists() or not data.exists():
        print(f"no demo model in {demo_dir}: simulating and training one first", flush=True)
        demo.offline(demo_dir, int(os.environ.get("DEMO_PAYMENTS", "150000")), 7)
    return model, data


def serve_foreground() -> None:
    """``make serve``: serve in the foreground on HTTP_PORT / GRPC_PORT until interrupted."""
    demo_dir = Path(os.environ.get("DEMO_DIR", ".demo"))
    model_dir = Path(os.environ["MODEL_DIR"]) if os.environ.get("MODEL_DIR") else None
    default_model, data = demo_model(demo_dir) if model_dir is None else (None, None)
    model_dir = model_dir or default_model
    assert model_dir is not None
    http_port = int(os.environ.get("HTTP_PORT", "3000"))
    grpc_port = int(os.environ.get("GRPC_PORT", "50051"))
    with tempfile.TemporaryDirectory(prefix="approvals-serve-") as tmp, redis(Path(tmp)) as url:
        if data is not None and not os.environ.get("REDIS_URL"):
            materialize_data(data, url)
        env = service_env(model_dir, url, grpc_port, Path(tmp) / "bentoml")
        print(f"serving {model_dir}: HTTP :{http_port}, gRPC :{grpc_port} (Ctrl-C stops)")
        proc = subprocess.Popen(serve_command(http_port), cwd=BENTO_DIR, env=env)
        _forward_signals(proc)
        code = proc.wait()
    sys.exit(code if code > 0 else 0)


def _forward_signals(proc: subprocess.Popen[bytes]) -> None:
    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful shutdown drains in-flight requests

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)


if __name__ == "__main__":
    serve_foreground()
