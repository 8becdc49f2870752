"""Inference service: the namespace and the Kubernetes objects of the bento service.

Everything here is namespaced (the namespace itself aside), so the release pipeline's deploy
role, which may edit only this namespace, can roll it. With no release yet (no image), nothing
is created that would wait on one: the Services, autoscaler, disruption budget and policies
stand ready, and the first release adds the feature-loading Job and the Deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components import manifests
from infra.components.manifests import ServiceSpec


@dataclass(frozen=True)
class InferenceServiceArgs:
    """Inputs of :class:`InferenceService`."""

    spec: ServiceSpec
    role_arn: pulumi.Input[str]
    redis_url: pulumi.Input[str]
    redis_password: pulumi.Input[str]


class InferenceService(pulumi.ComponentResource):
    """Namespace, IRSA-bound service account, Secret, feature-loading Job, Deployment,
    Services, HPA, PDB, network policies."""

    hosts: pulumi.Output[dict[str, Any]]

    def __init__(
        self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:InferenceService", name, None, opts)
        self._base = name
        spec = args.spec
        namespace = self._k8s(k8s.core.v1.Namespace, "namespace", manifests.namespace(spec), [])
        in_ns = [namespace]
        self._k8s(
            k8s.core.v1.ServiceAccount, "sa", manifests.service_account(spec, args.role_arn), in_ns
        )
        secret = self._k8s(
            k8s.core.v1.Secret,
            "redis",
            manifests.redis_secret(spec, args.redis_url, args.redis_password),
            in_ns,
        )
        self._k8s(
            k8s.networking.v1.NetworkPolicy,
            "features-netpol",
            manifests.loader_network_policy(spec),
            in_ns,
        )
        if spec.image is not None:
            # Pulumi waits for the Job to complete; only then does the Deployment roll, so new
            # pods never start on features their model was not built for.
            loader = self._k8s(
                k8s.batch.v1.Job, "features", manifests.feature_job(spec), [*in_ns, secret]
            )
            self._k8s(
                k8s.apps.v1.Deployment, "deployment", manifests.deployment(spec), [secret, loader]
            )
        http = self._k8s(k8s.core.v1.Service, "http", manifests.service(spec, "http"), in_ns)
        grpc = self._k8s(k8s.core.v1.Service, "grpc", manifests.service(spec, "grpc"), in_ns)
        self._k8s(
            k8s.autoscaling.v2.HorizontalPodAutoscaler, "hpa", manifests.autoscaler(spec), in_ns
        )
        self._k8s(
            k8s.policy.v1.PodDisruptionBudget, "pdb", manifests.disruption_budget(spec), in_ns
        )
        self._k8s(k8s.networking.v1.NetworkPolicy, "netpol", manifests.network_policy(spec), in_ns)
        self.hosts = pulumi.Output.all(
            pulumi.Output.from_input(spec.namespace), _lb_host(http), _lb_host(grpc)
        ).apply(
            lambda v: {
                "http": f"{spec.name}-http.{v[0]}.svc.cluster.local:{manifests.HTTP_PORT}",
                "grpc": f"{spec.name}-grpc.{v[0]}.svc.cluster.local:{manifests.GRPC_PORT}",
                "httpLoadBalancer": v[1],
                "grpcLoadBalancer": v[2],
            }
        )
        self.register_outputs({"hosts": self.hosts})

    def _k8s(
        self, kind: Any, suffix: str, obj: dict[str, Any], depends_on: list[pulumi.Resource]
    ) -> Any:
        options = pulumi.ResourceOptions(parent=self, depends_on=depends_on)
        return declare(kind, f"{self._base}-{suffix}", obj, options)


def declare(kind: Any, name: str, obj: dict[str, Any], options: pulumi.ResourceOptions) -> Any:
    """A Kubernetes object given as plain data (:mod:`infra.components.manifests`) declared as
    a Pulumi resource of ``kind``."""
    fields = {_snake(key): value for key, value in obj.items() if key not in ("apiVersion", "kind")}
    return kind(name, **fields, opts=options)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _lb_host(svc: k8s.core.v1.Service) -> pulumi.Output[str | None]:
    """Hostname of the internal load balancer once AWS has provisioned it (None otherwise)."""

    def first(status: Any) -> str | None:
        ingress = status.load_balancer.ingress if status and status.load_balancer else None
        return ingress[0].hostname if ingress else None

    return svc.status.apply(first)
