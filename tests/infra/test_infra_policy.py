"""The policy pack's rules over the mocked stacks: clean as built, loud when a guard regresses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from infra_testkit import StackRun
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResource

from infra.policy import rules
from infra.policy.pack import PACK_NAME, policies


def _items(run: StackRun, key: str = "inputs") -> list[rules.Item]:
    return [
        rules.Item(r["type"], r[key], r["urn"], tuple(r["dependencies"])) for r in run.resources
    ]


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], False, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def test_every_stack_passes_every_rule(program_run: StackRun) -> None:
    run = program_run
    assert rules.violations(_items(run)) == {}, f"{run.name}: inputs comply"
    assert rules.violations(_items(run, "state")) == {}, f"{run.name}: outputs comply"


def test_pack_wraps_every_rule(program_run: StackRun) -> None:
    run = program_run
    names = [p.name for p in policies()]
    assert names == [*rules.RESOURCE_RULES, *rules.STACK_RULES], "one policy per rule"
    assert PACK_NAME == "approvals-guard-rails", "pack name is stable for `--policy-pack`"
    reported: list[str] = []
    for policy in policies():
        if hasattr(policy, "validate") and policy.__class__.__name__.startswith("Resource"):
            for r in run.resources:
                args = ResourceValidationArgs(
                    r["type"], r["inputs"], r["urn"], r["name"], _options(), None
                )
                policy.validate(args, lambda message, urn=None: reported.append(message))
    assert reported == [], f"{run.name}: the pack reports nothing on the real program"


def _mutated(run: StackRun, token: str, change: Any) -> list[rules.Item]:
    items = []
    for r in run.resources:
        props = copy.deepcopy(r["inputs"])
        if r["type"] == token:
            change(props)
        items.append(rules.Item(r["type"], props, r["urn"], tuple(r["dependencies"])))
    return items


def _set(path: str, value: Any) -> Any:
    def change(props: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = props
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value

    return change


REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
POD = "spec.template.spec."
CTX = POD + "containers.0.securityContext."
WILDCARD = '{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
REGRESSIONS = [
    (REDIS, "atRestEncryptionEnabled", False, "redis-encrypted-with-auth"),
    (REDIS, "transitEncryptionEnabled", False, "redis-encrypted-with-auth"),
    (REDIS, "authToken", None, "redis-encrypted-with-auth"),
    ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "blockPublicPolicy", False,
     "s3-public-access-blocked"),
    (SSE, "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm", "AES256",
     "s3-encrypted-with-kms"),
    ("aws:kms/key:Key", "enableKeyRotation", False, "kms-rotation-on"),
    ("aws:eks/cluster:Cluster", "enabledClusterLogTypes", ["api"], "eks-cluster-hardened"),
    ("aws:eks/cluster:Cluster", "vpcConfig.endpointPublicAccess", True, "eks-cluster-hardened"),
    ("aws:ecr/repository:Repository", "imageTagMutability", "MUTABLE",
     "ecr-immutable-and-scanned"),
    ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "cidrIpv4", "0.0.0.0/0",
     "no-open-ingress"),
    ("aws:iam/rolePolicy:RolePolicy", "policy", WILDCARD, "iam-no-wildcard-admin"),
    ("aws:cloudwatch/logGroup:LogGroup", "retentionInDays", None, "log-groups-expire"),
    ("aws:secretsmanager/secret:Secret", "kmsKeyId", None, "secrets-use-customer-key"),
    (DEPLOYMENT, CTX + "runAsNonRoot", False, "pods-hardened"),
    (DEPLOYMENT, POD + "securityContext.runAsNonRoot", False, None),
    (DEPLOYMENT, CTX + "readOnlyRootFilesystem", False, "pods-hardened"),
    (DEPLOYMENT, CTX + "allowPrivilegeEscalation", True, "pods-hardened"),
    (DEPLOYMENT, POD + "containers.0.resources.limits", {}, "pods-hardened"),
    (DEPLOYMENT, POD + "hostNetwork", True, "pods-hardened"),
    ("kubernetes:core/v1:Service", "metadata.annotations", {}, "load-balancers-internal"),
]  # fmt: skip


@pytest.mark.parametrize(("token", "path", "value", "rule"), REGRESSIONS)
def test_a_regression_is_caught(
    stack_runs: dict[str, StackRun], token: str, path: str, value: Any, rule: str | None
) -> None:
    found = rules.violations(_mutated(stack_runs["prod"], token, _set(path, value)))
    if rule is None:  # the container context still says non-root: one guard is enough
        assert found == {}, f"{path}: container-level runAsNonRoot still applies"
        return
    assert rule in found, f"{token} {path}={value!r} must break {rule}, got {found}"


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "lacks a public access block"),
        ("aws:s3/bucketVersioning:BucketVersioning", "lacks versioning"),
        ("aws:s3/bucketPolicy:BucketPolicy", "lacks a TLS-only bucket policy"),
        ("aws:ec2/flowLog:FlowLog", "has no flow log"),
    ],
)
def test_stack_rules_catch_a_missing_guard(
    stack_runs: dict[str, StackRun], dropped: str, message: str
) -> None:
    items = [i for i in _items(stack_runs["dev"]) if i.type != dropped]
    found = [m for messages in rules.violations(items).values() for m in messages]
    assert any(message in m for m in found), f"dropping {dropped} must be reported: {found}"


def test_stack_policy_adapter_links_by_dependencies(stack_runs: dict[str, StackRun]) -> None:
    run = stack_runs["dev"]
    by_urn: dict[str, PolicyResource] = {}
    for r in run.resources:
        deps = [by_urn[d] for d in r["dependencies"] if d in by_urn]
        by_urn[r["urn"]] = PolicyResource(
            r["type"], r["state"], r["urn"], r["name"], _options(), None, None, deps, {}
        )
    reported: list[str] = []
    kept = [p for urn, p in by_urn.items() if "bucketVersioning" not in urn]
    for policy in policies():
        if policy.name in rules.STACK_RULES:
            policy.validate(StackValidationArgs(kept), lambda m, urn=None: reported.append(m))
    assert any("lacks versioning" in m for m in reported), f"adapter reports: {reported}"
