"""Create, once per AWS account and region, what every Pulumi stack of approvals relies on.

- a KMS key (rotation on) under ``alias/approvals-pulumi``: the ``awskms://`` secrets provider
  of every stack file, so secret outputs (the kubeconfig, the Redis token) are encrypted with a
  key whose use IAM controls and CloudTrail records;
- an S3 bucket for Pulumi's state (``pulumi login s3://...``): versioned (every checkpoint can
  be restored), encrypted with that key, no public access, TLS only, old versions expiring.

Idempotent: what exists is kept (and brought up to these settings); run it again at any time.
Prints the values the stack files and the repository settings need.

Usage: ``python -m infra.bootstrap --region us-east-1`` (``make bootstrap AWS_REGION=...``)
with administrator credentials for the account.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from infra.components.iam_docs import deny_insecure_transport

KEY_ALIAS = "alias/approvals-pulumi"
STATE_VERSIONS_DAYS = 365  # how long superseded state checkpoints are kept


@dataclass(frozen=True)
class Bootstrapped:
    """What the account now has."""

    account: str
    region: str
    bucket: str
    key_arn: str
    alias: str

    @property
    def backend_url(self) -> str:
        """``PULUMI_BACKEND_URL`` / ``pulumi login`` argument."""
        return f"s3://{self.bucket}?region={self.region}&awssdk=v2"

    @property
    def secrets_provider(self) -> str:
        """``secretsprovider`` of every stack file."""
        return f"awskms://{self.alias}?region={self.region}"


def state_bucket_name(account: str, region: str) -> str:
    """The default state bucket name (unique per account and region)."""
    return f"approvals-pulumi-state-{account}-{region}"


def ensure_key(kms: Any, alias: str, say: Any) -> str:
    """The ARN of the key behind ``alias``, created (rotation on) when absent."""
    try:
        found = kms.describe_key(KeyId=alias)["KeyMetadata"]
        say(f"key {alias}: exists ({found['Arn']})")
    except kms.exceptions.NotFoundException:
        found = kms.create_key(
            Description="approvals: Pulumi secrets of every stack (awskms:// provider)",
            KeyUsage="ENCRYPT_DECRYPT",
            Tags=[{"TagKey": "project", "TagValue": "approvals"}],
        )["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=found["KeyId"])
        say(f"key {alias}: created ({found['Arn']})")
    if not kms.get_key_rotation_status(KeyId=found["KeyId"])["KeyRotationEnabled"]:
        kms.enable_key_rotation(KeyId=found["KeyId"])
        say(f"key {alias}: rotation turned on")
    return str(found["Arn"])


def ensure_bucket(s3: Any, bucket: str, region: str, key_arn: str, say: Any) -> None:
    """The state bucket with versioning, SSE-KMS, no public access, TLS only, expiry."""
    try:
        s3.head_bucket(Bucket=bucket)
        say(f"bucket {bucket}: exists")
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
        create: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**create)
        say(f"bucket {bucket}: created")
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps(deny_insecure_transport(f"arn:aws:s3:::{bucket}"))
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire-old-checkpoints",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": STATE_VERSIONS_DAYS},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }
            ]
        },
    )
    say(f"bucket {bucket}: versioned, SSE-KMS, public access blocked, TLS only")


_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_name(value: str) -> str:
    """An S3 bucket name (argparse type): lower case, digits, dots, hyphens, 3 to 63 long."""
    if not _BUCKET.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid S3 bucket name")
    return value


def bootstrap(
    region: str, bucket: str | None = None, alias: str = KEY_ALIAS, say: Any = print
) -> Bootstrapped:
    """Make sure the key and the bucket exist with their settings; returns what there is."""
    import boto3

    session = boto3.session.Session(region_name=region)
    account = session.client("sts").get_caller_identity()["Account"]
    say(f"account {account}, region {region}")
    key_arn = ensure_key(session.client("kms"), alias, say)
    name = bucket or state_bucket_name(account, region)
    ensure_bucket(session.client("s3"), name, region, key_arn, say)
    return Bootstrapped(account, region, name, key_arn, alias)


def summary(done: Bootstrapped) -> str:
    """What to put where, as the user will copy it."""
    return "\n".join(
        [
            "",
            "Set in every environments/platform/Pulumi.<env>.yaml:",
            "  approvals:state:",
            f"    bucket: {done.bucket}",
            f"    keyArn: {done.key_arn}",
            f"Every stack file's secrets provider: {done.secrets_provider}",
            f"Repository variable PULUMI_BACKEND_URL: {done.backend_url}",
            "Then, once per stack (in infra/platform, then infra/application):",
            f"  pulumi login '{done.backend_url}'",
            f"  pulumi stack init <env> --secrets-provider '{done.secrets_provider}'",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when done, 2 on a refused AWS call (named), 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", required=True, help="AWS region of the state and key")
    parser.add_argument(
        "--bucket", type=bucket_name, help="state bucket name (default: per account and region)"
    )
    parser.add_argument("--alias", default=KEY_ALIAS, help="KMS alias of the secrets key")
    args = parser.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        done = bootstrap(args.region, args.bucket, args.alias)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        operation = exc.operation_name
        print(f"error: {operation}: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(summary(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
