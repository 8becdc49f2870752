"""Cluster: EKS control plane with logs and secrets encryption, a managed node group, IRSA.

The kubeconfig it exports is for the application stack and for people; the platform itself
never talks to the Kubernetes API, so it can be stood up from anywhere AWS answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.iam_docs import service_trust

CONTROL_PLANE_LOGS = ("api", "audit", "authenticator", "controllerManager", "scheduler")
_NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
)
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@dataclass(frozen=True)
class ClusterArgs:
    """Inputs of :class:`Cluster`."""

    cluster_name: str
    kubernetes_version: str
    private_subnet_ids: Sequence[pulumi.Input[str]]
    instance_types: Sequence[str]
    capacity_type: str
    min_size: int
    desired_size: int
    max_size: int
    disk_size_gib: int
    endpoint_public_access: bool
    public_access_cidrs: Sequence[str]
    log_retention_days: int
    deletion_protection: bool
    admin_role_arns: Sequence[str]
    region: str


def kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates through ``aws eks get-token`` (no static credentials).

    Args:
        name: Cluster name.
        endpoint: API server URL.
        ca_data: Base64 certificate authority data.
        region: AWS region of the cluster.

    Returns:
        The kubeconfig as a JSON string.
    """
    user: dict[str, Any] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region],
        }
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [{"name": name, "user": user}],
        }
    )


class Cluster(pulumi.ComponentResource):
    """EKS cluster, node group, add-ons, admin access entries and the IAM OIDC provider."""

    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:Cluster", name, None, opts)
        self._base, self._cfg = name, args
        self.cluster = self._control_plane()
        self.node_group = self._node_group()
        self._addons()
        self._admins()
        self.cluster_name = self.cluster.name
        self.cluster_arn = self.cluster.arn
        # Managed node groups attach the cluster security group to every node.
        self.node_security_group_id = self.cluster.vpc_config.cluster_security_group_id
        issuer_url = self.cluster.identities.apply(lambda ids: ids[0]["oidcs"][0]["issuer"])
        self.oidc_issuer = issuer_url.apply(lambda url: url.removeprefix("https://"))
        self.oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc",
            url=issuer_url,
            client_id_lists=["sts.amazonaws.com"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.oidc_provider_arn = self.oidc.arn
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.name,
                self.cluster.endpoint,
                self.cluster.certificate_authority.apply(lambda ca: ca["data"]),
            ).apply(lambda v: kubeconfig(v[0], v[1], v[2], args.region))
        )
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "clusterArn": self.cluster_arn,
                "oidcProviderArn": self.oidc_provider_arn,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _control_plane(self) -> aws.eks.Cluster:
        args, child = self._cfg, pulumi.ResourceOptions(parent=self)
        role, attached = self._role("cluster", "eks.amazonaws.com", ("AmazonEKSClusterPolicy",))
        key = aws.kms.Key(
            f"{self._base}-secrets",
            description=f"EKS secrets envelope encryption for {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        # EKS writes to this exact group name; creating it first sets the retention.
        logs = aws.cloudwatch.LogGroup(
            f"{self._base}-control-plane",
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        return aws.eks.Cluster(
            f"{self._base}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            role_arn=role.arn,
            vpc_config={
                "subnet_ids": list(args.private_subnet_ids),
                "endpoint_private_access": True,
                "endpoint_public_access": args.endpoint_public_access,
                "public_access_cidrs": list(args.public_access_cidrs) or None,
            },
            # Cluster admins are the roles named in the stack file (access entries below), not
            # whichever identity happened to create the cluster.
            access_config={
                "authentication_mode": "API",
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            encryption_config={"resources": ["secrets"], "provider": {"key_arn": key.arn}},
            deletion_protection=args.deletion_protection,
            # EKS checks the role's permissions when it creates the cluster: attach them first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs, *attached]),
        )

    def _node_group(self) -> aws.eks.NodeGroup:
        args = self._cfg
        role, attached = self._role("nodes", "ec2.amazonaws.com", _NODE_POLICIES)
        return aws.eks.NodeGroup(
            f"{self._base}-nodes",
            cluster_name=self.cluster.name,
            node_role_arn=role.arn,
            subnet_ids=list(args.private_subnet_ids),
            instance_types=list(args.instance_types),
            capacity_type=args.capacity_type,
            ami_type="AL2023_x86_64_STANDARD",
            disk_size=args.disk_size_gib,
            scaling_config={
                "min_size": args.min_size,
                "desired_size": args.desired_size,
                "max_size": args.max_size,
            },
            update_config={"max_unavailable": 1},
            labels={"approvals/pool": "general"},
            # Nodes cannot join (and the group fails to create) before their policies are attached.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=attached, ignore_changes=["scalingConfig.desiredSize"]
            ),
        )

    def _addons(self) -> None:
        # vpc-cni enforces NetworkPolicy only when asked; metrics-server feeds the HPA.
        addons: dict[str, dict[str, str] | None] = {
            "vpc-cni": {"enableNetworkPolicy": "true"},
            "metrics-server": None,
        }
        for addon, config in addons.items():
            aws.eks.Addon(
                f"{self._base}-{addon}",
                cluster_name=self.cluster.name,
                addon_name=addon,
                configuration_values=json.dumps(config) if config else None,
                # EKS installs vpc-cni itself with the cluster: take it over on create as well.
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.node_group]),
            )

    def _admins(self) -> None:
        """Cluster-admin access entries for the administrator roles of the stack file."""
        for index, arn in enumerate(self._cfg.admin_role_arns):
            entry = aws.eks.AccessEntry(
                f"{self._base}-admin-{index}",
                cluster_name=self.cluster.name,
                principal_arn=arn,
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.eks.AccessPolicyAssociation(
                f"{self._base}-admin-{index}",
                cluster_name=self.cluster.name,
                principal_arn=arn,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope={"type": "cluster"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            )

    def _role(
        self, suffix: str, service: str, managed: Sequence[str]
    ) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{self._base}-{suffix}",
            assume_role_policy=json.dumps(service_trust(service)),
            opts=child,
        )
        attached: list[pulumi.Resource] = [
            aws.iam.RolePolicyAttachment(
                f"{self._base}-{suffix}-{policy}",
                role=role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=child,
            )
            for policy in managed
        ]
        return role, attached
