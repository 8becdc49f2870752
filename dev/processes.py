"""Child processes of the local stack: free ports, waiting for a port, a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class StackError(RuntimeError):
    """A local server could not be started (missing binary, early exit, not ready in time)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    timeout: float = 20.0,
    host: str = "127.0.0.1",
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Block until something accepts connections on ``host:port``.

    Args:
        port: the TCP port.
        timeout: seconds to wait at most.
        host: the address to connect to.
        proc: the process expected to listen; waiting stops early when it exits.

    Raises:
        StackError: nothing listened within ``timeout``, or ``proc`` exited first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, host):
            return
        if proc is not None and proc.poll() is not None:
            raise StackError(
                f"process {proc.args!r} exited with {proc.returncode} before listening"
            )
        time.sleep(0.05)
    raise StackError(f"nothing listened on {host}:{port} within {timeout:.0f}s")


def stop_group(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
) -> int:
    """Signal the process group of ``proc``, wait for its exit code; SIGKILL after ``timeout``.

    ``proc`` must lead its own group (``start_new_session=True``), so its workers get the
    signal too. A process that already exited only reports its exit code.
    """
    if proc.poll() is None:
        _signal_group(proc, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
    return int(proc.wait(timeout=10))


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited between poll() and the signal
        os.killpg(proc.pid, sig)


def tail(path: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (empty when there is none)."""
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
