"""The end of a dry run: what each environment would run, what was recorded, what failed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from dev.dry_run.pulumi_shim import deployed, setting
from dev.dry_run.run import Run
from dev.dry_run.sandbox import Stack, aws_client
from dev.dry_run.shim_args import read_json


@dataclass
class Rollout:
    """What one environment's deploy job ended with."""

    environment: str
    result: str
    model_version: str = ""
    image_tag: str = ""
    image: str = ""
    champion: str = ""
    bucket: str = ""
    running: str = ""  # the image the stand-in cluster ran (and smoke-tested)


@dataclass
class Summary:
    """The dry run's outcome, as printed and as ``--summary-json`` writes it."""

    ok: bool
    seconds: float
    run_id: str
    sha: str
    model_version: str
    rollouts: list[Rollout]
    failures: list[str]
    commands: list[dict[str, str]] = field(default_factory=list)

    def write(self, path: Path) -> None:
        """The summary as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1))


def champion(endpoint: str, region: str, bucket: str, environment: str) -> str:
    """The version the environment's champion alias points at on moto (empty if none)."""
    from approvals.registry.core import ModelRegistry

    registry = ModelRegistry(aws_client("s3", endpoint, region), bucket)
    state = registry.current(environment, "champion")
    return "" if state is None else state.version


def summarize(run: Run, stacks: list[Stack], seconds: float) -> Summary:
    """Collect the outcome from the records, the pulumi state and the registry on moto."""
    model = next((job for job in run.jobs if job.key == "model"), None)
    rollouts = []
    for stack in stacks:
        job = next((j for j in run.jobs if j.environment == stack.environment), None)
        config = deployed(run.host.state, stack.environment)
        rollout = Rollout(stack.environment, job.result if job else "not run", bucket=stack.bucket)
        rollout.model_version = setting(config, "modelVersion")
        rollout.image = (job.env if job else {}).get("TARGET_IMAGE", "")
        running = read_json(run.host.state / "cluster" / f"{stack.environment}.json", {})
        rollout.running = running.get("image", "") if running.get("ready") else ""
        reference = rollout.running or rollout.image
        rollout.image_tag = setting(config, "imageTag") or _tag(reference)
        region = run.settings.region
        rollout.champion = champion(run.host.endpoint, region, stack.bucket, stack.environment)
        rollouts.append(rollout)
    failures = [f"{s.job} / {s.step}: {s.error}" for s in run.steps if s.conclusion == "failure"]
    commands = [
        {"step": f"{s.job} / {s.step}", "command": c.line} for s in run.steps for c in s.commands
    ]
    version = (model.outputs.get("version", "") if model else "") or ""
    ok = not failures and all(job.result != "failure" for job in run.jobs)
    return Summary(ok, seconds, run.run_id, run.sha, version, rollouts, failures, commands)


def show(summary: Summary, out: TextIO) -> None:
    """Print the summary: commands recorded, then per environment, then the verdict."""
    print("\n== commands the dry run recorded instead of running", file=out)
    last = ""
    for entry in summary.commands:
        if entry["step"] != last:
            print(f"  {entry['step']}", file=out)
            last = entry["step"]
        print(f"      {_short(entry['command'])}", file=out)
    print(f"\n== release of model version {summary.model_version or '(none)'}", file=out)
    for r in summary.rollouts:
        if r.result == "not run":
            print(f"  {r.environment:<8} not run", file=out)
            continue
        version, tag = r.model_version or "-", r.image_tag or "-"
        print(f"  {r.environment:<8} {r.result:<8} version {version}  image tag {tag}", file=out)
        print(f"           champion {r.champion or '-'}", file=out)
        print(f"           image {r.image or '-'}", file=out)
        print(f"           ran   {r.running or '-'}", file=out)
    verdict = "succeeded" if summary.ok else "FAILED"
    print(f"\nrelease dry run {verdict} in {summary.seconds:.0f}s (run {summary.run_id})", file=out)
    for failure in summary.failures:
        print(f"  failed: {failure}", file=out)
    out.flush()


def _tag(reference: str) -> str:
    """``REPOSITORY:TAG@sha256:...`` -> ``TAG``."""
    name = reference.split("@", 1)[0]
    return name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""


def _short(command: str, limit: int = 160) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."
