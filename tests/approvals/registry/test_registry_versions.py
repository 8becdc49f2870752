"""Publishing, listing, showing and pulling versions against moto's real S3 endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from approvals.errors import PackageError
from approvals.registry import (
    GateReportError,
    IntegrityError,
    InvalidNameError,
    ModelRegistry,
    NotFoundError,
    VersionConflictError,
)
from approvals.registry.files import content_hash, scan_package
from approvals.registry.layout import Layout
from approvals.registry.provenance import parse_run_url
from tests.approvals.conftest import ECR_REPOSITORY

pytestmark = pytest.mark.servers


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_publish_list_show_pull_round_trip(registry: ModelRegistry, make_package, tmp_path):
    package = make_package("v1")
    result = registry.publish(package, git_sha="a" * 40, published_by="ci")
    assert result.created, "the first publish creates the version"
    record = registry.show("v1")
    assert record.content_hash == content_hash(scan_package(package)), "hash covers every file"
    assert record.metrics == {"log_loss": 0.41, "ece": 0.004}, "metrics come from the manifest"
    assert record.git_sha == "a" * 40, "git SHA is recorded"
    assert record.training_data_fingerprint == "sha256:" + "ab" * 32, "data fingerprint kept"
    assert [r.version for r in registry.list_versions()] == ["v1"], "list shows the version"
    pulled = registry.pull("v1", tmp_path / "pulled")
    assert pulled == record, "pull returns the record it verified"
    assert _files(tmp_path / "pulled") == _files(package), "pulled files equal published ones"


def test_republishing_same_bytes_is_a_no_op(registry: ModelRegistry, make_package) -> None:
    first = registry.publish(make_package("v1"))
    again = registry.publish(make_package("v1"))
    assert not again.created, "a retry of the same package writes nothing"
    assert again.record == first.record, "the stored record is unchanged"


def test_version_is_immutable(registry: ModelRegistry, make_package) -> None:
    registry.publish(make_package("v1", payload="one"))
    with pytest.raises(VersionConflictError, match="immutable"):
        registry.publish(make_package("v1", payload="two"))
    assert registry.show("v1").metrics["log_loss"] == 0.41, "original record still there"


def test_manifest_keys_are_optional(registry: ModelRegistry, make_package, tmp_path) -> None:
    package = make_package("v1")
    (package / "manifest.json").write_text(json.dumps({"metrics": "not-a-dict"}))
    record = registry.publish(package, version="v1-bare").record
    assert record.metrics == {}, "a malformed metrics field is ignored, not fatal"
    assert record.model_version is None, "missing model_version is tolerated with --version"
    with pytest.raises(PackageError, match="no model_version"):
        registry.publish(package)


def test_bad_packages_are_refused(registry: ModelRegistry, make_package, tmp_path) -> None:
    with pytest.raises(PackageError, match="not a directory"):
        registry.publish(tmp_path / "absent")
    package = make_package("v1")
    (package / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        registry.publish(package)
    linked = make_package("v2")
    (linked / "link").symlink_to(linked / "booster.txt")
    with pytest.raises(PackageError, match="symlink"):
        registry.publish(linked)
    with pytest.raises(PackageError, match="differs from manifest"):
        registry.publish(make_package("v3"), version="v4")
    assert registry.list_versions() == [], "nothing was published by bad packages"


def test_unknown_version_is_not_found(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not published"):
        registry.pull("v9", tmp_path / "x")
    assert not (tmp_path / "x").exists(), "a failed pull creates no directory"


def test_interrupted_upload_stays_invisible(
    registry: ModelRegistry, make_package, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    registry.publish(make_package("v1"))
    registry.promote("prod", "champion", "v1")
    crashing = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    calls = {"n": 0}

    def die_after_two_puts(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise ConnectionError("runner killed mid-upload")

    crashing.meta.events.register("before-call.s3.PutObject", die_after_two_puts)
    with pytest.raises(ConnectionError):
        ModelRegistry(crashing, bucket).publish(make_package("v2", payload="new"))
    assert calls["n"] == 3, "the crash happened in the middle of the upload"
    with pytest.raises(NotFoundError):
        registry.show("v2")
    assert [r.version for r in registry.list_versions()] == ["v1"], "v2 is not listed"
    assert registry.resolve("prod", "champion").version == "v1", "champion untouched"
    registry.pull("v1", tmp_path / "champion")
    assert (tmp_path / "champion" / "manifest.json").exists(), "champion still pulls"
    assert registry.publish(make_package("v2", payload="new")).created, "a retry completes it"


def test_corrupted_object_is_refused_and_local_copy_kept(
    registry: ModelRegistry, make_package, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    package = make_package("v1")
    record = registry.publish(package).record
    dest = tmp_path / "model"
    registry.pull("v1", dest)
    before = _files(dest)
    booster = next(e for e in record.files if e.path == "booster.txt")
    key = Layout.under("registry/").blob(booster.sha256)
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"tree\nflipped\n")
    with pytest.raises(IntegrityError, match=r"booster\.txt is corrupted"):
        registry.pull("v1", dest)
    assert _files(dest) == before, "the previous local copy is intact"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"no staging directories are left behind: {leftovers}"


def test_tampered_record_cannot_escape_dest(
    registry: ModelRegistry, make_package, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    registry.publish(make_package("v1"))
    key = Layout.under("registry/").version("v1")
    doc = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    doc["files"][0]["path"] = "../../escaped.txt"
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
    with pytest.raises(InvalidNameError, match="unsafe file path"):
        registry.pull("v1", tmp_path / "a" / "b")
    assert not (tmp_path / "escaped.txt").exists(), "nothing written outside the destination"


def test_unparseable_record_is_an_integrity_error(
    registry: ModelRegistry, s3_client: Any, bucket: str
) -> None:
    key = Layout.under("registry/").version("v1")
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"{}")
    with pytest.raises(IntegrityError, match="corrupt registry object"):
        registry.show("v1")


def test_missing_bucket_is_reported(s3_client: Any) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        ModelRegistry(s3_client, "no-such-bucket-here").list_versions()


def _objects(s3_client: Any, bucket: str) -> dict[str, str]:
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listed}


def test_publish_records_image_gate_report_and_run(
    registry: ModelRegistry, make_package, make_image, make_gate_report, s3_client, bucket
) -> None:
    image, report = make_image(), make_gate_report()
    run = parse_run_url("https://github.com/acme/approvals/actions/runs/42/attempts/2")
    registry.publish(make_package("v1"), image=image, gate_report=report, workflow_run=run)
    record = registry.show("v1")
    assert record.image is not None and record.image.reference == image, "full reference kept"
    assert (record.image.repository, record.image.tag) == (ECR_REPOSITORY, "abc1234"), "parts"
    assert record.image.digest == "sha256:" + "a" * 64, "digest kept apart"
    assert record.gate_report is not None, "gate report recorded"
    assert record.gate_report.summary.passed, "its verdict is summarized"
    assert record.gate_report.summary.failures == (), "no failed checks in a passing report"
    assert record.workflow_run == run, "the publishing run is recorded"
    key = Layout.under("registry/").blob(record.gate_report.sha256)
    stored = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == report.read_bytes(), "the report is a content-addressed blob, byte for byte"
    assert record.gate_report.size == len(stored), "its size is recorded"


def test_republishing_with_the_same_image_is_a_no_op(
    registry: ModelRegistry, make_package, make_image, make_gate_report
) -> None:
    first = registry.publish(make_package("v1"), image=make_image(), gate_report=make_gate_report())
    again = registry.publish(make_package("v1"), image=make_image())
    assert not again.created, "a retry with the same image writes nothing"
    assert again.record == first.record, "the first record, gate report included, is kept"
    local = registry.publish(make_package("v1"))
    assert local.record == first.record, "a publish without --image finds the imaged record"


def test_another_image_for_a_published_version_is_refused(
    registry: ModelRegistry, make_package, make_image, s3_client, bucket
) -> None:
    registry.publish(make_package("v1"), image=make_image(fill="a"))
    before = _objects(s3_client, bucket)
    other = make_image(fill="b")
    with pytest.raises(VersionConflictError) as refused:
        registry.publish(make_package("v1"), image=other)
    message = str(refused.value)
    assert make_image(fill="a") in message and other in message, f"names both: {message}"
    assert "\n" not in message, "one line"
    assert _objects(s3_client, bucket) == before, "nothing written"
    assert registry.show("v1").image.reference == make_image(fill="a"), "original image kept"


def test_version_published_without_image_cannot_gain_one(
    registry: ModelRegistry, make_package, make_image
) -> None:
    registry.publish(make_package("v1"))
    with pytest.raises(VersionConflictError, match=r"without an image.*publish a new version"):
        registry.publish(make_package("v1"), image=make_image())
    assert registry.show("v1").image is None, "the record is never replaced"


def test_records_written_before_the_new_fields_still_load(
    registry: ModelRegistry, make_package, s3_client, bucket
) -> None:
    registry.publish(make_package("v1"))
    key = Layout.under("registry/").version("v1")
    doc = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    old = {k: v for k, v in doc.items() if k not in {"image", "gate_report", "workflow_run"}}
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(old).encode())
    record = registry.show("v1")
    assert (record.image, record.gate_report, record.workflow_run) == (None, None, None), "absent"
    registry.promote("prod", "champion", "v1")
    assert registry.resolve("prod", "champion").image is None, "an old record promotes"


def test_bad_image_or_gate_report_writes_nothing(
    registry: ModelRegistry, make_package, tmp_path: Path, s3_client, bucket
) -> None:
    with pytest.raises(InvalidNameError, match="bad image reference"):
        registry.publish(make_package("v1"), image="approvals:latest")
    bad = tmp_path / "gate.json"
    bad.write_text('{"checks": []}')
    with pytest.raises(GateReportError, match="no verdict"):
        registry.publish(make_package("v1"), gate_report=bad)
    assert _objects(s3_client, bucket) == {}, "refused before any upload"


def test_records_and_aliases_are_stored_as_json(
    registry: ModelRegistry, make_package, s3_client: Any, bucket: str
) -> None:
    # The Pulumi application program reads the champion and its record with aws.s3.getObject,
    # which returns a body only for text content types.
    registry.publish(make_package("v1"))
    registry.promote("dev", "champion", "v1")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    documents = [k for k in keys if k.endswith(".json")]
    assert any("/versions/" in k for k in documents) and any("/aliases/" in k for k in documents)
    for key in documents:
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "application/json", key
    blobs = [k for k in keys if "/blobs/" in k]
    assert blobs and all(
        s3_client.head_object(Bucket=bucket, Key=k)["ContentType"] != "application/json"
        for k in blobs
    ), "package files keep the default type"
