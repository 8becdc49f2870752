"""Decision sink: the service's decision stream written as hourly Parquet to the artifact bucket.

It lives in the inference service's namespace and uses the service's Redis Secret, so the
component waits for the service's objects (``after``); its service account is its own, bound
to the sink's IRSA role (``infra/components/sink_identity.py``, in the platform). Like the
outcome consumer, nothing runs an image before the first release: the service account and
NetworkPolicy stand ready, the Deployment comes with the first image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.components.inference_service import declare
from infra.components.sink_manifests import (
    METRICS_PORT,
    SinkSpec,
    sink_deployment,
    sink_network_policy,
    sink_service_account,
)


@dataclass(frozen=True)
class DecisionSinkArgs:
    """Inputs of :class:`DecisionSink`."""

    spec: SinkSpec
    role_arn: pulumi.Input[str]
    # What must exist first: the namespace and the Redis Secret (the service component).
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)


class DecisionSink(pulumi.ComponentResource):
    """The sink's service account, NetworkPolicy and Deployment (``replicas`` of one group)."""

    deployment: pulumi.Output[str | None]

    def __init__(
        self, name: str, args: DecisionSinkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:DecisionSink", name, None, opts)
        spec = args.spec
        options = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        account = declare(k8s.core.v1.ServiceAccount, f"{name}-sa",
                          sink_service_account(spec, args.role_arn), options)  # fmt: skip
        declare(k8s.networking.v1.NetworkPolicy, f"{name}-netpol", sink_network_policy(spec),
                options)  # fmt: skip
        running = spec.service.image is not None
        if running:
            after = pulumi.ResourceOptions(parent=self, depends_on=[*args.after, account])
            declare(k8s.apps.v1.Deployment, f"{name}-deployment", sink_deployment(spec), after)
        self.deployment = pulumi.Output.from_input(spec.name if running else None)
        self.register_outputs(
            {"deployment": self.deployment, "replicas": spec.replicas, "metricsPort": METRICS_PORT}
        )
