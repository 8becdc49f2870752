"""The pipeline's gate step (.github/scripts/gate.sh): a refusal is told apart from a crash."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from approvals.cli.exits import ExitCode
from tests.workflows.conftest import GITHUB

SCRIPT = GITHUB / "scripts" / "gate.sh"


def _run_gate(tmp_path: Path, code: int) -> subprocess.CompletedProcess[str]:
    """gate.sh with APPROVALS pointing at a stand-in CLI that records its arguments."""
    fake = tmp_path / "approvals"
    fake.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/argv"\nexit {code}\n')
    fake.chmod(0o755)
    env = {**os.environ, "APPROVALS": str(fake)}
    return subprocess.run(
        [str(SCRIPT), "--candidate", "work/model", "--data", "work/data/holdout"],
        env=env, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("code", "title"),
    [
        (ExitCode.OK, None),
        (ExitCode.GATE_REFUSED, "Gate refused the candidate"),
        (ExitCode.USER_ERROR, "Gate called with bad input"),
        (ExitCode.UNEXPECTED, "Gate crashed"),
        (137, "Gate crashed"),
    ],
)
def test_gate_step_names_the_reason_and_keeps_the_code(
    tmp_path: Path, code: int, title: str | None
) -> None:
    # when the gate CLI exits with a given code
    done = _run_gate(tmp_path, code)
    # then the step exits with the same code and says which kind of stop it is
    assert done.returncode == code, f"exit code passed on: {done.returncode} != {code}"
    argv = (tmp_path / "argv").read_text().split()
    assert argv == ["gate", "--candidate", "work/model", "--data", "work/data/holdout"]
    if title is None:
        assert "::error" not in done.stdout, f"no error annotation on success: {done.stdout}"
    else:
        assert f"::error title={title}::" in done.stdout, f"annotation for {code}: {done.stdout}"


def test_every_workflow_gates_through_the_script(workflows) -> None:
    direct = re.compile(r"approvals\s+gate\b|\$APPROVALS\s+gate\b")
    runs = [
        step.get("run", "")
        for doc in workflows.values()
        for job in doc["jobs"].values()
        for step in job.get("steps", [])
    ]
    assert any(".github/scripts/gate.sh" in run for run in runs), "some step runs the gate"
    for run in runs:
        assert not direct.search(run), f"call the gate through gate.sh, not directly: {run}"
