"""`approvals registry ...`: exit codes and one-line errors, through the real entry point."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from approvals.cli.exits import ExitCode
from approvals.cli.main import main
from approvals.registry import ConcurrentUpdateError, ModelRegistry, UnavailableError
from approvals.registry.layout import Layout

pytestmark = pytest.mark.servers

ACTIONS_RUN = {
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/approvals",
    "GITHUB_RUN_ID": "777",
    "GITHUB_RUN_ATTEMPT": "1",
}


@pytest.fixture
def cli(s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys):
    """Run the console entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("APPROVALS_REGISTRY_BUCKET", bucket)
    for name in ("GITHUB_SHA", "GITHUB_ACTOR", "GITHUB_ACTIONS", *ACTIONS_RUN):
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            main(["registry", *argv])
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_publish_promote_pull_through_cli(cli, make_package, tmp_path: Path) -> None:
    code, out, _ = cli("publish", str(make_package("v1")), "--git-sha", "c" * 40, "--json")
    assert code == 0, "publish succeeds"
    assert json.loads(out)["created"] is True, "JSON output says it was created"
    code, out, _ = cli("publish", str(make_package("v1")))
    assert (code, out.split()[0:2]) == (0, ["already", "published"]), "retry is a no-op"
    assert cli("promote", "v1", "--env", "prod", "--actor", "bob")[0] == 0, "promote works"
    code, out, _ = cli("resolve", "--env", "prod", "--field", "git_sha")
    assert (code, out.strip()) == (0, "c" * 40), "resolve prints the image tag to deploy"
    code, out, _ = cli("pull", "--env", "prod", "--dest", str(tmp_path / "m"))
    assert code == 0 and (tmp_path / "m" / "manifest.json").exists(), f"pulled by alias: {out}"
    code, out, _ = cli("history", "--env", "prod", "--json")
    assert json.loads(out)[0]["actor"] == "bob", "history is printed with the actor"
    code, out, _ = cli("list")
    assert out.startswith("v1\t"), f"list prints one line per version: {out!r}"


def test_bad_input_exits_2_with_one_line(cli, make_package) -> None:
    cases = [
        ("promote", "v1", "--env", "Prod"),
        ("promote", "../v1", "--env", "prod"),
        ("promote", "v1", "--env", "prod", "--alias", "boss"),
        ("show", "v404"),
        ("rollback", "--env", "prod"),
        ("resolve", "--env", "prod"),
        ("publish", "/does/not/exist"),
        ("publish", str(make_package("v1")), "--git-sha", "HEAD"),
        ("pull", "--dest", "x"),
        ("publish", str(make_package("v1")), "--image", "approvals:latest"),
        ("publish", str(make_package("v1")), "--workflow-run-url", "https://github.com/a/b"),
        ("publish", str(make_package("v1")), "--gate-report", "/does/not/exist.json"),
        ("resolve", "--env", "prod", "--field", "digest"),
        ("rollback", "--env", "prod", "--dry-run"),
    ]
    for argv in cases:
        code, _, err = cli(*argv)
        assert code == 2, f"{argv} exits 2, got {code}: {err}"
        assert err.startswith("error: ") and err.count("\n") == 1, f"{argv}: one line: {err!r}"


def test_conflicting_publish_exits_2(cli, make_package) -> None:
    assert cli("publish", str(make_package("v1", payload="a")))[0] == 0, "first publish"
    code, _, err = cli("publish", str(make_package("v1", payload="b")))
    assert code == 2 and "immutable" in err, f"conflict explained: {err}"


def test_corruption_exits_1_with_one_line(
    cli, make_package, s3_client: Any, bucket: str, tmp_path
) -> None:
    cli("publish", str(make_package("v1")), "--json")
    _, out, _ = cli("show", "v1", "--json")
    blob = Layout.under("registry/").blob(json.loads(out)["files"][0]["sha256"])
    s3_client.put_object(Bucket=bucket, Key=blob, Body=b"bit rot")
    code, _, err = cli("pull", "v1", "--dest", str(tmp_path / "m"))
    assert code == ExitCode.UNEXPECTED, f"corruption is not the user's mistake: {code} {err}"
    assert "corrupted" in err and err.count("\n") == 1, f"one line naming the problem: {err!r}"
    assert "Traceback" not in err, "an expected failure, explained, not a crash dump"


@pytest.mark.parametrize(
    "failure",
    [
        ConcurrentUpdateError("prod/champion kept changing; gave up"),
        UnavailableError("S3 request failed: SlowDown"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
    ],
    ids=["kept-changing", "s3-5xx", "unreachable"],
)
def test_unavailable_registry_exits_1_with_one_line(
    cli, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(ModelRegistry, "promote", unavailable)
    code, _, err = cli("promote", "v1", "--env", "prod")
    assert code == ExitCode.UNEXPECTED, f"worth a retry, not a user mistake: {code} {err}"
    assert err.startswith("error: registry unavailable: "), f"says what happened: {err!r}"
    assert err.count("\n") == 1, f"one line: {err!r}"


def test_missing_bucket_setting_exits_2(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPROVALS_REGISTRY_BUCKET")
    code, _, err = cli("list")
    assert code == 2 and "APPROVALS_REGISTRY_BUCKET" in err, f"says how to fix it: {err}"
    code, _, err = cli("list", "--bucket", "Bad_Bucket")
    assert code == 2 and "bucket" in err, f"bad bucket name refused: {err}"


def test_console_script_runs_as_a_process(s3_endpoint: str, bucket: str) -> None:
    script = Path(sys.executable).with_name("approvals")
    assert script.exists(), f"the console script is installed beside python: {script}"
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": s3_endpoint, "APPROVALS_REGISTRY_BUCKET": bucket}
    done = subprocess.run(
        [str(script), "registry", "show", "nope"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.USER_ERROR, f"exit code 2 from a process: {done.stderr}"
    assert "Traceback" not in done.stderr, "no traceback for a user mistake"
    assert "not published" in done.stderr, f"the error names the problem: {done.stderr}"


def _objects(s3_client: Any, bucket: str) -> dict[str, str]:
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listed}


def test_publish_show_resolve_image_gate_and_run(
    cli, make_package, make_image, make_gate_report
) -> None:
    image, run = make_image(), "https://github.com/acme/approvals/actions/runs/42/attempts/2"
    report = make_gate_report()
    report_sha = hashlib.sha256(report.read_bytes()).hexdigest()
    argv = ["--image", image, "--gate-report", str(report), "--git-sha", "c" * 40]
    code, out, err = cli("publish", str(make_package("v1")), *argv, "--workflow-run-url", run)
    assert code == 0, f"publish with provenance succeeds: {err}"
    lines = out.splitlines()
    assert lines[0].startswith("published v1 sha256:"), f"first line as before: {out!r}"
    assert lines[1:] == [
        f"image      {image}",
        f"gate       passed: 2 checks against the champion [report sha256:{report_sha[:12]}]",
        f"run        {run}",
    ], f"image, gate verdict and run follow: {out!r}"
    code, out, _ = cli("show", "v1", "--json")
    record = json.loads(out)
    assert record["image"] == {
        "reference": image,
        "repository": image.split(":abc1234@")[0],
        "tag": "abc1234",
        "digest": "sha256:" + "a" * 64,
    }, f"image kept whole and apart: {record['image']}"
    assert record["gate_report"]["summary"]["passed"] is True, "gate verdict in the record"
    assert record["workflow_run"] == {
        "id": 42,
        "attempt": 2,
        "url": run,
        "repository": "acme/approvals",
    }, f"run recorded: {record['workflow_run']}"
    code, out, _ = cli("show", "v1")
    assert code == 0 and f"image      {image}" in out.splitlines(), f"text shows the image: {out}"
    assert "git_sha    " + "c" * 40 in out.splitlines(), f"text shows the git SHA: {out}"
    assert cli("promote", "v1", "--env", "prod")[0] == 0, "promote"
    code, out, _ = cli("resolve", "--env", "prod", "--field", "image")
    assert (code, out) == (0, image + "\n"), "resolve prints the image reference for Pulumi"
    code, out, _ = cli("resolve", "--env", "prod", "--field", "git_sha")
    assert (code, out.strip()) == (0, "c" * 40), "--field git_sha still works"


def test_publish_inside_github_actions(
    cli, make_package, make_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    for name, value in ACTIONS_RUN.items():
        monkeypatch.setenv(name, value)
    code, _, err = cli("publish", str(make_package("v1")))
    assert code == 2 and "needs --image" in err, f"CI never publishes without its image: {err}"
    assert err.count("\n") == 1, f"one line: {err!r}"
    code, out, err = cli("publish", str(make_package("v1")), "--image", make_image(), "--json")
    assert code == 0, f"with --image it publishes: {err}"
    assert json.loads(out)["workflow_run"] == {
        "id": 777,
        "attempt": 1,
        "url": "https://github.com/acme/approvals/actions/runs/777/attempts/1",
        "repository": "acme/approvals",
    }, "the run comes from GitHub Actions' variables"


def test_image_mismatch_exits_2_naming_both(
    cli, make_package, make_image, s3_client: Any, bucket: str
) -> None:
    first, other = make_image(fill="a"), make_image(fill="b")
    assert cli("publish", str(make_package("v1")), "--image", first)[0] == 0, "first publish"
    code, out, _ = cli("publish", str(make_package("v1")), "--image", first)
    assert (code, out.split()[:2]) == (0, ["already", "published"]), "the same image: no-op"
    before = _objects(s3_client, bucket)
    code, _, err = cli("publish", str(make_package("v1")), "--image", other)
    assert code == 2, f"another image for the same bytes is refused: {code} {err}"
    assert first in err and other in err, f"the message names both images: {err}"
    assert err.startswith("error: ") and err.count("\n") == 1, f"one line: {err!r}"
    assert _objects(s3_client, bucket) == before, "nothing written"


def test_version_without_image_cannot_gain_one_and_has_none_to_resolve(
    cli, make_package, make_image
) -> None:
    assert cli("publish", str(make_package("v1")))[0] == 0, "a local publish, no image"
    code, _, err = cli("publish", str(make_package("v1")), "--image", make_image())
    assert code == 2 and "publish a new version" in err, f"says what to do: {err}"
    assert err.count("\n") == 1, f"one line: {err!r}"
    assert cli("promote", "v1", "--env", "dev")[0] == 0, "promote"
    code, _, err = cli("resolve", "--env", "dev", "--field", "image")
    assert code == 2 and "without an image" in err, f"no empty image for Pulumi: {err}"
    code, out, _ = cli("resolve", "--env", "dev", "--field", "image", "--allow-missing")
    assert (code, out.strip()) == (0, ""), "--allow-missing prints nothing instead"


def test_rollback_dry_run_names_the_target_and_writes_nothing(
    cli, make_package, make_image, s3_client: Any, bucket: str
) -> None:
    for n in (1, 2):
        package = str(make_package(f"v{n}", payload=str(n)))
        image = make_image(f"v{n}", fill=str(n))
        assert cli("publish", package, "--image", image, "--git-sha", f"{n}" * 40)[0] == 0
        assert cli("promote", f"v{n}", "--env", "prod")[0] == 0, f"promote v{n}"
    before = _objects(s3_client, bucket)
    code, out, err = cli("rollback", "--env", "prod", "--dry-run", "--json", "--reason", "p99")
    assert code == 0, f"dry run succeeds: {err}"
    plan = json.loads(out)
    assert (plan["dry_run"], plan["current_version"], plan["version"]) == (True, "v2", "v1"), plan
    assert plan["changes"] is True, "the alias would move"
    assert plan["image"]["reference"] == make_image("v1", fill="1"), "the image to deploy"
    assert plan["git_sha"] == "1" * 40, "the target's record, as show --json prints it"
    assert plan["image"]["digest"] == "sha256:" + "1" * 64, "digest apart, for a deploy by digest"
    code, out, _ = cli("rollback", "--env", "prod", "--dry-run")
    assert out.splitlines()[0] == (
        "prod/champion: a rollback would move v2 -> v1 (dry run, nothing written)"
    ), f"text says what would happen: {out!r}"
    image = plan["image"]["reference"]
    assert f"image      {image}" in out.splitlines(), f"text names the image: {out}"
    assert _objects(s3_client, bucket) == before, "--dry-run wrote nothing"
    _, out, _ = cli("resolve", "--env", "prod")
    assert out.strip() == "v2", "the alias has not moved"
    code, out, _ = cli("rollback", "--env", "prod", "--to", plan["version"], "--json")
    assert code == 0 and json.loads(out)["version"] == plan["version"], "same target for real"
    assert json.loads(out)["image"]["reference"] == image, "the alias entry logs the image"
    _, out, _ = cli("resolve", "--env", "prod", "--field", "image")
    assert out.strip() == image, "resolve now hands out the rolled-back image"
