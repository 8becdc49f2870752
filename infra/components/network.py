"""Network: a VPC over several zones, private subnets for nodes and cache, public ones for LBs."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.iam_docs import document, service_trust, statement


@dataclass(frozen=True)
class NetworkArgs:
    """Inputs of :class:`Network` (counts are plain values: they decide how many resources)."""

    cidr_block: str
    availability_zones: Sequence[str]
    nat_gateways: int
    flow_log_retention_days: int


def subnet_plan(cidr_block: str, zones: int) -> tuple[list[str], list[str]]:
    """Split the VPC range: a /20-ish private subnet per zone, a small public one per zone.

    Args:
        cidr_block: The VPC range (at most /20).
        zones: Number of availability zones.

    Returns:
        Private and public subnet ranges, one of each per zone, without overlap.
    """
    vpc = ipaddress.IPv4Network(cidr_block)
    halves = list(vpc.subnets(prefixlen_diff=1))
    private = list(halves[0].subnets(prefixlen_diff=3))[:zones]
    public = list(halves[1].subnets(prefixlen_diff=4))[:zones]
    return [str(net) for net in private], [str(net) for net in public]


class Network(pulumi.ComponentResource):
    """VPC, subnets, internet and NAT gateways, routes and VPC flow logs."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:Network", name, None, opts)
        self._base, self._cfg = name, args
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr_block,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        self.vpc_id = self.vpc.id
        private_cidrs, public_cidrs = subnet_plan(args.cidr_block, len(args.availability_zones))
        public = self._subnets("public", public_cidrs, {"kubernetes.io/role/elb": "1"})
        private = self._subnets("private", private_cidrs, {"kubernetes.io/role/internal-elb": "1"})
        self._public_routes(public)
        self._private_routes(private, self._nat_gateways(public))
        self.flow_log = self._flow_logs()
        self.public_subnet_ids = [subnet.id for subnet in public]
        self.private_subnet_ids = [subnet.id for subnet in private]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
            }
        )

    def _subnets(self, tier: str, cidrs: list[str], tags: dict[str, str]) -> list[aws.ec2.Subnet]:
        return [
            aws.ec2.Subnet(
                f"{self._base}-{tier}-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                # Only load balancers live in public subnets; nothing gets a public IP by default.
                map_public_ip_on_launch=False,
                tags={"Name": f"{self._base}-{tier}-{zone}", "tier": tier, **tags},
                opts=pulumi.ResourceOptions(parent=self),
            )
            for zone, cidr in zip(self._cfg.availability_zones, cidrs, strict=True)
        ]

    def _public_routes(self, subnets: list[aws.ec2.Subnet]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        gateway = aws.ec2.InternetGateway(f"{self._base}-igw", vpc_id=self.vpc.id, opts=child)
        table = aws.ec2.RouteTable(
            f"{self._base}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            opts=child,
        )
        for zone, subnet in zip(self._cfg.availability_zones, subnets, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{self._base}-public-{zone}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=child,
            )

    def _nat_gateways(self, public: list[aws.ec2.Subnet]) -> list[aws.ec2.NatGateway]:
        child = pulumi.ResourceOptions(parent=self)
        gateways = []
        for zone, subnet in list(zip(self._cfg.availability_zones, public, strict=True))[
            : self._cfg.nat_gateways
        ]:
            eip = aws.ec2.Eip(f"{self._base}-nat-{zone}", domain="vpc", opts=child)
            gateways.append(
                aws.ec2.NatGateway(
                    f"{self._base}-nat-{zone}",
                    allocation_id=eip.id,
                    subnet_id=subnet.id,
                    tags={"Name": f"{self._base}-nat-{zone}"},
                    opts=child,
                )
            )
        return gateways

    def _private_routes(
        self, subnets: list[aws.ec2.Subnet], gateways: list[aws.ec2.NatGateway]
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        for index, (zone, subnet) in enumerate(
            zip(self._cfg.availability_zones, subnets, strict=True)
        ):
            # With fewer NAT gateways than zones, zones share them round-robin (cheaper, less HA).
            gateway = gateways[index % len(gateways)]
            table = aws.ec2.RouteTable(
                f"{self._base}-private-{zone}",
                vpc_id=self.vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": gateway.id}],
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{self._base}-private-{zone}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=child,
            )

    def _flow_logs(self) -> aws.ec2.FlowLog:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{self._base}-flow-logs",
            retention_in_days=self._cfg.flow_log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{self._base}-flow-logs",
            assume_role_policy=json.dumps(service_trust("vpc-flow-logs.amazonaws.com")),
            opts=child,
        )
        actions = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        aws.iam.RolePolicy(
            f"{self._base}-flow-logs",
            role=role.id,
            policy=group.arn.apply(
                lambda arn: json.dumps(document(statement(actions, [arn, f"{arn}:*"])))
            ),
            opts=child,
        )
        return aws.ec2.FlowLog(
            f"{self._base}-flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            opts=child,
        )
