"""Image references, gate report summaries and workflow runs: checked before any request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from approvals.evaluation.gate import GateCheck, GateReport
from approvals.registry import GateReportError, ImageRef, InvalidNameError, workflow_run
from approvals.registry.provenance import gate_summary, read_gate_report

DIGEST = "sha256:" + "0123456789abcdef" * 4
ACTIONS_ENV = {
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/approvals",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
}


@pytest.mark.parametrize(
    ("reference", "repository", "tag"),
    [
        (
            f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/approvals-prod:3f2a1b9c@{DIGEST}",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/approvals-prod",
            "3f2a1b9c",
        ),
        (
            f"localhost:5000/team/approvals:v1.2_rc-1@{DIGEST}",
            "localhost:5000/team/approvals",
            "v1.2_rc-1",
        ),
        (f"approvals:latest@{DIGEST}", "approvals", "latest"),
    ],
)
def test_image_reference_is_kept_whole_and_in_parts(
    reference: str, repository: str, tag: str
) -> None:
    image = ImageRef.parse(reference)
    assert image.reference == reference, "the full reference is kept as given"
    assert (image.repository, image.tag, image.digest) == (repository, tag, DIGEST), "parts apart"


@pytest.mark.parametrize(
    "reference",
    [
        "approvals:abc1234",  # no digest: could point at other bytes tomorrow
        f"approvals@{DIGEST}",  # no tag
        f"Approvals:abc1234@{DIGEST}",  # upper-case repository
        "approvals:abc1234@sha256:" + "a" * 63,
        "approvals:abc1234@sha256:" + "A" * 64,
        "approvals:abc1234@sha512:" + "a" * 128,
        f":abc1234@{DIGEST}",
        f"approvals:-bad@{DIGEST}",
        f"approvals:{'t' * 129}@{DIGEST}",
        f"approvals:abc1234@{DIGEST} ",
        f"approvals:abc 1234@{DIGEST}",
        "",
    ],
)
def test_bad_image_references_are_refused(reference: str) -> None:
    with pytest.raises(InvalidNameError, match="bad image reference"):
        ImageRef.parse(reference)


def test_record_whose_image_parts_disagree_does_not_load() -> None:
    good = ImageRef.parse(f"approvals:abc1234@{DIGEST}").model_dump()
    with pytest.raises(ValidationError, match="does not match"):
        ImageRef.model_validate({**good, "tag": "other"})


def _report(*passed: bool, champion: bool = True) -> bytes:
    checks = tuple(GateCheck(f"check {i}", 1.0, None, 2.0, "<=", ok) for i, ok in enumerate(passed))
    return json.dumps(GateReport(checks, has_champion=champion).to_dict()).encode()


def test_gate_summary_reads_the_gates_own_report() -> None:
    passed = gate_summary(_report(True, True), "gate.json")
    assert (passed.passed, passed.checks, passed.failures) == (True, 2, ()), f"{passed}"
    assert passed.has_champion is True, "whether a champion was compared is kept"
    failed = gate_summary(_report(True, False, False, champion=False), "gate.json")
    assert (failed.passed, failed.checks) == (False, 3), f"verdict and count: {failed}"
    assert failed.failures == ("check 1", "check 2"), "the failed checks are named"
    assert failed.has_champion is False, "absolute-threshold gate recorded as such"


def test_gate_report_file_is_hashed_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "gate.json"
    path.write_bytes(_report(True))
    report = read_gate_report(path)
    assert report.body == path.read_bytes(), "the bytes stored are the file's"
    assert report.ref.size == len(report.body), "size recorded"
    assert report.ref.summary.passed, "summary read from the file"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "no verdict"),
        (b'{"checks": []}', "no verdict"),
        (b'{"passed": "yes"}', "no verdict"),
        (b'{"passed": true, "checks": [{"name": "ece", "passed": false}]}', "check\\(s\\) failed"),
    ],
)
def test_gate_reports_without_a_sound_verdict_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(GateReportError, match=problem):
        gate_summary(body, "gate.json")


def test_missing_gate_report_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GateReportError, match="cannot read"):
        read_gate_report(tmp_path / "absent.json")


def test_run_comes_from_its_url_first() -> None:
    url = "https://github.com/acme/approvals/actions/runs/42/attempts/3"
    run = workflow_run(url, ACTIONS_ENV)
    assert run is not None, "a URL always names a run"
    assert (run.id, run.attempt, run.repository) == (42, 3, "acme/approvals"), "URL wins over env"
    assert run.url == url, "the URL is kept"
    bare = workflow_run("https://ghe.example.com:8443/acme/approvals/actions/runs/42/", {})
    assert bare is not None and bare.attempt is None, "an attempt-less URL has no attempt"
    assert bare.url == "https://ghe.example.com:8443/acme/approvals/actions/runs/42", "canonical"


def test_run_comes_from_github_actions_variables() -> None:
    run = workflow_run(None, ACTIONS_ENV)
    assert run is not None, "inside Actions the run is known"
    assert (run.id, run.attempt, run.repository) == (9876543210, 2, "acme/approvals"), f"{run}"
    assert run.url == "https://github.com/acme/approvals/actions/runs/9876543210/attempts/2"
    partial = {k: v for k, v in ACTIONS_ENV.items() if k != "GITHUB_REPOSITORY"}
    assert workflow_run(None, partial) is None, "without every variable there is no run"
    assert workflow_run(None, {}) is None, "a local shell publishes without a run"


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/approvals/pull/7",
        "https://github.com/acme/approvals/actions/runs/abc",
        "https://github.com/acme/approvals/actions/runs/0",
        "github.com/acme/approvals/actions/runs/42",
        "https://github.com/acme/actions/runs/42",
    ],
)
def test_bad_run_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidNameError, match="bad workflow run URL"):
        workflow_run(url, {})
