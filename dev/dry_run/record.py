"""The log of commands the dry run did not run for real: one JSON object a line.

Shims (docker, pulumi, kubectl) and the stand-ins of actions append to it; the runner reads
which entries each step added.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

COMMANDS = "commands.jsonl"


@dataclass(frozen=True)
class Recorded:
    """One command the dry run stood in for."""

    argv: tuple[str, ...]
    cwd: str
    note: str

    @property
    def line(self) -> str:
        """The command as a shell would print it."""
        return shlex.join(self.argv)


def record(state: Path, argv: list[str], note: str = "", *, announce: bool = True) -> None:
    """Append ``argv`` to the log in ``state``; say ``dry-run: would run: ...`` on stderr."""
    entry = {"argv": argv, "cwd": str(Path.cwd()), "note": note, "time": time.time()}
    with (state / COMMANDS).open("a") as log:
        log.write(json.dumps(entry) + "\n")
    if announce:
        suffix = f" ({note})" if note else ""
        print(f"dry-run: would run: {shlex.join(argv)}{suffix}", file=sys.stderr, flush=True)


def recorded(state: Path, start: int = 0) -> list[Recorded]:
    """The commands logged in ``state`` from entry ``start`` on."""
    path = state / COMMANDS
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[start:]
    entries = [json.loads(line) for line in lines if line.strip()]
    return [Recorded(tuple(e["argv"]), e["cwd"], e.get("note", "")) for e in entries]


def count(state: Path) -> int:
    """How many commands are logged so far."""
    path = state / COMMANDS
    return len(path.read_text().splitlines()) if path.exists() else 0
