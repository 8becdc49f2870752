"""Sink identity: the IRSA role the decision sink's pods assume (write the decision log).

A role of its own, not the service's: the sink writes, the service only reads, and the sink
writes nowhere but ``decisions/``. It lives in the platform because it is IAM; the application
stack creates the service account (``approvals-sink``) and annotates it with this role's ARN.
The sink reads Redis through the Kubernetes Secret, so it needs no Secrets Manager rights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.artifact_store import DECISIONS_PREFIX
from infra.components.iam_docs import document, statement
from infra.components.service_identity import irsa_role

SINK_ACCOUNT = "approvals-sink"  # the decision sink's Kubernetes service account


@dataclass(frozen=True)
class SinkIdentityArgs:
    """Inputs of :class:`SinkIdentity`."""

    namespace: str
    region: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    artifact_key_arn: pulumi.Input[str]


def sink_policy(bucket_arn: str, artifact_key: str, region: str) -> dict[str, Any]:
    """Least privilege for the sink: put and read back objects under ``decisions/`` only.

    ``PutObject`` with ``If-None-Match: *`` (never replacing a file) needs nothing more; the
    bucket's SSE-KMS key must give a data key to write and decrypt to read, through S3 only.

    Args:
        bucket_arn: Artifact bucket ARN.
        artifact_key: KMS key ARN of the bucket.
        region: AWS region (scopes key use to the S3 endpoint).

    Returns:
        The IAM policy document.
    """
    return document(
        statement(["s3:PutObject", "s3:GetObject"], [f"{bucket_arn}/{DECISIONS_PREFIX}*"]),
        statement(
            ["s3:ListBucket"],
            [bucket_arn],
            Condition={"StringLike": {"s3:prefix": [f"{DECISIONS_PREFIX}*"]}},
        ),
        statement(
            ["kms:GenerateDataKey", "kms:Decrypt"],
            [artifact_key],
            Condition={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        ),
    )


class SinkIdentity(pulumi.ComponentResource):
    """The IRSA role trusted by exactly the sink's account in the service's namespace."""

    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: SinkIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:SinkIdentity", name, None, opts)
        policy = pulumi.Output.all(args.bucket_arn, args.artifact_key_arn).apply(
            lambda v: json.dumps(sink_policy(v[0], v[1], args.region))
        )
        subject = f"system:serviceaccount:{args.namespace}:{SINK_ACCOUNT}"
        self.role_arn = irsa_role(
            name, subject, args.oidc_provider_arn, args.oidc_issuer, policy, self
        ).arn
        self.register_outputs({"roleArn": self.role_arn})
