"""The rollout's decisions (.github/scripts/choose.sh, move-alias.sh): nothing moves before the
rollout is healthy, and a version and its image always travel as a pair."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.conftest import GITHUB

SCRIPTS = GITHUB / "scripts"
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/approvals/dev/service"
DIGEST = "sha256:" + "ab" * 32
CHAMPION = {"version": "v2", "image": {"reference": f"{REPO}:v2@{DIGEST}"}}
OLDER = {"version": "v1", "image": {"reference": f"{REPO}:v1@{DIGEST}"}}

# A stand-in registry CLI: logs each call as one JSON line, answers from canned records.
FAKE = r"""#!{python}
import json, sys
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(args) + "\n")
champion, older, published = {champion}, {older}, {published}
if args[:2] == ["registry", "resolve"]:
    if champion is None:
        print("")
    elif "--field" in args:
        print(champion["image"]["reference"])
    else:
        print(champion["version"])
elif args[:2] == ["registry", "show"]:
    print(json.dumps(published.get(args[2]) or sys.exit(2)))
elif args[:2] == ["registry", "rollback"] and "--dry-run" in args:
    target = args[args.index("--to") + 1] if "--to" in args else older["version"]
    print(json.dumps(published[target]))
"""

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("jq") is None, reason="needs bash and jq"
)


def _run(
    tmp_path: Path, script: str, env: dict[str, str], champion: dict[str, Any] | None = CHAMPION
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "approvals"
    published = {"v1": OLDER, "v2": CHAMPION, "v3": {"version": "v3", "image": None}}
    answers = {"champion": repr(champion), "older": repr(OLDER), "published": repr(published)}
    fake.write_text(FAKE.format(python=shutil.which("python3"), log=str(log), **answers))
    fake.chmod(0o755)
    full = {
        **os.environ, "APPROVALS": str(fake), "ENVIRONMENT": "dev", "GITHUB_ACTOR": "octo",
        "GITHUB_RUN_ID": "42", "REASON": "test", **env,
    }  # fmt: skip
    done = subprocess.run(
        [str(SCRIPTS / script)], env=full, capture_output=True, text=True, check=False, timeout=30
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def _chosen(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def _mutating(calls: list[list[str]]) -> list[list[str]]:
    writes = {"promote", "rollback", "publish"}
    return [c for c in calls if c[1] in writes and "--dry-run" not in c]


def test_release_deploys_the_image_tagged_with_its_own_version(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "choose.sh", {"MODE": "release", "VERSION": "v9"})
    chosen = _chosen(done)
    assert (chosen["TARGET_VERSION"], chosen["TARGET_TAG"]) == ("v9", "v9"), "version = tag"
    assert (chosen["PREVIOUS_VERSION"], chosen["PREVIOUS_TAG"]) == ("v2", "v2"), "fallback"
    assert _mutating(calls) == [], "choosing moves nothing"


def test_first_release_has_no_fallback(tmp_path: Path) -> None:
    done, _ = _run(tmp_path, "choose.sh", {"MODE": "release", "VERSION": "v9"}, champion=None)
    chosen = _chosen(done)
    assert chosen["PREVIOUS_VERSION"] == "" and chosen["PREVIOUS_TAG"] == "", chosen


def test_promote_takes_the_tag_recorded_with_the_version(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "choose.sh", {"MODE": "promote", "VERSION": "v1"})
    assert _chosen(done)["TARGET_TAG"] == "v1", "the image the registry recorded"
    assert _mutating(calls) == []


def test_a_version_without_an_image_is_refused(tmp_path: Path) -> None:
    done, _ = _run(tmp_path, "choose.sh", {"MODE": "promote", "VERSION": "v3"})
    assert done.returncode == 2, done.stdout
    assert "v3 has no image" in done.stderr


@pytest.mark.parametrize("to", ["", "v1"])
def test_rollback_only_asks_where_it_would_go(tmp_path: Path, to: str) -> None:
    done, calls = _run(tmp_path, "choose.sh", {"MODE": "rollback", "VERSION": to})
    chosen = _chosen(done)
    assert (chosen["TARGET_VERSION"], chosen["TARGET_TAG"]) == ("v1", "v1"), chosen
    assert (chosen["PREVIOUS_VERSION"], chosen["PREVIOUS_TAG"]) == ("v2", "v2"), "way back"
    assert _mutating(calls) == [], "the alias stays until the rolled-back version is healthy"
    assert any(c[:2] == ["registry", "rollback"] and "--dry-run" in c for c in calls)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("release", ["registry", "promote", "v1"]),
        ("promote", ["registry", "promote", "v1"]),
        ("rollback", ["registry", "rollback", "--to", "v1"]),
    ],
)
def test_the_alias_moves_to_exactly_the_version_rolled_out(
    tmp_path: Path, mode: str, expected: list[str]
) -> None:
    done, calls = _run(tmp_path, "move-alias.sh", {"MODE": mode, "TARGET_VERSION": "v1"})
    assert done.returncode == 0, done.stderr
    (call,) = calls
    assert call[: len(expected)] == expected, call
    assert call[call.index("--env") + 1] == "dev" and "--reason" in call, call


def test_the_alias_moves_last_and_only_after_a_healthy_rollout(workflows) -> None:
    steps = workflows["deploy.yml"]["jobs"]["deploy"]["steps"]
    runs = [s.get("run", "") for s in steps]
    at = {
        key: next(i for i, run in enumerate(runs) if key in run)
        for key in ("choose.sh", "push-image.sh", "registry publish", "pulumi-up.sh", "smoke.sh",
                    "move-alias.sh")
    }  # fmt: skip
    order = sorted(at, key=at.__getitem__)
    assert order == list(at), f"rollout order: {order}"
    move = steps[at["move-alias.sh"]]
    assert "if" not in move, "runs only when every step before it succeeded"
    assert move is steps[-1], "nothing can fail after the alias moved"
    restore = next(s for s in steps if "PREVIOUS_VERSION" in s.get("run", ""))
    assert "failure()" in restore["if"] and "steps.smoke" in restore["if"], "restore on failure"
