"""Inference service: IRSA role, namespace and the Kubernetes objects of the bento service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components import manifests
from infra.components.artifact_store import MODELS_PREFIX, REGISTRY_PREFIX
from infra.components.iam_docs import document, statement, web_identity_trust
from infra.components.manifests import ServiceSpec


@dataclass(frozen=True)
class InferenceServiceArgs:
    """Inputs of :class:`InferenceService`."""

    spec: ServiceSpec
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    artifact_key_arn: pulumi.Input[str]
    redis_url: pulumi.Input[str]
    redis_password: pulumi.Input[str]
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


class InferenceService(pulumi.ComponentResource):
    """Namespace, IRSA-bound service account, Secret, Deployment, Services, HPA, PDB, policy."""

    role_arn: pulumi.Output[str]
    hosts: pulumi.Output[dict[str, Any]]

    def __init__(
        self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:InferenceService", name, None, opts)
        self._base = name
        role, spec = self._role(args), args.spec
        namespace = self._k8s(k8s.core.v1.Namespace, "namespace", manifests.namespace(spec), [])
        in_ns = [namespace]
        self._k8s(
            k8s.core.v1.ServiceAccount, "sa", manifests.service_account(spec, role.arn), in_ns
        )
        secret = self._k8s(
            k8s.core.v1.Secret,
            "redis",
            manifests.redis_secret(spec, args.redis_url, args.redis_password),
            in_ns,
        )
        deploy = self._k8s(
            k8s.apps.v1.Deployment, "deployment", manifests.deployment(spec), [*in_ns, secret]
        )
        http = self._k8s(k8s.core.v1.Service, "http", manifests.service(spec, "http"), [deploy])
        grpc = self._k8s(k8s.core.v1.Service, "grpc", manifests.service(spec, "grpc"), [deploy])
        self._k8s(
            k8s.autoscaling.v2.HorizontalPodAutoscaler, "hpa", manifests.autoscaler(spec), [deploy]
        )
        self._k8s(
            k8s.policy.v1.PodDisruptionBudget, "pdb", manifests.disruption_budget(spec), in_ns
        )
        self._k8s(k8s.networking.v1.NetworkPolicy, "netpol", manifests.network_policy(spec), in_ns)
        self.role_arn = role.arn
        dns = f"{spec.namespace}.svc.cluster.local"
        self.hosts = pulumi.Output.from_input(
            {
                "http": f"{spec.name}-http.{dns}:{manifests.HTTP_PORT}",
                "grpc": f"{spec.name}-grpc.{dns}:{manifests.GRPC_PORT}",
                "httpLoadBalancer": _lb_host(http),
                "grpcLoadBalancer": _lb_host(grpc),
            }
        )
        self.register_outputs({"roleArn": self.role_arn, "hosts": self.hosts})

    def _role(self, args: InferenceServiceArgs) -> aws.iam.Role:
        spec, child = args.spec, pulumi.ResourceOptions(parent=self)
        subject = f"system:serviceaccount:{spec.namespace}:{spec.name}"
        trust = pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(
            lambda v: json.dumps(web_identity_trust(v[0], v[1], subject, "sts.amazonaws.com"))
        )
        role = aws.iam.Role(f"{self._base}-irsa", assume_role_policy=trust, opts=child)
        policy = pulumi.Output.all(
            args.bucket_arn, args.artifact_key_arn, args.redis_secret_arn, args.redis_key_arn
        ).apply(lambda v: json.dumps(read_policy(v[0], v[1], v[2], v[3], spec.region)))
        aws.iam.RolePolicy(f"{self._base}-irsa", role=role.id, policy=policy, opts=child)
        return role

    def _k8s(
        self, kind: Any, suffix: str, obj: dict[str, Any], depends_on: list[pulumi.Resource]
    ) -> Any:
        fields = {
            _snake(key): value for key, value in obj.items() if key not in ("apiVersion", "kind")
        }
        options = pulumi.ResourceOptions(parent=self, depends_on=depends_on)
        return kind(f"{self._base}-{suffix}", **fields, opts=options)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _lb_host(svc: k8s.core.v1.Service) -> pulumi.Output[str | None]:
    """Hostname of the internal load balancer once AWS has provisioned it (None otherwise)."""

    def first(status: Any) -> str | None:
        ingress = status.load_balancer.ingress if status and status.load_balancer else None
        return ingress[0].hostname if ingress else None

    return svc.status.apply(first)
