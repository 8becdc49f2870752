"""`approvals registry ...`: exit codes and one-line errors, through the real entry point."""

from __future__ import annotations

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


@pytest.fixture
def cli(s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys):
    """Run the console entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("APPROVALS_REGISTRY_BUCKET", bucket)
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)

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
    _, out, _ = cli("show", "v1")
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
