"""Security rules as plain functions, shared by the policy pack and the test suite.

A resource rule takes ``(resource_type, props)`` with engine property names (camelCase, as the
policy pack and the mock monitor both see them) and returns violation messages; an empty list
means compliant. A stack rule takes every resource as an :class:`Item` and links resources through
their dependencies (names may still be unknown during a preview).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Props = Mapping[str, Any]
ResourceRule = Callable[[str, Props], list[str]]

OPEN_CIDRS = {"0.0.0.0/0", "::/0"}
REQUIRED_EKS_LOGS = {"api", "audit", "authenticator"}
WORKLOADS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:core/v1:Pod",
}
_S3 = "aws:s3/"
BUCKET = "aws:s3/bucket:Bucket"


@dataclass(frozen=True)
class Item:
    """One resource as a stack rule sees it."""

    type: str
    props: Props
    urn: str
    dependencies: Sequence[str] = field(default_factory=tuple)


def s3_public_access_blocked(resource_type: str, props: Props) -> list[str]:
    """Every public access block turns on all four switches."""
    if resource_type != f"{_S3}bucketPublicAccessBlock:BucketPublicAccessBlock":
        return []
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return [
        f"public access block leaves {flag} off" for flag in flags if props.get(flag) is not True
    ]


def s3_encrypted_with_kms(resource_type: str, props: Props) -> list[str]:
    """Default bucket encryption is SSE-KMS with an explicit (customer-managed) key."""
    if (
        resource_type
        != f"{_S3}bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ):
        return []
    rules = props.get("rules") or []
    defaults = [(r or {}).get("applyServerSideEncryptionByDefault") or {} for r in rules]
    if not defaults:
        return ["bucket encryption has no default rule"]
    return [
        "bucket default encryption must be aws:kms with a customer-managed key"
        for d in defaults
        if d.get("sseAlgorithm") not in ("aws:kms", "aws:kms:dsse") or not d.get("kmsMasterKeyId")
    ]


def kms_rotation_on(resource_type: str, props: Props) -> list[str]:
    """Customer-managed KMS keys rotate yearly."""
    if resource_type == "aws:kms/key:Key" and props.get("enableKeyRotation") is not True:
        return ["KMS key without automatic rotation"]
    return []


def redis_encrypted_with_auth(resource_type: str, props: Props) -> list[str]:
    """Redis: encryption at rest and in transit (TLS required) and an AUTH token."""
    if resource_type != "aws:elasticache/replicationGroup:ReplicationGroup":
        return []
    problems = []
    if props.get("atRestEncryptionEnabled") is not True:
        problems.append("Redis without encryption at rest")
    if props.get("transitEncryptionEnabled") is not True:
        problems.append("Redis without encryption in transit")
    if props.get("transitEncryptionMode") == "preferred":
        problems.append("Redis accepts plaintext clients (transitEncryptionMode preferred)")
    if not props.get("authToken") and not props.get("userGroupIds"):
        problems.append("Redis without AUTH (no auth token or user group)")
    return problems


def eks_cluster_hardened(resource_type: str, props: Props) -> list[str]:
    """EKS: audit logs on, secrets envelope-encrypted, API endpoint not open to the internet."""
    if resource_type != "aws:eks/cluster:Cluster":
        return []
    problems = []
    missing = REQUIRED_EKS_LOGS - set(props.get("enabledClusterLogTypes") or [])
    if missing:
        problems.append(f"EKS control-plane logs missing: {sorted(missing)}")
    encryption = props.get("encryptionConfig") or {}
    if "secrets" not in (encryption.get("resources") or []):
        problems.append("EKS secrets are not envelope-encrypted with KMS")
    vpc = props.get("vpcConfig") or {}
    if vpc.get("endpointPublicAccess") is not False:
        cidrs = set(vpc.get("publicAccessCidrs") or [])
        if not cidrs or cidrs & OPEN_CIDRS:
            problems.append("EKS API endpoint is public to the whole internet")
    return problems


def ecr_immutable_and_scanned(resource_type: str, props: Props) -> list[str]:
    """ECR: immutable tags and a vulnerability scan on every push."""
    if resource_type != "aws:ecr/repository:Repository":
        return []
    problems = []
    if props.get("imageTagMutability") not in ("IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION"):
        problems.append("ECR tags are mutable")
    if (props.get("imageScanningConfiguration") or {}).get("scanOnPush") is not True:
        problems.append("ECR does not scan on push")
    return problems


def no_open_ingress(resource_type: str, props: Props) -> list[str]:
    """No security group admits the whole internet."""
    if resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        cidrs = {props.get("cidrIpv4"), props.get("cidrIpv6")}
    elif resource_type == "aws:ec2/securityGroup:SecurityGroup":
        rules = props.get("ingress") or []
        cidrs = {
            c for r in rules for c in (r.get("cidrBlocks") or []) + (r.get("ipv6CidrBlocks") or [])
        }
    else:
        return []
    return ["security group ingress open to the internet"] if cidrs & OPEN_CIDRS else []


def iam_no_wildcard_admin(resource_type: str, props: Props) -> list[str]:
    """No inline IAM policy grants every action."""
    if resource_type not in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"):
        return []
    policy = props.get("policy")
    if not isinstance(policy, str):
        return []  # unknown until apply during a preview
    statements = json.loads(policy).get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action")
        actions = [actions] if isinstance(actions, str) else actions or []
        if statement.get("Effect") == "Allow" and {"*", "*:*", "iam:*"} & set(actions):
            return ["IAM policy allows every action"]
    return []


def log_groups_expire(resource_type: str, props: Props) -> list[str]:
    """Log groups have a retention (flow logs and audit logs are not kept forever by accident)."""
    if resource_type == "aws:cloudwatch/logGroup:LogGroup" and not props.get("retentionInDays"):
        return ["log group without retention"]
    return []


def secrets_use_customer_key(resource_type: str, props: Props) -> list[str]:
    """Secrets Manager secrets are encrypted with a customer-managed key."""
    if resource_type == "aws:secretsmanager/secret:Secret" and not props.get("kmsKeyId"):
        return ["secret encrypted with the default AWS key"]
    return []


def _pod_spec(resource_type: str, props: Props) -> Props | None:
    if resource_type == "kubernetes:core/v1:Pod":
        return props.get("spec") or {}
    if resource_type in WORKLOADS:
        return ((props.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def _container_problems(pod: Props, container: Props) -> Iterable[str]:
    name = container.get("name", "?")
    pod_ctx, ctx = pod.get("securityContext") or {}, container.get("securityContext") or {}
    if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:  # container wins
        yield f"container {name} may run as root"
    if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
        yield f"container {name} runs as uid 0"
    if ctx.get("allowPrivilegeEscalation") is not False:
        yield f"container {name} allows privilege escalation"
    if ctx.get("privileged"):
        yield f"container {name} is privileged"
    if ctx.get("readOnlyRootFilesystem") is not True:
        yield f"container {name} has a writable root filesystem"
    if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
        yield f"container {name} keeps Linux capabilities"
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for unit in ("cpu", "memory"):
            if not (resources.get(kind) or {}).get(unit):
                yield f"container {name} has no {unit} {kind[:-1]}"


def pods_hardened(resource_type: str, props: Props) -> list[str]:
    """Pods: non-root, no escalation, read-only root, no host namespaces, requests and limits."""
    pod = _pod_spec(resource_type, props)
    if pod is None:
        return []
    problems = [f"pod uses {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        problems.extend(_container_problems(pod, container))
    return problems


def load_balancers_internal(resource_type: str, props: Props) -> list[str]:
    """Kubernetes Services of type LoadBalancer stay inside the VPC."""
    if resource_type != "kubernetes:core/v1:Service":
        return []
    if (props.get("spec") or {}).get("type") != "LoadBalancer":
        return []
    annotations = (props.get("metadata") or {}).get("annotations") or {}
    internal = (
        annotations.get("service.beta.kubernetes.io/aws-load-balancer-internal") == "true"
        or annotations.get("service.beta.kubernetes.io/aws-load-balancer-scheme") == "internal"
    )
    return [] if internal else ["LoadBalancer Service would be internet-facing"]


RESOURCE_RULES: dict[str, ResourceRule] = {
    "s3-public-access-blocked": s3_public_access_blocked,
    "s3-encrypted-with-kms": s3_encrypted_with_kms,
    "kms-rotation-on": kms_rotation_on,
    "redis-encrypted-with-auth": redis_encrypted_with_auth,
    "eks-cluster-hardened": eks_cluster_hardened,
    "ecr-immutable-and-scanned": ecr_immutable_and_scanned,
    "no-open-ingress": no_open_ingress,
    "iam-no-wildcard-admin": iam_no_wildcard_admin,
    "log-groups-expire": log_groups_expire,
    "secrets-use-customer-key": secrets_use_customer_key,
    "pods-hardened": pods_hardened,
    "load-balancers-internal": load_balancers_internal,
}


def _attached(
    items: Sequence[Item], target: str, type_suffix: str, ok: Callable[[Props], bool]
) -> bool:
    return any(
        i.type.endswith(type_suffix) and target in i.dependencies and ok(i.props) for i in items
    )


def _denies_plain_http(props: Props) -> bool:
    policy = props.get("policy")
    if not isinstance(policy, str):
        return True  # unknown during a preview; checked again on update
    return any(
        s.get("Effect") == "Deny"
        and (s.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in json.loads(policy).get("Statement") or []
    )


def buckets_fully_guarded(items: Sequence[Item]) -> list[str]:
    """Each bucket has a public access block, KMS encryption, versioning and a TLS-only policy."""
    needs = {
        "a public access block": (
            "bucketPublicAccessBlock:BucketPublicAccessBlock",
            lambda p: True,
        ),
        "default encryption": (
            "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            lambda p: True,
        ),
        "versioning": (
            "bucketVersioning:BucketVersioning",
            lambda p: (p.get("versioningConfiguration") or {}).get("status") == "Enabled",
        ),
        "a TLS-only bucket policy": ("bucketPolicy:BucketPolicy", _denies_plain_http),
    }
    return [
        f"bucket {bucket.urn.split('::')[-1]} lacks {need}"
        for bucket in items
        if bucket.type == BUCKET
        for need, (suffix, ok) in needs.items()
        if not _attached(items, bucket.urn, suffix, ok)
    ]


def vpcs_have_flow_logs(items: Sequence[Item]) -> list[str]:
    """Each VPC records its traffic with a flow log."""
    return [
        f"VPC {vpc.urn.split('::')[-1]} has no flow log"
        for vpc in items
        if vpc.type == "aws:ec2/vpc:Vpc"
        and not _attached(items, vpc.urn, "flowLog:FlowLog", lambda p: True)
    ]


STACK_RULES: dict[str, Callable[[Sequence[Item]], list[str]]] = {
    "buckets-fully-guarded": buckets_fully_guarded,
    "vpcs-have-flow-logs": vpcs_have_flow_logs,
}


def violations(items: Sequence[Item]) -> dict[str, list[str]]:
    """Run every rule over a whole stack.

    Args:
        items: All resources of the stack.

    Returns:
        Violation messages by rule name (rules without violations are left out).
    """
    found: dict[str, list[str]] = {}
    for name, rule in RESOURCE_RULES.items():
        for item in items:
            found.setdefault(name, []).extend(
                f"{item.urn}: {m}" for m in rule(item.type, item.props)
            )
    for name, stack_rule in STACK_RULES.items():
        found.setdefault(name, []).extend(stack_rule(items))
    return {name: messages for name, messages in found.items() if messages}
