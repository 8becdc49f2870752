"""Fixtures for the infra tests: both Pulumi programs run per stack under official mocks.

Each stack runs once per session in its own process (Pulumi's runtime state is global); the
runs go in parallel and their recordings are shared by every test. The application runs read
what the platform runs exported (their StackReference) and a registry written by the real
``approvals.registry`` into moto's S3 server (their invokes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from infra_testkit import (
    ACCOUNT,
    CONNECTION,
    EXISTING_PROVIDER,
    GITHUB_REPO,
    HARNESS,
    ROOT,
    STACKS,
    StackRun,
    image_of,
    stack_file,
)

from approvals.registry import ModelRegistry
from infra.components.artifact_store import artifact_bucket_name

GITHUB = {"repository": GITHUB_REPO, "connectionArn": CONNECTION}


def _variant(tmp: Path, project: str, stack: str, extra: dict[str, Any], tag: str) -> Path:
    document = yaml.safe_load(stack_file(project, stack).read_text())
    document["config"].update(extra)
    folder = tmp / project / tag
    folder.mkdir(parents=True)
    path = folder / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def harness_env(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment for program runs: bytecode cached under .pytest_cache.

    pulumi_aws and pulumi_kubernetes are large; compiling them on every run costs ~9 s of CPU
    per process when PYTHONDONTWRITEBYTECODE is set, so the runs keep their own pycache (for
    this session only when the cache provider is off: ``-p no:cacheprovider``).
    """
    cache = getattr(pytestconfig, "cache", None)
    if cache is not None:
        prefix = cache.mkdir("infra-pycache")
    else:
        prefix = tmp_path_factory.mktemp("infra-pycache")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(prefix)}


def _launch(
    program: str, stack: Path, out: Path, env: dict[str, str], world: Path | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(HARNESS), program, str(stack), str(out)]
    return subprocess.Popen(
        [*command, *([str(world)] if world else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def _collect(name: str, proc: subprocess.Popen[bytes], out: Path) -> StackRun:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{name}: program failed under mocks:\n{err.decode()[-3000:]}"
    data = json.loads(out.read_text())
    return StackRun(name, data["resources"], data["components"], data["outputs"], data["invokes"])


def _run_all(
    program: str, files: dict[str, Path], tmp: Path, env: dict[str, str], worlds: dict[str, Path]
) -> dict[str, StackRun]:
    procs = {
        name: _launch(program, path, tmp / f"{program}-{name}.json", env, worlds.get(name))
        for name, path in files.items()
    }
    return {
        name: _collect(name, proc, tmp / f"{program}-{name}.json") for name, proc in procs.items()
    }


@pytest.fixture(scope="session")
def platform_runs(
    tmp_path_factory: pytest.TempPathFactory, harness_env: dict[str, str]
) -> dict[str, StackRun]:
    """dev, staging, prod; staging with a GitHub repository; prod reusing an OIDC provider."""
    tmp = tmp_path_factory.mktemp("platform")
    files = {stack: stack_file("platform", stack) for stack in STACKS}
    files["staging+github"] = _variant(
        tmp, "platform", "staging", {"approvals:github": GITHUB}, "gh"
    )
    reuse = {**GITHUB, "oidcProviderArn": EXISTING_PROVIDER}
    files["prod+github-reuse"] = _variant(
        tmp, "platform", "prod", {"approvals:github": reuse}, "re"
    )
    # One run first fills the bytecode cache; the rest then run side by side.
    first = {"dev": files.pop("dev")}
    runs = _run_all("platform", first, tmp, harness_env, {})
    runs.update(_run_all("platform", files, tmp, harness_env, {}))
    return runs


def _package(root: Path, version: str) -> Path:
    root.mkdir(parents=True)
    (root / "booster.txt").write_text(f"tree\n{version}\n")
    manifest = {"format_version": 1, "model_version": version, "metrics": {"log_loss": 0.4}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def registries(
    s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, str]]:
    """Each stack's artifact bucket as the real registry writes it: v1 published with its
    image and promoted to champion, v2 published and not promoted; JSON documents as text."""
    tmp = tmp_path_factory.mktemp("registry")
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    buckets = {}
    for stack in STACKS:
        bucket = artifact_bucket_name(stack, ACCOUNT, "us-east-1")
        client.create_bucket(Bucket=bucket)
        registry = ModelRegistry(client, bucket)
        for version in ("v1", "v2"):
            package = _package(tmp / stack / version, version)
            registry.publish(package, image=image_of(stack, version))
        registry.promote(stack, "champion", "v1")
        listed = client.list_objects_v2(Bucket=bucket)["Contents"]
        buckets[bucket] = {
            o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
            for o in listed
            if o["Key"].endswith(".json")
        }
    return buckets


def _platform_outputs(run: StackRun) -> dict[str, Any]:
    outputs = {k: v["value"] for k, v in run.outputs.items()}
    return {"outputs": outputs, "secret": [k for k, v in run.outputs.items() if v["secret"]]}


@pytest.fixture(scope="session")
def app_runs(
    tmp_path_factory: pytest.TempPathFactory,
    harness_env: dict[str, str],
    platform_runs: dict[str, StackRun],
    registries: dict[str, dict[str, str]],
) -> dict[str, StackRun]:
    """dev, staging, prod on their platforms with a v1 champion; dev before any release;
    dev with the pipeline naming v2."""
    tmp = tmp_path_factory.mktemp("application")

    def world(stack: str, objects: dict[str, dict[str, str]]) -> Path:
        name = f"organization/approvals-platform/{stack}"
        path = tmp / f"world-{stack}-{len(objects)}-{sum(map(len, objects.values()))}.json"
        stacks = {name: _platform_outputs(platform_runs[stack])}
        path.write_text(json.dumps({"stacks": stacks, "objects": objects}))
        return path

    files = {stack: stack_file("application", stack) for stack in STACKS}
    worlds = {stack: world(stack, registries) for stack in STACKS}
    empty = {bucket: {} for bucket in registries}
    files["dev+first"] = files["dev"]
    worlds["dev+first"] = world("dev", empty)
    release = {"approvals:release": {"modelVersion": "v2"}}
    files["dev+release"] = _variant(tmp, "application", "dev", release, "release")
    worlds["dev+release"] = worlds["dev"]
    return _run_all("application", files, tmp, harness_env, worlds)


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest, platform_runs: dict[str, StackRun]) -> StackRun:
    """One of the three real platform stacks (tests using it run once per stack)."""
    return platform_runs[request.param]


@pytest.fixture(params=STACKS)
def app(request: pytest.FixtureRequest, app_runs: dict[str, StackRun]) -> StackRun:
    """One of the three real application stacks, deploying its v1 champion."""
    return app_runs[request.param]


@pytest.fixture
def run_program(harness_env: dict[str, str]) -> Any:
    """Run a program for one stack file and wait (for the failure-path tests)."""

    def run(
        program: str, stack: Path, out: Path, world: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(HARNESS), program, str(stack), str(out)]
        return subprocess.run(
            [*command, *([str(world)] if world else [])],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=harness_env,
            timeout=300,
            check=False,
        )

    return run


@pytest.fixture(params=[f"{p}:{s}" for p in ("platform", "application") for s in STACKS])
def program_run(
    request: pytest.FixtureRequest,
    platform_runs: dict[str, StackRun],
    app_runs: dict[str, StackRun],
) -> StackRun:
    """Each program of each stack on its own (tests using it run six times)."""
    program, stack = request.param.split(":")
    return (platform_runs if program == "platform" else app_runs)[stack]


@pytest.fixture(scope="session")
def stack_runs(
    platform_runs: dict[str, StackRun], app_runs: dict[str, StackRun]
) -> dict[str, StackRun]:
    """Per stack, both programs' resources together (one environment as a whole)."""
    return {
        stack: StackRun(
            stack,
            platform_runs[stack].resources + app_runs[stack].resources,
            {**platform_runs[stack].components, **app_runs[stack].components},
            {**platform_runs[stack].outputs, **app_runs[stack].outputs},
            platform_runs[stack].invokes + app_runs[stack].invokes,
        )
        for stack in STACKS
    }
