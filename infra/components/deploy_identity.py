"""Deploy identity: the GitHub Actions OIDC provider and this environment's deploy role.

The role runs the *application* stack and nothing more: push the image, publish and promote in
the registry, read and write that stack's Pulumi state (and read the platform stack's, for its
StackReference), use the state key for secrets, and edit the service's namespace in EKS. It
cannot change the platform: no IAM, VPC, EKS, ElastiCache or bucket settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.artifact_store import MODELS_PREFIX, REGISTRY_PREFIX
from infra.components.iam_docs import document, statement, web_identity_trust

GITHUB_ISSUER = "token.actions.githubusercontent.com"
PLATFORM_PROJECT = "approvals-platform"
APPLICATION_PROJECT = "approvals-application"
_EDIT_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
_ECR_PUSH = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:DescribeImageScanFindings",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)


@dataclass(frozen=True)
class DeployIdentityArgs:
    """Inputs of :class:`DeployIdentity`."""

    repository: str
    environment: str
    existing_provider_arn: str | None
    ecr_repository_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    artifact_key_arn: pulumi.Input[str]
    namespace: str
    state_bucket: str
    state_key_arn: str


def state_statements(bucket: str, key_arn: str, environment: str) -> list[dict[str, Any]]:
    """Pulumi DIY-backend access for the application stack of one environment.

    The S3 backend keeps each stack under ``.pulumi/{stacks,history,backups}/<project>/<stack>``
    and its locks under ``.pulumi/locks/organization/<project>/<stack>/`` (pulumi/pulumi,
    pkg/backend/diy: store.go, lock.go). The application stack is read and written; the
    platform stack of the same environment is only read (its outputs, through a
    StackReference); ``.pulumi/meta.yaml`` says which layout the bucket uses.
    """
    arn = f"arn:aws:s3:::{bucket}"
    app, platform = APPLICATION_PROJECT, PLATFORM_PROJECT
    own = [
        f"{arn}/.pulumi/stacks/{app}/{environment}.json*",
        f"{arn}/.pulumi/history/{app}/{environment}/*",
        f"{arn}/.pulumi/backups/{app}/{environment}/*",
        f"{arn}/.pulumi/locks/organization/{app}/{environment}/*",
    ]
    read = [f"{arn}/.pulumi/meta.yaml", f"{arn}/.pulumi/stacks/{platform}/{environment}.json*"]
    return [
        statement(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], own),
        statement(["s3:GetObject"], read),
        statement(["s3:ListBucket"], [arn], Condition={"StringLike": {"s3:prefix": [".pulumi/*"]}}),
        # Secrets of both stacks are encrypted with the state key (awskms:// provider).
        statement(["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], [key_arn]),
    ]


def github_subject(repository: str, environment: str) -> str:
    """The only ``sub`` claim the deploy role accepts: one repository, one GitHub environment.

    Args:
        repository: ``owner/name``.
        environment: GitHub environment (same name as the stack's environment).

    Returns:
        The subject string.
    """
    return f"repo:{repository}:environment:{environment}"


def deploy_policy(
    ecr: str, cluster: str, bucket: str, key: str, state: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a release needs: push the image, publish model packages and aliases, reach EKS,
    run the application stack.

    Args:
        ecr: ECR repository ARN.
        cluster: EKS cluster ARN.
        bucket: Artifact bucket ARN.
        key: KMS key ARN of the bucket.
        state: :func:`state_statements` of the environment.

    Returns:
        The IAM policy document.
    """
    prefixes = [MODELS_PREFIX, REGISTRY_PREFIX]
    return document(
        # GetAuthorizationToken has no resource-level permissions; AWS requires "*".
        statement(["ecr:GetAuthorizationToken"], ["*"]),
        statement(list(_ECR_PUSH), [ecr]),
        statement(["eks:DescribeCluster"], [cluster]),
        statement(
            ["s3:GetObject", "s3:PutObject", "s3:GetObjectVersion"],
            [f"{bucket}/{p}*" for p in prefixes],
        ),
        statement(
            ["s3:ListBucket"],
            [bucket],
            Condition={"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        ),
        statement(["kms:Decrypt", "kms:GenerateDataKey"], [key]),
        *state,
    )


class DeployIdentity(pulumi.ComponentResource):
    """OIDC provider (unless the account has one), deploy role, EKS access for the namespace."""

    role_arn: pulumi.Output[str]
    provider_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: DeployIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:DeployIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.provider_arn = self._oidc_provider(name, args.existing_provider_arn)
        subject = github_subject(args.repository, args.environment)
        trust = self.provider_arn.apply(
            lambda arn: json.dumps(
                web_identity_trust(arn, GITHUB_ISSUER, subject, "sts.amazonaws.com")
            )
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=trust,
            description=f"GitHub Actions deploys of {args.repository} to {args.environment}",
            max_session_duration=3600,
            opts=child,
        )
        state = state_statements(args.state_bucket, args.state_key_arn, args.environment)
        policy = pulumi.Output.all(
            args.ecr_repository_arn, args.cluster_arn, args.bucket_arn, args.artifact_key_arn
        ).apply(lambda v: json.dumps(deploy_policy(v[0], v[1], v[2], v[3], state)))
        aws.iam.RolePolicy(f"{name}-role", role=role.id, policy=policy, opts=child)
        entry = aws.eks.AccessEntry(
            f"{name}-access", cluster_name=args.cluster_name, principal_arn=role.arn, opts=child
        )
        aws.eks.AccessPolicyAssociation(
            f"{name}-edit",
            cluster_name=args.cluster_name,
            principal_arn=role.arn,
            policy_arn=_EDIT_POLICY,
            access_scope={"type": "namespace", "namespaces": [args.namespace]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
        )
        self.role_arn = role.arn
        self.register_outputs({"roleArn": self.role_arn, "providerArn": self.provider_arn})

    def _oidc_provider(self, name: str, existing: str | None) -> pulumi.Output[str]:
        # IAM allows one provider per issuer URL and account: stacks sharing an account reuse it.
        if existing is not None:
            return pulumi.Output.from_input(existing)
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-github-oidc",
            url=f"https://{GITHUB_ISSUER}",
            client_id_lists=["sts.amazonaws.com"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return provider.arn
