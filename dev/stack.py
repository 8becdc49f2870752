"""One local stack: Redis with the features, ``bentoml serve`` ready on free ports, clean stop.

Used alike by ``make serve`` (:mod:`dev.local`), ``make demo`` (:mod:`dev.demo`), the serving
benchmark (``bench/serving.py``) and the test fixtures::

    with LocalStack(workdir, model_dir=package_dir, state=package.state()) as stack:
        httpx.post(f"{stack.service.http}/score", json=...)

Redis is the ``redis_url`` given (never stopped here) or a throwaway ``redis-server`` on a free
port; the service is the source in ``bento/`` or a built bento's tag. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dev.processes import StackError, free_port, stop_group, tail
from dev.redis_server import RedisServer

if TYPE_CHECKING:
    from approvals.features.state import FeatureState

ROOT = Path(__file__).resolve().parents[1]
BENTO_DIR = ROOT / "bento"
SOURCE_SERVICE = "service:Approvals"


@dataclass
class Service:
    """A running ``bentoml serve``: its process group, HTTP base URL, gRPC target and log."""

    proc: subprocess.Popen[bytes]
    http: str
    grpc: str
    log: Path | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the server's process group (SIGTERM: in-flight requests drain); its exit code.

        SIGKILL follows when it has not exited within ``timeout``; a server that already
        stopped only reports its exit code.
        """
        return stop_group(self.proc, sig, timeout)

    def wait_ready(self, timeout: float = 120.0, probe: str = "/readyz") -> None:
        """Block until ``probe`` (``/readyz``; ``/livez``: started, ready or not) answers 200.

        Raises:
            StackError: the server exited first, or was not ready within ``timeout`` (then it
                is killed); the message ends with the last lines of its log.
        """
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(
                    f"bentoml serve exited early ({self.proc.returncode}){self._tail()}"
                )
            try:
                if httpx.get(f"{self.http}{probe}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop(sig=signal.SIGKILL)
        raise StackError(
            f"bentoml serve not ready within {timeout:.0f}s (no 200 on {probe}){self._tail()}"
        )

    def _tail(self) -> str:
        return f"; last lines of {self.log}:\n{tail(self.log)}" if self.log else ""


def serve_command(http_port: int, target: str = SOURCE_SERVICE) -> list[str]:
    """The ``bentoml serve`` command line: the service in ``bento/``, or a built bento's tag."""
    return [sys.executable, "-m", "bentoml", "serve", target,
            "--host", "127.0.0.1", "--port", str(http_port)]  # fmt: skip


def bentoml_env(home: Path) -> dict[str, str]:
    """This process's environment with the BentoML store at ``home`` and no telemetry."""
    return {**os.environ, "BENTOML_HOME": str(home.resolve()), "BENTOML_DO_NOT_TRACK": "true"}


def build_bento(model_dir: Path, home: Path, challenger: Path | None = None) -> str:
    """``bento/bundle.py``: build the bento of ``model_dir`` (with ``challenger`` as its
    challenger) into the store at ``home``; its tag.

    Raises:
        StackError: the build failed or took over 15 minutes (with the end of its output).
    """
    extra = ["--challenger", str(challenger)] if challenger is not None else []
    done = subprocess.run(
        [sys.executable, str(BENTO_DIR / "bundle.py"), str(model_dir), *extra],
        env=bentoml_env(home), capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        raise StackError(f"building the bento failed:\n{(done.stderr or done.stdout)[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def service_env(
    home: Path, redis_url: str, grpc_port: int, model_dir: Path | None, extra: Mapping[str, str]
) -> dict[str, str]:
    """Environment of the service process: its settings reach it only through here.

    Without ``model_dir`` the service loads the model its bento declares (BentoML's store).
    """
    env = {**bentoml_env(home), "APPROVALS_REDIS_URL": redis_url, "GRPC_PORT": str(grpc_port)}
    env.pop("APPROVALS_MODEL_DIR", None)
    if model_dir is not None:
        env["APPROVALS_MODEL_DIR"] = str(model_dir.resolve())
    return {**env, **extra}


def state_of(data: Path) -> FeatureState:
    """The feature state of a labelled attempts file (all of it)."""
    from approvals.contract import read_attempts
    from approvals.features.state import build_state

    return build_state(read_attempts(data, labels=True))


@dataclass
class LocalStack:
    """Redis (given or throwaway), optionally materialized features, and ``bentoml serve``.

    Attributes:
        workdir: scratch folder: Redis's directory, BentoML's store (``bentoml/``), the logs.
        model_dir: model package to serve (``APPROVALS_MODEL_DIR``); None: the bento's own.
        bento: tag of a built bento in ``workdir/bentoml``; None: the source in ``bento/``.
        redis_url: an existing Redis to use and leave running; None: a throwaway one.
        state: feature state to materialize into Redis on start (None: leave Redis as it is).
        env: more settings of the service process (``APPROVALS_*``, ``GRPC_PORT``...).
        http_port: HTTP port (None: a free one); ``grpc_port`` likewise.
        log: the service's output (None: this process's stdout and stderr).
        ready_timeout: seconds ``bentoml serve`` may take to answer ``probe``.
        probe: what a start waits for: ``/readyz`` (ready), or ``/livez`` (started, e.g. for
            a service that is not ready until its features are loaded).
        redis_debug: let tests send ``DEBUG SLEEP`` to the throwaway Redis.
    """

    workdir: Path
    model_dir: Path | None = None
    bento: str | None = None
    redis_url: str | None = None
    state: FeatureState | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    http_port: int | None = None
    grpc_port: int | None = None
    log: Path | None = None
    ready_timeout: float = 120.0
    probe: str = "/readyz"
    redis_debug: bool = False
    redis: RedisServer | None = field(default=None, init=False)
    _service: Service | None = field(default=None, init=False, repr=False)

    @property
    def service(self) -> Service:
        """The running service (after :meth:`start` or :meth:`start_service`)."""
        if self._service is None:
            raise StackError("the service is not started")
        return self._service

    @property
    def url(self) -> str:
        """The Redis URL the service reads its features from (after :meth:`start_redis`)."""
        if self.redis_url is None:
            raise StackError("Redis is not started")
        return self.redis_url

    def start(self) -> LocalStack:
        """Redis, then the features (when ``state`` is set), then the service, ready."""
        self.start_redis()
        if self.state is not None:
            self.materialize(self.state)
        self.start_service()
        return self

    def start_redis(self) -> str:
        """Start the throwaway Redis (again, after :meth:`stop_redis`); the Redis URL."""
        if self.redis is None and self.redis_url is None:
            self.redis = RedisServer(self.workdir, debug_command=self.redis_debug)
            self.redis_url = self.redis.url
        if self.redis is not None:
            self.redis.start()
        return self.url

    def stop_redis(self) -> None:
        """Stop the throwaway Redis (the service goes degraded); an external one is left alone."""
        if self.redis is not None:
            self.redis.stop()

    def materialize(self, state: FeatureState) -> None:
        """Write ``state`` into Redis as a new version (an older one may replace a newer)."""
        from approvals.features.materialize import materialize
        from approvals.features.redis_settings import RedisSettings

        result = materialize(state, RedisSettings(url=self.url), allow_older=True)
        print(f"materialized {result.keys:,} feature keys (state end {result.end})", flush=True)

    def start_service(self) -> Service:
        """Start ``bentoml serve`` and wait for its ``probe`` (see :meth:`Service.wait_ready`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        http_port, grpc_port = self.http_port or free_port(), self.grpc_port or free_port()
        env = service_env(self.workdir / "bentoml", self.url, grpc_port, self.model_dir, self.env)
        cwd = BENTO_DIR if self.bento is None else self.workdir
        command = serve_command(http_port, self.bento or SOURCE_SERVICE)
        with contextlib.ExitStack() as files:
            out = files.enter_context(self.log.open("wb")) if self.log is not None else None
            proc = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=out, start_new_session=True,
                stderr=None if out is None else subprocess.STDOUT,
            )  # fmt: skip
        http, grpc = f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
        self._service = Service(proc, http, grpc, self.log)
        self._service.wait_ready(self.ready_timeout, self.probe)
        return self._service

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the service (SIGTERM, SIGKILL after ``timeout``), then the throwaway Redis.

        Returns:
            The service's exit code (None when it never started).
        """
        code = self._service.stop(timeout=timeout) if self._service is not None else None
        self.stop_redis()
        return code

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
