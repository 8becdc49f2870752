"""The errors a person can act on: each is shown as one line, and the CLI exits with code 2.

Everything else that escapes a command is unexpected (exit code 1); a gate that refuses a
candidate is not an error at all (exit code 3, see :mod:`approvals.cli.main`).
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: a bad file, option, name or configuration."""


class ContractError(UserError, ValueError):
    """A file or request breaks the data contract.

    Attributes:
        column: the offending column.
        problem: what is wrong with it.
        count: how many rows are affected.
        example: one offending value.
    """

    def __init__(self, column: str, problem: str, count: int = 1, example: object = None) -> None:
        self.column, self.problem, self.count, self.example = column, problem, count, example
        shown = "" if example is None else f" (e.g. {example!r})"
        rows = "row" if count == 1 else "rows"
        super().__init__(f"column '{column}': {problem}: {count} {rows}{shown}")


class ConfigError(UserError, ValueError):
    """A configuration file is missing, not YAML, or breaks its schema (names the key)."""


class PackageError(UserError, ValueError):
    """A directory that is not a usable model package (missing files, wrong format, symlinks)."""
