"""infra/bootstrap.py against moto's server: the state bucket and the secrets key, idempotently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest
from infra_testkit import ROOT

pytestmark = pytest.mark.servers


def _bootstrap(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    }  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "infra.bootstrap", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="eu-west-1")


def test_bootstrap_makes_a_locked_down_state_bucket_and_a_rotating_key(s3_endpoint: str) -> None:
    first = _bootstrap(s3_endpoint, "--region", "eu-west-1", "--alias", "alias/approvals-t1")
    assert first.returncode == 0, first.stderr
    bucket = "approvals-pulumi-state-123456789012-eu-west-1"
    s3, kms = _client(s3_endpoint, "s3"), _client(s3_endpoint, "kms")
    key = kms.describe_key(KeyId="alias/approvals-t1")["KeyMetadata"]
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"], "rotation on"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled", "checkpoints kept"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key["Arn"], "SSE-KMS"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()), "no public access"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert f"s3://{bucket}?region=eu-west-1&awssdk=v2" in first.stdout, "the backend URL"
    assert "awskms://alias/approvals-t1?region=eu-west-1" in first.stdout, "the secrets provider"
    assert f"keyArn: {key['Arn']}" in first.stdout, "the stack files' value"
    again = _bootstrap(s3_endpoint, "--region", "eu-west-1", "--alias", "alias/approvals-t1")
    assert again.returncode == 0, again.stderr
    assert f"({key['Arn']})" in again.stdout and "exists" in again.stdout, "kept, not remade"
    keys = [k for k in kms.list_aliases()["Aliases"] if k["AliasName"] == "alias/approvals-t1"]
    assert len(keys) == 1, "one key behind the alias"


def test_a_bad_bucket_name_is_refused_before_any_call(s3_endpoint: str) -> None:
    before = {b["Name"] for b in _client(s3_endpoint, "s3").list_buckets()["Buckets"]}
    done = _bootstrap(s3_endpoint, "--region", "eu-west-1", "--bucket", "Not_A_Bucket")
    assert done.returncode == 2, done.stdout
    assert "--bucket: 'Not_A_Bucket' is not a valid S3 bucket name" in done.stderr, done.stderr
    after = {b["Name"] for b in _client(s3_endpoint, "s3").list_buckets()["Buckets"]}
    assert after == before, "nothing was created"
