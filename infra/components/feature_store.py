"""Feature store: ElastiCache for Redis with TLS, encryption at rest and a generated AUTH token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

REDIS_PORT = 6379


@dataclass(frozen=True)
class FeatureStoreArgs:
    """Inputs of :class:`FeatureStore`."""

    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_id: pulumi.Input[str]
    node_type: str
    engine_version: str
    num_cache_clusters: int
    multi_az: bool
    snapshot_retention_days: int
    kms_deletion_window_days: int


def redis_url(host: str) -> str:
    """The TLS URL the service connects to (the token travels separately).

    Args:
        host: Primary endpoint address.

    Returns:
        A ``rediss://`` URL on database 0.
    """
    return f"rediss://{host}:{REDIS_PORT}/0"


class FeatureStore(pulumi.ComponentResource):
    """Replication group, its network fence, and the AUTH token kept in Secrets Manager."""

    endpoint: pulumi.Output[str]
    url: pulumi.Output[str]
    auth_token: pulumi.Output[str]
    secret_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: FeatureStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:FeatureStore", name, None, opts)
        self._base, self._cfg = name, args
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            f"{name}-key",
            description="approvals feature store: Redis at rest and its AUTH secret",
            enable_key_rotation=True,
            deletion_window_in_days=args.kms_deletion_window_days,
            opts=child,
        )
        # Alphanumeric only: ElastiCache forbids some punctuation and clients need no escaping.
        token = random.RandomPassword(f"{name}-auth-token", length=64, special=False, opts=child)
        self.auth_token = pulumi.Output.secret(token.result)
        self.group = self._replication_group(self._security_group(), self.auth_token)
        self.endpoint = self.group.primary_endpoint_address
        self.url = self.endpoint.apply(redis_url)
        self.secret = self._secret()
        self.secret_arn = self.secret.arn
        self.key_arn = self.key.arn
        self.register_outputs(
            {"endpoint": self.endpoint, "url": self.url, "secretArn": self.secret_arn}
        )

    def _security_group(self) -> aws.ec2.SecurityGroup:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{self._base}-sg",
            vpc_id=self._cfg.vpc_id,
            description="Redis: only the cluster nodes, only the Redis port",
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{self._base}-from-nodes",
            security_group_id=group.id,
            referenced_security_group_id=self._cfg.client_security_group_id,
            ip_protocol="tcp",
            from_port=REDIS_PORT,
            to_port=REDIS_PORT,
            description="Redis from EKS nodes",
            opts=child,
        )
        return group

    def _replication_group(
        self, group: aws.ec2.SecurityGroup, token: pulumi.Output[str]
    ) -> aws.elasticache.ReplicationGroup:
        args, child = self._cfg, pulumi.ResourceOptions(parent=self)
        subnets = aws.elasticache.SubnetGroup(
            f"{self._base}-subnets",
            subnet_ids=list(args.private_subnet_ids),
            description="approvals feature store: private subnets",
            opts=child,
        )
        return aws.elasticache.ReplicationGroup(
            f"{self._base}-redis",
            description="approvals online features",
            engine="redis",
            engine_version=args.engine_version,
            node_type=args.node_type,
            num_cache_clusters=args.num_cache_clusters,
            automatic_failover_enabled=args.multi_az,
            multi_az_enabled=args.multi_az,
            port=REDIS_PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[group.id],
            at_rest_encryption_enabled=True,
            kms_key_id=self.key.arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token=token,
            auth_token_update_strategy="ROTATE",  # noqa: S106 - a strategy name
            snapshot_retention_limit=args.snapshot_retention_days,
            auto_minor_version_upgrade=True,
            apply_immediately=False,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["authToken"]),
        )

    def _secret(self) -> aws.secretsmanager.Secret:
        child = pulumi.ResourceOptions(parent=self)
        secret = aws.secretsmanager.Secret(
            f"{self._base}-auth",
            description="approvals Redis URL and AUTH token",
            kms_key_id=self.key.arn,
            recovery_window_in_days=7,
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{self._base}-auth",
            secret_id=secret.id,
            secret_string=pulumi.Output.json_dumps({"url": self.url, "password": self.auth_token}),
            opts=child,
        )
        return secret
