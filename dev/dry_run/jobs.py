"""One job of a workflow, step by step, the way the runner does it.

Each job gets a fresh folder: an empty workspace (``actions/checkout`` fills it), ``RUNNER_TEMP``
and fresh ``GITHUB_ENV``/``GITHUB_OUTPUT``/``GITHUB_PATH`` files per step. A step's environment
is the workflow's ``env``, then the job's, then what earlier steps wrote to ``GITHUB_ENV``, then
its own; ``if:`` defaults to ``success()``; after a failure only steps whose ``if:`` asks for it
run (``failure()``, ``always()``). When the job ends, every process group its steps started is
killed, as the runner cleans up orphan processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dev.dry_run import evaluate
from dev.dry_run.actions import ActionError, Call, run_action
from dev.dry_run.artifacts import ArtifactError
from dev.dry_run.command_files import CommandFileError, parse_path, read_key_values
from dev.dry_run.composite import load_composite
from dev.dry_run.evaluate import Strict
from dev.dry_run.expressions import ExpressionError
from dev.dry_run.record import count, recorded
from dev.dry_run.run import JobRecord, Run, StepRecord
from dev.dry_run.sandbox import runner_env
from dev.dry_run.shell import ShellError, command_line, execute, kill_group, write_script
from dev.dry_run.shims import install_shims
from dev.dry_run.workflow import Workflow, WorkflowError, check_step

STEP_ERRORS = (ExpressionError, ActionError, ArtifactError, ShellError, WorkflowError)


class StepError(RuntimeError):
    """A step failed for a reason of the dry run's own (not a process's exit code)."""


@dataclass
class Frame:
    """Steps run at one level: the job's, or a composite action's (its own steps, inputs)."""

    prefix: str
    inputs: Strict
    steps: Strict = field(default_factory=lambda: Strict({}, " (no step with that id ran)"))
    env: dict[str, str] = field(default_factory=dict)  # a composite's: its caller step's env
    composite: bool = False


class JobRunner:
    """Run one job's steps in a fresh folder.

    Args:
        run: the dry run.
        workflow: the workflow the job belongs to.
        job_id: its id; ``key`` names it in the run (``dev/deploy`` for a called workflow).
        display: how progress lines name it.
        contexts: ``inputs``, ``needs`` and ``secrets`` of the job.
    """

    def __init__(
        self, run: Run, workflow: Workflow, job_id: str, key: str, display: str,
        contexts: dict[str, Any],
    ) -> None:  # fmt: skip
        self.run, self.workflow, self.job_id, self.key = run, workflow, job_id, key
        self.display, self.job = display, workflow.jobs[job_id]
        self.dir = run.job_dir(key)
        self.workspace, self.temp = self.dir / "workspace", self.dir / "temp"
        for folder in (self.workspace, self.temp, self.dir / "logs", self.dir / "files"):
            folder.mkdir()
        self.github = run.github(workflow.name, job_id, self.workspace)
        self.base = {**runner_env(install_shims(self.dir, run.host), self.temp)}
        self.base |= run.default_env(self.github, self.temp)
        self.contexts = {**contexts, "github": self.github, "runner": run.runner(self.temp)}
        self.env: dict[str, str] = {}
        self.exported: dict[str, str] = {}
        self.path: list[str] = []
        self.failed, self.index = False, 0
        self.groups: list[int] = []
        self.deadline = time.monotonic() + 60 * float(self.job.get("timeout-minutes") or 360)

    @property
    def status(self) -> dict[str, Callable[[], bool]]:
        """The status functions of ``if:`` for the next step."""
        return {
            "success": lambda: not self.failed, "failure": lambda: self.failed,
            "always": lambda: True, "cancelled": lambda: False,
        }  # fmt: skip

    def context(self, frame: Frame, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """Every context a step's expressions may read."""
        env = {**self.env, **self.exported, **frame.env, **(extra_env or {})}
        return {**self.contexts, "inputs": frame.inputs, "steps": frame.steps, "env": env}

    def start(self) -> str | None:
        """Evaluate the job's environment and ``env``; the environment's name."""
        ctx = {**self.context(Frame(self.display, self.contexts["inputs"])), "env": {}}
        environment = self.job.get("environment")
        if isinstance(environment, dict):
            environment = environment.get("name")
        name = evaluate.render(environment, ctx) if environment else None
        variables = self.run.settings.environment_vars(name)
        self.contexts["vars"] = Strict(variables, " (not in dev/dry_run/settings.yaml)")
        ctx["vars"] = self.contexts["vars"]
        for source in (self.workflow.doc.get("env"), self.job.get("env")):
            rendered = evaluate.render_all(dict(source or {}), {**ctx, "env": dict(self.env)})
            self.env.update({k: evaluate.to_string(v) for k, v in rendered.items()})
        for key in ("name", "runs-on", "timeout-minutes"):
            evaluate.render_all(self.job.get(key), ctx)  # a broken expression fails here too
        concurrency = self.job.get("concurrency")
        evaluate.render_all(concurrency, ctx)
        return name

    def execute(self) -> JobRecord:
        """Run the steps; the job's result and outputs (its ``outputs:`` rendered)."""
        began = time.monotonic()
        try:
            environment = self.start()
        except (*STEP_ERRORS, ValueError) as exc:
            self._fail_setup(str(exc), began)
            return JobRecord(self.key, self.display, "failure")
        where = f" (environment: {environment})" if environment else ""
        self.run.announce(f"== {self.display}{where}")
        frame = Frame(self.display, self.contexts["inputs"])
        self.run_steps(self.job.get("steps") or [], frame)
        outputs = self._outputs(self.job.get("outputs") or {}, self.context(frame))
        for group in self.groups:
            kill_group(group)
        result = "failure" if self.failed else "success"
        env = {**self.env, **self.exported}
        return JobRecord(self.key, self.display, result, outputs, environment, env)

    def _outputs(self, declared: dict[str, Any], ctx: dict[str, Any]) -> dict[str, str]:
        try:
            return {name: evaluate.render(value, ctx) for name, value in declared.items()}
        except ExpressionError as exc:
            self._fail_setup(f"outputs: {exc}", time.monotonic())
            return {}

    def _fail_setup(self, error: str, began: float) -> None:
        self.failed = True
        seconds = time.monotonic() - began
        self.run.progress(
            StepRecord(self.display, "Set up job", "failure", "failure", seconds, error)
        )

    def run_steps(self, steps: list[dict[str, Any]], frame: Frame) -> None:
        """Run steps in order, each deciding by its ``if:`` whether it runs."""
        for number, step in enumerate(steps, start=1):
            self.run_step(number, step, frame)

    def run_step(self, number: int, step: dict[str, Any], frame: Frame) -> None:
        """Run one step and record how it went (in the progress, ``steps.<id>``, the job)."""
        self.index += 1
        name = self._name(step, frame)
        log = self.dir / "logs" / f"{self.index:02d}-{number:02d}.log"
        began, before = time.monotonic(), count(self.run.host.state)
        outcome, error = "success", ""
        outputs: dict[str, str] = {}
        try:
            check_step(f"{frame.prefix} step {number}", step)
            if not evaluate.condition(step.get("if"), self.context(frame), self.status):
                outcome = "skipped"
            else:
                outputs = self._perform(step, frame, name, log)
        except (*STEP_ERRORS, StepError, CommandFileError) as exc:
            outcome, error = "failure", str(exc)
        conclusion = outcome
        if outcome == "failure" and self._continue_on_error(step, frame):
            conclusion = "success"
        self.failed = self.failed or conclusion == "failure"
        if step.get("id"):
            frame.steps[str(step["id"])] = Strict(
                {"outputs": outputs, "outcome": outcome, "conclusion": conclusion}
            )
        took = time.monotonic() - began
        commands = recorded(self.run.host.state, before)
        self.run.progress(
            StepRecord(frame.prefix, name, outcome, conclusion, took, error, log, commands)
        )

    def _name(self, step: dict[str, Any], frame: Frame) -> str:
        raw = step.get("name")
        if raw:
            try:
                return evaluate.render(raw, self.context(frame)).strip()
            except ExpressionError:
                return str(raw)
        first = str(step.get("run", "")).strip().splitlines()
        return f"Run {first[0]}" if first else f"Run {step.get('uses')}"

    def _continue_on_error(self, step: dict[str, Any], frame: Frame) -> bool:
        raw = step.get("continue-on-error", False)
        try:
            return evaluate.render(raw, self.context(frame)).strip().lower() == "true"
        except ExpressionError:
            return False

    def _perform(self, step: dict[str, Any], frame: Frame, name: str, log: Path) -> dict[str, str]:
        """Run the step; its outputs. Its file commands are applied to the job."""
        ctx = self.context(frame)
        step_env = {
            k: evaluate.to_string(v)
            for k, v in evaluate.render_all(dict(step.get("env") or {}), ctx).items()
        }
        ctx = self.context(frame, step_env)
        step_env = {**frame.env, **step_env}  # a composite's steps inherit its caller's env
        files = self.dir / "files" / f"{self.index:02d}"
        files.mkdir()
        paths = {name: files / name.lower() for name in ("GITHUB_ENV", "GITHUB_OUTPUT")}
        paths |= {n: files / n.lower() for n in ("GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
        for path in paths.values():
            path.touch()
        env = self.process_env(step_env, {k: str(v) for k, v in paths.items()})
        if "run" in step:
            outputs = self._run_script(step, frame, ctx, env, log)
        else:
            outputs = self._uses(step, frame, ctx, env, step_env, log)
        self.exported.update(read_key_values(paths["GITHUB_ENV"]))
        outputs.update(read_key_values(paths["GITHUB_OUTPUT"]))
        self.path = [*parse_path(paths["GITHUB_PATH"].read_text()), *self.path]
        return outputs

    def process_env(self, step_env: dict[str, str], files: dict[str, str]) -> dict[str, str]:
        """The environment of a step's process."""
        env = {**self.base, **self.env, **self.exported, **step_env, **files}
        env["PATH"] = ":".join([*self.path, env["PATH"]])
        return env

    def _run_script(
        self, step: dict[str, Any], frame: Frame, ctx: dict[str, Any], env: dict[str, str],
        log: Path,
    ) -> dict[str, str]:  # fmt: skip
        defaults = {
            **((self.workflow.doc.get("defaults") or {}).get("run") or {}),
            **((self.job.get("defaults") or {}).get("run") or {}),
        }
        shell = evaluate.render(
            step.get("shell") or ("" if frame.composite else defaults.get("shell", "")), ctx
        )
        if frame.composite and not shell:
            raise StepError("a run: step of a composite action needs shell:")
        where = evaluate.render(
            step.get("working-directory") or defaults.get("working-directory", ""), ctx
        )
        cwd = self.workspace / where
        if not cwd.is_dir():
            raise StepError(f"working-directory {where!r} does not exist")
        script = write_script(evaluate.render(step["run"], ctx), self.temp, shell)
        finished = execute(
            command_line(shell, script), cwd, env, log, timeout=self._timeout(step),
            echo=self.run.out if self.run.verbose else None,
        )  # fmt: skip
        self.groups.append(finished.group)
        if finished.code is None:
            raise StepError("timed out (timeout-minutes)")
        if finished.code != 0:
            raise StepError(f"exit code {finished.code}")
        return {}

    def _timeout(self, step: dict[str, Any]) -> float:
        left = self.deadline - time.monotonic()
        minutes = step.get("timeout-minutes")
        return max(1.0, min(left, 60 * float(minutes)) if minutes else left)

    def _uses(
        self, step: dict[str, Any], frame: Frame, ctx: dict[str, Any], env: dict[str, str],
        step_env: dict[str, str], log: Path,
    ) -> dict[str, str]:  # fmt: skip
        uses = str(step["uses"])
        inputs = {
            k: evaluate.to_string(v)
            for k, v in evaluate.render_all(dict(step.get("with") or {}), ctx).items()
        }
        if uses.startswith("./"):
            return self._composite(uses, inputs, frame, step_env)
        call = Call(uses, inputs, env, self.workspace, self.dir)
        result = run_action(self.run.host, call)
        with log.open("a") as sink:
            sink.write(result.note + "\n")
        self.exported.update(result.env)
        self.path = [*result.path, *self.path]
        return result.outputs

    def _composite(
        self, uses: str, given: dict[str, str], frame: Frame, step_env: dict[str, str]
    ) -> dict[str, str]:
        """A local composite action: its steps, with its inputs and the calling step's env,
        as part of this job; its outputs."""
        action = load_composite(self.workspace, uses, given)
        env = {**frame.env, **step_env}
        inner = Frame(
            f"{frame.prefix} / {action.name}", Strict(action.inputs), env=env, composite=True
        )
        failed_before = self.failed
        self.run_steps(action.steps, inner)
        if self.failed and not failed_before:
            raise StepError(f"a step of {uses} failed")
        ctx = self.context(inner)
        return {
            n: evaluate.render((o or {}).get("value", ""), ctx) for n, o in action.outputs.items()
        }
