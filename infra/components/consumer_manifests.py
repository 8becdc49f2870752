"""Kubernetes objects of the outcome consumer as plain data (camelCase, as in YAML).

The consumer (``python -m approvals.features.consumer``) runs the service's own image, under
its service account, with its Redis Secret: it applies the outcome events of the Redis stream
to the same online feature store. Its pods share one consumer group, so more replicas share
the stream's entries. Pure functions, like :mod:`infra.components.manifests`.
"""

from __future__ import annotations

from dataclasses import dataclass

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

METRICS_PORT = 9100  # /metrics, /livez, /readyz (APPROVALS_OUTCOMES_METRICS_PORT)


@dataclass(frozen=True)
class ConsumerSpec:
    """What the consumer's Kubernetes objects are built from (the service's spec and sizes)."""

    service: ServiceSpec
    replicas: int
    batch: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    @property
    def name(self) -> str:
        """The Deployment's (and policy's) name."""
        return f"{self.service.name}-outcomes"

    @property
    def labels(self) -> dict[str, str]:
        """Selector labels of the consumer's pods (not selected by the service's objects)."""
        return {"app.kubernetes.io/name": self.service.name,
                "app.kubernetes.io/component": "outcomes"}  # fmt: skip


def _env(spec: ConsumerSpec) -> list[Object]:
    plain = {
        "APPROVALS_OUTCOMES_BATCH": str(spec.batch),
        "APPROVALS_OUTCOMES_METRICS_PORT": str(METRICS_PORT),
        "APPROVALS_OUTCOMES_LOG_LEVEL": spec.service.log_level,
        "APPROVALS_ENVIRONMENT": spec.service.environment,
    }
    # The pod's name is its name in the group: a restarted container re-reads its own entries.
    pod_name = {"fieldRef": {"fieldPath": "metadata.name"}}
    return [
        *redis_env(spec.service),
        {"name": "APPROVALS_OUTCOMES_CONSUMER", "valueFrom": pod_name},
        *({"name": key, "value": value} for key, value in plain.items()),
    ]


def _probe(path: str, period: int, failures: int) -> Object:
    return http_probe(path, period, failures, port="metrics")


def _container(spec: ConsumerSpec) -> Object:
    return {
        "name": "consumer",
        "image": spec.service.image,
        "imagePullPolicy": "Always",
        # args, not command: the image's entrypoint activates its environment, then runs them
        "args": ["python", "-m", "approvals.features.consumer"],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": resources(
            spec.cpu_request, spec.memory_request, spec.cpu_limit, spec.memory_limit
        ),
        # /livez fails once the worker loop stalls; /readyz while Redis calls fail (no traffic
        # depends on it: it shows in `kubectl get pods` as not READY).
        "startupProbe": _probe("/livez", 2, 30),
        "livenessProbe": _probe("/livez", 10, 3),
        "readinessProbe": _probe("/readyz", 5, 3),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }


def consumer_deployment(spec: ConsumerSpec) -> Object:
    """Deployment of ``replicas`` consumers of the group, hardened like the service's pods."""
    pod = {
        "serviceAccountName": spec.service.name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY,
        "containers": [_container(spec)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": spec.labels},
            }
        ],
        # SIGTERM: the current batch is applied and acknowledged (seconds), then exit 0.
        "terminationGracePeriodSeconds": 30,
    }
    return worker_deployment(spec.service, spec.name, spec.labels, spec.replicas, pod, METRICS_PORT)


def consumer_network_policy(spec: ConsumerSpec) -> Object:
    """Admit only scrapes and probes of the metrics port; let out only DNS and Redis."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(spec.service, spec.name, spec.labels),
        "spec": {
            "podSelector": {"matchLabels": spec.labels},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
            "egress": [{"ports": list(DNS_AND_REDIS)}],
        },
    }
