"""The runner's file commands: ``GITHUB_ENV``, ``GITHUB_OUTPUT`` and ``GITHUB_PATH``.

Each step gets fresh, empty files; after it ends the runner reads them. ``GITHUB_ENV`` and
``GITHUB_OUTPUT`` hold ``NAME=value`` lines (split at the first ``=``) and multi-line values as

    NAME<<DELIMITER
    line 1
    line 2
    DELIMITER

exactly as ``actions/runner``'s ``FileCommandManager`` reads them: lines end at ``\\n`` only (a
``\\r`` stays in the value), empty lines are skipped, the delimiter must match a whole line, and
the value is the text between the header line and the delimiter line without the last newline.
"""

from __future__ import annotations

from pathlib import Path


class CommandFileError(ValueError):
    """A file command the runner would reject (the step then fails)."""


def _lines(text: str) -> list[str]:
    """Lines split at ``\\n``, the last one kept even without its newline."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def parse_key_values(text: str, source: str = "GITHUB_ENV") -> dict[str, str]:
    """The variables (or outputs) a step wrote, in order; a later write of a name wins.

    Raises:
        CommandFileError: a line that is neither ``NAME=value`` nor ``NAME<<DELIMITER``, an
            empty name or delimiter, or a delimiter that never comes.
    """
    values: dict[str, str] = {}
    lines, at = _lines(text), 0
    while at < len(lines):
        line, at = lines[at], at + 1
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line.split("=", 1)
        elif heredoc >= 0:
            name, delimiter = line.split("<<", 1)
            if not delimiter:
                raise CommandFileError(f"{source}: empty delimiter in {line!r}")
            if delimiter not in lines[at:]:
                raise CommandFileError(f"{source}: matching delimiter not found {delimiter!r}")
            end = lines.index(delimiter, at)
            value, at = "\n".join(lines[at:end]), end + 1
        else:
            raise CommandFileError(f"{source}: invalid format {line!r}")
        if not name:
            raise CommandFileError(f"{source}: empty name in {line!r}")
        values[name] = value
    return values


def parse_path(text: str) -> list[str]:
    """Directories a step added to ``GITHUB_PATH``, the one to search first first."""
    added: list[str] = []
    for line in _lines(text):
        if line:
            added = [line, *(entry for entry in added if entry != line)]
    return added


def read_key_values(path: Path) -> dict[str, str]:
    """:func:`parse_key_values` of a file (a missing file holds nothing)."""
    return parse_key_values(path.read_text(), path.name) if path.exists() else {}
