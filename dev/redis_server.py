"""A throwaway ``redis-server`` on a free port, which may be stopped and started again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from dev.processes import StackError, free_port, stop_group, tail, wait_for_port


class RedisServer:
    """A local redis-server without persistence, keeping its port across restarts.

    Args:
        workdir: its working directory (and log file).
        port: the port to listen on (a free one by default).
        debug_command: allow ``DEBUG`` from localhost (``DEBUG SLEEP`` holds requests in flight).
    """

    def __init__(self, workdir: Path, *, port: int | None = None, debug_command: bool = False):
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not on PATH and no REDIS_URL: run `make redis-bin`")
        self.binary, self.workdir, self.port = binary, workdir, port or free_port()
        self.debug_command = debug_command
        self.log = workdir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        """The ``redis-server`` command line."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        return [*args, "--enable-debug-command", "local"] if self.debug_command else args

    def start(self, timeout: float = 20.0) -> None:
        """Start the server (a no-op when it runs) and wait until it accepts connections.

        Raises:
            StackError: it exited or did not listen within ``timeout`` (with its log's end).
        """
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                self.command(), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port(self.port, timeout, proc=self.proc)
        except StackError as exc:
            self.stop()
            raise StackError(f"{exc}; last lines of {self.log}:\n{tail(self.log)}") from exc

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, SIGKILL after ``timeout``); its exit code, if it ran."""
        if self.proc is None:
            return None
        code, self.proc = stop_group(self.proc, timeout=timeout), None
        return code

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
