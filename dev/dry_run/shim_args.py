"""What the shims share: their error, their option parser, and where the dry run's state is."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ShimError(RuntimeError):
    """What the real tool would refuse; exit code 1 unless ``code`` says otherwise."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Parsed:
    """Options (each with every value given, ``""`` for a flag) and positional arguments."""

    options: dict[str, list[str]] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)

    def one(self, *names: str, default: str | None = None) -> str | None:
        """The last value of the first of ``names`` given."""
        for name in names:
            if name in self.options:
                return self.options[name][-1]
        return default

    def all(self, *names: str) -> list[str]:
        """Every value of all of ``names``."""
        return [value for name in names for value in self.options.get(name, [])]

    def has(self, *names: str) -> bool:
        """Whether any of ``names`` was given."""
        return any(name in self.options for name in names)


def parse(args: list[str], valued: Collection[str], flags: Collection[str], tool: str) -> Parsed:
    """Split ``args`` into options and positionals (``--opt=value`` and ``--opt value``).

    Raises:
        ShimError: an option the shim does not know (so a new one is never silently ignored).
    """
    parsed, at = Parsed(), 0
    while at < len(args):
        arg, at = args[at], at + 1
        if arg == "--":
            parsed.positional.extend(args[at:])
            break
        if not arg.startswith("-") or arg == "-":
            parsed.positional.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if name in valued:
            if not equals:
                if at >= len(args):
                    raise ShimError(f"{tool}: option {name} needs a value", 2)
                value, at = args[at], at + 1
            parsed.options.setdefault(name, []).append(value)
        elif name in flags and not equals:
            parsed.options.setdefault(name, []).append("")
        else:
            raise ShimError(f"{tool}: option {arg} is not simulated (dev/dry_run/*_shim.py)", 2)
    return parsed


def read_json(path: Path, default: Any) -> Any:
    """A JSON file's content, or ``default`` when it does not exist."""
    return json.loads(path.read_text()) if path.exists() else default


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON (folders created), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(value, indent=1))
    partial.replace(path)


def sha256(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
