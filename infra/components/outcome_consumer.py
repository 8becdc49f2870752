"""Outcome consumer: the workers that apply the outcome stream to the online feature store.

They live in the inference service's namespace and use its service account and Redis Secret,
so the component waits for the service's objects (``after``). Like the service, nothing runs
an image before the first release: the NetworkPolicy stands ready, the Deployment comes with
the first image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.components.consumer_manifests import (
    METRICS_PORT,
    ConsumerSpec,
    consumer_deployment,
    consumer_network_policy,
)
from infra.components.inference_service import declare


@dataclass(frozen=True)
class OutcomeConsumerArgs:
    """Inputs of :class:`OutcomeConsumer`."""

    spec: ConsumerSpec
    # What must exist first: the namespace, service account and Secret (the service component).
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)


class OutcomeConsumer(pulumi.ComponentResource):
    """The consumer Deployment (``replicas`` workers of one group) and its NetworkPolicy."""

    deployment: pulumi.Output[str | None]

    def __init__(
        self, name: str, args: OutcomeConsumerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:OutcomeConsumer", name, None, opts)
        spec, after = args.spec, list(args.after)
        options = pulumi.ResourceOptions(parent=self, depends_on=after)
        declare(k8s.networking.v1.NetworkPolicy, f"{name}-netpol",
                consumer_network_policy(spec), options)  # fmt: skip
        running = spec.service.image is not None
        if running:
            declare(k8s.apps.v1.Deployment, f"{name}-deployment", consumer_deployment(spec),
                    options)  # fmt: skip
        self.deployment = pulumi.Output.from_input(spec.name if running else None)
        self.register_outputs(
            {"deployment": self.deployment, "replicas": spec.replicas, "metricsPort": METRICS_PORT}
        )
