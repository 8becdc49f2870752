"""Kubernetes objects of the decision sink as plain data (camelCase, as in YAML).

The sink (``python -m approvals.experiments.sink``) runs the release's own image (its ``sink``
extra: pyarrow, boto3) with the service's Redis Secret, under a service account of its own
bound to the sink's IRSA role (write ``decisions/`` of the artifact bucket, nothing else). It
reads the service's decision stream with a consumer group and writes hourly Parquet to
``s3://<bucket>/decisions``. Pure functions, like :mod:`infra.components.consumer_manifests`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.components.artifact_store import DECISIONS_PREFIX
from infra.components.manifests import (
    CONTAINER_SECURITY,
    DNS_AND_REDIS,
    POD_SECURITY,
    Object,
    ServiceSpec,
    http_probe,
    object_meta,
    redis_env,
    resources,
    worker_deployment,
)
from infra.components.sink_identity import SINK_ACCOUNT

METRICS_PORT = 9100  # /metrics, /livez, /readyz (--metrics-port)


@dataclass(frozen=True)
class SinkSpec:
    """What the sink's Kubernetes objects are built from (the service's spec, bucket, sizes)."""

    service: ServiceSpec
    bucket: pulumi.Input[str]
    replicas: int
    flush_seconds: float
    max_rows: int
    claim_idle_ms: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    @property
    def name(self) -> str:
        """The Deployment's, policy's and service account's name."""
        return SINK_ACCOUNT

    @property
    def labels(self) -> dict[str, str]:
        """Selector labels of the sink's pods (not selected by the service's objects)."""
        return {"app.kubernetes.io/name": self.service.name,
                "app.kubernetes.io/component": "sink"}  # fmt: skip

    @property
    def out(self) -> pulumi.Output[str]:
        """Where the files go: the ``decisions/`` prefix of the artifact bucket."""
        prefix = DECISIONS_PREFIX.rstrip("/")
        return pulumi.Output.from_input(self.bucket).apply(lambda b: f"s3://{b}/{prefix}")


def sink_service_account(spec: SinkSpec, role_arn: pulumi.Input[str]) -> Object:
    """The sink's own service account, bound to its IRSA role."""
    annotations = {"eks.amazonaws.com/role-arn": role_arn}
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(spec.service, spec.name, spec.labels, annotations=annotations),
        "automountServiceAccountToken": False,
    }


def _args(spec: SinkSpec) -> list[pulumi.Input[str]]:
    flags = {
        "--max-rows": str(spec.max_rows),
        "--flush-seconds": repr(spec.flush_seconds),
        "--claim-idle-ms": str(spec.claim_idle_ms),
        "--metrics-port": str(METRICS_PORT),
        "--log-level": spec.service.log_level,
        # the pod's name is its name in the group: a restarted container re-reads its entries
        "--consumer": "$(POD_NAME)",
    }
    pairs = [item for flag, value in flags.items() for item in (flag, value)]
    return ["python", "-m", "approvals.experiments.sink", "--out", spec.out, *pairs]


def _container(spec: SinkSpec) -> Object:
    pod_name = {"fieldRef": {"fieldPath": "metadata.name"}}
    env = [
        *redis_env(spec.service),
        {"name": "POD_NAME", "valueFrom": pod_name},
        {"name": "AWS_REGION", "value": spec.service.region},
        {"name": "APPROVALS_ENVIRONMENT", "value": spec.service.environment},
    ]
    return {
        "name": "sink",
        "image": spec.service.image,
        "imagePullPolicy": "Always",
        # args, not command: the image's entrypoint activates its environment, then runs them
        "args": _args(spec),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": resources(
            spec.cpu_request, spec.memory_request, spec.cpu_limit, spec.memory_limit
        ),
        # /livez fails once the loop stalls; /readyz while Redis or S3 calls fail.
        "startupProbe": http_probe("/livez", 2, 30, port="metrics"),
        "livenessProbe": http_probe("/livez", 10, 3, port="metrics"),
        "readinessProbe": http_probe("/readyz", 5, 3, port="metrics"),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }


def sink_deployment(spec: SinkSpec) -> Object:
    """Deployment of ``replicas`` sinks of the group, hardened like the service's pods."""
    pod = {
        "serviceAccountName": spec.name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY,
        "containers": [_container(spec)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        # SIGTERM: one last flush (a PutObject per kind and hour held), then exit 0.
        "terminationGracePeriodSeconds": 60,
    }
    return worker_deployment(spec.service, spec.name, spec.labels, spec.replicas, pod, METRICS_PORT)


def sink_network_policy(spec: SinkSpec) -> Object:
    """Admit only scrapes and probes of the metrics port; let out DNS, Redis and HTTPS (S3,
    STS for the IRSA role)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(spec.service, spec.name, spec.labels),
        "spec": {
            "podSelector": {"matchLabels": spec.labels},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
            "egress": [{"ports": [*DNS_AND_REDIS, {"protocol": "TCP", "port": 443}]}],
        },
    }
