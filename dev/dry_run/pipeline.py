"""A workflow's jobs in ``needs`` order; a job that calls a reusable workflow runs its jobs.

A job runs when its ``if:`` holds (default ``success()``: every job it needs succeeded), so a
failed model job skips dev, staging and prod as on GitHub. A call's ``with:`` is checked
against the called workflow's ``on.workflow_call.inputs`` (unknown or missing required inputs
fail, defaults fill in, types convert); its outputs come from ``on.workflow_call.outputs``.
"""

from __future__ import annotations

import math
from typing import Any

from dev.dry_run import evaluate
from dev.dry_run.evaluate import Strict
from dev.dry_run.expressions import ExpressionError
from dev.dry_run.jobs import JobRunner
from dev.dry_run.run import JobRecord, Run, StepRecord
from dev.dry_run.settings import SettingsError
from dev.dry_run.workflow import Workflow, WorkflowError, call_target, job_order, load, needs


def run_workflow(
    run: Run, workflow: Workflow, inputs: Strict, secrets: Strict, prefix: str = ""
) -> dict[str, JobRecord]:
    """Run every job of ``workflow``; their records by job id."""
    results: dict[str, JobRecord] = {}
    for job_id in job_order(workflow):
        job, key = workflow.jobs[job_id], f"{prefix}{job_id}"
        wanted = {name: results[name].context() for name in needs(job)}
        contexts = {
            "inputs": inputs, "secrets": secrets, "needs": Strict(wanted, " (not in needs:)"),
            "vars": Strict(run.settings.vars, " (not in dev/dry_run/settings.yaml)"),
            "github": run.github(workflow.name, job_id, run.root), "env": {},
        }  # fmt: skip
        results[job_id] = _run_job(run, workflow, job_id, key, contexts, results)
        run.jobs.append(results[job_id])
    return results


def _run_job(
    run: Run, workflow: Workflow, job_id: str, key: str, contexts: dict[str, Any],
    done: dict[str, JobRecord],
) -> JobRecord:  # fmt: skip
    job = workflow.jobs[job_id]
    results = [done[name].result for name in needs(job)]
    status = {
        "success": lambda: all(r == "success" for r in results),
        "failure": lambda: any(r == "failure" for r in results),
        "always": lambda: True, "cancelled": lambda: False,
    }  # fmt: skip
    display = key.replace("/", " / ")
    try:
        if not evaluate.condition(job.get("if"), contexts, status):
            run.announce(f"== {display}: skipped (if: {job.get('if', 'success()')})")
            return JobRecord(key, display, "skipped")
        if "uses" in job:
            return _call(run, workflow, job_id, key, contexts)
        runner = JobRunner(run, workflow, job_id, key, display, contexts)
    except (ExpressionError, WorkflowError, SettingsError) as exc:
        run.progress(StepRecord(display, "Set up job", "failure", "failure", 0.0, str(exc)))
        return JobRecord(key, display, "failure")
    return runner.execute()


def _call(
    run: Run, workflow: Workflow, job_id: str, key: str, contexts: dict[str, Any]
) -> JobRecord:
    """A job that calls a reusable workflow: its jobs, its outputs."""
    job = workflow.jobs[job_id]
    called = load(call_target(run.workflows_dir, str(job["uses"])))
    given = evaluate.render_all(dict(job.get("with") or {}), contexts)
    inputs = call_inputs(called, given)
    secrets = _secrets(run, job, contexts)
    results = run_workflow(run, called, inputs, secrets, prefix=f"{key}/")
    outcomes = {r.result for r in results.values()}
    result = "failure" if "failure" in outcomes else "success"
    jobs = Strict({name: r.context() for name, r in results.items()}, " (no such job)")
    outputs = {
        name: evaluate.render((spec or {}).get("value", ""), {**contexts, "jobs": jobs})
        for name, spec in called.call_outputs.items()
    }
    environment = next((r.environment for r in results.values() if r.environment), None)
    env = next((r.env for r in results.values() if r.env), {})
    return JobRecord(key, key, result, outputs, environment, env)


def call_inputs(called: Workflow, given: dict[str, Any]) -> Strict:
    """The ``inputs`` context of a called workflow.

    Raises:
        WorkflowError: an input it does not declare, a missing required one, a bad type.
    """
    declared = called.call_inputs
    unknown = set(given) - set(declared)
    if unknown:
        raise WorkflowError(f"{called.path.name}: unexpected inputs {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, declaration in declared.items():
        spec = declaration or {}
        if name not in given and spec.get("required"):
            raise WorkflowError(f"{called.path.name}: required input {name!r} not given")
        value = given.get(name, spec.get("default"))
        values[name] = _typed(name, spec.get("type", "string"), value)
    return Strict(values, f" (not an input of {called.path.name})")


def _typed(name: str, kind: str, value: Any) -> Any:
    if kind == "boolean":
        if isinstance(value, bool) or value is None:
            return bool(value)
        if str(value).lower() not in ("true", "false"):
            raise WorkflowError(f"input {name}: {value!r} is not a boolean")
        return str(value).lower() == "true"
    if kind == "number":
        number = evaluate.to_number(value)
        if math.isnan(number):
            raise WorkflowError(f"input {name}: {value!r} is not a number")
        return number
    return "" if value is None else evaluate.to_string(value)


def _secrets(run: Run, job: dict[str, Any], contexts: dict[str, Any]) -> Strict:
    token = {"GITHUB_TOKEN": run.settings.secrets.get("GITHUB_TOKEN", "")}
    given = job.get("secrets")
    if given == "inherit":
        return Strict(dict(contexts["secrets"]), " (not a secret of the dry run)")
    passed = evaluate.render_all(dict(given or {}), contexts)
    return Strict({**token, **passed}, " (secret not passed to the called workflow)")
