"""One dry run's shared state: where things go, the ``github`` context, results and progress."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dev.dry_run.actions import Host
from dev.dry_run.evaluate import Strict
from dev.dry_run.record import Recorded
from dev.dry_run.settings import DryRunSettings
from dev.processes import tail


@dataclass
class StepRecord:
    """How one step went."""

    job: str
    step: str
    outcome: str  # success, failure or skipped
    conclusion: str
    seconds: float = 0.0
    error: str = ""
    log: Path | None = None
    commands: list[Recorded] = field(default_factory=list)


@dataclass
class JobRecord:
    """How one job (or a call of a reusable workflow) went, and its outputs."""

    key: str
    name: str
    result: str  # success, failure or skipped
    outputs: dict[str, str] = field(default_factory=dict)
    environment: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # its variables at the end (GITHUB_ENV)

    def context(self) -> Strict:
        """The job as ``needs.<id>`` (or ``jobs.<id>``) shows it."""
        return Strict({"result": self.result, "outputs": dict(self.outputs)})


@dataclass
class Run:
    """The dry run: host, settings, identity (run id, sha), records and the progress output."""

    host: Host
    settings: DryRunSettings
    root: Path
    workflows_dir: Path
    run_id: str
    sha: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    verbose: bool = False
    steps: list[StepRecord] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)

    def job_dir(self, key: str) -> Path:
        """A fresh folder for one job (workspace, temp, logs)."""
        path = self.root / "jobs" / re.sub(r"[^\w.-]+", "-", key)
        path.mkdir(parents=True, exist_ok=False)
        return path

    def github(self, workflow: str, job: str, workspace: Path) -> Strict:
        """The ``github`` context of a job."""
        gh = self.settings.github
        event = {"ref": gh.ref, "after": self.sha, "repository": {"full_name": gh.repository}}
        values: dict[str, Any] = {
            "sha": self.sha, "run_id": self.run_id, "run_number": "1", "run_attempt": "1",
            "workspace": str(workspace), "actor": gh.actor, "triggering_actor": gh.actor,
            "repository": gh.repository, "repository_owner": gh.repository.split("/")[0],
            "server_url": gh.server_url, "api_url": "https://api.github.com",
            "event_name": gh.event_name, "ref": gh.ref, "ref_name": gh.ref.rsplit("/", 1)[-1],
            "ref_type": "branch", "head_ref": "", "base_ref": "", "job": job,
            "workflow": workflow, "event": event, "token": self.settings.secrets.get(
                "GITHUB_TOKEN", ""), "action": "", "retention_days": "90",
        }  # fmt: skip
        return Strict(values, " (the dry run's github context: dev/dry_run/run.py)")

    def default_env(self, github: Strict, temp: Path) -> dict[str, str]:
        """The ``GITHUB_*`` and ``RUNNER_*`` variables every step sees."""
        names = (
            "sha", "ref", "ref_name", "repository", "repository_owner", "run_id",
            "run_number", "run_attempt", "actor", "triggering_actor", "workflow", "job",
            "event_name", "server_url", "api_url", "workspace",
        )  # fmt: skip
        env = {f"GITHUB_{name.upper()}": str(github[name]) for name in names}
        runner = {"RUNNER_TEMP": str(temp), "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64"}
        return {"CI": "true", "GITHUB_ACTIONS": "true", **env, **runner}

    def runner(self, temp: Path) -> Strict:
        """The ``runner`` context."""
        values = {"os": "Linux", "arch": "X64", "name": "dry-run", "temp": str(temp)}
        return Strict({**values, "tool_cache": str(temp / "toolcache"), "environment": "local"})

    def progress(self, record: StepRecord) -> None:
        """One line for a finished step; for a failure, why and the end of its log."""
        self.steps.append(record)
        mark = {"success": "ok", "failure": "FAIL", "skipped": "skip"}[record.outcome]
        if record.outcome == "failure" and record.conclusion == "success":
            mark = "fail (continue-on-error)"
        took = f"{record.seconds:6.1f}s" if record.outcome != "skipped" else " " * 7
        print(f"  {mark:<5} {took}  {record.job} / {record.step}", file=self.out, flush=True)
        if record.outcome == "failure":
            print(f"        {record.error}", file=self.out)
            for line in tail(record.log, 30).splitlines():
                print(f"        | {line}", file=self.out)
            self.out.flush()

    def announce(self, text: str) -> None:
        """A line of its own (a job starting, a job skipped)."""
        print(text, file=self.out, flush=True)
