"""Kubernetes objects of the inference service as plain data (camelCase, as in YAML).

Pure functions: the component turns them into Pulumi resources and the tests render the very
same objects to YAML for schema validation and checkov.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.components.feature_store import REDIS_PORT

HTTP_PORT = 3000
GRPC_PORT = 50051
# The bento image's own user (BentoML's Dockerfile template creates uid/gid 1034).
RUN_AS_USER = 1034
# BentoML writes metrics under $BENTOML_HOME (/home/bentoml in the image); the root is read-only.
PROMETHEUS_DIR = "/home/bentoml/prometheus_multiproc_dir"
# Key names inside the Kubernetes Secret, not secret values.
SECRET_URL_KEY = "redis-url"  # noqa: S105
SECRET_PASSWORD_KEY = "redis-password"  # noqa: S105

Object = dict[str, Any]


@dataclass(frozen=True)
class ServiceSpec:
    """What the service's Kubernetes objects are built from."""

    name: str
    namespace: pulumi.Input[str]
    # None before the first release: nothing that runs the image is created.
    image: str | None
    environment: str
    region: str
    model_uri: pulumi.Input[str]
    model_version: str | None
    log_level: str
    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int
    pdb_min_available: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    service_type: str
    # /readyz fails while the Redis features of the served model are absent (staging, prod).
    require_features: bool = False
    # the arms' settings (infra.settings.ExperimentSettings.env); empty: the champion answers
    experiment: Mapping[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        """Selector labels shared by every object."""
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/component": "inference"}

    @property
    def loader_labels(self) -> dict[str, str]:
        """Labels of the feature-loading Job's pods (not selected by the service's objects)."""
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/component": "features"}

    @property
    def model_tag(self) -> str:
        """The model's tag in the image's BentoML store (``bento/bundle.py`` registers it)."""
        return f"approvals:{self.model_version}"

    @property
    def workers(self) -> int:
        """Serving processes per pod: one per whole core of the CPU limit (at least one)."""
        return max(1, int(cpu_cores(self.cpu_limit)))

    @property
    def secret_name(self) -> str:
        """Name of the Kubernetes Secret holding the Redis URL and token."""
        return f"{self.name}-redis"


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("2", "1.5", "500m") in cores.

    Raises:
        ValueError: not a CPU quantity.
    """
    if quantity.endswith("m"):
        return float(quantity[:-1]) / 1000
    return float(quantity)


def object_meta(
    spec: ServiceSpec, name: str, labels: dict[str, str] | None = None, **extra: Any
) -> Object:
    """An object's metadata in the service's namespace (its labels by default)."""
    labels = {**(labels or spec.labels), "app.kubernetes.io/part-of": "approvals"}
    return {"name": name, "namespace": spec.namespace, "labels": labels, **extra}


def namespace(spec: ServiceSpec) -> Object:
    """Namespace enforcing the ``restricted`` Pod Security Standard."""
    labels = {
        f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": spec.namespace, "labels": labels},
    }


def service_account(spec: ServiceSpec, role_arn: pulumi.Input[str]) -> Object:
    """Service account bound to the IRSA role."""
    annotations = {"eks.amazonaws.com/role-arn": role_arn}
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(spec, spec.name, annotations=annotations),
        "automountServiceAccountToken": False,
    }


def redis_secret(spec: ServiceSpec, url: pulumi.Input[str], password: pulumi.Input[str]) -> Object:
    """Secret carrying the Redis URL and AUTH token into the pod's environment."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_meta(spec, spec.secret_name),
        "type": "Opaque",
        "stringData": {SECRET_URL_KEY: url, SECRET_PASSWORD_KEY: password},
    }


def redis_env(spec: ServiceSpec) -> list[Object]:
    """The Redis URL and AUTH token, from the Secret, as the pod's environment."""

    def from_secret(key: str) -> Object:
        return {"secretKeyRef": {"name": spec.secret_name, "key": key}}

    return [
        {"name": "APPROVALS_REDIS_URL", "valueFrom": from_secret(SECRET_URL_KEY)},
        {"name": "APPROVALS_REDIS_PASSWORD", "valueFrom": from_secret(SECRET_PASSWORD_KEY)},
    ]


def _env(spec: ServiceSpec) -> list[Object]:
    plain = {
        "APPROVALS_MODEL_URI": spec.model_uri,
        "APPROVALS_MODEL_VERSION": spec.model_version,
        "APPROVALS_ENVIRONMENT": spec.environment,
        "APPROVALS_LOG_LEVEL": spec.log_level,
        "APPROVALS_WORKERS": str(spec.workers),
        "APPROVALS_REQUIRE_FEATURES": str(spec.require_features).lower(),
        "AWS_REGION": spec.region,
        **spec.experiment,
    }
    return [*redis_env(spec), *({"name": key, "value": value} for key, value in plain.items())]


def worker_deployment(
    service: ServiceSpec, name: str, labels: dict[str, str], replicas: int, pod: Object,
    metrics_port: int,
) -> Object:  # fmt: skip
    """Deployment of a stream worker's ``replicas`` pods: scraped by Prometheus on
    ``metrics_port``, rolled one new pod at a time with none unavailable."""
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics_port),
        "prometheus.io/path": "/metrics",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(service, name, labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
        },
    }


def http_probe(path: str, period: int, failures: int, port: str = "http") -> Object:
    """An HTTP GET probe of ``path`` on the named container ``port``."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> Object:
    """A container's resource requests and limits."""
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


# The hardened contexts every pod of the application runs with (restricted PSS).
CONTAINER_SECURITY: Object = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY: Object = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _container(spec: ServiceSpec) -> Object:
    return {
        "name": "service",
        "image": spec.image,
        "imagePullPolicy": "Always",
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "env": _env(spec),
        "resources": resources(
            spec.cpu_request, spec.memory_request, spec.cpu_limit, spec.memory_limit
        ),
        # Model download and warm-up happen before /livez answers; give them two minutes.
        "startupProbe": http_probe("/livez", 5, 24),
        "livenessProbe": http_probe("/livez", 10, 3),
        "readinessProbe": http_probe("/readyz", 5, 2),
        "securityContext": CONTAINER_SECURITY,
        # The only writable paths: scratch space and BentoML's Prometheus multiprocess directory.
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir
            {"name": "metrics", "mountPath": PROMETHEUS_DIR},
        ],
    }


def _spread(spec: ServiceSpec) -> list[Object]:
    selector = {"matchLabels": spec.labels}
    return [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector,
        },
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": selector,
        },
    ]


def deployment(spec: ServiceSpec) -> Object:
    """Deployment of the bento image: hardened pod, probes, limits, spread over zones."""
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    pod = {
        "serviceAccountName": spec.name,
        "automountServiceAccountToken": False,
        # No Docker-link variables: a Service named approvals-grpc would otherwise inject
        # APPROVALS_GRPC_PORT=tcp://... into the pod, which the service reads as its port.
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY,
        "containers": [_container(spec)],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "metrics", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        "topologySpreadConstraints": _spread(spec),
        "terminationGracePeriodSeconds": 30,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(spec, spec.name),
        # No `replicas`: the HorizontalPodAutoscaler owns the count. Setting it here would reset
        # the scaled-out Deployment to the minimum on every release.
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": spec.labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": spec.labels, "annotations": annotations},
                "spec": pod,
            },
        },
    }


def service(spec: ServiceSpec, protocol: str) -> Object:
    """Service for one protocol (``http`` or ``grpc``); load balancers are always internal."""
    port = HTTP_PORT if protocol == "http" else GRPC_PORT
    annotations: dict[str, str] = {}
    if spec.service_type == "LoadBalancer":
        annotations = {
            "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
            "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
        }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(spec, f"{spec.name}-{protocol}", annotations=annotations),
        "spec": {
            "type": spec.service_type,
            "selector": spec.labels,
            "ports": [
                {
                    "name": protocol,
                    "port": port,
                    "targetPort": protocol,
                    "protocol": "TCP",
                    "appProtocol": "grpc" if protocol == "grpc" else "http",
                }
            ],
        },
    }


def autoscaler(spec: ServiceSpec) -> Object:
    """HorizontalPodAutoscaler on CPU with a calm scale-down."""
    metric = {"type": "Utilization", "averageUtilization": spec.target_cpu_utilization}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(spec, spec.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": metric}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def disruption_budget(spec: ServiceSpec) -> Object:
    """PodDisruptionBudget keeping ``pdb_min_available`` pods through node drains."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(spec, spec.name),
        "spec": {"minAvailable": spec.pdb_min_available, "selector": {"matchLabels": spec.labels}},
    }


DNS_AND_REDIS: tuple[Object, ...] = (
    {"protocol": "UDP", "port": 53},
    {"protocol": "TCP", "port": 53},
    {"protocol": "TCP", "port": REDIS_PORT},
)


def network_policy(spec: ServiceSpec) -> Object:
    """Admit only the served ports; let out only DNS, Redis and HTTPS (S3, STS)."""
    ingress_ports = [{"protocol": "TCP", "port": port} for port in (HTTP_PORT, GRPC_PORT)]
    egress_ports = [*DNS_AND_REDIS, {"protocol": "TCP", "port": 443}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(spec, spec.name),
        "spec": {
            "podSelector": {"matchLabels": spec.labels},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": ingress_ports}],
            "egress": [{"ports": egress_ports}],
        },
    }


def feature_job_name(spec: ServiceSpec) -> str:
    """One Job per model version (Jobs are immutable; a release replaces the previous one)."""
    suffix = re.sub(r"[^a-z0-9-]+", "-", (spec.model_version or "").lower()).strip("-")
    return f"{spec.name}-features-{suffix}"[:63].rstrip("-")


def feature_job(spec: ServiceSpec) -> Object:
    """Job that loads the served model's feature state into Redis before the service rolls.

    It runs the release's own image: the bento carries the model and its pre-packed online
    state, and ``approvals.features.preload`` writes it as a new feature version (or leaves a
    compatible, newer live version alone, so a rollback never throws fresh features away).
    """
    container = {
        "name": "load",
        "image": spec.image,
        "imagePullPolicy": "Always",
        # args, not command: the image's entrypoint activates its environment, then runs them
        "args": ["python", "-m", "approvals.features.preload", "--model-tag", spec.model_tag],
        "env": [*redis_env(spec), {"name": "APPROVALS_LOG_LEVEL", "value": spec.log_level}],
        "resources": resources(
            spec.cpu_request, spec.memory_request, spec.cpu_limit, spec.memory_limit
        ),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    pod = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(spec, feature_job_name(spec), spec.loader_labels),
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 1800,
            "template": {"metadata": {"labels": spec.loader_labels}, "spec": pod},
        },
    }


def loader_network_policy(spec: ServiceSpec) -> Object:
    """The loader takes no traffic and talks only to DNS and Redis."""
    egress_ports = list(DNS_AND_REDIS)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(spec, f"{spec.name}-features", spec.loader_labels),
        "spec": {
            "podSelector": {"matchLabels": spec.loader_labels},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [{"ports": egress_ports}],
        },
    }
