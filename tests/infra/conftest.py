"""Fixtures for the infra tests: the whole Pulumi program run per stack under official mocks.

Each stack runs once per session in its own process (Pulumi's runtime state is global); the
runs go in parallel and their recordings are shared by every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_testkit import (
    ENVIRONMENTS,
    EXISTING_PROVIDER,
    GITHUB_REPO,
    HARNESS,
    ROOT,
    STACKS,
    StackRun,
)


def _variant(tmp: Path, stack: str, extra: dict[str, str]) -> Path:
    document = yaml.safe_load((ENVIRONMENTS / f"Pulumi.{stack}.yaml").read_text())
    document["config"].update(extra)
    folder = tmp / "-".join(sorted(extra)) / stack
    folder.mkdir(parents=True)
    path = folder / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="session")
def harness_env(pytestconfig: pytest.Config) -> dict[str, str]:
    """Environment for program runs: bytecode cached under .pytest_cache.

    pulumi_aws and pulumi_kubernetes are large; compiling them on every run costs ~9 s of CPU
    per process when PYTHONDONTWRITEBYTECODE is set, so the runs keep their own pycache.
    """
    assert pytestconfig.cache is not None, "pytest's cache provider is enabled"
    prefix = pytestconfig.cache.mkdir("infra-pycache")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(prefix)}


def _launch(stack_file: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HARNESS), str(stack_file), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def _collect(name: str, proc: subprocess.Popen[bytes], out: Path) -> StackRun:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{name}: program failed under mocks:\n{err.decode()[-3000:]}"
    data = json.loads(out.read_text())
    return StackRun(name, data["resources"], data["components"], data["outputs"])


@pytest.fixture(scope="session")
def stack_runs(
    tmp_path_factory: pytest.TempPathFactory, harness_env: dict[str, str]
) -> Iterator[dict[str, StackRun]]:
    """dev, staging, prod, plus staging with a GitHub repo and prod reusing a provider."""
    tmp = tmp_path_factory.mktemp("stacks")
    files = {stack: ENVIRONMENTS / f"Pulumi.{stack}.yaml" for stack in STACKS}
    files["staging+github"] = _variant(tmp, "staging", {"approvals:githubRepository": GITHUB_REPO})
    files["prod+github-reuse"] = _variant(
        tmp,
        "prod",
        {
            "approvals:githubRepository": GITHUB_REPO,
            "approvals:githubOidcProviderArn": EXISTING_PROVIDER,
        },
    )
    # One run first fills the bytecode cache; the rest then run side by side.
    runs = {
        "dev": _collect(
            "dev", _launch(files["dev"], tmp / "dev.json", harness_env), tmp / "dev.json"
        )
    }
    procs = {
        name: _launch(path, tmp / f"{name}.json", harness_env)
        for name, path in files.items()
        if name != "dev"
    }
    runs.update({name: _collect(name, proc, tmp / f"{name}.json") for name, proc in procs.items()})
    yield runs


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest, stack_runs: dict[str, StackRun]) -> StackRun:
    """One of the three real stacks (tests using it run once per stack)."""
    return stack_runs[request.param]


@pytest.fixture
def run_program(harness_env: dict[str, str]) -> Any:
    """Run the program for one stack file and wait (for the failure-path tests)."""

    def run(stack_file: Path, out: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(HARNESS), str(stack_file), str(out)]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=harness_env,
            timeout=300,
            check=False,
        )

    return run
