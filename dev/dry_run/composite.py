"""Local composite actions (``uses: ./.github/actions/NAME``): their steps, inputs and outputs.

The job runner runs the steps as part of the job (their ``GITHUB_ENV`` writes reach it); here
the ``action.yml`` is read and the ``with:`` checked against its declared inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dev.dry_run.workflow import WorkflowError


@dataclass(frozen=True)
class Composite:
    """A composite action: its name, steps, inputs (given or default) and declared outputs."""

    name: str
    steps: list[dict[str, Any]]
    inputs: dict[str, str]
    outputs: dict[str, Any]


def load_composite(workspace: Path, uses: str, given: dict[str, str]) -> Composite:
    """Read the composite action ``uses`` of the checked-out ``workspace``.

    Raises:
        WorkflowError: no ``action.yml`` there, not a composite action, or an input it does
            not declare.
    """
    folder = workspace / uses
    path = next((p for p in (folder / "action.yml", folder / "action.yaml") if p.is_file()), None)
    if path is None:
        raise WorkflowError(f"{uses}: no action.yml (was the repository checked out?)")
    action = yaml.safe_load(path.read_text()) or {}
    runs = action.get("runs") or {}
    if runs.get("using") != "composite":
        raise WorkflowError(f"{uses}: only composite actions run here, not {runs.get('using')!r}")
    declared = action.get("inputs") or {}
    unknown = set(given) - set(declared)
    if unknown:
        raise WorkflowError(f"{uses}: unexpected inputs {sorted(unknown)}")
    inputs = {n: given.get(n, str((spec or {}).get("default", ""))) for n, spec in declared.items()}
    name = str(action.get("name") or uses)
    return Composite(name, list(runs.get("steps") or []), inputs, dict(action.get("outputs") or {}))
