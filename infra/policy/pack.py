"""Adapters from the plain rules to pulumi-policy's validation policies."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policy.rules import RESOURCE_RULES, STACK_RULES, Item

PACK_NAME = "approvals-guard-rails"


def resource_policy(name: str) -> ResourceValidationPolicy:
    """Wrap one resource rule; each message becomes a mandatory violation.

    Args:
        name: Key in :data:`RESOURCE_RULES`.

    Returns:
        The policy.
    """
    rule = RESOURCE_RULES[name]

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in rule(args.resource_type, args.props):
            report(message, args.urn)

    return ResourceValidationPolicy(
        name=name,
        description=(rule.__doc__ or name).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def stack_policy(name: str) -> StackValidationPolicy:
    """Wrap one stack rule, linking resources through their dependencies.

    Args:
        name: Key in :data:`STACK_RULES`.

    Returns:
        The policy.
    """
    rule = STACK_RULES[name]

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        items = [
            Item(r.resource_type, r.props, r.urn, tuple(d.urn for d in r.dependencies))
            for r in args.resources
        ]
        for message in rule(items):
            report(message, None)

    return StackValidationPolicy(
        name=name,
        description=(rule.__doc__ or name).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def policies() -> list[Policy]:
    """Every rule as a policy, in a stable order.

    Returns:
        Resource policies followed by stack policies.
    """
    return [
        *(resource_policy(name) for name in RESOURCE_RULES),
        *(stack_policy(name) for name in STACK_RULES),
    ]
