"""Artifact store: one S3 bucket (models/, data/, registry/, decisions/), locked down and
KMS-encrypted."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.iam_docs import deny_insecure_transport

MODELS_PREFIX = "models/"
DATA_PREFIX = "data/"
REGISTRY_PREFIX = "registry/"
DECISIONS_PREFIX = "decisions/"  # the decision log (approvals.experiments.sink)


def artifact_bucket_name(environment: str, account_id: str, region: str) -> str:
    """The artifact bucket's name, derived from plain values so that the application program
    can read the registry with invokes before any of its resources exist."""
    return f"approvals-{environment}-artifacts-{account_id}-{region}"


@dataclass(frozen=True)
class ArtifactStoreArgs:
    """Inputs of :class:`ArtifactStore`."""

    bucket_name: str
    noncurrent_version_days: int
    kms_deletion_window_days: int
    force_destroy: bool


class ArtifactStore(pulumi.ComponentResource):
    """Versioned bucket with SSE-KMS (customer key, rotation on), no public access, TLS only."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:ArtifactStore", name, None, opts)
        self._base, self._cfg = name, args
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            f"{name}-key",
            description="approvals artifact store (model packages, data, registry)",
            enable_key_rotation=True,
            deletion_window_in_days=args.kms_deletion_window_days,
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-key",
            name_prefix="alias/approvals-artifacts-",
            target_key_id=self.key.key_id,
            opts=child,
        )
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=args.bucket_name,
            force_destroy=args.force_destroy,
            opts=child,
        )
        self._lock_down()
        self._lifecycle()
        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.key_arn = self.key.arn
        self.register_outputs(
            {"bucketName": self.bucket_name, "bucketArn": self.bucket_arn, "keyArn": self.key_arn}
        )

    def _lock_down(self) -> None:
        child = pulumi.ResourceOptions(parent=self)
        bucket = self.bucket.id
        block = aws.s3.BucketPublicAccessBlock(
            f"{self._base}-public-access",
            bucket=bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{self._base}-ownership",
            bucket=bucket,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{self._base}-versioning",
            bucket=bucket,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{self._base}-encryption",
            bucket=bucket,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{self._base}-tls-only",
            bucket=bucket,
            policy=self.bucket.arn.apply(lambda arn: json.dumps(deny_insecure_transport(arn))),
            # S3 rejects policy writes racing the public access block; order them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
        )

    def _lifecycle(self) -> None:
        aws.s3.BucketLifecycleConfiguration(
            f"{self._base}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-old-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": self._cfg.noncurrent_version_days
                    },
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                },
                {
                    "id": "drop-delete-markers",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"expired_object_delete_marker": True},
                },
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
