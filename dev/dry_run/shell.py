"""``run:`` steps: the script file, the shell command line and the process, as the runner has them.

Shells as documented for Linux runners: no ``shell:`` runs ``bash -e {0}``; ``shell: bash``
adds ``--noprofile --norc -eo pipefail``; ``sh -e {0}``; ``python {0}``; or a custom template
with ``{0}``. Output goes to a log file (so a background process a step leaves behind never
holds a pipe open); the process leads its own group, which the job ends at its end, as the
runner cleans up orphan processes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

SHELLS = {
    "": "bash -e {0}",
    "bash": "bash --noprofile --norc -eo pipefail {0}",
    "sh": "sh -e {0}",
    "python": "python {0}",
}


class ShellError(ValueError):
    """A ``shell:`` the dry run cannot run."""


def command_line(shell: str, script: Path) -> list[str]:
    """The argv that runs ``script`` with ``shell`` (a name from :data:`SHELLS` or a template).

    Raises:
        ShellError: an unknown shell name (pwsh, cmd...), or a template without ``{0}``.
    """
    template = SHELLS.get(shell.strip(), shell)
    if template == shell and "{0}" not in shell:
        raise ShellError(f"shell {shell!r} is not available here (bash, sh, python or '... {{0}}')")
    return [str(script) if part == "{0}" else part for part in shlex.split(template)]


def write_script(text: str, temp: Path, shell: str) -> Path:
    """The script file the runner would write into ``RUNNER_TEMP``."""
    suffix = ".py" if shell.strip() == "python" else ".sh"
    path = temp / f"{uuid.uuid4()}{suffix}"
    path.write_text(text)
    return path


@dataclass
class Finished:
    """How a process ended: its exit code (None on timeout) and its process group id."""

    code: int | None
    group: int


def execute(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    *,
    timeout: float | None = None,
    echo: TextIO | None = None,
) -> Finished:
    """Run ``argv`` in its own process group, its output into ``log`` (and ``echo``).

    On timeout the whole group is killed and ``code`` is None.
    """
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(log, start, echo, stop), daemon=True)
    if echo is not None:
        follower.start()
    try:
        code: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()
        code = None
    except BaseException:  # interrupted (Ctrl-C): the step's processes go with the run
        kill_group(proc.pid)
        raise
    stop.set()
    if follower.is_alive():
        follower.join(timeout=2)
    return Finished(code, proc.pid)


def kill_group(group: int) -> None:
    """SIGKILL a process group the dry run started (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


def _follow(log: Path, start: int, echo: TextIO | None, stop: threading.Event) -> None:
    """Copy what is appended to ``log`` after ``start`` to ``echo`` until ``stop`` is set."""
    if echo is None:
        return
    with log.open("rb") as source:
        source.seek(start)
        while True:
            chunk = source.read()
            if chunk:
                echo.write(chunk.decode(errors="replace"))
                echo.flush()
            elif stop.is_set():
                return
            else:
                time.sleep(0.1)
