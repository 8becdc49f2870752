"""Service identity: the IRSA role the inference pods assume (read models, registry, Redis secret).

It lives in the platform because it is IAM: the application stack, rolled by the release
pipeline, only annotates its service account with this role's ARN and cannot create roles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.artifact_store import MODELS_PREFIX, REGISTRY_PREFIX
from infra.components.iam_docs import document, statement, web_identity_trust

SERVICE_ACCOUNT = "approvals"  # the inference service's Kubernetes service account


@dataclass(frozen=True)
class ServiceIdentityArgs:
    """Inputs of :class:`ServiceIdentity`."""

    namespace: str
    region: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    artifact_key_arn: pulumi.Input[str]
    redis_secret_arn: pulumi.Input[str]
    redis_key_arn: pulumi.Input[str]


def read_policy(
    bucket_arn: str, artifact_key: str, secret_arn: str, secret_key: str, region: str
) -> dict[str, Any]:
    """Least privilege for the pod: read models and registry aliases, and the Redis secret.

    Args:
        bucket_arn: Artifact bucket ARN.
        artifact_key: KMS key ARN of the bucket.
        secret_arn: Secrets Manager ARN of the Redis secret.
        secret_key: KMS key ARN of that secret.
        region: AWS region (scopes key use to the S3 and Secrets Manager endpoints).

    Returns:
        The IAM policy document.
    """
    prefixes = [MODELS_PREFIX, REGISTRY_PREFIX]
    return document(
        statement(
            ["s3:GetObject", "s3:GetObjectVersion"], [f"{bucket_arn}/{p}*" for p in prefixes]
        ),
        statement(
            ["s3:ListBucket"],
            [bucket_arn],
            Condition={"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        ),
        statement(
            ["kms:Decrypt"],
            [artifact_key],
            Condition={"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        ),
        statement(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], [secret_arn]),
        statement(
            ["kms:Decrypt"],
            [secret_key],
            Condition={
                "StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}
            },
        ),
    )


def irsa_role(
    name: str, subject: str, oidc_provider_arn: pulumi.Input[str], oidc_issuer: pulumi.Input[str],
    policy: pulumi.Input[str], parent: pulumi.Resource,
) -> aws.iam.Role:  # fmt: skip
    """An IRSA role (``{name}-irsa``) that only the service account ``subject`` may assume,
    with ``policy`` as its one inline policy."""
    child = pulumi.ResourceOptions(parent=parent)
    trust = pulumi.Output.all(oidc_provider_arn, oidc_issuer).apply(
        lambda v: json.dumps(web_identity_trust(v[0], v[1], subject, "sts.amazonaws.com"))
    )
    role = aws.iam.Role(f"{name}-irsa", assume_role_policy=trust, opts=child)
    aws.iam.RolePolicy(f"{name}-irsa", role=role.id, policy=policy, opts=child)
    return role


class ServiceIdentity(pulumi.ComponentResource):
    """The IRSA role trusted by exactly the service's account in the service's namespace."""

    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ServiceIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:ServiceIdentity", name, None, opts)
        policy = pulumi.Output.all(
            args.bucket_arn, args.artifact_key_arn, args.redis_secret_arn, args.redis_key_arn
        ).apply(lambda v: json.dumps(read_policy(v[0], v[1], v[2], v[3], args.region)))
        subject = f"system:serviceaccount:{args.namespace}:{SERVICE_ACCOUNT}"
        self.role_arn = irsa_role(
            name, subject, args.oidc_provider_arn, args.oidc_issuer, policy, self
        ).arn
        self.register_outputs({"roleArn": self.role_arn})
