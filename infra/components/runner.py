"""Runner: a CodeBuild-hosted GitHub Actions runner inside the environment's VPC.

The EKS API of staging and prod is private, so GitHub-hosted runners cannot reach it. A
CodeBuild project with a ``WORKFLOW_JOB_QUEUED`` webhook starts one ephemeral runner per
queued job whose ``runs-on`` label is ``codebuild-<project>-<run id>-<attempt>``, in the private
subnets, admitted to the cluster API on 443 and to nothing else inbound. Jobs still get their AWS
access from GitHub's OIDC token (the environment's deploy role); the project's own role can only
write its logs, place its network interfaces and use the GitHub connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.iam_docs import document, service_trust, statement

# Ubuntu, like GitHub's hosted runners: actions/setup-python's builds are made for it.
RUNNER_IMAGE = "aws/codebuild/standard:7.0"
HTTPS = 443


@dataclass(frozen=True)
class RunnerArgs:
    """Inputs of :class:`Runner`."""

    project_name: str
    repository: str
    connection_arn: str
    compute_type: str
    region: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    cluster_security_group_id: pulumi.Input[str]
    log_retention_days: int


def runner_label(project_name: str) -> str:
    """The ``runs-on`` prefix of jobs this runner takes (add ``-${{ github.run_id }}-...``)."""
    return f"codebuild-{project_name}"


def runner_policy(
    log_group_arn: str, subnet_arns: Sequence[str], connection_arn: str
) -> dict[str, Any]:
    """What the CodeBuild project itself needs: logs, VPC network interfaces, the connection."""
    return document(
        statement(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"]),
        # EC2 has no resource-level permissions for these read and ENI calls.
        statement(
            [
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeDhcpOptions",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
            ],
            ["*"],
        ),
        statement(
            ["ec2:CreateNetworkInterfacePermission"],
            ["arn:aws:ec2:*:*:network-interface/*"],
            Condition={
                "StringEquals": {"ec2:AuthorizedService": "codebuild.amazonaws.com"},
                "ArnEquals": {"ec2:Subnet": list(subnet_arns)},
            },
        ),
        statement(
            [
                "codeconnections:GetConnection",
                "codeconnections:GetConnectionToken",
                "codeconnections:UseConnection",
                "codestar-connections:GetConnection",
                "codestar-connections:GetConnectionToken",
                "codestar-connections:UseConnection",
            ],
            [connection_arn],
        ),
    )


class Runner(pulumi.ComponentResource):
    """CodeBuild project, its webhook, security group, log group and role."""

    project_name: pulumi.Output[str]
    label: str

    def __init__(
        self, name: str, args: RunnerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:Runner", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="GitHub Actions runner: HTTPS out (GitHub, AWS, the EKS API), nothing in",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-https-out",
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4="0.0.0.0/0",
            description="GitHub, AWS APIs, package registries, the EKS API",
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-to-api",
            security_group_id=args.cluster_security_group_id,
            referenced_security_group_id=group.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            description="EKS API from the in-VPC GitHub Actions runner",
            opts=child,
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/codebuild/{args.project_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=json.dumps(service_trust("codebuild.amazonaws.com")),
            description=f"CodeBuild runner of {args.repository} in {args.project_name}",
            opts=child,
        )
        subnet_arns = pulumi.Output.all(*args.private_subnet_ids).apply(
            lambda ids: [f"arn:aws:ec2:{args.region}:*:subnet/{sid}" for sid in ids]
        )
        policy = pulumi.Output.all(logs.arn, subnet_arns).apply(
            lambda v: json.dumps(runner_policy(v[0], v[1], args.connection_arn))
        )
        grant = aws.iam.RolePolicy(f"{name}-role", role=role.id, policy=policy, opts=child)
        project = aws.codebuild.Project(
            f"{name}-project",
            name=args.project_name,
            description=f"In-VPC GitHub Actions runner for {args.repository}",
            service_role=role.arn,
            build_timeout=90,
            source={
                "type": "GITHUB",
                "location": f"https://github.com/{args.repository}.git",
                "auth": {"type": "CODECONNECTIONS", "resource": args.connection_arn},
            },
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "compute_type": args.compute_type,
                "image": RUNNER_IMAGE,
                "type": "LINUX_CONTAINER",
                # the deploy job loads and pushes the image with Docker
                "privileged_mode": True,
            },
            vpc_config={
                "vpc_id": args.vpc_id,
                "subnets": list(args.private_subnet_ids),
                "security_group_ids": [group.id],
            },
            logs_config={"cloudwatch_logs": {"group_name": logs.name, "status": "ENABLED"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]),
        )
        aws.codebuild.Webhook(
            f"{name}-webhook",
            project_name=project.name,
            build_type="BUILD",
            filter_groups=[{"filters": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}]}],
            opts=child,
        )
        self.project_name = project.name
        self.label = runner_label(args.project_name)
        self.register_outputs({"projectName": self.project_name, "label": self.label})
