"""Workflow files as the dry run reads them: parsed, checked for what it cannot run, ordered.

Anything the dry run would otherwise silently ignore (a matrix, a service container, a job or
step key it does not know) is refused here, so a workflow it cannot reproduce fails loudly.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Keys read by the runner (jobs.py, steps.py), or only shown: they change nothing locally.
JOB_KEYS = {
    "name", "runs-on", "timeout-minutes", "permissions", "environment", "concurrency",
    "needs", "if", "env", "outputs", "steps", "defaults", "uses", "with", "secrets",
    "continue-on-error",
}  # fmt: skip
STEP_KEYS = {
    "name", "id", "if", "uses", "with", "run", "shell", "env", "working-directory",
    "continue-on-error", "timeout-minutes",
}  # fmt: skip


class WorkflowError(ValueError):
    """A workflow the dry run cannot read or reproduce (named in the message)."""


@dataclass(frozen=True)
class Workflow:
    """One parsed workflow file."""

    path: Path
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        """The workflow's ``name`` (or its file name)."""
        return str(self.doc.get("name") or self.path.name)

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        """Its jobs by id, in file order."""
        return dict(self.doc.get("jobs") or {})

    @property
    def call_inputs(self) -> dict[str, dict[str, Any]]:
        """The inputs it declares as a reusable workflow (``on.workflow_call.inputs``)."""
        return dict(self.trigger("workflow_call").get("inputs") or {})

    @property
    def call_outputs(self) -> dict[str, dict[str, Any]]:
        """The outputs it declares as a reusable workflow."""
        return dict(self.trigger("workflow_call").get("outputs") or {})

    def trigger(self, event: str) -> dict[str, Any]:
        """The configuration of one ``on:`` event (empty when it has none)."""
        on = self.doc.get("on") or {}
        if isinstance(on, str | list):
            return {} if event not in on else {"": None}
        return dict(on.get(event) or {}) if event in on else {}


def load(path: Path) -> Workflow:
    """Parse and check a workflow file.

    Raises:
        WorkflowError: it is missing, not a mapping with jobs, or uses what the dry run
            cannot reproduce.
    """
    if not path.is_file():
        raise WorkflowError(f"workflow {path} not found")
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        raise WorkflowError(f"{path.name}: not a workflow (no jobs)")
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    workflow = Workflow(path, doc)
    for job_id, job in workflow.jobs.items():
        _check_job(f"{path.name}: job {job_id}", job)
    return workflow


def _check_job(where: str, job: Any) -> None:
    if not isinstance(job, dict):
        raise WorkflowError(f"{where} is not a mapping")
    unknown = set(job) - JOB_KEYS
    if unknown:
        raise WorkflowError(f"{where}: the dry run cannot reproduce {sorted(unknown)}")
    if ("uses" in job) == ("steps" in job):
        raise WorkflowError(f"{where} needs exactly one of steps: or uses:")
    for index, step in enumerate(job.get("steps") or []):
        check_step(f"{where} step {index + 1}", step)


def check_step(where: str, step: Any) -> None:
    """Refuse a step with unknown keys, or with neither (or both of) ``run:`` and ``uses:``.

    Raises:
        WorkflowError: naming the step.
    """
    if not isinstance(step, dict):
        raise WorkflowError(f"{where} is not a mapping")
    unknown = set(step) - STEP_KEYS
    if unknown:
        raise WorkflowError(f"{where}: the dry run cannot reproduce {sorted(unknown)}")
    if ("run" in step) == ("uses" in step):
        raise WorkflowError(f"{where} needs exactly one of run: or uses:")


def needs(job: dict[str, Any]) -> list[str]:
    """The jobs a job waits for, as a list."""
    value = job.get("needs") or []
    return [value] if isinstance(value, str) else [str(item) for item in value]


def job_order(workflow: Workflow) -> list[str]:
    """Job ids in an order that honours ``needs`` (file order among independent jobs).

    Raises:
        WorkflowError: a job needs an unknown job, or the needs form a cycle.
    """
    jobs = workflow.jobs
    graph = {job_id: needs(job) for job_id, job in jobs.items()}
    for job_id, wanted in graph.items():
        for other in wanted:
            if other not in jobs:
                raise WorkflowError(f"{workflow.path.name}: job {job_id} needs unknown {other!r}")
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise WorkflowError(f"{workflow.path.name}: needs form a cycle {exc.args[1]}") from exc
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=list(jobs).index)
        order.extend(ready)
        sorter.done(*ready)
    return order


def call_target(workflows_dir: Path, uses: str) -> Path:
    """The file of a reusable workflow call ``./.github/workflows/NAME.yml``.

    Raises:
        WorkflowError: a call to another repository's workflow (the dry run has none).
    """
    prefix = "./.github/workflows/"
    if not uses.startswith(prefix) or "@" in uses:
        raise WorkflowError(f"cannot run reusable workflow {uses!r}: only {prefix}* is local")
    return workflows_dir / uses.removeprefix(prefix)
