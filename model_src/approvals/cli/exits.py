"""The exit codes of every ``approvals`` command, defined once.

Scripts and workflows branch on these numbers, so each one means one thing:

- 0: done.
- 2: a mistake the user can fix (bad input file, option, name or configuration).
- 3: ``approvals gate`` refused the candidate: it must not ship. Not an error.
- 1: anything unexpected (a bug, stored data that failed verification, a registry that could
  not be reached): worth a look or a retry, never a verdict on the model.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit status of the ``approvals`` console script."""

    OK = 0
    UNEXPECTED = 1
    USER_ERROR = 2
    GATE_REFUSED = 3
